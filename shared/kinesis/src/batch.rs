//! The limits of `PutRecords`, the records it carries, which per-record error codes are worth
//! retrying, and the retry backoff: the pure facts the producer is built on.

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

/// Longest partition key Kinesis accepts, in Unicode characters.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// One record to put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    /// Partition key: records with the same key go to the same shard and, through the
    /// producer, arrive in the order they were sent (the producer orders by partition key even
    /// when an explicit hash key picks the shard).
    pub partition_key: String,
    /// The payload.
    pub data: Vec<u8>,
    /// `ExplicitHashKey`: the point of the hash-key space (a decimal in `[0, 2¹²⁸)`) whose
    /// owning shard stores the record, instead of the MD5 of the partition key.
    pub explicit_hash_key: Option<String>,
}

impl StreamRecord {
    /// A record of `data` under `partition_key` (its shard chosen by the key's MD5).
    pub fn new(partition_key: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        StreamRecord {
            partition_key: partition_key.into(),
            data: data.into(),
            explicit_hash_key: None,
        }
    }

    /// The same record sent to the shard owning `hash_key` (`ExplicitHashKey`).
    pub fn with_explicit_hash_key(mut self, hash_key: u128) -> Self {
        self.explicit_hash_key = Some(hash_key.to_string());
        self
    }

    /// Bytes the record counts toward the limits: data plus partition key. The explicit hash
    /// key is not counted: Kinesis limits a record to 1 MiB of data plus partition key, and a
    /// call to 5 MiB of those (API reference, `PutRecordsRequestEntry`).
    pub fn billed_bytes(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// Whether `key` is an `ExplicitHashKey` Kinesis accepts: the decimal form of a number in
/// `[0, 2¹²⁸)`, without sign or leading zeros (pattern `0|([1-9]\d{0,38})`, and at most
/// `2¹²⁸ − 1`).
pub fn is_valid_explicit_hash_key(key: &str) -> bool {
    let canonical = key == "0" || (key.starts_with(|c: char| matches!(c, '1'..='9')) && key.len() <= 39);
    canonical && key.bytes().all(|b| b.is_ascii_digit()) && key.parse::<u128>().is_ok()
}

/// Why a record can never be put.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRecord {
    /// Data plus partition key exceed the per-record limit.
    #[error("record with partition key {partition_key:?} is {bytes} bytes, over the {limit}-byte record limit")]
    TooLarge {
        /// The record's partition key.
        partition_key: String,
        /// Its billed size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The partition key is empty or longer than [`MAX_PARTITION_KEY_CHARS`].
    #[error("partition key must have 1 to {MAX_PARTITION_KEY_CHARS} characters, this one has {chars}")]
    PartitionKey {
        /// Characters in the key.
        chars: usize,
    },
    /// The explicit hash key is not a decimal in `[0, 2¹²⁸)` ([`is_valid_explicit_hash_key`]).
    #[error("explicit hash key {hash_key:?} is not a decimal number in [0, 2^128)")]
    ExplicitHashKey {
        /// The key given (at most 64 characters of it).
        hash_key: String,
    },
}

/// Checks that `record` can be put under `limits`.
pub fn check_record(record: &StreamRecord, limits: &PutRecordsLimits) -> Result<(), InvalidRecord> {
    let chars = record.partition_key.chars().count();
    if chars == 0 || chars > MAX_PARTITION_KEY_CHARS {
        return Err(InvalidRecord::PartitionKey { chars });
    }
    if let Some(key) = record
        .explicit_hash_key
        .as_deref()
        .filter(|k| !is_valid_explicit_hash_key(k))
    {
        return Err(InvalidRecord::ExplicitHashKey {
            hash_key: key.chars().take(64).collect(),
        });
    }
    let bytes = record.billed_bytes();
    if bytes > limits.max_record_bytes {
        return Err(InvalidRecord::TooLarge {
            partition_key: record.partition_key.clone(),
            bytes,
            limit: limits.max_record_bytes,
        });
    }
    Ok(())
}

/// The per-record result of a `PutRecords` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordResult {
    /// Stored, in this shard at this sequence number (`ShardId`, `SequenceNumber` of the
    /// result entry).
    Stored {
        /// The shard that stored the record.
        shard_id: String,
        /// The record's sequence number in that shard.
        sequence_number: String,
    },
    /// Failed with this error code (`ProvisionedThroughputExceededException`, `InternalFailure`, ...).
    Failed {
        /// The error code.
        code: String,
        /// The service's message.
        message: String,
    },
}

/// Per-record (and per-call) error codes that are worth retrying.
pub fn is_retryable(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException"
            | "InternalFailure"
            | "InternalFailureException"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "KMSThrottlingException"
            | "ThrottlingException"
            | "LimitExceededException"
    )
}

/// Exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay cap of the first retry.
    pub base: Duration,
    /// Largest delay cap.
    pub max: Duration,
    /// Retries of one record before the producer gives up.
    pub max_attempts: u32,
}

impl Default for Backoff {
    /// 50 ms doubling to 5 s, 30 retries (a throttled stream is retried for minutes, as
    /// backpressure, before it counts as failed).
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(50),
            max: Duration::from_secs(5),
            max_attempts: 30,
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

    #[test]
    fn a_record_over_one_megabyte_is_refused() {
        let limits = PutRecordsLimits::default();
        let record = StreamRecord::new("kk", vec![0; 1 << 20]);
        assert_eq!(
            check_record(&record, &limits),
            Err(InvalidRecord::TooLarge {
                partition_key: "kk".into(),
                bytes: (1 << 20) + 2,
                limit: 1 << 20
            })
        );
        assert_eq!(
            check_record(&StreamRecord::new("k", vec![0; (1 << 20) - 1]), &limits),
            Ok(())
        );
    }

    #[test]
    fn partition_keys_must_have_1_to_256_characters() {
        let limits = PutRecordsLimits::default();
        assert_eq!(
            check_record(&StreamRecord::new("", vec![1]), &limits),
            Err(InvalidRecord::PartitionKey { chars: 0 })
        );
        assert_eq!(
            check_record(&StreamRecord::new("é".repeat(257), vec![1]), &limits),
            Err(InvalidRecord::PartitionKey { chars: 257 })
        );
        assert_eq!(
            check_record(&StreamRecord::new("é".repeat(256), vec![1]), &limits),
            Ok(())
        );
    }

    #[test]
    fn explicit_hash_keys_must_be_canonical_decimals_below_two_to_the_128() {
        let limits = PutRecordsLimits::default();
        let max = u128::MAX.to_string();
        for good in ["0", "1", "170141183460469231731687303715884105728", max.as_str()] {
            assert!(is_valid_explicit_hash_key(good), "{good}");
        }
        let over = "340282366920938463463374607431768211456"; // 2^128
        for bad in [
            "",
            "01",
            "+1",
            "-1",
            "1e3",
            " 1",
            over,
            "1000000000000000000000000000000000000000",
        ] {
            assert!(!is_valid_explicit_hash_key(bad), "{bad}");
        }
        let record = StreamRecord::new("k", vec![1]).with_explicit_hash_key(u128::MAX);
        assert_eq!(record.explicit_hash_key.as_deref(), Some(max.as_str()));
        assert_eq!(check_record(&record, &limits), Ok(()));
        let bad = StreamRecord {
            explicit_hash_key: Some(over.into()),
            ..record
        };
        assert_eq!(
            check_record(&bad, &limits),
            Err(InvalidRecord::ExplicitHashKey { hash_key: over.into() })
        );
    }

    #[test]
    fn the_explicit_hash_key_does_not_count_toward_the_size_limits() {
        let limits = PutRecordsLimits::default();
        let record = StreamRecord::new("k", vec![0; (1 << 20) - 1]).with_explicit_hash_key(u128::MAX);
        assert_eq!(record.billed_bytes(), 1 << 20);
        assert_eq!(check_record(&record, &limits), Ok(()));
    }

    #[test]
    fn throttling_is_retryable_and_access_denied_is_not() {
        assert!(is_retryable("ProvisionedThroughputExceededException"));
        assert!(is_retryable("InternalFailure"));
        assert!(!is_retryable("AccessDeniedException"));
        assert!(!is_retryable("ResourceNotFoundException"));
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap_then_gives_up() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
            max_attempts: 10,
        };
        assert_eq!(b.delay(0, 0.999_999).map(|d| d.as_millis()), Some(99));
        assert_eq!(b.delay(3, 0.5), Some(Duration::from_millis(400)));
        assert_eq!(b.delay(9, 1.0), Some(Duration::from_secs(5)));
        assert_eq!(b.delay(0, 0.0), Some(Duration::ZERO));
        assert_eq!(b.delay(10, 0.5), None);
    }
}
