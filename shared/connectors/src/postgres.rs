//! Results upserted into a Postgres table.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};
use tracing::{info_span, Instrument};

use shardflow_engine::Output;
use shardflow_stage::{ResultSink, SinkError};

use crate::error::{postgres_error, sink_error};

/// A result type that is one row of a Postgres table.
///
/// The table needs, besides [`PostgresRow::KEY_COLUMNS`] and [`PostgresRow::COLUMNS`], the
/// columns `result_id text not null` (the id of the result that wrote the row, 32 hex digits) and
/// `pane_index bigint not null` (its pane, 0 for results without a window), and a primary key or
/// unique constraint on exactly the key columns. For example:
///
/// ```sql
/// CREATE TABLE revenue (
///     category text, window_start bigint, total bigint,
///     result_id text NOT NULL, pane_index bigint NOT NULL,
///     PRIMARY KEY (category, window_start));
/// ```
pub trait PostgresRow {
    /// The default table (possibly `schema.table`); [`PostgresSinkConfig::table`] may override it.
    const TABLE: &'static str;
    /// The columns that identify a row (the `ON CONFLICT` target): for a window result, its key
    /// and window, so that every pane of a window lands on the same row.
    const KEY_COLUMNS: &'static [&'static str];
    /// The other columns, updated when a later pane arrives.
    const COLUMNS: &'static [&'static str];
    /// The values of [`PostgresRow::KEY_COLUMNS`] then [`PostgresRow::COLUMNS`], in order.
    fn values(&self) -> Vec<&(dyn ToSql + Sync)>;
}

/// Where a [`PostgresSink`] writes.
#[derive(Debug, Clone)]
pub struct PostgresSinkConfig {
    /// The sink's name in errors and spans.
    pub name: String,
    /// The table, `table` or `schema.table`.
    pub table: String,
}

impl PostgresSinkConfig {
    /// Writing to `R`'s own table.
    pub fn for_row<R: PostgresRow>() -> Self {
        PostgresSinkConfig {
            name: "postgres".to_owned(),
            table: R::TABLE.to_owned(),
        }
    }

    /// The same configuration writing to `table` instead.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }
}

/// Upserts each result as one row, all the rows of an emit in one transaction:
///
/// ```sql
/// INSERT INTO <table> AS existing (<keys>, <columns>, result_id, pane_index) VALUES (...)
/// ON CONFLICT (<keys>) DO UPDATE SET <columns> = EXCLUDED.<columns>, ...
/// WHERE existing.pane_index < EXCLUDED.pane_index
/// ```
///
/// Idempotence contract: a row changes only for a strictly later pane of its window, so writing a
/// result again (a redelivered batch) changes nothing, a redelivered *earlier* pane after a later
/// one changes nothing, and the table ends with each window's latest pane whatever the order of
/// deliveries. An emit is atomic: after a failure none of its rows were written. Results without
/// a window all have pane index 0, so the first one written for a key stays: key such rows by
/// something unique to the result.
///
/// Connection loss (a database restart, a failover, an idle connection cut): a sink made by
/// [`PostgresSink::connect`] opens a new connection when a call finds its connection closed, so
/// the emit during which the connection drops fails (and its batch is retried) and the next one
/// runs on a new connection. A sink made by [`PostgresSink::new`] from a client cannot reconnect.
pub struct PostgresSink<Out> {
    client: Mutex<Client>,
    /// The connection string, for reconnecting (`None`: made from a client).
    url: Option<String>,
    /// A call failed because the connection closed: the next call reconnects (the client may
    /// not report itself closed yet when its connection task has not run since).
    lost: AtomicBool,
    config: PostgresSinkConfig,
    statement: String,
    _out: std::marker::PhantomData<fn(&Out)>,
}

impl<Out: PostgresRow> PostgresSink<Out> {
    /// A sink writing through `client` as `config` says.
    pub fn new(client: Client, config: PostgresSinkConfig) -> Self {
        let statement = upsert_statement(&config.table, Out::KEY_COLUMNS, Out::COLUMNS);
        PostgresSink {
            client: Mutex::new(client),
            url: None,
            lost: AtomicBool::new(false),
            config,
            statement,
            _out: std::marker::PhantomData,
        }
    }

    /// Connects to `url` (a libpq-style connection string, no TLS) and spawns the connection's
    /// task on the current tokio runtime.
    /// It reconnects to `url` when it finds its connection closed.
    pub async fn connect(url: &str, config: PostgresSinkConfig) -> Result<Self, SinkError> {
        let client = open(url, &config.name).await?;
        let mut sink = PostgresSink::new(client, config);
        sink.url = Some(url.to_owned());
        Ok(sink)
    }

