//! How a stage is deployed: what it knows of its input's keys and of the event source mapping.

use std::sync::Arc;

use shardflow_engine::RestoreOptions;

/// The environment variable the template sets to the event source mapping's
/// `ParallelizationFactor`.
pub const PARALLELIZATION_FACTOR_ENV: &str = "SHARDFLOW_PARALLELIZATION_FACTOR";

/// The partition key of a pipeline key, from the key's postcard encoding (`None`: not a key of
/// this input).
pub type PartitionKeyOf = Arc<dyn Fn(&[u8]) -> Option<String> + Send + Sync>;

/// The environment variable of the checkpoint interval in batches (see [`CheckpointInterval`]).
pub const CHECKPOINT_INTERVAL_BATCHES_ENV: &str = "SHARDFLOW_CHECKPOINT_INTERVAL_BATCHES";
/// The environment variable of the checkpoint interval in milliseconds of processing time.
pub const CHECKPOINT_INTERVAL_MS_ENV: &str = "SHARDFLOW_CHECKPOINT_INTERVAL_MS";
/// The environment variable of the checkpoint interval in bytes of state changed since the last
/// commit ([`shardflow_engine::Engine::dirty_bytes`]).
pub const CHECKPOINT_INTERVAL_BYTES_ENV: &str = "SHARDFLOW_CHECKPOINT_INTERVAL_BYTES";

/// The environment variable that lets a stage drop checkpointed state of operators its pipeline
/// no longer has (`true` or `1`; `false`, `0` or unset: refuse). See [`StageConfig::restore`].
pub const ALLOW_DROPPED_STATE_ENV: &str = "SHARDFLOW_ALLOW_DROPPED_STATE";
/// The environment variable the template sets to the input stream's retention, hours (the
/// start-up check of the checkpoint interval, [`CheckpointInterval::check`]).
pub const INPUT_RETENTION_HOURS_ENV: &str = "SHARDFLOW_INPUT_RETENTION_HOURS";

/// SNS FIFO topics drop a message whose `MessageDeduplicationId` was published in the last 5
/// minutes, and only then.
pub const SNS_FIFO_DEDUPLICATION_WINDOW_MS: u64 = 5 * 60 * 1_000;

/// What [`CheckpointInterval::check`] leaves for Lambda to retry a crashed invocation, on top of
/// the interval, before a sink's deduplication window closes.
pub const RETRY_MARGIN_MS: u64 = 60 * 1_000;

/// The longest interval allowed, as a fraction of the input stream's retention: a gap must be
/// read back from Kinesis long before its records expire (an iterator age alarm fires first).
pub const MAX_RETENTION_FRACTION: u64 = 4;

/// What the deployment around a stage allows its checkpoint interval: the input stream's
/// retention and the deduplication window of its sinks, where they have one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IntervalLimits {
    /// The input stream's retention, ms.
    pub input_retention_ms: Option<u64>,
    /// How long after a first write a sink still drops a repeat of it, ms.
    pub sink_dedup_window_ms: Option<u64>,
}

impl IntervalLimits {
    /// The input retention from [`INPUT_RETENTION_HOURS_ENV`] (unset: unknown; not a whole
    /// number: an error naming the variable).
    pub fn from_env() -> Result<Self, String> {
        let input_retention_ms = match std::env::var(INPUT_RETENTION_HOURS_ENV) {
            Ok(v) => Some(
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("{INPUT_RETENTION_HOURS_ENV}={v:?} is not a whole number"))?
                    .saturating_mul(3_600_000),
            ),
            Err(_) => None,
        };
        Ok(IntervalLimits {
            input_retention_ms,
            sink_dedup_window_ms: None,
        })
    }

    /// The same limits with a sink deduplicating for `window_ms` (the shorter window wins).
    pub fn with_dedup_window(self, window_ms: u64) -> Self {
        IntervalLimits {
            sink_dedup_window_ms: Some(self.sink_dedup_window_ms.map_or(window_ms, |w| w.min(window_ms))),
            ..self
        }
    }
}

