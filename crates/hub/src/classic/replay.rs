//! A classic connection's recent messages, numbered, so a client that lost its transport gets
//! every message after its cursor when it reconnects or polls again.
//!
//! ASP.NET SignalR 2.x keeps the newest `DefaultMessageBufferSize` (1,000) messages per
//! connection in its message bus and answers `reconnect` and `poll` with everything after the
//! `messageId` the client sends. This buffer does the same per connection, bounded in count
//! and in bytes: when either bound is reached the oldest message goes. The cursor on the wire
//! (`C`, sent back as `messageId`) is a [`Cursor`]: which buffer, and the number of the last
//! message a response carried.

use std::collections::VecDeque;

use bytes::Bytes;

/// The numbered messages of one connection.
#[derive(Debug)]
pub(crate) struct Replay {
    items: VecDeque<(u64, Bytes)>,
    bytes: usize,
    last: u64,
    max_items: usize,
    max_bytes: usize,
}

impl Replay {
    /// An empty buffer keeping at most `max_items` messages and `max_bytes` bytes of them.
    pub(crate) fn new(max_items: usize, max_bytes: usize) -> Self {
        Self {
            items: VecDeque::new(),
            bytes: 0,
            last: 0,
            max_items: max_items.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    /// Adds a message (one `M` item, encoded); returns its number.
    pub(crate) fn push(&mut self, item: Bytes) -> u64 {
        self.last += 1;
        self.bytes += item.len();
        self.items.push_back((self.last, item));
        while self.items.len() > self.max_items
            || (self.bytes > self.max_bytes && self.items.len() > 1)
        {
            if let Some((_, old)) = self.items.pop_front() {
                self.bytes -= old.len();
            }
        }
        self.last
    }

    /// The number of the newest message that adding one of `len` bytes would drop (as
    /// [`push`](Self::push) drops them), if any.
    pub(crate) fn evicted_by(&self, len: usize) -> Option<u64> {
        let (mut count, mut bytes) = (self.items.len() + 1, self.bytes + len);
        let mut newest_dropped = None;
        for (seq, item) in &self.items {
            if !(count > self.max_items || (bytes > self.max_bytes && count > 1)) {
                break;
            }
            count -= 1;
            bytes -= item.len();
            newest_dropped = Some(*seq);
        }
        newest_dropped
    }

    /// The number of the newest message (0 before the first).
    pub(crate) fn last(&self) -> u64 {
        self.last
    }

    /// Where the messages after `cursor` are, oldest first, up to about `max_bytes` (at least
    /// one): their positions (for [`items`](Self::items)), their size in bytes, and the cursor
    /// that follows them. A cursor older than the buffer gets what is left (the rest is gone,
    /// as with the 2.x message bus); a cursor from the future gets nothing.
    pub(crate) fn span_after(
        &self,
        cursor: u64,
        max_bytes: usize,
    ) -> (std::ops::Range<usize>, usize, u64) {
        // Numbers are consecutive (one per push, dropped from the front only): where the
        // cursor points is arithmetic, not a search.
        let start = match self.items.front() {
            Some((first, _)) => usize::try_from(cursor.saturating_add(1).saturating_sub(*first))
                .unwrap_or(usize::MAX)
                .min(self.items.len()),
            None => 0,
        };
        debug_assert_eq!(start, self.items.partition_point(|(seq, _)| *seq <= cursor));
        let mut end = start;
        let mut size = 0;
        let mut next = cursor.min(self.last);
        for (seq, item) in self.items.range(start..) {
            if end > start && size + item.len() > max_bytes {
                break;
            }
            size += item.len();
            end += 1;
            next = *seq;
        }
        (start..end, size, next)
    }

    /// The messages at `span` (from [`span_after`](Self::span_after)), oldest first.
    pub(crate) fn items(&self, span: std::ops::Range<usize>) -> impl Iterator<Item = &Bytes> {
        self.items.range(span).map(|(_, item)| item)
    }

    /// The messages after `cursor` as [`span_after`](Self::span_after) finds them, copied out,
    /// and the cursor that follows them.
    #[cfg(test)]
    pub(crate) fn after(&self, cursor: u64, max_bytes: usize) -> (Vec<Bytes>, u64) {
        let (span, _, next) = self.span_after(cursor, max_bytes);
        (self.items(span).cloned().collect(), next)
    }
}

/// A position in one connection's messages, as the wire carries it: `d-<stream>-B,<n>`, where
/// `stream` (8 hex digits) names the buffer (a new one each time a node opens the connection)
/// and `n` is the number of the last message a response carried. The shape follows a 2.4.3
/// server's cursors (`d-<id>-B,0|C,0|D,1`, §8a); clients treat it as opaque text.
///
/// A cursor naming another buffer (the connection was opened again, on a restarted node or on
/// another node of a fleet) means "nothing of this buffer seen yet": everything it holds is
/// sent, never skipped for a number that counted another buffer's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// The buffer it counts in.
    pub(crate) stream: u32,
    /// The number of the last message seen (0 before the first).
    pub(crate) seq: u64,
}

impl Cursor {
    /// The length of the cursor's text.
    pub(crate) fn text_len(self) -> usize {
        "d-XXXXXXXX-B,".len() + self.seq.checked_ilog10().unwrap_or(0) as usize + 1
    }

