//! A join across deployed streams against LocalStack (issue 13): twenty input Kinesis streams,
//! one per "table" (a few with two shards), each read by its own tagging upstream stage
//! ([`StreamJoin::tagging_upstream`]) writing into one shuffle stream of three shards, which one
//! 20-way window-join stage ([`StreamJoin::join_downstream`]) reads. Driven through the stages'
//! handlers with batches read from the streams, the join stage's results equal the single engine
//! of the same join over the union of the inputs; an undecodable row is dead-lettered by its
//! stream's stage.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::streams::{batches, deliver, put, read_shards};
use serde::{Deserialize, Serialize};
use shardflow_engine::{Pipeline, ResultId, SplitPipeline, Trigger, WatermarkStrategy, Windowing};
use shardflow_lambda::shuffle::{DownstreamStage, JoinInput, NoDecoder, NoSink, StreamJoin, TaggingUpstream};
use shardflow_lambda::{KinesisLineage, Stage, StageConfig};
use shardflow_stage::{DeadLetterKind, InputRecord, JsonDecoder, MemoryDeadLetters, MemoryResultSink, Tagged};

/// Input streams ("tables").
const SIDES: usize = 20;
/// Input streams with two shards (the others have one).
const TWO_SHARDS: usize = 3;
/// Rows per input stream.
const ROWS: i64 = 40;
const JOIN: &str = "stream-join";
const BASE_MS: i64 = 1_700_000_000_000;

/// A row of one table: the customer it belongs to, its commit time, an amount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Row {
    customer: u32,
    ts_ms: i64,
    cents: i64,
}

/// (customer, window start, each side's sum of cents): one per customer and 10 s window that has
/// a row of side 0 (a left join of side 0 with the 19 others).
type Joined = (u32, i64, Vec<i64>);

fn join_split() -> SplitPipeline<Tagged<Row>, Tagged<Row>, Joined> {
    Pipeline::builder(JOIN)
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(1_000).unwrap())
        .event_time(|t: &Tagged<Row>| t.value.ts_ms)
        .key_by(|t| t.value.customer)
        .shuffle()
        .unwrap()
        .window(Windowing::tumbling(10_000).unwrap())
        .trigger(Trigger::at_watermark())
        .join(
            SIDES,
            |t| usize::from(t.side),
            |customer, window, lists| {
                if lists[0].is_empty() {
                    return Vec::new();
                }
                let sums = lists.iter().map(|l| l.iter().map(|t| t.value.cents).sum()).collect();
                vec![(*customer, window.start, sums)]
            },
        )
        .sink("joined")
}

/// Row `j` of table `side`: customers 0..5, one row a second, amounts that say their side.
fn row(side: usize, j: i64) -> Vec<u8> {
    let side = side as i64;
    serde_json::to_vec(&Row {
        customer: ((side * 7 + j) % 5) as u32,
        ts_ms: BASE_MS + j * 1_000 + side * 37,
        cents: side * 1_000 + j,
    })
    .unwrap()
}

type Up = TaggingUpstream<Row, JsonDecoder<Row>, MemoryDeadLetters>;
type Down = DownstreamStage<Tagged<Row>, Joined, MemoryResultSink<Joined>, MemoryDeadLetters>;

/// The deployed join: the input streams, the shuffle stream, one stage per input and the join
/// stage, all with their state in one table.
struct Deployed {
    kinesis: aws_sdk_kinesis::Client,
    inputs: Vec<String>,
    shuffle: String,
    ups: Vec<Up>,
    down: Down,
}

async fn deploy(split: &SplitPipeline<Tagged<Row>, Tagged<Row>, Joined>) -> Deployed {
    let (client, table) = shardflow_testkit::state_table("stream-join").await;
    let creating: Vec<_> = (0..SIDES)
        .map(|i| {
            let shards = if i < TWO_SHARDS { 2 } else { 1 };
            let prefix = format!("join-in{i}");
            tokio::spawn(async move { shardflow_testkit::kinesis_stream(&prefix, shards).await })
        })
        .collect();
    let (kinesis, shuffle) = shardflow_testkit::kinesis_stream("join-sh", 3).await;
    let mut inputs = Vec::with_capacity(SIDES);
    for c in creating {
        inputs.push(c.await.unwrap().1);
    }
    let join = StreamJoin::new(
        inputs
            .iter()
            .enumerate()
            .map(|(i, stream)| JoinInput::new(format!("{JOIN}-table{i}"), stream.as_str())),
    )
    .unwrap();
    assert_eq!(join.sides(), SIDES);
    let ups = join
        .inputs()
        .iter()
        .map(|input| {
            let stage = Stage::new(
                &input.stage,
                split.upstream.clone(),
                join.decoder(&input.stage, JsonDecoder::new()).unwrap(),
                NoSink,
                MemoryDeadLetters::default(),
                client.clone(),
                &table,
                StageConfig::default(),
            )
            .unwrap()
            .with_lineage(Arc::new(KinesisLineage::new(kinesis.clone(), &input.stream)));
            join.tagging_upstream(stage, kinesis.clone(), &shuffle).unwrap()
        })
        .collect();
    let stage = Stage::new(
        JOIN,
        split.downstream.clone(),
        NoDecoder,
        MemoryResultSink::new(),
        MemoryDeadLetters::default(),
        client.clone(),
        &table,
        StageConfig::default(),
    )
    .unwrap()
    .with_lineage(Arc::new(KinesisLineage::new(kinesis.clone(), &shuffle)));
    Deployed {
        down: join.join_downstream(stage, None),
        kinesis,
        inputs,
        shuffle,
        ups,
    }
}