/// How often a stage commits a shard's state (see the crate documentation, "Interval commits"):
/// when `batches` batches were handled since the last commit, when `millis` of processing time
/// passed since it, or when the engine's state changed since it holds more than `bytes`
/// ([`shardflow_engine::Engine::dirty_bytes`]), whichever comes first (`None`: no such bound).
/// The default, one batch, commits every batch and never writes the progress item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointInterval {
    /// Batches per commit (at least 1), if bounded by batches.
    pub batches: Option<u64>,
    /// Milliseconds of processing time per commit, if bounded by time.
    pub millis: Option<u64>,
    /// Bytes of changed state per commit (at least 1), if bounded by them: a batch after which
    /// the engine's dirty state exceeds this commits. Bounds what one commit writes (and what a
    /// crash makes the next container re-read) when the rate, and with it the state changed per
    /// batch, rises.
    pub bytes: Option<u64>,
}

impl Default for CheckpointInterval {
    fn default() -> Self {
        CheckpointInterval {
            batches: Some(1),
            millis: None,
            bytes: None,
        }
    }
}

impl CheckpointInterval {
    /// Every `n` batches (0 is taken as 1).
    pub fn batches(n: u64) -> Self {
        CheckpointInterval {
            batches: Some(n.max(1)),
            millis: None,
            bytes: None,
        }
    }

    /// Every `ms` milliseconds of processing time, or sooner when more than `bytes` of state
    /// changed since the last commit (a `bytes` of 0 is taken as 1).
    pub fn millis_or_bytes(ms: u64, bytes: u64) -> Self {
        CheckpointInterval {
            batches: None,
            millis: Some(ms),
            bytes: Some(bytes.max(1)),
        }
    }

    /// Whether every batch commits (today's protocol, no progress item).
    pub fn every_batch(&self) -> bool {
        self.batches == Some(1) || self.millis == Some(0)
    }

    /// Whether a commit is due after `batches_since_commit` uncommitted batches, `elapsed_ms`
    /// since the interval started and `dirty_bytes` of state changed since the last commit,
    /// counting the batch at hand. `dirty_bytes` is only read when the interval is bounded by
    /// bytes: a caller may pass 0 otherwise, and needs to measure only then
    /// ([`CheckpointInterval::bytes`]).
    pub fn due(&self, batches_since_commit: u64, elapsed_ms: u64, dirty_bytes: u64) -> bool {
        self.every_batch()
            || self.batches.is_some_and(|b| batches_since_commit + 1 >= b)
            || self.millis.is_some_and(|m| elapsed_ms >= m)
            || self.bytes.is_some_and(|b| dirty_bytes > b)
    }

    /// Refuses an interval the deployment cannot keep exact (the start-up check; `Ok` for one
    /// batch, which re-emits nothing beyond a retried batch). A longer interval re-emits, after a
    /// crash, records first emitted up to one interval earlier, read back from Kinesis, so it must
    /// - be bounded in time ([`CheckpointInterval::millis`]): a count of batches alone can span
    ///   any time at a low rate;
    /// - stay within a quarter of the input retention ([`MAX_RETENTION_FRACTION`]);
    /// - leave [`RETRY_MARGIN_MS`] inside a sink's deduplication window (SNS FIFO: 5 minutes).
    pub fn check(&self, limits: &IntervalLimits) -> Result<(), String> {
        if self.every_batch() || (limits.input_retention_ms.is_none() && limits.sink_dedup_window_ms.is_none()) {
            return Ok(());
        }
        let Some(millis) = self.millis else {
            return Err(format!(
                "a checkpoint interval of {:?} batches and {:?} bytes has no time bound: set \
                 {CHECKPOINT_INTERVAL_MS_ENV}",
                self.batches, self.bytes
            ));
        };
        if let Some(retention) = limits.input_retention_ms {
            if millis > retention / MAX_RETENTION_FRACTION {
                return Err(format!(
                    "a checkpoint interval of {millis} ms is not well inside the input's retention of                      {retention} ms (at most 1/{MAX_RETENTION_FRACTION} of it)"
                ));
            }
        }
        if let Some(window) = limits.sink_dedup_window_ms {
            if millis.saturating_add(RETRY_MARGIN_MS) > window {
                return Err(format!(
                    "a checkpoint interval of {millis} ms plus {RETRY_MARGIN_MS} ms for retries exceeds the                      sink's deduplication window of {window} ms: re-emitted results would be duplicates"
                ));
            }
        }
        Ok(())
    }

