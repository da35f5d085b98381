//! The MessagePack hub protocol: each message is a MessagePack array, framed by a VarInt length.
//!
//! The reader below walks the bytes once; arguments, items and results are kept as slices of the
//! received frame. Skipping a value is iterative, so deeply nested input cannot overflow the stack.

use bytes::Bytes;

use crate::arg::Arg;
use crate::error::{Error, Result};
use crate::message::*;

const NAME: &str = "messagepack";

/// A cursor over MessagePack bytes.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    context: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], context: &'static str) -> Self {
        Self {
            buf,
            pos: 0,
            context,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn error(&self, reason: impl Into<String>) -> Error {
        Error::MessagePack {
            context: self.context,
            reason: reason.into(),
        }
    }

    fn truncated(&self) -> Error {
        self.error(format!("unexpected end of data at byte {}", self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| self.truncated())?;
        let slice = &self.buf[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn peek(&self) -> Result<u8> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.truncated())
    }

    fn be(&mut self, n: usize) -> Result<u64> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn describe(marker: u8) -> &'static str {
        match marker {
            0x00..=0x7f | 0xcc..=0xcf | 0xd0..=0xd3 | 0xe0..=0xff => "an integer",
            0x80..=0x8f | 0xde | 0xdf => "a map",
            0x90..=0x9f | 0xdc | 0xdd => "an array",
            0xa0..=0xbf | 0xd9..=0xdb => "a string",
            0xc0 => "nil",
            0xc2 | 0xc3 => "a boolean",
            0xc4..=0xc6 => "binary data",
            0xc7..=0xc9 | 0xd4..=0xd8 => "an extension value",
            0xca | 0xcb => "a float",
            0xc1 => "the reserved byte 0xc1",
        }
    }

    fn unexpected(&self, marker: u8, expected: &str) -> Error {
        self.error(format!(
            "expected {expected} at byte {} but found {}",
            self.pos,
            Self::describe(marker)
        ))
    }

    /// Reads an array header.
    pub(crate) fn array_len(&mut self) -> Result<usize> {
        let marker = self.peek()?;
        let len = match marker {
            0x90..=0x9f => {
                self.pos += 1;
                u64::from(marker & 0x0f)
            }
            0xdc => {
                self.pos += 1;
                self.be(2)?
            }
            0xdd => {
                self.pos += 1;
                self.be(4)?
            }
            _ => return Err(self.unexpected(marker, "an array")),
        };
        usize::try_from(len).map_err(|_| self.error("array too long"))
    }

    /// Reads a map header.
    fn map_len(&mut self) -> Result<usize> {
        let marker = self.peek()?;
        let len = match marker {
            0x80..=0x8f => {
                self.pos += 1;
                u64::from(marker & 0x0f)
            }
            0xde => {
                self.pos += 1;
                self.be(2)?
            }
            0xdf => {
                self.pos += 1;
                self.be(4)?
            }
            _ => return Err(self.unexpected(marker, "a map")),
        };
        usize::try_from(len).map_err(|_| self.error("map too long"))
    }

    /// Reads any integer that fits in a `u64`.
    pub(crate) fn uint(&mut self) -> Result<u64> {
        let marker = self.peek()?;
        let at = self.pos;
        let value: i128 = match marker {
            0x00..=0x7f => {
                self.pos += 1;
                i128::from(marker)
            }
            0xe0..=0xff => {
                self.pos += 1;
                i128::from(marker as i8)
            }
            0xcc..=0xcf => {
                self.pos += 1;
                i128::from(self.be(1 << (marker - 0xcc))?)
            }
            0xd0..=0xd3 => {
                self.pos += 1;
                let n = 1usize << (marker - 0xd0);
                let raw = self.be(n)?;
                // Sign-extend the n-byte big-endian value.
                let shift = 64 - 8 * n as u32;
                i128::from(((raw << shift) as i64) >> shift)
            }
            _ => return Err(self.unexpected(marker, "an integer")),
        };
        u64::try_from(value)
            .map_err(|_| self.error(format!("expected a non-negative integer at byte {at}")))
    }

    fn str_len(&mut self) -> Result<Option<usize>> {
        let marker = self.peek()?;
        let len = match marker {
            0xa0..=0xbf => {
                self.pos += 1;
                u64::from(marker & 0x1f)
            }
            0xd9 => {
                self.pos += 1;
                self.be(1)?
            }
            0xda => {
                self.pos += 1;
                self.be(2)?
            }
            0xdb => {
                self.pos += 1;
                self.be(4)?
            }
            0xc0 => {
                self.pos += 1;
                return Ok(None);
            }
            _ => return Err(self.unexpected(marker, "a string")),
        };
        usize::try_from(len)
            .map(Some)
            .map_err(|_| self.error("string too long"))
    }

    /// Reads a string or nil.
    pub(crate) fn opt_str(&mut self) -> Result<Option<String>> {
        let Some(len) = self.str_len()? else {
            return Ok(None);
        };
        let at = self.pos;
        let bytes = self.take(len)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Some(s.to_owned())),
            Err(_) => Err(self.error(format!("the string at byte {at} is not valid UTF-8"))),
        }
    }

    /// Reads a string; nil is an error.
    pub(crate) fn string(&mut self, what: &str) -> Result<String> {
        let at = self.pos;
        self.opt_str()?
            .ok_or_else(|| self.error(format!("expected {what} at byte {at}, found nil")))
    }

    fn boolean(&mut self) -> Result<bool> {
        match self.peek()? {
            0xc2 => {
                self.pos += 1;
                Ok(false)
            }
            0xc3 => {
                self.pos += 1;
                Ok(true)
            }
            marker => Err(self.unexpected(marker, "a boolean")),
        }
    }

    /// Skips one complete value (iteratively) and returns its bytes.
    pub(crate) fn skip_value(&mut self) -> Result<&'a [u8]> {
        let start = self.pos;
        let mut pending: usize = 1;
        while pending > 0 {
            pending -= 1;
            let marker = self.byte()?;
            let (skip, children): (u64, u64) = match marker {
                0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
                0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
                0x90..=0x9f => (0, u64::from(marker & 0x0f)),
                0xa0..=0xbf => (u64::from(marker & 0x1f), 0),
                0xc1 => {
                    return Err(self.error(format!("reserved byte 0xc1 at byte {}", self.pos - 1)));
                }
                0xc4 | 0xd9 => (self.be(1)?, 0),
                0xc5 | 0xda => (self.be(2)?, 0),
                0xc6 | 0xdb => (self.be(4)?, 0),
                0xc7 => (self.be(1)? + 1, 0),
                0xc8 => (self.be(2)? + 1, 0),
                0xc9 => (self.be(4)? + 1, 0),
                0xca => (4, 0),
                0xcb => (8, 0),
                0xcc | 0xd0 => (1, 0),
                0xcd | 0xd1 => (2, 0),
                0xce | 0xd2 => (4, 0),
                0xcf | 0xd3 => (8, 0),
                0xd4 => (2, 0),
                0xd5 => (3, 0),
                0xd6 => (5, 0),
                0xd7 => (9, 0),
                0xd8 => (17, 0),
                0xdc => (0, self.be(2)?),
                0xdd => (0, self.be(4)?),
                0xde => (0, 2 * self.be(2)?),
                0xdf => (0, 2 * self.be(4)?),
            };
            let skip = usize::try_from(skip).map_err(|_| self.truncated())?;
            self.take(skip)?;
            // Every element takes at least one byte: a count beyond the remaining input is
            // malformed, and checking it here bounds `pending` by the input length.
            let children = usize::try_from(children).map_err(|_| self.truncated())?;
            pending = pending
                .checked_add(children)
                .filter(|&p| p <= self.buf.len() - self.pos)
                .ok_or_else(|| self.truncated())?;
        }
        Ok(&self.buf[start..self.pos])
    }

    fn headers(&mut self) -> Result<Headers> {
        let mut headers = Headers::new();
        // aiosignalr writes an integer (such as `cc 80`) where the headers map belongs, and
        // some writers put nil there; no header is lost by reading either as "no headers", so
        // they are accepted rather than refused.
        match self.peek()? {
            0xc0 => {
                self.pos += 1;
                return Ok(headers);
            }
            0x00..=0x7f | 0xcc..=0xd3 | 0xe0..=0xff => {
                self.skip_value()?;
                return Ok(headers);
            }
            _ => {}
        }
        let len = self.map_len()?;
        for _ in 0..len {
            let key = self.string("a header name")?;
            let value = self.string("a header value")?;
            headers.insert(key, value);
        }
        Ok(headers)
    }
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidMessage {
        protocol: NAME,
        reason: reason.into(),
    }
}

