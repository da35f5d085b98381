//! The JSON hub protocol: UTF-8 JSON objects, each followed by the record separator `0x1E`.
//!
//! Decoding reads the envelope in one pass (`scan`, falling back to `serde_json` for what it
//! leaves alone); each argument, item and result becomes a slice of the received frame (no
//! copy, no second parse).

use bytes::Bytes;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::arg::Arg;
use crate::error::{Error, Result};
use crate::message::*;
use crate::scan::{self, Scanner, once};

/// The JSON record separator that ends every JSON message and the handshake.
pub const RECORD_SEPARATOR: u8 = 0x1E;

const NAME: &str = "json";

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: Option<u64>,
    #[serde(rename = "invocationId")]
    invocation_id: Option<String>,
    target: Option<String>,
    #[serde(borrow)]
    arguments: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default, deserialize_with = "present")]
    item: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    error: Option<String>,
    headers: Option<Headers>,
    #[serde(rename = "streamIds")]
    stream_ids: Option<Vec<String>>,
    #[serde(rename = "sequenceId")]
    sequence_id: Option<u64>,
    #[serde(rename = "allowReconnect")]
    allow_reconnect: Option<bool>,
}

/// `null` is a value here (a `null` result), unlike in `Option`'s own deserializer.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidMessage {
        protocol: NAME,
        reason: reason.into(),
    }
}

fn required<T>(value: Option<T>, name: &str) -> Result<T> {
    value.ok_or_else(|| invalid(format!("Missing required property '{name}'.")))
}

/// Decodes one JSON message (without its record separator). Unknown message types give
/// `Ok(None)`, as the official implementations ignore them; unknown properties are ignored.
pub fn decode(frame: &Bytes) -> Result<Option<HubMessage>> {
    decode_in(frame, 0..frame.len())
}

/// [`decode`] for the frame `buf[range]`: its arguments are sliced from `buf` (the framer's
/// received read, so the frame takes no reference of its own).
pub(crate) fn decode_in(buf: &Bytes, range: std::ops::Range<usize>) -> Result<Option<HubMessage>> {
    match scan_message(buf, range.clone()) {
        Ok(message) => Ok(message),
        Err(scan::Fallback) => decode_reference(&buf.slice(range)),
    }
}

/// [`decode`] through `serde_json` alone: what the one-pass scanner must agree with (the
/// property tests and the `json_decode` fuzz target compare the two). Not for general use.
#[doc(hidden)]
pub fn decode_reference(frame: &Bytes) -> Result<Option<HubMessage>> {
    // serde would also read a JSON array positionally into the envelope; refuse it up front.
    if frame.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(invalid("a hub message must be a JSON object"));
    }
    let env: Envelope<'_> =
        serde_json::from_slice(frame).map_err(crate::error::json_error("a hub message"))?;
    let raw = |value: &RawValue| Arg::json_unchecked(frame.slice_ref(value.get().as_bytes()));
    let kind = required(env.kind, "type")?;
    let headers = env.headers.unwrap_or_default();
    let message = match kind {
        1 => HubMessage::Invocation(Invocation {
            headers,
            invocation_id: env.invocation_id,
            target: required(env.target, "target")?,
            arguments: required(env.arguments, "arguments")?
                .into_iter()
                .map(raw)
                .collect(),
            stream_ids: env.stream_ids.unwrap_or_default(),
        }),
        2 => HubMessage::StreamItem(StreamItem {
            headers,
            invocation_id: required(env.invocation_id, "invocationId")?,
            item: raw(required(env.item, "item")?),
        }),
        3 => {
            let outcome = match (env.error, env.result) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        "The 'error' and 'result' properties are mutually exclusive.",
                    ));
                }
                (Some(error), None) => Outcome::Error(error),
                (None, Some(result)) => Outcome::Result(raw(result)),
                (None, None) => Outcome::Void,
            };
            HubMessage::Completion(Completion {
                headers,
                invocation_id: required(env.invocation_id, "invocationId")?,
                outcome,
            })
        }
        4 => HubMessage::StreamInvocation(StreamInvocation {
            headers,
            invocation_id: required(env.invocation_id, "invocationId")?,
            target: required(env.target, "target")?,
            arguments: required(env.arguments, "arguments")?
                .into_iter()
                .map(raw)
                .collect(),
            stream_ids: env.stream_ids.unwrap_or_default(),
        }),
        5 => HubMessage::CancelInvocation(CancelInvocation {
            headers,
            invocation_id: required(env.invocation_id, "invocationId")?,
        }),
        6 => HubMessage::Ping,
        7 => HubMessage::Close(Close {
            error: env.error,
            allow_reconnect: env.allow_reconnect.unwrap_or(false),
        }),
        8 => HubMessage::Ack(Ack {
            sequence_id: required(env.sequence_id, "sequenceId")?,
        }),
        9 => HubMessage::Sequence(Sequence {
            sequence_id: required(env.sequence_id, "sequenceId")?,
        }),
        _ => return Ok(None),
    };
    Ok(Some(message))
}

