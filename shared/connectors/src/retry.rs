//! Retries of the entries a batch call refused: exponential backoff with full jitter.

use std::time::Duration;

use rand::{Rng, SeedableRng};

/// How often and how patiently a sink retries the entries of a batch call that the service
/// refused (throttling, internal errors). The SDK's own retries cover failed *calls*; these cover
/// calls that succeeded with some failed entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Calls in total, the first one included (at least 1).
    pub max_attempts: u32,
    /// The backoff cap of the first retry; it doubles with every retry.
    pub base_delay: Duration,
    /// The largest backoff cap.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 8 attempts, 50 ms doubling up to 5 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first retry): uniformly random in
    /// `[0, min(max_delay, base_delay * 2^(retry-1))]` ("full jitter"), so that stages throttled
    /// together do not retry together.
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX);
        let cap = self.base_delay.saturating_mul(factor).min(self.max_delay);
        let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(u64::from(seed) ^ u64::from(retry));
        Duration::from_millis(rng.random_range(0..=cap_ms))
    }

    /// Whether another call may follow call number `attempt` (1 for the first call).
    pub fn may_retry(&self, attempt: u32) -> bool {
        attempt < self.max_attempts.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_the_doubling_cap_and_the_maximum() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(70),
        };
        for _ in 0..100 {
            assert!(policy.delay(1) <= Duration::from_millis(10));
            assert!(policy.delay(3) <= Duration::from_millis(40));
            assert!(policy.delay(40) <= Duration::from_millis(70));
        }
        assert!(policy.may_retry(4));
        assert!(!policy.may_retry(5));
    }
}
