//! The shuffle between two Lambda stages (issue 13): an upstream stage over a split pipeline's
//! upstream half writes packed records to a Kinesis *shuffle stream*, and a keyed downstream
//! stage reads it. Both reuse the stage's checkpoint machinery (load, fenced commit, warm state,
//! lineage); the protocol per batch is [`shardflow_shuffle::upstream`]'s and
//! [`shardflow_shuffle::downstream`]'s.
//!
//! # Exactly once across the hop
//! - **Upstream** ([`UpstreamStage`]): records at or below the committed position are skipped,
//!   the rest decoded (undecodable ones dead-lettered) and run through
//!   [`shardflow_shuffle::UpstreamBatch`]; the packed records are sent to the shuffle stream
//!   **before** the commit, in [`shardflow_shuffle::Packed::calls`] order (a call only once the
//!   previous one is stored, failed entries retried first). A crash between the send and the
//!   commit is redelivered: the retry restarts from the committed engine and re-sends
//!   byte-identical records, which the downstream drops by their ids.
//! - **Resharded shuffle stream**: the records are sent with
//!   [`shardflow_shuffle_kinesis::ShuffleWriter`]; when Kinesis stores a record on another shard
//!   than it was packed for, the writer reads the new map and the batch is packed again — by
//!   re-running it on a copy of the engine as it was before the batch (the upstream half holds no
//!   keyed state, so the copy is cheap, and the engine's state after the batch does not depend on
//!   the map).
//! - **Downstream** ([`DownstreamStage`]): the shard's [`shardflow_shuffle::DownstreamState`]
//!   (dedup marks and upstream watermarks) lives in the checkpoint item beside the engine's
//!   manifest and position, written by the same fenced commit
//!   (`DynamoDbCheckpointStore::set_shuffle_state`), loaded with it and kept with the warm
//!   engine. A new shuffle shard adopts its parents' engines (the key groups it owns) and their
//!   states ([`shardflow_shuffle::DownstreamState::adopt`]).
//!
//! # Joins across deployed streams
//! One tagging upstream stage per input stream, one N-way window-join stage: [`StreamJoin`].
//!
//! # Idle upstream shards: the tick
//! Lambda invokes a function only for shards with new records, so a silent upstream shard never
//! sends a watermark record, and if nothing else reaches a shuffle shard its downstream is never
//! invoked and its processing time never advances. A scheduled tick (an EventBridge schedule
//! invoking the upstream function with `{"shardflowTick": {}}`, [`TICK_KEY`]) makes the upstream
//! stage send one *heartbeat* — an empty frame — to every open shard of the shuffle stream. The
//! heartbeat names no upstream shard (a watermark record of the silent shard would count as
//! activity and keep it from turning idle), so all it does is invoke the downstream at a later
//! processing time (its arrival), where the downstream's idleness rule
//! ([`shardflow_shuffle::ShuffleWatermark`]) stops the silent shard from holding the watermark.
//! **Latency bound**: a window closes downstream at most idleness timeout + tick period + one
//! downstream batching window after the last active upstream shard's watermark passed it.
//!
//! # Not (yet) supported
//! Interval commits (a shuffle stage commits every batch, and warns when it is given a longer
//! interval; with a lifted combiner a partial's id is the last record of its batch, so the gap an
//! interval leaves, re-read in other batch cuts, would be re-sent under other ids than the marks
//! recognise: see `docs/shuffle-and-checkpoints.md`, "Savepoints of the two stages"),
//! poison-record retries in the upstream (user code that panics fails the invocation), and the
//! end-of-input request.
//!
//! # Savepoints
//! The upstream stage holds no partial aggregate across batches (a lifted combiner is made and
//! flushed within [`UpstreamStage::handle`]'s batch), so its savepoint is an ordinary one; the
//! downstream's carries its shuffle state (`shardflow-lifecycle`, savepoint format version 2).

mod downstream;
mod join;
mod kinesis;
mod tick;
mod upstream;

pub use downstream::{run_downstream, DownstreamStage};
pub use join::{JoinError, JoinInput, StreamJoin, TaggingUpstream, JOIN_INPUTS_ENV};
pub use kinesis::{NoDecoder, NoSink};
pub use tick::{Tick, UpstreamRequest, TICK_KEY};
pub use upstream::{run_upstream, CombinerFactory, UpstreamStage};

use shardflow_engine::time::DurationMs;
use shardflow_stage::EnvError;

/// The shuffle stream an upstream stage writes (name or ARN).
pub const SHUFFLE_STREAM_ENV: &str = "SHARDFLOW_SHUFFLE_STREAM";

/// Milliseconds of processing time after which a silent upstream shard stops holding a
/// downstream stage's watermark back (unset: never).
pub const IDLENESS_MS_ENV: &str = "SHARDFLOW_IDLENESS_MS";

/// The idleness timeout [`IDLENESS_MS_ENV`] holds (`value`; `None` when unset): a whole number of
/// milliseconds > 0.
pub fn idleness_ms(value: Option<String>) -> Result<Option<DurationMs>, EnvError> {
    value
        .map(|v| {
            v.parse::<DurationMs>()
                .ok()
                .filter(|ms| *ms > 0)
                .ok_or(EnvError::Invalid {
                    name: IDLENESS_MS_ENV,
                    value: v,
                    reason: "a whole number of milliseconds > 0",
                })
        })
        .transpose()
}

use std::future::Future;

use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::{service_fn, LambdaEvent};
use shardflow_stage::BatchError;
use thiserror::Error;

use crate::stage::StageError;

/// Runs the function's handler until the Lambda runtime stops it: each invocation's payload read
/// with `parse` and served by `serve`.
async fn run_handler<R, F, Fut>(
    parse: fn(serde_json::Value) -> Result<R, BatchError>,
    serve: F,
) -> Result<(), lambda_runtime::Error>
where
    F: Fn(R) -> Fut + Send + Sync,
    Fut: Future<Output = Result<KinesisEventResponse, ShuffleStageError>>,
{
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let served = parse(event.payload).map(&serve);
        async move { Ok::<_, lambda_runtime::Error>(served?.await?) }
    }))
    .await
}

/// Why a shuffle stage's invocation failed as a whole (Lambda then retries the batch).
#[derive(Debug, Error)]
pub enum ShuffleStageError {
    /// The stage machinery failed (load, commit, sinks, lineage, injected crash).
    #[error(transparent)]
    Stage(#[from] StageError),
    /// The upstream half could not pack the batch.
    #[error(transparent)]
    Upstream(#[from] shardflow_shuffle::UpstreamError),
    /// The shuffle stream could not be read or written (the batch may be partly stored; nothing
    /// was committed, and the retry re-sends it).
    #[error(transparent)]
    Write(#[from] shardflow_shuffle_kinesis::WriteError),
    /// The stored downstream shuffle state does not decode, or a new one cannot be made.
    #[error("shard {shard}: downstream shuffle state: {reason}")]
    State {
        /// The shuffle shard.
        shard: String,
        /// What is wrong.
        reason: String,
    },
    /// User code panicked on an upstream record (the batch is retried; no poison handling yet).
    #[error("user code failed on record {sequence} of shard {shard}: {message}")]
    UserCode {
        /// The input shard.
        shard: String,
        /// The record.
        sequence: String,
        /// The panic message.
        message: String,
    },
}
