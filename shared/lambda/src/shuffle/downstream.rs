//! The keyed downstream stage of a shuffle: a split pipeline's downstream half over the shuffle
//! stream, its [`DownstreamState`] committed in the checkpoint item (see [`crate::shuffle`]).

use std::sync::Arc;

use aws_lambda_events::event::streams::KinesisEventResponse;
use serde::de::DeserializeOwned;
use shardflow_engine::state::key_group_of_encoded;
use shardflow_engine::time::DurationMs;
use shardflow_engine::Engine;
use shardflow_shuffle::downstream::{advance_processing_time, late_dead_letters, process_batch};
use shardflow_shuffle::{DownstreamState, KeyGroupSpace, LateLetters, ShuffleShard, Source};
use shardflow_stage::{batch_response, BatchOutcome, DeadLetter, DeadLetterSink, InputRecord, ResultSink, ShardBatch};
use shardflow_state_dynamodb::ShardPosition;

use super::kinesis::{records_after, NoDecoder};
use super::{run_handler, ShuffleStageError};
use crate::request::StageRequest;
use crate::stage::{CommittedShard, CrashPoint, Stage, StageError};

/// The stage over the downstream half: its [`Stage`] (pipeline `split.downstream`, no decoder,
/// the result sink, the dead-letter destination, the state table, and the shuffle stream's
/// lineage — required: a shard's owned key groups are those whose hash key its range holds),
/// the upstream sources it consumes and the idleness timeout for silent upstream shards.
pub struct DownstreamStage<S, Out, Sk, L> {
    stage: Stage<S, Out, NoDecoder, Sk, L>,
    sources: Vec<Source>,
    idleness: Option<DurationMs>,
    space: KeyGroupSpace,
}

/// A shuffle shard opened for a batch: its committed engine and store, and its shuffle state.
struct OpenDownstream<S, Out> {
    open: CommittedShard<S, Out>,
    state: DownstreamState,
    /// Whether engine and state were adopted from parents (the first commit is then full).
    adopted: bool,
}

