//! Checks and prepares the database side of CDC: `wal_level`, the tables (primary keys,
//! replica identity), the publication and the replication slot.
//!
//! Tables without a primary key are refused: events are keyed (and partitioned) by it. A
//! complete `before` image of updates and deletes needs `REPLICA IDENTITY FULL`; what happens to
//! a table without it is the [`ReplicaIdentityPolicy`].

use std::collections::BTreeSet;
use std::time::Duration;

use tokio_postgres::types::PgLsn;
use tokio_postgres::Client;

use crate::error::CdcError;
use crate::lsn::Lsn;
use crate::snapshot::{self, default_signal_table};
use crate::table::{quote_ident, TableInfo, TableName};

/// What to do about a table whose replica identity is not `FULL` (updates then carry no
/// complete `before` image, deletes only the key columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplicaIdentityPolicy {
    /// Log a warning and stream with the identity the table has (Debezium's behaviour).
    Warn,
    /// Run `ALTER TABLE … REPLICA IDENTITY FULL` (more WAL per update/delete; needs table ownership).
    SetFull,
}

/// When to emit the existing rows of a table as `op = r` events (interleaved with the stream,
/// see [`crate::snapshot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SnapshotMode {
    /// Tables newly added by this run (all tables when it created the slot or the publication,
    /// else those it added to the publication), and tables whose snapshot an earlier run left
    /// unfinished (resumed after its last confirmed chunk).
    Initial,
    /// Every configured table on every start.
    Always,
    /// Never.
    Never,
}

/// The database objects a reader uses and how to set them up.
#[derive(Debug, Clone)]
pub struct CdcConfig {
    /// Logical replication slot name.
    pub slot: String,
    /// Publication name.
    pub publication: String,
    /// Tables to capture.
    pub tables: Vec<TableName>,
    /// Create the slot (plugin `pgoutput`) if it is missing.
    pub create_slot: bool,
    /// Create the publication if missing, and add missing tables to it.
    pub create_publication: bool,
    /// What to do about tables without `REPLICA IDENTITY FULL`.
    pub replica_identity: ReplicaIdentityPolicy,
    /// When to snapshot existing rows.
    pub snapshot: SnapshotMode,
    /// `upto_nchanges` of each peek: decoding stops after the transaction that reaches it.
    pub batch_changes: i32,
    /// The table the snapshot's watermarks and progress are written to (created if missing,
    /// added to the publication); unused with [`SnapshotMode::Never`].
    pub signal_table: TableName,
    /// Rows per snapshot chunk (one watermark window each).
    pub snapshot_chunk_rows: usize,
}

impl CdcConfig {
    /// A configuration with defaults: create nothing, warn on replica identity, initial snapshot
    /// in chunks of 10 000 rows with the signal table `public.shardflow_cdc_signal`, batches of
    /// 10 000 changes.
    pub fn new(slot: impl Into<String>, publication: impl Into<String>, tables: Vec<TableName>) -> Self {
        CdcConfig {
            slot: slot.into(),
            publication: publication.into(),
            tables,
            create_slot: false,
            create_publication: false,
            replica_identity: ReplicaIdentityPolicy::Warn,
            snapshot: SnapshotMode::Initial,
            batch_changes: 10_000,
            signal_table: default_signal_table(),
            snapshot_chunk_rows: 10_000,
        }
    }
}

/// The outcome of [`prepare`].
#[derive(Debug, Clone)]
pub struct Prepared {
    /// `current_database()`.
    pub database: String,
    /// The configured tables.
    pub tables: Vec<TableInfo>,
    /// Whether this run created the slot.
    pub created_slot: bool,
    /// Whether this run created the publication.
    pub created_publication: bool,
    /// Tables whose existing rows should be snapshotted now (from the start, or resumed).
    pub snapshot_tables: Vec<TableName>,
    /// Of those, the ones resumed, with the text of the last key an earlier run delivered.
    pub snapshot_resume: Vec<(TableName, Vec<String>)>,
    /// The signal table, if snapshots are enabled.
    pub signal_table: Option<TableName>,
    /// The slot's confirmed position.
    pub confirmed: Lsn,
    /// Human-readable warnings (e.g. replica identity), also logged.
    pub warnings: Vec<String>,
}

