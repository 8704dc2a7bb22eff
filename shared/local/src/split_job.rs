//! A split pipeline inside the runner: its upstream half, an in-memory shuffle stream and one
//! downstream engine per shuffle shard, through the halves the Lambda stages use
//! ([`shardflow_shuffle::upstream`], [`shardflow_shuffle::downstream`]).
//!
//! # Protocol
//! - An upstream batch is the runner's batch of one partition: its records are buffered and
//!   handed to [`UpstreamBatch`] when the runner moves on (another partition's record, a drain, a
//!   partition's end, a checkpoint); the packed records go to the [`MemoryShuffle`], and every
//!   downstream shard reads its log to the end before the results are drained. So batches reach
//!   the downstream in the runner's order, which is what makes the two stages equal one engine.
//! - At the start, every input partition is registered upstream in the runner's order, which
//!   sends its first watermark record: the downstream engines know the partitions in that order
//!   (late records name their partition by it), and know them all before any data, which makes
//!   a lifted aggregation exact ([`shardflow_engine::lift`]).
//! - A checkpoint is taken with the shuffle stream read to its end: the upstream engine and every
//!   downstream engine are stored, each in a store of its own. The in-memory stream does not
//!   survive a restart, nor need to: on resume the upstream announces every known partition to
//!   fresh downstream states — all at the minimum first, then each at its watermark — so that
//!   they know what the lost ones knew (the restored engines keep the watermark they had, and no
//!   record id before the checkpoint can come again, so no dedup mark is needed).

use serde::de::DeserializeOwned;
use serde::Serialize;
use shardflow_engine::{
    BatchCombiner, Checkpoint, CheckpointImage, Engine, EngineMetrics, PartitionId, RestoreOptions, RestoreReport,
    ShuffleOutput, SplitPipeline, StateError, Timestamp, MIN_TIMESTAMP,
};
use shardflow_shuffle::{
    BatchEnd, DownstreamShard, KeyGroupSpace, MemoryShuffle, Packed, Packer, ShardMap, Source, UpstreamBatch,
    UpstreamError, UpstreamShard, WatermarkRecord,
};
use shardflow_stage::SequenceNumber;

use crate::job::{own_watermark, restore_one, snapshot, write_outputs, Job};
use crate::sink::JsonLinesSink;

/// The stream the upstream half reads, as its watermark records name it.
const INPUT_STREAM: &str = "input";
/// The in-memory shuffle stream's name (in dead letters).
const SHUFFLE_STREAM: &str = "shuffle";

/// An input record of an upstream batch under way: offset, arrival, value.
type Buffered<In> = (u64, Timestamp, In);

/// A [`Job`] running a split pipeline as two stages.
pub(crate) struct SplitJob<In, S, Out> {
    split: SplitPipeline<In, S, Out>,
    stage: String,
    upstream: Engine<In, ShuffleOutput<S>>,
    shuffle: MemoryShuffle,
    downstream: Vec<DownstreamShard<S, Out>>,
    partitions: Vec<String>,
    /// The partition and records of the batch under way.
    batch: Option<(usize, Vec<Buffered<In>>)>,
    clock: Timestamp,
    /// The first upstream error: the run fails at its next drain or checkpoint.
    failed: Option<UpstreamError>,
}

