//! [`LocalRunner`]: runs pipelines over an [`Input`] with checkpoints in a local directory.
//!
//! # Scheduling
//! Partitions are read round robin, `batch_size` records at a time (several Kinesis shards
//! polled in turn); a partition that ends is marked ended in every engine. The order is a pure
//! function of the input, so runs are reproducible.
//!
//! # Processing time
//! Every record gets an arrival time from [`Arrival`] (e.g. its event time plus a delay, or a
//! field the producer set); the runner's clock is the largest arrival seen, so processing-time
//! triggers (early firings every N ms) fire at the same records in every run.
//!
//! # Checkpoints and resume
//! With a state directory, the runner takes a checkpoint every `checkpoint_every` records and at
//! the end (see [`crate::manifest`] for the protocol and layout). Started again on the same
//! directory, it restores the engines, cuts the output files back to their checkpointed length,
//! skips every partition to its checkpointed offset and goes on, so that the output files end up
//! exactly as one uninterrupted run writes them.
//!
//! The pipelines may have changed between the runs (a new build): each engine is restored by the
//! rule of every runner (`Engine::restore_with`): an operator's state is found by its id, state of
//! an operator the pipeline no longer has refuses the resume ([`RunnerError::State`] with
//! `StateError::UnmatchedState`, naming the operators) unless
//! [`LocalRunner::allow_dropped_state`] is set, and an operator without state starts empty. A
//! restore that is not plain is logged as a warning.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use shardflow_engine::time::DurationMs;
use shardflow_engine::{
    EngineMetrics, Pipeline, RestoreOptions, SplitPipeline, StateError, StateStore, Timestamp, MIN_TIMESTAMP,
};

use crate::input::{Input, InputError, Item};
use crate::job::{Job, PipelineJob};
use crate::manifest::{Cursor, ManifestError, PartitionPosition, RunManifest, MANIFEST_VERSION};
use crate::sink::{DeadLetterLine, JsonLinesSink};
use crate::split_job::SplitJob;
use crate::store::{DirStoreError, LocalDirStateStore};

/// The late side output's file name.
pub const LATE_FILE: &str = "late.jsonl";
/// The dead-letter file's name.
pub const DEAD_LETTER_FILE: &str = "dead_letters.jsonl";

/// Why a run failed. Malformed records are not errors: they go to the dead-letter file.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The runner was configured wrongly (no pipeline, clashing names, ...).
    #[error("invalid run configuration: {0}")]
    Config(String),
    /// An output file could not be written.
    #[error("output {path}: {source}")]
    Output {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The input could not be read.
    #[error(transparent)]
    Input(#[from] InputError),
    /// An engine could not be snapshotted or restored.
    #[error("engine state of {pipeline}: {source}")]
    State {
        /// The pipeline.
        pipeline: String,
        /// The engine's error.
        #[source]
        source: StateError,
    },
    /// A checkpoint could not be stored or loaded.
    #[error(transparent)]
    Store(#[from] DirStoreError),
    /// The manifest could not be read or written.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The state directory belongs to another run (other input, pipelines or batch size).
    #[error("state directory {dir} cannot be resumed by this run: {reason}")]
    StateMismatch {
        /// The state directory.
        dir: PathBuf,
        /// What differs.
        reason: String,
    },
}

/// A function giving a record's time.
pub type TimeFn<In> = Arc<dyn Fn(&In) -> Timestamp + Send + Sync>;

/// How a record's arrival (processing) time is derived.
pub enum Arrival<In> {
    /// Event time (of the first pipeline) plus a fixed delay.
    EventTimePlus(DurationMs),
    /// A function of the record (e.g. the time the producer or CDC connector handled it).
    Field(TimeFn<In>),
}

/// What one pipeline did in one batch (a partition's turn of up to `batch_size` records),
/// reported to [`LocalRunner::on_batch`]: the counts a Lambda stage prints per batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchReport {
    /// The pipeline.
    pub pipeline: String,
    /// The partition the batch was read from.
    pub partition: String,
    /// The runner's clock after the batch (the largest arrival time seen).
    pub clock: Timestamp,
    /// Records of the batch the pipeline processed.
    pub records_in: u64,
    /// Results the batch made the pipeline emit.
    pub results_out: u64,
    /// Records of the batch routed to the late side output.
    pub late_records: u64,
    /// Values the pipeline's `deduplicate` steps dropped.
    pub duplicates_dropped: u64,
    /// Records of the batch that could not be decoded (dead letters).
    pub dead_letters: u64,
    /// The partition's watermark after the batch (its largest event time minus the
    /// out-of-orderness), once it has one.
    pub partition_watermark: Option<Timestamp>,
}

/// The callback of [`LocalRunner::on_batch`].
type OnBatch = Box<dyn FnMut(&BatchReport)>;

/// Progress of a run, reported to [`LocalRunner::on_progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Records consumed (processed, dead-lettered, or skipped on resume).
    pub records: u64,
}

