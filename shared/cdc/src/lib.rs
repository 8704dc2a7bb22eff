//! # shardflow-cdc
//!
//! The source of the data flow: reads the committed changes of configured Postgres tables from a
//! logical replication slot ([`CdcReader`]), turns them into Debezium-style [`ChangeEvent`]s,
//! encodes them in a [`Format`] and hands them to a [`ChangeSink`] — a file, or a Kinesis stream
//! ([`KinesisSink`]) that the pipeline stages read. The slot's position is confirmed only after
//! the sink acknowledged everything up to it: at-least-once, a crash may repeat changes, never
//! lose them. `README.md` explains how changes are read and why.

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