impl<In, S, Out> SplitJob<In, S, Out>
where
    In: Send + 'static,
    S: Serialize + DeserializeOwned + Send + 'static,
    Out: Send + 'static,
{
    /// The job of `split` over a shuffle stream of `shards` shards.
    pub(crate) fn new(split: SplitPipeline<In, S, Out>, shards: u16) -> Self {
        let stage = format!("{}-upstream", split.whole.name());
        let map = ShardMap::even(KeyGroupSpace::new(split.whole.max_key_groups()), shards.max(1));
        let mut job = SplitJob {
            upstream: split.upstream.engine(),
            shuffle: MemoryShuffle::new(map),
            downstream: Vec::new(),
            split,
            stage,
            partitions: Vec::new(),
            batch: None,
            clock: MIN_TIMESTAMP,
            failed: None,
        };
        job.downstream = job.fresh_downstream();
        job
    }

    /// One downstream shard per shuffle shard, with empty engines and states.
    fn fresh_downstream(&self) -> Vec<DownstreamShard<S, Out>> {
        let map = self.shuffle.map();
        map.shards()
            .iter()
            .filter_map(|s| {
                let owned = map.groups_of(&s.shard_id)?;
                let sources = [Source::new(self.stage.as_str(), INPUT_STREAM)];
                // `ShuffleWatermark::new` refuses only a bad idleness; there is none.
                DownstreamShard::new(&self.split.downstream, &s.shard_id, owned, sources, None).ok()
            })
            .collect()
    }

    /// Runs one upstream batch of partition `p` and writes it to the shuffle stream.
    fn upstream_batch(&mut self, p: usize, records: Vec<Buffered<In>>, end: BatchEnd) {
        let Some(name) = self.partitions.get(p) else { return };
        let shard = UpstreamShard {
            stage: &self.stage,
            stream: INPUT_STREAM,
            shard: name,
            parents: &[],
            siblings: &[],
        };
        let combiner = self.split.batch_combiner();
        let packed = pack(&mut self.upstream, combiner, self.shuffle.map(), shard, records, end);
        self.put(packed);
    }

    /// Writes `packed` to the shuffle stream, or keeps the first error.
    fn put(&mut self, packed: Result<Packed, UpstreamError>) {
        match packed {
            Ok(packed) => {
                self.shuffle.put(&packed, self.clock);
            }
            Err(e) => {
                tracing::error!(pipeline = self.split.whole.name(), error = %e, "upstream batch failed");
                self.failed.get_or_insert(e);
            }
        }
    }

    /// After a resume: every partition the upstream engine knows is announced to the fresh
    /// downstream states, first all at the minimum (so none is combined before all are known),
    /// then each at its watermark, ended or not.
    fn announce_known_partitions(&mut self) {
        let known: Vec<(String, Timestamp, bool)> = self
            .upstream
            .partitions()
            .iter()
            .enumerate()
            .map(|(id, w)| {
                (
                    w.name.clone(),
                    self.upstream.partition_watermark(id as PartitionId),
                    w.ended,
                )
            })
            .collect();
        let mut packer = Packer::new(self.shuffle.map());
        let records = known
            .iter()
            .map(|(name, _, _)| (name, MIN_TIMESTAMP, false))
            .chain(known.iter().map(|(name, wm, ended)| (name, *wm, *ended)));
        let mut packed = Ok(());
        for (name, watermark, closed) in records {
            packed = packed.and_then(|()| {
                packer.push_watermark(&WatermarkRecord {
                    stage: &self.stage,
                    source_stream: INPUT_STREAM,
                    source_shard: name,
                    watermark,
                    closed,
                    parents: vec![],
                })
            });
        }
        let packed = packed.map(|()| packer.finish()).map_err(UpstreamError::from);
        self.put(packed);
    }

    /// Ends the batch under way (if any) with `end` for its partition.
    fn flush(&mut self) {
        if let Some((p, records)) = self.batch.take() {
            self.upstream_batch(p, records, BatchEnd::Open);
        }
    }

    /// Every downstream shard reads its log to the end.
    fn run_downstream(&mut self) {
        for shard in &mut self.downstream {
            let report = shard.poll(&self.shuffle, self.split.whole.name(), SHUFFLE_STREAM, usize::MAX);
            for letter in report.dead_letters {
                tracing::error!(reason = %letter.reason, "undecodable shuffled record");
            }
        }
    }

    fn check_failed(&self) -> Result<(), StateError> {
        match &self.failed {
            Some(e) => Err(StateError::Mismatch(format!("the upstream half failed: {e}"))),
            None => Ok(()),
        }
    }
}

/// Packs `records` of `shard` on `engine` for `map`, combined by `combiner` if the pipeline is
/// lifted (the upstream half of one batch).
fn pack<In: Send + 'static, S: Serialize + Send + 'static>(
    engine: &mut Engine<In, ShuffleOutput<S>>,
    combiner: Option<Box<dyn BatchCombiner<S>>>,
    map: &ShardMap,
    shard: UpstreamShard<'_>,
    records: Vec<Buffered<In>>,
    end: BatchEnd,
) -> Result<Packed, UpstreamError> {
    let mut batch = UpstreamBatch::begin(engine, map, shard)?.with_combiner(combiner);
    for (offset, arrival, value) in records {
        // An offset (a line number) in decimal is its sequence number.
        let sequence = SequenceNumber::parse(&offset.to_string())?;
        batch.push(&sequence, offset, arrival, value)?;
    }
    batch.finish(end)
}

