//! Reconnect policies: the official default, exponential backoff with full jitter, or your own.

use std::time::Duration;

/// What a policy knows when asked for the next delay.
#[derive(Debug, Clone)]
pub struct RetryContext {
    /// How many retries were made so far in this episode (0 the first time).
    pub previous_retry_count: u32,
    /// Time since the connection was lost (or the first start attempt began).
    pub elapsed: Duration,
    /// Why the connection was lost or the last attempt failed.
    pub reason: String,
}

/// Decides whether and when to try again.
pub trait RetryPolicy: Send + Sync {
    /// The delay before the next attempt, or `None` to give up.
    fn next_delay(&self, context: &RetryContext) -> Option<Duration>;
}

/// Fixed delays, then give up. The default is the official clients': 0, 2, 10 and 30 seconds.
#[derive(Debug, Clone)]
pub struct Delays(pub Vec<Duration>);

impl Default for Delays {
    fn default() -> Self {
        Self(
            [0, 2, 10, 30]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
        )
    }
}

impl RetryPolicy for Delays {
    fn next_delay(&self, context: &RetryContext) -> Option<Duration> {
        self.0.get(context.previous_retry_count as usize).copied()
    }
}

/// Never retry.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRetry;

impl RetryPolicy for NoRetry {
    fn next_delay(&self, _: &RetryContext) -> Option<Duration> {
        None
    }
}

/// Exponential backoff with full jitter: a random delay in `[0, min(max, base × 2^n)]`, until
/// `give_up_after` has elapsed (if set). Jitter spreads the reconnects of many clients after a
/// hub restart so they do not arrive as one storm.
#[derive(Debug, Clone)]
pub struct ExponentialBackoff {
    /// The first ceiling.
    pub base: Duration,
    /// The largest ceiling.
    pub max: Duration,
    /// Stop trying after this long (None: never stop).
    pub give_up_after: Option<Duration>,
}

impl Default for ExponentialBackoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
            give_up_after: None,
        }
    }
}

impl RetryPolicy for ExponentialBackoff {
    fn next_delay(&self, context: &RetryContext) -> Option<Duration> {
        if self
            .give_up_after
            .is_some_and(|limit| context.elapsed >= limit)
        {
            return None;
        }
        let exp = context.previous_retry_count.min(30);
        let ceiling = self.base.saturating_mul(1u32 << exp.min(20)).min(self.max);
        let mut random = [0u8; 8];
        let _ = getrandom::fill(&mut random);
        let fraction = u64::from_le_bytes(random) as f64 / u64::MAX as f64;
        Some(ceiling.mul_f64(fraction))
    }
}

impl<F> RetryPolicy for F
where
    F: Fn(&RetryContext) -> Option<Duration> + Send + Sync,
{
    fn next_delay(&self, context: &RetryContext) -> Option<Duration> {
        self(context)
    }
}