    /// Appends the cursor's text, as [`Display`](std::fmt::Display) writes it, without the
    /// formatting machinery (it is written into every envelope).
    pub(crate) fn write_to(self, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        out.extend_from_slice(b"d-");
        for shift in (0..8).rev() {
            out.push(HEX[((self.stream >> (shift * 4)) & 0xF) as usize]);
        }
        out.extend_from_slice(b"-B,");
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut n = self.seq;
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        out.extend_from_slice(&digits[at..]);
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "d-{:08X}-B,{}", self.stream, self.seq)
    }
}

/// A cursor a client sent back (`messageId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientCursor {
    /// One of ours.
    Ours(Cursor),
    /// Shaped as another server's (a 2.x server's `d-…`, or a decimal number): from before a
    /// migration or an upgrade; nothing of this buffer seen yet.
    Foreign,
}

/// Reads a client's `messageId`: ours, another server's, or `None` when it is no cursor at all.
pub(crate) fn read_cursor(text: &str) -> Option<ClientCursor> {
    if let Some(cursor) = parse_cursor(text) {
        return Some(ClientCursor::Ours(cursor));
    }
    let text = text.trim();
    let digits = !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit());
    let other =
        text.starts_with("d-") && text.len() <= 512 && text.bytes().all(|b| b.is_ascii_graphic());
    (digits || other).then_some(ClientCursor::Foreign)
}