/// Counters of one pipeline at the end of a run (totals, including before a resume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipelineSummary {
    /// The pipeline's name.
    pub pipeline: String,
    /// Its results file.
    pub output: PathBuf,
    /// Records it processed.
    pub records_in: u64,
    /// Results it produced.
    pub results_out: u64,
    /// Records it sent to the late side output.
    pub late_records: u64,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// Records read and processed (or dead-lettered) by this run.
    pub records_read: u64,
    /// Records skipped because a checkpoint already covered them.
    pub records_skipped: u64,
    /// Dead letters in total.
    pub dead_letters: u64,
    /// Per pipeline.
    pub pipelines: Vec<PipelineSummary>,
    /// The epoch this run resumed from, if it resumed.
    pub resumed_from_epoch: Option<u64>,
    /// Checkpoints committed by this run.
    pub checkpoints: u64,
    /// Whether the run stopped early ([`LocalRunner::stop_after`]) instead of finishing.
    pub interrupted: bool,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// Peak resident set size of the process, if known.
    pub peak_rss_bytes: Option<u64>,
}

impl RunSummary {
    /// Records read per second of wall-clock time.
    pub fn records_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.records_read as f64 / secs
        } else {
            0.0
        }
    }
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(e) = self.resumed_from_epoch {
            writeln!(
                f,
                "resumed from checkpoint {e} ({} records skipped)",
                self.records_skipped
            )?;
        }
        writeln!(
            f,
            "events in: {}   dead letters: {}   checkpoints: {}{}",
            self.records_read,
            self.dead_letters,
            self.checkpoints,
            if self.interrupted { "   (interrupted)" } else { "" }
        )?;
        writeln!(
            f,
            "{:<16} {:>12} {:>12} {:>10}  output",
            "pipeline", "records in", "results out", "late"
        )?;
        for p in &self.pipelines {
            writeln!(
                f,
                "{:<16} {:>12} {:>12} {:>10}  {}",
                p.pipeline,
                p.records_in,
                p.results_out,
                p.late_records,
                p.output.display()
            )?;
        }
        write!(
            f,
            "time: {:.2} s   throughput: {:.0} events/s   peak RSS: {}",
            self.elapsed.as_secs_f64(),
            self.records_per_sec(),
            self.peak_rss_bytes.map_or_else(
                || "n/a".to_owned(),
                |b| format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
            )
        )
    }
}

/// Runs one or more pipelines over the same input (see the module documentation).
///
/// ```
/// use shardflow_engine::{combine::Count, Pipeline, Windowing};
/// use shardflow_local::{IterInput, LocalRunner};
///
/// let counts = Pipeline::builder("counts")
///     .event_time(|v: &(u32, i64)| v.1)
///     .key_by(|v| v.0)
///     .window(Windowing::tumbling(1_000).unwrap())
///     .aggregate(Count, |k, w, _, n| (*k, w.start, n))
///     .sink("counts");
/// let out = tempfile::tempdir().unwrap();
/// let mut input = IterInput::from_vecs(vec![vec![(1, 10), (1, 20)], vec![(2, 30)]]);
/// let run = LocalRunner::new(out.path()).job(counts).run(&mut input);
/// let summary = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(run).unwrap();
/// assert_eq!(summary.pipelines[0].results_out, 2);
/// let lines = std::fs::read_to_string(out.path().join("counts.jsonl")).unwrap();
/// assert_eq!(lines.lines().count(), 2);
/// ```
pub struct LocalRunner<In> {
    out_dir: PathBuf,
    state_dir: Option<PathBuf>,
    checkpoint_every: u64,
    full_checkpoint_every: u64,
    batch_size: usize,
    arrival: Arrival<In>,
    input_id: String,
    stop_after: Option<u64>,
    fsync: bool,
    restore: RestoreOptions,
    jobs: Vec<Box<dyn Job<In>>>,
    shuffle_shards: u16,
    event_time: Option<TimeFn<In>>,
    progress: Option<Box<dyn FnMut(Progress)>>,
    on_batch: Option<OnBatch>,
    /// Per job, its counters when the last batch was reported.
    batch_base: Vec<EngineMetrics>,
    /// Dead letters when the last batch was reported.
    dead_letters_base: u64,
}

