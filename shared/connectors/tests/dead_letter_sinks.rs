//! `SqsDeadLetterSink` and `S3DeadLetterSink` against LocalStack: a resent dead letter is held once.

mod common;

use std::collections::BTreeSet;

use common::{bucket, drain_queue, keys, object, queue};
use shardflow_connectors::{
    dead_letter_id, S3DeadLetterSink, S3DeadLetterSinkConfig, SqsDeadLetterSink, SqsDeadLetterSinkConfig,
    DEAD_LETTER_ID_ATTRIBUTE,
};
use shardflow_stage::DeadLetterSink;
use shardflow_stage::{DeadLetter, DeadLetterKind};

/// `n` dead letters of two shards, the kinds alternating, one of them refused twice (as
/// undecodable and as poison: two dead letters of one record).
fn letters(n: usize) -> Vec<DeadLetter> {
    (0..n)
        .map(|i| DeadLetter {
            kind: if i % 2 == 0 {
                DeadLetterKind::Undecodable
            } else {
                DeadLetterKind::Poison
            },
            stage: "orders".to_owned(),
            stream: "orders-in".to_owned(),
            shard_id: format!("shardId-00000000000{}", i % 2),
            sequence_number: format!("4963{:020}", i / 2),
            partition_key: format!("pk-{i}"),
            arrival_ms: 1_795_651_200_000 + i as i64,
            reason: format!("expected value at line 1 column {i}"),
            data_base64: "eyJicm9rZW4=".to_owned(),
        })
        .collect()
}

#[tokio::test]
async fn a_fifo_queue_holds_each_dead_letter_once_when_sent_twice() {
    let sqs = shardflow_testkit::sqs();
    let (queue_url, _) = queue(&sqs, "dlq-fifo", true).await;
    let sink = SqsDeadLetterSink::new(sqs.clone(), SqsDeadLetterSinkConfig::new(&queue_url));
    let sent = letters(17);
    sink.send(&sent).await.expect("first send");
    sink.send(&sent).await.expect("resend");

    let messages = drain_queue(&sqs, &queue_url, sent.len()).await;
    assert_eq!(messages.len(), sent.len(), "each dead letter exactly once");
    let mut received: Vec<DeadLetter> = messages
        .iter()
        .map(|m| serde_json::from_str(m.body().expect("a body")).expect("a dead letter"))
        .collect();
    received.sort_by_key(dead_letter_id);
    let mut expected = sent.clone();
    expected.sort_by_key(dead_letter_id);
    assert_eq!(
        received, expected,
        "the raw bytes, shard, sequence number and reason survive"
    );
    for m in &messages {
        let group = m
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId))
            .expect("a message group");
        assert!(
            group.starts_with("orders/shardId-"),
            "grouped by stage and shard: {group}"
        );
    }
}

#[tokio::test]
async fn a_standard_queue_labels_every_dead_letter_with_its_id() {
    let sqs = shardflow_testkit::sqs();
    let (queue_url, _) = queue(&sqs, "dlq-std", false).await;
    let sink = SqsDeadLetterSink::new(sqs.clone(), SqsDeadLetterSinkConfig::new(&queue_url));
    let sent = letters(11);
    sink.send(&sent).await.expect("first send");
    sink.send(&sent).await.expect("resend");

    let messages = drain_queue(&sqs, &queue_url, 2 * sent.len()).await;
    assert_eq!(messages.len(), 2 * sent.len());
    let mut distinct = BTreeSet::new();
    for m in &messages {
        let letter: DeadLetter = serde_json::from_str(m.body().expect("a body")).expect("a dead letter");
        let attribute = m
            .message_attributes()
            .and_then(|a| a.get(DEAD_LETTER_ID_ATTRIBUTE))
            .and_then(|v| v.string_value())
            .expect("the dead-letter-id attribute");
        assert_eq!(attribute, dead_letter_id(&letter));
        distinct.insert(attribute.to_owned());
    }
    assert_eq!(distinct.len(), sent.len());
}

#[test]
fn a_dead_letter_id_too_long_for_sqs_becomes_a_stable_hash() {
    let mut letter = letters(1).remove(0);
    assert_eq!(
        dead_letter_id(&letter),
        "orders/shardId-000000000000/496300000000000000000000/undecodable"
    );
    letter.stage = "s".repeat(200);
    let id = dead_letter_id(&letter);
    assert_eq!(id.len(), 32);
    assert_eq!(id, dead_letter_id(&letter.clone()));
    letter.sequence_number.push('1');
    assert_ne!(dead_letter_id(&letter), id, "another record, another id");
}

#[tokio::test]
async fn s3_holds_one_object_per_dead_letter_under_its_deterministic_key() {
    let s3 = shardflow_testkit::s3();
    let bucket = bucket(&s3, "dl").await;
    let sink = S3DeadLetterSink::new(s3.clone(), S3DeadLetterSinkConfig::new(&bucket));
    let sent = letters(13);
    sink.send(&sent).await.expect("first send");
    sink.send(&sent[3..9]).await.expect("partial resend");
    sink.send(&sent).await.expect("resend");

    let stored = keys(&s3, &bucket, "dead-letters/").await;
    let mut expected: Vec<String> = sent
        .iter()
        .map(|l| {
            format!(
                "dead-letters/orders/{}/{}-{}.json",
                l.shard_id,
                l.sequence_number,
                match l.kind {
                    DeadLetterKind::Undecodable => "undecodable",
                    DeadLetterKind::Late => "late",
                    DeadLetterKind::Poison => "poison",
                }
            )
        })
        .collect();
    expected.sort();
    assert_eq!(stored, expected);
    let config = S3DeadLetterSinkConfig::new(&bucket);
    for letter in &sent {
        let body = object(&s3, &bucket, &config.key(letter)).await;
        let read: DeadLetter = serde_json::from_slice(&body).expect("a dead letter");
        assert_eq!(&read, letter);
        assert_eq!(read.data(), Some(b"{\"broken".to_vec()));
    }
}