/// Reads a cursor sent back by a client (`messageId`), as [`Cursor`] writes it; `None` for
/// anything else.
pub(crate) fn parse_cursor(text: &str) -> Option<Cursor> {
    let rest = text.trim().strip_prefix("d-")?;
    let (stream, seq) = rest.split_once("-B,")?;
    if stream.len() != 8 || !stream.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    if seq.is_empty() || seq.len() > 20 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Cursor {
        stream: u32::from_str_radix(stream, 16).ok()?,
        seq: seq.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u64) -> Bytes {
        Bytes::from(format!("{{\"n\":{n}}}"))
    }

    #[test]
    fn replays_everything_after_a_cursor() {
        let mut r = Replay::new(1000, 1 << 20);
        for n in 1..=5 {
            assert_eq!(r.push(item(n)), n);
        }
        let (items, next) = r.after(2, usize::MAX);
        assert_eq!(items, vec![item(3), item(4), item(5)]);
        assert_eq!(next, 5);
        let (items, next) = r.after(5, usize::MAX);
        assert!(items.is_empty());
        assert_eq!(next, 5);
        // A cursor from the future (another connection's, or forged) gets nothing.
        let (items, next) = r.after(99, usize::MAX);
        assert!(items.is_empty());
        assert_eq!(next, 5);
    }

    #[test]
    fn keeps_the_newest_within_its_bounds() {
        let mut r = Replay::new(1000, 1 << 20);
        for n in 1..=1500 {
            r.push(item(n));
        }
        let (items, next) = r.after(0, usize::MAX);
        assert_eq!(items.len(), 1000);
        assert_eq!(items[0], item(501));
        assert_eq!(next, 1500);

        let mut r = Replay::new(1000, 100);
        for n in 1..=100 {
            r.push(Bytes::from(vec![b'x'; 30 + (n as usize % 2)]));
        }
        assert!(r.bytes <= 100);
        assert_eq!(r.after(0, usize::MAX).1, 100);
    }

    #[test]
    fn a_response_is_bounded_in_size_but_never_empty() {
        let mut r = Replay::new(1000, 1 << 20);
        for n in 1..=10 {
            r.push(item(n));
        }
        let (items, next) = r.after(0, 20);
        assert_eq!(items.len(), 2);
        assert_eq!(next, 2);
        let (items, _) = r.after(0, 1);
        assert_eq!(items.len(), 1);
    }

    #[test]
    fn a_cursor_writes_the_text_it_displays() {
        for (stream, seq) in [
            (0, 0),
            (0x0D8B_0D5E, 7),
            (u32::MAX, u64::MAX),
            (0xA, 1_000_000),
        ] {
            let cursor = Cursor { stream, seq };
            let mut out = Vec::new();
            cursor.write_to(&mut out);
            assert_eq!(out.len(), cursor.text_len());
            assert_eq!(String::from_utf8(out).unwrap(), cursor.to_string());
        }
    }

    #[test]
    fn cursors_parse_strictly() {
        let c = Cursor {
            stream: 0x00AB_CDEF,
            seq: 42,
        };
        assert_eq!(c.to_string(), "d-00ABCDEF-B,42");
        assert_eq!(parse_cursor("d-00ABCDEF-B,42"), Some(c));
        assert_eq!(parse_cursor(" d-00abcdef-B,42 "), Some(c));
        assert_eq!(parse_cursor(""), None);
        assert_eq!(parse_cursor("42"), None);
        assert_eq!(parse_cursor("d-00ABCDEF-B,-1"), None);
        assert_eq!(parse_cursor("d-00ABCDEF-B,"), None);
        assert_eq!(parse_cursor("d-1-B,0"), None);
        assert_eq!(parse_cursor("d-not-ours"), None);
        assert_eq!(parse_cursor("d-00ABCDEF-B,99999999999999999999999"), None);
        assert_eq!(read_cursor("d-00ABCDEF-B,42"), Some(ClientCursor::Ours(c)));
        assert_eq!(read_cursor("17"), Some(ClientCursor::Foreign));
        assert_eq!(
            read_cursor("d-1F2E-B,0|C,12|D,1"),
            Some(ClientCursor::Foreign)
        );
        assert_eq!(read_cursor("not a cursor"), None);
        assert_eq!(read_cursor("d-with space"), None);
    }

    #[test]
    fn evicted_by_names_the_newest_message_a_push_would_drop() {
        let mut r = Replay::new(3, 100);
        assert_eq!(r.evicted_by(10), None);
        for n in 1..=3 {
            r.push(Bytes::from(vec![b'x'; 10]));
            assert_eq!(r.last(), n);
        }
        // Full in count: the oldest goes.
        assert_eq!(r.evicted_by(10), Some(1));
        // Over the bytes: as many of the oldest as it takes, not only the first.
        assert_eq!(r.evicted_by(85), Some(2));
        assert_eq!(r.evicted_by(95), Some(3));
        // What push then does agrees.
        r.push(Bytes::from(vec![b'y'; 85]));
        assert_eq!(r.after(0, usize::MAX).0.len(), 2);
        assert_eq!(r.after(0, usize::MAX).0[0].len(), 10);
    }
}
