//! The producer against the Kinesis of LocalStack (`AWS_ENDPOINT_URL`): a flush means every
//! record is readable, each key's records come back in send order, oversized records are refused.

use std::collections::HashMap;
use std::time::Duration;

use shardflow_kinesis::{
    InvalidRecord, KinesisProducer, KinesisTransport, ProducerConfig, ProducerError, PutRecordsTransport, RecordResult,
    StreamRecord,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushed_records_are_all_in_the_stream_in_order_per_partition_key() {
    let (client, stream) = shardflow_testkit::kinesis_stream("producer-order", 2).await;
    let producer = KinesisProducer::new(
        KinesisTransport::new(client.clone(), &stream),
        ProducerConfig::default(),
    );
    let keys = 40;
    let total = 3_000;
    for i in 0..total {
        let key = format!("orders:{}", (i * 7) % keys);
        producer
            .send(StreamRecord::new(key, format!("{i}").into_bytes()))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    assert_eq!(producer.stats().stored, total as u64);

    let records = shardflow_testkit::read_stream(&client, &stream, total, Duration::from_secs(30)).await;
    assert_eq!(records.len(), total, "exactly the flushed records");
    let mut last: HashMap<&str, i64> = HashMap::new();
    let mut shard_of: HashMap<&str, &str> = HashMap::new();
    for r in &records {
        let i: i64 = std::str::from_utf8(&r.data).unwrap().parse().unwrap();
        let prev = last.insert(&r.partition_key, i).unwrap_or(-1);
        assert!(i > prev, "{}: {i} after {prev}", r.partition_key);
        assert_eq!(
            *shard_of.entry(&r.partition_key).or_insert(&r.shard_id),
            r.shard_id.as_str()
        );
    }
    assert_eq!(last.len(), keys);
    shardflow_testkit::delete_stream(&client, &stream).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_record_over_one_megabyte_is_refused_before_it_reaches_the_stream() {
    let (client, stream) = shardflow_testkit::kinesis_stream("producer-large", 1).await;
    let producer = KinesisProducer::new(
        KinesisTransport::new(client.clone(), &stream),
        ProducerConfig::default(),
    );
    let err = producer
        .send(StreamRecord::new("big", vec![b'x'; 1 << 20]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProducerError::Invalid(InvalidRecord::TooLarge { .. })),
        "{err}"
    );
    // The largest allowed record goes through.
    producer
        .send(StreamRecord::new("big", vec![b'y'; (1 << 20) - 3]))
        .await
        .unwrap();
    producer.flush().await.unwrap();
    let records = shardflow_testkit::read_stream(&client, &stream, 1, Duration::from_secs(30)).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].data.len(), (1 << 20) - 3);
    shardflow_testkit::delete_stream(&client, &stream).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_missing_stream_fails_flush_with_the_service_error() {
    let client = shardflow_testkit::kinesis();
    let missing = shardflow_testkit::unique_name("no-such-stream");
    let producer = KinesisProducer::new(KinesisTransport::new(client, &missing), ProducerConfig::default());
    producer.send(StreamRecord::new("k", b"v".to_vec())).await.unwrap();
    let err = producer.flush().await.unwrap_err();
    assert!(
        matches!(&err, ProducerError::Call(m) if m.contains("ResourceNotFound")),
        "{err}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_record_with_an_explicit_hash_key_is_stored_on_the_shard_owning_that_key_whatever_its_partition_key() {
    let (client, stream) = shardflow_testkit::kinesis_stream("producer-hash-key", 4).await;
    let shards = client.list_shards().stream_name(&stream).send().await.unwrap();
    // The last hash key of every shard, all under one partition key.
    let ends: Vec<(String, u128)> = shards
        .shards()
        .iter()
        .map(|s| {
            let end = s.hash_key_range().unwrap().ending_hash_key().parse().unwrap();
            (s.shard_id().to_owned(), end)
        })
        .collect();
    assert_eq!(ends.len(), 4);
    let records: Vec<StreamRecord> = ends
        .iter()
        .map(|(shard, end)| StreamRecord::new("one-key", shard.clone().into_bytes()).with_explicit_hash_key(*end))
        .collect();
    let results = KinesisTransport::new(client.clone(), &stream)
        .put_records(&records)
        .await
        .unwrap();
    for ((shard, _), result) in ends.iter().zip(&results) {
        assert!(
            matches!(result, RecordResult::Stored { shard_id, sequence_number } if shard_id == shard && !sequence_number.is_empty()),
            "{result:?}"
        );
    }
    let read = shardflow_testkit::read_stream(&client, &stream, 4, Duration::from_secs(30)).await;
    assert_eq!(read.len(), 4);
    for r in &read {
        assert_eq!(r.data, r.shard_id.as_bytes(), "the record named its shard by hash key");
    }
    shardflow_testkit::delete_stream(&client, &stream).await;
}
