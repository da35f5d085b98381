//! What arrives on a classic receive channel (a WebSocket message, an SSE event's data, a
//! long-poll body, a `send` answer): the persistent response, a hub result, or a keep-alive.
//!
//! Sources: S2 `Transports/PersistentResponse.cs` (the server writes `C` first, then `S`, `T`,
//! `G`, `L` when set, then `M`, its items copied as the raw JSON it already has), the .NET
//! client's `TransportHelper.ProcessResponse` and jQuery's `transports.common.js` (a top-level
//! `I` is a hub result, `{}` a keep-alive, `E` an error); bytes as in §8a.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::hub::HubResult;
use crate::error::{Error, Result};
use crate::scan::{Fallback, Scanner, once};

/// A persistent response, `{"C":cursor,"S":1,"T":1,"G":groups,"L":ms,"E":error,"M":[…]}`.
///
/// The init message a server sends first on every transport is
/// `{"C":"d-…","S":1,"M":[]}` (§8a).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    /// `C`: the message id (cursor) of the last message in `M`, opaque to the client, which
    /// sends it back as `messageId` on reconnect and poll.
    pub cursor: Option<String>,
    /// `S`: 1 on the init message (the transport is connected).
    pub initialized: bool,
    /// `T`: 1 when the client should reconnect (the server is shutting down).
    pub reconnect: bool,
    /// `G`: the new groups token, sent back as `groupsToken` on reconnect and poll.
    pub groups_token: Option<String>,
    /// `L`: milliseconds a long-polling client waits before its next poll.
    pub long_poll_delay: Option<u64>,
    /// `E`: a fatal error (the jQuery client stops the connection with it).
    pub error: Option<String>,
    /// `M`: the messages, each the raw JSON text of one item (for hubs, a
    /// [`ClientInvocation`](super::ClientInvocation)); empty when `M` is absent.
    pub messages: Vec<Bytes>,
}

/// One decoded receive-channel payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// An empty body (a long poll answered with nothing, e.g. after `abort`): nothing to do.
    Empty,
    /// `{}`: a keep-alive.
    KeepAlive,
    /// A persistent response.
    Envelope(Envelope),
    /// A hub result or progress update (a top-level `I`).
    Result(HubResult),
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(rename = "I", borrow)]
    id: Option<&'a RawValue>,
    #[serde(rename = "C")]
    cursor: Option<String>,
    #[serde(rename = "S", borrow)]
    initialized: Option<&'a RawValue>,
    #[serde(rename = "T", borrow)]
    reconnect: Option<&'a RawValue>,
    #[serde(rename = "G")]
    groups_token: Option<String>,
    #[serde(rename = "L")]
    long_poll_delay: Option<u64>,
    #[serde(rename = "E", borrow)]
    error: Option<&'a RawValue>,
    #[serde(rename = "M", borrow)]
    messages: Option<Vec<&'a RawValue>>,
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::Classic {
        context: "envelope",
        reason: reason.into(),
    }
}

/// `S` and `T` are `1` when set; `true` is read as set too, `0`, `false` and `null` as unset.
fn flag(value: Option<&RawValue>, name: &str) -> Result<bool> {
    match value.map(RawValue::get) {
        None | Some("0" | "false" | "null") => Ok(false),
        Some("1" | "true") => Ok(true),
        Some(other) => Err(invalid(format!("`{name}` must be 1 or 0, not {other}"))),
    }
}

impl Incoming {
    /// Decodes one receive-channel payload. Leading and trailing whitespace is skipped (the
    /// long-polling keep-alive spaces); a blank payload is [`Incoming::Empty`]. A payload with
    /// a top-level `I` is a hub result; `{}` is a keep-alive; any other object is an envelope
    /// (unknown keys ignored). `M` items and result values stay the bytes they arrived in (slices
    /// of `payload`).
    pub fn decode(payload: &Bytes) -> Result<Self> {
        match scan_incoming(payload) {
            Ok(incoming) => Ok(incoming),
            Err(Fallback) => Self::decode_reference(payload),
        }
    }

