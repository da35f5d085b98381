//! Stateful reconnect bookkeeping, shared by the hub and the client: numbering of sequenced
//! messages, the replay buffer with its byte limit, and duplicate detection after a reconnect.
//! See [`HubMessage::is_sequenced`](crate::HubMessage::is_sequenced) for which messages count.

use std::collections::VecDeque;

use bytes::Bytes;

/// The default replay buffer size of the official implementations: 100,000 bytes.
pub const DEFAULT_BUFFER_SIZE: usize = 100_000;

/// What one side has sent and not yet seen acknowledged.
#[derive(Debug)]
pub struct Replay {
    /// Stateful reconnect is in force for this connection (negotiated, protocol version 2,
    /// WebSockets).
    pub active: bool,
    next: u64,
    buffer: VecDeque<(u64, Bytes)>,
    bytes: usize,
    limit: usize,
}

impl Replay {
    /// An empty buffer that counts as full at `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            active: false,
            next: 1,
            buffer: VecDeque::new(),
            bytes: 0,
            limit,
        }
    }

    /// Whether the buffer is full: sending must wait for an acknowledgement.
    pub fn is_full(&self) -> bool {
        self.bytes >= self.limit
    }

    /// Numbers and keeps a sequenced message about to be sent.
    pub fn record(&mut self, bytes: Bytes) -> u64 {
        let id = self.next;
        self.next += 1;
        self.bytes += bytes.len();
        self.buffer.push_back((id, bytes));
        id
    }

    /// Frees everything up to and including `id`.
    pub fn ack(&mut self, id: u64) {
        while self.buffer.front().is_some_and(|(seq, _)| *seq <= id) {
            if let Some((_, bytes)) = self.buffer.pop_front() {
                self.bytes -= bytes.len();
            }
        }
    }

    /// The id the next `Sequence` message carries: the oldest unacknowledged message, or the
    /// next id when nothing is pending.
    pub fn resend_from(&self) -> u64 {
        self.buffer.front().map_or(self.next, |(seq, _)| *seq)
    }

    /// The unacknowledged messages, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &Bytes> {
        self.buffer.iter().map(|(_, b)| b)
    }
}

/// Counts received sequenced messages and drops repeats after a reconnect.
#[derive(Debug, Default)]
pub struct Received {
    /// The highest id processed.
    pub last_processed: u64,
    /// The id of the last sequenced message that arrived.
    current: u64,
    /// After a reconnect: messages are dropped until the peer's `Sequence` arrives.
    awaiting_sequence: bool,
    /// The last id acknowledged to the peer.
    pub last_acked: u64,
}

impl Received {
    /// The socket came back: wait for the peer's Sequence.
    pub fn resumed(&mut self) {
        self.awaiting_sequence = true;
    }

    /// A sequenced message arrived: `true` to process it, `false` to drop it (a repeat, or
    /// sent before the peer's Sequence).
    pub fn accept(&mut self) -> bool {
        if self.awaiting_sequence {
            return false;
        }
        self.current += 1;
        if self.current <= self.last_processed {
            return false;
        }
        self.last_processed = self.current;
        true
    }

    /// The peer's `Sequence`: replays start at `id`. Errors when the peer claims to resend from
    /// beyond what arrived.
    pub fn sequence(&mut self, id: u64) -> Result<(), &'static str> {
        if id > self.last_processed + 1 {
            return Err("Sequence ID greater than amount of messages we've received.");
        }
        self.current = id.saturating_sub(1);
        self.awaiting_sequence = false;
        Ok(())
    }

    /// The id to acknowledge now, if anything new arrived since the last Ack.
    pub fn to_ack(&mut self) -> Option<u64> {
        (self.last_processed > self.last_acked).then(|| {
            self.last_acked = self.last_processed;
            self.last_processed
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_numbers_limits_and_frees() {
        let mut r = Replay::new(10);
        assert_eq!(r.resend_from(), 1);
        assert_eq!(r.record(Bytes::from_static(b"aaaa")), 1);
        assert_eq!(r.record(Bytes::from_static(b"bbbb")), 2);
        assert!(!r.is_full());
        assert_eq!(r.record(Bytes::from_static(b"cccc")), 3);
        assert!(r.is_full());
        assert_eq!(r.resend_from(), 1);
        r.ack(2);
        assert!(!r.is_full());
        assert_eq!(r.resend_from(), 3);
        assert_eq!(r.pending().count(), 1);
        r.ack(3);
        assert_eq!(r.resend_from(), 4);
    }

    #[test]
    fn repeats_after_a_reconnect_are_dropped() {
        let mut rx = Received::default();
        assert!(rx.accept() && rx.accept() && rx.accept());
        assert_eq!(rx.to_ack(), Some(3));
        assert_eq!(rx.to_ack(), None);
        rx.resumed();
        assert!(!rx.accept(), "nothing before the peer's Sequence");
        rx.sequence(2).unwrap();
        assert!(!rx.accept(), "2 was seen");
        assert!(!rx.accept(), "3 was seen");
        assert!(rx.accept(), "4 is new");
        assert_eq!(rx.last_processed, 4);
        assert!(rx.sequence(9).is_err());
    }
}
