//! The shuffle between two Lambda stages against LocalStack: a multi-shard input stream, the
//! upstream stage, a multi-shard Kinesis shuffle stream, the keyed downstream stage (state in
//! DynamoDB), both driven through their handlers with batches read from the streams. The
//! downstream's results equal the single engine of the same pipeline — with crashes between the
//! shuffle write and the upstream commit, redelivery on both sides, a corrupted shuffle record,
//! version skew between the stages, a watermark record of a stage it does not consume, and an
//! upstream shard that goes silent (its windows close after the idleness timeout, with a tick).
//! Late values are dead-lettered with the shuffled records that carried them, as the
//! single-engine stage dead-letters its late input records.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aws_sdk_kinesis::primitives::Blob;
use common::shuffle::{
    consume_shuffle, downstream, lifted_split, results, single_engine_of, single_engine_run, split, upstream, Down,
    Shuffled, Up, DOWNSTREAM, UPSTREAM,
};
use common::streams::{batches, deliver, put, read_shards, round_robin};
use common::{purchase, wait_active, Purchase, Row};
use shardflow_engine::{ResultId, SplitPipeline};
use shardflow_lambda::CrashPoint;
use shardflow_shuffle::ShuffleRecord;
use shardflow_stage::{DeadLetter, DeadLetterKind, InputRecord, ShardBatch};

/// The deployed topology of one test: the streams, the state table and one container per stage.
struct Topology<S = Purchase> {
    kinesis: aws_sdk_kinesis::Client,
    input: String,
    shuffle: String,
    up: Up<S>,
    down: Down<S>,
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
    consume_shuffle(&t.down, &t.kinesis, &t.shuffle, size, from).await
}

/// The single engine of the whole pipeline over the input in the upstream's delivery order
/// ([`round_robin`] by `size`; partition = shard id, offset = the sequence number's digest, as
/// the upstream stage runs it); `ended` shards are ended at the end. Results by id.
fn single_engine(input: &BTreeMap<String, Vec<InputRecord>>, size: usize, ended: &[&str]) -> BTreeMap<ResultId, Row> {
    single_engine_of(&split().whole, input, size, ended)
}

/// The downstream's dead letters of `kind`.
fn letters_of<S: Shuffled>(down: &Down<S>, kind: DeadLetterKind) -> Vec<DeadLetter> {
    let mut letters = down.stage().dead_letters().letters();
    letters.retain(|l| l.kind == kind);
    letters
}

/// The reasons of the downstream's late dead letters, sorted.
fn late_reasons<S: Shuffled>(down: &Down<S>) -> Vec<String> {
    let mut reasons: Vec<String> = letters_of(down, DeadLetterKind::Late)
        .into_iter()
        .map(|l| l.reason)
        .collect();
    reasons.sort_unstable();
    reasons
}

