//! The initial snapshot, the SQL side: existing rows of a table as `op = r` events, read in
//! primary-key chunks between watermarks written to a signal table, so that the snapshot
//! interleaves with the stream without a window of duplicates or stale rows (the protocol and
//! why it is consistent: [`crate::watermark`]).
//!
//! Why watermarks: the SQL interface to logical decoding cannot export the slot's snapshot (only
//! the replication protocol's `CREATE_REPLICATION_SLOT … USE_SNAPSHOT` can), so a snapshot taken
//! in a separate transaction would overlap the stream by the changes committed between the slot's
//! start and the snapshot. Watermarks make each chunk consistent with the stream position it is
//! emitted at instead, need no pause of the writers, and let a snapshot run (and be resumed)
//! chunk by chunk on a live table.
//!
//! The signal table (default `public.shardflow_cdc_signal`, created if missing and added to the
//! publication) has one row per (slot, table): `watermark` is rewritten twice per chunk, and after
//! the sink acknowledged a chunk and the slot was confirmed past it, `progress_key` (the text of
//! the chunk's last key) and `done` record how far the snapshot got. A reader restarted with
//! `--snapshot initial` resumes an unfinished snapshot after `progress_key`, repeating at most
//! one chunk (at-least-once).

use std::time::{Duration, Instant};

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::error::CdcError;
use crate::table::{quote_ident, TableInfo, TableName};
use crate::value::{ColumnValue, Row};
use crate::watermark::{SLOT_COLUMN, WATERMARK_COLUMN};

/// The signal table used unless configured otherwise.
pub fn default_signal_table() -> TableName {
    TableName::new("public", "shardflow_cdc_signal")
}

/// Quotes a string as an SQL literal (the session has `standard_conforming_strings = on`).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// How far the snapshot of one table got, as the signal table records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The table (`schema.table`).
    pub table: String,
    /// Text of the key of the last row delivered and confirmed (`None`: none yet).
    pub progress_key: Option<Vec<String>>,
    /// Whether every row was delivered.
    pub done: bool,
}

/// Whether `table` exists.
pub async fn table_exists(client: &Client, table: &TableName) -> Result<bool, CdcError> {
    Ok(client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table.quoted()])
        .await
        .map_err(CdcError::pg("looking up a table"))?
        .get(0))
}

/// Creates the signal table if it does not exist (tolerating a concurrent creation by another
/// reader, which `CREATE TABLE IF NOT EXISTS` alone does not).
pub async fn ensure_signal_table(client: &Client, signal: &TableName) -> Result<(), CdcError> {
    if table_exists(client, signal).await? {
        return Ok(());
    }
    let created = client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} (
                 {SLOT_COLUMN} text NOT NULL,
                 table_name text NOT NULL,
                 {WATERMARK_COLUMN} text,
                 progress_key text[],
                 done boolean NOT NULL DEFAULT false,
                 updated_at timestamptz NOT NULL DEFAULT now(),
                 PRIMARY KEY ({SLOT_COLUMN}, table_name))",
            signal.quoted()
        ))
        .await;
    match created {
        Err(_) if table_exists(client, signal).await? => Ok(()),
        other => other.map_err(CdcError::pg("creating the snapshot signal table")),
    }
}

/// The snapshot progress recorded for `slot`.
pub async fn read_progress(client: &Client, signal: &TableName, slot: &str) -> Result<Vec<Progress>, CdcError> {
    Ok(client
        .query(
            &format!(
                "SELECT table_name, progress_key, done FROM {} WHERE {SLOT_COLUMN} = $1",
                signal.quoted()
            ),
            &[&slot],
        )
        .await
        .map_err(CdcError::pg("reading the snapshot progress"))?
        .iter()
        .map(|r| Progress {
            table: r.get(0),
            progress_key: r.get(1),
            done: r.get(2),
        })
        .collect())
}

/// Records that the snapshot of `table` delivered every row up to the key `progress_key`
/// (`None`: nothing yet) and whether it is `done`. Call only once the slot is confirmed past
/// those rows.
pub async fn save_progress(
    client: &Client,
    signal: &TableName,
    slot: &str,
    table: &TableName,
    progress_key: Option<&[String]>,
    done: bool,
) -> Result<(), CdcError> {
    client
        .execute(
            &format!(
                "INSERT INTO {} ({SLOT_COLUMN}, table_name, progress_key, done) VALUES ($1, $2, $3, $4)
                 ON CONFLICT ({SLOT_COLUMN}, table_name) DO UPDATE
                 SET progress_key = EXCLUDED.progress_key, done = EXCLUDED.done, updated_at = now()",
                signal.quoted()
            ),
            &[&slot, &table.to_string(), &progress_key, &done],
        )
        .await
        .map_err(CdcError::pg("recording the snapshot progress"))?;
    Ok(())
}