impl<S, Out, Sk, L> DownstreamStage<S, Out, Sk, L>
where
    S: DeserializeOwned + Send + 'static,
    Out: Send + 'static,
    Sk: ResultSink<Out>,
    L: DeadLetterSink,
{
    /// The downstream stage running `stage` (a split pipeline's downstream half, with
    /// [`Stage::with_lineage`] of the shuffle stream), consuming the upstream `sources` (upstream
    /// stage name and input stream), where an upstream shard silent for `idleness` ms of
    /// processing time stops holding the watermark back (`None`: never).
    pub fn new(
        stage: Stage<S, Out, NoDecoder, Sk, L>,
        sources: impl IntoIterator<Item = Source>,
        idleness: Option<DurationMs>,
    ) -> Self {
        let space = KeyGroupSpace::new(stage.pipeline().max_key_groups());
        stage.warn_interval_not_honoured();
        DownstreamStage {
            stage,
            sources: sources.into_iter().collect(),
            idleness,
            space,
        }
    }

    /// The stage (its name, state table, sinks).
    pub fn stage(&self) -> &Stage<S, Out, NoDecoder, Sk, L> {
        &self.stage
    }

    /// Handles one batch of one shuffle shard: frames unpacked, repeats dropped, watermarks
    /// combined, values fed to the engine; results emitted, bad records dead-lettered with their
    /// bytes and reason, values later than the allowed lateness dead-lettered (kind `late`) with
    /// the shuffled records that carried them; then engine state, position and
    /// [`DownstreamState`] committed together.
    pub async fn handle(&self, batch: ShardBatch) -> Result<KinesisEventResponse, ShuffleStageError> {
        if batch.records.is_empty() {
            return Ok(batch_response(None));
        }
        let OpenDownstream {
            mut open,
            mut state,
            adopted,
        } = self.open(&batch.shard_id).await?;
        self.stage.crash_point(CrashPoint::AfterLoad)?;
        let records: Vec<InputRecord> = records_after(&batch, open.position.sequence_number.as_ref())
            .cloned()
            .collect();
        let Some(now) = records.last().map(|r| r.arrival_ms) else {
            tracing::info!(stage = %self.stage.name(), shard = %batch.shard_id, "batch already committed");
            self.stage.keep_warm(&batch.shard_id, open);
            return Ok(batch_response(None));
        };
        let Some(engine) = open.engine.as_mut() else {
            return Err(StageError::Unsupported("an opened shard without an engine".into()).into());
        };
        let outcome = self.process(engine, &mut state, &batch, &records, now);
        self.stage.emit_outcome(&outcome).await.map_err(StageError::from)?;
        self.stage.crash_point(CrashPoint::AfterEmit)?;
        let encoded = state.encode().map_err(|e| ShuffleStageError::State {
            shard: batch.shard_id.clone(),
            reason: e.to_string(),
        })?;
        open.store.set_shuffle_state(Some(encoded));
        open.position = ShardPosition {
            sequence_number: outcome.last_sequence.clone(),
            failure: None,
        };
        self.stage.commit_and_keep_warm(&batch, open, adopted, &outcome).await?;
        Ok(batch_response(None))
    }

    /// The downstream half over `records` (those after the committed position), then processing
    /// time advanced to the last one's arrival; the engine's results drained.
    fn process(
        &self,
        engine: &mut Engine<S, Out>,
        state: &mut DownstreamState,
        batch: &ShardBatch,
        records: &[InputRecord],
        now: i64,
    ) -> BatchOutcome<Out> {
        let shard = ShuffleShard {
            stage: self.stage.name(),
            stream: &batch.stream,
            shard_id: &batch.shard_id,
        };
        let mut report = process_batch(engine, state, shard, records);
        advance_processing_time(engine, state, now);
        let undecodable = report.dead_letters.len();
        for letter in &report.dead_letters {
            tracing::error!(stage = %self.stage.name(), shard = %batch.shard_id, reason = %letter.reason,
                "undecodable shuffle record dead-lettered");
        }
        // Late values go to the dead-letter destination with the shuffled records that carried
        // them, as the single-engine stage sends its late input records.
        let late = engine.drain_late();
        let LateLetters {
            letters,
            without_record,
        } = late_dead_letters(engine, shard, records, &late);
        for l in &without_record {
            tracing::warn!(stage = %self.stage.name(), shard = %batch.shard_id, reason = %DeadLetter::late_reason(l),
                "late record without a source record");
        }
        report.dead_letters.extend(letters);
        BatchOutcome {
            outputs: engine.drain_output(),
            buckets: engine.drain_buckets(),
            undecodable,
            dead_letters: report.dead_letters,
            records_in: batch.records.len(),
            skipped_duplicates: batch.records.len() - records.len(),
            duplicates_dropped: report.duplicates as usize,
            processed: report.processed as usize,
            late: late.len(),
            last_sequence: batch.last_sequence().cloned(),
            panicked_at: None,
        }
    }

    /// The shard's committed engine and shuffle state (warm or loaded), or for a shard that never
    /// committed, what it adopts from its parents, or a new state.
    async fn open(&self, shard: &str) -> Result<OpenDownstream<S, Out>, ShuffleStageError> {
        let mut open = self.stage.open_committed(shard).await?;
        if open.engine.is_some() {
            let state = match open.store.shuffle_state() {
                Some(bytes) => DownstreamState::decode(bytes).map_err(|e| e.to_string()),
                None => Err("a committed checkpoint without a shuffle state".to_owned()),
            }
            .map_err(|reason| ShuffleStageError::State {
                shard: shard.to_owned(),
                reason,
            })?;
            return Ok(OpenDownstream {
                open,
                state,
                adopted: false,
            });
        }
        let (engine, state, adopted) = self.start(shard).await?;
        open.engine = Some(engine);
        Ok(OpenDownstream { open, state, adopted })
    }

    /// A shard that never committed: the key groups its hash-key range owns, and its committed
    /// ancestors' engines (those key groups only) and shuffle states adopted
    /// ([`DownstreamState::adopt`]), or a new engine and state.
    async fn start(&self, shard: &str) -> Result<(Engine<S, Out>, DownstreamState, bool), ShuffleStageError> {
        let bad_state = |reason: String| ShuffleStageError::State {
            shard: shard.to_owned(),
            reason,
        };
        let info = self
            .stage
            .shard_lineage()
            .shard(shard)
            .await
            .map_err(StageError::from)?
            .ok_or_else(|| bad_state("the shuffle stream's lineage does not know the shard".into()))?;
        let owned = self.space.groups_in(&info.hash_key_range);
        let pipeline = self.stage.pipeline();
        let ancestors = self.stage.committed_ancestors(&info).await?;
        if ancestors.is_empty() {
            let state = DownstreamState::new(owned, self.sources.iter().cloned(), self.idleness)
                .map_err(|e| bad_state(e.to_string()))?;
            return Ok((pipeline.engine(), state, false));
        }
        let mut states = Vec::with_capacity(ancestors.len());
        let mut images = Vec::with_capacity(ancestors.len());
        for a in ancestors {
            let bytes = a
                .shuffle_state
                .ok_or_else(|| bad_state("a parent's checkpoint has no shuffle state".into()))?;
            states.push(DownstreamState::decode(&bytes).map_err(|e| bad_state(format!("a parent's: {e}")))?);
            images.push(a.image);
        }
        let max_key_groups = pipeline.max_key_groups();
        let keep = |key: &[u8]| owned.contains(&key_group_of_encoded(key, max_key_groups));
        let engine = Engine::adopt(pipeline, &images, &keep).map_err(StageError::from)?;
        let state =
            DownstreamState::adopt(&states, owned.clone(), self.idleness).map_err(|e| bad_state(e.to_string()))?;
        tracing::info!(stage = %self.stage.name(), shard, parents = ?info.parents, "adopted the parents' state");
        Ok((engine, state, true))
    }

    /// Handles one invocation: a batch of the shuffle stream. An end of input is refused (not
    /// supported for a shuffle's downstream yet).
    pub async fn serve(&self, request: StageRequest) -> Result<KinesisEventResponse, ShuffleStageError> {
        match request {
            StageRequest::Batch(batch) => self.handle(batch).await,
            StageRequest::EndOfInput(end) => Err(StageError::Unsupported(format!(
                "end of input of {}/{} sent to the downstream stage of a shuffle",
                end.stream, end.shard_id
            ))
            .into()),
        }
    }
}

/// Runs `stage` as the function's handler until the Lambda runtime stops it (batches of the
/// shuffle stream).
pub async fn run_downstream<S, Out, Sk, L>(stage: DownstreamStage<S, Out, Sk, L>) -> Result<(), lambda_runtime::Error>
where
    S: DeserializeOwned + Send + 'static,
    Out: Send + 'static,
    Sk: ResultSink<Out> + 'static,
    L: DeadLetterSink + 'static,
{
    let stage = Arc::new(stage);
    run_handler(StageRequest::from_value, move |request| {
        let stage = stage.clone();
        async move { Box::pin(stage.serve(request)).await }
    })
    .await
}
