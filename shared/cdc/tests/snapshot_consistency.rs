//! The watermark snapshot on live tables: with writes running during the snapshot, the stream
//! folded per key equals the table, no snapshot row is older than a change delivered before it,
//! a chunk waits for transactions older than its low watermark, and a restarted reader resumes
//! after the last confirmed chunk.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{int_col, Fixture};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shardflow_cdc::{CdcReader, ChangeEvent, ColumnValue, MemoryChangeSink, Op};
use tokio_postgres::types::PgLsn;

/// Applies the events in order: the image of each key after the last one.
fn fold(events: &[ChangeEvent]) -> BTreeMap<i64, i64> {
    let mut table = BTreeMap::new();
    for e in events {
        let id = int_col(e, "id").expect("id");
        match e.op {
            Op::Delete => {
                table.remove(&id);
            }
            _ => {
                table.insert(id, int_col(e, "v").expect("v"));
            }
        }
    }
    table
}

async fn table_state(fx: &Fixture, table: &str) -> BTreeMap<i64, i64> {
    fx.client
        .query(&format!("SELECT id, v FROM {}.{table}", fx.schema), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (i64::from(r.get::<_, i32>(0)), i64::from(r.get::<_, i32>(1))))
        .collect()
}

/// Polls until the slot is confirmed past everything committed so far.
async fn catch_up(fx: &Fixture, reader: &mut CdcReader, sink: &mut MemoryChangeSink) {
    let target: PgLsn = fx
        .client
        .query_one("SELECT pg_current_wal_flush_lsn()", &[])
        .await
        .unwrap()
        .get(0);
    let started = Instant::now();
    while reader.confirmed().0 < u64::from(target) {
        assert!(started.elapsed() < Duration::from_secs(60), "reader did not catch up");
        if reader.poll(sink).await.unwrap().events == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_under_concurrent_writes_is_consistent_with_the_stream() {
    let fx = Fixture::new("snap_live").await;
    let s = fx.schema.clone();
    const ROWS: i64 = 3_000;
    fx.sql(&format!(
        "CREATE TABLE {s}.acct (id int PRIMARY KEY, v int NOT NULL, note text);
         INSERT INTO {s}.acct SELECT g, 0, 'row ' || g FROM generate_series(1, {ROWS}) g;"
    ))
    .await;
    let mut config = fx.config(&["acct"]);
    config.snapshot_chunk_rows = 100;
    let mut reader = CdcReader::connect(&common::database_url(), config).await.unwrap();
    assert_eq!(reader.prepared().snapshot_tables, vec![fx.table("acct")]);

    // A writer on its own connection: transactions of 1-10 random updates (v + 1), deletes and
    // inserts of new ids, as fast as it can, for as long as the snapshot runs.
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, commits, s) = (Arc::clone(&stop), Arc::clone(&commits), s.clone());
        tokio::spawn(async move {
            let client = common::admin().await;
            let mut rng = SmallRng::seed_from_u64(7);
            let mut next_id = ROWS;
            while !stop.load(Ordering::Relaxed) {
                let mut sql = String::from("BEGIN;");
                for _ in 0..rng.random_range(1..=10) {
                    let roll: f64 = rng.random();
                    if roll < 0.85 {
                        let id = rng.random_range(1..=next_id);
                        sql.push_str(&format!("UPDATE {s}.acct SET v = v + 1 WHERE id = {id};"));
                    } else if roll < 0.92 {
                        let id = rng.random_range(1..=next_id);
                        sql.push_str(&format!("DELETE FROM {s}.acct WHERE id = {id};"));
                    } else {
                        next_id += 1;
                        sql.push_str(&format!("INSERT INTO {s}.acct VALUES ({next_id}, 0, 'new');"));
                    }
                }
                sql.push_str("COMMIT;");
                client.batch_execute(&sql).await.unwrap();
                commits.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut sink = MemoryChangeSink::default();
    let snapshot_rows = reader.snapshot(&mut sink).await.unwrap();
    let during = commits.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    catch_up(&fx, &mut reader, &mut sink).await;

    let stats = reader.snapshot_stats();
    eprintln!("{stats:?}; {during} writer transactions during the snapshot");
    assert_eq!(stats.rows, snapshot_rows);
    assert!(stats.chunks >= 30, "{stats:?}");
    assert!(
        during >= 50,
        "the writer committed {during} transactions during the snapshot"
    );
    assert!(
        stats.dropped > 0,
        "some chunk rows changed inside their window (else the test proves little): {stats:?}"
    );

    // 1. The stream folded per key is the table.
    let (folded, table) = (fold(&sink.events), table_state(&fx, "acct").await);
    let differ: Vec<_> = table
        .keys()
        .chain(folded.keys())
        .filter(|id| folded.get(id) != table.get(id))
        .take(10)
        .map(|id| (id, folded.get(id), table.get(id)))
        .collect();
    assert!(differ.is_empty(), "(id, folded v, table v) differ: {differ:?}");
    assert_eq!(folded.len(), table.len());

    // 2. Per key, v never goes back and nothing follows a delete: no snapshot row is older than
    //    a change delivered before it, and none resurrects a deleted row.
    let mut seen: BTreeMap<i64, Option<i64>> = BTreeMap::new();
    let mut reads: BTreeMap<i64, usize> = BTreeMap::new();
    for e in &sink.events {
        let id = int_col(e, "id").unwrap();
        let previous = seen.get(&id).copied();
        assert_ne!(previous, Some(None), "event for id {id} after its delete: {e:?}");
        if e.op == Op::Read {
            *reads.entry(id).or_default() += 1;
            assert!(e.source.snapshot && e.source.tx_id.is_none());
        }
        if e.op == Op::Delete {
            seen.insert(id, None);
            continue;
        }
        let v = int_col(e, "v").unwrap();
        if let Some(Some(prev)) = previous {
            assert!(v >= prev, "id {id}: v {v} after {prev} ({:?})", e.op);
        }
        seen.insert(id, Some(v));
    }
    // 3. Every original row was delivered (read once by the snapshot, or changed by the stream).
    //    Rows inserted during the snapshot may be read too when their chunk comes (DBLog: then
    //    with their current state, checked by 2).
    assert!(reads.values().all(|n| *n == 1), "a row read twice");
    for id in 1..=ROWS {
        assert!(seen.contains_key(&id), "id {id} never delivered");
    }
    drop(reader);
    fx.cleanup().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_chunk_waits_for_older_transactions_and_leaves_their_rows_to_the_stream() {
    let fx = Fixture::new("snap_wait").await;
    let s = fx.schema.clone();
    fx.sql(&format!(
        "CREATE TABLE {s}.acct (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO {s}.acct SELECT g, 0 FROM generate_series(1, 10) g;"
    ))
    .await;
    let mut reader = CdcReader::connect(&common::database_url(), fx.config(&["acct"]))
        .await
        .unwrap();
    // A transaction that holds a transaction id across the chunk's low watermark.
    let writer = common::admin().await;
    writer
        .batch_execute(&format!("BEGIN; UPDATE {s}.acct SET v = 1 WHERE id = 5"))
        .await
        .unwrap();
    let mut sink = MemoryChangeSink::default();
    let started = Instant::now();
    let (rows, ()) = tokio::join!(reader.snapshot(&mut sink), async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        writer.batch_execute("COMMIT").await.unwrap();
    });
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "the chunk was selected only after the older transaction ended"
    );
    assert_eq!(rows.unwrap(), 9);
    let got: Vec<(Op, i64, i64)> = sink
        .events
        .iter()
        .map(|e| (e.op, int_col(e, "id").unwrap(), int_col(e, "v").unwrap()))
        .collect();
    let mut expected = vec![(Op::Update, 5, 1)];
    expected.extend((1..=10).filter(|id| *id != 5).map(|id| (Op::Read, id, 0)));
    assert_eq!(got, expected, "the update is streamed; its row is not read again");
    assert_eq!(reader.snapshot_stats().dropped, 1);
    assert_eq!(
        sink.events[1].after.as_ref().unwrap().get("v"),
        Some(&ColumnValue::Int(0))
    );
    assert!(sink.events[1].source.lsn > sink.events[0].source.lsn);
    drop(reader);
    fx.cleanup().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_restarted_reader_resumes_the_snapshot_after_the_last_confirmed_chunk() {
    let fx = Fixture::new("snap_resume").await;
    let s = &fx.schema;
    fx.sql(&format!(
        "CREATE TABLE {s}.acct (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO {s}.acct SELECT g, g FROM generate_series(1, 35) g;"
    ))
    .await;
    let mut config = fx.config(&["acct"]);
    config.snapshot_chunk_rows = 10;
    let mut first = CdcReader::connect(&common::database_url(), config.clone())
        .await
        .unwrap();
    let mut sink = MemoryChangeSink::default();
    first.poll(&mut sink).await.unwrap();
    first.poll(&mut sink).await.unwrap();
    let ids = |events: &[ChangeEvent]| events.iter().filter_map(|e| int_col(e, "id")).collect::<Vec<_>>();
    assert_eq!(ids(&sink.events), (1..=20).collect::<Vec<_>>());
    assert!(first.snapshot_in_progress());
    drop(first); // killed mid-snapshot

    let mut second = CdcReader::connect(&common::database_url(), config.clone())
        .await
        .unwrap();
    assert!(!second.prepared().created_slot);
    assert_eq!(
        second.prepared().snapshot_resume,
        vec![(fx.table("acct"), vec!["20".to_owned()])]
    );
    let mut rest = MemoryChangeSink::default();
    assert_eq!(second.snapshot(&mut rest).await.unwrap(), 15);
    assert_eq!(ids(&rest.events), (21..=35).collect::<Vec<_>>());
    drop(second);

    let third = CdcReader::connect(&common::database_url(), config).await.unwrap();
    assert!(
        third.prepared().snapshot_tables.is_empty() && !third.snapshot_in_progress(),
        "a finished snapshot is not repeated"
    );
    drop(third);
    fx.cleanup().await;
}
