//! The upstream stage of a shuffle: a split pipeline's upstream half over the input stream,
//! writing to the shuffle stream (see [`crate::shuffle`] for the protocol).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use aws_lambda_events::event::streams::KinesisEventResponse;
use serde::Serialize;
use shardflow_engine::{BatchCombiner, CheckpointImage, Engine, ShuffleOutput};
use shardflow_shuffle::{
    BatchEnd, KeyGroupSpace, PackError, Packed, RouteError, ShardMap, UpstreamBatch, UpstreamShard,
};
use shardflow_shuffle_kinesis::{ShuffleWriter, WriterConfig};
use shardflow_stage::{
    batch_response, BatchOutcome, DeadLetter, DeadLetterKind, DeadLetterSink, RecordDecoder, ShardBatch,
};
use shardflow_state_dynamodb::ShardPosition;

use super::kinesis::{records_after, NoSink};
use super::tick::{heartbeats, UpstreamRequest};
use super::{run_handler, ShuffleStageError};
use crate::request::StageRequest;
use crate::stage::{CommittedShard, CrashPoint, Stage, StageError};

/// The stage over the upstream half: its [`Stage`] (pipeline `split.upstream`, the input decoder,
/// no result sink, the dead-letter destination, the state table) and the shuffle stream.
pub struct UpstreamStage<In, S, D, L> {
    stage: Stage<In, ShuffleOutput<S>, D, NoSink, L>,
    kinesis: aws_sdk_kinesis::Client,
    shuffle_stream: String,
    space: KeyGroupSpace,
    combiner: Option<CombinerFactory<S>>,
}

/// Makes a fresh combiner for one upstream batch (combiner lifting): e.g.
/// `Arc::new(move || split.batch_combiner())` of the split pipeline.
pub type CombinerFactory<S> = Arc<dyn Fn() -> Option<Box<dyn BatchCombiner<S>>> + Send + Sync>;

/// An input shard's parents and, for a split's child, the other child (named in its first
/// watermark records: [`shardflow_shuffle::UpstreamBatch::begin`]).
#[derive(Debug, Default)]
struct Family {
    parents: Vec<String>,
    siblings: Vec<String>,
}

/// An upstream batch packed: the records to send, the dead letters, the batch's counts.
struct PackedBatch<S> {
    packed: Packed,
    outcome: BatchOutcome<ShuffleOutput<S>>,
}

