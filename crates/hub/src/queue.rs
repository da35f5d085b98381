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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

use crate::frame::Outbound;

/// A small bounded channel with one receiver: a mutex around a `VecDeque` that allocates
/// nothing until the first item, a waker for the receiver and a [`Notify`] for senders. Every connection has two (what its
/// transport received, what it has to send), so they are kept small: tokio's `mpsc` allocates a
/// block of 32 slots and a cache-padded channel up front, about 2 KB per channel.
#[derive(Debug)]
struct Lane<T> {
    state: Mutex<LaneState<T>>,
    /// Wakes the receiver (there is one), which registers before it waits: an [`AtomicWaker`]
    /// takes no lock to register or to wake, where a `Notify` takes its waiter list's lock for
    /// both, once per message per connection (issue 19).
    filled: AtomicWaker,
    /// Wakes senders waiting for room (and [`QueueTx::send`] waiting for bytes to be taken).
    taken: Notify,
    /// A sender waits on `taken`: the receiver notifies after taking something.
    room_wanted: AtomicBool,
    /// The bytes queued now (outbound queues only).
    bytes: AtomicUsize,
}

#[derive(Debug)]
struct LaneState<T> {
    /// The oldest item when it was queued alone (the common case: no allocation per item).
    first: Option<T>,
    /// Items queued behind `first`, in order.
    items: VecDeque<T>,
    senders: usize,
    receiver: bool,
}

/// The sending side of a [`lane`]; clones share it.
#[derive(Debug)]
pub(crate) struct LaneTx<T> {
    lane: Arc<Lane<T>>,
    capacity: usize,
}

/// The receiving side of a [`lane`].
#[derive(Debug)]
pub(crate) struct LaneRx<T> {
    lane: Arc<Lane<T>>,
}

/// A channel of at most `capacity` (at least 1) items.
pub(crate) fn lane<T>(capacity: usize) -> (LaneTx<T>, LaneRx<T>) {
    let lane = Arc::new(Lane {
        state: Mutex::new(LaneState {
            first: None,
            items: VecDeque::new(),
            senders: 1,
            receiver: true,
        }),
        filled: AtomicWaker::new(),
        taken: Notify::new(),
        room_wanted: AtomicBool::new(false),
        bytes: AtomicUsize::new(0),
    });
    (
        LaneTx {
            lane: lane.clone(),
            capacity: capacity.max(1),
        },
        LaneRx { lane },
    )
}

/// The capacity a `VecDeque` takes at its first allocation (4, for items of up to 1 KiB, as
/// the lanes' are): a drained lane keeps a buffer no larger.
const SMALLEST_BUFFER: usize = 4;

impl<T> LaneState<T> {
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.items.len()
    }
}

impl<T> Lane<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, LaneState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After taking something: wakes the senders waiting for room, if any.
    fn took(&self) {
        if self.room_wanted.load(Ordering::SeqCst) && self.room_wanted.swap(false, Ordering::SeqCst)
        {
            self.taken.notify_waiters();
        }
    }
}

impl<T> LaneTx<T> {
    /// Whether the receiver is gone.
    pub(crate) fn is_closed(&self) -> bool {
        !self.lane.lock().receiver
    }

    /// Queues `item` unless the channel is full (`Err(Full)`) or its receiver gone.
    pub(crate) fn try_send(&self, item: T) -> Result<(), (Refused, T)> {
        let mut state = self.lane.lock();
        if !state.receiver {
            return Err((Refused::Closed, item));
        }
        if state.len() >= self.capacity {
            return Err((Refused::Full, item));
        }
        let was_empty = state.len() == 0;
        if was_empty {
            state.first = Some(item);
        } else {
            state.items.push_back(item);
        }
        drop(state);
        if was_empty {
            // The receiver waits only after seeing the queue empty.
            self.lane.filled.wake();
        }
        Ok(())
    }

    /// Queues `item`, waiting for room; `Err(item)` when the receiver is gone.
    pub(crate) async fn send(&self, mut item: T) -> Result<(), T> {
        loop {
            let taken = self.lane.taken.notified();
            tokio::pin!(taken);
            taken.as_mut().enable();
            self.lane.room_wanted.store(true, Ordering::SeqCst);
            match self.try_send(item) {
                Ok(()) => return Ok(()),
                Err((Refused::Closed, back)) => return Err(back),
                Err((Refused::Full, back)) => item = back,
            }
            taken.await;
        }
    }
}

impl<T> Clone for LaneTx<T> {
    fn clone(&self) -> Self {
        self.lane.lock().senders += 1;
        Self {
            lane: self.lane.clone(),
            capacity: self.capacity,
        }
    }
}

