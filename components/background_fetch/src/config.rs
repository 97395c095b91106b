//! The engine's settings: its scheduler, throttling and retry policy.

use std::time::Duration;

/// Retry policy for `GET` records whose resource is temporarily unavailable. The spec retries
/// forever with no delay (outline §11.B.8, spec issue 26 leaves it open); we wait with
/// exponential backoff and optional jitter, and may give up.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Delay before the first retry after an attempt that made no progress.
    pub initial_delay: Duration,
    /// Upper bound of the delay.
    pub max_delay: Duration,
    /// Each further failed attempt multiplies the delay by this.
    pub multiplier: f64,
    /// Fraction of the delay randomised away (0 = none, 0.5 = up to half).
    pub jitter: f64,
    /// Give up (`fetch-error`) after this many consecutive attempts that made no progress.
    /// `None` retries forever, as the spec does.
    pub max_attempts: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.2,
            max_attempts: Some(20),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `failures` (1 = first retry), with `random` in [0, 1).
    pub fn delay(&self, failures: u32, random: f64) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let base = self.initial_delay.as_secs_f64()
            * self
                .multiplier
                .max(1.0)
                .powi(failures.saturating_sub(1).min(64) as i32);
        let capped = base.min(self.max_delay.as_secs_f64());
        let jittered = capped * (1.0 - self.jitter.clamp(0.0, 1.0) * random);
        Duration::from_secs_f64(jittered.max(0.0))
    }
}

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Records of one background fetch fetched at once (the spec fetches all in parallel;
    /// Chromium does one).
    pub max_parallel_per_fetch: usize,
    /// Records fetched at once over every background fetch.
    pub max_parallel_global: usize,
    /// Minimum time between two progress updates of a background fetch (the spec's issue:
    /// "I need to debounce this"). A change of `result` or `recordsAvailable` is delivered at
    /// once.
    pub progress_interval: Duration,
    /// Retries of temporarily unavailable `GET` records.
    pub retry: RetryPolicy,
    /// Size of the slices read from the store when streaming a body to script or to the network.
    pub read_chunk_size: usize,
    /// Whether [`crate::Engine::start`] resumes the fetches it restores (and fires the events a previous
    /// process did not finish). When false, they are restored (visible to `get()`, `getIds()`,
    /// `match()`, `abort()`) but stay idle until [`crate::Engine::resume_restored`].
    pub resume_on_start: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_parallel_per_fetch: 4,
            max_parallel_global: 16,
            progress_interval: Duration::from_millis(100),
            retry: RetryPolicy::default(),
            read_chunk_size: 64 * 1024,
            resume_on_start: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_cap() {
        let p = RetryPolicy {
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.0,
            max_attempts: None,
        };
        let d: Vec<_> = (0..7).map(|n| p.delay(n, 0.5).as_secs()).collect();
        assert_eq!(d, vec![0, 1, 2, 4, 8, 10, 10]);
        let j = RetryPolicy { jitter: 0.5, ..p };
        assert_eq!(j.delay(1, 0.999_999).as_millis(), 500);
        assert_eq!(j.delay(1, 0.0).as_millis(), 1000);
    }
}