/// Every input stream's shards: (side, shard, records).
type Inputs = Vec<(usize, String, Vec<InputRecord>)>;

/// Upstream batches in delivery order: first one record of every shard of every stream (so that
/// every upstream shard is known downstream before any window can close), then round robin,
/// `size` records each. (side, shard, records)
fn delivery_order(inputs: &Inputs, size: usize) -> Vec<(usize, String, Vec<InputRecord>)> {
    let mut order: Vec<_> = inputs
        .iter()
        .map(|(side, shard, r)| (*side, shard.clone(), r[..1].to_vec()))
        .collect();
    let mut chunks: Vec<_> = inputs
        .iter()
        .map(|(side, shard, r)| (*side, shard, r[1..].chunks(size)))
        .collect();
    loop {
        let before = order.len();
        for (side, shard, c) in &mut chunks {
            if let Some(records) = c.next() {
                order.push((*side, (*shard).clone(), records.to_vec()));
            }
        }
        if order.len() == before {
            return order;
        }
    }
}

/// The single engine of the join over the union of the inputs, in delivery order: one partition
/// per stream and shard, each row tagged with its stream's side; undecodable rows skipped.
fn single_engine(
    split: &SplitPipeline<Tagged<Row>, Tagged<Row>, Joined>,
    order: &[(usize, String, Vec<InputRecord>)],
) -> BTreeMap<ResultId, Joined> {
    let mut engine = split.whole.engine();
    for (side, shard, records) in order {
        let p = engine.partition(&format!("table{side}/{shard}"));
        for r in records {
            let Ok(value) = serde_json::from_slice::<Row>(&r.data) else {
                continue;
            };
            let side = u16::try_from(*side).unwrap();
            engine.process(p, r.sequence.digest(), r.arrival_ms, Tagged { side, value });
        }
    }
    engine.drain_output().into_iter().map(|o| (o.id, o.value)).collect()
}

#[tokio::test]
async fn twenty_streams_joined_through_one_shuffle_stream_equal_the_single_engine_over_their_union() {
    let split = join_split();
    let d = deploy(&split).await;
    for (side, stream) in d.inputs.iter().enumerate() {
        let mut rows: Vec<(String, Vec<u8>)> = (0..ROWS).map(|j| (format!("r{j}"), row(side, j))).collect();
        if side == 5 {
            rows.insert(10, ("bad".into(), b"{\"customer\":".to_vec()));
        }
        put(&d.kinesis, stream, rows.into_iter()).await;
    }
    let mut inputs: Inputs = Vec::new();
    for (side, stream) in d.inputs.iter().enumerate() {
        for (shard, records) in read_shards(&d.kinesis, stream).await {
            inputs.push((side, shard, records));
        }
    }
    assert_eq!(inputs.len(), SIDES + TWO_SHARDS);
    let order = delivery_order(&inputs, 6);
    for (side, shard, records) in order.clone() {
        let batch = shardflow_stage::ShardBatch {
            stream: d.inputs[side].clone(),
            shard_id: shard,
            records,
        };
        assert_eq!(deliver(batch, |b| d.ups[side].handle(b)).await, 0);
    }
    let shuffled = read_shards(&d.kinesis, &d.shuffle).await;
    assert_eq!(shuffled.len(), 3);
    for (shard, records) in &shuffled {
        for batch in batches(&d.shuffle, shard, records, 10) {
            assert_eq!(deliver(batch, |b| d.down.handle(b)).await, 0);
        }
    }
    let mut results = BTreeMap::new();
    for o in d.down.stage().sink().writes() {
        assert!(results.insert(o.id, o.value).is_none(), "each result once");
    }
    let expected = single_engine(&split, &order);
    // Customers 0..5, windows of 10 s: the first three windows close (the last waits for the
    // watermark), each customer with rows of side 0 in each.
    assert_eq!(expected.len(), 15, "{expected:?}");
    assert!(
        expected.values().all(|(_, _, sums)| sums.iter().all(|s| *s > 0)),
        "every table joined"
    );
    assert_eq!(results, expected);
    // The bad row: dead-lettered by its own stream's stage, with its reason.
    let letters = d.ups[5].stage().dead_letters().letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].kind, letters[0].stage.as_str(), letters[0].stream.as_str()),
        (
            DeadLetterKind::Undecodable,
            format!("{JOIN}-table5").as_str(),
            d.inputs[5].as_str()
        )
    );
    assert!(d.down.stage().dead_letters().letters().is_empty());
    for stream in d.inputs.iter().chain([&d.shuffle]) {
        shardflow_testkit::delete_stream(&d.kinesis, stream).await;
    }
}
