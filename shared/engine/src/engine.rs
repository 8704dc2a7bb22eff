//! An instance of a pipeline: feed it records, read its results, snapshot and restore it.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, CheckpointImage};
use crate::error::StateError;
use crate::operators::{Context, Operator};
use crate::pipeline::{Pipeline, PipelineDef};
use crate::record::{partition_source, LateRecord, Origin, Output, PartitionId, Record};
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

#[derive(Serialize, Deserialize)]
struct EngineState {
    watermarks: WatermarkTracker,
    records_in: u64,
    late_total: u64,
    results_total: u64,
}

impl EngineMetrics {
    /// The counters, watermark and processing time stored in `image` (a shard's committed
    /// state), read without the pipeline — for tools that inspect checkpoints (`shardflow
    /// status`, savepoints). Also returns every partition's watermark state. `duplicates_dropped`
    /// is read from the deduplicate operators' state, as [`Engine::restore`] does.
    pub fn of_checkpoint(image: &CheckpointImage) -> Result<(EngineMetrics, Vec<PartitionWatermark>), StateError> {
        let state: EngineState =
            postcard::from_bytes(image.engine_state()).map_err(|e| StateError::codec("engine state", e))?;
        let metrics = EngineMetrics {
            records_in: state.records_in,
            late_records: state.late_total,
            results_out: state.results_total,
            duplicates_dropped: crate::operators::deduplicate::dropped_in(image),
            watermark: state.watermarks.current(),
            processing_time: state.watermarks.processing_time(),
        };
        Ok((metrics, state.watermarks.partitions().to_vec()))
    }
}

impl<In: Send + 'static, Out: Send + 'static> Pipeline<In, Out> {
    /// A fresh engine running this pipeline, with empty state.
    pub fn engine(&self) -> Engine<In, Out> {
        Engine::new(self.def.clone(), self.operators())
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
        };
        Engine {
            watermarks: WatermarkTracker::new(def.watermarks),
            sources: Vec::new(),
            def,
            head,
            cx,
            records_in: 0,
            epoch: 0,
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
        if arrival > self.cx.processing_time {
            self.cx.processing_time = arrival;
            self.head.on_processing_time(&mut self.cx);
        }
        let timestamp = (self.def.timestamp_fn)(&value);
        self.records_in += 1;
        self.head.process(
            &mut self.cx,
            Record {
                timestamp,
                origin: Origin::Input {
                    partition,
                    source: self
                        .sources
                        .get(partition as usize)
                        .copied()
                        .unwrap_or(u64::from(partition)),
                    offset,
                    index: 0,
                },
                value,
            },
        );
        if let Some(wm) = self.watermarks.observe(partition, timestamp, arrival) {
            self.head.on_watermark(&mut self.cx, wm);
        }
    }

    /// Advances processing time to `now`: fires processing-time triggers and lets idle partitions
    /// release the watermark.
    pub fn advance_processing_time(&mut self, now: Timestamp) {
        if now > self.cx.processing_time {
            self.cx.processing_time = now;
            self.head.on_processing_time(&mut self.cx);
        }
        if let Some(wm) = self.watermarks.advance_processing_time(now) {
            self.head.on_watermark(&mut self.cx, wm);
        }
    }

    /// Marks a partition as ended (a closed shard, the end of a file).
    pub fn end_partition(&mut self, partition: PartitionId) {
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
    pub fn snapshot(&mut self) -> Result<Checkpoint, StateError> {
        self.take_snapshot(false)
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
        let engine = postcard::to_allocvec(&state).map_err(|e| StateError::codec("engine state", e))?;
        let mut operators = Vec::new();
        self.head.snapshot(full, &mut operators)?;
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
    pub fn adopt(
        pipeline: &Pipeline<In, Out>,
        parents: &[CheckpointImage],
        keep: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Self, StateError> {
        let mut engine = pipeline.engine();
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
            let state: EngineState =
                postcard::from_bytes(image.engine_state()).map_err(|e| StateError::codec("engine state", e))?;
            engine.head.adopt(image, keep)?;
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
        Ok(engine)
    }

    /// An engine for `pipeline` in exactly the state `image` describes.
    pub fn restore(pipeline: &Pipeline<In, Out>, image: &CheckpointImage) -> Result<Self, StateError> {
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
        let state: EngineState =
            postcard::from_bytes(image.engine_state()).map_err(|e| StateError::codec("engine state", e))?;
        let mut engine = pipeline.engine();
        engine.head.restore(image)?;
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
        // Kept in the deduplicate operators' own state (the engine state's layout is fixed by
        // format version 1).
        engine.cx.duplicates_total = crate::operators::deduplicate::dropped_in(image);
        engine.epoch = image.epoch();
        Ok(engine)
    }
}
