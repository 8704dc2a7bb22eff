//! The stage: one pipeline behind a Lambda Kinesis event source mapping.

use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::{service_fn, LambdaEvent};
use shardflow_engine::{CheckpointImage, Committed, Engine, Pipeline, RestoreReport, StateError, StateStore};
use shardflow_stage::{
    batch_response, partition_name, process_batch, BatchError, BatchMetrics, BatchOutcome, DeadLetterSink,
    RecordDecoder, ResultSink, SequenceNumber, ShardBatch, SinkError,
};
use shardflow_state_dynamodb::{
    CommitStats, CommitStep, DynamoDbCheckpointStore, RecordFailure, ShardPosition, ShardProbe, ShardProgress,
    SpillBucket, StoreError, MAX_TRANSACTION_ITEMS,
};
use thiserror::Error;

use crate::config::{CheckpointInterval, StageConfig};
use crate::gap::{read_gap, GapError};
use crate::lineage::{hash_key, FixedLineage, LineageError, ShardInfo, ShardLineage};
use crate::request::{EndOfInput, StageRequest};
use crate::warm::{default_budget_bytes, WarmShard, WarmShards};

mod hooks;
pub(crate) use hooks::CommittedShard;
mod interval;

/// How many generations of empty ancestors a new shard looks through for state.
const MAX_ANCESTRY: usize = 16;

/// Why an invocation failed as a whole (Lambda then retries the batch).
#[derive(Debug, Error)]
pub enum StageError {
    /// The event is not a batch of one shard.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// Loading or committing the checkpoint failed (including losing to another invocation).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored state does not fit this pipeline.
    #[error(transparent)]
    State(#[from] StateError),
    /// The shard's checkpoint (or its parents') holds state of operators this pipeline does not
    /// have, and the stage does not allow dropping it (see the crate documentation,
    /// "Restores"). Every invocation of the shard fails this way until a pipeline with those
    /// operator ids is deployed or `SHARDFLOW_ALLOW_DROPPED_STATE=true` is set: the shard does
    /// not advance, nothing is lost, its iterator age grows.
    #[error(
        "RESTORE REFUSED: stage {stage}, shard {shard}: the checkpoint holds state of operator(s) {unmatched:?} \
         that this pipeline does not have{}; deploy a pipeline with those operator ids (uid), or set \
         SHARDFLOW_ALLOW_DROPPED_STATE=true to drop their state. The shard does not advance until then",
        if starts_empty.is_empty() { String::new() } else { format!(" (its operator(s) {starts_empty:?} find no state)") }
    )]
    RestoreRefused {
        /// The stage.
        stage: String,
        /// The shard whose batch failed.
        shard: String,
        /// The checkpoint's operator ids the pipeline does not have.
        unmatched: Vec<String>,
        /// The pipeline's operators that find no state in the checkpoint (a renamed id shows on
        /// both lists).
        starts_empty: Vec<String>,
    },
    /// A sink failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The shard lineage could not be read.
    #[error(transparent)]
    Lineage(#[from] LineageError),
    /// The configuration is one the protocol cannot make exact (see the crate documentation).
    #[error("unsupported stage configuration: {0}")]
    Unsupported(String),
    /// A new shard cannot take over its parents' state exactly (see the crate documentation,
    /// "Resharding").
    #[error("shard {shard} cannot adopt the state of {parents:?}: {reason}")]
    ReshardRefused {
        /// The new shard.
        shard: String,
        /// Its parents.
        parents: Vec<String>,
        /// Why.
        reason: String,
    },
    /// The records between the checkpoint and the progress item could not be read or processed
    /// (see the crate documentation, "Interval commits").
    #[error(transparent)]
    Gap(#[from] GapError),
    /// A gap must be read but the stage has no Kinesis client ([`Stage::with_kinesis`]).
    #[error("shard {0} has handled records after its checkpoint, and the stage has no Kinesis client to read them")]
    NoKinesisClient(String),
    /// A test hook made the invocation die here (see [`Stage::with_crash_hook`]).
    #[error("injected crash at {0:?}")]
    InjectedCrash(CrashPoint),
}

/// A point of an invocation where a test can make it die, as a timeout or a crash would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After the checkpoint was loaded, before anything was emitted.
    AfterLoad,
    /// After the results and dead letters were emitted, before the commit.
    AfterEmit,
    /// Inside the commit.
    Commit(CommitStep),
    /// After the commit, before the response reached Lambda.
    AfterCommit,
    /// After the progress item of a batch that did not commit was written, before the response
    /// reached Lambda (interval commits only).
    AfterProgress,
}

