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

/// The environment variable that lets a stage drop checkpointed state of operators its pipeline
/// no longer has (`true` or `1`; `false`, `0` or unset: refuse). See [`StageConfig::restore`].
pub const ALLOW_DROPPED_STATE_ENV: &str = "SHARDFLOW_ALLOW_DROPPED_STATE";

/// How often a stage commits a shard's state (see the crate documentation, "Interval commits"):
/// when `batches` batches were handled since the last commit, or when `millis` of processing time
/// passed since it, whichever comes first (`None`: no such bound). The default, one batch,
/// commits every batch and never writes the progress item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointInterval {
    /// Batches per commit (at least 1), if bounded by batches.
    pub batches: Option<u64>,
    /// Milliseconds of processing time per commit, if bounded by time.
    pub millis: Option<u64>,
}

impl Default for CheckpointInterval {
    fn default() -> Self {
        CheckpointInterval {
            batches: Some(1),
            millis: None,
        }
    }
}

impl CheckpointInterval {
    /// Every `n` batches (0 is taken as 1).
    pub fn batches(n: u64) -> Self {
        CheckpointInterval {
            batches: Some(n.max(1)),
            millis: None,
        }
    }

    /// Whether every batch commits (today's protocol, no progress item).
    pub fn every_batch(&self) -> bool {
        self.batches == Some(1) || self.millis == Some(0)
    }

    /// Whether a commit is due after `batches_since_commit` uncommitted batches and `elapsed_ms`
    /// since the interval started, counting the batch at hand.
    pub fn due(&self, batches_since_commit: u64, elapsed_ms: u64) -> bool {
        self.every_batch()
            || self.batches.is_some_and(|b| batches_since_commit + 1 >= b)
            || self.millis.is_some_and(|m| elapsed_ms >= m)
    }

    /// The interval from [`CHECKPOINT_INTERVAL_BATCHES_ENV`] and [`CHECKPOINT_INTERVAL_MS_ENV`]
    /// (both unset: one batch; a value that is not a number is an error naming the variable).
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
        let millis = read(CHECKPOINT_INTERVAL_MS_ENV)?;
        if batches.is_none() && millis.is_none() {
            return Ok(CheckpointInterval::default());
        }
        Ok(CheckpointInterval { batches, millis })
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
    /// [`CHECKPOINT_INTERVAL_MS_ENV`] (one batch when unset or unreadable; unreadable is logged),
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
    use super::{parse_allow_dropped_state, CheckpointInterval};

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

    #[test]
    fn the_default_interval_commits_every_batch() {
        let every = CheckpointInterval::default();
        assert!(every.every_batch());
        assert!(every.due(0, 0));
    }

    #[test]
    fn an_interval_is_due_at_its_batch_count_or_its_time_whichever_comes_first() {
        let five = CheckpointInterval::batches(5);
        assert!(!five.every_batch());
        assert!(!five.due(3, u64::MAX), "no time bound");
        assert!(five.due(4, 0), "the fifth batch since the commit");
        let both = CheckpointInterval {
            batches: Some(100),
            millis: Some(30_000),
        };
        assert!(!both.due(10, 29_999));
        assert!(both.due(10, 30_000));
        assert!(both.due(99, 0));
        let time_only = CheckpointInterval {
            batches: None,
            millis: Some(1_000),
        };
        assert!(!time_only.due(1_000_000, 999));
        assert!(time_only.due(0, 1_000));
    }
}
