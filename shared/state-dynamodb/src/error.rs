//! Errors of the DynamoDB checkpoint store.

use thiserror::Error;

/// Why a load or a commit failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Another invocation committed this shard since this one loaded it (a stale or concurrent
    /// invocation). Nothing of this commit is visible; reload and retry, or fail the invocation.
    #[error("checkpoint of {stage}/{shard} was committed by another invocation (expected version {expected})")]
    Conflict {
        /// The stage.
        stage: String,
        /// The shard.
        shard: String,
        /// The version this invocation read.
        expected: u64,
    },
    /// A test hook stopped the commit at this step (see `with_crash_hook`).
    #[error("injected crash at {0}")]
    InjectedCrash(String),
    /// `commit` was called before `load`.
    #[error("load the checkpoint before committing")]
    NotLoaded,
    /// A key group's state is larger than an item can hold (spilling to S3 is not wired yet).
    #[error("key group {group} of {operator} is {bytes} bytes, over the {limit}-byte inline limit")]
    StateTooLarge {
        /// The operator.
        operator: String,
        /// The key group.
        group: u16,
        /// Its encoded size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The stored data is not what the manifest says (a slot missing or of another version).
    #[error("corrupt checkpoint of {stage}/{shard}: {reason}")]
    Corrupt {
        /// The stage.
        stage: String,
        /// The shard.
        shard: String,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint belongs to another pipeline or key-group count.
    #[error(transparent)]
    State(#[from] shardflow_engine::StateError),
    /// DynamoDB refused or failed a request.
    #[error("DynamoDB {operation} failed: {message}")]
    DynamoDb {
        /// The API call.
        operation: &'static str,
        /// The SDK's error, displayed with its sources.
        message: String,
    },
}

impl StoreError {
    pub(crate) fn dynamodb<E: std::error::Error>(operation: &'static str, e: E) -> Self {
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        StoreError::DynamoDb { operation, message }
    }
}
