//! The JSON hub protocol: UTF-8 JSON objects, each followed by the record separator `0x1E`.
//!
//! Decoding parses the envelope once with borrowed raw values; each argument, item and result
//! becomes a slice of the received frame (no copy, no second parse).

use bytes::Bytes;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::arg::Arg;
use crate::error::{Error, Result};
use crate::message::*;

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
