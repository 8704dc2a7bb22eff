//! Postgres changes into the Kinesis of LocalStack (`AWS_ENDPOINT_URL`) through [`KinesisSink`]:
//! read back with GetRecords, each row's changes are in commit order; a reader dropped before its
//! flush was acknowledged confirms nothing, and a restarted reader delivers every change.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::{poll_until, Fixture};
use shardflow_cdc::{CdcReader, ChangeEvent, ChangeSink, ChangeSinkError, Format, KinesisSink, SnapshotMode};
use shardflow_kinesis::{KinesisProducer, KinesisTransport, ProducerConfig};

fn sink_into(client: &aws_sdk_kinesis::Client, stream: &str) -> KinesisSink {
    KinesisSink::new(
        KinesisProducer::new(KinesisTransport::new(client.clone(), stream), ProducerConfig::default()),
        Format::Json,
    )
}

/// (op, id, lsn) of each record, grouped by partition key in stream order.
fn by_key(records: &[shardflow_testkit::ReadRecord]) -> BTreeMap<String, Vec<(String, i64, u64)>> {
    let mut out: BTreeMap<String, Vec<(String, i64, u64)>> = BTreeMap::new();
    for r in records {
        let json: serde_json::Value = serde_json::from_slice(&r.data).expect("a JSON change event");
        let image = if json["after"].is_null() {
            &json["before"]
        } else {
            &json["after"]
        };
        let id = image["id"].as_i64().expect("id");
        let lsn = json["source"]["lsn"].as_u64().expect("lsn");
        let op = json["op"].as_str().expect("op").to_owned();
        out.entry(r.partition_key.clone()).or_default().push((op, id, lsn));
    }
    out
}

#[tokio::test(flavor = "current_thread")]
async fn changes_reach_kinesis_in_commit_order_per_row() {
    let fx = Fixture::new("kinesis_order").await;
    let s = &fx.schema;
    fx.sql(&format!("CREATE TABLE {s}.item (id int PRIMARY KEY, v int)"))
        .await;
    let mut config = fx.config(&["item"]);
    config.snapshot = SnapshotMode::Never;
    let mut reader = CdcReader::connect(&common::database_url(), config).await.unwrap();
    let (client, stream) = shardflow_testkit::kinesis_stream("cdc-order", 2).await;

    // 20 rows: inserted, updated three times (two of them in one multi-row transaction), every
    // fourth deleted.
    fx.sql(&format!(
        "INSERT INTO {s}.item SELECT g, 0 FROM generate_series(1, 20) g"
    ))
    .await;
    for round in 1..=2 {
        fx.sql(&format!("UPDATE {s}.item SET v = {round}")).await;
    }
    fx.sql(&format!(
        "BEGIN; UPDATE {s}.item SET v = 3 WHERE id % 2 = 0; UPDATE {s}.item SET v = 3 WHERE id % 2 = 1; \
         DELETE FROM {s}.item WHERE id % 4 = 0; COMMIT;"
    ))
    .await;
    let expected = 20 * 4 + 5;

    let mut sink = sink_into(&client, &stream);
    poll_until(&mut reader, &mut sink, |s| s.sent() >= expected).await;
    assert_eq!(
        sink.stats().stored,
        expected,
        "the poll flushed: everything is acknowledged"
    );
    assert!(reader.confirmed().0 > 0);

    let records = shardflow_testkit::read_stream(&client, &stream, expected as usize, Duration::from_secs(30)).await;
    assert_eq!(records.len(), expected as usize);
    let keys = by_key(&records);
    assert_eq!(keys.len(), 20, "one partition key per row");
    for (key, changes) in keys {
        let id = changes[0].1;
        let ops: Vec<&str> = changes.iter().map(|c| c.0.as_str()).collect();
        let mut want = vec!["c", "u", "u", "u"];
        if id % 4 == 0 {
            want.push("d");
        }
        assert_eq!(ops, want, "{key}");
        assert!(
            changes.windows(2).all(|w| w[0].2 < w[1].2),
            "{key}: lsns not increasing: {changes:?}"
        );
        assert!(changes.iter().all(|c| c.1 == id));
    }
    fx.cleanup().await;
    shardflow_testkit::delete_stream(&client, &stream).await;
}

/// Hands events to the Kinesis sink but never acknowledges them, like a process killed between
/// putting records and the producer's flush.
struct KilledBeforeFlush(KinesisSink);

impl ChangeSink for KilledBeforeFlush {
    async fn send(&mut self, events: &[ChangeEvent]) -> Result<(), ChangeSinkError> {
        self.0.send(events).await
    }

    async fn flush(&mut self) -> Result<(), ChangeSinkError> {
        std::future::pending().await
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_reader_dropped_before_its_flush_loses_nothing_after_a_restart() {
    let fx = Fixture::new("kinesis_restart").await;
    let s = &fx.schema;
    fx.sql(&format!("CREATE TABLE {s}.item (id int PRIMARY KEY, v int)"))
        .await;
    let mut config = fx.config(&["item"]);
    config.snapshot = SnapshotMode::Never;
    let (client, stream) = shardflow_testkit::kinesis_stream("cdc-restart", 1).await;

    let mut first = CdcReader::connect(&common::database_url(), config.clone())
        .await
        .unwrap();
    let confirmed_before = fx.slot_confirmed().await;
    for id in 1..=30 {
        fx.sql(&format!("INSERT INTO {s}.item VALUES ({id}, 0)")).await;
        fx.sql(&format!("UPDATE {s}.item SET v = 1 WHERE id = {id}")).await;
    }
    let mut killed = KilledBeforeFlush(sink_into(&client, &stream));
    let outcome = tokio::time::timeout(Duration::from_secs(2), first.poll(&mut killed)).await;
    assert!(outcome.is_err(), "the poll must hang in flush");
    assert!(
        killed.0.sent() > 0,
        "events were handed to the producer before the kill"
    );
    drop(first);
    drop(killed);
    assert_eq!(
        fx.slot_confirmed().await,
        confirmed_before,
        "nothing may be confirmed before Kinesis acknowledged it"
    );

    let mut second = CdcReader::connect(&common::database_url(), config).await.unwrap();
    let mut sink = sink_into(&client, &stream);
    poll_until(&mut second, &mut sink, |s| s.sent() >= 60).await;
    assert!(fx.slot_confirmed().await > confirmed_before);

    let records = shardflow_testkit::read_stream(&client, &stream, 60, Duration::from_secs(30)).await;
    let keys = by_key(&records);
    let ids: HashSet<i64> = keys.values().flatten().map(|c| c.1).collect();
    assert_eq!(ids, (1..=30).collect::<HashSet<i64>>(), "every row reached the stream");
    for (key, changes) in keys {
        // A consumer dropping repeats (by LSN) sees each row's changes once, in commit order.
        let mut seen = HashSet::new();
        let firsts: Vec<(String, u64)> = changes
            .iter()
            .filter(|c| seen.insert(c.2))
            .map(|c| (c.0.clone(), c.2))
            .collect();
        let ops: Vec<&str> = firsts.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(ops, vec!["c", "u"], "{key}: {changes:?}");
        assert!(firsts[0].1 < firsts[1].1);
    }
    fx.cleanup().await;
    shardflow_testkit::delete_stream(&client, &stream).await;
}
