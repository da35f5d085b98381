//! Framing: splitting a byte stream into messages, whatever the read boundaries.
//!
//! JSON messages end with `0x1E`; MessagePack messages start with a VarInt length (7 bits per
//! byte, least significant group first, at most 5 bytes). Both framers enforce the maximum
//! message size before buffering a whole oversized message.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::json::RECORD_SEPARATOR;
use crate::message::HubMessage;
use crate::protocol::Protocol;

/// The official default maximum message size: 32 KiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 32 * 1024;

/// The longest VarInt length prefix.
pub const MAX_VARINT_LEN: usize = 5;

/// The largest length a VarInt prefix can carry: 2³¹ − 1.
pub const MAX_VARINT_VALUE: usize = (1 << 31) - 1;

/// Writes `value` as a VarInt into `out` and returns the number of bytes written, or `None`
/// when the value exceeds [`MAX_VARINT_VALUE`].
pub fn write_varint(value: usize, out: &mut [u8; MAX_VARINT_LEN]) -> Option<usize> {
    if value > MAX_VARINT_VALUE {
        return None;
    }
    let mut rest = value;
    let mut n = 0;
    loop {
        let low = (rest & 0x7f) as u8;
        rest >>= 7;
        if rest == 0 {
            out[n] = low;
            return Some(n + 1);
        }
        out[n] = low | 0x80;
        n += 1;
    }
}

/// Reads a VarInt from the start of `buf`: `Ok(None)` when more bytes are needed, otherwise the
/// value and the number of bytes it took.
pub fn read_varint(buf: &[u8]) -> Result<Option<(usize, usize)>> {
    let mut value: usize = 0;
    for (i, &byte) in buf.iter().take(MAX_VARINT_LEN).enumerate() {
        if i == MAX_VARINT_LEN - 1 && byte > 0x07 {
            return Err(bad_prefix());
        }
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    Ok(None)
}

fn bad_prefix() -> Error {
    Error::MessagePack {
        context: "a length prefix",
        reason: "the length prefix is longer than 5 bytes or exceeds 2147483647".to_owned(),
    }
}

/// Splits a byte stream into frames for one protocol. Feed it whatever arrives with
/// [`push`](Self::push) (or [`push_bytes`](Self::push_bytes), which frames without copying when
/// a read holds whole messages); take complete frames with [`next_frame`](Self::next_frame).
///
/// After a framing error (an oversized message, a bad length prefix) the stream cannot be
/// resynchronised: the framer keeps returning that error and the connection must be closed.
#[derive(Debug)]
pub struct Framer {
    protocol: Protocol,
    max_message_size: usize,
    /// Bytes of a partial message (copied), when a read ended inside one.
    buf: BytesMut,
    /// A received read that frames are sliced from without copying, while `buf` is empty.
    chunk: Bytes,
    /// JSON: how far `buf` was already searched for a separator.
    scanned: usize,
    failed: Option<Failure>,
}

/// Why a framer stopped: kept so every later call reports it again.
#[derive(Debug, Clone, Copy)]
enum Failure {
    TooLarge(usize),
    BadPrefix,
}

/// Where the next frame lies in the buffered bytes.
enum Boundary {
    /// The body is `data[skip..skip + len]`; the frame takes `consumed` bytes.
    Frame {
        skip: usize,
        len: usize,
        consumed: usize,
    },
    /// More bytes are needed.
    Need,
}

impl Framer {
    /// A framer with the given maximum message size (the body, without framing bytes).
    pub fn new(protocol: Protocol, max_message_size: usize) -> Self {
        Self {
            protocol,
            max_message_size,
            buf: BytesMut::new(),
            chunk: Bytes::new(),
            scanned: 0,
            failed: None,
        }
    }

    /// Appends received bytes (copied).
    pub fn push(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.spill_chunk();
            self.buf.extend_from_slice(data);
        }
    }

    /// Appends a received buffer. Whole messages in it are later sliced out of it without a
    /// copy; only a message cut by the end of a read is copied.
    pub fn push_bytes(&mut self, data: Bytes) {
        if self.failed.is_some() {
            return;
        }
        if self.buf.is_empty() && self.chunk.is_empty() {
            self.chunk = data;
        } else {
            self.spill_chunk();
            self.buf.extend_from_slice(&data);
        }
    }

    fn spill_chunk(&mut self) {
        if !self.chunk.is_empty() {
            self.buf.extend_from_slice(&self.chunk);
            self.chunk = Bytes::new();
        }
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.chunk.len()
    }

    /// The protocol this framer splits.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The next complete frame (the message body without framing bytes), or `Ok(None)` when more
    /// bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>> {
        match self.failed {
            Some(Failure::TooLarge(size)) => return Err(self.too_large(size)),
            Some(Failure::BadPrefix) => return Err(bad_prefix()),
            None => {}
        }
        let frame = self.next_frame_inner();
        if let Err(e) = &frame {
            // A framing error leaves no way to find the next message: stop for good.
            self.failed = Some(match e {
                Error::MessageTooLarge { size, .. } => Failure::TooLarge(*size),
                _ => Failure::BadPrefix,
            });
            self.buf = BytesMut::new();
            self.chunk = Bytes::new();
        }
        frame
    }

    /// [`next_frame`](Self::next_frame), handing the frame to `decode` as a range of a buffer
    /// to slice from: a frame cut from a received read takes no reference of its own.
    pub(crate) fn next_frame_with<T>(
        &mut self,
        decode: impl FnOnce(&Bytes, std::ops::Range<usize>) -> T,
    ) -> Result<Option<T>> {
        if self.failed.is_none() && !self.chunk.is_empty() {
            if let Ok(Boundary::Frame {
                skip,
                len,
                consumed,
            }) = self.boundary(&self.chunk, 0)
            {
                let decoded = decode(&self.chunk, skip..skip + len);
                self.chunk.advance(consumed);
                return Ok(Some(decoded));
            }
        }
        // Errors, frames that need more bytes and frames in the copy buffer: as usual.
        Ok(self
            .next_frame()?
            .map(|frame| decode(&frame, 0..frame.len())))
    }

    fn next_frame_inner(&mut self) -> Result<Option<Bytes>> {
        if !self.chunk.is_empty() {
            match self.boundary(&self.chunk, 0)? {
                Boundary::Frame {
                    skip,
                    len,
                    consumed,
                } => {
                    // One reference taken for the frame (a slice), none for what is skipped.
                    let frame = self.chunk.slice(skip..skip + len);
                    self.chunk.advance(consumed);
                    return Ok(Some(frame));
                }
                Boundary::Need => {
                    self.scanned = self.chunk.len();
                    self.spill_chunk();
                    return Ok(None);
                }
            }
        }
        match self.boundary(&self.buf, self.scanned)? {
            Boundary::Frame {
                skip,
                len,
                consumed,
            } => {
                self.scanned = 0;
                let frame = self.buf.split_to(consumed).freeze();
                Ok(Some(frame.slice(skip..skip + len)))
            }
            Boundary::Need => {
                self.scanned = self.buf.len();
                Ok(None)
            }
        }
    }

    fn too_large(&self, size: usize) -> Error {
        Error::MessageTooLarge {
            size,
            max: self.max_message_size,
        }
    }

    /// Finds the next frame in `data`, whose first `scanned` bytes hold no JSON separator.
    fn boundary(&self, data: &[u8], scanned: usize) -> Result<Boundary> {
        match self.protocol {
            Protocol::Json => match memchr::memchr(RECORD_SEPARATOR, &data[scanned..]) {
                Some(offset) => {
                    let end = scanned + offset;
                    if end > self.max_message_size {
                        return Err(self.too_large(end));
                    }
                    Ok(Boundary::Frame {
                        skip: 0,
                        len: end,
                        consumed: end + 1,
                    })
                }
                None if data.len() > self.max_message_size => Err(self.too_large(data.len())),
                None => Ok(Boundary::Need),
            },
            Protocol::MessagePack => {
                let Some((len, prefix)) = read_varint(data)? else {
                    return Ok(Boundary::Need);
                };
                if len > self.max_message_size {
                    return Err(self.too_large(len));
                }
                if data.len() - prefix < len {
                    return Ok(Boundary::Need);
                }
                Ok(Boundary::Frame {
                    skip: prefix,
                    len,
                    consumed: prefix + len,
                })
            }
        }
    }
}

