//! # shardflow-lambda
//!
//! A shardflow pipeline as a Lambda stage. A function's `main` builds a [`Stage`] — the
//! pipeline, its input decoder, its sink, its dead-letter destination and the state table — and
//! calls [`run`].
//!
//! # Per batch (see [`Stage::handle`])
//! 1. Load the shard's checkpoint (position, engine state, a failing record's attempts) and
//!    restore the engine — or, when this container committed the version the checkpoint item
//!    still holds, continue from its warm engine after one read of that item and of the shard's
//!    progress item ([`warm`]). A progress item beyond the checkpoint (records handled after it
//!    under a longer interval) is closed first, as below.
//! 2. Process the batch: skip records at or below the committed position (redelivery), decode
//!    (undecodable records become dead letters), run the engine; records later than the allowed
//!    lateness become dead letters of kind `late`.
//! 3. Emit the results to the sink and the dead letters to their destination. Both are
//!    idempotent by id, so a crash after this step and a redelivery repeat nothing visible.
//! 4. Commit the engine's changed state and the new position in one conditional commit; a
//!    stale or concurrent invocation loses the condition and fails, so Lambda redelivers.
//! 5. Answer with the partial batch response and print one EMF metrics line (also for a batch
//!    skipped whole as already committed): records in, records skipped as redelivered, values
//!    the pipeline's `deduplicate` steps dropped as repeats of an upstream result, late and
//!    dead-lettered records, results out, watermark lag, state bytes and items written, commit
//!    duration, and the records and `GetRecords` calls of a gap read before the batch (interval
//!    commits). Metrics are published on the dimension `Stage` only; the shard is a property.
//!
//! These are the steps with the default checkpoint interval of one batch, which is the shortest
//! interval of the protocol below, not another path: with a longer one, see below.
//!
//! # Interval commits
//! With a [`CheckpointInterval`] ([`StageConfig::checkpoint_interval`], env
//! `SHARDFLOW_CHECKPOINT_INTERVAL_BATCHES` / `_MS` / `_BYTES`, or
//! [`Stage::with_checkpoint_interval`]; default one batch) a batch goes:
//! 1. **Probe**: one strongly consistent `Query` of the shard's partition key returns the
//!    checkpoint item's version, commit attempt and position, and the progress item (last handled
//!    sequence number, the container that handled it, the checkpoint version it started from,
//!    batches and time since that commit).
//! 2. **Open**: continue from this container's warm engine when the checkpoint is the one it
//!    committed or loaded and the progress item names this container, its in-memory position and
//!    that version. Otherwise start from the checkpoint (the warm engine if it is at exactly the
//!    checkpoint, loaded otherwise) and, if the progress item is beyond the checkpoint's position,
//!    read the records in between from Kinesis (`GetShardIterator AFTER_SEQUENCE_NUMBER`,
//!    `GetRecords` up to the progress item's sequence number; [`Stage::with_kinesis`]), process
//!    them as any batch and emit their results again (same ids, absorbed by the sinks). Logged
//!    and counted in the EMF line. The read shares the shard's 5 `GetRecords` calls a second with
//!    the event source mapping: its calls are at least [`GAP_GET_RECORDS_PACE`] apart, and a
//!    throttled call (`ProvisionedThroughputExceededException`) is made again after a doubling
//!    wait, up to 6 times, before the invocation fails (Lambda retries it).
//! 3. **Process and emit** the batch (records at or below the handled position are skipped).
//! 4. **Commit** when the interval is due (batches or milliseconds since the last commit, counted
//!    across containers by the progress item, or the engine's state changed since the last commit
//!    over the bytes bound, `Engine::dirty_bytes`, measured only when that bound is set; after a
//!    gap read the gap's changes count, so the measure does not depend on which container holds
//!    the shard), a record failure is recorded, nothing was
//!    committed yet, or the state was adopted from parents; the commit is fenced on `ver` as
//!    above, and then the progress item is moved to it (not at an interval of one batch, where
//!    every batch commits: the progress item, if any, is then at or behind the checkpoint and
//!    ignored, so the write is saved). **Otherwise** write the progress item with
//!    one `PutItem` conditioned on the sequence number read in step 1 (a concurrent invocation
//!    that advanced it makes this one fail and Lambda retry) and keep the engine warm.
//! 5. Answer. A crash after emitting and before the progress write, or after it and before
//!    answering, is redelivered; the retry finds the progress item where the crash left it and
//!    re-reads from Kinesis what the checkpoint does not hold. The recovery bound is one interval
//!    of records re-read and re-processed; the interval must stay well inside the stream's
//!    retention and the sinks' deduplication window (SNS FIFO: 5 minutes). An end-of-input request
//!    opens the shard the same way, so the uncommitted records are included.
//!
//! Changing the interval needs no step of its own: a stage lowered to one batch still reads the
//! progress item, so records handled after the last commit under the old interval are read back
//! from Kinesis before its first batch (test `switching_the_interval_from_three_batches_to_one_…`
//! in `tests/interval_commits.rs`).
//!
//! If user code panics on a record, the records before it are committed, the record is reported
//! as the batch item failure (Lambda retries from it; bisect-compatible), and its attempts are
//! counted in the checkpoint; after [`Stage::max_attempts`] it is dead-lettered as `poison`, so a
//! poison record never blocks its shard.
//!
//! # Restores
//! A cold load (no warm engine, or another container committed since) restores the shard's
//! checkpoint into the deployed pipeline with `Engine::restore_with` and the options of
//! [`StageConfig::restore`] (env `SHARDFLOW_ALLOW_DROPPED_STATE`, strict unless `true` or `1`); a
//! new shard adopts its parents' state under the same options. It is the rule of every runner
//! (the local runner, `shardflow savepoint restore`, replay): an operator's state is found by its id;
//! state of an operator the pipeline does not have refuses the restore unless dropping it is
//! allowed; an operator with no state starts empty. A report that is not plain (an operator starts
//! empty, state was dropped or read under a format version 1 id) is logged as a warning with the
//! stage, the shard and the operators; a dropped operator's state is gone from the store after the
//! next commit, which is full.
//!
//! A refusal fails the invocation with [`StageError::RestoreRefused`], logged as an error whose
//! message starts `RESTORE REFUSED` and names the operators. It is deterministic, so Lambda's
//! retries fail the same way: with the template's default `MaximumRetryAttempts` of -1 the shard is
//! retried forever and does not advance — nothing is lost or skipped, the `IteratorAge` alarm of
//! the stage fires, and the log says why. With a retry limit Lambda would skip the batches instead
//! (their positions go to the FailedBatches queue and its alarm fires; replay them after the fix).
//! Fix it by deploying a pipeline that has the operators (their uids), or, when losing their state
//! is intended, by setting `SHARDFLOW_ALLOW_DROPPED_STATE=true`; `shardflow savepoint check` finds
//! the problem before a deploy.
//!
//! # Keys and shards
//! Kinesis routes a record to the shard whose hash-key range holds MD5(partition key) (as a
//! 128-bit big-endian number, [`hash_key`]); the engine places a key in the key group
//! xxh3(postcard(key)) mod max key groups. Each shard runs its own engine and its state is stored
//! per (key group, shard), so a stage is exact only if all records of a key are in one shard at a
//! time: **every keyed operator's key must be a function of the record's partition key** (in the
//! simplest case it *is* the partition key). Key groups are a storage unit, not an ownership
//! unit: one group holds keys of many hash ranges, so nothing is shared between sibling shards.
//!
//! # Resharding
//! A shard without a checkpoint item asks its [`ShardLineage`] ([`KinesisLineage`]: `ListShards`'
//! `ParentShardId`/`AdjacentParentShardId` and hash-key ranges) for its parents and loads their
//! committed checkpoints (through empty ancestors, up to 16 generations). Lambda processes a
//! parent to its end before its children, so those checkpoints are final. The child builds its
//! engine with `Engine::adopt`: the parents' watermarks become ended partitions and the child's
//! watermark starts at the largest of the parents' (it never moves back, so no pane already
//! emitted is emitted again with other content; after a merge of parents at different event-time
//! progress, the lagging parent's keys may see records late that would not have been). Its first
//! commit is a full snapshot, so it copies the adopted state into its own slots and never writes
//! its parents' (which expire with the TTL).
//! - **Merge** (the child's range covers its parents'): every key is adopted.
//! - **Split**: each child keeps the keys whose partition key hashes into its own range, which it
//!   can only tell if the stage declares [`PartitionKeying`] (`KeyIsPartitionKey`, or `Derived`
//!   from the key's encoding). Undeclared, a split child refuses to start
//!   ([`StageError::ReshardRefused`]) rather than emit its sibling's windows.
//!
//! # Shuffles
//! A split pipeline (`key_by(..).shuffle()`) runs as two stages joined by a Kinesis shuffle
//! stream: [`shuffle::UpstreamStage`] and the keyed [`shuffle::DownstreamStage`], whose dedup
//! marks and upstream watermarks commit in its checkpoint item (see [`shuffle`]).
//!
//! # ParallelizationFactor
//! With a factor above 1 Lambda runs several batches of one shard at once, ordered only per
//! partition key. Exactness would then need state *and positions* per partition key (a
//! record is a duplicate iff its sequence number is at or below its key's committed position) and
//! commits per key rather than one fenced checkpoint per shard. This protocol keeps one position
//! and one version per shard: a concurrent batch would either lose the fencing condition
//! forever or, committed after a batch of higher sequence numbers, have its records skipped as
//! duplicates — lost. A declared key = partition key is necessary but not sufficient, so
//! [`Stage::new`] refuses every factor but 1 ([`StageError::Unsupported`]);
//! [`StageConfig::from_env`] reads it from `SHARDFLOW_PARALLELIZATION_FACTOR`, which the
//! template sets from the same parameter as the event source mapping.
#![warn(missing_docs)]

