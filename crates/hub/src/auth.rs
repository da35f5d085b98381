//! Bearer-token authentication: JWTs (HS256 or RS256), or per-user keys ([`UserKeys`], for a
//! hub with no identity provider).
//!
//! With auth configured, negotiate and every transport request must carry a valid token, in
//! the `Authorization: Bearer` header or the `access_token` query parameter (browsers cannot
//! set headers on WebSockets and EventSource). The user is the token's subject. A bad token is
//! answered with 401 and no connection is created; a token for another user than the one that
//! negotiated gets 403.
//!
//! With a scope claim ([`JwtAuth::scope_claim`]), the token also decides the connection's
//! scope (the chat hub's `?scope=`, its tenant): the request's `scope` parameter is set to the
//! claim's value, a request that asks for another scope is refused with 403, and a token
//! without the claim (or with one that is not a string) with 401.

use std::collections::HashMap;

use axum::http::{HeaderMap, header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};

/// How a hub checks who a request comes from.
#[derive(Debug, Clone)]
pub(crate) enum Auth {
    /// JWT bearer tokens.
    Jwt(Box<JwtAuth>),
    /// Per-user keys as bearer tokens.
    Keys(UserKeys),
}

impl Auth {
    /// The user a request's bearer token names (see [`JwtAuth::authenticate`]).
    pub(crate) fn authenticate(
        &self,
        headers: &HeaderMap,
        query: &mut HashMap<String, String>,
    ) -> Result<String, Denied> {
        let token = bearer(headers, query)?;
        match self {
            Self::Jwt(jwt) => jwt.verify(&token, query),
            Self::Keys(keys) => keys.user(&token),
        }
    }
}

/// The request's bearer token: the `Authorization: Bearer` header, else `access_token`.
fn bearer(headers: &HeaderMap, query: &HashMap<String, String>) -> Result<String, Denied> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    from_header
        .or_else(|| query.get("access_token").map(String::as_str))
        .map(|t| t.trim().to_owned())
        .ok_or_else(|| Denied::Unauthorized("no bearer token".to_owned()))
}

/// Per-user keys: each user has a secret key of their own, which their clients send as the
/// bearer token (`accessTokenFactory`, `hubbub … --token`); the hub knows the user from the
/// key. A middle ground between no authentication and an identity provider: no one can be
/// another user without that user's key. Keys are kept as SHA-256 digests.
#[derive(Clone)]
pub struct UserKeys {
    users: HashMap<[u8; 32], String>,
}

impl std::fmt::Debug for UserKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("UserKeys")
            .field("users", &self.users.len())
            .finish()
    }
}

/// The shortest key [`UserKeys`] accepts, in bytes.
pub const MIN_USER_KEY: usize = 16;

impl UserKeys {
    /// Keys from `(user, key)` pairs. Each key must have at least [`MIN_USER_KEY`] bytes and
    /// belong to one user only; user names must not be empty.
    pub fn new<I, U, K>(pairs: I) -> Result<Self, KeyError>
    where
        I: IntoIterator<Item = (U, K)>,
        U: Into<String>,
        K: AsRef<[u8]>,
    {
        let mut users = HashMap::new();
        for (user, key) in pairs {
            let user = user.into();
            let key = key.as_ref();
            if user.trim().is_empty() {
                return Err(KeyError("a user key needs a user name".to_owned()));
            }
            if key.len() < MIN_USER_KEY {
                return Err(KeyError(format!(
                    "the key of user '{user}' is shorter than {MIN_USER_KEY} bytes"
                )));
            }
            if let Some(other) = users.insert(digest(key), user.clone()) {
                return Err(KeyError(format!(
                    "users '{other}' and '{user}' have the same key"
                )));
            }
        }
        Ok(Self { users })
    }

    /// Reads a keys file: one `user key` per line (separated by whitespace; the key is the
    /// rest of the line), blank lines and lines starting with `#` ignored.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut pairs = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, key)) = line.split_once(char::is_whitespace) else {
                return Err(KeyError(format!("line {}: expected `user key`", n + 1)));
            };
            pairs.push((user.to_owned(), key.trim().to_owned()));
        }
        Self::new(pairs)
    }

    fn user(&self, token: &str) -> Result<String, Denied> {
        self.users
            .get(&digest(token.as_bytes()))
            .cloned()
            .ok_or_else(|| Denied::Unauthorized("no user has this key".to_owned()))
    }
}

fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// How tokens are checked.
#[derive(Clone)]
pub struct JwtAuth {
    key: DecodingKey,
    validation: Validation,
    scope_claim: Option<String>,
}

/// Why a request's token does not admit it.
#[derive(Debug)]
pub(crate) enum Denied {
    /// No token, or not a valid one (401): the reason, for the log.
    Unauthorized(String),
    /// A valid token, but the request asks for a scope other than the token's (403).
    OtherScope,
}

/// The text of a 403 for a scope other than the token's.
pub(crate) const OTHER_SCOPE: &str =
    "The scope is the token's: this token does not admit the scope asked for.";

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("JwtAuth")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid key: {0}")]
pub struct KeyError(String);

/// How tokens are validated: this algorithm only, `exp` required and checked, `nbf` checked
/// when present, both with [`LEEWAY_SECONDS`] of clock skew (RFC 7519 §4.1.4, §4.1.5).
fn validation(algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.validate_nbf = true;
    validation.leeway = LEEWAY_SECONDS;
    validation
}

/// The clock skew allowed on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: u64 = 60;

impl JwtAuth {
    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < 16 {
            return Err(KeyError(
                "an HS256 secret needs at least 16 bytes".to_owned(),
            ));
        }
        Ok(Self {
            key: DecodingKey::from_secret(secret),
            validation: validation(Algorithm::HS256),
            scope_claim: None,
        })
    }

    /// RS256 with an RSA public key in PEM form.
    pub fn rs256_pem(public_key_pem: &[u8]) -> Result<Self, KeyError> {
        let key = DecodingKey::from_rsa_pem(public_key_pem).map_err(|e| KeyError(e.to_string()))?;
        Ok(Self {
            key,
            validation: validation(Algorithm::RS256),
            scope_claim: None,
        })
    }

    /// Also require this issuer: a token whose `iss` is another, or that has none, is refused.
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self.validation
            .required_spec_claims
            .insert("iss".to_owned());
        self
    }

    /// Also require this audience: a token whose `aud` does not name it, or that has none, is
    /// refused.
    pub fn audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.validation
            .required_spec_claims
            .insert("aud".to_owned());
        self
    }

    /// Bind each connection's scope to this claim of its token (a string, such as a tenant
    /// id): the client cannot choose another scope (see the module's documentation).
    pub fn scope_claim(mut self, claim: &str) -> Self {
        self.scope_claim = Some(claim.to_owned());
        self
    }

    /// The user a token names, with the request's `scope` parameter set to the token's scope
    /// claim when one is configured; or why the request is not admitted.
    fn verify(&self, token: &str, query: &mut HashMap<String, String>) -> Result<String, Denied> {
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &self.key,
            &self.validation,
        )
        .map_err(|e| Denied::Unauthorized(format!("invalid token: {e}")))?;
        let claims = data.claims;
        let user = claims
            .get("sub")
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Denied::Unauthorized("the token has no subject".to_owned()))?
            .to_owned();
        if let Some(claim) = &self.scope_claim {
            let scope = claims
                .get(claim)
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| {
                    Denied::Unauthorized(format!("the token has no '{claim}' claim (a string)"))
                })?;
            if query.get("scope").is_some_and(|asked| asked != scope) {
                return Err(Denied::OtherScope);
            }
            query.insert("scope".to_owned(), scope.to_owned());
        }
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A keys file names each line it cannot take, and keys must be long and one user's.
    #[test]
    fn user_keys_files_are_checked() {
        let keys =
            UserKeys::parse("# c\n\nann  ann-key-0123456789  \nbob bob-key-0123456789\n").unwrap();
        assert_eq!(keys.user("ann-key-0123456789").unwrap(), "ann");
        assert!(keys.user("ann-key-012345678").is_err());
        for (text, error) in [
            ("ann\n", "invalid key: line 1: expected `user key`"),
            (
                "ann short\n",
                "invalid key: the key of user 'ann' is shorter than 16 bytes",
            ),
            (
                "ann same-key-0123456789\nbob same-key-0123456789\n",
                "invalid key: users 'ann' and 'bob' have the same key",
            ),
        ] {
            assert_eq!(UserKeys::parse(text).unwrap_err().to_string(), error);
        }
    }
}
