//! A pipeline instance inside the runner, with its output type erased.

use serde::Serialize;
use shardflow_engine::{Checkpoint, CheckpointImage, Engine, EngineMetrics, PartitionId, Pipeline, StateError};

use crate::sink::{JsonLinesSink, LateLine, ResultLine};

/// What the runner needs of a pipeline instance, whatever its output type.
pub(crate) trait Job<In> {
    /// The pipeline's name.
    fn name(&self) -> &str;
    /// The sink's name (the results file is `<sink>.jsonl`).
    fn sink_name(&self) -> &str;
    /// Registers the input partitions, in order.
    fn register(&mut self, partitions: &[String]);
    /// Processes one record.
    fn process(&mut self, p: usize, offset: u64, arrival: i64, value: In);
    /// Partition `p` ended.
    fn end_partition(&mut self, p: usize);
    /// The input ended.
    fn finish(&mut self);
    /// Writes the results and late records produced so far.
    fn drain(
        &mut self,
        results: &mut JsonLinesSink,
        late: &mut JsonLinesSink,
        partitions: &[String],
    ) -> std::io::Result<()>;
    /// Takes a checkpoint.
    fn snapshot(&mut self, full: bool) -> Result<Checkpoint, StateError>;
    /// Replaces the engine with one restored from `image`.
    fn restore(&mut self, image: &CheckpointImage) -> Result<(), StateError>;
    /// The engine's counters.
    fn metrics(&self) -> EngineMetrics;
}

/// A [`Job`] running a typed pipeline.
pub(crate) struct PipelineJob<In, Out> {
    pipeline: Pipeline<In, Out>,
    engine: Engine<In, Out>,
    ids: Vec<PartitionId>,
}

impl<In: Send + 'static, Out: Send + 'static> PipelineJob<In, Out> {
    pub(crate) fn new(pipeline: Pipeline<In, Out>) -> Self {
        PipelineJob {
            engine: pipeline.engine(),
            pipeline,
            ids: Vec::new(),
        }
    }
}

impl<In: Send + 'static, Out: Serialize + Send + 'static> Job<In> for PipelineJob<In, Out> {
    fn name(&self) -> &str {
        self.pipeline.name()
    }

    fn sink_name(&self) -> &str {
        self.pipeline.sink_name()
    }

    fn register(&mut self, partitions: &[String]) {
        self.ids = partitions.iter().map(|p| self.engine.partition(p)).collect();
    }

    #[inline]
    fn process(&mut self, p: usize, offset: u64, arrival: i64, value: In) {
        if let Some(&id) = self.ids.get(p) {
            self.engine.process(id, offset, arrival, value);
        }
    }

    fn end_partition(&mut self, p: usize) {
        if let Some(&id) = self.ids.get(p) {
            self.engine.end_partition(id);
        }
    }

    fn finish(&mut self) {
        self.engine.finish();
    }

    fn drain(
        &mut self,
        results: &mut JsonLinesSink,
        late: &mut JsonLinesSink,
        partitions: &[String],
    ) -> std::io::Result<()> {
        for o in self.engine.drain_output() {
            results.write(&ResultLine::new(&o))?;
        }
        // The local runner writes results one by one; closed event-time buckets (the same
        // results, grouped for object stores) are dropped rather than kept in memory.
        drop(self.engine.drain_buckets());
        for r in self.engine.drain_late() {
            late.write(&LateLine::new(self.pipeline.name(), &r, partitions))?;
        }
        Ok(())
    }

    fn snapshot(&mut self, full: bool) -> Result<Checkpoint, StateError> {
        if full {
            self.engine.snapshot_full()
        } else {
            self.engine.snapshot()
        }
    }

    fn restore(&mut self, image: &CheckpointImage) -> Result<(), StateError> {
        self.engine = Engine::restore(&self.pipeline, image)?;
        Ok(())
    }

    fn metrics(&self) -> EngineMetrics {
        self.engine.metrics()
    }
}
