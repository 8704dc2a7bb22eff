//! The stage: one pipeline behind a Lambda Kinesis event source mapping.

use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::{service_fn, LambdaEvent};
use shardflow_engine::{CheckpointImage, Engine, Pipeline, StateError};
use shardflow_stage::{
    batch_response, partition_name, process_batch, BatchError, BatchMetrics, BatchOutcome, DeadLetterSink,
    RecordDecoder, ResultSink, ShardBatch, SinkError,
};
use shardflow_state_dynamodb::{
    CommitStep, DynamoDbCheckpointStore, LoadedCheckpoint, RecordFailure, SpillBucket, StoreError,
    MAX_TRANSACTION_ITEMS,
};
use thiserror::Error;

use crate::config::StageConfig;
use crate::lineage::{hash_key, FixedLineage, LineageError, ShardInfo, ShardLineage};
use crate::request::{EndOfInput, StageRequest};

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
        })
    }

    /// Where new shards learn their parents (default: a lineage that knows no shard, for streams
    /// that are never resharded). Use [`crate::KinesisLineage`] in a deployed stage.
    pub fn with_lineage(mut self, lineage: Arc<dyn ShardLineage>) -> Self {
        self.lineage = lineage;
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

    fn restore(&self, start: &Start) -> Result<Engine<In, Out>, StateError> {
        match &start.image {
            Some(image) => Engine::restore(&self.pipeline, image),
            None => Ok(self.pipeline.engine()),
        }
    }

    /// The committed state of `shard`, or, for a shard that never committed, the state it takes
    /// over from its parents (see the crate documentation, "Resharding").
    async fn start(&self, shard: &str, loaded: &LoadedCheckpoint) -> Result<Start, StageError> {
        if loaded.version > 0 {
            return Ok(Start {
                image: loaded.image.clone(),
                adopted: false,
            });
        }
        let Some(info) = self.lineage.shard(shard).await? else {
            return Ok(Start {
                image: None,
                adopted: false,
            });
        };
        let mut images = Vec::new();
        let mut ranges = Vec::new();
        let mut pending: Vec<(String, usize)> = info.parents.iter().map(|p| (p.clone(), 1)).collect();
        while let Some((ancestor, depth)) = pending.pop() {
            let parent = self.lineage.shard(&ancestor).await?;
            let loaded = self.store(&ancestor).load().await?;
            match (loaded.image, parent) {
                (Some(image), parent) => {
                    images.push(image);
                    ranges.extend(parent.map(|p| p.hash_key_range));
                }
                // An ancestor that never committed: its state, if any, is still with its parents.
                (None, Some(p)) if depth < MAX_ANCESTRY => {
                    pending.extend(p.parents.into_iter().map(|g| (g, depth + 1)));
                }
                (None, _) => {}
            }
        }
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
            return Ok(Engine::adopt(&self.pipeline, images, &|_| true)?);
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
        Ok(Engine::adopt(&self.pipeline, images, &keep)?)
    }

    fn process(
        &self,
        engine: &mut Engine<In, Out>,
        batch: &ShardBatch,
        loaded: &LoadedCheckpoint,
    ) -> BatchOutcome<Out> {
        let poison = loaded
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
            loaded.sequence_number.as_ref(),
            poison.as_ref().map(|(s, r)| (*s, r.as_str())),
        )
    }

    async fn emit(&self, outcome: &BatchOutcome<Out>) -> Result<(), SinkError> {
        if !outcome.outputs.is_empty() {
            self.sink.emit(&outcome.outputs).await?;
        }
        if !outcome.dead_letters.is_empty() {
            self.dead_letters.send(&outcome.dead_letters).await?;
        }
        Ok(())
    }

    /// Handles one batch of one shard (see the crate documentation).
    pub async fn handle(&self, batch: ShardBatch) -> Result<KinesisEventResponse, StageError> {
        if batch.records.is_empty() {
            return Ok(batch_response(None));
        }
        let mut store = self.store(&batch.shard_id);
        let loaded = store.load().await?;
        let start = self.start(&batch.shard_id, &loaded).await?;
        self.crash_at(CrashPoint::AfterLoad)?;
        let mut engine = self.restore(&start)?;
        let outcome = self.process(&mut engine, &batch, &loaded);
        if let Some((at, message)) = outcome.panicked_at.clone() {
            return self.handle_failure(store, &loaded, &start, &batch, at, message).await;
        }
        if outcome.skipped_duplicates == outcome.records_in {
            tracing::info!(stage = %self.name, shard = %batch.shard_id, "batch already committed");
            self.print_metrics(&batch, &outcome, &engine, Default::default(), 0);
            return Ok(batch_response(None));
        }
        self.emit(&outcome).await?;
        self.crash_at(CrashPoint::AfterEmit)?;
        let checkpoint = if start.adopted {
            engine.snapshot_full()?
        } else {
            engine.snapshot()?
        };
        let started = Instant::now();
        let stats = store
            .commit_with_failure(&checkpoint, outcome.last_sequence.as_ref(), None)
            .await?;
        let commit_ms = started.elapsed().as_millis() as u64;
        self.crash_at(CrashPoint::AfterCommit)?;
        self.print_metrics(&batch, &outcome, &engine, stats, commit_ms);
        Ok(batch_response(None))
    }

    /// Ends the bounded input of one shard (see [`crate::request`]): restores its committed
    /// state, moves its watermark to the end of time, emits every window still open and commits
    /// the state at the same position. A shard that never committed has nothing open.
    pub async fn end_of_input(&self, end: &EndOfInput) -> Result<KinesisEventResponse, StageError> {
        let mut store = self.store(&end.shard_id);
        let loaded = store.load().await?;
        if loaded.version == 0 {
            tracing::info!(stage = %self.name, shard = %end.shard_id, "end of input of a shard without state");
            return Ok(batch_response(None));
        }
        let start = self.start(&end.shard_id, &loaded).await?;
        let mut engine = self.restore(&start)?;
        let partition = engine.partition(&partition_name(&end.stream, &end.shard_id));
        engine.end_partition(partition);
        engine.finish();
        let outputs = engine.drain_output();
        tracing::info!(stage = %self.name, shard = %end.shard_id, results = outputs.len(), "end of input");
        if !outputs.is_empty() {
            self.sink.emit(&outputs).await?;
        }
        let checkpoint = engine.snapshot()?;
        store
            .commit_with_failure(&checkpoint, loaded.sequence_number.as_ref(), loaded.failure.as_ref())
            .await?;
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
    async fn handle_failure(
        &self,
        mut store: DynamoDbCheckpointStore,
        loaded: &LoadedCheckpoint,
        start: &Start,
        batch: &ShardBatch,
        at: usize,
        message: String,
    ) -> Result<KinesisEventResponse, StageError> {
        let failed = &batch.records[at];
        tracing::error!(stage = %self.name, shard = %batch.shard_id, sequence = %failed.sequence, %message, "user code failed");
        let mut engine = self.restore(start)?;
        let head = batch.truncated(at);
        let before = self.process(&mut engine, &head, loaded);
        self.emit(&before).await?;
        let attempts = loaded
            .failure
            .as_ref()
            .filter(|f| f.sequence_number == failed.sequence)
            .map_or(1, |f| f.attempts + 1);
        let failure = RecordFailure {
            sequence_number: failed.sequence.clone(),
            attempts,
            reason: message,
        };
        let position = before.last_sequence.clone().or_else(|| loaded.sequence_number.clone());
        let checkpoint = if start.adopted {
            engine.snapshot_full()?
        } else {
            engine.snapshot()?
        };
        store
            .commit_with_failure(&checkpoint, position.as_ref(), Some(&failure))
            .await?;
        Ok(batch_response(Some(&failed.sequence)))
    }

    fn print_metrics(
        &self,
        batch: &ShardBatch,
        outcome: &BatchOutcome<Out>,
        engine: &Engine<In, Out>,
        stats: shardflow_state_dynamodb::CommitStats,
        commit_ms: u64,
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
            let response = stage.serve(request).await?;
            Ok::<_, lambda_runtime::Error>(response)
        }
    }))
    .await
}