/// The one-pass decoder: the same messages as [`decode_reference`] for what it reads, and
/// [`scan::Fallback`] for the rest (errors included, so their wording stays serde_json's).
fn scan_message(
    buf: &Bytes,
    range: std::ops::Range<usize>,
) -> Result<Option<HubMessage>, scan::Fallback> {
    use scan::Fallback;
    let base = range.start;
    let mut s = Scanner::new(&buf[range])?;
    if s.peek() != Some(b'{') {
        return Err(Fallback);
    }
    let raw = |s: &mut Scanner<'_>| {
        s.raw()
            .map(|r| Arg::json_unchecked(buf.slice(base + r.start..base + r.end)))
    };
    let string = |s: &mut Scanner<'_>| s.plain_str().map(str::to_owned);
    let (mut kind, mut invocation_id, mut target, mut arguments) = (None, None, None, None);
    let (mut item, mut result, mut error, mut headers) = (None, None, None, None);
    let (mut stream_ids, mut sequence_id, mut allow_reconnect) = (None, None, None);
    s.object(|key, s| match key {
        "type" => once(&mut kind, s.u64()?),
        "invocationId" => once(&mut invocation_id, string(s)?),
        "target" => once(&mut target, string(s)?),
        "arguments" => {
            let mut args = Vec::new();
            s.array(|s| {
                args.push(raw(s)?);
                Ok(())
            })?;
            once(&mut arguments, args)
        }
        "item" => once(&mut item, raw(s)?),
        "result" => once(&mut result, raw(s)?),
        "error" => once(&mut error, string(s)?),
        "headers" => {
            let mut map = Headers::new();
            s.object(|k, s| {
                map.insert(k.to_owned(), string(s)?);
                Ok(())
            })?;
            once(&mut headers, map)
        }
        "streamIds" => {
            let mut ids = Vec::new();
            s.array(|s| {
                ids.push(string(s)?);
                Ok(())
            })?;
            once(&mut stream_ids, ids)
        }
        "sequenceId" => once(&mut sequence_id, s.u64()?),
        "allowReconnect" => once(&mut allow_reconnect, s.bool()?),
        _ => s.skip(),
    })?;
    s.end()?;
    let headers = headers.unwrap_or_default();
    let message = match kind.ok_or(Fallback)? {
        1 => HubMessage::Invocation(Invocation {
            headers,
            invocation_id,
            target: target.ok_or(Fallback)?,
            arguments: arguments.ok_or(Fallback)?,
            stream_ids: stream_ids.unwrap_or_default(),
        }),
        2 => HubMessage::StreamItem(StreamItem {
            headers,
            invocation_id: invocation_id.ok_or(Fallback)?,
            item: item.ok_or(Fallback)?,
        }),
        3 => HubMessage::Completion(Completion {
            headers,
            invocation_id: invocation_id.ok_or(Fallback)?,
            outcome: match (error, result) {
                (Some(_), Some(_)) => return Err(Fallback),
                (Some(error), None) => Outcome::Error(error),
                (None, Some(result)) => Outcome::Result(result),
                (None, None) => Outcome::Void,
            },
        }),
        4 => HubMessage::StreamInvocation(StreamInvocation {
            headers,
            invocation_id: invocation_id.ok_or(Fallback)?,
            target: target.ok_or(Fallback)?,
            arguments: arguments.ok_or(Fallback)?,
            stream_ids: stream_ids.unwrap_or_default(),
        }),
        5 => HubMessage::CancelInvocation(CancelInvocation {
            headers,
            invocation_id: invocation_id.ok_or(Fallback)?,
        }),
        6 => HubMessage::Ping,
        7 => HubMessage::Close(Close {
            error,
            allow_reconnect: allow_reconnect.unwrap_or(false),
        }),
        8 => HubMessage::Ack(Ack {
            sequence_id: sequence_id.ok_or(Fallback)?,
        }),
        9 => HubMessage::Sequence(Sequence {
            sequence_id: sequence_id.ok_or(Fallback)?,
        }),
        _ => return Ok(None),
    };
    Ok(Some(message))
}