mod config;
mod env;
mod gap;
mod lineage;
pub mod request;
pub mod shuffle;
mod stage;
pub mod warm;

pub use config::{
    restore_options_from_env, CheckpointInterval, IntervalLimits, PartitionKeyOf, PartitionKeying, StageConfig,
    ALLOW_DROPPED_STATE_ENV, CHECKPOINT_INTERVAL_BATCHES_ENV, CHECKPOINT_INTERVAL_BYTES_ENV,
    CHECKPOINT_INTERVAL_MS_ENV, INPUT_RETENTION_HOURS_ENV, MAX_RETENTION_FRACTION, PARALLELIZATION_FACTOR_ENV,
    RETRY_MARGIN_MS, SNS_FIFO_DEDUPLICATION_WINDOW_MS,
};
pub use env::{
    StageEnv, StageSetupError, INPUT_STREAM_ENV, MAX_ATTEMPTS_ENV, SPILL_BUCKET_ENV, STAGE_ENV, STATE_TABLE_ENV,
};
pub use gap::{input_record, GapError, GAP_GET_RECORDS_PACE};
pub use lineage::{hash_key, FixedLineage, KinesisLineage, LineageError, ShardFuture, ShardInfo, ShardLineage};
pub use request::{EndOfInput, StageRequest, END_OF_INPUT_KEY};
pub use stage::{run, CrashPoint, MetricsWriter, Stage, StageCrashHook, StageError};