/// Decodes one MessagePack message (the body, without its VarInt length). Unknown message types
/// give `Ok(None)`; extra trailing array items are ignored, as the official implementations do.
pub fn decode(frame: &Bytes) -> Result<Option<HubMessage>> {
    let mut r = Reader::new(frame, "a hub message");
    let len = r.array_len()?;
    if len == 0 {
        return Err(invalid("the message array is empty"));
    }
    let kind = r.uint()?;
    let need = |n: usize, name: &str| {
        if len < n {
            Err(invalid(format!("Invalid payload for {name} message.")))
        } else {
            Ok(())
        }
    };
    let arg = |r: &mut Reader<'_>| -> Result<Arg> {
        let raw = r.skip_value()?;
        Ok(Arg::msgpack_unchecked(frame.slice_ref(raw)))
    };
    let message = match kind {
        1 | 4 => {
            need(
                5,
                if kind == 1 {
                    "Invocation"
                } else {
                    "StreamInvocation"
                },
            )?;
            let headers = r.headers()?;
            let invocation_id = r.opt_str()?;
            let target = r.string("the target")?;
            let count = r.array_len()?;
            let mut arguments = Vec::with_capacity(count.min(64));
            for _ in 0..count {
                arguments.push(arg(&mut r)?);
            }
            let mut stream_ids = Vec::new();
            if len >= 6 {
                let count = r.array_len()?;
                for _ in 0..count {
                    stream_ids.push(r.string("a stream id")?);
                }
            }
            if kind == 1 {
                HubMessage::Invocation(Invocation {
                    headers,
                    invocation_id,
                    target,
                    arguments,
                    stream_ids,
                })
            } else {
                HubMessage::StreamInvocation(StreamInvocation {
                    headers,
                    invocation_id: invocation_id
                        .ok_or_else(|| invalid("a StreamInvocation needs an invocation id"))?,
                    target,
                    arguments,
                    stream_ids,
                })
            }
        }
        2 => {
            need(4, "StreamItem")?;
            let headers = r.headers()?;
            let invocation_id = r.string("the invocation id")?;
            let item = arg(&mut r)?;
            HubMessage::StreamItem(StreamItem {
                headers,
                invocation_id,
                item,
            })
        }
        3 => {
            need(4, "Completion")?;
            let headers = r.headers()?;
            let invocation_id = r.string("the invocation id")?;
            let outcome = match r.uint()? {
                1 => {
                    need(5, "Completion")?;
                    Outcome::Error(r.string("the error")?)
                }
                2 => Outcome::Void,
                3 => {
                    need(5, "Completion")?;
                    Outcome::Result(arg(&mut r)?)
                }
                other => return Err(invalid(format!("Invalid invocation result kind {other}."))),
            };
            HubMessage::Completion(Completion {
                headers,
                invocation_id,
                outcome,
            })
        }
        5 => {
            need(3, "CancelInvocation")?;
            let headers = r.headers()?;
            let invocation_id = r.string("the invocation id")?;
            HubMessage::CancelInvocation(CancelInvocation {
                headers,
                invocation_id,
            })
        }
        6 => HubMessage::Ping,
        7 => {
            need(2, "Close")?;
            let error = r.opt_str()?;
            let allow_reconnect = if len >= 3 { r.boolean()? } else { false };
            HubMessage::Close(Close {
                error,
                allow_reconnect,
            })
        }
        8 => {
            need(2, "Ack")?;
            HubMessage::Ack(Ack {
                sequence_id: r.uint()?,
            })
        }
        9 => {
            need(2, "Sequence")?;
            HubMessage::Sequence(Sequence {
                sequence_id: r.uint()?,
            })
        }
        _ => return Ok(None),
    };
    Ok(Some(message))
}