    /// The sink's connection, opened again first if it is closed and the sink knows its URL.
    async fn live_client(&self) -> Result<MutexGuard<'_, Client>, SinkError> {
        let mut client = self.client.lock().await;
        let closed = client.is_closed() || self.lost.swap(false, Ordering::Relaxed);
        if let (true, Some(url)) = (closed, &self.url) {
            *client = open(url, &self.config.name).await?;
            tracing::warn!(sink = %self.config.name, "the Postgres connection was closed: reconnected");
        }
        Ok(client)
    }

    /// Runs `sql` (one or more statements, no parameters) on the sink's connection: DDL a stage
    /// runs at start, such as `CREATE TABLE IF NOT EXISTS`.
    pub async fn batch_execute(&self, sql: &str) -> Result<(), SinkError> {
        self.live_client()
            .await?
            .batch_execute(sql)
            .await
            .map_err(|e| self.failed("running the setup statements", e))
    }

    /// The sink error for `e` while `what`; remembers a lost connection for the next call: closed,
    /// or ended by the server (SQLSTATE class 57P, operator intervention such as a shutdown, or
    /// class 08, connection exception).
    fn failed(&self, what: &str, e: tokio_postgres::Error) -> SinkError {
        let ended_by_server = e
            .code()
            .is_some_and(|c| c.code().starts_with("57P") || c.code().starts_with("08"));
        if e.is_closed() || ended_by_server {
            self.lost.store(true, Ordering::Relaxed);
        }
        postgres_error(&self.config.name, what, e)
    }

    /// The upsert statement the sink runs per row.
    pub fn statement(&self) -> &str {
        &self.statement
    }
}

/// A connection to `url` (no TLS), its connection task spawned on the current tokio runtime.
async fn open(url: &str, sink: &str) -> Result<Client, SinkError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| postgres_error(sink, "connecting", e))?;
    let sink = sink.to_owned();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!(sink, error = %e, "the Postgres sink's connection failed");
        }
    });
    Ok(client)
}

/// `name` as a quoted SQL identifier; `schema.table` quotes each part.
pub fn quote_identifier(name: &str) -> String {
    name.split('.')
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

fn upsert_statement(table: &str, keys: &[&str], columns: &[&str]) -> String {
    let all: Vec<String> = keys
        .iter()
        .chain(columns)
        .map(|c| quote_identifier(c))
        .chain(["result_id".to_owned(), "pane_index".to_owned()])
        .collect();
    let placeholders: Vec<String> = (1..=all.len()).map(|i| format!("${i}")).collect();
    let updates: Vec<String> = columns
        .iter()
        .map(|c| quote_identifier(c))
        .chain(["result_id".to_owned(), "pane_index".to_owned()])
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    format!(
        "INSERT INTO {} AS existing ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {} \
         WHERE existing.pane_index < EXCLUDED.pane_index",
        quote_identifier(table),
        all.join(", "),
        placeholders.join(", "),
        keys.iter().map(|c| quote_identifier(c)).collect::<Vec<_>>().join(", "),
        updates.join(", "),
    )
}

impl<Out: PostgresRow + Send + Sync> ResultSink<Out> for PostgresSink<Out> {
    async fn emit(&self, outputs: &[Output<Out>]) -> Result<(), SinkError> {
        let name = &self.config.name;
        let span = info_span!("postgres_emit", sink = %name, table = %self.config.table, results = outputs.len());
        async {
            if outputs.is_empty() {
                return Ok(());
            }
            let mut client = self.live_client().await?;
            let transaction = client.transaction().await.map_err(|e| self.failed("BEGIN", e))?;
            let statement = transaction
                .prepare(&self.statement)
                .await
                .map_err(|e| self.failed(&format!("preparing the upsert into {}", self.config.table), e))?;
            let ids: Vec<(String, i64)> = outputs
                .iter()
                .map(|o| (o.id.to_hex(), i64::from(o.pane.map(|(_, p)| p.index).unwrap_or(0))))
                .collect();
            let expected = Out::KEY_COLUMNS.len() + Out::COLUMNS.len();
            let mut params = Vec::with_capacity(outputs.len());
            for (output, (id, pane)) in outputs.iter().zip(&ids) {
                let mut values = output.value.values();
                if values.len() != expected {
                    return Err(sink_error(
                        name,
                        "a row's values do not match its columns",
                        format!("{} values for {expected} columns", values.len()),
                    ));
                }
                values.push(id);
                values.push(pane);
                params.push(values);
            }
            // All executes are sent before the first answer is awaited (tokio-postgres pipelines
            // them), in order, inside the one transaction.
            futures_util::future::try_join_all(params.iter().map(|p| transaction.execute(&statement, p)))
                .await
                .map_err(|e| self.failed(&format!("upserting into {}", self.config.table), e))?;
            transaction.commit().await.map_err(|e| self.failed("COMMIT", e))
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upsert_updates_only_for_a_later_pane_and_quotes_identifiers() {
        let sql = upsert_statement("app.revenue", &["category", "window_start"], &["total"]);
        assert_eq!(
            sql,
            "INSERT INTO \"app\".\"revenue\" AS existing (\"category\", \"window_start\", \"total\", result_id, pane_index) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (\"category\", \"window_start\") DO UPDATE SET \
             \"total\" = EXCLUDED.\"total\", result_id = EXCLUDED.result_id, pane_index = EXCLUDED.pane_index \
             WHERE existing.pane_index < EXCLUDED.pane_index"
        );
    }
}