    /// The interval from [`CHECKPOINT_INTERVAL_BATCHES_ENV`], [`CHECKPOINT_INTERVAL_MS_ENV`] and
    /// [`CHECKPOINT_INTERVAL_BYTES_ENV`] (all unset: one batch; 0 ms or 0 bytes: no such bound; a
    /// value that is not a number is an error naming the variable).
    pub fn from_env() -> Result<Self, String> {
        let read = |name: &str| -> Result<Option<u64>, String> {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{name}={v:?} is not a whole number")),
                Err(_) => Ok(None),
            }
        };
        let batches = read(CHECKPOINT_INTERVAL_BATCHES_ENV)?.map(|b| b.max(1));
        // 0 ms is "no time bound" (the template's default), not "every batch".
        let millis = read(CHECKPOINT_INTERVAL_MS_ENV)?.filter(|m| *m > 0);
        let bytes = read(CHECKPOINT_INTERVAL_BYTES_ENV)?.filter(|b| *b > 0);
        if batches.is_none() && millis.is_none() && bytes.is_none() {
            return Ok(CheckpointInterval::default());
        }
        Ok(CheckpointInterval { batches, millis, bytes })
    }
}

/// What the pipeline promises about its keys and the input's partition keys.
#[derive(Clone, Default)]
pub enum PartitionKeying {
    /// Nothing: after a split the children cannot tell which parent keys are theirs, so a split
    /// child refuses to start ([`crate::StageError::ReshardRefused`]); merges are adopted whole.
    #[default]
    Undeclared,
    /// Every keyed operator's key is a `String` equal to the record's partition key.
    KeyIsPartitionKey,
    /// Every keyed operator's key determines the record's partition key through this function.
    Derived(PartitionKeyOf),
}

impl std::fmt::Debug for PartitionKeying {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PartitionKeying::Undeclared => f.write_str("Undeclared"),
            PartitionKeying::KeyIsPartitionKey => f.write_str("KeyIsPartitionKey"),
            PartitionKeying::Derived(_) => f.write_str("Derived(..)"),
        }
    }
}

impl PartitionKeying {
    /// The partition key of a key given as its postcard encoding, if declared.
    pub fn partition_key_of(&self, key: &[u8]) -> Option<String> {
        match self {
            PartitionKeying::Undeclared => None,
            PartitionKeying::KeyIsPartitionKey => postcard::from_bytes::<String>(key).ok(),
            PartitionKeying::Derived(f) => f(key),
        }
    }

    /// Whether anything is declared.
    pub fn is_declared(&self) -> bool {
        !matches!(self, PartitionKeying::Undeclared)
    }
}

/// A stage's deployment facts (see the crate documentation, "Resharding" and
/// "ParallelizationFactor").
#[derive(Debug, Clone)]
pub struct StageConfig {
    /// The event source mapping's `ParallelizationFactor` (1 to 10). Only 1 is accepted.
    pub parallelization_factor: u32,
    /// What the pipeline promises about its keys.
    pub keying: PartitionKeying,
    /// How often a shard's state is committed (default: every batch).
    pub checkpoint_interval: CheckpointInterval,
    /// How a cold load restores a shard's checkpoint into the pipeline (default: strict, state
    /// of an operator the pipeline does not have refuses the restore; see the crate
    /// documentation, "Restores").
    pub restore: RestoreOptions,
}

impl Default for StageConfig {
    fn default() -> Self {
        StageConfig {
            parallelization_factor: 1,
            keying: PartitionKeying::Undeclared,
            checkpoint_interval: CheckpointInterval::default(),
            restore: RestoreOptions::strict(),
        }
    }
}

