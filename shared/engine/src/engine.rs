//! An instance of a pipeline: feed it records, read its results, snapshot and restore it.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, CheckpointImage};
use crate::error::StateError;
use crate::operators::{ClosedBucket, Context, Operator};
use crate::pipeline::{Pipeline, PipelineDef};
use crate::record::{partition_source, InputOrigin, LateRecord, Origin, Output, PartitionId, Record};
use crate::restore::{self, RestoreOptions, RestoreReport};
use crate::time::{Timestamp, MIN_TIMESTAMP};
use crate::watermark::{PartitionWatermark, WatermarkTracker};

/// Counters and clocks of an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EngineMetrics {
    /// Input records processed.
    pub records_in: u64,
    /// Records routed to the late side output.
    pub late_records: u64,
    /// Results produced.
    pub results_out: u64,
    /// Values dropped by `deduplicate` steps as repeats of an id already seen.
    pub duplicates_dropped: u64,
    /// The combined watermark.
    pub watermark: Timestamp,
    /// The latest processing time.
    pub processing_time: Timestamp,
}

/// The engine-level state of a checkpoint: these fields (the layout of format version 1), then,
/// since format version 2, the count of repeats dropped by `deduplicate` operators (read as
/// trailing bytes, so that either layout decodes).
#[derive(Serialize, Deserialize)]
struct EngineState {
    watermarks: WatermarkTracker,
    records_in: u64,
    late_total: u64,
    results_total: u64,
}

impl EngineState {
    /// Encodes the state followed by `duplicates_total`.
    fn encode(&self, duplicates_total: u64) -> Result<Vec<u8>, StateError> {
        postcard::to_allocvec(&(self, duplicates_total)).map_err(|e| StateError::codec("engine state", e))
    }

    /// The state and, if the bytes carry it, the count of dropped repeats; for an image of
    /// format version 1 the count is summed from its `deduplicate` operators.
    fn decode(image: &CheckpointImage) -> Result<(EngineState, u64), StateError> {
        let (state, rest): (EngineState, &[u8]) =
            postcard::take_from_bytes(image.engine_state()).map_err(|e| StateError::codec("engine state", e))?;
        let duplicates_total = if rest.is_empty() {
            crate::operators::deduplicate::dropped_in(image)
        } else {
            postcard::from_bytes(rest).map_err(|e| StateError::codec("engine state (dropped repeats)", e))?
        };
        Ok((state, duplicates_total))
    }
}

impl EngineMetrics {
    /// The counters, watermark and processing time stored in `image` (a shard's committed
    /// state), read without the pipeline — for tools that inspect checkpoints (`shardflow
    /// status`, savepoints). Also returns every partition's watermark state. `duplicates_dropped`
    /// is read as [`Engine::restore`] reads it: from the engine state, or, in an image of format
    /// version 1, from the deduplicate operators' state.
    pub fn of_checkpoint(image: &CheckpointImage) -> Result<(EngineMetrics, Vec<PartitionWatermark>), StateError> {
        let (state, duplicates_dropped) = EngineState::decode(image)?;
        let metrics = EngineMetrics {
            records_in: state.records_in,
            late_records: state.late_total,
            results_out: state.results_total,
            duplicates_dropped,
            watermark: state.watermarks.current(),
            processing_time: state.watermarks.processing_time(),
        };
        Ok((metrics, state.watermarks.partitions().to_vec()))
    }
}

impl<In: Send + 'static, Out: Send + 'static> Pipeline<In, Out> {
    /// A fresh engine running this pipeline, with empty state.
    pub fn engine(&self) -> Engine<In, Out> {
        let mut engine = Engine::new(self.def.clone(), self.operators());
        engine.schemas = crate::restore::schema_entries(self.stateful_operators());
        engine
    }
}