impl<In, S, D, L> UpstreamStage<In, S, D, L>
where
    In: Send + 'static,
    S: Serialize + Send + Sync + 'static,
    D: RecordDecoder<In>,
    L: DeadLetterSink,
{
    /// The upstream stage running `stage` (whose pipeline is a split pipeline's upstream half)
    /// and writing to shuffle stream `shuffle_stream` with `kinesis`. Its lineage
    /// ([`Stage::with_lineage`]) must be the input stream's: a new input shard names its parents
    /// in its watermark records and starts at their watermark.
    pub fn new(
        stage: Stage<In, ShuffleOutput<S>, D, NoSink, L>,
        kinesis: aws_sdk_kinesis::Client,
        shuffle_stream: &str,
    ) -> Self {
        let space = KeyGroupSpace::new(stage.pipeline().max_key_groups());
        stage.warn_interval_not_honoured();
        UpstreamStage {
            stage,
            kinesis,
            shuffle_stream: shuffle_stream.to_owned(),
            space,
            combiner: None,
        }
    }

    /// Combines each batch's values per (key, window) into partial accumulators before the
    /// shuffle, with a combiner from `factory` per batch (the split pipeline's
    /// `batch_combiner`; it must be the pipeline the stage runs). A retried batch combines the
    /// same records the same way, so it re-sends the same partials with the same ids.
    pub fn with_combiner(mut self, factory: CombinerFactory<S>) -> Self {
        self.combiner = Some(factory);
        self
    }

    /// The stage (its name, state table, dead letters).
    pub fn stage(&self) -> &Stage<In, ShuffleOutput<S>, D, NoSink, L> {
        &self.stage
    }

    /// Handles one batch of one input shard: pack it from the committed state, send it to the
    /// shuffle stream, dead-letter what does not decode, then commit (see [`crate::shuffle`]).
    pub async fn handle(&self, batch: ShardBatch) -> Result<KinesisEventResponse, ShuffleStageError> {
        if batch.records.is_empty() {
            return Ok(batch_response(None));
        }
        let open = self.stage.open_committed(&batch.shard_id).await?;
        self.stage.crash_point(CrashPoint::AfterLoad)?;
        if records_after(&batch, open.position.sequence_number.as_ref())
            .next()
            .is_none()
        {
            tracing::info!(stage = %self.stage.name(), shard = %batch.shard_id, "batch already committed");
            self.stage.keep_warm(&batch.shard_id, open);
            return Ok(batch_response(None));
        }
        let CommittedShard {
            store,
            position,
            engine,
            state_bytes,
        } = open;
        let lineage = self.stage.shard_lineage();
        let family = match lineage.shard(&batch.shard_id).await.map_err(StageError::from)? {
            Some(info) => Family {
                siblings: lineage.siblings(&info),
                parents: info.parents,
            },
            None => Family::default(),
        };
        let (mut engine, adopted) = match engine {
            Some(engine) => (engine, false),
            None => self.start(&batch.shard_id).await?,
        };
        let PackedBatch { outcome, .. } = self.send(&mut engine, &batch, &position, &family).await?;
        self.stage.emit_outcome(&outcome).await.map_err(StageError::from)?;
        self.stage.crash_point(CrashPoint::AfterEmit)?;
        let done = ShardPosition {
            sequence_number: outcome.last_sequence.clone(),
            failure: None,
        };
        let open = CommittedShard {
            store,
            position: done,
            engine: Some(engine),
            state_bytes,
        };
        self.stage.commit_and_keep_warm(&batch, open, adopted, &outcome).await?;
        Ok(batch_response(None))
    }

    /// Packs the batch on `engine` for the shuffle stream's current map and sends it with the
    /// [`ShuffleWriter`]; after a reshard the batch is packed again for the new map by re-running
    /// it on a copy of the engine as it was before the batch (what the engine holds after the
    /// batch does not depend on the map). Returns what was last sent and the batch's outcome.
    async fn send(
        &self,
        engine: &mut Engine<In, ShuffleOutput<S>>,
        batch: &ShardBatch,
        position: &ShardPosition,
        family: &Family,
    ) -> Result<PackedBatch<S>, ShuffleStageError> {
        let mut writer = ShuffleWriter::new(self.kinesis.clone(), &self.shuffle_stream, WriterConfig::default());
        let before = CheckpointImage::new(engine.snapshot_full().map_err(StageError::from)?);
        let map = writer.shard_map(self.space).await?.clone();
        let first = self.pack(engine, &map, batch, position, family)?;
        let repack_error = std::cell::RefCell::new(None);
        let repack = |map: &ShardMap| {
            let repacked = Engine::restore(self.stage.pipeline(), &before)
                .map_err(|e| ShuffleStageError::Stage(e.into()))
                .and_then(|mut copy| self.pack(&mut copy, map, batch, position, family));
            match repacked {
                Ok(again) => Ok(again.packed),
                Err(ShuffleStageError::Upstream(shardflow_shuffle::UpstreamError::Pack(e))) => Err(e),
                Err(e) => {
                    // Not a packing error: kept, and reported instead of the placeholder below.
                    repack_error.replace(Some(e));
                    Err(PackError::Route(RouteError::NoShards))
                }
            }
        };
        let sent = writer.send(self.space, first.packed.clone(), repack).await;
        if let Some(e) = repack_error.into_inner() {
            return Err(e);
        }
        let stats = sent?;
        tracing::info!(stage = %self.stage.name(), shard = %batch.shard_id, kinesis_records = stats.records,
            calls = stats.calls, repacks = stats.repacks, "batch sent to the shuffle stream");
        Ok(first)
    }

    /// The engine of a shard that never committed: its committed ancestors' adopted (every
    /// partition of theirs ended, the watermark at the largest; the upstream half holds no keyed
    /// state, so nothing is filtered), or a new one. `true` if adopted.
    async fn start(&self, shard: &str) -> Result<(Engine<In, ShuffleOutput<S>>, bool), StageError> {
        let pipeline = self.stage.pipeline();
        let Some(info) = self.stage.shard_lineage().shard(shard).await? else {
            return Ok((pipeline.engine(), false));
        };
        let ancestors = self.stage.committed_ancestors(&info).await?;
        if ancestors.is_empty() {
            return Ok((pipeline.engine(), false));
        }
        let images: Vec<_> = ancestors.into_iter().map(|a| a.image).collect();
        Ok((Engine::adopt(pipeline, &images, &|_| true)?, true))
    }

    /// Runs the records after the committed position through [`UpstreamBatch`] and packs them for
    /// `map`; undecodable records become dead letters.
    fn pack(
        &self,
        engine: &mut Engine<In, ShuffleOutput<S>>,
        map: &ShardMap,
        batch: &ShardBatch,
        position: &ShardPosition,
        family: &Family,
    ) -> Result<PackedBatch<S>, ShuffleStageError> {
        let parents: Vec<&str> = family.parents.iter().map(String::as_str).collect();
        let siblings: Vec<&str> = family.siblings.iter().map(String::as_str).collect();
        let shard = UpstreamShard {
            stage: self.stage.name(),
            stream: &batch.stream,
            shard: &batch.shard_id,
            parents: &parents,
            siblings: &siblings,
        };
        let mut outcome = BatchOutcome {
            outputs: Vec::new(),
            buckets: Vec::new(),
            dead_letters: Vec::new(),
            records_in: batch.records.len(),
            skipped_duplicates: 0,
            duplicates_dropped: 0,
            processed: 0,
            undecodable: 0,
            late: 0,
            last_sequence: batch.last_sequence().cloned(),
            panicked_at: None,
        };
        let combiner = self.combiner.as_ref().and_then(|make| make());
        let mut upstream = UpstreamBatch::begin(engine, map, shard)?.with_combiner(combiner);
        let mut handled = 0;
        for record in records_after(batch, position.sequence_number.as_ref()) {
            handled += 1;
            let value = match self.stage.decoder().decode_record(batch, record) {
                Ok(value) => value,
                Err(e) => {
                    outcome.undecodable += 1;
                    outcome.dead_letters.push(DeadLetter::new(
                        DeadLetterKind::Undecodable,
                        self.stage.name(),
                        &batch.stream,
                        &batch.shard_id,
                        record,
                        e.to_string(),
                    ));
                    continue;
                }
            };
            let offset = record.sequence.digest();
            let pushed = catch_unwind(AssertUnwindSafe(|| {
                upstream.push(&record.sequence, offset, record.arrival_ms, value)
            }));
            match pushed {
                Ok(result) => result?,
                Err(panic) => {
                    return Err(ShuffleStageError::UserCode {
                        shard: batch.shard_id.clone(),
                        sequence: record.sequence.to_string(),
                        message: panic_message(panic.as_ref()),
                    })
                }
            }
            outcome.processed += 1;
        }
        outcome.skipped_duplicates = batch.records.len() - handled;
        let packed = upstream.finish(BatchEnd::Open)?;
        Ok(PackedBatch { packed, outcome })
    }

    /// Handles a tick: one heartbeat to every open shard of the shuffle stream (see
    /// [`crate::shuffle`], "Idle upstream shards: the tick"). Touches no checkpoint.
    pub async fn tick(&self) -> Result<KinesisEventResponse, ShuffleStageError> {
        let mut writer = ShuffleWriter::new(self.kinesis.clone(), &self.shuffle_stream, WriterConfig::default());
        let packed = heartbeats(writer.shard_map(self.space).await?);
        writer
            .send(self.space, packed.clone(), |map| Ok(heartbeats(map)))
            .await?;
        tracing::info!(stage = %self.stage.name(), shards = packed.records.len(), "tick: heartbeats sent");
        Ok(batch_response(None))
    }

    /// Handles one invocation: a batch ([`UpstreamStage::handle`]) or a tick
    /// ([`UpstreamStage::tick`]). An end of input is refused: the upstream half has no window to
    /// close (end the downstream's input instead).
    pub async fn serve(&self, request: UpstreamRequest) -> Result<KinesisEventResponse, ShuffleStageError> {
        match request {
            UpstreamRequest::Tick(_) => self.tick().await,
            UpstreamRequest::Stage(StageRequest::Batch(batch)) => self.handle(batch).await,
            UpstreamRequest::Stage(StageRequest::EndOfInput(end)) => Err(StageError::Unsupported(format!(
                "end of input of {}/{} sent to an upstream stage of a shuffle",
                end.stream, end.shard_id
            ))
            .into()),
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Runs `stage` as the function's handler until the Lambda runtime stops it (batches of the
/// input stream and ticks).
pub async fn run_upstream<In, S, D, L>(stage: UpstreamStage<In, S, D, L>) -> Result<(), lambda_runtime::Error>
where
    In: Send + 'static,
    S: Serialize + Send + Sync + 'static,
    D: RecordDecoder<In> + 'static,
    L: DeadLetterSink + 'static,
{
    let stage = Arc::new(stage);
    run_handler(UpstreamRequest::from_value, move |request| {
        let stage = stage.clone();
        async move { Box::pin(stage.serve(request)).await }
    })
    .await
}
