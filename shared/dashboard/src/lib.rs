//! Seeing a running pipeline (issue 17).
//!
//! - [`model`]: per stage and shard figures (watermark and lag, iterator age, rates, late and
//!   dead-lettered records, state, commit latency, the last error) and time series, derived from
//!   the EMF lines the stages print, their error lines and status readings. Pure.
//! - [`highlight`]: what points a person at a problem, each with what it means. Pure.
//! - [`cost`]: the cost per hour, from the cost model of `shardflow cost` fed with the readings.
//! - [`chart`]: the time series as inline SVG charts (plotters).
//! - [`report`]: the self-contained HTML report of `shardflow demo --report`.
//! - With the `server` feature, `shardflow dashboard`: [`deployment`] (the stage functions and
//!   streams of a deployed pipeline), [`colours`] (blue/green: the cutover and its cut),
//!   [`source`] (their logs: CloudWatch Logs or LocalStack's files; CloudWatch metrics),
//!   [`server`] (polling and the axum server) and [`command`].
//!
//! Where the figures come from:
//! - **Per stage** (totals, rates, the throughput, late and dead-letter charts, the cost): with
//!   `--metrics cloudwatch` (and `auto` on AWS) the metrics CloudWatch extracts from the stages'
//!   EMF lines, read with GetMetricData; with `--metrics logs` (and `auto` on LocalStack, which
//!   does not extract them) the EMF lines of the functions' logs.
//! - **Per shard** (watermark and lag, counts, commit latency and bytes): always the EMF lines
//!   of the functions' logs (CloudWatch Logs, or LocalStack's files with `--log-dir`). The EMF
//!   lines carry `Stage` as their only dimension and the shard as a property, so CloudWatch
//!   metrics cannot be split by shard.
//! - The last error and the invocations (Lambda's REPORT lines, for the cost): the logs.
//! - Iterator age and live state per shard: the stream and the state table, read as
//!   `shardflow status` reads them. The graph: the functions, their event source mappings and
//!   the streams. Blue/green: the control table.

pub mod chart;
#[cfg(feature = "server")]
pub mod colours;
#[cfg(feature = "server")]
pub mod command;
pub mod cost;
#[cfg(feature = "server")]
pub mod deployment;
pub mod error;
pub mod format;
pub mod highlight;
pub mod html;
pub mod model;
pub mod report;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod source;

pub use error::DashboardError;
pub use highlight::{highlights, Highlight, HighlightKind};
pub use model::{ErrorLine, Observations, ShardSample, ShardView, StageSeries, StageView};