/// A running instance of a [`Pipeline`].
///
/// Feed it with [`Engine::process`] (one record of one partition), advance processing time with
/// [`Engine::advance_processing_time`], end a bounded input with [`Engine::finish`], take results
/// with [`Engine::drain_output`] and late records with [`Engine::drain_late`]. The engine does no
/// I/O and reads no clock; the same inputs give the same outputs, however they are batched and
/// wherever it runs.
pub struct Engine<In, Out> {
    def: Arc<PipelineDef<In>>,
    head: Box<dyn Operator<In>>,
    watermarks: WatermarkTracker,
    /// [`partition_source`] of every registered partition, by id.
    sources: Vec<u64>,
    cx: Context,
    records_in: u64,
    epoch: u64,
    /// The next snapshot must be full: a restore moved state to other ids, dropped or migrated some.
    full_next: bool,
    /// Records do not move the watermark ([`crate::WatermarkStrategy::external`]).
    external_watermarks: bool,
    /// The schema entries every snapshot carries (see [`crate::schema`]).
    schemas: Vec<crate::checkpoint::OperatorState>,
    _out: PhantomData<fn() -> Out>,
}

impl<In: Send + 'static, Out: Send + 'static> Engine<In, Out> {
    fn new(def: Arc<PipelineDef<In>>, head: Box<dyn Operator<In>>) -> Self {
        let cx = Context {
            pipeline: def.name.clone(),
            max_key_groups: def.max_key_groups,
            processing_time: MIN_TIMESTAMP,
            late: Vec::new(),
            late_total: 0,
            results_total: 0,
            duplicates_total: 0,
            output: Box::new(Vec::<Output<Out>>::new()),
            buckets: Box::new(Vec::<ClosedBucket<Out>>::new()),
        };
        Engine {
            watermarks: WatermarkTracker::new(def.watermarks),
            external_watermarks: def.watermarks.is_external(),
            sources: Vec::new(),
            def,
            head,
            cx,
            records_in: 0,
            epoch: 0,
            full_next: false,
            schemas: Vec::new(),
            _out: PhantomData,
        }
    }

    /// The id of input partition `name` (a shard id, a file), registering it on first use.
    /// A registered partition holds the watermark back until it produces records, ends, or goes idle.
    pub fn partition(&mut self, name: &str) -> PartitionId {
        let id = self.watermarks.partition(name);
        if id as usize == self.sources.len() {
            self.sources.push(partition_source(name));
        }
        id
    }

    /// Processes one record of `partition` at position `offset`, which arrived at processing time
    /// `arrival` (e.g. Kinesis' approximate arrival timestamp).
    #[inline]
    pub fn process(&mut self, partition: PartitionId, offset: u64, arrival: Timestamp, value: In) {
        let timestamp = (self.def.timestamp_fn)(&value);
        let origin = InputOrigin {
            source: self
                .sources
                .get(partition as usize)
                .copied()
                .unwrap_or(u64::from(partition)),
            offset,
            index: 0,
        };
        self.process_from(partition, origin, timestamp, arrival, value);
    }

    /// Processes a value that another engine derived from input record `origin` of `partition`
    /// at event time `timestamp` — a record of the shuffle between the two halves of a split
    /// pipeline ([`crate::SplitPipeline`]): it gets the provenance and timestamp it had there, so
    /// results, their ids and late records are those of the unsplit pipeline. Like
    /// [`Engine::process`] otherwise: the record is processed first, then `timestamp` is
    /// observed for `partition` (which moves nothing under [`WatermarkStrategy::external`]
    /// watermarks: raise them with [`Engine::advance_watermark`] before the record instead).
    ///
    /// [`WatermarkStrategy::external`]: crate::WatermarkStrategy::external
    #[inline]
    pub fn process_from(
        &mut self,
        partition: PartitionId,
        origin: InputOrigin,
        timestamp: Timestamp,
        arrival: Timestamp,
        value: In,
    ) {
        if arrival > self.cx.processing_time {
            self.cx.processing_time = arrival;
            self.head.on_processing_time(&mut self.cx);
        }
        self.records_in += 1;
        self.head.process(
            &mut self.cx,
            Record {
                timestamp,
                origin: Origin::Input {
                    partition,
                    source: origin.source,
                    offset: origin.offset,
                    index: origin.index,
                },
                value,
            },
        );
        if self.external_watermarks {
            self.watermarks.advance_clock(arrival);
            return;
        }
        if let Some(wm) = self.watermarks.observe(partition, timestamp, arrival) {
            self.head.on_watermark(&mut self.cx, wm);
        }
    }