/// Decides whether to die at a crash point (test hook).
pub type StageCrashHook = Arc<dyn Fn(CrashPoint) -> bool + Send + Sync>;

/// Where the EMF metrics line of each batch goes (see [`Stage::with_metrics_writer`]).
pub type MetricsWriter = Arc<dyn Fn(&str) + Send + Sync>;

/// A pipeline run as a Lambda stage. See the crate documentation for the protocol.
pub struct Stage<In, Out, D, S, L> {
    name: String,
    pipeline: Pipeline<In, Out>,
    decoder: D,
    sink: S,
    dead_letters: L,
    client: aws_sdk_dynamodb::Client,
    table: String,
    max_attempts: u32,
    max_transaction_items: usize,
    crash_hook: Option<StageCrashHook>,
    config: StageConfig,
    lineage: Arc<dyn ShardLineage>,
    spill: Option<SpillBucket>,
    metrics_writer: Option<MetricsWriter>,
    warm: WarmShards<In, Out>,
    kinesis: Option<aws_sdk_kinesis::Client>,
    /// A random id of this stage instance (container), named by the progress items it writes.
    container_id: String,
}

/// A random id for a stage instance (process, time and a per-process random seed).
fn new_container_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// What a batch read back from Kinesis before it (interval commits), for its EMF line.
#[derive(Debug, Clone, Copy, Default)]
struct GapCounts {
    records: u64,
    get_records_calls: u64,
}

/// A shard's engine at its committed state, with its store and position, for one batch.
struct OpenShard<In, Out> {
    store: DynamoDbCheckpointStore,
    position: ShardPosition,
    start: Start,
    engine: Engine<In, Out>,
    state_bytes: usize,
}

/// Where a shard's engine starts from.
struct Start {
    /// The committed state, or the state adopted from parents.
    image: Option<CheckpointImage>,
    /// Whether the state was adopted (the first commit is then full).
    adopted: bool,
}

