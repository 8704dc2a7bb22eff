//! How a stage is deployed: what it knows of its input's keys and of the event source mapping.

use std::sync::Arc;

/// The environment variable the template sets to the event source mapping's
/// `ParallelizationFactor`.
pub const PARALLELIZATION_FACTOR_ENV: &str = "SHARDFLOW_PARALLELIZATION_FACTOR";

/// The partition key of a pipeline key, from the key's postcard encoding (`None`: not a key of
/// this input).
pub type PartitionKeyOf = Arc<dyn Fn(&[u8]) -> Option<String> + Send + Sync>;

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
}

impl Default for StageConfig {
    fn default() -> Self {
        StageConfig {
            parallelization_factor: 1,
            keying: PartitionKeying::Undeclared,
        }
    }
}

impl StageConfig {
    /// The configuration with the parallelization factor from [`PARALLELIZATION_FACTOR_ENV`]
    /// (1 when unset; a value that is not a number is kept as 0, which `Stage::new` refuses).
    pub fn from_env(keying: PartitionKeying) -> Self {
        let parallelization_factor = match std::env::var(PARALLELIZATION_FACTOR_ENV) {
            Ok(v) => v.trim().parse().unwrap_or(0),
            Err(_) => 1,
        };
        StageConfig {
            parallelization_factor,
            keying,
        }
    }
}
