//! The stage: one pipeline behind a Lambda Kinesis event source mapping.

use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::{service_fn, LambdaEvent};
use shardflow_engine::{Engine, Pipeline, StateError};
use shardflow_runtime::{
    batch_response, process_batch, BatchError, BatchMetrics, BatchOutcome, RecordDecoder, ShardBatch,
};
use shardflow_state_dynamodb::{
    CommitStep, DynamoDbCheckpointStore, LoadedCheckpoint, RecordFailure, StoreError, MAX_TRANSACTION_ITEMS,
};
use thiserror::Error;

use crate::sink::{DeadLetterSink, ResultSink, SinkError};

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
}

impl<In, Out, D, S, L> Stage<In, Out, D, S, L>
where
    In: Send + 'static,
    Out: Send + 'static,
    D: RecordDecoder<In>,
    S: ResultSink<Out>,
    L: DeadLetterSink,
{
    /// A stage named `name` (its state lives under this name in `table`).
    pub fn new(
        name: &str,
        pipeline: Pipeline<In, Out>,
        decoder: D,
        sink: S,
        dead_letters: L,
        client: aws_sdk_dynamodb::Client,
        table: &str,
    ) -> Self {
        Stage {
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
        }
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

    fn restore(&self, loaded: &LoadedCheckpoint) -> Result<Engine<In, Out>, StateError> {
        match &loaded.image {
            Some(image) => Engine::restore(&self.pipeline, image),
            None => Ok(self.pipeline.engine()),
        }
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
        self.crash_at(CrashPoint::AfterLoad)?;
        let mut engine = self.restore(&loaded)?;
        let outcome = self.process(&mut engine, &batch, &loaded);
        if let Some((at, message)) = outcome.panicked_at.clone() {
            return self.handle_failure(store, &loaded, &batch, at, message).await;
        }
        if outcome.skipped_duplicates == outcome.records_in {
            tracing::info!(stage = %self.name, shard = %batch.shard_id, "batch already committed");
            return Ok(batch_response(None));
        }
        self.emit(&outcome).await?;
        self.crash_at(CrashPoint::AfterEmit)?;
        let checkpoint = engine.snapshot()?;
        let started = Instant::now();
        let stats = store
            .commit_with_failure(&checkpoint, outcome.last_sequence.as_ref(), None)
            .await?;
        let commit_ms = started.elapsed().as_millis() as u64;
        self.crash_at(CrashPoint::AfterCommit)?;
        self.print_metrics(&batch, &outcome, &engine, stats, commit_ms);
        Ok(batch_response(None))
    }

    /// Commits the records before the one that panicked, counts the attempt, and reports the
    /// record as the batch item failure.
    async fn handle_failure(
        &self,
        mut store: DynamoDbCheckpointStore,
        loaded: &LoadedCheckpoint,
        batch: &ShardBatch,
        at: usize,
        message: String,
    ) -> Result<KinesisEventResponse, StageError> {
        let failed = &batch.records[at];
        tracing::error!(stage = %self.name, shard = %batch.shard_id, sequence = %failed.sequence, %message, "user code failed");
        let mut engine = self.restore(loaded)?;
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
        store
            .commit_with_failure(&engine.snapshot()?, position.as_ref(), Some(&failure))
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
        println!("{}", metrics.to_emf_line(&self.name, &batch.shard_id, now));
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
            let batch = ShardBatch::from_value(event.payload)?;
            let response = stage.handle(batch).await?;
            Ok::<_, lambda_runtime::Error>(response)
        }
    }))
    .await
}
