//! Errors of the CDC reader.

use crate::assembler::AssembleError;
use crate::pgoutput::PgOutputError;
use crate::sink::ChangeSinkError;
use crate::table::TableName;

/// Why the reader could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum CdcError {
    /// Connecting to Postgres failed.
    #[error("cannot connect to Postgres: {0}")]
    Connect(#[source] tokio_postgres::Error),
    /// A statement failed.
    #[error("{context}: {source}")]
    Postgres {
        /// What the reader was doing.
        context: &'static str,
        /// The driver's error (with the server's message).
        #[source]
        source: tokio_postgres::Error,
    },
    /// The server does not write logical decoding information to its WAL.
    #[error(
        "wal_level is `{actual}`, but logical decoding needs `logical`. Fix: run \
         `ALTER SYSTEM SET wal_level = logical;` as a superuser and restart Postgres \
         (on a Debian cluster: `pg_ctlcluster <version> main restart`; on this project's machines: \
         `scripts/postgres-logical`)"
    )]
    WalLevelNotLogical {
        /// The current `wal_level`.
        actual: String,
    },
    /// The database encoding is not UTF-8 (pgoutput sends text in the database encoding).
    #[error("database encoding is {0}; the CDC reader needs UTF8")]
    NotUtf8(String),
    /// The replication slot does not exist.
    #[error(
        "replication slot `{slot}` does not exist: pass --create-slot to create it, or run \
         SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput');"
    )]
    SlotMissing {
        /// The slot name.
        slot: String,
    },
    /// The slot exists but cannot be used by this reader.
    #[error("replication slot `{slot}` cannot be used: {reason}")]
    SlotUnusable {
        /// The slot name.
        slot: String,
        /// Why (wrong plugin or database, or in use by another process).
        reason: String,
    },
    /// The publication does not exist.
    #[error(
        "publication `{publication}` does not exist: pass --create-publication to create it, or run \
         CREATE PUBLICATION {publication} FOR TABLE {tables};"
    )]
    PublicationMissing {
        /// The publication name.
        publication: String,
        /// The configured tables, comma-separated.
        tables: String,
    },
    /// The publication exists but does not publish some configured tables.
    #[error(
        "publication `{publication}` does not publish {tables}: pass --create-publication to add \
         them, or run ALTER PUBLICATION {publication} ADD TABLE {tables};"
    )]
    PublicationMissesTables {
        /// The publication name.
        publication: String,
        /// The missing tables, comma-separated.
        tables: String,
    },
    /// A snapshot is due but the publication does not publish the signal table its watermarks
    /// go to.
    #[error(
        "a snapshot is due, but publication `{publication}` does not publish the snapshot signal table \
         {table}: pass --create-publication to add it, or run ALTER PUBLICATION {publication} ADD TABLE \
         {table}; (or pass --snapshot never)"
    )]
    SignalTableNotPublished {
        /// The publication name.
        publication: String,
        /// The signal table.
        table: String,
    },
    /// A configured table does not exist.
    #[error("table {0} does not exist")]
    TableMissing(TableName),
    /// A configured table has no primary key, so its changes have no key to order and dedup by.
    #[error("table {0} has no primary key; the CDC reader needs one to key its changes (add a PRIMARY KEY)")]
    NoPrimaryKey(TableName),
    /// The server cannot do what the configuration asks (e.g. too old for the snapshot).
    #[error("{0}")]
    Unsupported(String),
    /// Postgres answered something the reader cannot interpret.
    #[error("unexpected answer from Postgres: {0}")]
    Protocol(String),
    /// The slot's output was not valid pgoutput.
    #[error("undecodable pgoutput message at {lsn}: {source}")]
    Decode {
        /// Where in the WAL.
        lsn: crate::lsn::Lsn,
        /// What was wrong.
        #[source]
        source: PgOutputError,
    },
    /// The messages were valid but inconsistent.
    #[error(transparent)]
    Assemble(#[from] AssembleError),
    /// The sink failed; nothing past the last acknowledged batch was confirmed.
    #[error(transparent)]
    Sink(#[from] ChangeSinkError),
}

impl CdcError {
    /// Wraps a driver error with what the reader was doing.
    pub(crate) fn pg(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> CdcError {
        move |source| CdcError::Postgres { context, source }
    }
}
