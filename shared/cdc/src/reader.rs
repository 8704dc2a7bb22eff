//! The CDC reader: peeks a batch of decoded changes from the slot, hands them to the sink, and
//! confirms the slot's position only after the sink acknowledged them. While a snapshot is in
//! progress, each poll first selects the next chunk between two watermarks and emits its rows
//! where the stream reaches the high watermark ([`crate::watermark`], [`crate::snapshot`]).
//!
//! # Protocol
//! 1. Peek, up to the current WAL flush position: `pg_logical_slot_peek_binary_changes(slot,
//!    upto_lsn, upto_nchanges, 'proto_version', '1', 'publication_names', pub)` reads a batch
//!    without consuming it.
//! 2. Send the batch's events to the [`ChangeSink`] in commit order, then `flush` it.
//! 3. Only after `flush` returned `Ok`: `pg_replication_slot_advance(slot, lsn)`. Until then
//!    Postgres re-delivers the batch to any reader, so a crash repeats changes, never loses them.
//!
//! When a peek returns fewer messages than the limit, the slot is advanced to the WAL flush
//! position the peek was bounded by, so it keeps up even while the captured tables are idle and
//! the rest of the database is not.

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::pin;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::TryStreamExt;
use tokio::task::JoinHandle;
use tokio_postgres::types::{PgLsn, ToSql};
use tokio_postgres::{Client, NoTls};

use crate::assembler::{Applied, ChangeAssembler};
use crate::error::CdcError;
use crate::event::ChangeEvent;
use crate::lsn::Lsn;
use crate::pgoutput;
use crate::setup::{self, CdcConfig, Prepared};
use crate::sink::ChangeSink;
use crate::snapshot;
use crate::table::{quote_ident, TableInfo, TableName};
use crate::watermark::{snapshot_row, Chunk, Observed};

/// Events handed to the sink per `send` call while a batch streams in.
const SEND_CHUNK: usize = 1_000;

/// What one [`CdcReader::poll`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollOutcome {
    /// Change events delivered to the sink.
    pub events: usize,
    /// Transactions whose commit was seen.
    pub transactions: usize,
    /// The slot's confirmed position afterwards.
    pub confirmed: Lsn,
    /// Of `events`, rows of the snapshot (`op = r`).
    pub snapshot_rows: usize,
    /// Whether the batch hit `batch_changes` or a snapshot is in progress (more may be waiting:
    /// poll again at once).
    pub more: bool,
}

/// What the snapshot did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    /// Chunks whose rows were emitted.
    pub chunks: u64,
    /// Rows emitted (`op = r`).
    pub rows: u64,
    /// Selected rows not emitted because their key changed between the chunk's watermarks.
    pub dropped: u64,
}

/// A table still to snapshot, and where its next chunk starts.
#[derive(Debug, Clone)]
struct PlannedTable {
    info: TableInfo,
    after: Option<Vec<String>>,
}

/// A chunk between its watermarks.
#[derive(Debug)]
struct InFlight {
    chunk: Chunk,
    last_key: Option<Vec<String>>,
    full: bool,
}

/// A chunk whose rows were handed to the sink; its progress is saved once the slot is confirmed
/// past its high watermark.
#[derive(Debug)]
struct Closed {
    table: TableName,
    last_key: Option<Vec<String>>,
    done: bool,
    high_commit: Lsn,
}

/// The snapshot's state across polls.
#[derive(Debug, Default)]
struct SnapshotState {
    signal: Option<TableName>,
    queue: VecDeque<PlannedTable>,
    in_flight: Option<InFlight>,
    closed: Option<Closed>,
    run_id: String,
    next_id: u64,
    stats: SnapshotStats,
}

impl SnapshotState {
    fn pending(&self) -> bool {
        self.in_flight.is_some() || !self.queue.is_empty() || self.closed.is_some()
    }

    fn watermark_id(&mut self, kind: &str) -> String {
        self.next_id += 1;
        format!("{kind}-{}-{}", self.run_id, self.next_id)
    }
}

