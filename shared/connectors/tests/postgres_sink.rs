//! `PostgresSink` against the local Postgres: upserts where only a later pane changes a row.

mod common;

use common::{pane, Count};
use shardflow_connectors::{PostgresRow, PostgresSink, PostgresSinkConfig};
use shardflow_stage::ResultSink;
use tokio_postgres::types::ToSql;

impl PostgresRow for Count {
    const TABLE: &'static str = "counts";
    const KEY_COLUMNS: &'static [&'static str] = &["key", "window_start"];
    const COLUMNS: &'static [&'static str] = &["count"];
    fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![&self.key, &self.window_start, &self.count]
    }
}

/// A fresh table of this test in its own schema (dropped first if an earlier run left it).
async fn table(name: &str) -> (tokio_postgres::Client, String) {
    let client = shardflow_testkit::postgres().await;
    let schema = format!("shardflow_connectors_{name}");
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
             CREATE TABLE {schema}.counts (
                 key text NOT NULL, window_start bigint NOT NULL, count bigint NOT NULL CHECK (count >= 0),
                 result_id text NOT NULL, pane_index bigint NOT NULL,
                 PRIMARY KEY (key, window_start));"
        ))
        .await
        .expect("create the test table");
    (client, format!("{schema}.counts"))
}

async fn rows(client: &tokio_postgres::Client, table: &str) -> Vec<(String, i64, i64, i64, String)> {
    client
        .query(
            &format!("SELECT key, window_start, count, pane_index, result_id FROM {table} ORDER BY key, window_start"),
            &[],
        )
        .await
        .expect("read the table")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

#[tokio::test]
async fn the_latest_pane_wins_and_redelivered_panes_change_nothing() {
    let (client, table) = table("latest_pane").await;
    let sink = PostgresSink::<Count>::new(
        shardflow_testkit::postgres().await,
        PostgresSinkConfig::for_row::<Count>().table(&table),
    );
    let s = 1_795_651_200_000;
    let first = [pane("a", s, 0, 1), pane("b", s, 0, 10)];
    let second = [
        pane("a", s, 1, 2),
        pane("b", s, 1, 11),
        pane("b", s, 2, 12),
        pane("a", s + 60_000, 0, 5),
    ];
    sink.emit(&first).await.expect("first");
    sink.emit(&second).await.expect("second");
    let after_second = rows(&client, &table).await;
    sink.emit(&first).await.expect("older batch redelivered");
    sink.emit(&second).await.expect("same batch redelivered");
    sink.emit(&[pane("b", s, 1, 11)]).await.expect("an older pane alone");

    let expected = vec![
        ("a".to_owned(), s, 2, 1, common::id_of("a", s, 1).to_hex()),
        (
            "a".to_owned(),
            s + 60_000,
            5,
            0,
            common::id_of("a", s + 60_000, 0).to_hex(),
        ),
        ("b".to_owned(), s, 12, 2, common::id_of("b", s, 2).to_hex()),
    ];
    assert_eq!(after_second, expected);
    assert_eq!(rows(&client, &table).await, expected, "redeliveries changed nothing");
}

#[tokio::test]
async fn a_failing_emit_writes_none_of_its_rows() {
    let (client, table) = table("atomic").await;
    let sink = PostgresSink::<Count>::new(
        shardflow_testkit::postgres().await,
        PostgresSinkConfig::for_row::<Count>().table(&table),
    );
    let s = 1_795_651_200_000;
    sink.emit(&[pane("a", s, 0, 1)]).await.expect("first");
    // The CHECK constraint refuses the third row: the first two must not be written either.
    let error = sink
        .emit(&[pane("a", s, 1, 2), pane("b", s, 0, 3), pane("c", s, 0, -1)])
        .await
        .expect_err("a refused row fails the emit");
    assert!(
        error.message.contains("check constraint"),
        "the database's message: {error}"
    );
    assert_eq!(
        rows(&client, &table).await,
        vec![("a".to_owned(), s, 1, 0, common::id_of("a", s, 0).to_hex())]
    );
    // The sink's connection is usable after the failure.
    sink.emit(&[pane("a", s, 1, 2)]).await.expect("after the failure");
    assert_eq!(rows(&client, &table).await[0].2, 2);
}

#[tokio::test]
async fn after_the_database_cuts_its_connection_the_sink_reconnects_and_writes() {
    let (client, table) = table("reconnect").await;
    let application = "shardflow_sink_reconnect_test";
    let url = format!("{} application_name={application}", shardflow_testkit::postgres_url());
    let sink = PostgresSink::<Count>::connect(&url, PostgresSinkConfig::for_row::<Count>().table(&table))
        .await
        .expect("connect");
    let s = 1_795_651_200_000;
    sink.emit(&[pane("a", s, 0, 1)]).await.expect("before the cut");

    // what a restart of the database does to the sink's session
    let cut: Vec<bool> = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&application],
        )
        .await
        .expect("terminate the sink's backend")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(cut, vec![true], "the sink's one session was terminated");

    // the emit that meets the dead connection may fail (its batch is retried); the next one
    // must run on a new connection
    let first = sink.emit(&[pane("a", s, 1, 2)]).await;
    if first.is_err() {
        sink.emit(&[pane("a", s, 1, 2)])
            .await
            .expect("the emit after a lost connection reconnects");
    }
    assert_eq!(
        rows(&client, &table).await,
        vec![("a".to_owned(), s, 2, 1, common::id_of("a", s, 1).to_hex())]
    );
}
