//! The initial snapshot: existing rows of a table as `op = r` events.
//!
//! The SQL interface to logical decoding cannot export the slot's snapshot, so the snapshot is a
//! separate `REPEATABLE READ` transaction taken *after* the slot and publication exist. Every
//! change committed after the slot's start is therefore in the stream, and every change committed
//! before the snapshot is in the snapshot: nothing is lost, but a change committed between the two
//! appears twice (once folded into an `r` row, once as its own event, streamed after the
//! snapshot). Consumers keep the latest image per (table, primary key), which the stream's commit
//! order makes correct once it has caught up. Which tables to snapshot is decided from what setup
//! created, so a process that dies after creating the slot but before the snapshot is flushed must
//! be restarted with `--snapshot always`. (A fully consistent snapshot would need
//! DBLog-style watermarks or the replication protocol's `CREATE_REPLICATION_SLOT … USE_SNAPSHOT`.)

use tokio_postgres::types::PgLsn;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::error::CdcError;
use crate::event::{ChangeEvent, Op, Source};
use crate::lsn::Lsn;
use crate::setup::TableInfo;
use crate::sink::ChangeSink;
use crate::table::quote_ident;
use crate::value::{ColumnValue, Row};

/// Rows fetched per round trip.
const FETCH_ROWS: usize = 5_000;

/// Sends every row of `tables` to `sink` as `op = r` events and flushes it; returns the count.
/// `now_ms` is the events' processing and source time.
pub async fn snapshot_tables<S: ChangeSink>(
    client: &Client,
    database: &str,
    tables: &[TableInfo],
    sink: &mut S,
    now_ms: i64,
) -> Result<u64, CdcError> {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(CdcError::pg("starting the snapshot transaction"))?;
    let result = snapshot_in_transaction(client, database, tables, sink, now_ms).await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    client
        .batch_execute(end)
        .await
        .map_err(CdcError::pg("ending the snapshot transaction"))?;
    let count = result?;
    sink.flush().await?;
    Ok(count)
}

async fn snapshot_in_transaction<S: ChangeSink>(
    client: &Client,
    database: &str,
    tables: &[TableInfo],
    sink: &mut S,
    now_ms: i64,
) -> Result<u64, CdcError> {
    let lsn: PgLsn = client
        .query_one("SELECT pg_current_wal_lsn()", &[])
        .await
        .map_err(CdcError::pg("reading the snapshot LSN"))?
        .get(0);
    let lsn = Lsn(u64::from(lsn));
    let mut count = 0u64;
    let mut batch = Vec::with_capacity(FETCH_ROWS);
    for table in tables {
        let columns = table
            .columns
            .iter()
            .map(|(c, _)| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        client
            .batch_execute(&format!(
                "DECLARE shardflow_snapshot NO SCROLL CURSOR FOR SELECT {columns} FROM {}",
                table.name.quoted()
            ))
            .await
            .map_err(CdcError::pg("opening the snapshot cursor"))?;
        loop {
            let messages = client
                .simple_query(&format!("FETCH FORWARD {FETCH_ROWS} FROM shardflow_snapshot"))
                .await
                .map_err(CdcError::pg("fetching snapshot rows"))?;
            batch.clear();
            for message in &messages {
                let SimpleQueryMessage::Row(row) = message else {
                    continue;
                };
                let mut values = Vec::with_capacity(table.columns.len());
                for (i, (name, type_oid)) in table.columns.iter().enumerate() {
                    let value = match row.try_get(i).map_err(CdcError::pg("reading a snapshot column"))? {
                        Some(text) => ColumnValue::from_text(*type_oid, text),
                        None => ColumnValue::Null,
                    };
                    values.push((name.clone(), value));
                }
                let after = Row(values);
                let key = Row(table
                    .primary_key
                    .iter()
                    .map(|k| (k.clone(), after.get(k).cloned().unwrap_or(ColumnValue::Null)))
                    .collect());
                batch.push(ChangeEvent {
                    op: Op::Read,
                    before: None,
                    after: Some(after),
                    key,
                    source: Source {
                        db: database.to_owned(),
                        table: table.name.clone(),
                        lsn,
                        commit_lsn: lsn,
                        tx_id: None,
                        ts_ms: now_ms,
                        snapshot: true,
                    },
                    ts_ms: now_ms,
                });
            }
            if batch.is_empty() {
                break;
            }
            count += batch.len() as u64;
            sink.send(&batch).await?;
        }
        client
            .batch_execute("CLOSE shardflow_snapshot")
            .await
            .map_err(CdcError::pg("closing the snapshot cursor"))?;
        tracing::info!(table = %table.name, rows = count, "snapshot done");
    }
    Ok(count)
}