impl<T> Drop for LaneTx<T> {
    fn drop(&mut self) {
        let mut state = self.lane.lock();
        state.senders -= 1;
        let last = state.senders == 0;
        drop(state);
        if last {
            self.lane.filled.wake();
        }
    }
}

impl<T> LaneRx<T> {
    /// The next item; `None` once every sender is gone and the channel is empty.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next item: registers the task to be woken when the lane is empty.
    fn poll_recv(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
        use std::task::Poll;
        match self.try_recv() {
            Ok(item) => return Poll::Ready(Some(item)),
            Err(TryRecvError::Disconnected) => return Poll::Ready(None),
            Err(TryRecvError::Empty) => {}
        }
        // Registered, then checked again: a sender that queued in between finds the waker
        // (it wakes after queueing into an empty lane).
        self.lane.filled.register(cx.waker());
        match self.try_recv() {
            Ok(item) => Poll::Ready(Some(item)),
            Err(TryRecvError::Disconnected) => Poll::Ready(None),
            Err(TryRecvError::Empty) => Poll::Pending,
        }
    }

    /// The next item if one is waiting.
    pub(crate) fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.lane.lock();
        match state.first.take().or_else(|| state.items.pop_front()) {
            Some(item) => {
                drop(state);
                self.lane.took();
                Ok(item)
            }
            None if state.senders == 0 => Err(TryRecvError::Disconnected),
            None => {
                // Drained: a connection keeps no buffer past the smallest one (4 items) once a
                // burst is over. Freeing that one too cost an allocation per burst of two
                // items, about every message at 10 receivers (issue 19).
                if state.items.capacity() > SMALLEST_BUFFER {
                    state.items = VecDeque::new();
                }
                Err(TryRecvError::Empty)
            }
        }
    }
}

impl<T> Drop for LaneRx<T> {
    fn drop(&mut self) {
        let mut state = self.lane.lock();
        state.receiver = false;
        let first = state.first.take();
        let items = std::mem::take(&mut state.items);
        drop(state);
        drop((first, items));
        self.lane.taken.notify_waiters();
    }
}

/// Why nothing was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TryRecvError {
    /// Nothing is waiting now.
    Empty,
    /// Nothing is waiting, and every sender is gone.
    Disconnected,
}

/// The hub's side of a connection's outbound queue.
#[derive(Debug, Clone)]
pub(crate) struct QueueTx {
    tx: LaneTx<(Outbound, usize)>,
    max_bytes: usize,
}

/// The transport writer's side of a connection's outbound queue.
#[derive(Debug)]
pub(crate) struct QueueRx {
    rx: LaneRx<(Outbound, usize)>,
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
    let (tx, rx) = lane(messages);
    (QueueTx { tx, max_bytes }, QueueRx { rx })
}

impl QueueTx {
    fn bytes(&self) -> &AtomicUsize {
        &self.tx.lane.bytes
    }

    /// Whether `size` more bytes fit (always, in an empty queue).
    fn fits(&self, size: usize) -> bool {
        let queued = self.bytes().load(Ordering::SeqCst);
        queued == 0 || queued.saturating_add(size) <= self.max_bytes
    }

    /// Queues `out`, charged `size` bytes, unless the queue is full or closed.
    pub(crate) fn try_send(&self, out: Outbound, size: usize) -> Result<(), Refused> {
        self.try_send_back(out, size)
            .map_err(|(refused, _)| refused)
    }

    /// [`try_send`](Self::try_send), handing `out` back when it is refused.
    fn try_send_back(&self, out: Outbound, size: usize) -> Result<(), (Refused, Outbound)> {
        if !self.fits(size) {
            let refused = if self.tx.is_closed() {
                Refused::Closed
            } else {
                Refused::Full
            };
            return Err((refused, out));
        }
        // Charged before it is visible to the writer, so the writer never subtracts first.
        self.bytes().fetch_add(size, Ordering::AcqRel);
        match self.tx.try_send((out, size)) {
            Ok(()) => Ok(()),
            Err((refused, (out, _))) => {
                self.bytes().fetch_sub(size, Ordering::AcqRel);
                Err((refused, out))
            }
        }
    }