/// Appends one JSON message and its record separator to `out`. On error `out` is unchanged.
pub fn encode(message: &HubMessage, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    let result = encode_inner(message, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn encode_inner(message: &HubMessage, out: &mut Vec<u8>) -> Result<()> {
    out.extend_from_slice(b"{\"type\":");
    push_u64(out, u64::from(message.kind()));
    if let Some(headers) = message.headers().filter(|h| !h.is_empty()) {
        out.extend_from_slice(b",\"headers\":");
        write_json(out, headers)?;
    }
    match message {
        HubMessage::Invocation(m) => {
            if let Some(id) = &m.invocation_id {
                field_str(out, "invocationId", id)?;
            }
            write_call(out, &m.target, &m.arguments, &m.stream_ids)?;
        }
        HubMessage::StreamInvocation(m) => {
            field_str(out, "invocationId", &m.invocation_id)?;
            write_call(out, &m.target, &m.arguments, &m.stream_ids)?;
        }
        HubMessage::StreamItem(m) => {
            field_str(out, "invocationId", &m.invocation_id)?;
            out.extend_from_slice(b",\"item\":");
            m.item.write_json(out)?;
        }
        HubMessage::Completion(m) => {
            field_str(out, "invocationId", &m.invocation_id)?;
            match &m.outcome {
                Outcome::Void => {}
                Outcome::Result(result) => {
                    out.extend_from_slice(b",\"result\":");
                    result.write_json(out)?;
                }
                Outcome::Error(error) => field_str(out, "error", error)?,
            }
        }
        HubMessage::CancelInvocation(m) => field_str(out, "invocationId", &m.invocation_id)?,
        HubMessage::Ping => {}
        HubMessage::Close(m) => {
            if let Some(error) = &m.error {
                field_str(out, "error", error)?;
            }
            if m.allow_reconnect {
                out.extend_from_slice(b",\"allowReconnect\":true");
            }
        }
        HubMessage::Ack(Ack { sequence_id }) | HubMessage::Sequence(Sequence { sequence_id }) => {
            out.extend_from_slice(b",\"sequenceId\":");
            push_u64(out, *sequence_id);
        }
    }
    out.extend_from_slice(&[b'}', RECORD_SEPARATOR]);
    Ok(())
}

fn write_call(out: &mut Vec<u8>, target: &str, args: &[Arg], stream_ids: &[String]) -> Result<()> {
    field_str(out, "target", target)?;
    out.extend_from_slice(b",\"arguments\":[");
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        arg.write_json(out)?;
    }
    out.push(b']');
    if !stream_ids.is_empty() {
        out.extend_from_slice(b",\"streamIds\":");
        write_json(out, stream_ids)?;
    }
    Ok(())
}

fn field_str(out: &mut Vec<u8>, name: &str, value: &str) -> Result<()> {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    write_json(out, value)
}

fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<()> {
    serde_json::to_writer(out, value).map_err(|e| Error::Encode {
        protocol: NAME,
        reason: e.to_string(),
    })
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{n}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What hubs and clients send is read in one pass, not left to serde_json.
    #[test]
    fn common_messages_take_the_one_pass_path() {
        for text in [
            r#"{"type":1,"target":"broadcastMessage","arguments":["ann","hi \"there\" caf\u00e9"]}"#,
            r#"{"type":1,"invocationId":"7","target":"Send","arguments":[{"a":[1,-2.5e3,null,true]}],"streamIds":["1"]}"#,
            r#"{"type":1,"headers":{"hubbub-id":"m-1"},"target":"t","arguments":[]}"#,
            r#"{"type":2,"invocationId":"1","item":null}"#,
            r#"{"type":3,"invocationId":"1","result":42}"#,
            r#"{"type":3,"invocationId":"1","error":"nope"}"#,
            r#"{"type":3,"invocationId":"1"}"#,
            r#"{"type":4,"invocationId":"2","target":"Counter","arguments":[10]}"#,
            r#"{"type":5,"invocationId":"2"}"#,
            r#"{"type":6}"#,
            r#"{"type":7,"error":"bye","allowReconnect":true}"#,
            r#"{"type":8,"sequenceId":3}"#,
            r#" { "type" : 9 , "sequenceId" : 4 , "extra" : {"x":[]} } "#,
            r#"{"type":99,"whatever":1}"#,
        ] {
            let frame = Bytes::from(text);
            let fast = scan_message(&frame, 0..frame.len())
                .unwrap_or_else(|_| panic!("{text} falls back"));
            assert_eq!(
                format!("{fast:?}"),
                format!("{:?}", decode_reference(&frame).unwrap()),
                "{text}"
            );
        }
    }

    /// What the scanner leaves alone still decodes (or fails) exactly as before.
    #[test]
    fn the_rest_falls_back_to_serde_json() {
        for text in [
            r#"{"type":1,"target":"a\u0041","arguments":[]}"#,
            r#"{"type":1,"target":null,"arguments":[]}"#,
            r#"{"type":1,"type":1,"target":"t","arguments":[]}"#,
            r#"{"type":3,"invocationId":"1","error":"e","result":1}"#,
            r#"{"type":1.0}"#,
            r#"{"type":1,"target":"t"}"#,
            "[1]",
            "{\"type\":6}\u{b}",
        ] {
            let frame = Bytes::from(text);
            assert!(
                scan_message(&frame, 0..frame.len()).is_err(),
                "{text} should fall back"
            );
            assert_eq!(
                format!("{:?}", decode(&frame)),
                format!("{:?}", decode_reference(&frame)),
                "{text}"
            );
        }
    }
}
