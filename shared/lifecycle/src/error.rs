//! Errors of savepoints, restores and status.

use thiserror::Error;

/// Why a lifecycle operation failed.
#[derive(Debug, Error)]
pub enum LifecycleError {
    /// The stage has no committed checkpoint in the table (nothing to save).
    #[error("stage {stage:?} has no checkpoint in table {table:?}")]
    NoState {
        /// The stage.
        stage: String,
        /// The table.
        table: String,
    },
    /// A shard kept committing while it was read (see [`create_savepoint`](crate::create_savepoint), "Consistency").
    #[error(
        "shard {shard} of stage {stage:?} committed while it was read, {attempts} times \
         (ver {before} -> {after}); pause the stage (--function) or retry"
    )]
    Moving {
        /// The stage.
        stage: String,
        /// The shard.
        shard: String,
        /// Reads attempted.
        attempts: u32,
        /// `ver` before the last read.
        before: u64,
        /// `ver` after it.
        after: u64,
    },
    /// New shards kept committing their first checkpoint during the read (a reshard in
    /// progress).
    #[error("shards {shards:?} of stage {stage:?} got their first checkpoint during the read; pause the stage (--function) or retry")]
    ShardsAppearing {
        /// The stage.
        stage: String,
        /// The shards not read.
        shards: Vec<String>,
    },
    /// The savepoint is not one the caller can restore (format, pipeline, key groups).
    #[error("savepoint {location} refused: {reason}")]
    Refused {
        /// The savepoint.
        location: String,
        /// What does not match.
        reason: String,
    },
    /// The target stage already has state and the restore was not forced.
    #[error(
        "stage {stage:?} already has {items} state item(s) in table {table:?}; restoring would \
         overwrite them (use --force to delete them first)"
    )]
    TargetNotEmpty {
        /// The target stage.
        stage: String,
        /// The table.
        table: String,
        /// Items found under the stage.
        items: usize,
    },
    /// A savepoint file or its manifest is damaged or inconsistent.
    #[error("savepoint {location} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// The stage's shards disagree on the pipeline or its key-group count.
    #[error("stage {stage:?} mixes pipelines: {reason}")]
    MixedPipelines {
        /// The stage.
        stage: String,
        /// Which shards disagree.
        reason: String,
    },
    /// An event source mapping did not reach the wanted state in time.
    #[error("event source mapping {uuid} did not become {wanted} within {waited_secs} s (state {state})")]
    Barrier {
        /// The mapping.
        uuid: String,
        /// The state waited for.
        wanted: String,
        /// The last state seen.
        state: String,
        /// How long it waited.
        waited_secs: u64,
    },
    /// The checkpoint items kept changing after the mappings were disabled.
    #[error("checkpoints of stage {stage:?} kept changing for {waited_secs} s after the event source mappings were disabled")]
    NotQuiet {
        /// The stage.
        stage: String,
        /// How long it waited.
        waited_secs: u64,
    },
    /// A replay invocation kept failing.
    #[error("replay into {function}: shard {shard} failed {attempts} times: {reason}")]
    Replay {
        /// The function.
        function: String,
        /// The shard.
        shard: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// `savepoint check`: restoring the savepoint into the pipeline would fail or lose state
    /// silently.
    #[error("savepoint {savepoint} does not restore into {target}: {}", reasons.join("; "))]
    CheckFailed {
        /// The savepoint.
        savepoint: String,
        /// The pipeline checked against.
        target: String,
        /// Why, one reason per failed check, shard or dropped state.
        reasons: Vec<String>,
    },
    /// `savepoint restore` with a pipeline: the savepoint holds state of operators the pipeline
    /// does not have, and dropping it is not allowed (the rule of every restore; see
    /// `shardflow_engine::restore`).
    #[error(
        "savepoint {savepoint} does not restore into {target}: shard {shard} holds state of operator(s) \
         {unmatched:?} that the pipeline does not have{}; give the operators those ids (uid), or allow dropping \
         the state (--allow-dropped-state)",
        if starts_empty.is_empty() { String::new() } else { format!(" (its operator(s) {starts_empty:?} find no state)") }
    )]
    RestoreRefused {
        /// The savepoint.
        savepoint: String,
        /// The pipeline restored into.
        target: String,
        /// The first shard refused.
        shard: String,
        /// The savepoint's operator ids the pipeline does not have.
        unmatched: Vec<String>,
        /// The pipeline's operators that find no state.
        starts_empty: Vec<String>,
    },
    /// A name or location argument is not usable.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The checkpoint store failed (loading or committing a shard).
    #[error(transparent)]
    Store(#[from] shardflow_state_dynamodb::StoreError),
    /// A checkpoint could not be encoded or decoded.
    #[error(transparent)]
    State(#[from] shardflow_engine::StateError),
    /// An AWS service refused or failed a request.
    #[error("{service} {operation} failed: {message}")]
    Aws {
        /// The service.
        service: &'static str,
        /// The API call.
        operation: &'static str,
        /// The SDK's error with its sources.
        message: String,
    },
}

impl LifecycleError {
    /// An AWS SDK error, displayed with its chain of sources.
    pub fn aws<E: std::error::Error>(service: &'static str, operation: &'static str, e: E) -> Self {
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        LifecycleError::Aws {
            service,
            operation,
            message,
        }
    }
}
