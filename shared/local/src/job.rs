//! A pipeline instance inside the runner, with its output type erased.

use serde::Serialize;
use shardflow_engine::watermark::PartitionWatermark;
use shardflow_engine::{
    Checkpoint, CheckpointImage, Engine, EngineMetrics, PartitionId, Pipeline, RestoreOptions, RestoreReport,
    StateError, Timestamp, WatermarkStrategy, MIN_TIMESTAMP,
};

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
    /// The engines whose state the job keeps, each in a store of its own: a store directory
    /// under the job's, by name (`""`: the job's directory itself).
    fn state_parts(&self) -> Vec<String> {
        vec![String::new()]
    }
    /// Takes a checkpoint of every engine, in [`Job::state_parts`] order.
    fn snapshot(&mut self, full: bool) -> Result<Vec<Checkpoint>, StateError>;
    /// Replaces the engines with ones restored from `images` (in [`Job::state_parts`] order)
    /// under `options`; what each restore did with each operator's state, in the same order.
    fn restore(
        &mut self,
        images: &[CheckpointImage],
        options: RestoreOptions,
    ) -> Result<Vec<RestoreReport>, StateError>;
    /// The engine's counters.
    fn metrics(&self) -> EngineMetrics;
    /// Sets the shard count of the job's shuffle stream, if it has one (before the run).
    fn set_shuffle_shards(&mut self, _shards: u16) {}
    /// Partition `p`'s own watermark (its largest event time minus the out-of-orderness), once
    /// it has seen a record.
    fn partition_watermark(&self, p: usize) -> Option<Timestamp>;
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
        write_outputs(&mut self.engine, self.pipeline.name(), results, late, partitions)
    }

    fn snapshot(&mut self, full: bool) -> Result<Vec<Checkpoint>, StateError> {
        Ok(vec![snapshot(&mut self.engine, full)?])
    }

    fn restore(
        &mut self,
        images: &[CheckpointImage],
        options: RestoreOptions,
    ) -> Result<Vec<RestoreReport>, StateError> {
        let (engine, report) = restore_one(&self.pipeline, images, 0, options)?;
        self.engine = engine;
        Ok(vec![report])
    }

    fn metrics(&self) -> EngineMetrics {
        self.engine.metrics()
    }

    fn partition_watermark(&self, p: usize) -> Option<Timestamp> {
        let id = *self.ids.get(p)?;
        let partition = self.engine.partitions().get(usize::try_from(id).ok()?)?;
        own_watermark(partition, self.pipeline.watermark_strategy())
    }
}

/// A partition's own watermark (its largest event time minus the out-of-orderness), once it has
/// seen a record.
pub(crate) fn own_watermark(partition: &PartitionWatermark, strategy: WatermarkStrategy) -> Option<Timestamp> {
    (partition.max_timestamp > MIN_TIMESTAMP)
        .then(|| partition.max_timestamp.saturating_sub(strategy.out_of_orderness()))
}

/// A full or incremental checkpoint of `engine`.
pub(crate) fn snapshot<In: Send + 'static, Out: Send + 'static>(
    engine: &mut Engine<In, Out>,
    full: bool,
) -> Result<Checkpoint, StateError> {
    if full {
        engine.snapshot_full()
    } else {
        engine.snapshot()
    }
}

/// The engine of `pipeline` restored from `images[at]` under `options`, and what the restore did.
pub(crate) fn restore_one<In: Send + 'static, Out: Send + 'static>(
    pipeline: &Pipeline<In, Out>,
    images: &[CheckpointImage],
    at: usize,
    options: RestoreOptions,
) -> Result<(Engine<In, Out>, RestoreReport), StateError> {
    let image = images
        .get(at)
        .ok_or_else(|| StateError::Mismatch(format!("no checkpoint for engine {at} of {}", pipeline.name())))?;
    Engine::restore_with(pipeline, image, options)
}

/// Writes the results and late records `engine` (of pipeline `name`) produced so far.
pub(crate) fn write_outputs<In: Send + 'static, Out: Serialize + Send + 'static>(
    engine: &mut Engine<In, Out>,
    name: &str,
    results: &mut JsonLinesSink,
    late: &mut JsonLinesSink,
    partitions: &[String],
) -> std::io::Result<()> {
    for o in engine.drain_output_iter() {
        results.write(&ResultLine::new(&o))?;
    }
    // The local runner writes results one by one; closed event-time buckets (the same results,
    // grouped for object stores) are dropped rather than kept in memory.
    drop(engine.drain_buckets());
    for r in engine.drain_late() {
        late.write(&LateLine::new(name, &r, partitions))?;
    }
    Ok(())
}