/// Sets session settings the value conversion relies on (ISO dates, UTC time zone).
pub async fn configure_session(client: &Client) -> Result<(), CdcError> {
    client
        .batch_execute(
            "SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'; SET IntervalStyle = 'iso_8601'; \
             SET standard_conforming_strings = on",
        )
        .await
        .map_err(CdcError::pg("setting session DateStyle/TimeZone"))
}

/// Checks the server, the tables, the publication and the slot, creating or altering what the
/// configuration allows. Order matters: the publication is created before the slot, because
/// `pgoutput` cannot decode WAL written before its publication existed.
pub async fn prepare(client: &Client, config: &CdcConfig) -> Result<Prepared, CdcError> {
    let wal_level = show(client, "wal_level").await?;
    if wal_level != "logical" {
        return Err(CdcError::WalLevelNotLogical { actual: wal_level });
    }
    let encoding = show(client, "server_encoding").await?;
    if encoding != "UTF8" {
        return Err(CdcError::NotUtf8(encoding));
    }
    let database: String = client
        .query_one("SELECT current_database()::text", &[])
        .await
        .map_err(CdcError::pg("reading current_database()"))?
        .get(0);

    let mut warnings = Vec::new();
    let mut tables = Vec::with_capacity(config.tables.len());
    for name in &config.tables {
        let mut info = table_info(client, name).await?;
        if info.replica_identity != 'f' {
            match config.replica_identity {
                ReplicaIdentityPolicy::SetFull => {
                    client
                        .batch_execute(&format!("ALTER TABLE {} REPLICA IDENTITY FULL", name.quoted()))
                        .await
                        .map_err(CdcError::pg("setting REPLICA IDENTITY FULL"))?;
                    info.replica_identity = 'f';
                }
                ReplicaIdentityPolicy::Warn => {
                    let w = format!(
                        "table {name} has REPLICA IDENTITY {} (not FULL): updates will have no complete \
                         `before` image and deletes only the key columns; pass --replica-identity set-full \
                         or run ALTER TABLE {} REPLICA IDENTITY FULL",
                        identity_name(info.replica_identity),
                        name.quoted()
                    );
                    tracing::warn!("{w}");
                    warnings.push(w);
                }
            }
        }
        tables.push(info);
    }

    let (created_publication, added) = ensure_publication(client, config, &config.tables).await?;
    let (created_slot, confirmed) = ensure_slot(client, config, created_publication).await?;

    let fresh = match config.snapshot {
        SnapshotMode::Never => Vec::new(),
        SnapshotMode::Always => config.tables.clone(),
        SnapshotMode::Initial if created_slot || created_publication => config.tables.clone(),
        SnapshotMode::Initial => added,
    };
    let signal = &config.signal_table;
    let progress = if config.snapshot == SnapshotMode::Never || !snapshot::table_exists(client, signal).await? {
        Vec::new()
    } else {
        snapshot::read_progress(client, signal, &config.slot).await?
    };
    let mut snapshot_tables = Vec::new();
    let mut snapshot_resume = Vec::new();
    for table in &config.tables {
        let name = table.to_string();
        if fresh.contains(table) {
            snapshot_tables.push(table.clone());
        } else if let Some(p) = progress.iter().find(|p| p.table == name && !p.done) {
            snapshot_tables.push(table.clone());
            if let Some(key) = &p.progress_key {
                snapshot_resume.push((table.clone(), key.clone()));
            }
        }
    }
    let signal_table = if snapshot_tables.is_empty() {
        None
    } else {
        prepare_signal_table(client, config).await?;
        for table in &fresh {
            snapshot::save_progress(client, signal, &config.slot, table, None, false).await?;
        }
        Some(signal.clone())
    };
    Ok(Prepared {
        database,
        tables,
        created_slot,
        created_publication,
        snapshot_tables,
        snapshot_resume,
        signal_table,
        confirmed,
        warnings,
    })
}

