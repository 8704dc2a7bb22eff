//! # shardflow-lifecycle
//!
//! Operations on a deployed Lambda stage's state: savepoints ([`create_savepoint`],
//! [`restore_savepoint`]) and status ([`stage_status`]). The state is the one
//! `shardflow-state-dynamodb` keeps: per shard a checkpoint item (position, `ver`, manifest) and
//! the slot items (and spilled S3 objects) of its key groups.
//!
//! # Savepoint layout
//! Under `s3://{bucket}/{prefix}/`:
//! - `shards/{n}.sfck`, one file per shard that has a checkpoint item (open and closed shards
//!   alike, so children that have not committed yet can still adopt their parents' state after a
//!   restore): the shard's complete committed state as one *full* engine checkpoint in the
//!   engine's own versioned encoding (`SFCK`, [`shardflow_engine::Checkpoint::encode`]) — engine
//!   state (watermarks of every partition, counters), every operator's meta state, and every key
//!   group (timers live inside the key groups). Spilled key groups are read from S3, their
//!   checksum verified by the store, and inlined.
//! - `manifest.json` ([`SavepointManifest`]), written **last**: the savepoint's commit point. A
//!   prefix without a manifest is an incomplete savepoint and is never restored. It holds the
//!   savepoint format version, the engine's state format version, the pipeline's name and an
//!   optional version label, the key-group count, and per shard its position (sequence number),
//!   checkpoint `ver`, epoch, watermark, pending poison-record attempts, and the file's size and
//!   XXH3-128 checksum.
//!
//! # Consistency
//! A shard's state changes only when its checkpoint item flips to the next `ver` (the store's
//! commit point); the slot items a manifest names are written once and never modified. Reading a
//! shard is therefore consistent when its `ver` is the same before and after the read: the
//! savepoint reads `ver` (strongly consistent), loads the checkpoint and its slots (the store's
//! `load`, which refuses slots of another version and spilled objects of another checksum),
//! and reads `ver` again. If a commit slipped in between, the shard is read again (up to
//! [`SavepointOptions::max_attempts`] times), then the savepoint fails with
//! [`LifecycleError::Moving`]. So **every shard's file is exactly a committed state at a batch
//! boundary**, even when the stage is not paused. That is all a restore needs: a shard's state
//! depends only on its own records (keys never span shards, see `shardflow-lambda`), and each
//! shard resumes from its own position.
//!
//! Without a pause the shards' boundaries are taken at different instants (while one shard is
//! read, another commits). Such a savepoint is restorable exactly, but it is not the state of the
//! whole stage at one instant, and the old stage keeps moving past it. **With a pause**
//! (`function` in [`SavepointOptions`]) the savepoint is also one cut of the whole stage:
//! 1. every Kinesis event source mapping of the function is disabled
//!    (`UpdateEventSourceMapping Enabled=false`) and polled until it reports `Disabled`;
//! 2. then the stage's checkpoint items are polled until no `ver` changed for
//!    [`SavepointOptions::quiet_period`] — an invocation that was already running when the
//!    mapping stopped polling may still commit its batch;
//! 3. the shards are read as above; a `ver` that changed anyway fails the read of that shard
//!    rather than letting it through;
//! 4. the mappings that were enabled before are enabled again (also when the read failed),
//!    unless the caller asked to leave them disabled (to move the stage to a new deployment).
//!
//! Limits of the barrier: `Disabled` means Lambda stopped polling, not that every invocation
//! ended; an invocation running longer than the quiet period (up to the function's timeout)
//! can commit after it — the `ver` check catches that shard, but the savepoint then fails or
//! reads it again. A mapping re-enabled resumes from its own position in the stream, which is
//! behind or at the checkpoints, and the stage skips what is committed. A savepoint taken
//! without `function` never stops the stage.
//!
//! # Restore
//! [`restore_savepoint`] reads the manifest, refuses a savepoint of another savepoint format,
//! state format, pipeline, pipeline version or key-group count than the caller expects
//! ([`RestoreExpectations`]), reads every file and verifies its size, checksum and header (all of
//! them before anything is written), refuses to write over a stage that has any state unless
//! forced, and then commits each shard's checkpoint through the store itself
//! (`DynamoDbCheckpointStore::commit_with_failure`, `ver` 1, large groups spilled to the given
//! bucket) — the target table holds exactly what a stage that processed the same records would
//! have committed. `Stage::handle` of the new stage loads it, restores the engine, and skips by
//! sequence number every record at or before the savepoint's position; an event source mapping
//! started `AT_TIMESTAMP` slightly before the savepoint
//! ([`SavepointManifest::resume_at_ms`]: each shard's manifest entry records the arrival time of
//! the last record its state covers; mappings cannot start at a sequence number) therefore continues exactly where the old stage stopped. A restore is atomic per
//! shard, not across shards: if it fails part way, rerun it with `force`.
//!
//! # Replay as Lambda invocations
//! [`invoke_replay`] sends archived records of each shard to a stage function as the Kinesis
//! events its mapping would deliver (shards in parallel, each shard's batches in order), retrying
//! as Lambda's poller does, and optionally ends each shard's input so that its open windows fire
//! (see the `replay` module).
//!
//! # Status
//! [`stage_status`] reports per shard the checkpointed sequence number, `ver`, watermark and its
//! lag behind the wall clock, how far the stream is ahead of the checkpoint (the
//! `MillisBehindLatest` of a `GetRecords` after the checkpointed sequence number, and the age of
//! the oldest unprocessed record — the iterator age), the live state's key groups and bytes, and
//! the dead-letter queue's depth. It reads every shard's live state the way the stage loads it
//! (slot items and spilled objects), so its cost grows with the state: with `--watch` on a large
//! stage, refresh less often.
#![warn(missing_docs)]

mod barrier;
pub mod command;
mod error;
mod manifest;
pub mod replay;
mod restore;
mod savepoint;
mod shards;
mod status;

pub use barrier::{EventSourceBarrier, MappingState};
pub use error::LifecycleError;
pub use manifest::{
    ConsistencyInfo, FailureEntry, S3Location, SavepointManifest, ShardEntry, MANIFEST_FILE, RESUME_MARGIN_MS,
    SAVEPOINT_FORMAT, SAVEPOINT_FORMAT_VERSION,
};
pub use replay::{
    invoke_replay, replay, shard_batches, InvokeReplayOptions, InvokeReplayReport, ReplayError, ReplayOutcome,
    ReplayProgress, MAX_REPLAY_PAYLOAD_BYTES,
};
pub use restore::{restore_savepoint, RestoreExpectations, RestoreOptions, RestoreReport};
pub use savepoint::{create_savepoint, SavepointOptions, SavepointReport};
pub use shards::{stage_checkpoints, stage_has_state, StoredCheckpoint};
pub use status::{render_table, stage_status, ShardStatus, StageStatus, StatusOptions};
