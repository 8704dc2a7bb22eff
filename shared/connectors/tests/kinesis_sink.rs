//! `KinesisSink` against the Kinesis of LocalStack, and the next stage's side: the records of a
//! twice-emitted batch, read back and deduplicated by `Stream::deduplicate`, are each result once.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};
use common::{results, Count};
use shardflow_connectors::{KinesisEnvelope, KinesisSink, KinesisSinkConfig};
use shardflow_engine::{Pipeline, WatermarkStrategy};
use shardflow_stage::ResultSink;

/// A new stream of `shards` shards, once it is active.
async fn stream(client: &aws_sdk_kinesis::Client, shards: i32) -> String {
    let name = shardflow_testkit::unique_name("kinesis-sink");
    client
        .create_stream()
        .stream_name(&name)
        .shard_count(shards)
        .send()
        .await
        .expect("CreateStream");
    for _ in 0..100 {
        let status = client
            .describe_stream_summary()
            .stream_name(&name)
            .send()
            .await
            .expect("DescribeStreamSummary")
            .stream_description_summary()
            .map(|s| s.stream_status().clone());
        if status == Some(StreamStatus::Active) {
            return name;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("stream {name} did not become active");
}

/// Every record of every shard: (shard, partition key, data).
async fn read_all(client: &aws_sdk_kinesis::Client, stream: &str) -> Vec<(String, String, Vec<u8>)> {
    let shards = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("ListShards");
    let mut out = Vec::new();
    for shard in shards.shards() {
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator()
            .map(str::to_owned);
        while let Some(it) = iterator {
            let page = client
                .get_records()
                .shard_iterator(it)
                .limit(1000)
                .send()
                .await
                .expect("GetRecords");
            for r in page.records() {
                out.push((
                    shard.shard_id().to_owned(),
                    r.partition_key().expect("a partition key").to_owned(),
                    r.data().as_ref().to_vec(),
                ));
            }
            if page.records().is_empty() || page.millis_behind_latest() == Some(0) && page.records().len() < 1000 {
                break;
            }
            iterator = page.next_shard_iterator().map(str::to_owned);
        }
    }
    out
}

#[tokio::test]
async fn a_twice_emitted_batch_is_each_result_once_after_the_next_stage_deduplicates() {
    let client = shardflow_testkit::kinesis();
    let stream = stream(&client, 2).await;
    let sink = KinesisSink::new(
        client.clone(),
        KinesisSinkConfig::new(&stream).partition_key(|o: &shardflow_engine::Output<Count>| o.value.key.clone()),
    );
    // More than the 500 records of one PutRecords call.
    let outputs = results(620);
    sink.emit(&outputs).await.expect("first emit");
    sink.emit(&outputs).await.expect("redelivered emit");

    let records = read_all(&client, &stream).await;
    assert_eq!(records.len(), 2 * outputs.len(), "Kinesis keeps both deliveries");
    let expected: BTreeMap<String, Count> = outputs.iter().map(|o| (o.id.to_hex(), o.value.clone())).collect();
    let mut shard_of_key = BTreeMap::new();
    for (shard, key, data) in &records {
        let envelope: KinesisEnvelope<Count> = serde_json::from_slice(data).expect("an envelope");
        assert_eq!(
            expected.get(&envelope.id),
            Some(&envelope.value),
            "the id travels with its value"
        );
        assert_eq!(key, &envelope.value.key, "the partition key of the user function");
        let first = shard_of_key.entry(key.clone()).or_insert_with(|| shard.clone());
        assert_eq!(first, shard, "one key, one shard");
    }

    // The next stage: one partition per shard, deduplicated by the envelope's id.
    let next = Pipeline::builder("next-stage")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(5_000).expect("non-negative"))
        .event_time(|e: &KinesisEnvelope<Count>| e.value.window_start)
        .deduplicate(|e: &KinesisEnvelope<Count>| e.id_u128(), 3_600_000)
        .sink("deduplicated");
    let mut engine = next.engine();
    for (offset, (shard, _, data)) in records.iter().enumerate() {
        let partition = engine.partition(shard);
        let envelope: KinesisEnvelope<Count> = serde_json::from_slice(data).expect("an envelope");
        engine.process(partition, offset as u64, 0, envelope);
    }
    engine.finish();
    let kept: BTreeMap<String, Count> = engine
        .drain_output()
        .into_iter()
        .map(|o| (o.value.id, o.value.value))
        .collect();
    assert_eq!(kept, expected);
    assert_eq!(engine.metrics().duplicates_dropped, outputs.len() as u64);
    assert!(engine.drain_late().is_empty());
}
