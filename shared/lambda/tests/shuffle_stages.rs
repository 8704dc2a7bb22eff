//! The shuffle between two Lambda stages against LocalStack: a multi-shard input stream, the
//! upstream stage, a multi-shard Kinesis shuffle stream, the keyed downstream stage (state in
//! DynamoDB), both driven through their handlers with batches read from the streams. The
//! downstream's results equal the single engine of the same pipeline — with crashes between the
//! shuffle write and the upstream commit, redelivery on both sides, a corrupted shuffle record,
//! and an upstream shard that goes silent (its windows close after the idleness timeout, with a
//! tick).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::ShardIteratorType;
use common::{purchase, wait_active, Purchase, Row};
use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::{
    Lifted, Pipeline, ResultId, ShuffleOutput, SplitPipeline, Trigger, WatermarkStrategy, Windowing,
};
use shardflow_lambda::shuffle::{DownstreamStage, NoDecoder, NoSink, UpstreamStage};
use shardflow_lambda::{input_record, CrashPoint, KinesisLineage, Stage, StageConfig};
use shardflow_shuffle::Source;
use shardflow_stage::{DeadLetterKind, InputRecord, JsonDecoder, MemoryDeadLetters, MemoryResultSink, ShardBatch};

const UPSTREAM: &str = "revenue-up";
const DOWNSTREAM: &str = "revenue";

