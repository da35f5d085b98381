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

/// Receivers' wakes held back while this thread handles a batch of messages (a
/// [`DeferWakes`] scope), and whether one is open.
struct Deferred {
    open: bool,
    wakers: Vec<std::task::Waker>,
}

thread_local! {
    static DEFERRED: std::cell::RefCell<Deferred> = const {
        std::cell::RefCell::new(Deferred { open: false, wakers: Vec::new() })
    };
}

/// The most wakes a scope holds back; past that, receivers are woken at once (and a thread
/// keeps at most this many wakers' room, 16 bytes each, between scopes).
const MOST_DEFERRED: usize = 4096;

/// While alive, the receivers of lanes this thread queues into are woken when it ends instead
/// of at each item (issue 19). A connection handles everything it has read in one scope: a
/// broadcast per message woke every recipient's writer per message, and with a second worker
/// idle, tokio woke that worker for them each time; it wrote one message per write and parked
/// again (twice the system calls and context switches of a raw broadcast server, which reads
/// and broadcasts a whole read's messages before its writers run). Now each writer wakes once
/// per batch and writes the batch at once.
///
/// Must not be held across an `.await` (it is `!Send`, so a spawned future cannot hold one):
/// wakes are owed until it drops, and it drops on every path out of its block, unwinding
/// included. A scope opened inside another adds nothing: the outer one wakes.
pub(crate) struct DeferWakes {
    outer: bool,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl DeferWakes {
    pub(crate) fn begin() -> Self {
        let outer = DEFERRED.with(|d| !std::mem::replace(&mut d.borrow_mut().open, true));
        Self {
            outer,
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Drop for DeferWakes {
    fn drop(&mut self) {
        if !self.outer {
            return;
        }
        let mut wakers = DEFERRED.with(|d| {
            let mut d = d.borrow_mut();
            d.open = false;
            std::mem::take(&mut d.wakers)
        });
        // Woken outside the borrow: a wake may queue into a lane of this thread again.
        for waker in wakers.drain(..) {
            waker.wake();
        }
        DEFERRED.with(|d| {
            let mut d = d.borrow_mut();
            if d.wakers.capacity() < wakers.capacity() {
                d.wakers = wakers;
            }
        });
    }
}

/// Wakes `filled`'s receiver now, or when this thread's [`DeferWakes`] scope ends.
fn wake_or_defer(filled: &AtomicWaker) {
    let deferred = DEFERRED.with(|d| {
        let mut d = d.borrow_mut();
        if !d.open || d.wakers.len() >= MOST_DEFERRED {
            return false;
        }
        // `take` during the receiver's registration leaves the wake to the registration
        // (AtomicWaker's contract): nothing to hold back then.
        if let Some(waker) = filled.take() {
            d.wakers.push(waker);
        }
        true
    });
    if !deferred {
        filled.wake();
    }
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
            wake_or_defer(&self.lane.filled);
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

    /// The next item if one is waiting and `wanted` says yes to it; else `None`, and it stays
    /// first in line.
    pub(crate) fn try_recv_if(&mut self, wanted: impl FnOnce(&T) -> bool) -> Option<T> {
        let mut state = self.lane.lock();
        let next = match &state.first {
            Some(first) => first,
            None => state.items.front()?,
        };
        if !wanted(next) {
            return None;
        }
        let item = state.first.take().or_else(|| state.items.pop_front());
        drop(state);
        self.lane.took();
        item
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

    /// A waker that counts its wakes.
    struct Counting(AtomicUsize);

    impl futures_util::task::ArcWake for Counting {
        fn wake_by_ref(this: &Arc<Self>) {
            this.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A receiver waiting on a lane is woken when the scope that queued into it ends, not at
    /// each item, and once; a scope inside it wakes nothing; outside a scope, at once.
    #[test]
    fn wakes_held_back_in_a_scope_come_once_when_it_ends() {
        let (tx, mut rx) = lane::<u32>(8);
        let counting = Arc::new(Counting(AtomicUsize::new(0)));
        let waker = futures_util::task::waker(counting.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let wakes = || counting.0.load(Ordering::SeqCst);
        assert!(rx.poll_recv(&mut cx).is_pending());
        {
            let _batch = DeferWakes::begin();
            tx.try_send(1).unwrap();
            {
                let _inner = DeferWakes::begin();
                tx.try_send(2).unwrap();
            }
            assert_eq!(wakes(), 0, "held back while the outer scope lives");
        }
        assert_eq!(wakes(), 1);
        assert_eq!(rx.try_recv().ok(), Some(1));
        assert_eq!(rx.try_recv().ok(), Some(2));
        assert!(rx.poll_recv(&mut cx).is_pending());
        tx.try_send(3).unwrap();
        assert_eq!(wakes(), 2, "outside a scope: at once");
    }

    /// `try_recv_if` takes the next item only if it is wanted; one it leaves stays first.
    #[test]
    fn try_recv_if_leaves_an_unwanted_item_first() {
        let (tx, mut rx) = lane::<u32>(8);
        assert_eq!(rx.try_recv_if(|_| true), None);
        for n in [2, 4, 5, 6] {
            tx.try_send(n).unwrap();
        }
        let even = |n: &u32| n % 2 == 0;
        assert_eq!(rx.try_recv_if(even), Some(2));
        assert_eq!(rx.try_recv_if(even), Some(4));
        assert_eq!(rx.try_recv_if(even), None);
        assert_eq!(rx.try_recv().ok(), Some(5));
        assert_eq!(rx.try_recv_if(even), Some(6));
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
