//! A stage across a Kinesis split, against the Kinesis and DynamoDB of LocalStack: the children
//! take over their keys of the parent's state, and the results equal one engine over the input.
//!
//! Needs `AWS_ENDPOINT_URL` pointing at LocalStack (`source localstack/env`).

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};
use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::{Pipeline, ResultId, Trigger, WatermarkStrategy, Windowing};
use shardflow_lambda::{
    hash_key, KinesisLineage, MemoryDeadLetters, MemorySink, PartitionKeying, Stage, StageConfig, StageError,
};
use shardflow_runtime::{InputRecord, JsonDecoder, SequenceNumber, ShardBatch};

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
struct Purchase {
    customer: String,
    cents: i64,
    ts_ms: i64,
}

type Row = (String, i64, u64, i64);

/// Revenue per customer in 10-second windows; the key is the record's partition key.
fn revenue() -> Pipeline<Purchase, Row> {
    Pipeline::builder("revenue-by-customer")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
        .max_key_groups(16)
        .event_time(|p: &Purchase| p.ts_ms)
        .key_by(|p| p.customer.clone())
        .window(Windowing::tumbling(10_000).unwrap())
        .trigger(Trigger::at_watermark())
        .aggregate((Count, Sum::of(|p: &Purchase| p.cents)), |k, w, _, (n, c)| {
            (k.clone(), w.start, n, c)
        })
        .sink("revenue")
}

type TestStage = Stage<Purchase, Row, JsonDecoder<Purchase>, MemorySink<Row>, MemoryDeadLetters>;

async fn stage(keying: PartitionKeying, kinesis: &aws_sdk_kinesis::Client, stream: &str) -> TestStage {
    let (client, table) = shardflow_testkit::state_table("reshard").await;
    let config = StageConfig {
        parallelization_factor: 1,
        keying,
    };
    Stage::new(
        "revenue",
        revenue(),
        JsonDecoder::new(),
        MemorySink::new(),
        MemoryDeadLetters::default(),
        client,
        &table,
        config,
    )
    .unwrap()
    .with_lineage(Arc::new(KinesisLineage::new(kinesis.clone(), stream)))
}

fn purchase(i: i64, customer: &str) -> Purchase {
    Purchase {
        customer: customer.to_owned(),
        cents: 100 + i,
        ts_ms: 1_700_000_000_000 + i * 1_000,
    }
}