/// Appends one MessagePack message, prefixed by its VarInt length, to `out`. On error `out` is
/// unchanged.
pub fn encode(message: &HubMessage, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    // Leave room for the longest VarInt, write the body, then move it next to the real prefix.
    out.extend_from_slice(&[0; crate::framing::MAX_VARINT_LEN]);
    let body_start = out.len();
    if let Err(e) = encode_body(message, out) {
        out.truncate(start);
        return Err(e);
    }
    let body_len = out.len() - body_start;
    let mut prefix = [0u8; crate::framing::MAX_VARINT_LEN];
    let n = crate::framing::write_varint(body_len, &mut prefix).ok_or_else(|| {
        out.truncate(start);
        Error::Encode {
            protocol: NAME,
            reason: format!("a message of {body_len}B is too large"),
        }
    })?;
    out[start..start + n].copy_from_slice(&prefix[..n]);
    out.copy_within(body_start.., start + n);
    out.truncate(start + n + body_len);
    Ok(())
}

fn encode_body(message: &HubMessage, out: &mut Vec<u8>) -> Result<()> {
    use rmp::encode as w;
    let kind = u64::from(message.kind());
    // Writing into a Vec cannot fail, so the results of the rmp writers are ignored below.
    match message {
        HubMessage::Invocation(m) => {
            let _ = w::write_array_len(out, if m.stream_ids.is_empty() { 5 } else { 6 });
            let _ = w::write_uint(out, kind);
            write_headers(out, &m.headers);
            match &m.invocation_id {
                Some(id) => {
                    let _ = w::write_str(out, id);
                }
                None => {
                    let _ = w::write_nil(out);
                }
            }
            write_call(out, &m.target, &m.arguments, &m.stream_ids)?;
        }
        HubMessage::StreamInvocation(m) => {
            let _ = w::write_array_len(out, if m.stream_ids.is_empty() { 5 } else { 6 });
            let _ = w::write_uint(out, kind);
            write_headers(out, &m.headers);
            let _ = w::write_str(out, &m.invocation_id);
            write_call(out, &m.target, &m.arguments, &m.stream_ids)?;
        }
        HubMessage::StreamItem(m) => {
            let _ = w::write_array_len(out, 4);
            let _ = w::write_uint(out, kind);
            write_headers(out, &m.headers);
            let _ = w::write_str(out, &m.invocation_id);
            m.item.write_msgpack(out)?;
        }
        HubMessage::Completion(m) => {
            let len = if matches!(m.outcome, Outcome::Void) {
                4
            } else {
                5
            };
            let _ = w::write_array_len(out, len);
            let _ = w::write_uint(out, kind);
            write_headers(out, &m.headers);
            let _ = w::write_str(out, &m.invocation_id);
            match &m.outcome {
                Outcome::Error(error) => {
                    let _ = w::write_uint(out, 1);
                    let _ = w::write_str(out, error);
                }
                Outcome::Void => {
                    let _ = w::write_uint(out, 2);
                }
                Outcome::Result(result) => {
                    let _ = w::write_uint(out, 3);
                    result.write_msgpack(out)?;
                }
            }
        }
        HubMessage::CancelInvocation(m) => {
            let _ = w::write_array_len(out, 3);
            let _ = w::write_uint(out, kind);
            write_headers(out, &m.headers);
            let _ = w::write_str(out, &m.invocation_id);
        }
        HubMessage::Ping => {
            let _ = w::write_array_len(out, 1);
            let _ = w::write_uint(out, kind);
        }
        HubMessage::Close(m) => {
            let _ = w::write_array_len(out, if m.allow_reconnect { 3 } else { 2 });
            let _ = w::write_uint(out, kind);
            match &m.error {
                Some(error) => {
                    let _ = w::write_str(out, error);
                }
                None => {
                    let _ = w::write_nil(out);
                }
            }
            if m.allow_reconnect {
                let _ = w::write_bool(out, true);
            }
        }
        HubMessage::Ack(Ack { sequence_id }) | HubMessage::Sequence(Sequence { sequence_id }) => {
            let _ = w::write_array_len(out, 2);
            let _ = w::write_uint(out, kind);
            let _ = w::write_uint(out, *sequence_id);
        }
    }
    Ok(())
}

fn write_headers(out: &mut Vec<u8>, headers: &Headers) {
    use rmp::encode as w;
    let _ = w::write_map_len(out, headers.len() as u32);
    for (key, value) in headers {
        let _ = w::write_str(out, key);
        let _ = w::write_str(out, value);
    }
}

fn write_call(out: &mut Vec<u8>, target: &str, args: &[Arg], stream_ids: &[String]) -> Result<()> {
    use rmp::encode as w;
    let _ = w::write_str(out, target);
    let _ = w::write_array_len(out, args.len() as u32);
    for arg in args {
        arg.write_msgpack(out)?;
    }
    if !stream_ids.is_empty() {
        let _ = w::write_array_len(out, stream_ids.len() as u32);
        for id in stream_ids {
            let _ = w::write_str(out, id);
        }
    }
    Ok(())
}