    /// [`Incoming::decode`] through `serde_json` alone: what the one-pass scanner must agree
    /// with (property tests and the `classic_frame` fuzz oracle compare the two).
    #[doc(hidden)]
    pub fn decode_reference(payload: &Bytes) -> Result<Self> {
        let start = payload.iter().position(|b| !b.is_ascii_whitespace());
        let Some(start) = start else {
            return Ok(Self::Empty);
        };
        if payload[start] != b'{' {
            return Err(invalid("the payload is not a JSON object"));
        }
        let wire: Wire<'_> = serde_json::from_slice(payload)
            .map_err(crate::error::json_error("a classic envelope"))?;
        if wire.id.is_some() {
            return HubResult::decode(payload).map(Self::Result);
        }
        let end = payload
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .unwrap_or(start);
        let inner = &payload[start + 1..end];
        if inner.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::KeepAlive);
        }
        let error = match wire.error.map(RawValue::get) {
            None | Some("null") => None,
            Some(raw) => Some(
                serde_json::from_str::<String>(raw).map_err(|_| invalid("`E` must be a string"))?,
            ),
        };
        Ok(Self::Envelope(Envelope {
            cursor: wire.cursor,
            initialized: flag(wire.initialized, "S")?,
            reconnect: flag(wire.reconnect, "T")?,
            groups_token: wire.groups_token,
            long_poll_delay: wire.long_poll_delay,
            error,
            messages: wire
                .messages
                .unwrap_or_default()
                .into_iter()
                .map(|m| payload.slice_ref(m.get().as_bytes()))
                .collect(),
        }))
    }
}

/// The one-pass reading of an envelope or keep-alive (a result, with `I`, and everything
/// unusual is left to serde_json: see `crate::scan`).
fn scan_incoming(payload: &Bytes) -> std::result::Result<Incoming, Fallback> {
    let mut s = Scanner::new(payload)?;
    if s.peek() != Some(b'{') {
        return Err(Fallback);
    }
    let (mut cursor, mut initialized, mut reconnect, mut groups_token) = (None, None, None, None);
    let (mut long_poll_delay, mut error, mut messages) = (None, None, None);
    let members = s.object(|key, s| match key {
        "I" => Err(Fallback),
        "C" => once(&mut cursor, s.plain_str()?.to_owned()),
        "S" => once(&mut initialized, s.raw()?),
        "T" => once(&mut reconnect, s.raw()?),
        "G" => once(&mut groups_token, s.plain_str()?.to_owned()),
        "L" => once(&mut long_poll_delay, s.u64()?),
        "E" => once(&mut error, s.raw()?),
        "M" => {
            let mut items = Vec::new();
            s.array(|s| {
                items.push(payload.slice(s.raw()?));
                Ok(())
            })?;
            once(&mut messages, items)
        }
        _ => s.skip(),
    })?;
    s.end()?;
    if members == 0 {
        return Ok(Incoming::KeepAlive);
    }
    let flag = |raw: Option<std::ops::Range<usize>>| match raw.map(|r| s.text(r)) {
        None | Some("0" | "false" | "null") => Ok(false),
        Some("1" | "true") => Ok(true),
        Some(_) => Err(Fallback),
    };
    let error = match error.map(|r| s.text(r)) {
        None | Some("null") => None,
        Some(text) => {
            let contents = text.strip_prefix('"').and_then(|t| t.strip_suffix('"'));
            match contents {
                Some(plain) if !plain.contains('\\') => Some(plain.to_owned()),
                _ => return Err(Fallback),
            }
        }
    };
    Ok(Incoming::Envelope(Envelope {
        cursor,
        initialized: flag(initialized)?,
        reconnect: flag(reconnect)?,
        groups_token,
        long_poll_delay,
        error,
        messages: messages.unwrap_or_default(),
    }))
}

impl Envelope {
    /// The init message: `{"C":cursor,"S":1,"M":[]}`.
    pub fn init(cursor: impl Into<String>) -> Self {
        Self {
            cursor: Some(cursor.into()),
            initialized: true,
            ..Self::default()
        }
    }

    /// Appends the envelope as JSON (see [`write_envelope`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        write_envelope(self, self.messages.iter(), out);
    }

    /// The envelope as JSON bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Appends a persistent response as a 2.4.3 server writes it: `C` (when set), `S`, `T` (as
/// `1`, when set), `G`, `L`, `E` (when set), then `M` with each message's bytes copied as they
/// are (`header.messages` is not read: the server passes items it already holds encoded, so a
/// broadcast is serialized once for every connection).
///
/// Each message must be one complete JSON value; this is not checked.
pub fn write_envelope<I>(header: &Envelope, messages: I, out: &mut Vec<u8>)
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let mut sep = b'{';
    let mut key = |out: &mut Vec<u8>, name: &str| {
        out.push(sep);
        sep = b',';
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
    };
    if let Some(cursor) = &header.cursor {
        key(out, "C");
        write_str(out, cursor);
    }
    if header.initialized {
        key(out, "S");
        out.push(b'1');
    }
    if header.reconnect {
        key(out, "T");
        out.push(b'1');
    }
    if let Some(groups) = &header.groups_token {
        key(out, "G");
        write_str(out, groups);
    }
    if let Some(delay) = header.long_poll_delay {
        key(out, "L");
        out.extend_from_slice(delay.to_string().as_bytes());
    }
    if let Some(error) = &header.error {
        key(out, "E");
        write_str(out, error);
    }
    key(out, "M");
    out.push(b'[');
    for (i, message) in messages.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(message.as_ref());
    }
    out.extend_from_slice(b"]}");
}

pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    // A string always serializes.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> Result<Incoming> {
        Incoming::decode(&Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn the_init_message_is_byte_exact() {
        let init = Envelope::init("d-0D8B0D5E-B,0|C,0|D,1");
        assert_eq!(
            init.to_vec(),
            br#"{"C":"d-0D8B0D5E-B,0|C,0|D,1","S":1,"M":[]}"#
        );
        assert_eq!(
            decode(r#"{"C":"d-0D8B0D5E-B,0|C,0|D,1","S":1,"M":[]}"#).unwrap(),
            Incoming::Envelope(init)
        );
    }

    #[test]
    fn a_server_call_keeps_its_items_raw() {
        let text = r#"{"C":"d-1-B,1|C,0|D,1","M":[{"H":"ChatHub","M":"broadcastMessage","A":["bob","hello"]}]}"#;
        let Incoming::Envelope(env) = decode(text).unwrap() else {
            panic!()
        };
        assert_eq!(env.cursor.as_deref(), Some("d-1-B,1|C,0|D,1"));
        assert!(!env.initialized);
        assert_eq!(
            env.messages,
            vec![Bytes::from_static(
                br#"{"H":"ChatHub","M":"broadcastMessage","A":["bob","hello"]}"#
            )]
        );
        assert_eq!(env.to_vec(), text.as_bytes());
    }

    #[test]
    fn every_key_in_the_server_order() {
        let env = Envelope {
            cursor: Some("c".into()),
            initialized: true,
            reconnect: true,
            groups_token: Some("g/+=".into()),
            long_poll_delay: Some(250),
            error: Some("bad \"thing\"".into()),
            messages: vec![Bytes::from_static(b"1"), Bytes::from_static(b"{\"a\":[]}")],
        };
        let bytes = env.to_vec();
        assert_eq!(
            bytes,
            br#"{"C":"c","S":1,"T":1,"G":"g/+=","L":250,"E":"bad \"thing\"","M":[1,{"a":[]}]}"#
        );
        assert_eq!(
            decode(std::str::from_utf8(&bytes).unwrap()).unwrap(),
            Incoming::Envelope(env)
        );
        // The writer takes pre-encoded items; the header's own list is not read.
        let mut out = Vec::new();
        write_envelope(&Envelope::default(), [&b"\"x\""[..], b"2"], &mut out);
        assert_eq!(out, br#"{"M":["x",2]}"#);
    }

    #[test]
    fn what_a_hub_sends_takes_the_one_pass_path() {
        for text in [
            r#"{"C":"d-0D8B0D5E-B,0|C,0|D,1","S":1,"M":[]}"#,
            r#"{"C":"d-1-B,1|C,0|D,1","M":[{"H":"ChatHub","M":"broadcastMessage","A":["bob","hi \"x\""]}]}"#,
            r#"{"C":"c","S":1,"T":1,"G":"g/+=","L":250,"E":"bad","M":[1,{"a":[]}]}"#,
            "{}",
        ] {
            let payload = Bytes::copy_from_slice(text.as_bytes());
            let fast = scan_incoming(&payload).unwrap_or_else(|_| panic!("{text} falls back"));
            assert_eq!(
                fast,
                Incoming::decode_reference(&payload).unwrap(),
                "{text}"
            );
        }
    }

    #[test]
    fn keep_alives_blank_bodies_and_results() {
        assert_eq!(decode("{}").unwrap(), Incoming::KeepAlive);
        assert_eq!(decode(" { } ").unwrap(), Incoming::KeepAlive);
        assert_eq!(decode("").unwrap(), Incoming::Empty);
        assert_eq!(decode("   ").unwrap(), Incoming::Empty);
        // Long-poll keep-alive spaces before the body.
        let Incoming::Envelope(env) = decode(r#"   {"C":"x","M":[]}"#).unwrap() else {
            panic!()
        };
        assert_eq!(env.cursor.as_deref(), Some("x"));
        let Incoming::Result(r) = decode(r#"{"R":"ping!","I":"1"}"#).unwrap() else {
            panic!()
        };
        assert_eq!(r.id, "1");
    }

    #[test]
    fn malformed_envelopes_are_named_errors() {
        for (text, what) in [
            ("[]", "not a JSON object"),
            ("nope", "not a JSON object"),
            (r#"{"M":{}}"#, "classic envelope"),
            (r#"{"S":2,"M":[]}"#, "`S`"),
            (r#"{"T":"yes","M":[]}"#, "`T`"),
            (r#"{"E":5}"#, "`E`"),
            (r#"{"L":-1}"#, "classic envelope"),
            (r#"{"C":"a""#, "classic envelope"),
        ] {
            let err = decode(text).unwrap_err().to_string();
            assert!(err.contains(what), "{text}: {err} should mention {what}");
        }
    }
}