/// A running CDC reader over one slot and publication.
pub struct CdcReader {
    client: Client,
    connection: JoinHandle<()>,
    config: CdcConfig,
    prepared: Prepared,
    assembler: ChangeAssembler,
    confirmed: Lsn,
    peek_sql: String,
    snapshot: SnapshotState,
    scratch: Vec<ChangeEvent>,
}

impl CdcReader {
    /// Connects, checks and prepares the database (see [`setup::prepare`]). Must be called within
    /// a Tokio runtime (the connection runs as a spawned task).
    pub async fn connect(database_url: &str, config: CdcConfig) -> Result<Self, CdcError> {
        let (client, connection) = tokio_postgres::connect(database_url, NoTls)
            .await
            .map_err(CdcError::Connect)?;
        let connection = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "postgres connection closed with an error");
            }
        });
        setup::configure_session(&client).await?;
        let prepared = setup::prepare(&client, &config).await?;
        for w in &prepared.warnings {
            tracing::debug!(warning = %w, "setup warning");
        }
        let primary_keys: HashMap<_, _> = prepared
            .tables
            .iter()
            .map(|t| (t.name.clone(), t.primary_key.clone()))
            .collect();
        let mut only: HashSet<_> = config.tables.iter().cloned().collect();
        only.extend(prepared.signal_table.iter().cloned());
        let queue = prepared
            .snapshot_tables
            .iter()
            .filter_map(|name| prepared.tables.iter().find(|t| &t.name == name))
            .map(|info| PlannedTable {
                info: info.clone(),
                after: prepared
                    .snapshot_resume
                    .iter()
                    .find(|(t, _)| t == &info.name)
                    .map(|(_, key)| key.clone()),
            })
            .collect();
        let snapshot = SnapshotState {
            signal: prepared.signal_table.clone(),
            queue,
            run_id: format!("{:x}.{:x}", now_ms(), std::process::id()),
            ..SnapshotState::default()
        };
        let assembler = ChangeAssembler::new(prepared.database.clone(), primary_keys, Some(only));
        // The options string is parsed by Postgres as an identifier list: quote the name.
        let peek_sql = "SELECT lsn, data FROM pg_logical_slot_peek_binary_changes($1, $2, $3, \
                        'proto_version', '1', 'publication_names', $4)"
            .to_owned();
        Ok(CdcReader {
            client,
            connection,
            confirmed: prepared.confirmed,
            config,
            prepared,
            assembler,
            peek_sql,
            snapshot,
            scratch: Vec::new(),
        })
    }

    /// What setup found and did.
    pub fn prepared(&self) -> &Prepared {
        &self.prepared
    }

    /// The slot position confirmed so far.
    pub fn confirmed(&self) -> Lsn {
        self.confirmed
    }

    /// Polls until the snapshot of the tables setup chose is complete (changes streamed
    /// meanwhile are delivered too, in stream order); returns the number of snapshot rows
    /// (`op = r`) delivered. Does nothing if setup chose none.
    pub async fn snapshot<S: ChangeSink>(&mut self, sink: &mut S) -> Result<u64, CdcError> {
        let mut rows = 0u64;
        while self.snapshot.pending() {
            rows += self.poll(sink).await?.snapshot_rows as u64;
        }
        Ok(rows)
    }

    /// Whether a snapshot is still in progress.
    pub fn snapshot_in_progress(&self) -> bool {
        self.snapshot.pending()
    }

    /// What the snapshot did so far.
    pub fn snapshot_stats(&self) -> SnapshotStats {
        self.snapshot.stats
    }

    /// Selects the next snapshot chunk between two watermarks, unless one is in flight or none
    /// is left. Tables whose next chunk is empty are marked done (every earlier chunk was
    /// confirmed: progress is saved only after confirmation).
    async fn start_chunk(&mut self) -> Result<(), CdcError> {
        let Some(signal) = self.snapshot.signal.clone() else {
            self.snapshot.queue.clear();
            return Ok(());
        };
        if self.snapshot.in_flight.is_some() || self.snapshot.closed.is_some() {
            return Ok(());
        }
        let slot = self.config.slot.clone();
        let limit = self.config.snapshot_chunk_rows.max(1);
        while let Some(next) = self.snapshot.queue.front().cloned() {
            let table = &next.info.name;
            let low = self.snapshot.watermark_id("low");
            snapshot::write_watermark(&self.client, &signal, &slot, table, &low).await?;
            let horizon = snapshot::fresh_xid(&self.client).await?;
            let selected =
                snapshot::select_chunk(&self.client, &next.info, next.after.as_deref(), limit, horizon).await?;
            if selected.rows.is_empty() {
                snapshot::save_progress(&self.client, &signal, &slot, table, next.after.as_deref(), true).await?;
                tracing::info!(table = %table, "snapshot done");
                self.snapshot.queue.pop_front();
                continue;
            }
            let high = self.snapshot.watermark_id("high");
            snapshot::write_watermark(&self.client, &signal, &slot, table, &high).await?;
            let full = selected.rows.len() >= limit;
            let rows = selected
                .rows
                .into_iter()
                .map(|r| snapshot_row(table, &next.info.primary_key, r))
                .collect();
            let chunk = Chunk::new(table.clone(), next.info.primary_key.clone(), low, high, rows);
            self.snapshot.in_flight = Some(InFlight {
                chunk,
                last_key: selected.last_key,
                full,
            });
            break;
        }
        Ok(())
    }

    /// Routes one assembled event: delivered, swallowed (a watermark), or replaced by the rows
    /// of the chunk it closes. Returns the number of snapshot rows added to `out`.
    fn route(&mut self, event: ChangeEvent, now: i64, out: &mut Vec<ChangeEvent>) -> usize {
        let observed = match (&mut self.snapshot.in_flight, &self.snapshot.signal) {
            (Some(f), Some(signal)) => f.chunk.observe(&event, signal, &self.config.slot, now),
            (_, Some(signal)) if &event.source.table == signal => Observed::Swallow,
            _ => Observed::Forward,
        };
        match observed {
            Observed::Forward => {
                out.push(event);
                0
            }
            Observed::Swallow => 0,
            Observed::Close(rows) => {
                let n = rows.len();
                out.extend(rows);
                if let Some(f) = self.snapshot.in_flight.take() {
                    let stats = &mut self.snapshot.stats;
                    stats.chunks += 1;
                    stats.rows += n as u64;
                    stats.dropped += f.chunk.dropped() as u64;
                    let done = !f.full;
                    if let Some(front) = self.snapshot.queue.front_mut() {
                        front.after = f.last_key.clone();
                    }
                    if done {
                        self.snapshot.queue.pop_front();
                    }
                    self.snapshot.closed = Some(Closed {
                        table: f.chunk.table().clone(),
                        last_key: f.last_key,
                        done,
                        high_commit: event.source.commit_lsn,
                    });
                }
                n
            }
        }
    }

    /// Saves the progress of a closed chunk once the slot is confirmed past it.
    async fn save_closed(&mut self) -> Result<(), CdcError> {
        let (Some(closed), Some(signal)) = (&self.snapshot.closed, &self.snapshot.signal) else {
            return Ok(());
        };
        if self.confirmed <= closed.high_commit {
            return Ok(());
        }
        snapshot::save_progress(
            &self.client,
            signal,
            &self.config.slot,
            &closed.table,
            closed.last_key.as_deref(),
            closed.done,
        )
        .await?;
        if closed.done {
            tracing::info!(table = %closed.table, "snapshot done");
        }
        self.snapshot.closed = None;
        Ok(())
    }

    /// Reads the committed changes waiting in the slot (up to about `batch_changes`, whole
    /// transactions), sends them to `sink`, flushes it, and then confirms the position to Postgres.
    /// On any error nothing new is confirmed: a restarted reader sees those changes again.
    pub async fn poll<S: ChangeSink>(&mut self, sink: &mut S) -> Result<PollOutcome, CdcError> {
        self.start_chunk().await?;
        let upto: PgLsn = self
            .client
            .query_one("SELECT pg_current_wal_flush_lsn()", &[])
            .await
            .map_err(CdcError::pg("reading the WAL flush position"))?
            .get(0);
        let upto = Lsn(u64::from(upto));
        let limit = self.config.batch_changes.max(1);
        let publication = quote_ident(&self.config.publication);
        let upto_pg = PgLsn::from(upto.0);
        let params: [&(dyn ToSql + Sync); 4] = [&self.config.slot, &upto_pg, &limit, &publication];
        let rows = self
            .client
            .query_raw(self.peek_sql.as_str(), params)
            .await
            .map_err(CdcError::pg("peeking changes from the slot"))?;
        let mut rows = pin!(rows);

        let mut pending = Vec::with_capacity(SEND_CHUNK);
        let mut events = 0usize;
        let mut snapshot_rows = 0usize;
        let mut transactions = 0usize;
        let mut messages = 0usize;
        let mut last_commit: Option<Lsn> = None;
        let now = now_ms();
        self.assembler.reset_transaction();
        loop {
            let next = rows.try_next().await.map_err(CdcError::pg("reading peeked changes"))?;
            let Some(row) = next else { break };
            messages += 1;
            let lsn = Lsn(u64::from(
                row.try_get::<_, PgLsn>(0)
                    .map_err(CdcError::pg("reading a change lsn"))?,
            ));
            let data: &[u8] = row.try_get(1).map_err(CdcError::pg("reading change data"))?;
            let msg = pgoutput::decode(data).map_err(|source| CdcError::Decode { lsn, source })?;
            let mut scratch = std::mem::take(&mut self.scratch);
            let applied = self.assembler.apply(lsn, msg, now, &mut scratch);
            for event in scratch.drain(..) {
                snapshot_rows += self.route(event, now, &mut pending);
            }
            self.scratch = scratch;
            if let Applied::Committed { end_lsn } = applied? {
                transactions += 1;
                last_commit = Some(end_lsn);
            }
            if pending.len() >= SEND_CHUNK {
                sink.send(&pending).await?;
                events += pending.len();
                pending.clear();
            }
        }
        if !pending.is_empty() {
            sink.send(&pending).await?;
            events += pending.len();
        }
        // Fewer messages than the limit: every transaction committed before `upto` was returned,
        // so `upto` itself can be confirmed (this also moves the slot along when the configured
        // tables are idle but the rest of the database is not).
        let more = messages >= usize::try_from(limit).unwrap_or(usize::MAX);
        let target = match (more, last_commit) {
            (false, c) => Some(c.map_or(upto, |c| c.max(upto))),
            (true, c) => c,
        };
        if events > 0 {
            sink.flush().await?;
        }
        if let Some(target) = target.filter(|t| *t > self.confirmed) {
            self.confirm(target).await?;
        }
        self.save_closed().await?;
        Ok(PollOutcome {
            events,
            transactions,
            confirmed: self.confirmed,
            snapshot_rows,
            more: more || self.snapshot.pending(),
        })
    }

    async fn confirm(&mut self, lsn: Lsn) -> Result<(), CdcError> {
        let end: PgLsn = self
            .client
            .query_one(
                "SELECT end_lsn FROM pg_replication_slot_advance($1, $2)",
                &[&self.config.slot, &PgLsn::from(lsn.0)],
            )
            .await
            .map_err(CdcError::pg("confirming the slot position"))?
            .get(0);
        self.confirmed = Lsn(u64::from(end)).max(self.confirmed);
        tracing::debug!(confirmed = %self.confirmed, "confirmed");
        Ok(())
    }

    /// Bytes of WAL the slot's confirmed position is behind `pg_current_wal_lsn()`.
    pub async fn lag_bytes(&self) -> Result<u64, CdcError> {
        let current: PgLsn = self
            .client
            .query_one("SELECT pg_current_wal_lsn()", &[])
            .await
            .map_err(CdcError::pg("reading the current WAL position"))?
            .get(0);
        Ok(u64::from(current).saturating_sub(self.confirmed.0))
    }
}

impl Drop for CdcReader {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// Wall-clock Unix milliseconds (the events' processing time).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