impl<In, Out, D, S, L> Stage<In, Out, D, S, L>
where
    In: Send + 'static,
    Out: Send + 'static,
    D: RecordDecoder<In>,
    S: ResultSink<Out>,
    L: DeadLetterSink,
{
    /// A stage named `name` (its state lives under this name in `table`), deployed as `config`
    /// says. Refuses a `ParallelizationFactor` other than 1 ([`StageError::Unsupported`]; see the
    /// crate documentation).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        pipeline: Pipeline<In, Out>,
        decoder: D,
        sink: S,
        dead_letters: L,
        client: aws_sdk_dynamodb::Client,
        table: &str,
        config: StageConfig,
    ) -> Result<Self, StageError> {
        if config.parallelization_factor != 1 {
            return Err(StageError::Unsupported(format!(
                "ParallelizationFactor {} (only 1 is exact: the checkpoint holds one position per \
                 shard, which concurrent batches of one shard would overtake)",
                config.parallelization_factor
            )));
        }
        Ok(Stage {
            config,
            lineage: Arc::new(FixedLineage::default()),
            spill: None,
            name: name.to_owned(),
            pipeline,
            decoder,
            sink,
            dead_letters,
            client,
            table: table.to_owned(),
            max_attempts: 3,
            max_transaction_items: MAX_TRANSACTION_ITEMS,
            crash_hook: None,
            metrics_writer: None,
            warm: WarmShards::new(default_budget_bytes()),
            kinesis: None,
            container_id: new_container_id(),
        })
    }

    /// Where new shards learn their parents (default: a lineage that knows no shard, for streams
    /// that are never resharded). Use [`crate::KinesisLineage`] in a deployed stage.
    pub fn with_lineage(mut self, lineage: Arc<dyn ShardLineage>) -> Self {
        self.lineage = lineage;
        self
    }

    /// Commits a shard's state every `interval` instead of the configuration's (see the crate
    /// documentation, "Interval commits"). An interval above one batch needs [`Stage::with_kinesis`].
    pub fn with_checkpoint_interval(mut self, interval: CheckpointInterval) -> Self {
        self.config.checkpoint_interval = interval;
        self
    }

    /// The stage, if its checkpoint interval passes [`CheckpointInterval::check`] against
    /// `limits` (the input's retention, a sink's deduplication window); refused as
    /// [`StageError::Unsupported`] otherwise, so that the function fails its init.
    pub fn check_interval(self, limits: &crate::config::IntervalLimits) -> Result<Self, StageError> {
        self.config
            .checkpoint_interval
            .check(limits)
            .map_err(|reason| StageError::Unsupported(format!("stage {}: {reason}", self.name)))?;
        Ok(self)
    }

    /// The Kinesis client with which a container reads the records another one handled after the
    /// checkpoint (interval commits; the lineage's client serves).
    pub fn with_kinesis(mut self, kinesis: aws_sdk_kinesis::Client) -> Self {
        self.kinesis = Some(kinesis);
        self
    }

    /// The random id of this stage instance, as its progress items name it.
    pub fn container_id(&self) -> &str {
        &self.container_id
    }

    /// Keeps at most `bytes` of shards' state warm in this container between invocations (see
    /// [`crate::warm`]; default: half the function's memory; 0 loads every batch from the store).
    pub fn with_warm_state_budget(mut self, bytes: usize) -> Self {
        self.warm = WarmShards::new(bytes);
        self
    }

    /// Spills key groups too large for an item to `bucket` (see `shardflow-state-dynamodb`).
    pub fn with_spill_bucket(mut self, bucket: SpillBucket) -> Self {
        self.spill = Some(bucket);
        self
    }

    /// Limits the actions per DynamoDB transaction of a commit (tests use it to exercise
    /// multi-transaction commits).
    pub fn max_transaction_items(mut self, n: usize) -> Self {
        self.max_transaction_items = n;
        self
    }

    /// Test hook: `hook(point)` returning true makes the invocation die at `point` with
    /// [`StageError::InjectedCrash`].
    pub fn with_crash_hook(mut self, hook: StageCrashHook) -> Self {
        self.crash_hook = Some(hook);
        self
    }

    /// Sends each batch's EMF metrics line to `writer` instead of stdout (where a deployed
    /// function prints it for CloudWatch Logs to extract).
    pub fn with_metrics_writer(mut self, writer: MetricsWriter) -> Self {
        self.metrics_writer = Some(writer);
        self
    }

    fn crash_at(&self, point: CrashPoint) -> Result<(), StageError> {
        match &self.crash_hook {
            Some(hook) if hook(point) => Err(StageError::InjectedCrash(point)),
            _ => Ok(()),
        }
    }

    fn store(&self, shard: &str) -> DynamoDbCheckpointStore {
        let hook = self.crash_hook.clone().map(|h| {
            let f: shardflow_state_dynamodb::CrashHook = Arc::new(move |step| h(CrashPoint::Commit(step)));
            f
        });
        DynamoDbCheckpointStore::new(self.client.clone(), &self.table, &self.name, shard)
            .with_max_transaction_items(self.max_transaction_items)
            .with_crash_hook(hook)
            .with_spill_bucket(self.spill.clone())
    }

    /// How often a record on which user code fails is retried before it is dead-lettered as
    /// poison (default 3).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The stage's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The DynamoDB client of the state table.
    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.client
    }

    /// The state table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The result sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The dead-letter destination.
    pub fn dead_letters(&self) -> &L {
        &self.dead_letters
    }

    /// The engine of `shard` at `start`, restored with the stage's [`StageConfig::restore`]
    /// options; a report that is not plain is logged, a refusal is
    /// [`StageError::RestoreRefused`].
    fn restore(&self, shard: &str, start: &Start) -> Result<Engine<In, Out>, StageError> {
        let Some(image) = &start.image else {
            return Ok(self.pipeline.engine());
        };
        let restored = Engine::restore_with(&self.pipeline, image, self.config.restore);
        let (engine, report) = restored.map_err(|e| self.refused(shard, e))?;
        self.log_restore(shard, "restore", &report);
        Ok(engine)
    }

    /// [`StageError::RestoreRefused`] for a refusal of unmatched state (logged as an error),
    /// [`StageError::State`] for any other.
    fn refused(&self, shard: &str, e: StateError) -> StageError {
        match e {
            StateError::UnmatchedState {
                unmatched,
                starts_empty,
            } => {
                let e = StageError::RestoreRefused {
                    stage: self.name.clone(),
                    shard: shard.to_owned(),
                    unmatched,
                    starts_empty,
                };
                tracing::error!(stage = %self.name, shard, error = %e, "restore refused");
                e
            }
            other => StageError::State(other),
        }
    }

    /// Logs a restore (or adoption) report that is not plain: what starts empty, was dropped or
    /// was read under another id.
    fn log_restore(&self, shard: &str, what: &str, report: &RestoreReport) {
        if report.is_plain() {
            return;
        }
        tracing::warn!(
            stage = %self.name,
            shard,
            restored = ?report.restored(),
            starts_empty = ?report.starts_empty(),
            dropped = ?report.dropped(),
            allow_dropped_state = self.config.restore.allow_dropped_state,
            "{what}: not every operator's state was restored as stored"
        );
    }

    /// The committed state of `shard`, or, for a shard that never committed, the state it takes
    /// over from its parents (see the crate documentation, "Resharding").
    async fn start(&self, shard: &str, committed: Option<&Committed<ShardPosition>>) -> Result<Start, StageError> {
        if let Some(c) = committed {
            return Ok(Start {
                image: Some(c.image.clone()),
                adopted: false,
            });
        }
        let Some(info) = self.lineage.shard(shard).await? else {
            return Ok(Start {
                image: None,
                adopted: false,
            });
        };
        let ancestors = self.committed_ancestors(&info).await?;
        let ranges: Vec<_> = ancestors.iter().filter_map(|a| a.range.clone()).collect();
        let images: Vec<CheckpointImage> = ancestors.into_iter().map(|a| a.image).collect();
        if images.is_empty() {
            return Ok(Start {
                image: None,
                adopted: false,
            });
        }
        let engine = self.adopt(&info, &images, &ranges)?;
        let mut engine = engine;
        Ok(Start {
            image: Some(CheckpointImage::new(engine.snapshot_full()?)),
            adopted: true,
        })
    }

    /// An engine holding the keys of `images` that `child` owns.
    fn adopt(
        &self,
        child: &ShardInfo,
        images: &[CheckpointImage],
        parent_ranges: &[std::ops::RangeInclusive<u128>],
    ) -> Result<Engine<In, Out>, StageError> {
        let range = child.hash_key_range.clone();
        let covers_parents = parent_ranges.len() == images.len()
            && parent_ranges
                .iter()
                .all(|p| range.start() <= p.start() && p.end() <= range.end());
        if covers_parents {
            // A merge (or a shard that owns all its ancestors' hash keys): everything is its own.
            return self.adopt_keys(&child.shard_id, images, &|_| true);
        }
        if !self.config.keying.is_declared() {
            return Err(StageError::ReshardRefused {
                shard: child.shard_id.clone(),
                parents: child.parents.clone(),
                reason: "a split child must tell its keys from its sibling's; declare PartitionKeying".into(),
            });
        }
        let keying = &self.config.keying;
        let keep = move |key: &[u8]| {
            keying
                .partition_key_of(key)
                .is_some_and(|pk| range.contains(&hash_key(&pk)))
        };
        self.adopt_keys(&child.shard_id, images, &keep)
    }

    /// `Engine::adopt_with` under the stage's restore options, each parent's report logged
    /// when not plain.
    fn adopt_keys(
        &self,
        shard: &str,
        images: &[CheckpointImage],
        keep: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Engine<In, Out>, StageError> {
        let (engine, reports) = Engine::adopt_with(&self.pipeline, images, keep, self.config.restore)
            .map_err(|e| self.refused(shard, e))?;
        for report in &reports {
            self.log_restore(shard, "adoption of a parent's state", report);
        }
        Ok(engine)
    }

    fn process(&self, engine: &mut Engine<In, Out>, batch: &ShardBatch, position: &ShardPosition) -> BatchOutcome<Out> {
        let poison = position
            .failure
            .as_ref()
            .filter(|f| f.attempts >= self.max_attempts)
            .map(|f| {
                (
                    &f.sequence_number,
                    format!("user code failed {} times; last: {}", f.attempts, f.reason),
                )
            });
        process_batch(
            engine,
            &self.name,
            batch,
            &self.decoder,
            position.sequence_number.as_ref(),
            poison.as_ref().map(|(s, r)| (*s, r.as_str())),
        )
    }

    async fn emit(&self, outcome: &BatchOutcome<Out>) -> Result<(), SinkError> {
        if !outcome.outputs.is_empty() {
            self.sink.emit(&outcome.outputs).await?;
        }
        if !outcome.buckets.is_empty() {
            self.sink.emit_buckets(&outcome.buckets).await?;
        }
        if !outcome.dead_letters.is_empty() {
            self.dead_letters.send(&outcome.dead_letters).await?;
        }
        Ok(())
    }

    /// Handles one batch of one shard (see the crate documentation, "Interval commits": every
    /// batch goes that way, one batch being the shortest interval).
    pub async fn handle(&self, batch: ShardBatch) -> Result<KinesisEventResponse, StageError> {
        if batch.records.is_empty() {
            return Ok(batch_response(None));
        }
        Box::pin(self.handle_batch(batch)).await
    }

    /// Commits the engine's state (full when `adopted`) at the end of a handled batch; returns the
    /// new position, what the commit wrote and how long it took (ms).
    async fn commit_batch(
        &self,
        store: &mut DynamoDbCheckpointStore,
        engine: &mut Engine<In, Out>,
        adopted: bool,
        outcome: &BatchOutcome<Out>,
    ) -> Result<(ShardPosition, CommitStats, u64), StageError> {
        let checkpoint = if adopted {
            engine.snapshot_full()?
        } else {
            engine.snapshot()?
        };
        let started = Instant::now();
        let done = ShardPosition {
            sequence_number: outcome.last_sequence.clone(),
            failure: None,
        };
        let stats = StateStore::commit(store, &checkpoint, &done).await?;
        let commit_ms = started.elapsed().as_millis() as u64;
        self.crash_at(CrashPoint::AfterCommit)?;
        Ok((done, stats, commit_ms))
    }

    /// The shard's committed state (or the state it adopts from its parents), from the store.
    async fn load_shard(&self, shard: &str) -> Result<OpenShard<In, Out>, StageError> {
        let mut store = self.store(shard);
        let committed = StateStore::load(&mut store).await?;
        let position = committed.as_ref().map(|c| c.position.clone()).unwrap_or_default();
        let start = self.start(shard, committed.as_ref()).await?;
        let engine = self.restore(shard, &start)?;
        let state_bytes = start.image.as_ref().map_or(0, CheckpointImage::size_hint);
        Ok(OpenShard {
            store,
            position,
            start,
            engine,
            state_bytes,
        })
    }

    /// Shards whose engine this container keeps warm, least recently used first (diagnostics).
    pub fn warm_shards(&self) -> Vec<String> {
        self.warm.shards()
    }

    /// Ends the bounded input of one shard (see [`crate::request`]): opens the shard at its last
    /// handled record (its checkpoint, and the records handled after it read back from Kinesis),
    /// moves its watermark to the end of time, emits every window still open and commits the
    /// state at that position. A shard that never committed (and adopted nothing) has nothing
    /// open.
    pub async fn end_of_input(&self, end: &EndOfInput) -> Result<KinesisEventResponse, StageError> {
        Box::pin(self.end_of_input_at_last_record(end)).await
    }

    /// Ends the shard's partition in `engine`, emits what closes and commits at `position`.
    async fn finish_input(
        &self,
        end: &EndOfInput,
        mut store: DynamoDbCheckpointStore,
        mut engine: Engine<In, Out>,
        full: bool,
        position: &ShardPosition,
    ) -> Result<KinesisEventResponse, StageError> {
        let partition = engine.partition(&partition_name(&end.stream, &end.shard_id));
        engine.end_partition(partition);
        engine.finish();
        let outputs = engine.drain_output();
        let buckets = engine.drain_buckets();
        tracing::info!(stage = %self.name, shard = %end.shard_id, results = outputs.len(), buckets = buckets.len(), "end of input");
        if !outputs.is_empty() {
            self.sink.emit(&outputs).await?;
        }
        if !buckets.is_empty() {
            self.sink.emit_buckets(&buckets).await?;
        }
        let checkpoint = if full {
            engine.snapshot_full()?
        } else {
            engine.snapshot()?
        };
        StateStore::commit(&mut store, &checkpoint, position).await?;
        Ok(batch_response(None))
    }

    /// Handles one invocation: a batch ([`Stage::handle`]) or an end of input
    /// ([`Stage::end_of_input`]).
    pub async fn serve(&self, request: StageRequest) -> Result<KinesisEventResponse, StageError> {
        match request {
            StageRequest::Batch(batch) => self.handle(batch).await,
            StageRequest::EndOfInput(end) => self.end_of_input(&end).await,
        }
    }

    /// Commits the records before the one that panicked, counts the attempt, and reports the
    /// record as the batch item failure.
    #[allow(clippy::too_many_arguments)]
    async fn handle_failure(
        &self,
        mut store: DynamoDbCheckpointStore,
        committed: &ShardPosition,
        mut engine: Engine<In, Out>,
        adopted: bool,
        batch: &ShardBatch,
        at: usize,
        message: String,
    ) -> Result<KinesisEventResponse, StageError> {
        let Some(failed) = batch.records.get(at) else {
            return Err(StageError::Unsupported(format!(
                "failed record {at} is not in the batch"
            )));
        };
        tracing::error!(stage = %self.name, shard = %batch.shard_id, sequence = %failed.sequence, %message, "user code failed");
        let head = batch.truncated(at);
        let before = self.process(&mut engine, &head, committed);
        self.emit(&before).await?;
        let attempts = committed
            .failure
            .as_ref()
            .filter(|f| f.sequence_number == failed.sequence)
            .map_or(1, |f| f.attempts + 1);
        let failure = RecordFailure {
            sequence_number: failed.sequence.clone(),
            attempts,
            reason: message,
        };
        let position = ShardPosition {
            sequence_number: before
                .last_sequence
                .clone()
                .or_else(|| committed.sequence_number.clone()),
            failure: Some(failure),
        };
        let checkpoint = if adopted {
            engine.snapshot_full()?
        } else {
            engine.snapshot()?
        };
        StateStore::commit(&mut store, &checkpoint, &position).await?;
        Ok(batch_response(Some(&failed.sequence)))
    }

    fn print_metrics(
        &self,
        batch: &ShardBatch,
        outcome: &BatchOutcome<Out>,
        engine: &Engine<In, Out>,
        stats: CommitStats,
        commit_ms: u64,
        gap: GapCounts,
    ) {
        let now = batch.records.last().map_or(0, |r| r.arrival_ms);
        let watermark = engine.watermark();
        let metrics = BatchMetrics {
            records_in: outcome.records_in as u64,
            duplicates_skipped: outcome.skipped_duplicates as u64,
            duplicates_dropped: outcome.duplicates_dropped as u64,
            late_records: outcome.late as u64,
            dead_letter_records: outcome.dead_letters.len() as u64,
            results_out: outcome.outputs.len() as u64,
            watermark_lag_ms: if watermark > i64::MIN {
                now.saturating_sub(watermark).max(0) as u64
            } else {
                0
            },
            state_bytes_written: stats.bytes_written as u64,
            state_items_written: stats.items_written as u64,
            commit_ms,
            gap_records: gap.records,
            gap_get_records: gap.get_records_calls,
        };
        let line = metrics.to_emf_line(&self.name, &batch.shard_id, now);
        match &self.metrics_writer {
            Some(write) => write(&line),
            None => println!("{line}"),
        }
    }
}

/// Runs `stage` as the function's handler until the Lambda runtime stops it.
pub async fn run<In, Out, D, S, L>(stage: Stage<In, Out, D, S, L>) -> Result<(), lambda_runtime::Error>
where
    In: Send + 'static,
    Out: Send + 'static,
    D: RecordDecoder<In> + 'static,
    S: ResultSink<Out> + 'static,
    L: DeadLetterSink + 'static,
{
    let stage = Arc::new(stage);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let stage = stage.clone();
        async move {
            let request = StageRequest::from_value(event.payload)?;
            // boxed: the handler's future is deep; inline, a function's `main` exceeds the
            // compiler's layout query depth
            let response = Box::pin(stage.serve(request)).await?;
            Ok::<_, lambda_runtime::Error>(response)
        }
    }))
    .await
}
