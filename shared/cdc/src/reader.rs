//! The CDC reader: peeks a batch of decoded changes from the slot, hands them to the sink, and
//! confirms the slot's position only after the sink acknowledged them.

use std::collections::{HashMap, HashSet};
use std::pin::pin;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::TryStreamExt;
use tokio::task::JoinHandle;
use tokio_postgres::types::{PgLsn, ToSql};
use tokio_postgres::{Client, NoTls};

use crate::assembler::{Applied, ChangeAssembler};
use crate::error::CdcError;
use crate::lsn::Lsn;
use crate::pgoutput;
use crate::setup::{self, CdcConfig, Prepared};
use crate::sink::ChangeSink;
use crate::snapshot;
use crate::table::quote_ident;

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
    /// Whether the batch hit `batch_changes` (more may be waiting: poll again at once).
    pub more: bool,
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
        let only: HashSet<_> = config.tables.iter().cloned().collect();
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

    /// Emits the rows of the tables setup chose to snapshot (`op = r`), flushing the sink.
    /// Returns the number of rows; does nothing if setup chose none.
    pub async fn snapshot<S: ChangeSink>(&mut self, sink: &mut S) -> Result<u64, CdcError> {
        let wanted: HashSet<_> = self.prepared.snapshot_tables.iter().collect();
        let tables: Vec<_> = self
            .prepared
            .tables
            .iter()
            .filter(|t| wanted.contains(&t.name))
            .cloned()
            .collect();
        if tables.is_empty() {
            return Ok(0);
        }
        let n = snapshot::snapshot_tables(&self.client, &self.prepared.database, &tables, sink, now_ms()).await?;
        self.prepared.snapshot_tables.clear();
        Ok(n)
    }

    /// Reads the committed changes waiting in the slot (up to about `batch_changes`, whole
    /// transactions), sends them to `sink`, flushes it, and then confirms the position to Postgres.
    /// On any error nothing new is confirmed: a restarted reader sees those changes again.
    pub async fn poll<S: ChangeSink>(&mut self, sink: &mut S) -> Result<PollOutcome, CdcError> {
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
            if let Applied::Committed { end_lsn } = self.assembler.apply(lsn, msg, now, &mut pending)? {
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
        Ok(PollOutcome {
            events,
            transactions,
            confirmed: self.confirmed,
            more,
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