/// The reasons the single-engine stage gives its late records in [`single_engine`]'s run, sorted.
fn single_engine_late(input: &BTreeMap<String, Vec<InputRecord>>, size: usize, ended: &[&str]) -> Vec<String> {
    let mut e = single_engine_run(&split().whole, input, size, ended);
    let mut reasons: Vec<String> = e.drain_late().iter().map(DeadLetter::late_reason).collect();
    reasons.sort_unstable();
    reasons
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
    assert!(letters_of(&t.down, DeadLetterKind::Undecodable).is_empty());
    // Purchases of a shard behind the others are late, as in the single engine: dead-lettered.
    let late = single_engine_late(&input, 25, &[]);
    assert!(!late.is_empty());
    assert_eq!(late_reasons(&t.down), late);
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

/// What [`half_delivered`] returns.
type HalfDelivered = (
    Topology,
    BTreeMap<String, Vec<InputRecord>>,
    Vec<(String, Vec<InputRecord>)>,
    aws_sdk_kinesis::operation::list_shards::ListShardsOutput,
);

/// Purchases 0..120 on two input shards, the first half of the upstream batches (of 10)
/// delivered to a two-shard shuffle: the topology, the input, the other half, the shuffle's shards.
async fn half_delivered(prefix: &str) -> HalfDelivered {
    let t = topology(prefix, 2, 2, None, None).await;
    put(&t.kinesis, &t.input, purchases(0..120)).await;
    let input = read_shards(&t.kinesis, &t.input).await;
    let mut order = round_robin(&input, 10);
    let second_half = order.split_off(order.len() / 2);
    deliver_upstream(&t, order).await;
    let shards = t.kinesis.list_shards().stream_name(&t.shuffle).send().await.unwrap();
    (t, input, second_half, shards)
}

#[tokio::test]
async fn a_corrupted_shuffle_record_is_dead_lettered_with_its_reason_and_the_shard_goes_on() {
    let (t, input, second_half, shards) = half_delivered("shuffle-corrupt").await;
    // A foreign record in the middle of the first shuffle shard's records, then the rest.
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
    let letters = letters_of(&t.down, DeadLetterKind::Undecodable);
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
        letters_of(&t.down, DeadLetterKind::Undecodable).is_empty(),
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
    assert!(letters_of(&t.down, DeadLetterKind::Undecodable).is_empty());
    assert_eq!(late_reasons(&t.down), single_engine_late(&input, 15, &[]));
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

/// A purchase of `product` at `ts_ms` (ms after the first purchase of [`purchase`]).
fn purchase_at(product: u32, ts_ms: i64) -> Vec<u8> {
    serde_json::to_vec(&Purchase {
        product,
        cents: 7,
        ts_ms: 1_700_000_000_000 + ts_ms,
    })
    .unwrap()
}

#[tokio::test]
async fn late_shuffled_values_are_dead_lettered_with_their_records_as_the_single_engine_stage_does() {
    let t = topology("shuffle-late", 1, 2, None, None).await;
    put(&t.kinesis, &t.input, purchases(0..60)).await;
    // Five purchases of windows that closed long ago (no allowed lateness): late, downstream.
    let late = (0..5u32).map(|i| (format!("late{i}"), purchase_at(i % 3, i64::from(i) * 1_000)));
    put(&t.kinesis, &t.input, late).await;
    let input = read_shards(&t.kinesis, &t.input).await;
    run_upstream(&t, &input, 10).await;
    run_downstream(&t, 10, &BTreeMap::new()).await;
    assert_eq!(results(&t.down), single_engine(&input, 10, &[]));
    // The single-engine stage's reasons: the same late values, operators, watermarks, windows.
    let expected_reasons = single_engine_late(&input, 10, &[]);
    assert_eq!(expected_reasons.len(), 5);
    let letters = t.down.stage().dead_letters().letters();
    assert!(letters
        .iter()
        .all(|l| l.kind == DeadLetterKind::Late && l.stage == DOWNSTREAM));
    assert_eq!(
        late_reasons(&t.down),
        expected_reasons,
        "nothing dropped: each late value dead-lettered once"
    );
    // Each letter holds the shuffled record that carried its value.
    for letter in &letters {
        let bytes = letter.data().unwrap();
        let Ok(ShuffleRecord::Data(data)) = ShuffleRecord::decode(&bytes) else {
            panic!("not a shuffled data record: {letter:?}")
        };
        let value: Purchase = postcard::from_bytes(data.payload).unwrap();
        assert_eq!((value.cents, value.ts_ms), (7, data.timestamp));
        assert!(letter.reason.contains(&format!("event time {}", data.timestamp)));
    }
    t.delete_streams().await;
}

#[tokio::test]
async fn version_skew_in_the_shuffle_is_dead_lettered_and_a_strangers_watermark_is_ignored() {
    let (t, input, second_half, shards) = half_delivered("shuffle-skew").await;
    let victim = &shards.shards()[0];
    let range = victim.hash_key_range().unwrap();
    let groups = shardflow_shuffle::KeyGroupSpace::new(split().whole.max_key_groups()).groups_in(
        &(range.starting_hash_key().parse::<u128>().unwrap()..=range.ending_hash_key().parse::<u128>().unwrap()),
    );
    // A frame of a newer version; a data record (of a key group the shard owns) whose value an
    // older writer encoded without two of its fields; a watermark of a stage this one does not
    // consume, far behind (were it counted, it would hold every window back).
    let mut skewed = frame(&[ShuffleRecord::Watermark(stranger_watermark())]);
    skewed[shardflow_shuffle::frame::MAGIC.len()] = shardflow_shuffle::frame::VERSION + 1;
    let short_value = postcard::to_allocvec(&(1u32,)).unwrap();
    let sequence =
        shardflow_stage::SequenceNumber::parse("49650000000000000000000000000000000000000000000001").unwrap();
    let old_writer = ShuffleRecord::Data(shardflow_shuffle::DataRecord {
        id: shardflow_shuffle::RecordId {
            stage: UPSTREAM,
            source_shard: "shardId-000000000007",
            sequence: std::borrow::Cow::Borrowed(&sequence),
            output_index: 0,
        },
        key_group: groups.start,
        timestamp: 1_700_000_000_000,
        origin: shardflow_engine::InputOrigin {
            source: 1,
            offset: 1,
            index: 0,
        },
        wm_before: shardflow_engine::MIN_TIMESTAMP,
        payload: &short_value,
    });
    let mut old_writer_bytes = Vec::new();
    shardflow_shuffle::Encode::encode(&old_writer, &mut old_writer_bytes);
    let injected = [
        skewed.clone(),
        frame(&[old_writer]),
        frame(&[ShuffleRecord::Watermark(stranger_watermark())]),
    ];
    for data in injected {
        t.kinesis
            .put_record()
            .stream_name(&t.shuffle)
            .partition_key("foreign")
            .explicit_hash_key(range.starting_hash_key())
            .data(Blob::new(data))
            .send()
            .await
            .unwrap();
    }
    deliver_upstream(&t, second_half).await;
    let (_, failures) = run_downstream(&t, 10, &BTreeMap::new()).await;
    assert_eq!(failures, 0, "bad input blocks nothing");
    let letters: Vec<(DeadLetterKind, String, String, Vec<u8>)> = letters_of(&t.down, DeadLetterKind::Undecodable)
        .iter()
        .map(|l| (l.kind, l.shard_id.clone(), l.reason.clone(), l.data().unwrap()))
        .collect();
    assert_eq!(letters.len(), 2, "{letters:?}");
    let victim = victim.shard_id().to_owned();
    assert_eq!(
        letters[0],
        (
            DeadLetterKind::Undecodable,
            victim.clone(),
            "shuffle frame version 2, this stage reads version 1".to_owned(),
            skewed
        )
    );
    assert_eq!((letters[1].0, &letters[1].1), (DeadLetterKind::Undecodable, &victim));
    assert!(
        letters[1].2.starts_with("shuffled value does not decode"),
        "{}",
        letters[1].2
    );
    assert_eq!(letters[1].3, old_writer_bytes, "the shuffled record's own bytes");
    let expected = single_engine(&input, 10, &[]);
    assert!(expected.len() > 20);
    assert_eq!(results(&t.down), expected, "the stranger's watermark held nothing back");
    t.delete_streams().await;
}

/// A watermark record of a stage and stream the downstream does not consume.
fn stranger_watermark() -> shardflow_shuffle::WatermarkRecord<'static> {
    shardflow_shuffle::WatermarkRecord {
        stage: "stranger",
        source_stream: "elsewhere",
        source_shard: "shardId-000000000000",
        watermark: 1_000,
        closed: false,
        parents: vec![],
    }
}

/// One frame holding `records`.
fn frame(records: &[ShuffleRecord<'_>]) -> Vec<u8> {
    let mut w = shardflow_shuffle::FrameWriter::new();
    for r in records {
        w.push(r);
    }
    w.finish()
}
