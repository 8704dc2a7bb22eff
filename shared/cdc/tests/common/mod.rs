//! Shared setup of the CDC integration tests: a connection to the local Postgres, and per-test
//! schemas, slots and publications that are dropped before and after each test.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use shardflow_cdc::{CdcConfig, CdcReader, ChangeEvent, ChangeSink, TableName};
use tokio_postgres::{Client, NoTls};

/// The database the tests use: `SHARDFLOW_TEST_DATABASE_URL`, or the machine's local Postgres.
pub fn database_url() -> String {
    std::env::var("SHARDFLOW_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned())
}

/// Connects for test setup and checks that logical decoding is available.
pub async fn admin() -> Client {
    let (client, connection) = tokio_postgres::connect(&database_url(), NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", database_url()));
    tokio::spawn(connection);
    let wal_level: String = client.query_one("SHOW wal_level", &[]).await.unwrap().get(0);
    assert_eq!(
        wal_level, "logical",
        "the CDC integration tests need wal_level = logical: run scripts/postgres-logical first"
    );
    client
}

/// One test's database objects: schema, slot and publication named after the test.
pub struct Fixture {
    pub client: Client,
    pub schema: String,
    pub slot: String,
    pub publication: String,
}

impl Fixture {
    /// Drops leftovers of an earlier run of the test `name` and creates its empty schema.
    pub async fn new(name: &str) -> Fixture {
        let client = admin().await;
        let fixture = Fixture {
            client,
            schema: format!("cdc_it_{name}"),
            slot: format!("cdc_it_{name}"),
            publication: format!("cdc_it_{name}"),
        };
        fixture.drop_objects().await;
        fixture
            .client
            .batch_execute(&format!("CREATE SCHEMA {}", fixture.schema))
            .await
            .unwrap();
        fixture
    }

    /// A table of this test's schema.
    pub fn table(&self, name: &str) -> TableName {
        TableName::new(&self.schema, name)
    }

    /// A reader configuration that creates the slot and publication for `tables`.
    pub fn config(&self, tables: &[&str]) -> CdcConfig {
        let mut config = CdcConfig::new(
            &self.slot,
            &self.publication,
            tables.iter().map(|t| self.table(t)).collect(),
        );
        config.create_slot = true;
        config.create_publication = true;
        config
    }

    /// Runs SQL as the admin connection.
    pub async fn sql(&self, sql: &str) {
        self.client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The slot's confirmed position as Postgres reports it.
    pub async fn slot_confirmed(&self) -> u64 {
        let lsn: tokio_postgres::types::PgLsn = self
            .client
            .query_one(
                "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.slot],
            )
            .await
            .unwrap()
            .get(0);
        u64::from(lsn)
    }

    async fn drop_objects(&self) {
        // A reader of a failed run may still hold the slot for a moment.
        for _ in 0..50 {
            let r = self
                .client
                .execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                    &[&self.slot],
                )
                .await;
            if r.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.sql(&format!("DROP PUBLICATION IF EXISTS {}", self.publication))
            .await;
        self.sql(&format!(
            "DO $$ BEGIN IF to_regclass('public.shardflow_cdc_signal') IS NOT NULL THEN \
             DELETE FROM public.shardflow_cdc_signal WHERE slot = '{}'; END IF; END $$",
            self.slot
        ))
        .await;
        self.sql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
            .await;
    }

    /// Drops the slot, publication and schema.
    pub async fn cleanup(self) {
        self.drop_objects().await;
    }
}

/// Polls `reader` into `sink` until `done(sink)` holds; panics after 30 s.
pub async fn poll_until<S: ChangeSink>(reader: &mut CdcReader, sink: &mut S, done: impl Fn(&S) -> bool) {
    let start = Instant::now();
    while !done(sink) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for changes"
        );
        let outcome = reader.poll(sink).await.unwrap();
        if outcome.events == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The integer value of column `col` in the event's after (or else before) image.
pub fn int_col(event: &ChangeEvent, col: &str) -> Option<i64> {
    let image = event.after.as_ref().or(event.before.as_ref())?;
    match image.get(col)? {
        shardflow_cdc::ColumnValue::Int(i) => Some(*i),
        _ => None,
    }
}