    /// Raises the combined watermark to `watermark` (if that is later) and fires what it makes
    /// due: how the feeder of an engine with [`WatermarkStrategy::external`] watermarks moves
    /// them. On an engine deriving its watermark from its records it raises it just the same (it
    /// never moves back, so later records cannot lower it).
    ///
    /// [`WatermarkStrategy::external`]: crate::WatermarkStrategy::external
    pub fn advance_watermark(&mut self, watermark: Timestamp) {
        if let Some(wm) = self.watermarks.raise_to(watermark) {
            self.head.on_watermark(&mut self.cx, wm);
        }
    }

    /// The watermark of input partition `partition` alone (its largest event time minus the
    /// out-of-orderness; [`crate::MIN_TIMESTAMP`] before its first record): what the upstream
    /// half of a split pipeline sends downstream with each record and at the end of a batch.
    pub fn partition_watermark(&self, partition: PartitionId) -> Timestamp {
        self.watermarks.partition_watermark_of(partition)
    }

    /// Advances processing time to `now`: fires processing-time triggers and lets idle partitions
    /// release the watermark.
    pub fn advance_processing_time(&mut self, now: Timestamp) {
        if now > self.cx.processing_time {
            self.cx.processing_time = now;
            self.head.on_processing_time(&mut self.cx);
        }
        if self.external_watermarks {
            self.watermarks.advance_clock(now);
        } else if let Some(wm) = self.watermarks.advance_processing_time(now) {
            self.head.on_watermark(&mut self.cx, wm);
        }
    }

    /// Marks a partition as ended (a closed shard, the end of a file). Under external watermarks
    /// it moves nothing (the feeder says when the input ends).
    pub fn end_partition(&mut self, partition: PartitionId) {
        if self.external_watermarks {
            return;
        }
        if let Some(wm) = self.watermarks.end_partition(partition) {
            self.head.on_watermark(&mut self.cx, wm);
        }
    }

    /// Ends the input: the watermark goes to the end of time and every window fires.
    pub fn finish(&mut self) {
        if let Some(wm) = self.watermarks.end_all() {
            self.head.on_watermark(&mut self.cx, wm);
        }
    }

    /// Takes the results produced so far.
    pub fn drain_output(&mut self) -> Vec<Output<Out>> {
        self.outputs().map(std::mem::take).unwrap_or_default()
    }

