//! Errors of the DynamoDB checkpoint store.

use thiserror::Error;

/// Why a load or a commit failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Another invocation committed this shard since this one loaded it (a stale or concurrent
    /// invocation). Nothing of this commit is visible; reload and retry, or fail the invocation.
    /// Also what a load returns when a commit superseded the checkpoint while its state was read
    /// (its slots deleted under the reader): load again.
    #[error("checkpoint of {stage}/{shard} was committed by another invocation (expected version {expected})")]
    Conflict {
        /// The stage.
        stage: String,
        /// The shard.
        shard: String,
        /// The version this invocation read.
        expected: u64,
    },
    /// The shard's progress item no longer holds the sequence number this invocation read: another
    /// invocation handled records of the shard since (see the crate documentation, "Progress").
    #[error("progress of {stage}/{shard} was advanced by another invocation (expected {expected:?})")]
    ProgressConflict {
        /// The stage.
        stage: String,
        /// The shard.
        shard: String,
        /// The sequence number this invocation read (`None`: no progress item).
        expected: Option<String>,
    },
    /// A test hook stopped the commit at this step (see `with_crash_hook`).
    #[error("injected crash at {0}")]
    InjectedCrash(String),
    /// `commit` was called before `load`.
    #[error("load the checkpoint before committing")]
    NotLoaded,
    /// A key group's state is larger than an item can hold and the store has no S3 bucket to
    /// spill it to (see `DynamoDbCheckpointStore::with_spill_bucket`).
    #[error("key group {group} of {operator} is {bytes} bytes, over the {limit}-byte inline limit, and no spill bucket is configured")]
    SpillNotConfigured {
        /// The operator.
        operator: String,
        /// The key group.
        group: u16,
        /// Its encoded size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A spilled key group's object is not the one its slot points to (another size or checksum).
    #[error("state object {key} does not match its pointer: expected {expected}, found {found}")]
    SpillChecksum {
        /// The object key.
        key: String,
        /// Size and checksum in the slot item.
        expected: String,
        /// Size and checksum of the object read.
        found: String,
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
    /// S3 refused or failed a request (of a spilled key group).
    #[error("S3 {operation} failed: {message}")]
    S3 {
        /// The API call.
        operation: &'static str,
        /// The SDK's error, displayed with its sources.
        message: String,
    },
    /// DynamoDB refused or failed a request.
    #[error("DynamoDB {operation} failed: {message}")]
    DynamoDb {
        /// The API call.
        operation: &'static str,
        /// The SDK's error, displayed with its sources.
        message: String,
    },
}

/// An error displayed with its chain of sources.
fn with_sources<E: std::error::Error>(e: E) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

impl StoreError {
    pub(crate) fn dynamodb<E: std::error::Error>(operation: &'static str, e: E) -> Self {
        StoreError::DynamoDb {
            operation,
            message: with_sources(e),
        }
    }

    pub(crate) fn s3<E: std::error::Error>(operation: &'static str, e: E) -> Self {
        StoreError::S3 {
            operation,
            message: with_sources(e),
        }
    }
}