async fn show(client: &Client, setting: &str) -> Result<String, CdcError> {
    Ok(client
        .query_one("SELECT current_setting($1)", &[&setting])
        .await
        .map_err(CdcError::pg("reading a server setting"))?
        .get(0))
}

fn identity_name(code: char) -> &'static str {
    match code {
        'd' => "DEFAULT",
        'n' => "NOTHING",
        'f' => "FULL",
        'i' => "USING INDEX",
        _ => "unknown",
    }
}

/// Reads a table's columns, primary key and replica identity from the catalog.
pub async fn table_info(client: &Client, name: &TableName) -> Result<TableInfo, CdcError> {
    let row = client
        .query_opt(
            "SELECT c.oid, c.relreplident::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&name.schema, &name.name],
        )
        .await
        .map_err(CdcError::pg("looking up a table"))?
        .ok_or_else(|| CdcError::TableMissing(name.clone()))?;
    let oid: u32 = row.get(0);
    let ident: String = row.get(1);
    let columns = client
        .query(
            "SELECT attname::text, atttypid FROM pg_attribute \
             WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&oid],
        )
        .await
        .map_err(CdcError::pg("reading table columns"))?
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, u32>(1)))
        .collect();
    let primary_key: Vec<String> = client
        .query(
            "SELECT a.attname::text FROM pg_index i \
             JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) ON true \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord",
            &[&oid],
        )
        .await
        .map_err(CdcError::pg("reading the primary key"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if primary_key.is_empty() {
        return Err(CdcError::NoPrimaryKey(name.clone()));
    }
    Ok(TableInfo {
        name: name.clone(),
        columns,
        primary_key,
        replica_identity: ident.chars().next().unwrap_or('d'),
    })
}

fn table_list(tables: &[TableName]) -> String {
    tables.iter().map(TableName::quoted).collect::<Vec<_>>().join(", ")
}

/// Creates the signal table if missing and makes the publication publish it (adding it only
/// with `create_publication`), on a server that supports the snapshot.
async fn prepare_signal_table(client: &Client, config: &CdcConfig) -> Result<(), CdcError> {
    let version: i32 = show(client, "server_version_num").await?.parse().unwrap_or(0);
    if version < 130_000 {
        return Err(CdcError::Unsupported(format!(
            "the snapshot needs Postgres 13 or later (server_version_num {version}); pass --snapshot never"
        )));
    }
    let signal = &config.signal_table;
    snapshot::ensure_signal_table(client, signal).await?;
    let published = client
        .query_opt(
            "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3",
            &[&config.publication, &signal.schema, &signal.name],
        )
        .await
        .map_err(CdcError::pg("reading the publication's tables"))?
        .is_some();
    if published {
        return Ok(());
    }
    let pub_ident = quote_ident(&config.publication);
    if !config.create_publication {
        return Err(CdcError::SignalTableNotPublished {
            publication: pub_ident,
            table: signal.quoted(),
        });
    }
    client
        .batch_execute(&format!("ALTER PUBLICATION {pub_ident} ADD TABLE {}", signal.quoted()))
        .await
        .map_err(CdcError::pg("adding the signal table to the publication"))?;
    tracing::info!(publication = %config.publication, table = %signal, "added the snapshot signal table to the publication");
    Ok(())
}

/// Makes the publication publish `tables`. Returns (created, tables added to an existing publication).
async fn ensure_publication(
    client: &Client,
    config: &CdcConfig,
    tables: &[TableName],
) -> Result<(bool, Vec<TableName>), CdcError> {
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&config.publication],
        )
        .await
        .map_err(CdcError::pg("looking up the publication"))?
        .is_some();
    let pub_ident = quote_ident(&config.publication);
    if !exists {
        if !config.create_publication {
            return Err(CdcError::PublicationMissing {
                publication: pub_ident,
                tables: table_list(tables),
            });
        }
        client
            .batch_execute(&format!(
                "CREATE PUBLICATION {pub_ident} FOR TABLE {}",
                table_list(tables)
            ))
            .await
            .map_err(CdcError::pg("creating the publication"))?;
        tracing::info!(publication = %config.publication, "created publication");
        return Ok((true, Vec::new()));
    }
    let published: BTreeSet<TableName> = client
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
            &[&config.publication],
        )
        .await
        .map_err(CdcError::pg("reading the publication's tables"))?
        .iter()
        .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect();
    let missing: Vec<TableName> = tables.iter().filter(|t| !published.contains(t)).cloned().collect();
    if missing.is_empty() {
        return Ok((false, missing));
    }
    if !config.create_publication {
        return Err(CdcError::PublicationMissesTables {
            publication: pub_ident,
            tables: table_list(&missing),
        });
    }
    client
        .batch_execute(&format!(
            "ALTER PUBLICATION {pub_ident} ADD TABLE {}",
            table_list(&missing)
        ))
        .await
        .map_err(CdcError::pg("adding tables to the publication"))?;
    tracing::info!(publication = %config.publication, tables = %table_list(&missing), "added tables to publication");
    Ok((false, missing))
}

