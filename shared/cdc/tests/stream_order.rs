//! Inserts, updates, deletes and a multi-row transaction stream out in commit order with
//! correct before/after images.

mod common;

use common::{int_col, poll_until, Fixture};
use shardflow_cdc::{CdcReader, ColumnValue, MemoryChangeSink, Op, ReplicaIdentityPolicy, SnapshotMode};

#[tokio::test(flavor = "current_thread")]
async fn changes_arrive_in_commit_order_with_full_before_and_after_images() {
    let fx = Fixture::new("order").await;
    let s = &fx.schema;
    fx.sql(&format!(
        "CREATE TABLE {s}.acct (id int PRIMARY KEY, name text, balance numeric(10,2), active bool, \
         opened timestamptz, big bigint)"
    ))
    .await;
    let mut config = fx.config(&["acct"]);
    config.replica_identity = ReplicaIdentityPolicy::SetFull;
    config.snapshot = SnapshotMode::Never;
    let mut reader = CdcReader::connect(&common::database_url(), config).await.unwrap();

    fx.sql(&format!(
        "INSERT INTO {s}.acct VALUES (1, 'ann', 10.00, true, '2024-05-01 12:00:00+00', 9000000000);
         INSERT INTO {s}.acct VALUES (2, 'bob', 20.00, false, NULL, NULL);
         UPDATE {s}.acct SET balance = 11.50 WHERE id = 1;
         BEGIN;
           INSERT INTO {s}.acct VALUES (3, 'cy', 30.00, true, NULL, NULL);
           UPDATE {s}.acct SET balance = balance - 5 WHERE id = 2;
           DELETE FROM {s}.acct WHERE id = 1;
         COMMIT;
         UPDATE {s}.acct SET name = 'cyd' WHERE id = 3;"
    ))
    .await;

    let mut sink = MemoryChangeSink::default();
    poll_until(&mut reader, &mut sink, |s| s.events.len() >= 7).await;
    let got: Vec<(Op, i64)> = sink
        .events
        .iter()
        .map(|e| (e.op, int_col(e, "id").expect("id column")))
        .collect();
    assert_eq!(
        got,
        vec![
            (Op::Create, 1),
            (Op::Create, 2),
            (Op::Update, 1),
            (Op::Create, 3),
            (Op::Update, 2),
            (Op::Delete, 1),
            (Op::Update, 3),
        ]
    );

    let e = &sink.events;
    let dec = |s: &str| ColumnValue::Decimal(s.to_owned());
    let after0 = e[0].after.as_ref().unwrap();
    assert_eq!(after0.get("balance"), Some(&dec("10.00")));
    assert_eq!(after0.get("active"), Some(&ColumnValue::Bool(true)));
    assert_eq!(
        after0.get("opened"),
        Some(&ColumnValue::ZonedTimestampMicros(1_714_564_800_000_000))
    );
    assert_eq!(after0.get("big"), Some(&ColumnValue::Int(9_000_000_000)));
    assert_eq!(e[1].after.as_ref().unwrap().get("opened"), Some(&ColumnValue::Null));
    // Update of id 1: full before image (REPLICA IDENTITY FULL) and the new after image.
    assert_eq!(e[2].before.as_ref().unwrap().get("balance"), Some(&dec("10.00")));
    assert_eq!(
        e[2].before.as_ref().unwrap().get("name"),
        Some(&ColumnValue::Text("ann".into()))
    );
    assert_eq!(e[2].after.as_ref().unwrap().get("balance"), Some(&dec("11.50")));
    assert_eq!(e[4].before.as_ref().unwrap().get("balance"), Some(&dec("20.00")));
    assert_eq!(e[4].after.as_ref().unwrap().get("balance"), Some(&dec("15.00")));
    // Delete of id 1 carries its last image.
    assert_eq!(e[5].after, None);
    assert_eq!(e[5].before.as_ref().unwrap().get("balance"), Some(&dec("11.50")));
    assert_eq!(
        e[6].before.as_ref().unwrap().get("name"),
        Some(&ColumnValue::Text("cy".into()))
    );
    assert_eq!(
        e[6].after.as_ref().unwrap().get("name"),
        Some(&ColumnValue::Text("cyd".into()))
    );

    // The multi-row transaction: one txId and commit LSN, changes in WAL order.
    let tx = &e[3..6];
    assert!(tx
        .iter()
        .all(|x| x.source.tx_id == tx[0].source.tx_id && x.source.commit_lsn == tx[0].source.commit_lsn));
    assert!(tx.windows(2).all(|w| w[0].source.lsn < w[1].source.lsn));
    // Separate transactions in commit order.
    assert!(e.windows(2).all(|w| w[0].source.commit_lsn <= w[1].source.commit_lsn));
    assert_eq!(e[3].source.table, fx.table("acct"));
    assert_eq!(e[3].key.get("id"), Some(&ColumnValue::Int(3)));
    assert_eq!(e[3].partition_key(), format!("{}.acct|3", fx.schema));
    let db: String = fx
        .client
        .query_one("SELECT current_database()::text", &[])
        .await
        .unwrap()
        .get(0);
    assert!(e.iter().all(|x| x.source.db == db));

    // Everything delivered was confirmed to Postgres, past the last commit.
    let last_commit = e[6].source.commit_lsn.0;
    assert!(fx.slot_confirmed().await > last_commit);
    assert_eq!(fx.slot_confirmed().await, reader.confirmed().0);
    drop(reader);
    fx.cleanup().await;
}

#[tokio::test(flavor = "current_thread")]
async fn default_replica_identity_warns_and_updates_have_no_before_image() {
    let fx = Fixture::new("ident").await;
    let s = &fx.schema;
    fx.sql(&format!("CREATE TABLE {s}.kv (k int PRIMARY KEY, v text)"))
        .await;
    let mut config = fx.config(&["kv"]);
    config.snapshot = SnapshotMode::Never;
    let mut reader = CdcReader::connect(&common::database_url(), config).await.unwrap();
    let warnings = &reader.prepared().warnings;
    assert!(warnings
        .iter()
        .any(|w| w.contains(&format!("{s}.kv")) && w.contains("REPLICA IDENTITY DEFAULT")));

    fx.sql(&format!(
        "INSERT INTO {s}.kv VALUES (1, 'a'); UPDATE {s}.kv SET v = 'b' WHERE k = 1; DELETE FROM {s}.kv WHERE k = 1;"
    ))
    .await;
    let mut sink = MemoryChangeSink::default();
    poll_until(&mut reader, &mut sink, |s| s.events.len() >= 3).await;
    let e = &sink.events;
    assert_eq!(e[1].op, Op::Update);
    assert_eq!(e[1].before, None);
    // The delete carries only the key columns.
    let before = e[2].before.as_ref().unwrap();
    assert_eq!(before.get("k"), Some(&ColumnValue::Int(1)));
    assert_eq!(before.get("v"), Some(&ColumnValue::Null));
    drop(reader);
    fx.cleanup().await;
}