impl<In, S, Out> Job<In> for SplitJob<In, S, Out>
where
    In: Send + 'static,
    S: Serialize + DeserializeOwned + Send + 'static,
    Out: Serialize + Send + 'static,
{
    fn name(&self) -> &str {
        self.split.whole.name()
    }

    fn sink_name(&self) -> &str {
        self.split.whole.sink_name()
    }

    fn register(&mut self, partitions: &[String]) {
        self.partitions = partitions.to_vec();
        self.announce_known_partitions();
        for p in 0..partitions.len() {
            // A new partition's first batch sends its watermark record.
            self.upstream_batch(p, Vec::new(), BatchEnd::Open);
        }
        self.run_downstream();
    }

    fn process(&mut self, p: usize, offset: u64, arrival: i64, value: In) {
        if self.batch.as_ref().is_some_and(|(q, _)| *q != p) {
            self.flush();
        }
        self.clock = self.clock.max(arrival);
        self.batch
            .get_or_insert_with(|| (p, Vec::new()))
            .1
            .push((offset, arrival, value));
    }

    fn end_partition(&mut self, p: usize) {
        let records = match self.batch.take() {
            Some((q, records)) if q == p => records,
            other => {
                self.batch = other;
                self.flush();
                Vec::new()
            }
        };
        self.upstream_batch(p, records, BatchEnd::Closed);
    }

    fn finish(&mut self) {
        self.flush();
        self.run_downstream();
        for shard in &mut self.downstream {
            shard.engine_mut().finish();
        }
    }

    fn drain(
        &mut self,
        results: &mut JsonLinesSink,
        late: &mut JsonLinesSink,
        partitions: &[String],
    ) -> std::io::Result<()> {
        self.flush();
        if let Some(e) = &self.failed {
            return Err(std::io::Error::other(format!(
                "the upstream half of {} failed: {e}",
                self.name()
            )));
        }
        self.run_downstream();
        let name = self.split.whole.name();
        for shard in &mut self.downstream {
            write_outputs(shard.engine_mut(), name, results, late, partitions)?;
        }
        Ok(())
    }

    fn state_parts(&self) -> Vec<String> {
        std::iter::once("upstream".to_owned())
            .chain(
                self.shuffle
                    .map()
                    .shards()
                    .iter()
                    .map(|s| format!("shuffle-{}", s.shard_id)),
            )
            .collect()
    }

    fn snapshot(&mut self, full: bool) -> Result<Vec<Checkpoint>, StateError> {
        self.check_failed()?;
        self.flush();
        self.run_downstream();
        let mut checkpoints = vec![snapshot(&mut self.upstream, full)?];
        for shard in &mut self.downstream {
            checkpoints.push(snapshot(shard.engine_mut(), full)?);
        }
        Ok(checkpoints)
    }

    fn restore(
        &mut self,
        images: &[CheckpointImage],
        options: RestoreOptions,
    ) -> Result<Vec<RestoreReport>, StateError> {
        let (upstream, report) = restore_one(&self.split.upstream, images, 0, options)?;
        self.upstream = upstream;
        let mut reports = vec![report];
        self.shuffle = MemoryShuffle::new(self.shuffle.map().clone());
        let mut downstream = self.fresh_downstream();
        for (i, shard) in downstream.iter_mut().enumerate() {
            let (engine, report) = restore_one(&self.split.downstream, images, i + 1, options)?;
            *shard.engine_mut() = engine;
            reports.push(report);
        }
        self.downstream = downstream;
        Ok(reports)
    }

    fn set_shuffle_shards(&mut self, shards: u16) {
        let map = ShardMap::even(KeyGroupSpace::new(self.split.whole.max_key_groups()), shards.max(1));
        self.shuffle = MemoryShuffle::new(map);
        self.downstream = self.fresh_downstream();
    }

    fn partition_watermark(&self, p: usize) -> Option<Timestamp> {
        let name = self.partitions.get(p)?;
        let partition = self.upstream.partitions().iter().find(|w| &w.name == name)?;
        own_watermark(partition, self.split.whole.watermark_strategy())
    }

    fn metrics(&self) -> EngineMetrics {
        let up = self.upstream.metrics();
        let mut metrics = EngineMetrics {
            records_in: up.records_in,
            processing_time: up.processing_time,
            ..EngineMetrics::default()
        };
        for shard in &self.downstream {
            let m = shard.engine().metrics();
            metrics.results_out += m.results_out;
            metrics.late_records += m.late_records;
            metrics.duplicates_dropped += m.duplicates_dropped;
        }
        metrics
    }
}
