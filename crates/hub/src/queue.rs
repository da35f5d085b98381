//! A connection's outbound queue: what the hub has to send a client, waiting for the
//! transport's writer, bounded both in messages and in bytes.
//!
//! Counting messages alone let one connection hold gigabytes (400 `History` replies of ~15 MB
//! each, never read). Here every entry is charged its encoded size until the writer takes it;
//! a queue over its byte budget is full, as a queue over its message count is, and the hub
//! closes such a client as too slow (ASP.NET Core's answer to a client that cannot keep up is
//! the same: it is disconnected rather than buffered for without limit). An entry larger than
//! the whole budget still goes through when the queue is empty, so no single message is
//! refused for its size alone (the message size limits bound that).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use crate::frame::Outbound;

/// What the sending side and the receiving side share: the bytes queued now.
#[derive(Debug, Default)]
struct Shared {
    bytes: AtomicUsize,
    /// Fires when the writer took something (room may have been made).
    taken: Notify,
}

/// The hub's side of a connection's outbound queue.
#[derive(Debug, Clone)]
pub(crate) struct QueueTx {
    tx: mpsc::Sender<(Outbound, usize)>,
    shared: Arc<Shared>,
    max_bytes: usize,
}

/// The transport writer's side of a connection's outbound queue.
#[derive(Debug)]
pub(crate) struct QueueRx {
    rx: mpsc::Receiver<(Outbound, usize)>,
    shared: Arc<Shared>,
}

/// Why an entry was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The queue holds its maximum of messages or of bytes: the client does not keep up.
    Full,
    /// The writer's side is gone: the connection is over.
    Closed,
}

/// A queue of at most `messages` entries and (unless empty) `max_bytes` bytes.
pub(crate) fn queue(messages: usize, max_bytes: usize) -> (QueueTx, QueueRx) {
    let (tx, rx) = mpsc::channel(messages.max(1));
    let shared = Arc::new(Shared::default());
    (
        QueueTx {
            tx,
            shared: shared.clone(),
            max_bytes,
        },
        QueueRx { rx, shared },
    )
}

impl QueueTx {
    /// Whether `size` more bytes fit (always, in an empty queue).
    fn fits(&self, size: usize) -> bool {
        let queued = self.shared.bytes.load(Ordering::Acquire);
        queued == 0 || queued.saturating_add(size) <= self.max_bytes
    }

    /// Queues `out`, charged `size` bytes, unless the queue is full or closed.
    pub(crate) fn try_send(&self, out: Outbound, size: usize) -> Result<(), Refused> {
        if !self.fits(size) {
            return if self.tx.is_closed() {
                Err(Refused::Closed)
            } else {
                Err(Refused::Full)
            };
        }
        // Charged before it is visible to the writer, so the writer never subtracts first.
        self.shared.bytes.fetch_add(size, Ordering::AcqRel);
        match self.tx.try_send((out, size)) {
            Ok(()) => Ok(()),
            Err(error) => {
                self.shared.bytes.fetch_sub(size, Ordering::AcqRel);
                Err(match error {
                    mpsc::error::TrySendError::Full(_) => Refused::Full,
                    mpsc::error::TrySendError::Closed(_) => Refused::Closed,
                })
            }
        }
    }

    /// Queues `out`, charged `size` bytes, waiting for room (messages and bytes) instead of
    /// failing; `false` when the connection is over.
    pub(crate) async fn send(&self, out: Outbound, size: usize) -> bool {
        loop {
            let taken = self.shared.taken.notified();
            tokio::pin!(taken);
            taken.as_mut().enable();
            if self.tx.is_closed() {
                return false;
            }
            if self.fits(size) {
                break;
            }
            // The writer's `taken` wakes this; the sleep re-checks for a closed queue.
            tokio::select! {
                () = &mut taken => {}
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        self.shared.bytes.fetch_add(size, Ordering::AcqRel);
        if self.tx.send((out, size)).await.is_ok() {
            true
        } else {
            self.shared.bytes.fetch_sub(size, Ordering::AcqRel);
            false
        }
    }

    /// The bytes queued now.
    #[cfg(test)]
    pub(crate) fn queued_bytes(&self) -> usize {
        self.shared.bytes.load(Ordering::Acquire)
    }
}

impl QueueRx {
    fn took(&self, (out, size): (Outbound, usize)) -> Outbound {
        self.shared.bytes.fetch_sub(size, Ordering::AcqRel);
        self.shared.taken.notify_waiters();
        out
    }

    /// The next entry; `None` once every sender is gone and the queue is empty.
    pub(crate) async fn recv(&mut self) -> Option<Outbound> {
        let entry = self.rx.recv().await?;
        Some(self.took(entry))
    }

    /// The next entry if one is waiting.
    pub(crate) fn try_recv(&mut self) -> Result<Outbound, mpsc::error::TryRecvError> {
        let entry = self.rx.try_recv()?;
        Ok(self.took(entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn raw(n: usize) -> Outbound {
        Outbound::Raw(Bytes::from(vec![0u8; n]))
    }

    #[tokio::test]
    async fn bounded_in_bytes_and_messages() {
        let (tx, mut rx) = queue(4, 100);
        // One entry over the whole budget passes in an empty queue.
        assert_eq!(tx.try_send(raw(500), 500), Ok(()));
        assert_eq!(tx.try_send(raw(1), 1), Err(Refused::Full));
        rx.recv().await.unwrap();
        assert_eq!(tx.queued_bytes(), 0);
        assert_eq!(tx.try_send(raw(60), 60), Ok(()));
        assert_eq!(tx.try_send(raw(40), 40), Ok(()));
        assert_eq!(tx.try_send(raw(1), 1), Err(Refused::Full));
        rx.try_recv().unwrap();
        assert_eq!(tx.queued_bytes(), 40);
        for _ in 0..3 {
            assert_eq!(tx.try_send(raw(0), 0), Ok(()));
        }
        assert_eq!(tx.try_send(raw(0), 0), Err(Refused::Full), "4 messages");
        drop(rx);
        assert_eq!(tx.try_send(raw(0), 0), Err(Refused::Closed));
    }

    #[tokio::test]
    async fn send_waits_for_bytes_to_be_taken() {
        let (tx, mut rx) = queue(16, 100);
        tx.try_send(raw(90), 90).unwrap();
        let sender = tx.clone();
        let waiting = tokio::spawn(async move { sender.send(raw(50), 50).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "no room for 50 more bytes yet");
        rx.recv().await.unwrap();
        let sent = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("room made within 5 s")
            .unwrap();
        assert!(sent);
        assert_eq!(tx.queued_bytes(), 50);
    }
}