fn split() -> SplitPipeline<Purchase, Purchase, Row> {
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
fn lifted_split() -> SplitPipeline<Purchase, Lifted<u32, Purchase, (u64, i64)>, Row> {
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

type Up<S = Purchase> = UpstreamStage<Purchase, S, JsonDecoder<Purchase>, MemoryDeadLetters>;
type Down<S = Purchase> = DownstreamStage<S, Row, MemoryResultSink<Row>, MemoryDeadLetters>;

/// The deployed topology of one test: the streams, the state table and one container per stage.
struct Topology<S = Purchase> {
    kinesis: aws_sdk_kinesis::Client,
    input: String,
    shuffle: String,
    up: Up<S>,
    down: Down<S>,
}

fn upstream<S: Shuffled>(
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
fn downstream<S: Shuffled>(
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

async fn topology(
    prefix: &str,
    input_shards: i32,
    shuffle_shards: i32,
    idleness: Option<i64>,
    crash: Option<shardflow_lambda::StageCrashHook>,
) -> Topology {
    topology_of(&split(), prefix, input_shards, shuffle_shards, idleness, crash).await
}

/// The values a shuffle carries between the test's stages.
trait Shuffled: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {}
impl<S: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static> Shuffled for S {}

async fn topology_of<S: Shuffled>(
    split: &SplitPipeline<Purchase, S, Row>,
    prefix: &str,
    input_shards: i32,
    shuffle_shards: i32,
    idleness: Option<i64>,
    crash: Option<shardflow_lambda::StageCrashHook>,
) -> Topology<S> {
    let (client, table) = shardflow_testkit::state_table(prefix).await;
    let (kinesis, input) = shardflow_testkit::kinesis_stream(&format!("{prefix}-in"), input_shards).await;
    let (_, shuffle) = shardflow_testkit::kinesis_stream(&format!("{prefix}-sh"), shuffle_shards).await;
    Topology {
        up: upstream(split, &client, &table, &kinesis, &input, &shuffle, crash.clone()),
        down: downstream(split, &client, &table, &kinesis, &input, &shuffle, idleness, crash),
        kinesis,
        input,
        shuffle,
    }
}

impl<S> Topology<S> {
    /// Deletes the test's streams (the emulator keeps every record in memory and limits shards).
    async fn delete_streams(self) {
        shardflow_testkit::delete_stream(&self.kinesis, &self.input).await;
        shardflow_testkit::delete_stream(&self.kinesis, &self.shuffle).await;
    }
}

/// Puts `payload`s with partition keys `p{i}` (spread over the shards) into `stream`.
async fn put(kinesis: &aws_sdk_kinesis::Client, stream: &str, payloads: impl Iterator<Item = (String, Vec<u8>)>) {
    for (key, data) in payloads {
        kinesis
            .put_record()
            .stream_name(stream)
            .partition_key(key)
            .data(Blob::new(data))
            .send()
            .await
            .unwrap();
    }
}

/// Every shard of `stream` with its records from the start, as GetRecords returns them.
async fn read_shards(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> BTreeMap<String, Vec<InputRecord>> {
    let shards = kinesis.list_shards().stream_name(stream).send().await.unwrap();
    let mut out = BTreeMap::new();
    for shard in shards.shards() {
        let mut iterator = kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator
            .unwrap();
        let mut records = Vec::new();
        loop {
            let page = kinesis.get_records().shard_iterator(&iterator).send().await.unwrap();
            records.extend(page.records().iter().map(|r| input_record(r).unwrap()));
            if page.records().is_empty() && page.millis_behind_latest().is_none_or(|ms| ms == 0) {
                break;
            }
            // A closed shard read to its end has no next iterator.
            let Some(next) = page.next_shard_iterator() else { break };
            iterator = next.to_owned();
        }
        out.insert(shard.shard_id().to_owned(), records);
    }
    out
}

fn batches(stream: &str, shard: &str, records: &[InputRecord], size: usize) -> Vec<ShardBatch> {
    records
        .chunks(size)
        .map(|c| ShardBatch {
            stream: stream.to_owned(),
            shard_id: shard.to_owned(),
            records: c.to_vec(),
        })
        .collect()
}

/// Lambda's delivery: each batch until it succeeds (a failed invocation is retried).
async fn deliver<F, Fut, E>(batch: ShardBatch, handle: F) -> usize
where
    F: Fn(ShardBatch) -> Fut,
    Fut: std::future::Future<Output = Result<aws_lambda_events::event::streams::KinesisEventResponse, E>>,
    E: std::fmt::Display,
{
    for failures in 0..20 {
        match handle(batch.clone()).await {
            Ok(_) => return failures,
            Err(e) => eprintln!("invocation failed, retried: {e}"),
        }
    }
    panic!("a batch failed 20 times");
}

/// The order in which the tests deliver input batches: round robin over the shards, `size`
/// records each.
fn round_robin(input: &BTreeMap<String, Vec<InputRecord>>, size: usize) -> Vec<(String, Vec<InputRecord>)> {
    let mut per_shard: Vec<(String, std::slice::Chunks<'_, InputRecord>)> =
        input.iter().map(|(s, r)| (s.clone(), r.chunks(size))).collect();
    let mut order = Vec::new();
    loop {
        let before = order.len();
        for (shard, chunks) in &mut per_shard {
            if let Some(c) = chunks.next() {
                order.push((shard.clone(), c.to_vec()));
            }
        }
        if order.len() == before {
            return order;
        }
    }
}

/// Runs the upstream stage over the input stream's shards, round robin by batch of `size`.
async fn run_upstream<S: Shuffled>(t: &Topology<S>, input: &BTreeMap<String, Vec<InputRecord>>, size: usize) -> usize {
    deliver_upstream(t, round_robin(input, size)).await
}

/// Delivers `batches` (shard, records) to the upstream stage, in order; returns the failures.
async fn deliver_upstream<S: Shuffled>(t: &Topology<S>, batches: Vec<(String, Vec<InputRecord>)>) -> usize {
    let mut failures = 0;
    for (shard, records) in batches {
        let batch = ShardBatch {
            stream: t.input.clone(),
            shard_id: shard,
            records,
        };
        failures += deliver(batch, |b| t.up.handle(b)).await;
    }
    failures
}

/// Runs the downstream stage over every shuffle shard from `from` (records already handled per
/// shard), in batches of `size`; returns the new positions.
async fn run_downstream<S: Shuffled>(
    t: &Topology<S>,
    size: usize,
    from: &BTreeMap<String, usize>,
) -> (BTreeMap<String, usize>, usize) {
    let mut positions = BTreeMap::new();
    let mut failures = 0;
    for (shard, records) in read_shards(&t.kinesis, &t.shuffle).await {
        let start = from.get(&shard).copied().unwrap_or(0);
        for batch in batches(&t.shuffle, &shard, records.get(start..).unwrap_or(&[]), size) {
            failures += deliver(batch, |b| t.down.handle(b)).await;
        }
        positions.insert(shard, records.len());
    }
    (positions, failures)
}

/// The single engine of the whole pipeline over the input in the upstream's delivery order
/// ([`round_robin`] by `size`; partition = shard id, offset = the sequence number's digest, as
/// the upstream stage runs it); `ended` shards are ended at the end. Results by id.
fn single_engine(input: &BTreeMap<String, Vec<InputRecord>>, size: usize, ended: &[&str]) -> BTreeMap<ResultId, Row> {
    single_engine_of(&split().whole, input, size, ended)
}

/// [`single_engine`] of `whole`.
fn single_engine_of(
    whole: &Pipeline<Purchase, Row>,
    input: &BTreeMap<String, Vec<InputRecord>>,
    size: usize,
    ended: &[&str],
) -> BTreeMap<ResultId, Row> {
    let mut e = whole.engine();
    for (shard, records) in round_robin(input, size) {
        let p = e.partition(&shard);
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
    e.drain_output().into_iter().map(|o| (o.id, o.value)).collect()
}

/// The downstream's results by id; panics if two writes of an id differ.
fn results<S: Shuffled>(down: &Down<S>) -> BTreeMap<ResultId, Row> {
    let mut by_id = BTreeMap::new();
    for o in down.stage().sink().writes() {
        if let Some(before) = by_id.insert(o.id, o.value) {
            assert_eq!(before, o.value, "two writes of result {:?} differ", o.id);
        }
    }
    by_id
}

fn purchases(range: std::ops::Range<u64>) -> impl Iterator<Item = (String, Vec<u8>)> {
    range.map(|i| (format!("p{i}"), purchase(i)))
}

#[tokio::test]
async fn three_input_shards_through_a_two_shard_shuffle_equal_the_single_engine() {
    let t = topology("shuffle-equal", 3, 2, None, None).await;
    put(&t.kinesis, &t.input, purchases(0..240)).await;
    let input = read_shards(&t.kinesis, &t.input).await;
    assert_eq!(input.values().map(Vec::len).sum::<usize>(), 240);
    assert_eq!(run_upstream(&t, &input, 25).await, 0);
    let (_, failures) = run_downstream(&t, 10, &BTreeMap::new()).await;
    assert_eq!(failures, 0);
    let expected = single_engine(&input, 25, &[]);
    assert!(expected.len() > 20, "windows closed: {}", expected.len());
    assert_eq!(results(&t.down), expected);
    // Every result was emitted once (no batch failed or was redelivered here).
    assert_eq!(t.down.stage().sink().writes().len(), expected.len());
    assert!(t.down.stage().dead_letters().letters().is_empty());
    t.delete_streams().await;
}

#[tokio::test]
async fn crashes_after_the_shuffle_write_and_redelivery_on_both_sides_emit_each_result_once() {
    // Every third invocation of either stage dies after emitting (for the upstream: after the
    // shuffle write, before its commit), or inside the downstream's commit.
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let hook: shardflow_lambda::StageCrashHook = Arc::new(move |point| {
        matches!(point, CrashPoint::AfterEmit | CrashPoint::AfterCommit)
            && counter.fetch_add(1, Ordering::SeqCst) % 3 == 2
    });
    let t = topology("shuffle-crash", 3, 3, None, Some(hook)).await;
    put(&t.kinesis, &t.input, purchases(0..180)).await;
    let input = read_shards(&t.kinesis, &t.input).await;
    let up_failures = run_upstream(&t, &input, 20).await;
    assert!(up_failures > 0, "the upstream crashed after sending");
    // A whole upstream batch delivered again after its commit: skipped, nothing sent.
    let (shard, records) = input.iter().next().unwrap();
    let shuffled = read_shards(&t.kinesis, &t.shuffle).await;
    t.up.handle(batches(&t.input, shard, records, 20).remove(0))
        .await
        .unwrap();
    assert_eq!(
        read_shards(&t.kinesis, &t.shuffle).await,
        shuffled,
        "a committed batch is not sent again"
    );
    let (positions, down_failures) = run_downstream(&t, 7, &BTreeMap::new()).await;
    assert!(down_failures > 0, "the downstream crashed");
    // Redelivery of the shuffle stream's last batches to the downstream: nothing new.
    let writes = t.down.stage().sink().writes().len();
    let from: BTreeMap<String, usize> = positions
        .iter()
        .map(|(s, n)| (s.clone(), n.saturating_sub(3)))
        .collect();
    run_downstream(&t, 7, &from).await;
    assert_eq!(
        t.down.stage().sink().writes().len(),
        writes,
        "a committed batch emits nothing again"
    );
    let expected = single_engine(&input, 20, &[]);
    assert!(!expected.is_empty());
    assert_eq!(
        results(&t.down),
        expected,
        "each result exactly once, as the single engine"
    );
    t.delete_streams().await;
}

#[tokio::test]
async fn a_corrupted_shuffle_record_is_dead_lettered_with_its_reason_and_the_shard_goes_on() {
    let t = topology("shuffle-corrupt", 2, 2, None, None).await;
    put(&t.kinesis, &t.input, purchases(0..120)).await;
    let input = read_shards(&t.kinesis, &t.input).await;
    let mut order = round_robin(&input, 10);
    let second_half = order.split_off(order.len() / 2);
    deliver_upstream(&t, order).await;
    // A foreign record in the middle of the first shuffle shard's records, then the rest.
    let shards = t.kinesis.list_shards().stream_name(&t.shuffle).send().await.unwrap();
    let victim = shards.shards()[0].shard_id().to_owned();
    t.kinesis
        .put_record()
        .stream_name(&t.shuffle)
        .partition_key("garbage")
        .explicit_hash_key(shards.shards()[0].hash_key_range().unwrap().starting_hash_key())
        .data(Blob::new(b"not a frame".to_vec()))
        .send()
        .await
        .unwrap();
    deliver_upstream(&t, second_half).await;
    let handled: BTreeMap<String, usize> = BTreeMap::new();
    let (_, failures) = run_downstream(&t, 10, &handled).await;
    assert_eq!(failures, 0, "the bad record blocks nothing");
    let letters = t.down.stage().dead_letters().letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].kind, DeadLetterKind::Undecodable);
    assert_eq!(letters[0].shard_id, victim);
    assert!(letters[0].reason.contains("frame"), "reason: {}", letters[0].reason);
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(&letters[0].data_base64)
            .unwrap(),
        b"not a frame"
    );
    assert_eq!(results(&t.down), single_engine(&input, 10, &[]));
    t.delete_streams().await;
}

#[tokio::test]
async fn a_silent_upstream_shards_windows_close_after_the_idleness_timeout_with_a_tick() {
    const IDLENESS_MS: i64 = 6_000;
    let t = topology("shuffle-idle", 2, 2, Some(IDLENESS_MS), None).await;
    // Shard 0 holds purchases 0..40 (event time 0..40 s); shard 1 holds 0..100: shard 0 goes
    // silent at 40 s while shard 1 goes on to 100 s.
    let shards = t.kinesis.list_shards().stream_name(&t.input).send().await.unwrap();
    let start_of = |i: usize| {
        shards.shards()[i]
            .hash_key_range()
            .unwrap()
            .starting_hash_key()
            .to_owned()
    };
    for (shard, n) in [(0, 40), (1, 100)] {
        for i in 0..n {
            t.kinesis
                .put_record()
                .stream_name(&t.input)
                .partition_key(format!("p{i}"))
                .explicit_hash_key(start_of(shard))
                .data(Blob::new(purchase(i)))
                .send()
                .await
                .unwrap();
        }
    }
    let input = read_shards(&t.kinesis, &t.input).await;
    run_upstream(&t, &input, 10).await;
    let (positions, _) = run_downstream(&t, 10, &BTreeMap::new()).await;
    let silent = shards.shards()[0].shard_id();
    let held_back = single_engine(&input, 10, &[]);
    assert_eq!(results(&t.down), held_back, "the silent shard holds the watermark");
    let released = single_engine(&input, 10, &[silent]);
    assert!(
        released.len() > held_back.len(),
        "ending the silent shard closes more windows"
    );
    // No record arrives anywhere; after the idleness timeout the scheduled tick invokes every
    // downstream shard, which stops waiting for the silent shard.
    tokio::time::sleep(std::time::Duration::from_millis(IDLENESS_MS as u64 + 1_000)).await;
    t.up.tick().await.unwrap();
    run_downstream(&t, 10, &positions).await;
    assert_eq!(results(&t.down), released);
    assert!(
        t.down.stage().dead_letters().letters().is_empty(),
        "heartbeats are not dead letters"
    );
    t.delete_streams().await;
}

#[tokio::test]
async fn a_split_of_the_shuffle_stream_hands_key_groups_and_dedup_marks_to_the_children() {
    // One upstream batch dies after its shuffle write, which lands on a parent; the shuffle
    // shard is split; the retry sends the same records to the children, which must drop them by
    // the marks they adopted from the parent.
    let crash_next = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = crash_next.clone();
    let hook: shardflow_lambda::StageCrashHook =
        Arc::new(move |point| point == CrashPoint::AfterEmit && flag.swap(false, Ordering::SeqCst));
    let t = topology("shuffle-split", 3, 1, None, Some(hook)).await;
    put(&t.kinesis, &t.input, purchases(0..180)).await;
    let input = read_shards(&t.kinesis, &t.input).await;
    let mut order = round_robin(&input, 15);
    let mut second_half = order.split_off(order.len() / 2);
    deliver_upstream(&t, order).await;
    let (crashing_shard, crashing_records) = second_half.remove(0);
    let crashing = ShardBatch {
        stream: t.input.clone(),
        shard_id: crashing_shard,
        records: crashing_records,
    };
    crash_next.store(true, Ordering::SeqCst);
    assert!(t.up.handle(crashing.clone()).await.is_err(), "the injected crash");
    let (positions, _) = run_downstream(&t, 10, &BTreeMap::new()).await;

    let shards = t.kinesis.list_shards().stream_name(&t.shuffle).send().await.unwrap();
    let parent = &shards.shards()[0];
    let range = parent.hash_key_range().unwrap();
    let range = range.starting_hash_key().parse::<u128>().unwrap()..=range.ending_hash_key().parse::<u128>().unwrap();
    let space = shardflow_shuffle::KeyGroupSpace::new(split().whole.max_key_groups());
    let groups = space.groups_in(&range);
    let at = space
        .slice_start(groups.start + (groups.end - groups.start) / 2)
        .unwrap();
    t.kinesis
        .split_shard()
        .stream_name(&t.shuffle)
        .shard_to_split(parent.shard_id())
        .new_starting_hash_key(at.to_string())
        .send()
        .await
        .unwrap();
    wait_active(&t.kinesis, &t.shuffle).await;

    assert_eq!(deliver(crashing.clone(), |b| t.up.handle(b)).await, 0);
    deliver_upstream(&t, second_half).await;
    // Parents are read to their end before their children (shard ids grow), as Lambda does.
    let (after, failures) = run_downstream(&t, 10, &positions).await;
    assert_eq!(failures, 0);
    assert_eq!(after.len(), 3, "the closed parent and its two children: {after:?}");
    assert_eq!(results(&t.down), single_engine(&input, 15, &[]));
    assert!(t.down.stage().dead_letters().letters().is_empty());
    t.delete_streams().await;
}

#[tokio::test]
async fn a_lifted_aggregation_shuffles_partials_and_equals_the_single_engine() {
    let lifted = lifted_split();
    assert!(lifted.is_lifted());
    let t = topology_of(&lifted, "shuffle-lifted", 3, 2, None, None).await;
    put(&t.kinesis, &t.input, purchases(0..240)).await;
    let input = read_shards(&t.kinesis, &t.input).await;
    run_upstream(&t, &input, 40).await;
    // Data records on the shuffle stream: partials, far fewer than the 240 inputs.
    let shuffled: usize = read_shards(&t.kinesis, &t.shuffle)
        .await
        .values()
        .flatten()
        .map(|r| {
            let frame = shardflow_shuffle::Frame::parse(&r.data).unwrap();
            frame
                .records()
                .filter(|s| matches!(s, Ok(shardflow_shuffle::ShuffleRecord::Data(_))))
                .count()
        })
        .sum();
    assert!(
        shuffled > 0 && shuffled < 120,
        "{shuffled} shuffled data records for 240 inputs"
    );
    run_downstream(&t, 10, &BTreeMap::new()).await;
    let expected = single_engine_of(&lifted.whole, &input, 40, &[]);
    assert!(!expected.is_empty());
    assert_eq!(results(&t.down), expected);
    t.delete_streams().await;
}
