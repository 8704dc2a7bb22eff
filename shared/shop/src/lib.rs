//! # shardflow-shop
//!
//! The seed platform's online shop on shardflow:
//! - [`generator`]: a deterministic, seeded generator of the shop's CDC stream (Debezium
//!   envelopes of customers, orders, order lines, payments and shipments over N shards, with
//!   out-of-order and late changes);
//! - [`pipelines`]: the `revenue`, `receipts` and `order_enrich` pipelines, reused by the Lambda
//!   stages;
//! - [`demo`]: `shardflow demo`, which runs all three on a generated stream with the local runner;
//! - [`sql`]: the shop's tables in Postgres (`sql/schema.sql`) and the generated changes as SQL
//!   statements, for loading a workload into a database that `shardflow cdc` captures.
#![warn(missing_docs)]

pub mod demo;
pub mod generator;
pub mod pipelines;
pub mod sql;

pub use generator::{ShopConfig, ShopGenerator};
pub use pipelines::{order_enrich, receipts, revenue, EnrichedOrder, Receipt, RevenueRow};