/// Returns (created, confirmed LSN).
async fn ensure_slot(client: &Client, config: &CdcConfig, created_publication: bool) -> Result<(bool, Lsn), CdcError> {
    let database: String = client
        .query_one("SELECT current_database()::text", &[])
        .await
        .map_err(CdcError::pg("reading current_database()"))?
        .get(0);
    // A reader that just died may still hold the slot for a moment: wait for it to let go.
    for attempt in 0.. {
        let row = client
            .query_opt(
                "SELECT plugin::text, database::text, active, active_pid, confirmed_flush_lsn \
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&config.slot],
            )
            .await
            .map_err(CdcError::pg("looking up the replication slot"))?;
        let Some(row) = row else {
            if !config.create_slot {
                return Err(CdcError::SlotMissing {
                    slot: config.slot.clone(),
                });
            }
            let lsn: PgLsn = client
                .query_one(
                    "SELECT lsn FROM pg_create_logical_replication_slot($1, 'pgoutput')",
                    &[&config.slot],
                )
                .await
                .map_err(CdcError::pg("creating the replication slot"))?
                .get(0);
            tracing::info!(slot = %config.slot, lsn = %Lsn(u64::from(lsn)), "created replication slot");
            return Ok((true, Lsn(u64::from(lsn))));
        };
        let plugin: Option<String> = row.get(0);
        let slot_db: Option<String> = row.get(1);
        let active: bool = row.get(2);
        let active_pid: Option<i32> = row.get(3);
        let confirmed: Option<PgLsn> = row.get(4);
        let unusable = |reason: String| CdcError::SlotUnusable {
            slot: config.slot.clone(),
            reason,
        };
        if plugin.as_deref() != Some("pgoutput") {
            return Err(unusable(format!("its plugin is {plugin:?}, not pgoutput")));
        }
        if slot_db.as_deref() != Some(database.as_str()) {
            return Err(unusable(format!(
                "it belongs to database {slot_db:?}, not {database:?}"
            )));
        }
        if active {
            if attempt < 50 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            return Err(unusable(format!("it is in use by process {active_pid:?}")));
        }
        let mut confirmed = Lsn(confirmed.map(u64::from).unwrap_or(0));
        if created_publication {
            // WAL from before the publication existed cannot be decoded with it (and published
            // nothing): start the existing slot at the current position.
            let lsn: PgLsn = client
                .query_one(
                    "SELECT end_lsn FROM pg_replication_slot_advance($1, pg_current_wal_flush_lsn())",
                    &[&config.slot],
                )
                .await
                .map_err(CdcError::pg("advancing the slot past the new publication"))?
                .get(0);
            tracing::warn!(slot = %config.slot, lsn = %Lsn(u64::from(lsn)), "advanced existing slot past the newly created publication");
            confirmed = Lsn(u64::from(lsn));
        }
        return Ok((false, confirmed));
    }
    Err(CdcError::SlotMissing {
        slot: config.slot.clone(),
    })
}
