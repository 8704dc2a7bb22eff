//! # shardflow-lifecycle
//!
//! Operations on deployed Lambda stages, after the data path: savepoints of a stage's state to
//! S3 and restores into a new stage ([`create_savepoint`], [`restore_savepoint`]; layout and
//! consistency in `savepoint`), dry-run restores of a pipeline against a savepoint or a live
//! stage ([`check_savepoint`], [`check_stage`]), per-shard status ([`stage_status`]), replay of a
//! stream's archive locally or as invocations of a stage function ([`replay`]), and the
//! `shardflow savepoint`, `status` and `replay` commands ([`command`], [`replay::command`]). It
//! reads and writes the state `shardflow-state-dynamodb` keeps.
#![warn(missing_docs)]

mod barrier;
mod check;
pub mod command;
mod error;
mod manifest;
pub mod replay;
mod restore;
mod savepoint;
mod shards;
mod shuffle;
mod status;

pub use barrier::{EventSourceBarrier, MappingState};
pub use check::{
    check_savepoint, check_stage, Check, CheckOptions, CheckOutcome, CheckReport, CheckTarget, LiveStage,
    OperatorCheck, ShardProblem,
};
pub use error::LifecycleError;
pub use manifest::{
    ConsistencyInfo, FailureEntry, S3Location, SavepointManifest, ShardEntry, ShuffleStateFile, MANIFEST_FILE,
    MIN_SAVEPOINT_FORMAT_VERSION, RESUME_MARGIN_MS, SAVEPOINT_FORMAT, SAVEPOINT_FORMAT_VERSION,
};
pub use replay::{
    invoke_replay, replay, shard_batches, InvokeReplayOptions, InvokeReplayReport, ReplayError, ReplayOutcome,
    ReplayProgress, MAX_REPLAY_PAYLOAD_BYTES,
};
pub use restore::{restore_savepoint, RestoreExpectations, RestoreOptions, RestoreReport, ShuffleTarget};
pub use savepoint::{create_savepoint, SavepointOptions, SavepointReport};
pub use shards::{stage_checkpoints, stage_has_state, StoredCheckpoint};
pub use status::{render_table, stage_status, ShardStatus, StageStatus, StatusOptions};