/// Shards of a split pipeline's in-memory shuffle stream unless [`LocalRunner::shuffle_shards`]
/// says otherwise.
pub const DEFAULT_SHUFFLE_SHARDS: u16 = 4;

/// Progress is reported every this many records.
const PROGRESS_EVERY: u64 = 16_384;

impl<In: Clone + Send + 'static> LocalRunner<In> {
    /// A runner writing its output files under `out_dir`, without checkpoints, reading batches
    /// of 16 records per partition, with arrival = event time.
    pub fn new(out_dir: impl Into<PathBuf>) -> Self {
        LocalRunner {
            out_dir: out_dir.into(),
            state_dir: None,
            checkpoint_every: 0,
            full_checkpoint_every: 10,
            batch_size: 16,
            arrival: Arrival::EventTimePlus(0),
            input_id: String::new(),
            stop_after: None,
            fsync: true,
            restore: RestoreOptions::strict(),
            jobs: Vec::new(),
            shuffle_shards: DEFAULT_SHUFFLE_SHARDS,
            event_time: None,
            progress: None,
            on_batch: None,
            batch_base: Vec::new(),
            dead_letters_base: 0,
        }
    }

    /// Adds a pipeline; its results go to `<out_dir>/<sink name>.jsonl`.
    pub fn job<Out: Serialize + Send + 'static>(mut self, pipeline: Pipeline<In, Out>) -> Self {
        if self.event_time.is_none() {
            let p = pipeline.clone();
            self.event_time = Some(Arc::new(move |v: &In| p.event_time(v)));
        }
        self.jobs.push(Box::new(PipelineJob::new(pipeline)));
        self
    }

    /// Adds a split pipeline ([`shardflow_engine::KeyedStream::shuffle`]), run as two stages
    /// over an in-memory shuffle stream of [`LocalRunner::shuffle_shards`] shards: its upstream
    /// half on the input partitions, its downstream half on the shuffle shards, through the
    /// halves the Lambda stages use. Its results (those of the whole pipeline, with the same ids)
    /// go to `<out_dir>/<sink name>.jsonl`.
    ///
    /// ```
    /// use shardflow_engine::{combine::Count, Pipeline, Windowing};
    /// use shardflow_local::{IterInput, LocalRunner};
    ///
    /// let counts = Pipeline::builder("counts")
    ///     .event_time(|v: &(u32, i64)| v.1)
    ///     .key_by(|v| v.0)
    ///     .shuffle()
    ///     .unwrap()
    ///     .window(Windowing::tumbling(1_000).unwrap())
    ///     .aggregate(Count, |k, w, _, n| (*k, w.start, n))
    ///     .sink("counts");
    /// let out = tempfile::tempdir().unwrap();
    /// let mut input = IterInput::from_vecs(vec![vec![(1, 10), (1, 20)], vec![(2, 30), (1, 40)]]);
    /// let run = LocalRunner::new(out.path()).shuffle_shards(2).split_job(counts).run(&mut input);
    /// let summary = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(run).unwrap();
    /// assert_eq!((summary.pipelines[0].records_in, summary.pipelines[0].results_out), (4, 2));
    /// ```
    pub fn split_job<S, Out>(mut self, split: SplitPipeline<In, S, Out>) -> Self
    where
        S: Serialize + DeserializeOwned + Send + 'static,
        Out: Serialize + Send + 'static,
    {
        if self.event_time.is_none() {
            let p = split.whole.clone();
            self.event_time = Some(Arc::new(move |v: &In| p.event_time(v)));
        }
        self.jobs.push(Box::new(SplitJob::new(split, self.shuffle_shards)));
        self
    }

    /// Shards of the in-memory shuffle stream of every split pipeline ([`LocalRunner::split_job`]);
    /// default 4. Part of a run's checkpoints: a state directory is resumed with the same count.
    pub fn shuffle_shards(mut self, n: u16) -> Self {
        self.shuffle_shards = n.max(1);
        for job in &mut self.jobs {
            job.set_shuffle_shards(self.shuffle_shards);
        }
        self
    }

    /// Checkpoints into `dir` every `every` records (0: only at the end), and resumes from it.
    pub fn checkpoints(mut self, dir: impl Into<PathBuf>, every: u64) -> Self {
        self.state_dir = Some(dir.into());
        self.checkpoint_every = every;
        self
    }

    /// Every `n`-th checkpoint is full (the others are incremental); default 10.
    pub fn full_checkpoint_every(mut self, n: u64) -> Self {
        self.full_checkpoint_every = n.max(1);
        self
    }

    /// Records read from a partition before the next partition's turn; default 16.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// How arrival (processing) times are derived.
    pub fn arrival(mut self, arrival: Arrival<In>) -> Self {
        self.arrival = arrival;
        self
    }

    /// Identifies the input (file names, generator seed...): a state directory written for
    /// another input is refused instead of resumed.
    pub fn input_id(mut self, id: impl Into<String>) -> Self {
        self.input_id = id.into();
        self
    }

    /// Stops after processing `n` records in this run, without a final checkpoint, as a crash
    /// would (output written since the last checkpoint stays in the files until the next run
    /// cuts it off). For tests and demonstrations of resume.
    pub fn stop_after(mut self, n: u64) -> Self {
        self.stop_after = Some(n);
        self
    }

    /// Whether a resume may drop checkpointed state of operators the pipelines no longer have
    /// (Flink's `allowNonRestoredState`; default `false`: such a resume is refused, naming the
    /// operators). See the module documentation.
    pub fn allow_dropped_state(mut self, allow: bool) -> Self {
        self.restore.allow_dropped_state = allow;
        self
    }

    /// Whether checkpoints and output files are synced to disk (default true).
    pub fn fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// Calls `f` with the progress every few thousand records and at the end.
    pub fn on_progress(mut self, f: impl FnMut(Progress) + 'static) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Calls `f` after every batch with what each pipeline did in it (see [`BatchReport`]); the
    /// end of the input, which fires the windows still open, is reported as a batch of no
    /// records on the partition read last.
    pub fn on_batch(mut self, f: impl FnMut(&BatchReport) + 'static) -> Self {
        self.on_batch = Some(Box::new(f));
        self
    }

    fn validate(&self) -> Result<(), RunnerError> {
        if self.jobs.is_empty() {
            return Err(RunnerError::Config("no pipeline to run".into()));
        }
        let mut names = HashSet::new();
        let mut sinks = HashSet::new();
        for j in &self.jobs {
            let safe = |s: &str| {
                !s.is_empty()
                    && !s.starts_with('.')
                    && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            };
            if !safe(j.name()) || !safe(j.sink_name()) {
                return Err(RunnerError::Config(format!(
                    "pipeline {:?} / sink {:?}: names must be non-empty [A-Za-z0-9._-]",
                    j.name(),
                    j.sink_name()
                )));
            }
            if !names.insert(j.name().to_owned()) {
                return Err(RunnerError::Config(format!("pipeline {:?} added twice", j.name())));
            }
            let file = format!("{}.jsonl", j.sink_name());
            if file == LATE_FILE || file == DEAD_LETTER_FILE || !sinks.insert(file.clone()) {
                return Err(RunnerError::Config(format!("sink file {file:?} is taken")));
            }
        }
        Ok(())
    }

    /// Runs to the end of the input (or to [`LocalRunner::stop_after`]).
    pub async fn run(mut self, input: &mut dyn Input<In>) -> Result<RunSummary, RunnerError> {
        let started = Instant::now();
        self.validate()?;
        create_dir(&self.out_dir)?;
        let partitions = input.partitions();
        let (mut stores, manifest) = self.open_state()?;
        let resumed_from_epoch = manifest.as_ref().map(|m| m.epoch);
        let (mut run, mut outputs) = match manifest {
            Some(m) => self.resume(&m, &mut stores, input, &partitions).await?,
            None => self.start_fresh(&stores, &partitions)?,
        };
        for job in &mut self.jobs {
            job.register(&partitions);
        }
        let interrupted = self
            .read_input(&mut run, &mut outputs, &mut stores, input, &partitions)
            .await?;
        if interrupted {
            self.drain(&mut outputs, &partitions)?;
            outputs.flush(false)?;
        } else {
            for job in &mut self.jobs {
                job.finish();
            }
            self.report_batch(
                run.dead_letters,
                run.cursor.partition,
                partitions.get(run.cursor.partition),
                run.clock,
            );
            self.checkpoint(&mut run, &mut outputs, &mut stores, &partitions, true)
                .await?;
        }
        self.report_progress(run.skipped + run.read);
        Ok(self.summary(&run, resumed_from_epoch, interrupted, started))
    }

    /// The engines' stores and the last committed run manifest, with a state directory.
    fn open_state(&self) -> Result<(Vec<JobStores>, Option<RunManifest>), RunnerError> {
        let Some(dir) = &self.state_dir else {
            return Ok((Vec::new(), None));
        };
        create_dir(dir)?;
        let stores = self
            .jobs
            .iter()
            .map(|j| {
                j.state_parts()
                    .iter()
                    .map(|part| Ok(LocalDirStateStore::open(part_dir(dir, j.name(), part))?.with_fsync(self.fsync)))
                    .collect::<Result<Vec<_>, RunnerError>>()
            })
            .collect::<Result<Vec<_>, RunnerError>>()?;
        Ok((stores, RunManifest::read(dir)?))
    }

    /// A run from the start: no engine checkpoint kept, empty output files.
    fn start_fresh(
        &self,
        stores: &[JobStores],
        partitions: &[String],
    ) -> Result<(RunPosition, OutputFiles), RunnerError> {
        for store in stores.iter().flatten() {
            store.discard_after(0)?;
        }
        let outputs = OutputFiles::open(&self.out_dir, &self.jobs, |_| None)?;
        Ok((RunPosition::start(partitions.len()), outputs))
    }

    /// Resumes from manifest `m`: restores every engine from its checkpoint of `m`'s epoch, cuts
    /// the output files back to their committed lengths and skips the input to the committed
    /// offsets.
    async fn resume(
        &mut self,
        m: &RunManifest,
        stores: &mut [JobStores],
        input: &mut dyn Input<In>,
        partitions: &[String],
    ) -> Result<(RunPosition, OutputFiles), RunnerError> {
        let pipelines: Vec<String> = self.jobs.iter().map(|j| j.name().to_owned()).collect();
        self.check_resumable(m, partitions, &pipelines)?;
        for (job, job_stores) in self.jobs.iter_mut().zip(stores.iter_mut()) {
            let mut images = Vec::with_capacity(job_stores.len());
            for store in job_stores.iter_mut() {
                store.discard_after(m.epoch)?;
                let committed = store.load().await?;
                let Some(image) = committed.map(|c| c.image).filter(|i| i.epoch() == m.epoch) else {
                    return Err(RunnerError::StateMismatch {
                        dir: store.dir().to_path_buf(),
                        reason: format!("no checkpoint of epoch {} for {}", m.epoch, job.name()),
                    });
                };
                images.push(image);
            }
            let reports = job
                .restore(&images, self.restore)
                .map_err(|source| RunnerError::State {
                    pipeline: job.name().to_owned(),
                    source,
                })?;
            for report in reports.iter().filter(|r| !r.is_plain()) {
                tracing::warn!(
                    pipeline = job.name(),
                    restored = ?report.restored(),
                    starts_empty = ?report.starts_empty(),
                    dropped = ?report.dropped(),
                    "resume: not every operator's state was restored as stored"
                );
            }
        }
        let outputs = OutputFiles::open(&self.out_dir, &self.jobs, |file| {
            Some(m.outputs.get(file).copied().unwrap_or(0))
        })?;
        let mut run = RunPosition::start(partitions.len());
        for (p, pos) in m.partitions.iter().enumerate() {
            let n = input.skip(p, pos.next_offset)?;
            if n < pos.next_offset {
                return Err(RunnerError::StateMismatch {
                    dir: self.state_dir.clone().unwrap_or_default(),
                    reason: format!(
                        "partition {} has {n} records, the checkpoint is at offset {}",
                        pos.name, pos.next_offset
                    ),
                });
            }
            run.skipped += n;
            run.positions[p] = pos.next_offset;
            run.ended[p] = pos.ended;
        }
        run.cursor = m.cursor;
        run.clock = m.clock;
        run.epoch = m.epoch;
        run.records_consumed = m.records_consumed;
        run.dead_letters = m.dead_letters;
        tracing::info!(epoch = m.epoch, skipped = run.skipped, "resuming from checkpoint");
        Ok((run, outputs))
    }

    /// The arrival time of a record, as [`LocalRunner::arrival`] says.
    fn arrival_fn(&self) -> TimeFn<In> {
        match &self.arrival {
            Arrival::Field(f) => f.clone(),
            Arrival::EventTimePlus(delay) => {
                let delay = *delay;
                let et = self.event_time.clone();
                Arc::new(move |v: &In| et.as_ref().map_or(MIN_TIMESTAMP, |f| f(v)).saturating_add(delay))
            }
        }
    }

    /// Reads the partitions round robin until every one ended (false) or the run stops early
    /// (true), checkpointing every `checkpoint_every` records.
    async fn read_input(
        &mut self,
        run: &mut RunPosition,
        outputs: &mut OutputFiles,
        stores: &mut [JobStores],
        input: &mut dyn Input<In>,
        partitions: &[String],
    ) -> Result<bool, RunnerError> {
        let arrival = self.arrival_fn();
        let n_parts = partitions.len();
        let mut since_checkpoint = 0u64;
        self.batch_base = self.jobs.iter().map(|j| j.metrics()).collect();
        self.dead_letters_base = run.dead_letters;
        while run.ended.iter().any(|e| !e) {
            let p = run.cursor.partition % n_parts.max(1);
            if run.ended[p] || run.cursor.taken >= self.batch_size {
                if run.cursor.taken > 0 {
                    self.report_batch(run.dead_letters, p, partitions.get(p), run.clock);
                }
                run.cursor = Cursor {
                    partition: (p + 1) % n_parts,
                    taken: 0,
                };
                self.drain(outputs, partitions)?;
                continue;
            }
            let Some(item) = input.next(p)? else {
                run.ended[p] = true;
                for job in &mut self.jobs {
                    job.end_partition(p);
                }
                continue;
            };
            self.handle_item(run, outputs, &partitions[p], p, item, &arrival)?;
            since_checkpoint += 1;
            if run.read.is_multiple_of(PROGRESS_EVERY) {
                self.report_progress(run.skipped + run.read);
            }
            if self.stop_after.is_some_and(|n| run.read >= n) {
                return Ok(true);
            }
            if self.checkpoint_every > 0 && since_checkpoint >= self.checkpoint_every {
                self.checkpoint(run, outputs, stores, partitions, false).await?;
                since_checkpoint = 0;
            }
        }
        Ok(false)
    }

    /// Feeds one record of partition `p` to every pipeline, or a malformed one to the dead
    /// letters, and advances the position.
    fn handle_item(
        &mut self,
        run: &mut RunPosition,
        outputs: &mut OutputFiles,
        partition: &str,
        p: usize,
        item: Item<In>,
        arrival: &TimeFn<In>,
    ) -> Result<(), RunnerError> {
        let offset = run.positions[p];
        match item {
            Item::Value(v) => {
                run.clock = run.clock.max(arrival(&v));
                if let Some((last, rest)) = self.jobs.split_last_mut() {
                    for job in rest {
                        job.process(p, offset, run.clock, v.clone());
                    }
                    last.process(p, offset, run.clock, v);
                }
            }
            Item::Malformed { reason, raw } => {
                run.dead_letters += 1;
                let sink = &mut outputs.dead_letters;
                sink.write(&DeadLetterLine::new(partition, offset, &reason, &raw))
                    .map_err(|source| output_error(sink, source))?;
            }
        }
        run.positions[p] += 1;
        run.cursor.taken += 1;
        run.records_consumed += 1;
        run.read += 1;
        Ok(())
    }

    /// Reports to [`LocalRunner::on_batch`] what each job did since the last report, as a batch
    /// of partition `p`.
    fn report_batch(&mut self, dead_letters: u64, p: usize, partition: Option<&String>, clock: Timestamp) {
        let Some(on_batch) = self.on_batch.as_mut() else {
            return;
        };
        let partition = partition.cloned().unwrap_or_default();
        let new_dead_letters = dead_letters.saturating_sub(self.dead_letters_base);
        self.dead_letters_base = dead_letters;
        for (i, job) in self.jobs.iter().enumerate() {
            let now = job.metrics();
            let base = self.batch_base.get(i).copied().unwrap_or_default();
            on_batch(&BatchReport {
                pipeline: job.name().to_owned(),
                partition: partition.clone(),
                clock,
                records_in: now.records_in.saturating_sub(base.records_in),
                results_out: now.results_out.saturating_sub(base.results_out),
                late_records: now.late_records.saturating_sub(base.late_records),
                duplicates_dropped: now.duplicates_dropped.saturating_sub(base.duplicates_dropped),
                dead_letters: new_dead_letters,
                partition_watermark: job.partition_watermark(p),
            });
            if let Some(slot) = self.batch_base.get_mut(i) {
                *slot = now;
            }
        }
    }

    fn report_progress(&mut self, records: u64) {
        if let Some(cb) = self.progress.as_mut() {
            cb(Progress { records });
        }
    }

    fn summary(
        &self,
        run: &RunPosition,
        resumed_from_epoch: Option<u64>,
        interrupted: bool,
        started: Instant,
    ) -> RunSummary {
        RunSummary {
            records_read: run.read,
            records_skipped: run.skipped,
            dead_letters: run.dead_letters,
            pipelines: self
                .jobs
                .iter()
                .map(|j| {
                    let m = j.metrics();
                    PipelineSummary {
                        pipeline: j.name().to_owned(),
                        output: results_file(&self.out_dir, j.sink_name()),
                        records_in: m.records_in,
                        results_out: m.results_out,
                        late_records: m.late_records,
                    }
                })
                .collect(),
            resumed_from_epoch,
            checkpoints: run.checkpoints,
            interrupted,
            elapsed: started.elapsed(),
            peak_rss_bytes: crate::memory::peak_rss_bytes(),
        }
    }

    fn check_resumable(&self, m: &RunManifest, partitions: &[String], pipelines: &[String]) -> Result<(), RunnerError> {
        let names: Vec<&String> = m.partitions.iter().map(|p| &p.name).collect();
        let reason = if m.input_id != self.input_id {
            Some(format!("input {:?}, not {:?}", m.input_id, self.input_id))
        } else if names != partitions.iter().collect::<Vec<_>>() {
            Some(format!("partitions {names:?}, not {partitions:?}"))
        } else if m.pipelines != pipelines {
            Some(format!("pipelines {:?}, not {pipelines:?}", m.pipelines))
        } else if m.batch_size != self.batch_size {
            Some(format!("batch size {}, not {}", m.batch_size, self.batch_size))
        } else {
            None
        };
        match reason {
            Some(reason) => Err(RunnerError::StateMismatch {
                dir: self.state_dir.clone().unwrap_or_default(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Writes every engine's results and late records to the output files.
    fn drain(&mut self, outputs: &mut OutputFiles, partitions: &[String]) -> Result<(), RunnerError> {
        for (job, sink) in self.jobs.iter_mut().zip(outputs.results.iter_mut()) {
            job.drain(sink, &mut outputs.late, partitions)
                .map_err(|source| output_error(sink, source))?;
        }
        Ok(())
    }

    /// Drains and flushes the outputs and, with a state directory, commits a run checkpoint.
    async fn checkpoint(
        &mut self,
        run: &mut RunPosition,
        outputs: &mut OutputFiles,
        stores: &mut [JobStores],
        partitions: &[String],
        finished: bool,
    ) -> Result<(), RunnerError> {
        self.drain(outputs, partitions)?;
        let Some(state_dir) = self.state_dir.clone() else {
            return outputs.flush(false);
        };
        outputs.flush(self.fsync)?;
        let epoch = run.epoch + 1;
        let full = (epoch - 1).is_multiple_of(self.full_checkpoint_every);
        for (job, job_stores) in self.jobs.iter_mut().zip(stores.iter_mut()) {
            let checkpoints = job.snapshot(full).map_err(|source| RunnerError::State {
                pipeline: job.name().to_owned(),
                source,
            })?;
            for (cp, store) in checkpoints.iter().zip(job_stores.iter_mut()) {
                if cp.epoch != epoch {
                    return Err(RunnerError::StateMismatch {
                        dir: state_dir.clone(),
                        reason: format!("{} snapshotted epoch {}, the run is at {epoch}", job.name(), cp.epoch),
                    });
                }
                store.commit(cp, &()).await?;
            }
        }
        self.manifest(run, outputs, partitions, epoch, finished)
            .write(&state_dir, self.fsync)?;
        run.epoch = epoch;
        run.checkpoints += 1;
        for store in stores.iter().flatten() {
            store.prune(epoch)?;
        }
        tracing::debug!(epoch, full, "checkpoint committed");
        Ok(())
    }

    /// The run manifest of checkpoint `epoch` (see [`crate::manifest`]).
    fn manifest(
        &self,
        run: &RunPosition,
        outputs: &OutputFiles,
        partitions: &[String],
        epoch: u64,
        finished: bool,
    ) -> RunManifest {
        RunManifest {
            version: MANIFEST_VERSION,
            input_id: self.input_id.clone(),
            pipelines: self.jobs.iter().map(|j| j.name().to_owned()).collect(),
            batch_size: self.batch_size,
            epoch,
            finished,
            clock: run.clock,
            cursor: run.cursor,
            partitions: partitions
                .iter()
                .enumerate()
                .map(|(i, name)| PartitionPosition {
                    name: name.clone(),
                    next_offset: run.positions[i],
                    ended: run.ended[i],
                })
                .collect(),
            outputs: outputs.lengths(),
            records_consumed: run.records_consumed,
            dead_letters: run.dead_letters,
        }
    }
}

/// The store directory of engine `part` of job `job` under the state directory.
fn part_dir(state_dir: &Path, job: &str, part: &str) -> PathBuf {
    let dir = state_dir.join(job);
    if part.is_empty() {
        dir
    } else {
        dir.join(part)
    }
}

fn create_dir(dir: &Path) -> Result<(), RunnerError> {
    std::fs::create_dir_all(dir).map_err(|source| RunnerError::Output {
        path: dir.to_path_buf(),
        source,
    })
}

fn output_error(sink: &JsonLinesSink, source: std::io::Error) -> RunnerError {
    RunnerError::Output {
        path: sink.path().to_path_buf(),
        source,
    }
}

/// The run's output files: one results file per pipeline, the late side output and the dead
/// letters.
struct OutputFiles {
    results: Vec<JsonLinesSink>,
    late: JsonLinesSink,
    dead_letters: JsonLinesSink,
}

impl OutputFiles {
    /// Opens the files under `out_dir`: cut back to `committed(file)` bytes where that is
    /// `Some` (a resume), created empty otherwise.
    fn open<In>(
        out_dir: &Path,
        jobs: &[Box<dyn Job<In>>],
        committed: impl Fn(&str) -> Option<u64>,
    ) -> Result<Self, RunnerError> {
        let open = |file: &str| {
            let path = out_dir.join(file);
            match committed(file) {
                Some(len) => JsonLinesSink::truncated(&path, len),
                None => JsonLinesSink::create(&path),
            }
            .map_err(|source| RunnerError::Output { path, source })
        };
        Ok(OutputFiles {
            results: jobs
                .iter()
                .map(|j| open(&format!("{}.jsonl", j.sink_name())))
                .collect::<Result<_, _>>()?,
            late: open(LATE_FILE)?,
            dead_letters: open(DEAD_LETTER_FILE)?,
        })
    }

    fn all_mut(&mut self) -> impl Iterator<Item = &mut JsonLinesSink> {
        self.results.iter_mut().chain([&mut self.late, &mut self.dead_letters])
    }

    fn flush(&mut self, sync: bool) -> Result<(), RunnerError> {
        for s in self.all_mut() {
            s.flush(sync).map_err(|source| output_error(s, source))?;
        }
        Ok(())
    }

    /// Each file's length by its name (the manifest's `outputs`).
    fn lengths(&self) -> BTreeMap<String, u64> {
        self.results
            .iter()
            .chain([&self.late, &self.dead_letters])
            .map(|s| (file_name(s.path()), s.len()))
            .collect()
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The stores of one job's engines, in [`Job::state_parts`] order.
type JobStores = Vec<LocalDirStateStore>;

/// The runner's position in the input.
struct RunPosition {
    positions: Vec<u64>,
    ended: Vec<bool>,
    cursor: Cursor,
    clock: Timestamp,
    epoch: u64,
    records_consumed: u64,
    dead_letters: u64,
    /// Records read and handled by this run.
    read: u64,
    /// Records skipped on resume.
    skipped: u64,
    /// Checkpoints committed by this run.
    checkpoints: u64,
}

impl RunPosition {
    fn start(partitions: usize) -> Self {
        RunPosition {
            positions: vec![0; partitions],
            ended: vec![false; partitions],
            cursor: Cursor::default(),
            clock: MIN_TIMESTAMP,
            epoch: 0,
            records_consumed: 0,
            dead_letters: 0,
            read: 0,
            skipped: 0,
            checkpoints: 0,
        }
    }
}

/// The results file of a sink under `out_dir`.
pub fn results_file(out_dir: &Path, sink: &str) -> PathBuf {
    out_dir.join(format!("{sink}.jsonl"))
}