    /// Takes the results produced so far, one by one, keeping the output buffer's capacity
    /// for the next results (no allocation per drain, unlike [`Engine::drain_output`]). Results
    /// the iterator does not yield before it is dropped are dropped too.
    pub fn drain_output_iter(&mut self) -> impl Iterator<Item = Output<Out>> + '_ {
        self.outputs().into_iter().flat_map(|v| v.drain(..))
    }

    /// Number of results waiting to be drained.
    pub fn pending_output(&mut self) -> usize {
        self.outputs().map_or(0, |v| v.len())
    }

    fn outputs(&mut self) -> Option<&mut Vec<Output<Out>>> {
        self.cx.output.downcast_mut::<Vec<Output<Out>>>()
    }

    /// Takes the event-time buckets closed so far (see [`crate::Stream::sink_with_buckets`];
    /// always empty for a pipeline without buckets).
    pub fn drain_buckets(&mut self) -> Vec<ClosedBucket<Out>> {
        self.cx
            .buckets
            .downcast_mut::<Vec<ClosedBucket<Out>>>()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Takes the records routed to the late side output so far.
    pub fn drain_late(&mut self) -> Vec<LateRecord> {
        std::mem::take(&mut self.cx.late)
    }

    /// The combined watermark.
    pub fn watermark(&self) -> Timestamp {
        self.watermarks.current()
    }

    /// Every partition's watermark state.
    pub fn partitions(&self) -> &[PartitionWatermark] {
        self.watermarks.partitions()
    }

    /// Counters and clocks.
    pub fn metrics(&self) -> EngineMetrics {
        EngineMetrics {
            records_in: self.records_in,
            late_records: self.cx.late_total,
            results_out: self.cx.results_total,
            duplicates_dropped: self.cx.duplicates_total,
            watermark: self.watermarks.current(),
            processing_time: self.cx.processing_time,
        }
    }

    /// An incremental checkpoint: engine state plus the key groups changed since the last
    /// snapshot (or since creation/restore). See [`crate::checkpoint`].
    ///
    /// The first snapshot after a restore or an adoption that moved state to other ids than the
    /// image's (a format version 1 image) or dropped state is full instead: the stored state must
    /// be rewritten whole under the pipeline's ids ([`Checkpoint::full`] says which it is).
    pub fn snapshot(&mut self) -> Result<Checkpoint, StateError> {
        self.take_snapshot(self.full_next)
    }

    /// The bytes of keyed state changed since the last snapshot (or since creation or restore):
    /// what the key groups of the next incremental [`Engine::snapshot`] hold, the bulk of what a
    /// commit writes. Counted without encoding into memory, and only for the groups changed
    /// since the previous call, so asking after every batch costs about what those groups'
    /// mutations did (see [`crate::state::KeyedState::dirty_bytes`]). The engine-level state and
    /// operator metas, a few bytes each, are not counted.
    pub fn dirty_bytes(&mut self) -> usize {
        self.head.dirty_bytes()
    }

    /// A full checkpoint (every key group): a savepoint.
    pub fn snapshot_full(&mut self) -> Result<Checkpoint, StateError> {
        self.take_snapshot(true)
    }

    fn take_snapshot(&mut self, full: bool) -> Result<Checkpoint, StateError> {
        self.epoch += 1;
        let state = EngineState {
            watermarks: self.watermarks.clone(),
            records_in: self.records_in,
            late_total: self.cx.late_total,
            results_total: self.cx.results_total,
        };
        let engine = state.encode(self.cx.duplicates_total)?;
        let mut operators = Vec::new();
        self.head.snapshot(full, &mut operators)?;
        operators.extend(self.schemas.iter().cloned());
        self.full_next = false;
        Ok(Checkpoint {
            pipeline: self.def.name.clone(),
            max_key_groups: self.def.max_key_groups,
            epoch: self.epoch,
            full,
            engine,
            operators,
        })
    }

    /// An engine for `pipeline` that takes over the state of closed parent shards (after a
    /// Kinesis split or merge): of each parent image, the keys whose postcard encoding passes
    /// `keep`, every key group marked dirty. The parents' partitions become ended partitions, and
    /// the combined and operator watermarks start at the largest of the parents', so they never
    /// move back. Take a full snapshot ([`Engine::snapshot_full`]) as the first checkpoint.
    ///
    /// Each parent's state is matched with the pipeline's operators as [`Engine::restore`] does:
    /// state of an operator the pipeline does not have is refused
    /// ([`StateError::UnmatchedState`]); see [`Engine::adopt_with`] to allow dropping it.
    pub fn adopt(
        pipeline: &Pipeline<In, Out>,
        parents: &[CheckpointImage],
        keep: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Self, StateError> {
        Ok(Self::adopt_with(pipeline, parents, keep, RestoreOptions::strict())?.0)
    }

    /// [`Engine::adopt`], with `options` saying whether state the pipeline has no operator for
    /// may be dropped; also returns a [`RestoreReport`] per parent, in order.
    pub fn adopt_with(
        pipeline: &Pipeline<In, Out>,
        parents: &[CheckpointImage],
        keep: &dyn Fn(&[u8]) -> bool,
        options: RestoreOptions,
    ) -> Result<(Self, Vec<RestoreReport>), StateError> {
        let mut engine = pipeline.engine();
        let mut reports = Vec::with_capacity(parents.len());
        for image in parents {
            if image.pipeline() != pipeline.name() || image.max_key_groups() != pipeline.max_key_groups() {
                return Err(StateError::Mismatch(format!(
                    "parent checkpoint of {}/{} key groups, this pipeline {}/{}",
                    image.pipeline(),
                    image.max_key_groups(),
                    pipeline.name(),
                    pipeline.max_key_groups()
                )));
            }
            let (state, _) = EngineState::decode(image)?;
            let (states, report) = restore::plan(pipeline.stateful_operators(), image, options)?;
            engine.head.adopt(&states, keep)?;
            engine.full_next |= report.moves_state();
            report.log(pipeline.name(), image.operator_metas().next().is_some());
            reports.push(report);
            engine.watermarks.adopt(&state.watermarks);
            engine.records_in += state.records_in;
            engine.cx.late_total += state.late_total;
            engine.cx.results_total += state.results_total;
            engine.epoch = engine.epoch.max(image.epoch());
        }
        engine.cx.processing_time = engine.watermarks.processing_time();
        engine.sources = engine
            .watermarks
            .partitions()
            .iter()
            .map(|p| partition_source(&p.name))
            .collect();
        Ok((engine, reports))
    }

    /// An engine for `pipeline` in exactly the state `image` describes.
    ///
    /// Strict: every operator state in the image must belong to an operator of the pipeline
    /// (matched by id, see [`crate::restore`]), or the restore is refused with
    /// [`StateError::UnmatchedState`] naming the operators. A stateful operator that finds no
    /// state in the image starts empty; [`Engine::restore_with`] reports which did, and can allow
    /// dropping state. Also refused: an image of another pipeline or key-group count
    /// ([`StateError::Mismatch`]), and damaged state.
    pub fn restore(pipeline: &Pipeline<In, Out>, image: &CheckpointImage) -> Result<Self, StateError> {
        Ok(Self::restore_with(pipeline, image, RestoreOptions::strict())?.0)
    }

    /// [`Engine::restore`], with `options` saying whether state the pipeline has no operator for
    /// may be dropped, and a [`RestoreReport`] of what happened to every operator's state:
    /// restored (and under which id of the image), starts empty, dropped.
    ///
    /// ```
    /// use shardflow_engine::checkpoint::CheckpointImage;
    /// use shardflow_engine::{Engine, Pipeline, RestoreOptions, StateError};
    ///
    /// // (id, event time)
    /// let once = |uid: &str| {
    ///     Pipeline::builder("dedup")
    ///         .event_time(|r: &(u64, i64)| r.1)
    ///         .deduplicate(|r| r.0, 60_000)
    ///         .uid(uid)
    ///         .unwrap()
    ///         .sink("once")
    /// };
    /// let mut engine = once("seen-ids").engine();
    /// let shard = engine.partition("shard-0");
    /// engine.process(shard, 0, 0, (7, 1));
    /// let image = CheckpointImage::new(engine.snapshot().unwrap());
    ///
    /// let (_, report) = Engine::restore_with(&once("seen-ids"), &image, RestoreOptions::strict()).unwrap();
    /// assert_eq!(report.restored(), ["seen-ids"]);
    ///
    /// // A renamed uid does not find its state: refused, naming both ids.
    /// let refused = Engine::restore(&once("ids-seen"), &image).err().unwrap();
    /// assert!(matches!(refused, StateError::UnmatchedState { .. }));
    /// assert!(refused.to_string().contains("\"seen-ids\"") && refused.to_string().contains("\"ids-seen\""));
    ///
    /// // Unless dropping the state is allowed.
    /// let (_, report) = Engine::restore_with(&once("ids-seen"), &image, RestoreOptions::allowing_dropped_state()).unwrap();
    /// assert_eq!((report.starts_empty(), report.dropped()), (vec!["ids-seen"], vec!["seen-ids"]));
    /// ```
    pub fn restore_with(
        pipeline: &Pipeline<In, Out>,
        image: &CheckpointImage,
        options: RestoreOptions,
    ) -> Result<(Self, RestoreReport), StateError> {
        if image.pipeline() != pipeline.name() {
            return Err(StateError::Mismatch(format!(
                "checkpoint of pipeline {:?}, not {:?}",
                image.pipeline(),
                pipeline.name()
            )));
        }
        if image.max_key_groups() != pipeline.max_key_groups() {
            return Err(StateError::Mismatch(format!(
                "checkpoint has {} key groups, the pipeline {}; the key-group count is fixed for a pipeline's life",
                image.max_key_groups(),
                pipeline.max_key_groups()
            )));
        }
        let (state, duplicates_total) = EngineState::decode(image)?;
        let (states, report) = restore::plan(pipeline.stateful_operators(), image, options)?;
        let mut engine = pipeline.engine();
        engine.head.restore(&states)?;
        engine.full_next = report.moves_state();
        report.log(pipeline.name(), image.operator_metas().next().is_some());
        engine.cx.processing_time = state.watermarks.processing_time();
        engine.sources = state
            .watermarks
            .partitions()
            .iter()
            .map(|p| partition_source(&p.name))
            .collect();
        engine.watermarks = state.watermarks;
        engine.watermarks.set_strategy(pipeline.watermark_strategy());
        engine.records_in = state.records_in;
        engine.cx.late_total = state.late_total;
        engine.cx.results_total = state.results_total;
        engine.cx.duplicates_total = duplicates_total;
        engine.epoch = image.epoch();
        Ok((engine, report))
    }
}
