//! The generators into files and into the Kinesis of LocalStack (`AWS_ENDPOINT_URL`): what comes
//! out decodes as the model, in the generator's order per partition key.

use std::collections::HashMap;
use std::time::Duration;

use prost::Message;
use shardflow_gen::nexmark::NexmarkGenConfig;
use shardflow_gen::output::{FileFraming, Output};
use shardflow_gen::shop::ShopFormat;
use shardflow_kinesis::{KinesisProducer, KinesisTransport, ProducerConfig};
use shardflow_nexmark::{decode_event, AllText, Event};
use shardflow_schemas::ChangeEvent;
use shardflow_shop::{ShopConfig, ShopGenerator};

fn nexmark_config(events: u64) -> NexmarkGenConfig {
    NexmarkGenConfig {
        events,
        event_rate: 10_000,
        max_disorder_ms: 2_000,
        base_time_ms: shardflow_gen::nexmark::DEFAULT_BASE_TIME_MS,
    }
}

fn decode_lines(text: &str) -> Vec<Event> {
    text.lines()
        .enumerate()
        .map(|(i, l)| decode_event::<AllText>(i as u64 + 1, l.as_bytes()).expect("shardflow nexmark reads the line"))
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn nexmark_file_is_json_lines_that_shardflow_nexmark_decodes_with_the_model_proportions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nexmark.jsonl");
    let mut output = Output::file(&path, FileFraming::Lines).await.unwrap();
    let report = shardflow_gen::nexmark::generate(nexmark_config(5_000), 0.0, &mut output, |_| {})
        .await
        .unwrap();
    assert_eq!(report.records, 5_000);
    let events = decode_lines(&std::fs::read_to_string(&path).unwrap());
    let count = |f: fn(&Event) -> bool| events.iter().filter(|e| f(e)).count();
    assert_eq!(count(|e| matches!(e, Event::Person(_))), 100);
    assert_eq!(count(|e| matches!(e, Event::Auction(_))), 300);
    assert_eq!(count(|e| matches!(e, Event::Bid(_))), 4_600);
    let base = shardflow_gen::nexmark::DEFAULT_BASE_TIME_MS;
    // 10,000 events/s of event time: 5,000 events span half a second, disordered within 2 s.
    assert!(events.iter().all(|e| (base..base + 2_500).contains(&e.date_time())));
    let Some(Event::Person(p)) = events.first() else {
        panic!("event 0 is a person")
    };
    assert_eq!(p.id, 1000);
    assert!(!p.name.is_empty() && p.email_address.contains('@'));
}

#[tokio::test(flavor = "current_thread")]
async fn shop_file_holds_the_generator_stream_as_length_delimited_protobuf() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.pb");
    let mut output = Output::file(&path, FileFraming::LengthDelimited).await.unwrap();
    let config = ShopConfig::new(9, 3_000, 1);
    shardflow_gen::shop::generate(config.clone(), ShopFormat::Protobuf, 0.0, &mut output, |_| {})
        .await
        .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let mut buf = bytes.as_slice();
    let mut read = Vec::new();
    while !buf.is_empty() {
        read.push(ChangeEvent::decode_length_delimited(&mut buf).unwrap());
    }
    let mut generator = ShopGenerator::new(config);
    let expected: Vec<ChangeEvent> = std::iter::from_fn(|| generator.next_event().map(|(_, e)| e)).collect();
    assert_eq!(read.len(), 3_000);
    assert_eq!(read, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_into_kinesis_keeps_each_rows_changes_in_generator_order() {
    let (client, stream) = shardflow_testkit::kinesis_stream("gen-shop", 2).await;
    let mut output = Output::Stream(KinesisProducer::new(
        KinesisTransport::new(client.clone(), &stream),
        ProducerConfig::default(),
    ));
    let config = ShopConfig::new(5, 4_000, 1);
    let report = shardflow_gen::shop::generate(config.clone(), ShopFormat::Protobuf, 0.0, &mut output, |_| {})
        .await
        .unwrap();
    assert_eq!(report.producer.map(|p| p.stored), Some(4_000));

    let mut generator = ShopGenerator::new(config);
    let mut expected: HashMap<String, Vec<u64>> = HashMap::new();
    while let Some((_, e)) = generator.next_event() {
        let lsn = e.source.as_ref().map_or(0, |s| s.lsn);
        expected.entry(e.partition_key().unwrap()).or_default().push(lsn);
    }
    let records = shardflow_testkit::read_stream(&client, &stream, 4_000, Duration::from_secs(60)).await;
    assert_eq!(records.len(), 4_000);
    let mut got: HashMap<String, Vec<u64>> = HashMap::new();
    for r in &records {
        let e = ChangeEvent::decode(r.data.as_slice()).unwrap();
        assert_eq!(e.partition_key().as_deref(), Some(r.partition_key.as_str()));
        got.entry(r.partition_key.clone())
            .or_default()
            .push(e.source.as_ref().map_or(0, |s| s.lsn));
    }
    assert_eq!(got, expected);
    shardflow_testkit::delete_stream(&client, &stream).await;
}

#[tokio::test(flavor = "current_thread")]
async fn nexmark_into_kinesis_is_readable_by_the_nexmark_decoder() {
    let (client, stream) = shardflow_testkit::kinesis_stream("gen-nexmark", 1).await;
    let mut output = Output::Stream(KinesisProducer::new(
        KinesisTransport::new(client.clone(), &stream),
        ProducerConfig::default(),
    ));
    shardflow_gen::nexmark::generate(nexmark_config(1_000), 0.0, &mut output, |_| {})
        .await
        .unwrap();
    let records = shardflow_testkit::read_stream(&client, &stream, 1_000, Duration::from_secs(60)).await;
    let text: String = records
        .iter()
        .map(|r| format!("{}\n", std::str::from_utf8(&r.data).unwrap()))
        .collect();
    let events = decode_lines(&text);
    assert_eq!(events.len(), 1_000);
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Bid(_))).count(), 920);
    shardflow_testkit::delete_stream(&client, &stream).await;
}
