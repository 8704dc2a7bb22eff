//! Seeing a running pipeline (issue 17).
//!
//! - [`model`]: per stage and shard figures (watermark and lag, iterator age, rates, late and
//!   dead-lettered records, state, commit latency, the last error) and time series, derived from
//!   the EMF lines the stages print, their error lines and status readings. Pure.
//! - [`highlight`]: what points a person at a problem, each with what it means. Pure.
//! - [`chart`]: the time series as inline SVG charts (plotters).
//! - [`report`]: the self-contained HTML report of `shardflow demo --report`.

pub mod chart;
pub mod format;
pub mod highlight;
pub mod html;
pub mod model;
pub mod report;

pub use highlight::{highlights, Highlight, HighlightKind};
pub use model::{ErrorLine, Observations, ShardSample, ShardView, StageSeries, StageView};
