//! # shardflow-cdc
//!
//! Change data capture from Postgres: reads the changes of configured tables from a logical
//! replication slot (plugin `pgoutput`, filtered by a publication), turns them into
//! Debezium-style change events ([`ChangeEvent`]: `op`, `before`, `after`, `source`, `ts_ms`),
//! and delivers them to a [`ChangeSink`] (a JSON-lines file, or a Kinesis stream through the
//! shared producer of `shardflow-kinesis`: [`KinesisSink`]), confirming the slot's position only after the sink
//! acknowledged everything up to it (at-least-once: a crash may repeat, never lose, changes).
//!
//! ## How changes are read, and why
//!
//! The reader uses the logical-decoding SQL functions over an ordinary connection of
//! [`tokio_postgres`]: `pg_logical_slot_peek_binary_changes(slot, upto_lsn, upto_nchanges,
//! 'proto_version', '1', 'publication_names', pub)` to read a batch without consuming it, then
//! `pg_replication_slot_advance(slot, lsn)` once the sink has acknowledged the batch.
//!
//! * The released `tokio-postgres` (0.7) has no replication-protocol support (`CopyBoth`,
//!   `START_REPLICATION`); that lives in an unreleased fork. The dedicated streaming crate
//!   (`pgwire-replication`) is young and needs a newer Rust than this workspace's MSRV.
//! * Peek-then-advance gives exactly the delivery contract we want, with no client-side
//!   bookkeeping: until the advance, Postgres re-delivers the batch to any reader.
//! * Costs: every peek (and every advance) decodes the WAL again from the slot's `restart_lsn`,
//!   which Postgres moves only at running-transactions records (about every 15 s). Polling after
//!   every small batch therefore re-decodes the same WAL many times; the CLI sleeps
//!   `--poll-interval-ms` after each batch that was not cut by `--batch-changes`, trading that
//!   much latency for throughput (measured with `shared/cdc/scripts/throughput`: 200 ms polling
//!   kept up with 100k inserts/s, 20 ms polling did not). When a peek returns fewer messages than
//!   the limit, the slot is advanced to the WAL flush position the peek was bounded by, so it keeps
//!   up even while the captured tables are idle and the rest of the database is not.
//! * For sustained high rates or sub-100 ms latency, the streaming replication protocol is the
//!   better transport; only [`reader`] would change (the decoder, assembler and sinks are shared).
//!
//! `pgoutput` messages are decoded by the pure, total [`pgoutput`] module and assembled into
//! events by [`assembler`] (also pure).
//!
//! ## Images and replica identity
//!
//! A complete `before` image of updates and deletes needs `REPLICA IDENTITY FULL`. By default the
//! reader warns about tables without it (as Debezium does) and streams what Postgres sends (no
//! `before` for updates that keep the key, key columns only for deletes); with
//! `--replica-identity set-full` it runs `ALTER TABLE … REPLICA IDENTITY FULL` itself. Tables
//! without a primary key are refused: events are keyed (and partitioned) by it.
//!
//! ## Snapshot
//!
//! Existing rows are emitted as `op = r` events when a table is added, in primary-key chunks
//! interleaved with the stream: each chunk is selected between a low and a high watermark written
//! to a signal table in the publication, rows whose key changes between the two are left to the
//! stream, and the rest are emitted where the stream reaches the high watermark (DBLog, as
//! Debezium's incremental snapshot). No duplicate window, no stale row, writers never paused, and
//! an interrupted snapshot resumes after its last confirmed chunk. See [`watermark`] (protocol
//! and proof) and [`snapshot`] (SQL side, signal table).

//! ## Envelope
//!
//! [`ChangeEvent`] holds typed values ([`ColumnValue`]); a sink encodes it in a [`Format`]: the
//! pipeline's generic Protobuf envelope `shardflow.cdc.v1.ChangeEvent` (default, [`proto`]),
//! Debezium JSON, or, for the online shop's tables, the shop's typed envelope
//! `shardflow.shop.v1.ChangeEvent` ([`shop`]) that the shop pipelines read.

#![warn(missing_docs)]

pub mod assembler;
pub mod cli;
pub mod encode;
pub mod error;
pub mod event;
pub mod kinesis_sink;
pub mod lsn;
pub mod pgoutput;
pub mod proto;
pub mod reader;
pub mod setup;
pub mod shop;
pub mod sink;
pub mod snapshot;
pub mod table;
pub mod value;
pub mod watermark;

pub use encode::{EncodeError, Encoded, Format};
pub use error::CdcError;
pub use event::{ChangeEvent, Op, Source};
pub use kinesis_sink::KinesisSink;
pub use lsn::Lsn;
pub use reader::{CdcReader, PollOutcome, SnapshotStats};
pub use setup::{CdcConfig, ReplicaIdentityPolicy, SnapshotMode};
pub use shop::ShopMapError;
pub use sink::{ChangeSink, ChangeSinkError, FileSink, MemoryChangeSink};
pub use table::TableName;
pub use value::{ColumnValue, Row};