async fn wait_active(kinesis: &aws_sdk_kinesis::Client, stream: &str) {
    for _ in 0..100 {
        let s = kinesis
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .unwrap();
        if s.stream_description_summary().map(|d| d.stream_status()) == Some(&StreamStatus::Active) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("stream {stream} did not become active");
}

async fn put(kinesis: &aws_sdk_kinesis::Client, stream: &str, p: &Purchase) {
    kinesis
        .put_record()
        .stream_name(stream)
        .partition_key(&p.customer)
        .data(Blob::new(serde_json::to_vec(p).unwrap()))
        .send()
        .await
        .unwrap();
}

/// Every record of `shard`, as Lambda would deliver it (arrival time: the event time).
async fn read_shard(kinesis: &aws_sdk_kinesis::Client, stream: &str, shard: &str) -> ShardBatch {
    let mut iterator = kinesis
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let mut records = Vec::new();
    loop {
        let out = kinesis.get_records().shard_iterator(&iterator).send().await.unwrap();
        for r in out.records() {
            let p: Purchase = serde_json::from_slice(r.data().as_ref()).unwrap();
            records.push(InputRecord {
                sequence: SequenceNumber::parse(r.sequence_number()).unwrap(),
                partition_key: r.partition_key().unwrap_or_default().to_owned(),
                arrival_ms: p.ts_ms,
                data: r.data().as_ref().to_vec(),
            });
        }
        match out.next_shard_iterator() {
            Some(next) if !out.records().is_empty() => iterator = next.to_owned(),
            _ => break,
        }
    }
    ShardBatch {
        stream: stream.to_owned(),
        shard_id: shard.to_owned(),
        records,
    }
}

/// One engine over `input` in event-time order (no window is cut short, no record is late).
fn one_engine(mut input: Vec<Purchase>) -> Vec<(ResultId, Row)> {
    input.sort_by_key(|p| p.ts_ms);
    let p = revenue();
    let mut e = p.engine();
    let part = e.partition("all");
    for (i, r) in input.into_iter().enumerate() {
        e.process(part, i as u64, r.ts_ms, r);
    }
    let mut v: Vec<(ResultId, Row)> = e.drain_output().into_iter().map(|o| (o.id, o.value)).collect();
    v.sort();
    v
}

fn results(stage: &TestStage) -> Vec<(ResultId, Row)> {
    let mut v: Vec<(ResultId, Row)> = stage.sink().distinct().into_iter().map(|o| (o.id, o.value)).collect();
    v.sort();
    v
}

/// A partition key of the form `{prefix}{n}` whose hash key is on the given side of the split.
fn key_on_side(prefix: &str, upper: bool, split: u128) -> String {
    (0..)
        .map(|n| format!("{prefix}{n}"))
        .find(|k| (hash_key(k) >= split) == upper)
        .unwrap_or_default()
}

const CUSTOMERS: [&str; 8] = ["ann", "bob", "cid", "dee", "eve", "fay", "gus", "hal"];

#[tokio::test]
async fn split_children_adopt_their_keys_and_finish_like_one_engine() {
    let kinesis = shardflow_testkit::kinesis();
    let stream = shardflow_testkit::unique_name("split");
    kinesis
        .create_stream()
        .stream_name(&stream)
        .shard_count(1)
        .send()
        .await
        .unwrap();
    wait_active(&kinesis, &stream).await;
    let stage = stage(PartitionKeying::KeyIsPartitionKey, &kinesis, &stream).await;
    let parent = "shardId-000000000000";

    // 45 s of purchases in the parent; windows up to 40 s fire there, [40 s, 50 s) stays open.
    let mut input = Vec::new();
    for i in 0..45 {
        let p = purchase(i, CUSTOMERS[i as usize % CUSTOMERS.len()]);
        put(&kinesis, &stream, &p).await;
        input.push(p);
    }
    let batch = read_shard(&kinesis, &stream, parent).await;
    assert_eq!(batch.records.len(), 45);
    stage.handle(batch).await.unwrap();
    let before_split = results(&stage).len();
    assert!(before_split > 0);

    let split = 1u128 << 127;
    kinesis
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(parent)
        .new_starting_hash_key(split.to_string())
        .send()
        .await
        .unwrap();
    wait_active(&kinesis, &stream).await;

    // 40 s more, then one late-enough record per child to close every window of the input.
    for i in 45..85 {
        let p = purchase(i, CUSTOMERS[i as usize % CUSTOMERS.len()]);
        put(&kinesis, &stream, &p).await;
        input.push(p);
    }
    for upper in [false, true] {
        let p = purchase(200, &key_on_side("flush", upper, split));
        put(&kinesis, &stream, &p).await;
        input.push(p);
    }
    let shards = kinesis.list_shards().stream_name(&stream).send().await.unwrap();
    let children: Vec<String> = shards
        .shards()
        .iter()
        .filter(|s| s.parent_shard_id() == Some(parent))
        .map(|s| s.shard_id().to_owned())
        .collect();
    assert_eq!(children.len(), 2, "{shards:?}");
    let mut child_records = 0;
    for child in &children {
        let batch = read_shard(&kinesis, &stream, child).await;
        child_records += batch.records.len();
        assert!(!batch.records.is_empty(), "both children get records");
        stage.handle(batch).await.unwrap();
    }
    assert_eq!(child_records, 42);
    let expected = one_engine(input);
    assert!(
        expected.iter().any(|(_, r)| r.1 == 1_700_000_040_000),
        "a window open at the split"
    );
    assert_eq!(results(&stage), expected);
}

#[tokio::test]
async fn a_split_child_refuses_to_guess_its_keys_without_a_declared_keying() {
    let kinesis = shardflow_testkit::kinesis();
    let stream = shardflow_testkit::unique_name("nokeys");
    kinesis
        .create_stream()
        .stream_name(&stream)
        .shard_count(1)
        .send()
        .await
        .unwrap();
    wait_active(&kinesis, &stream).await;
    let stage = stage(PartitionKeying::Undeclared, &kinesis, &stream).await;
    let parent = "shardId-000000000000";
    put(&kinesis, &stream, &purchase(0, "ann")).await;
    stage.handle(read_shard(&kinesis, &stream, parent).await).await.unwrap();
    kinesis
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(parent)
        .new_starting_hash_key((1u128 << 127).to_string())
        .send()
        .await
        .unwrap();
    wait_active(&kinesis, &stream).await;
    for c in CUSTOMERS {
        put(&kinesis, &stream, &purchase(1, c)).await;
    }
    let shards = kinesis.list_shards().stream_name(&stream).send().await.unwrap();
    let child = shards
        .shards()
        .iter()
        .find(|s| s.parent_shard_id() == Some(parent))
        .map(|s| s.shard_id().to_owned())
        .unwrap();
    let batch = read_shard(&kinesis, &stream, &child).await;
    assert!(matches!(
        stage.handle(batch).await,
        Err(StageError::ReshardRefused { .. })
    ));
}

#[tokio::test]
async fn a_parallelization_factor_above_one_is_refused() {
    let (client, table) = shardflow_testkit::state_table("pf").await;
    let config = StageConfig {
        parallelization_factor: 2,
        keying: PartitionKeying::KeyIsPartitionKey,
    };
    let stage = Stage::new(
        "revenue",
        revenue(),
        JsonDecoder::<Purchase>::new(),
        MemorySink::<Row>::new(),
        MemoryDeadLetters::default(),
        client,
        &table,
        config,
    );
    assert!(matches!(stage, Err(StageError::Unsupported(_))));
}
