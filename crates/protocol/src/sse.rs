//! Server-Sent Events framing, as SignalR uses it: every payload goes out as one event whose
//! `data:` lines hold the payload's lines; the stream opens with a comment line.

use bytes::{Buf, BytesMut};

use crate::error::{Error, Result};

/// What the server writes first on an SSE response (an empty comment), so that proxies and
/// clients see the stream open.
pub const STREAM_PREAMBLE: &[u8] = b":\r\n";

/// Formats one payload as an SSE event: each line of the payload becomes `data: <line>\r\n`,
/// and an empty line ends the event.
pub fn encode_event(payload: &[u8], out: &mut Vec<u8>) {
    for line in payload.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// An incremental SSE reader: push bytes as they arrive, take the data of complete events.
/// Comment lines and fields other than `data` are ignored; an event without data is skipped.
#[derive(Debug)]
pub struct SseReader {
    buf: BytesMut,
    data: Vec<u8>,
    has_data: bool,
    max_event_size: usize,
}

impl SseReader {
    /// A reader that refuses events larger than `max_event_size` bytes.
    pub fn new(max_event_size: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            data: Vec::new(),
            has_data: false,
            max_event_size,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The data of the next complete event (its `data` lines joined by `\n`), or `Ok(None)` when
    /// more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<Vec<u8>>> {
        while let Some(end) = memchr::memchr(b'\n', &self.buf) {
            let mut line = self.buf.split_to(end + 1);
            line.truncate(end);
            if line.last() == Some(&b'\r') {
                line.truncate(end - 1);
            }
            if line.is_empty() {
                if std::mem::take(&mut self.has_data) {
                    return Ok(Some(std::mem::take(&mut self.data)));
                }
                continue;
            }
            if line[0] == b':' {
                continue;
            }
            let (field, value) = match memchr::memchr(b':', &line) {
                Some(i) => {
                    let mut value = &line[i + 1..];
                    if value.first() == Some(&b' ') {
                        value = &value[1..];
                    }
                    (&line[..i], value)
                }
                None => (&line[..], &b""[..]),
            };
            if field == b"data" {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
                if self.data.len() > self.max_event_size {
                    let size = self.data.len();
                    self.data.clear();
                    self.buf.clear();
                    return Err(Error::MessageTooLarge {
                        size,
                        max: self.max_event_size,
                    });
                }
            }
        }
        if self.buf.len() > self.max_event_size {
            let size = self.buf.len();
            self.buf.advance(size);
            return Err(Error::MessageTooLarge {
                size,
                max: self.max_event_size,
            });
        }
        Ok(None)
    }
}