/// Decodes messages of one protocol from a byte stream with arbitrary chunk boundaries:
/// a message split across reads is assembled, many messages in one read all come out.
/// Messages of unknown types are skipped, as the official clients skip them.
#[derive(Debug)]
pub struct MessageReader {
    framer: Framer,
}

impl MessageReader {
    /// A reader with the given maximum message size.
    pub fn new(protocol: Protocol, max_message_size: usize) -> Self {
        Self {
            framer: Framer::new(protocol, max_message_size),
        }
    }

    /// Appends received bytes (copied).
    pub fn push(&mut self, data: &[u8]) {
        self.framer.push(data);
    }

    /// Appends a received buffer; whole messages in it are decoded without copying it.
    pub fn push_bytes(&mut self, data: Bytes) {
        self.framer.push_bytes(data);
    }

    /// Bytes received but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.framer.buffered()
    }

    /// The next complete message, or `Ok(None)` when more bytes are needed.
    ///
    /// A malformed message is reported once and skipped: its frame boundary is known, so the
    /// messages after it still decode. A framing error (an oversized message, a bad length
    /// prefix) ends the stream: every later call reports it again.
    pub fn next_message(&mut self) -> Result<Option<HubMessage>> {
        let protocol = self.framer.protocol();
        while let Some(decoded) = self.framer.next_frame_with(|buf, range| match protocol {
            Protocol::Json => crate::json::decode_in(buf, range),
            Protocol::MessagePack => crate::msgpack::decode(&buf.slice(range)),
        })? {
            if let Some(message) = decoded? {
                return Ok(Some(message));
            }
        }
        Ok(None)
    }
}

/// Decodes every message in a complete payload (a long-polling response, a WebSocket frame, an
/// SSE event). Input that does not end on a message boundary is an error.
pub fn decode_all(
    protocol: Protocol,
    payload: &[u8],
    max_message_size: usize,
) -> Result<Vec<HubMessage>> {
    let mut reader = MessageReader::new(protocol, max_message_size);
    reader.push(payload);
    let mut messages = Vec::new();
    while let Some(message) = reader.next_message()? {
        messages.push(message);
    }
    if reader.buffered() > 0 {
        return Err(Error::Incomplete(match protocol {
            Protocol::Json => "the payload does not end with the record separator 0x1E",
            Protocol::MessagePack => "the payload ends inside a length-prefixed message",
        }));
    }
    Ok(messages)
}
