//! A one-way flag that tasks can wait for: `CancellationToken`'s `cancel`, `cancelled` and
//! `is_cancelled` for a per-connection flag with no parent and no children, kept inline
//! (a `CancellationToken` allocates a tree node of about 100 bytes; every connection has two).

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub(crate) struct Latch {
    set: AtomicBool,
    notify: Notify,
}

impl Latch {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Sets the flag and wakes every task waiting in [`cancelled`](Self::cancelled).
    pub(crate) fn cancel(&self) {
        if !self.set.swap(true, Ordering::SeqCst) {
            self.notify.notify_waiters();
        }
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    /// Completes once the flag is set (at once if it is).
    pub(crate) async fn cancelled(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the check, so a `cancel` in between still wakes this.
        notified.as_mut().enable();
        if self.is_cancelled() {
            return;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_waiters_and_stays_set() {
        let latch = Arc::new(Latch::new());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let latch = latch.clone();
                tokio::spawn(async move { latch.cancelled().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!latch.is_cancelled());
        latch.cancel();
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("woken within 5 s")
                .unwrap();
        }
        assert!(latch.is_cancelled());
        tokio::time::timeout(Duration::from_secs(5), latch.cancelled())
            .await
            .expect("a set latch completes at once");
    }
}
