//! Retries of the entries a batch call refused: exponential backoff with full jitter.

use std::future::Future;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use shardflow_stage::SinkError;
use tracing::debug;

use crate::error::sink_error;

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

/// An entry a batch call did not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryFailure {
    /// The entry's index in the call.
    pub index: usize,
    /// Whether sending it again may succeed (throttling, an internal error) or not (the
    /// service refused its content).
    pub retriable: bool,
    /// The service's code and message.
    pub message: String,
}

/// The failure of the entry at `index` of a call (`None`: the answer named an entry that was not
/// sent): retriable unless the sender was at fault.
pub(crate) fn entry_failure(
    index: Option<usize>,
    sender_fault: bool,
    code: &str,
    message: Option<&str>,
) -> EntryFailure {
    EntryFailure {
        index: index.unwrap_or(usize::MAX),
        retriable: !sender_fault,
        message: format!("{code}: {}", message.unwrap_or("")),
    }
}

/// Sends `entries` with `call` (one batch call, answering the entries it did not accept), then
/// sends again only the failed ones after a backoff, until all are accepted. Fails at once on an
/// entry that cannot succeed, on a failed call, or when `policy` allows no more attempts.
pub(crate) async fn send_with_retries<E, F, Fut>(
    sink: &str,
    operation: &str,
    policy: &RetryPolicy,
    mut entries: Vec<E>,
    mut call: F,
) -> Result<(), SinkError>
where
    F: FnMut(Vec<E>) -> Fut,
    Fut: Future<Output = Result<(Vec<E>, Vec<EntryFailure>), SinkError>>,
{
    let mut attempt = 1;
    loop {
        // The call hands the entries back so that the failed ones can be sent again.
        let (sent, failures) = call(entries).await?;
        if failures.is_empty() {
            return Ok(());
        }
        if let Some(refused) = failures.iter().find(|f| !f.retriable) {
            return Err(sink_error(
                sink,
                &format!("{operation} refused an entry"),
                &refused.message,
            ));
        }
        if !policy.may_retry(attempt) {
            return Err(sink_error(
                sink,
                &format!(
                    "{operation}: {} entries still failing after {attempt} attempts",
                    failures.len()
                ),
                &failures[0].message,
            ));
        }
        let mut failed: Vec<usize> = failures.iter().map(|f| f.index).collect();
        failed.sort_unstable();
        entries = sent
            .into_iter()
            .enumerate()
            .filter(|(i, _)| failed.binary_search(i).is_ok())
            .map(|(_, e)| e)
            .collect();
        if entries.is_empty() {
            return Err(sink_error(
                sink,
                operation,
                format!("the answer names failed entries that were not sent: {:?}", failed),
            ));
        }
        debug!(sink, operation, retrying = entries.len(), attempt, error = %failures[0].message, "entries refused; retrying them");
        tokio::time::sleep(policy.delay(attempt)).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeSet;

    use super::*;

    fn quick(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
            .block_on(f)
    }

    #[test]
    fn only_the_failed_entries_are_sent_again_until_all_are_accepted() {
        // The service throttles every entry divisible by 3 the first time and entry 6 twice.
        let calls = RefCell::new(Vec::<Vec<u32>>::new());
        let result = block_on(send_with_retries(
            "t",
            "Put",
            &quick(5),
            (0..10).collect(),
            |entries: Vec<u32>| {
                let seen = calls.borrow().iter().flatten().filter(|&&e| e == 6).count();
                let failures = entries
                    .iter()
                    .enumerate()
                    .filter(|(_, &e)| {
                        let times = calls.borrow().iter().flatten().filter(|&&x| x == e).count();
                        (e % 3 == 0 && times == 0) || (e == 6 && seen < 2)
                    })
                    .map(|(index, _)| EntryFailure {
                        index,
                        retriable: true,
                        message: "ThrottlingException: slow down".to_owned(),
                    })
                    .collect();
                calls.borrow_mut().push(entries.clone());
                async move { Ok((entries, failures)) }
            },
        ));
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(calls.into_inner(), vec![(0..10).collect(), vec![0, 3, 6, 9], vec![6]]);
    }

    #[test]
    fn a_refused_entry_fails_at_once_and_persistent_throttling_fails_after_the_last_attempt() {
        let attempts = RefCell::new(0);
        let refused = block_on(send_with_retries(
            "t",
            "Put",
            &quick(5),
            vec![1, 2],
            |entries: Vec<u32>| {
                *attempts.borrow_mut() += 1;
                let failures = vec![EntryFailure {
                    index: 1,
                    retriable: false,
                    message: "InvalidParameter: too big".to_owned(),
                }];
                async move { Ok((entries, failures)) }
            },
        ))
        .expect_err("refused");
        assert_eq!(*attempts.borrow(), 1);
        assert!(refused.message.contains("InvalidParameter: too big"), "{refused}");

        let sent = RefCell::new(BTreeSet::new());
        let exhausted = block_on(send_with_retries(
            "t",
            "Put",
            &quick(3),
            vec![1, 2, 3],
            |entries: Vec<u32>| {
                sent.borrow_mut().insert(entries.len());
                let failures = vec![EntryFailure {
                    index: 0,
                    retriable: true,
                    message: "InternalFailure".to_owned(),
                }];
                async move { Ok((entries, failures)) }
            },
        ))
        .expect_err("exhausted");
        assert!(exhausted.message.contains("after 3 attempts"), "{exhausted}");
        assert_eq!(sent.into_inner(), BTreeSet::from([3, 1]));
    }

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