/// Commits watermark `id` for (`slot`, `table`): an upsert that appears in the stream.
pub async fn write_watermark(
    client: &Client,
    signal: &TableName,
    slot: &str,
    table: &TableName,
    id: &str,
) -> Result<(), CdcError> {
    client
        .execute(
            &format!(
                "INSERT INTO {} ({SLOT_COLUMN}, table_name, {WATERMARK_COLUMN}) VALUES ($1, $2, $3)
                 ON CONFLICT ({SLOT_COLUMN}, table_name) DO UPDATE
                 SET {WATERMARK_COLUMN} = EXCLUDED.{WATERMARK_COLUMN}, updated_at = now()",
                signal.quoted()
            ),
            &[&slot, &table.to_string(), &id],
        )
        .await
        .map_err(CdcError::pg("writing a snapshot watermark"))?;
    Ok(())
}

/// A fresh transaction id: every transaction that committed before this call has a smaller one.
pub async fn fresh_xid(client: &Client) -> Result<u64, CdcError> {
    let text: String = client
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .await
        .map_err(CdcError::pg("taking a transaction id"))?
        .get(0);
    text.parse()
        .map_err(|_| CdcError::Protocol(format!("pg_current_xact_id() returned {text:?}")))
}

/// One selected chunk: its rows in key order and the text of the last row's key.
#[derive(Debug, Clone, Default)]
pub struct SelectedChunk {
    /// Row images, in primary-key order.
    pub rows: Vec<Row>,
    /// The text of the last row's key columns (the next chunk starts after it).
    pub last_key: Option<Vec<String>>,
}

/// Selects up to `limit` rows of `table` after the key `after` (text of the key columns), in key
/// order, in a `REPEATABLE READ` snapshot in which every transaction with an id below
/// `ended_before` has ended (waiting, and retrying, until there is one).
pub async fn select_chunk(
    client: &Client,
    table: &TableInfo,
    after: Option<&[String]>,
    limit: usize,
    ended_before: u64,
) -> Result<SelectedChunk, CdcError> {
    let columns = table
        .columns
        .iter()
        .map(|(c, _)| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let key = table
        .primary_key
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let filter = match after {
        Some(values) => format!(
            "WHERE ({key}) > ({})",
            values.iter().map(|v| quote_literal(v)).collect::<Vec<_>>().join(", ")
        ),
        None => String::new(),
    };
    let sql = format!(
        "SELECT {columns} FROM {} {filter} ORDER BY {key} LIMIT {limit}",
        table.name.quoted()
    );
    let key_positions: Vec<usize> = table
        .primary_key
        .iter()
        .filter_map(|k| table.columns.iter().position(|(c, _)| c == k))
        .collect();
    let started = Instant::now();
    let mut delay = Duration::from_millis(2);
    let mut warned = Duration::ZERO;
    loop {
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(CdcError::pg("starting a snapshot chunk transaction"))?;
        let result = select_if_ended(client, &sql, ended_before, &key_positions, &table.columns).await;
        let end = if matches!(result, Ok(Some(_))) {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        client
            .batch_execute(end)
            .await
            .map_err(CdcError::pg("ending a snapshot chunk transaction"))?;
        if let Some(chunk) = result? {
            return Ok(chunk);
        }
        if started.elapsed() >= warned + Duration::from_secs(10) {
            warned = started.elapsed();
            tracing::warn!(
                table = %table.name,
                waited_secs = warned.as_secs(),
                "snapshot chunk waits for transactions older than its low watermark to end"
            );
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(100));
    }
}

async fn select_if_ended(
    client: &Client,
    sql: &str,
    ended_before: u64,
    key_positions: &[usize],
    columns: &[(String, u32)],
) -> Result<Option<SelectedChunk>, CdcError> {
    // The first statement fixes the transaction's snapshot: check it before selecting with it.
    let ended: bool = client
        .query_one(
            "SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::text::xid8",
            &[&ended_before.to_string()],
        )
        .await
        .map_err(CdcError::pg("checking the snapshot chunk's horizon"))?
        .get(0);
    if !ended {
        return Ok(None);
    }
    let messages = client
        .simple_query(sql)
        .await
        .map_err(CdcError::pg("selecting a snapshot chunk"))?;
    let mut chunk = SelectedChunk::default();
    for message in &messages {
        let SimpleQueryMessage::Row(row) = message else {
            continue;
        };
        let mut values = Vec::with_capacity(columns.len());
        for (i, (name, type_oid)) in columns.iter().enumerate() {
            let value = match row.try_get(i).map_err(CdcError::pg("reading a snapshot column"))? {
                Some(text) => ColumnValue::from_text(*type_oid, text),
                None => ColumnValue::Null,
            };
            values.push((name.clone(), value));
        }
        let mut key = Vec::with_capacity(key_positions.len());
        for &i in key_positions {
            let text = row.try_get(i).map_err(CdcError::pg("reading a snapshot key"))?;
            key.push(text.unwrap_or_default().to_owned());
        }
        chunk.last_key = Some(key);
        chunk.rows.push(Row(values));
    }
    Ok(Some(chunk))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_double_embedded_quotes() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"a\b"), r"'a\b'");
    }
}
