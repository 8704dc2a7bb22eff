//! # shardflow-gen
//!
//! Workload generators that write through the shared Kinesis producer (`shardflow-kinesis`) or
//! into a file, at a given rate:
//!
//! * [`shop`]: the online shop's CDC stream of `shardflow-shop` (Protobuf `ChangeEvent`
//!   envelopes, partition key `table:primary key`, so one row's changes stay in order);
//! * [`nexmark`]: the Nexmark model (people, auctions, bids) from the `nexmark` crate
//!   (RisingWave's port of the Beam/Flink generator), written as the JSON lines that
//!   `shardflow nexmark` reads.
//!
//! [`postgres`] executes the shop's workload against Postgres instead (`--database-url`), one
//! database transaction per generated transaction, for `shardflow cdc --format shop` to capture.
//!
//! [`cli`] is `shardflow gen`.

pub mod cli;
pub mod nexmark;
pub mod output;
pub mod postgres;
pub mod shop;

pub use output::{GenReport, Output, OutputError, Pacer};
