//! A gate for what a task polls rarely: see [`Gate`].

use std::sync::Arc;
use std::task::Poll;

/// Polls what it guards (in a classic WebSocket's loop: the socket's reads, the connection's
/// end, keep-alives, everything but new messages; in a pump, the connection's end) only after
/// one of them woke the task, instead of on every wake: a task woken for each new message
/// polled them all again after each one, and polling the socket costs tungstenite a zeroed
/// read buffer (4 KiB) and a read attempt, each cancellation wait a lock. What it guards gets
/// the gate's waker, which notes the wake and wakes the task. One thing may also be polled at
/// once, whatever woke the task ([`poll_now`](Self::poll_now): the socket, while it has
/// requests ready).
pub(crate) struct Gate {
    shared: Arc<GateShared>,
    waker: std::task::Waker,
}

#[derive(Default)]
struct GateShared {
    woken: std::sync::atomic::AtomicBool,
    task: futures_util::task::AtomicWaker,
}

impl std::task::Wake for GateShared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, std::sync::atomic::Ordering::SeqCst);
        self.task.wake();
    }
}

impl Gate {
    /// Open at first: everything is polled once.
    pub(crate) fn new() -> Self {
        let shared = Arc::new(GateShared {
            woken: std::sync::atomic::AtomicBool::new(true),
            task: futures_util::task::AtomicWaker::new(),
        });
        let waker = std::task::Waker::from(shared.clone());
        Self { shared, waker }
    }

    /// Polls `guarded` with the gate's waker now, whatever woke the task. The note of a wake
    /// is not taken (the other things the gate guards still get polled for theirs), and is
    /// set when `guarded` was ready, as [`poll`](Self::poll) does (it may be again).
    pub(crate) fn poll_now<T>(
        &self,
        guarded: impl FnOnce(&mut std::task::Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        let polled = guarded(&mut std::task::Context::from_waker(&self.waker));
        if polled.is_ready() {
            self.shared
                .woken
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        polled
    }

    /// Polls `guarded` with the gate's waker if something it guards woke the task since it
    /// was last polled (or it was ready then: it may be again); `Pending` otherwise.
    pub(crate) fn poll<T>(
        &self,
        cx: &mut std::task::Context<'_>,
        guarded: impl FnOnce(&mut std::task::Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        // Registered before the flag is read: a wake after the read wakes this task.
        self.shared.task.register(cx.waker());
        if !self
            .shared
            .woken
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Poll::Pending;
        }
        self.poll_now(guarded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the gate guards is polled after one of them woke the task, and only then; a
    /// `poll_now` of one of them (the socket, read on in a batch) leaves another's wake noted,
    /// so that one is still polled next (a hub result that came meanwhile is not left waiting).
    #[test]
    fn guarded_things_are_polled_after_their_wake_and_poll_now_keeps_the_note() {
        let gate = Gate::new();
        let task = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&task);
        let result = futures_util::task::AtomicWaker::new();
        let polled = std::cell::Cell::new(0);
        let poll_result = |cx: &mut std::task::Context<'_>| {
            polled.set(polled.get() + 1);
            result.register(cx.waker());
            Poll::<()>::Pending
        };
        assert!(gate.poll(&mut cx, poll_result).is_pending());
        assert_eq!(polled.get(), 1, "open at first");
        assert!(gate.poll(&mut cx, poll_result).is_pending());
        assert_eq!(polled.get(), 1, "nothing guarded woke the task");
        result.wake();
        let read = gate.poll_now(|_| Poll::<()>::Pending);
        assert!(read.is_pending());
        assert!(gate.poll(&mut cx, poll_result).is_pending());
        assert_eq!(polled.get(), 2, "the result's wake was kept");
        assert!(gate.poll_now(|_| Poll::Ready(())).is_ready());
        assert!(gate.poll(&mut cx, poll_result).is_pending());
        assert_eq!(polled.get(), 3, "a ready poll_now leaves the gate open");
    }
}