/// The restore options from [`ALLOW_DROPPED_STATE_ENV`]: unset, `false` or `0` is strict, `true`
/// or `1` allows dropped state; anything else is an error naming the variable.
pub fn restore_options_from_env() -> Result<RestoreOptions, String> {
    match std::env::var(ALLOW_DROPPED_STATE_ENV) {
        Err(_) => Ok(RestoreOptions::strict()),
        Ok(v) => parse_allow_dropped_state(&v)
            .map(|allow_dropped_state| RestoreOptions { allow_dropped_state })
            .ok_or_else(|| format!("{ALLOW_DROPPED_STATE_ENV}={v:?} is not true, false, 1 or 0")),
    }
}

/// `true`/`1` → `Some(true)`, `false`/`0`/empty → `Some(false)`, anything else `None`.
fn parse_allow_dropped_state(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" | "" => Some(false),
        _ => None,
    }
}

impl StageConfig {
    /// The configuration with the parallelization factor from [`PARALLELIZATION_FACTOR_ENV`]
    /// (1 when unset; a value that is not a number is kept as 0, which `Stage::new` refuses) and
    /// the checkpoint interval from [`CHECKPOINT_INTERVAL_BATCHES_ENV`] /
    /// [`CHECKPOINT_INTERVAL_MS_ENV`] / [`CHECKPOINT_INTERVAL_BYTES_ENV`] (one batch when unset
    /// or unreadable; unreadable is logged),
    /// and the restore options from [`ALLOW_DROPPED_STATE_ENV`] (strict when unset or
    /// unreadable — a typo never drops state; unreadable is logged).
    pub fn from_env(keying: PartitionKeying) -> Self {
        let parallelization_factor = match std::env::var(PARALLELIZATION_FACTOR_ENV) {
            Ok(v) => v.trim().parse().unwrap_or(0),
            Err(_) => 1,
        };
        let checkpoint_interval = CheckpointInterval::from_env().unwrap_or_else(|e| {
            tracing::error!(error = %e, "checkpoint interval: committing every batch");
            CheckpointInterval::default()
        });
        let restore = restore_options_from_env().unwrap_or_else(|e| {
            tracing::error!(error = %e, "restore options: refusing dropped state");
            RestoreOptions::strict()
        });
        StageConfig {
            parallelization_factor,
            keying,
            checkpoint_interval,
            restore,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_allow_dropped_state, CheckpointInterval, IntervalLimits, SNS_FIFO_DEDUPLICATION_WINDOW_MS};

    #[test]
    fn only_true_or_1_allows_dropped_state_and_a_typo_is_not_read_as_either() {
        assert_eq!(parse_allow_dropped_state("true"), Some(true));
        assert_eq!(parse_allow_dropped_state(" TRUE "), Some(true));
        assert_eq!(parse_allow_dropped_state("1"), Some(true));
        assert_eq!(parse_allow_dropped_state("false"), Some(false));
        assert_eq!(parse_allow_dropped_state("0"), Some(false));
        assert_eq!(parse_allow_dropped_state(""), Some(false));
        assert_eq!(parse_allow_dropped_state("yes please"), None);
    }

    fn millis(ms: u64) -> CheckpointInterval {
        CheckpointInterval {
            batches: None,
            millis: Some(ms),
            bytes: None,
        }
    }

    #[test]
    fn the_start_up_check_refuses_intervals_without_a_time_bound_or_not_well_inside_retention() {
        let day = IntervalLimits {
            input_retention_ms: Some(24 * 3_600_000),
            sink_dedup_window_ms: None,
        };
        assert!(
            CheckpointInterval::default().check(&day).is_ok(),
            "every batch is always exact"
        );
        assert!(
            CheckpointInterval::batches(30).check(&day).is_err(),
            "batches alone span any time"
        );
        assert!(millis(6 * 3_600_000).check(&day).is_ok());
        assert!(
            millis(6 * 3_600_000 + 1).check(&day).is_err(),
            "over a quarter of the retention"
        );
        assert!(
            CheckpointInterval::batches(30)
                .check(&IntervalLimits::default())
                .is_ok(),
            "nothing known"
        );
    }

    #[test]
    fn the_start_up_check_refuses_an_interval_that_outlasts_sns_fifo_deduplication_with_its_retry_margin() {
        let fifo = IntervalLimits {
            input_retention_ms: Some(168 * 3_600_000),
            sink_dedup_window_ms: None,
        }
        .with_dedup_window(SNS_FIFO_DEDUPLICATION_WINDOW_MS);
        assert!(millis(240_000).check(&fifo).is_ok(), "4 minutes and a minute to retry");
        assert!(millis(240_001).check(&fifo).is_err());
        assert!(millis(600_000).check(&fifo).is_err(), "10 minutes");
    }

    #[test]
    fn the_default_interval_commits_every_batch() {
        let every = CheckpointInterval::default();
        assert!(every.every_batch());
        assert!(every.due(0, 0, 0));
    }

    #[test]
    fn an_interval_is_due_at_its_batch_count_or_its_time_whichever_comes_first() {
        let five = CheckpointInterval::batches(5);
        assert!(!five.every_batch());
        assert!(!five.due(3, u64::MAX, u64::MAX), "no time or bytes bound");
        assert!(five.due(4, 0, 0), "the fifth batch since the commit");
        let both = CheckpointInterval {
            batches: Some(100),
            millis: Some(30_000),
            bytes: None,
        };
        assert!(!both.due(10, 29_999, u64::MAX));
        assert!(both.due(10, 30_000, 0));
        assert!(both.due(99, 0, 0));
        let time_only = CheckpointInterval {
            batches: None,
            millis: Some(1_000),
            bytes: None,
        };
        assert!(!time_only.due(1_000_000, 999, u64::MAX));
        assert!(time_only.due(0, 1_000, 0));
    }

    #[test]
    fn an_interval_bounded_by_bytes_is_due_once_the_changed_state_exceeds_them_or_its_time_passes() {
        let i = CheckpointInterval::millis_or_bytes(30_000, 64 * 1024);
        assert!(!i.every_batch(), "a bytes bound is not every batch");
        assert!(!i.due(1_000, 29_999, 64 * 1024), "at the bound, not over it");
        assert!(i.due(0, 0, 64 * 1024 + 1), "over the bound after one batch");
        assert!(i.due(0, 30_000, 0), "the time bound still holds");
        let day = IntervalLimits {
            input_retention_ms: Some(24 * 3_600_000),
            sink_dedup_window_ms: None,
        };
        assert!(i.check(&day).is_ok());
        let bytes_only = CheckpointInterval {
            batches: None,
            millis: None,
            bytes: Some(1 << 20),
        };
        assert!(
            bytes_only.check(&day).is_err(),
            "bytes alone are no time bound: a quiet shard never reaches them"
        );
    }

    #[test]
    fn the_interval_reads_its_bytes_bound_from_the_environment_and_0_is_no_bound() {
        // One test touches these variables (tests run in parallel threads of one process).
        use super::{CHECKPOINT_INTERVAL_BATCHES_ENV, CHECKPOINT_INTERVAL_BYTES_ENV, CHECKPOINT_INTERVAL_MS_ENV};
        let set = |b: &str, ms: &str, bytes: &str| {
            std::env::set_var(CHECKPOINT_INTERVAL_BATCHES_ENV, b);
            std::env::set_var(CHECKPOINT_INTERVAL_MS_ENV, ms);
            std::env::set_var(CHECKPOINT_INTERVAL_BYTES_ENV, bytes);
            CheckpointInterval::from_env()
        };
        assert_eq!(
            set("1000", "30000", "1048576"),
            Ok(CheckpointInterval {
                batches: Some(1000),
                millis: Some(30_000),
                bytes: Some(1_048_576),
            })
        );
        assert_eq!(set("1000", "30000", "0").map(|i| i.bytes), Ok(None));
        assert_eq!(set("1", "0", "0"), Ok(CheckpointInterval::default()));
        let err = set("1", "0", "1MB").unwrap_err();
        assert!(err.contains(CHECKPOINT_INTERVAL_BYTES_ENV), "{err}");
        for v in [
            CHECKPOINT_INTERVAL_BATCHES_ENV,
            CHECKPOINT_INTERVAL_MS_ENV,
            CHECKPOINT_INTERVAL_BYTES_ENV,
        ] {
            std::env::remove_var(v);
        }
    }
}