    /// Queues `out`, charged `size` bytes, waiting for room (messages and bytes) as long as the
    /// writer keeps taking entries: `Err(Full)` once it has taken none for `stall` (the client
    /// does not keep up; nothing is queued), `Err(Closed)` when the writer's side is gone or
    /// `over()` says the connection is over (checked at least every 200 ms).
    pub(crate) async fn send_within(
        &self,
        mut out: Outbound,
        size: usize,
        stall: Duration,
        over: impl Fn() -> bool,
    ) -> Result<(), Refused> {
        // There is room (the common case): no wait to register, no clock to read.
        match self.try_send_back(out, size) {
            Ok(()) => return Ok(()),
            Err((Refused::Closed, _)) => return Err(Refused::Closed),
            Err((Refused::Full, back)) => out = back,
        }
        let lane = &self.tx.lane;
        let mut deadline = tokio::time::Instant::now() + stall;
        loop {
            let taken = lane.taken.notified();
            tokio::pin!(taken);
            taken.as_mut().enable();
            // Set before the bytes are read: the writer, which subtracts before it reads this,
            // either sees it and wakes this, or has subtracted already.
            lane.room_wanted.store(true, Ordering::SeqCst);
            if over() {
                return Err(Refused::Closed);
            }
            match self.try_send_back(out, size) {
                Ok(()) => return Ok(()),
                Err((Refused::Closed, _)) => return Err(Refused::Closed),
                Err((Refused::Full, back)) => out = back,
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(Refused::Full);
            }
            // The sleep re-checks for a closed queue and the deadline.
            tokio::select! {
                () = &mut taken => deadline = tokio::time::Instant::now() + stall,
                () = tokio::time::sleep((deadline - now).min(Duration::from_millis(200))) => {}
            }
        }
    }

    /// The bytes queued now.
    #[cfg(test)]
    pub(crate) fn queued_bytes(&self) -> usize {
        self.bytes().load(Ordering::Acquire)
    }
}

impl QueueRx {
    fn took(&self, (out, size): (Outbound, usize)) -> Outbound {
        let lane = &self.rx.lane;
        lane.bytes.fetch_sub(size, Ordering::SeqCst);
        lane.took();
        out
    }

    /// The next entry; `None` once every sender is gone and the queue is empty.
    pub(crate) async fn recv(&mut self) -> Option<Outbound> {
        let entry = self.rx.recv().await?;
        Some(self.took(entry))
    }

    /// The next entry if one is waiting.
    pub(crate) fn try_recv(&mut self) -> Result<Outbound, TryRecvError> {
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
    async fn a_lane_waits_for_room_and_ends_with_either_side() {
        let (tx, mut rx) = lane::<u32>(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(tx.try_send(3), Err((Refused::Full, 3)));
        let sender = tx.clone();
        let waiting = tokio::spawn(async move { sender.send(3).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "no room for a third item yet");
        assert_eq!(rx.recv().await, Some(1));
        let sent = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("room made within 5 s")
            .unwrap();
        assert_eq!(sent, Ok(()));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        // Every sender gone: the receiver ends; a receiver gone: sends fail.
        drop(tx);
        let ended = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(ended, Ok(None));
        let (tx, rx) = lane::<u32>(1);
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.send(1).await, Err(1));
    }

    #[tokio::test]
    async fn send_waits_for_bytes_to_be_taken() {
        let (tx, mut rx) = queue(16, 100);
        tx.try_send(raw(90), 90).unwrap();
        let sender = tx.clone();
        let waiting = tokio::spawn(async move {
            sender
                .send_within(raw(50), 50, Duration::from_secs(60), || false)
                .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "no room for 50 more bytes yet");
        rx.recv().await.unwrap();
        let sent = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("room made within 5 s")
            .unwrap();
        assert_eq!(sent, Ok(()));
        assert_eq!(tx.queued_bytes(), 50);
    }

    #[tokio::test]
    async fn send_within_gives_up_when_nothing_is_taken_or_the_connection_is_over() {
        // Nothing taken for the stall limit: refused as full, nothing queued.
        let (tx, _rx) = queue(1, 100);
        tx.try_send(raw(1), 1).unwrap();
        let sent = tokio::time::timeout(
            Duration::from_secs(5),
            tx.send_within(raw(1), 1, Duration::from_millis(100), || false),
        )
        .await
        .expect("given up within 5 s");
        assert_eq!(sent, Err(Refused::Full));
        assert_eq!(tx.queued_bytes(), 1);
        // The connection over (its writer still there): refused as closed.
        let over = std::sync::atomic::AtomicBool::new(false);
        let waiting = tx.send_within(raw(1), 1, Duration::from_secs(60), || {
            over.load(Ordering::SeqCst)
        });
        let ending = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            over.store(true, Ordering::SeqCst);
        };
        let (sent, ()) = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(waiting, ending)
        })
        .await
        .expect("given up within 5 s of the end");
        assert_eq!(sent, Err(Refused::Closed));
    }
}
