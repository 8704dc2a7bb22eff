//! Shared by the shuffle tests: the revenue pipeline split at its key (lifted or not), the two
//! stages over it as the tests build them, the single engine they are compared with, and the
//! downstream's results.

use std::collections::BTreeMap;
use std::sync::Arc;

use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::{
    Lifted, Pipeline, ResultId, ShuffleOutput, SplitPipeline, Trigger, WatermarkStrategy, Windowing,
};
use shardflow_lambda::shuffle::{DownstreamStage, NoDecoder, NoSink, UpstreamStage};
use shardflow_lambda::{KinesisLineage, Stage, StageConfig};
use shardflow_shuffle::Source;
use shardflow_stage::{InputRecord, JsonDecoder, MemoryDeadLetters, MemoryResultSink};

use super::streams::{batches, deliver, read_shards, round_robin};
use super::{Purchase, Row};

pub const UPSTREAM: &str = "revenue-up";
pub const DOWNSTREAM: &str = "revenue";

pub fn split() -> SplitPipeline<Purchase, Purchase, Row> {
    Pipeline::builder("revenue")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
        .event_time(|p: &Purchase| p.ts_ms)
        .key_by(|p| p.product)
        .shuffle()
        .unwrap()
        .window(Windowing::tumbling(10_000).unwrap())
        .trigger(Trigger::at_watermark())
        .aggregate((Count, Sum::of(|p: &Purchase| p.cents)), |k, w, _, (n, c)| {
            (*k, w.start, n, c)
        })
        .sink("revenue")
}

/// The pipeline with minute windows and its aggregation lifted (partials combined upstream per
/// batch).
pub fn lifted_split() -> SplitPipeline<Purchase, Lifted<u32, Purchase, (u64, i64)>, Row> {
    Pipeline::builder("revenue")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
        .event_time(|p: &Purchase| p.ts_ms)
        .key_by(|p| p.product)
        .shuffle()
        .unwrap()
        .window(Windowing::tumbling(60_000).unwrap())
        .trigger(Trigger::at_watermark())
        .aggregate_lifted((Count, Sum::of(|p: &Purchase| p.cents)), |k, w, _, (n, c)| {
            (*k, w.start, n, c)
        })
        .sink("revenue")
}

pub type Up<S = Purchase> = UpstreamStage<Purchase, S, JsonDecoder<Purchase>, MemoryDeadLetters>;
pub type Down<S = Purchase> = DownstreamStage<S, Row, MemoryResultSink<Row>, MemoryDeadLetters>;

pub fn upstream<S: Shuffled>(
    split: &SplitPipeline<Purchase, S, Row>,
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    kinesis: &aws_sdk_kinesis::Client,
    input: &str,
    shuffle: &str,
    crash: Option<shardflow_lambda::StageCrashHook>,
) -> Up<S> {
    let mut stage: Stage<Purchase, ShuffleOutput<S>, _, NoSink, _> = Stage::new(
        UPSTREAM,
        split.upstream.clone(),
        JsonDecoder::new(),
        NoSink,
        MemoryDeadLetters::default(),
        client.clone(),
        table,
        StageConfig::default(),
    )
    .unwrap()
    .with_lineage(Arc::new(KinesisLineage::new(kinesis.clone(), input)));
    if let Some(hook) = crash {
        stage = stage.with_crash_hook(hook);
    }
    let lifting = split.clone();
    UpstreamStage::new(stage, kinesis.clone(), shuffle).with_combiner(Arc::new(move || lifting.batch_combiner()))
}

#[allow(clippy::too_many_arguments)]
pub fn downstream<S: Shuffled>(
    split: &SplitPipeline<Purchase, S, Row>,
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    kinesis: &aws_sdk_kinesis::Client,
    input: &str,
    shuffle: &str,
    idleness: Option<i64>,
    crash: Option<shardflow_lambda::StageCrashHook>,
) -> Down<S> {
    let mut stage = Stage::new(
        DOWNSTREAM,
        split.downstream.clone(),
        NoDecoder,
        MemoryResultSink::new(),
        MemoryDeadLetters::default(),
        client.clone(),
        table,
        StageConfig::default(),
    )
    .unwrap()
    .with_lineage(Arc::new(KinesisLineage::new(kinesis.clone(), shuffle)));
    if let Some(hook) = crash {
        stage = stage.with_crash_hook(hook);
    }
    DownstreamStage::new(stage, [Source::new(UPSTREAM, input)], idleness)
}

/// The values a shuffle carries between the test's stages.
pub trait Shuffled: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {}
impl<S: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static> Shuffled for S {}

/// The single engine of `whole` over `input` in the upstream's delivery order ([`round_robin`]
/// by `size`), `ended` shards ended at the end: its results by id.
pub fn single_engine_of(
    whole: &Pipeline<Purchase, Row>,
    input: &BTreeMap<String, Vec<InputRecord>>,
    size: usize,
    ended: &[&str],
) -> BTreeMap<ResultId, Row> {
    let mut e = single_engine_run(whole, input, size, ended);
    e.drain_output().into_iter().map(|o| (o.id, o.value)).collect()
}

/// The engine of [`single_engine_of`] after the run (results and late records not drained).
pub fn single_engine_run(
    whole: &Pipeline<Purchase, Row>,
    input: &BTreeMap<String, Vec<InputRecord>>,
    size: usize,
    ended: &[&str],
) -> shardflow_engine::Engine<Purchase, Row> {
    single_engine_over(whole, &round_robin(input, size), ended)
}

/// The single engine of `whole` after `batches` (shard, records), in order — partition = shard id,
/// offset = the sequence number's digest, as the upstream stage runs it — and `ended` shards
/// ended at the end (results and late records not drained).
pub fn single_engine_over(
    whole: &Pipeline<Purchase, Row>,
    batches: &[(String, Vec<InputRecord>)],
    ended: &[&str],
) -> shardflow_engine::Engine<Purchase, Row> {
    let mut e = whole.engine();
    for (shard, records) in batches {
        let p = e.partition(shard);
        for r in records {
            e.process(
                p,
                r.sequence.digest(),
                r.arrival_ms,
                serde_json::from_slice(&r.data).unwrap(),
            );
        }
    }
    for shard in ended {
        let p = e.partition(shard);
        e.end_partition(p);
    }
    e
}

/// The downstream's results by id; panics if two writes of an id differ.
pub fn results<S: Shuffled>(down: &Down<S>) -> BTreeMap<ResultId, Row> {
    let mut by_id = BTreeMap::new();
    for o in down.stage().sink().writes() {
        if let Some(before) = by_id.insert(o.id, o.value) {
            assert_eq!(before, o.value, "two writes of result {:?} differ", o.id);
        }
    }
    by_id
}

/// Runs `down` over every shard of shuffle stream `shuffle` from `from` (records already handled
/// per shard), in batches of `size`; returns the new positions and the failed deliveries.
pub async fn consume_shuffle<S: Shuffled>(
    down: &Down<S>,
    kinesis: &aws_sdk_kinesis::Client,
    shuffle: &str,
    size: usize,
    from: &BTreeMap<String, usize>,
) -> (BTreeMap<String, usize>, usize) {
    let mut positions = BTreeMap::new();
    let mut failures = 0;
    for (shard, records) in read_shards(kinesis, shuffle).await {
        let start = from.get(&shard).copied().unwrap_or(0);
        for batch in batches(shuffle, &shard, records.get(start..).unwrap_or(&[]), size) {
            failures += deliver(batch, |b| down.handle(b)).await;
        }
        positions.insert(shard, records.len());
    }
    (positions, failures)
}
