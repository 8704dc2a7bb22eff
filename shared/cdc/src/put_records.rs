//! The pure core of a Kinesis producer: grouping records into `PutRecords` calls within the
//! service limits, choosing which records of a call to retry, and the retry backoff.
//!
//! The AWS SDK client that sends the calls is not here yet; it will drive these functions.
//! Caveat for that client: a retried record may land after a later record of the same partition
//! key that succeeded in the same call, so consumers order a row's changes by `source.lsn`.

use std::time::Duration;

/// `PutRecords` limits (Kinesis Data Streams quotas).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutRecordsLimits {
    /// Records per call (500).
    pub max_records: usize,
    /// Bytes per call, data plus partition keys (5 MiB).
    pub max_call_bytes: usize,
    /// Bytes per record, data plus partition key (1 MiB).
    pub max_record_bytes: usize,
}

impl Default for PutRecordsLimits {
    fn default() -> Self {
        PutRecordsLimits {
            max_records: 500,
            max_call_bytes: 5 << 20,
            max_record_bytes: 1 << 20,
        }
    }
}

/// One record to put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    /// Partition key (table and primary key, so one row's changes go to one shard).
    pub partition_key: String,
    /// The payload.
    pub data: Vec<u8>,
}

impl StreamRecord {
    /// Bytes the record counts toward the limits: data plus partition key.
    pub fn billed_bytes(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// A record that can never be put.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record with partition key {partition_key:?} is {bytes} bytes, over the {limit}-byte record limit")]
pub struct RecordTooLarge {
    /// The record's partition key.
    pub partition_key: String,
    /// Its billed size.
    pub bytes: usize,
    /// The limit.
    pub limit: usize,
}

/// Accumulates records into `PutRecords` calls, in order, each within the limits.
#[derive(Debug, Clone, Default)]
pub struct CallBatcher {
    limits: PutRecordsLimits,
    current: Vec<StreamRecord>,
    current_bytes: usize,
}

impl CallBatcher {
    /// An empty batcher for `limits`.
    pub fn new(limits: PutRecordsLimits) -> Self {
        CallBatcher {
            limits,
            current: Vec::new(),
            current_bytes: 0,
        }
    }

    /// Adds a record; returns the call that was full before it, if adding it would exceed a limit.
    pub fn push(&mut self, record: StreamRecord) -> Result<Option<Vec<StreamRecord>>, RecordTooLarge> {
        let bytes = record.billed_bytes();
        if bytes > self.limits.max_record_bytes {
            return Err(RecordTooLarge {
                partition_key: record.partition_key,
                bytes,
                limit: self.limits.max_record_bytes,
            });
        }
        let full =
            self.current.len() >= self.limits.max_records || self.current_bytes + bytes > self.limits.max_call_bytes;
        let ready = if full && !self.current.is_empty() {
            Some(self.take())
        } else {
            None
        };
        self.current_bytes += bytes;
        self.current.push(record);
        Ok(ready)
    }

    /// Takes the records accumulated so far (possibly none) as one call.
    pub fn take(&mut self) -> Vec<StreamRecord> {
        self.current_bytes = 0;
        std::mem::take(&mut self.current)
    }

    /// Records waiting for the next call.
    pub fn pending(&self) -> usize {
        self.current.len()
    }
}

/// The per-record result of a `PutRecords` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordResult {
    /// Stored.
    Stored,
    /// Failed with this error code (`ProvisionedThroughputExceededException`, `InternalFailure`, ...).
    Failed(String),
}

/// Per-record error codes that are worth retrying.
pub fn is_retryable(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException" | "InternalFailure" | "KMSThrottlingException"
    )
}

/// A call's results that cannot be fixed by retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallOutcomeError {
    /// The service returned a different number of results than records sent.
    #[error("PutRecords returned {got} results for {sent} records")]
    ResultCountMismatch {
        /// Records sent.
        sent: usize,
        /// Results received.
        got: usize,
    },
    /// A record failed with a non-retryable error.
    #[error("record with partition key {partition_key:?} failed permanently: {code}")]
    Permanent {
        /// The record's partition key.
        partition_key: String,
        /// The error code.
        code: String,
    },
}

/// The records of `sent` that failed retryably, in their original order (the next call);
/// an empty result means the whole call is acknowledged.
pub fn records_to_retry(
    sent: Vec<StreamRecord>,
    results: &[RecordResult],
) -> Result<Vec<StreamRecord>, CallOutcomeError> {
    if sent.len() != results.len() {
        return Err(CallOutcomeError::ResultCountMismatch {
            sent: sent.len(),
            got: results.len(),
        });
    }
    let mut retry = Vec::new();
    for (record, result) in sent.into_iter().zip(results) {
        match result {
            RecordResult::Stored => {}
            RecordResult::Failed(code) if is_retryable(code) => retry.push(record),
            RecordResult::Failed(code) => {
                return Err(CallOutcomeError::Permanent {
                    partition_key: record.partition_key,
                    code: code.clone(),
                })
            }
        }
    }
    Ok(retry)
}

/// Exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay cap of the first retry.
    pub base: Duration,
    /// Largest delay cap.
    pub max: Duration,
    /// Retries before giving up.
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
            max_attempts: 10,
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based), or `None` once attempts are exhausted.
    /// `jitter` in `[0, 1)` (from the caller's random source) picks a point in
    /// `[0, min(max, base · 2^attempt))`.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let cap = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.min(31)))
            .min(self.max);
        Some(cap.mul_f64(jitter.clamp(0.0, 1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(key: &str, len: usize) -> StreamRecord {
        StreamRecord {
            partition_key: key.to_owned(),
            data: vec![0; len],
        }
    }

    fn batch_all(limits: PutRecordsLimits, records: Vec<StreamRecord>) -> Vec<Vec<StreamRecord>> {
        let mut b = CallBatcher::new(limits);
        let mut calls = Vec::new();
        for r in records {
            if let Some(call) = b.push(r).unwrap() {
                calls.push(call);
            }
        }
        let last = b.take();
        if !last.is_empty() {
            calls.push(last);
        }
        calls
    }

    #[test]
    fn calls_hold_at_most_500_records() {
        let calls = batch_all(
            PutRecordsLimits::default(),
            (0..1201).map(|i| rec(&i.to_string(), 10)).collect(),
        );
        assert_eq!(calls.iter().map(Vec::len).collect::<Vec<_>>(), vec![500, 500, 201]);
    }

    #[test]
    fn calls_stay_within_five_megabytes() {
        // 6 records of ~1 MiB: at most 5 MiB per call, counting partition keys.
        let calls = batch_all(
            PutRecordsLimits::default(),
            (0..6).map(|_| rec("k", (1 << 20) - 1)).collect(),
        );
        assert_eq!(calls.iter().map(Vec::len).collect::<Vec<_>>(), vec![5, 1]);
    }

    #[test]
    fn a_record_over_one_megabyte_is_refused() {
        let mut b = CallBatcher::new(PutRecordsLimits::default());
        let err = b.push(rec("kk", 1 << 20)).unwrap_err();
        assert_eq!((err.bytes, err.limit), ((1 << 20) + 2, 1 << 20));
        assert_eq!(b.pending(), 0);
    }

    #[test]
    fn only_throttled_records_are_retried_in_order() {
        let sent = vec![rec("a", 1), rec("b", 1), rec("c", 1)];
        let throttled = RecordResult::Failed("ProvisionedThroughputExceededException".into());
        let retry = records_to_retry(sent, &[throttled.clone(), RecordResult::Stored, throttled]).unwrap();
        assert_eq!(
            retry.iter().map(|r| r.partition_key.as_str()).collect::<Vec<_>>(),
            vec!["a", "c"]
        );
    }

    #[test]
    fn permanent_failures_and_result_mismatches_are_errors() {
        let err = records_to_retry(
            vec![rec("a", 1)],
            &[RecordResult::Failed("AccessDeniedException".into())],
        );
        assert!(matches!(err, Err(CallOutcomeError::Permanent { .. })));
        let err = records_to_retry(vec![rec("a", 1)], &[]);
        assert_eq!(err, Err(CallOutcomeError::ResultCountMismatch { sent: 1, got: 0 }));
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap_then_gives_up() {
        let b = Backoff::default();
        assert_eq!(b.delay(0, 0.999_999).unwrap().as_millis(), 99);
        assert_eq!(b.delay(3, 0.5), Some(Duration::from_millis(400)));
        assert_eq!(b.delay(9, 1.0), Some(Duration::from_secs(5)));
        assert_eq!(b.delay(0, 0.0), Some(Duration::ZERO));
        assert_eq!(b.delay(10, 0.5), None);
    }

    proptest! {
        #[test]
        fn batching_keeps_order_and_limits(sizes in proptest::collection::vec(0usize..300_000, 0..60)) {
            let limits = PutRecordsLimits { max_records: 7, ..PutRecordsLimits::default() };
            let records: Vec<_> = sizes.iter().enumerate().map(|(i, s)| rec(&i.to_string(), *s)).collect();
            let calls = batch_all(limits, records.clone());
            prop_assert!(calls.iter().all(|c| !c.is_empty() && c.len() <= 7));
            prop_assert!(calls.iter().all(|c| c.iter().map(StreamRecord::billed_bytes).sum::<usize>() <= limits.max_call_bytes));
            let flat: Vec<_> = calls.into_iter().flatten().collect();
            prop_assert_eq!(flat, records);
        }
    }
}
