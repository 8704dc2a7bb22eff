//! `shardflow gen shop --database-url`: the shop's workload executed against Postgres, each
//! generated transaction as one database transaction in commit order (statements from
//! `shardflow_shop::sql`), so that `shardflow cdc --format shop` on those tables yields the
//! workload's changes as the shop pipelines read them.
//!
//! The initial customers (the generator's snapshot, `op = r`) become inserts, batched
//! [`SNAPSHOT_ROWS_PER_TRANSACTION`] to a transaction. The statements of one transaction are
//! pipelined on the connection (sent without waiting for each reply, executed in order).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::try_join_all;
use shardflow_schemas::{ChangeEvent, Op};
use shardflow_shop::sql::{statement, SqlError, SqlValue, SCHEMA_SQL};
use shardflow_shop::{ShopConfig, ShopGenerator};
use tokio::time::Instant;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::output::Pacer;

/// Initial customers inserted per transaction.
pub const SNAPSHOT_ROWS_PER_TRANSACTION: usize = 1_000;

/// Loading failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A generated change has no SQL form (a generator bug).
    #[error("a generated change has no SQL form: {0}")]
    Sql(#[from] SqlError),
    /// Postgres refused a statement.
    #[error("{context}: {source}")]
    Postgres {
        /// What the loader was doing.
        context: &'static str,
        /// The driver's error (with the server's message).
        #[source]
        source: tokio_postgres::Error,
    },
}

fn pg(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> LoadError {
    move |source| LoadError::Postgres { context, source }
}

/// What a load did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadReport {
    /// Changes executed.
    pub changes: u64,
    /// Database transactions committed.
    pub transactions: u64,
    /// Seconds from the first statement to the last commit.
    pub secs: f64,
}

impl LoadReport {
    /// Changes per second over the load.
    pub fn changes_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.changes as f64 / self.secs
        } else {
            0.0
        }
    }
}

/// Quotes an SQL identifier.
fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Points the session at `schema` (creating it if missing) and, if `create_tables`, creates the
/// shop's tables there (`shared/shop/sql/schema.sql`; fails if they exist). The session commits
/// with `synchronous_commit = off`: a generator needs no durability of its own commits, and the
/// WAL writer flushes them within `wal_writer_delay` (logical decoding reads flushed WAL), so
/// the load is not bound by one WAL flush per transaction.
pub async fn prepare_schema(client: &Client, schema: &str, create_tables: bool) -> Result<(), LoadError> {
    let schema = quote_ident(schema);
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}; SET synchronous_commit = off"
        ))
        .await
        .map_err(pg("selecting the shop's schema"))?;
    if create_tables {
        client
            .batch_execute(SCHEMA_SQL)
            .await
            .map_err(pg("creating the shop's tables"))?;
    }
    Ok(())
}

fn millis_to_time(ms: i64) -> SystemTime {
    let magnitude = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

fn param(value: SqlValue) -> Box<dyn ToSql + Sync + Send> {
    match value {
        SqlValue::BigInt(v) => Box::new(v),
        SqlValue::Int(v) => Box::new(v),
        SqlValue::Text(v) => Box::new(v),
        SqlValue::Timestamp(v) => Box::new(v.map(millis_to_time)),
    }
}

/// Executes one database transaction of `changes` (statements prepared once per text).
async fn execute(
    client: &mut Client,
    prepared: &mut HashMap<String, tokio_postgres::Statement>,
    changes: &[ChangeEvent],
) -> Result<(), LoadError> {
    let mut statements = Vec::with_capacity(changes.len());
    for change in changes {
        let s = statement(change)?;
        if !prepared.contains_key(&s.sql) {
            let p = client.prepare(&s.sql).await.map_err(pg("preparing a statement"))?;
            prepared.insert(s.sql.clone(), p);
        }
        let params: Vec<_> = s.params.into_iter().map(param).collect();
        statements.push((s.sql, params));
    }
    let tx = client.transaction().await.map_err(pg("beginning a transaction"))?;
    let executions = statements.iter().filter_map(|(sql, params)| {
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        prepared.get(sql).map(|p| {
            let tx = &tx;
            async move { tx.execute(p, &refs).await }
        })
    });
    try_join_all(executions)
        .await
        .map_err(pg("executing a generated change"))?;
    tx.commit().await.map_err(pg("committing a generated transaction"))
}

/// Counts of a load in progress.
struct Loader {
    prepared: HashMap<String, tokio_postgres::Statement>,
    pacer: Pacer,
    changes: u64,
    transactions: u64,
}

impl Loader {
    async fn commit(&mut self, client: &mut Client, changes: &[ChangeEvent]) -> Result<(), LoadError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.pacer.wait_for(self.changes).await;
        execute(client, &mut self.prepared, changes).await?;
        self.changes += changes.len() as u64;
        self.transactions += 1;
        Ok(())
    }
}

/// Executes the workload `config` describes against `client` (whose `search_path` selects the
/// shop's tables, see [`prepare_schema`]) at `rate` changes/s (0: unpaced); `progress` gets the
/// number of changes executed after each transaction.
pub async fn load_shop(
    client: &mut Client,
    config: ShopConfig,
    rate: f64,
    mut progress: impl FnMut(u64),
) -> Result<LoadReport, LoadError> {
    let mut generator = ShopGenerator::in_commit_order(config);
    let mut loader = Loader {
        prepared: HashMap::new(),
        pacer: Pacer::new(rate),
        changes: 0,
        transactions: 0,
    };
    let started = Instant::now();
    let mut snapshot: Vec<ChangeEvent> = Vec::new();
    while let Some(tx) = generator.next_transaction() {
        if tx.iter().all(|e| e.op == Op::Read as i32) {
            snapshot.extend(tx);
            if snapshot.len() >= SNAPSHOT_ROWS_PER_TRANSACTION {
                loader.commit(client, &std::mem::take(&mut snapshot)).await?;
            }
            continue;
        }
        loader.commit(client, &std::mem::take(&mut snapshot)).await?;
        loader.commit(client, &tx).await?;
        progress(loader.changes);
    }
    loader.commit(client, &snapshot).await?;
    progress(loader.changes);
    Ok(LoadReport {
        changes: loader.changes,
        transactions: loader.transactions,
        secs: started.elapsed().as_secs_f64(),
    })
}
