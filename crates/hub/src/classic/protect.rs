//! Tamper-proof tokens: the classic `ConnectionToken` and groups token.
//!
//! ASP.NET SignalR 2.x protects both with its `IProtectedData` (machine key or DPAPI): a client
//! can read neither forge nor alter them. Here a token is `base64(HMAC-SHA256(key, purpose ‖ 0 ‖
//! payload) ‖ payload)` with the standard alphabet, so it holds `+`, `/` and `=` as the real
//! tokens do (clients percent-encode it). The key is the hub process's own (random at start) or
//! one from configuration, so every node of a fleet accepts the others' tokens.
//!
//! Payloads (§8 "Tokens"): the connection token protects `connectionId:userName`, the groups
//! token `connectionId:["group",…]`.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const TAG_LEN: usize = 32;

/// What a token is for: a token of one purpose never verifies as another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// `connectionId:userName`.
    ConnectionToken,
    /// `connectionId:["group",…]`.
    Groups,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Self::ConnectionToken => b"SignalR.ConnectionToken",
            Self::Groups => b"SignalR.Groups",
        }
    }
}

/// Signs and checks tokens with one key.
#[derive(Clone)]
pub(crate) struct Protector {
    key: Vec<u8>,
}

impl std::fmt::Debug for Protector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Protector").finish_non_exhaustive()
    }
}

impl Protector {
    /// A protector with this key, or with a random one (valid for this process only).
    pub(crate) fn new(key: Option<&[u8]>) -> Self {
        let key = match key {
            Some(key) => key.to_vec(),
            None => {
                let mut key = vec![0u8; 32];
                // The OS random source failing is not recoverable in any useful way.
                getrandom::fill(&mut key).expect("the OS random number generator works");
                key
            }
        };
        Self { key }
    }

    fn mac(&self, purpose: Purpose, payload: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length.
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(purpose.label());
        mac.update(&[0]);
        mac.update(payload);
        mac
    }

    /// The token for `payload`.
    pub(crate) fn protect(&self, purpose: Purpose, payload: &str) -> String {
        let tag = self
            .mac(purpose, payload.as_bytes())
            .finalize()
            .into_bytes();
        let mut bytes = Vec::with_capacity(TAG_LEN + payload.len());
        bytes.extend_from_slice(&tag);
        bytes.extend_from_slice(payload.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// The payload of a token made by [`protect`](Self::protect) with the same key and
    /// purpose; `None` for anything else (altered, forged, truncated, not base64).
    pub(crate) fn unprotect(&self, purpose: Purpose, token: &str) -> Option<String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .ok()?;
        if bytes.len() < TAG_LEN {
            return None;
        }
        let (tag, payload) = bytes.split_at(TAG_LEN);
        // Constant-time comparison.
        self.mac(purpose, payload).verify_slice(tag).ok()?;
        String::from_utf8(payload.to_vec()).ok()
    }

    /// A connection token for `connection_id` and `user`.
    pub(crate) fn connection_token(&self, connection_id: &str, user: &str) -> String {
        self.protect(Purpose::ConnectionToken, &format!("{connection_id}:{user}"))
    }

    /// The connection id and user name a connection token was issued for.
    pub(crate) fn open_connection_token(&self, token: &str) -> Option<(String, String)> {
        let payload = self.unprotect(Purpose::ConnectionToken, token)?;
        let (id, user) = payload.split_once(':')?;
        Some((id.to_owned(), user.to_owned()))
    }

    /// A groups token: `groups` bound to `connection_id`.
    pub(crate) fn groups_token(&self, connection_id: &str, groups: &[String]) -> String {
        let list = serde_json::to_string(groups).unwrap_or_else(|_| "[]".to_owned());
        self.protect(Purpose::Groups, &format!("{connection_id}:{list}"))
    }

    /// The groups of a groups token issued to `connection_id`; `None` if the token is not
    /// genuine or belongs to another connection (ignored, as ASP.NET SignalR's `VerifyGroups`
    /// does).
    pub(crate) fn open_groups_token(
        &self,
        connection_id: &str,
        token: &str,
    ) -> Option<Vec<String>> {
        let payload = self.unprotect(Purpose::Groups, token)?;
        let (id, list) = payload.split_once(':')?;
        if id != connection_id {
            return None;
        }
        serde_json::from_str(list).ok()
    }
}

/// A new connection id: a random (version 4) GUID, as ASP.NET SignalR makes them.
pub(crate) fn new_connection_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random number generator works");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_tokens_round_trip_and_resist_tampering() {
        let p = Protector::new(None);
        let token = p.connection_token("0f8fad5b-d9cb-469f-a165-70867728950e", "alice:x");
        assert_eq!(
            p.open_connection_token(&token),
            Some((
                "0f8fad5b-d9cb-469f-a165-70867728950e".to_owned(),
                "alice:x".to_owned()
            ))
        );
        // Another process's key, another purpose, a flipped byte, garbage: all refused.
        assert_eq!(Protector::new(None).open_connection_token(&token), None);
        let groups = p.protect(Purpose::Groups, "id:alice");
        assert_eq!(p.open_connection_token(&groups), None);
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(&token)
            .unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let altered = base64::engine::general_purpose::STANDARD.encode(raw);
        assert_eq!(p.open_connection_token(&altered), None);
        assert_eq!(p.open_connection_token("not base64 at all!"), None);
        assert_eq!(p.open_connection_token(""), None);
        // A shared key: every node of a fleet reads the others' tokens.
        let a = Protector::new(Some(b"fleet secret of sufficient length"));
        let b = Protector::new(Some(b"fleet secret of sufficient length"));
        assert!(
            b.open_connection_token(&a.connection_token("x", "y"))
                .is_some()
        );
    }

    #[test]
    fn groups_tokens_are_bound_to_their_connection() {
        let p = Protector::new(None);
        let groups = vec!["scope:".to_owned(), "room::lobby".to_owned()];
        let token = p.groups_token("c1", &groups);
        assert_eq!(p.open_groups_token("c1", &token), Some(groups));
        assert_eq!(p.open_groups_token("c2", &token), None);
    }

    #[test]
    fn connection_ids_are_guids() {
        let id = new_connection_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert_ne!(id, new_connection_id());
    }
}
