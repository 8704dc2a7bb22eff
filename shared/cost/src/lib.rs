//! # shardflow-cost
//!
//! What a shardflow platform costs to run on AWS, and what the same work would cost on Amazon
//! Managed Service for Apache Flink or on Lambda's built-in tumbling windows: `shardflow cost`.
//!
//! Its place: the stages publish what each batch did as EMF metrics
//! (`shardflow_stage::BatchMetrics`: records in, results out, state items and bytes written,
//! commit time); this crate reads those counts (a function's log, [`emf`]) or a profile of
//! measured counts ([`StageProfile`]), and turns them into dollars per month and per million
//! events for a rate, shard count, batching and checkpoint interval ([`model`]), itemised per
//! stage, stream and service. Pure: no AWS calls, no network; prices are a dated table in the
//! crate ([`prices`]), never fetched at run time — check them before relying on a figure.
//!
//! ```
//! use shardflow_cost::{cost, shop, CheckpointInterval, Deployment, ShopOptions, Workload};
//! use shardflow_cost::prices::{us_east_1, Architecture};
//!
//! let platform = shop(&ShopOptions::default());
//! let workload = Workload {
//!     events_per_s: 1_000.0,
//!     batch_size: 500.0,
//!     batching_window_s: 1.0,
//!     architecture: Architecture::Arm64,
//!     reloads_per_shard_hour: 4.0,
//!     tumbling_window_s: 60.0,
//!     flink_events_per_kpu: 10_000.0,
//! };
//! let every_batch = Deployment::Shardflow(CheckpointInterval::Batches(1.0));
//! let report = cost(&platform, &workload, &us_east_1(), &[every_batch, Deployment::ManagedFlink])?;
//! assert!(report.columns[0].total_usd_month > report.columns[1].total_usd_month);
//! # Ok::<(), shardflow_cost::CostError>(())
//! ```
#![warn(missing_docs)]

pub mod command;
pub mod emf;
mod error;
pub mod model;
pub mod prices;
pub mod profile;
mod render;
pub mod shop;

pub use error::CostError;
pub use model::{cost, flink_kpus, CheckpointInterval, Column, Deployment, Line, Report, Service, Workload};
pub use profile::{Basis, BasisKind, Platform, StageOutput, StageProfile, StateProfile, StreamRole, StreamSpec};
pub use render::{dollars, render_table};
pub use shop::{shop, ShopOptions};
