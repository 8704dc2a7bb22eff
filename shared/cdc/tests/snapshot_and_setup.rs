//! The initial snapshot emits existing rows as `op = r`; setup refuses what cannot work with
//! errors that say how to fix it.

mod common;

use common::{int_col, poll_until, Fixture};
use shardflow_cdc::{CdcError, CdcReader, ColumnValue, MemoryChangeSink, Op};

#[tokio::test(flavor = "current_thread")]
async fn snapshot_emits_existing_rows_as_read_events_then_streams_new_changes() {
    let fx = Fixture::new("snap").await;
    let s = &fx.schema;
    fx.sql(&format!(
        "CREATE TABLE {s}.p (id int PRIMARY KEY, name text, at timestamp);
         INSERT INTO {s}.p VALUES (1, 'a', '1970-01-01 00:00:01'), (2, 'b', NULL), (3, NULL, NULL);"
    ))
    .await;
    let mut reader = CdcReader::connect(&common::database_url(), fx.config(&["p"]))
        .await
        .unwrap();
    assert!(reader.prepared().created_slot);
    let mut sink = MemoryChangeSink::default();
    assert_eq!(reader.snapshot(&mut sink).await.unwrap(), 3);
    assert!(sink.flushes >= 1, "the snapshot is flushed before streaming starts");
    let mut rows: Vec<_> = sink.events.iter().collect();
    rows.sort_by_key(|e| int_col(e, "id"));
    assert!(rows
        .iter()
        .all(|e| e.op == Op::Read && e.before.is_none() && e.source.snapshot));
    assert_eq!(
        rows.iter().map(|e| int_col(e, "id").unwrap()).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let first = rows[0].after.as_ref().unwrap();
    assert_eq!(first.get("name"), Some(&ColumnValue::Text("a".into())));
    assert_eq!(first.get("at"), Some(&ColumnValue::TimestampMicros(1_000_000)));
    assert_eq!(rows[2].after.as_ref().unwrap().get("name"), Some(&ColumnValue::Null));
    assert_eq!(rows[0].key.get("id"), Some(&ColumnValue::Int(1)));
    let json: serde_json::Value = serde_json::from_str(&rows[0].to_json().unwrap()).unwrap();
    assert_eq!(json["op"], "r");
    assert_eq!(json["source"]["snapshot"], "true");

    fx.sql(&format!("INSERT INTO {s}.p VALUES (4, 'd', NULL)")).await;
    poll_until(&mut reader, &mut sink, |s| s.events.len() >= 4).await;
    assert_eq!(
        (sink.events[3].op, int_col(&sink.events[3], "id")),
        (Op::Create, Some(4))
    );
    drop(reader);

    // Restarting on the existing slot and publication does not snapshot again.
    let mut again = CdcReader::connect(&common::database_url(), fx.config(&["p"]))
        .await
        .unwrap();
    assert!(!again.prepared().created_slot && again.prepared().snapshot_tables.is_empty());
    assert_eq!(again.snapshot(&mut MemoryChangeSink::default()).await.unwrap(), 0);
    drop(again);
    fx.cleanup().await;
}

#[tokio::test(flavor = "current_thread")]
async fn table_added_to_an_existing_publication_is_snapshotted_alone() {
    let fx = Fixture::new("addtable").await;
    let s = &fx.schema;
    fx.sql(&format!(
        "CREATE TABLE {s}.a (id int PRIMARY KEY); CREATE TABLE {s}.b (id int PRIMARY KEY);
         INSERT INTO {s}.a VALUES (1); INSERT INTO {s}.b VALUES (10), (11);"
    ))
    .await;
    let mut reader = CdcReader::connect(&common::database_url(), fx.config(&["a"]))
        .await
        .unwrap();
    assert_eq!(reader.snapshot(&mut MemoryChangeSink::default()).await.unwrap(), 1);
    drop(reader);
    let mut reader = CdcReader::connect(&common::database_url(), fx.config(&["a", "b"]))
        .await
        .unwrap();
    assert_eq!(reader.prepared().snapshot_tables, vec![fx.table("b")]);
    let mut sink = MemoryChangeSink::default();
    assert_eq!(reader.snapshot(&mut sink).await.unwrap(), 2);
    assert!(sink.events.iter().all(|e| e.source.table == fx.table("b")));
    drop(reader);
    fx.cleanup().await;
}

#[tokio::test(flavor = "current_thread")]
async fn setup_errors_name_the_problem_and_the_fix() {
    let fx = Fixture::new("errors").await;
    let s = &fx.schema;
    fx.sql(&format!(
        "CREATE TABLE {s}.nopk (v int); CREATE TABLE {s}.ok (id int PRIMARY KEY)"
    ))
    .await;
    let url = common::database_url();

    let err = CdcReader::connect(&url, fx.config(&["nopk"]))
        .await
        .err()
        .expect("table without a key accepted");
    assert!(
        matches!(err, CdcError::NoPrimaryKey(ref t) if *t == fx.table("nopk")),
        "{err}"
    );
    assert!(err.to_string().contains(&format!("{s}.nopk")));

    let mut config = fx.config(&["ok"]);
    config.create_publication = false;
    let err = CdcReader::connect(&url, config.clone())
        .await
        .err()
        .expect("missing publication accepted");
    assert!(matches!(err, CdcError::PublicationMissing { .. }), "{err}");
    assert!(err.to_string().contains("--create-publication"));

    fx.sql(&format!("CREATE PUBLICATION {} FOR TABLE {s}.nopk", fx.publication))
        .await;
    let err = CdcReader::connect(&url, config.clone())
        .await
        .err()
        .expect("publication without the table accepted");
    assert!(matches!(err, CdcError::PublicationMissesTables { .. }), "{err}");
    assert!(err.to_string().contains(&format!("\"{s}\".\"ok\"")));

    fx.sql(&format!("ALTER PUBLICATION {} ADD TABLE {s}.ok", fx.publication))
        .await;
    config.create_slot = false;
    let err = CdcReader::connect(&url, config)
        .await
        .err()
        .expect("missing slot accepted");
    assert!(matches!(err, CdcError::SlotMissing { .. }), "{err}");
    assert!(err.to_string().contains("--create-slot"));

    let missing = CdcReader::connect(&url, fx.config(&["absent"]))
        .await
        .err()
        .expect("missing table accepted");
    assert!(matches!(missing, CdcError::TableMissing(_)), "{missing}");
    fx.cleanup().await;
}

#[test]
fn wal_level_error_says_how_to_fix_it() {
    let msg = CdcError::WalLevelNotLogical {
        actual: "replica".into(),
    }
    .to_string();
    assert!(msg.contains("ALTER SYSTEM SET wal_level = logical"));
    assert!(msg.contains("restart"));
    assert!(msg.contains("scripts/postgres-logical"));
}
