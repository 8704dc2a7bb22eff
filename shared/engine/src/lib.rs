//! # shardflow-engine
//!
//! The pure event-time engine of shardflow: per-partition watermarks, tumbling / sliding /
//! session / global windows, triggers with early and late panes, combiners, window / interval /
//! lookup joins, keyed state in key groups, and checkpoints that can be taken between any two
//! records. It does no I/O and reads no clock, so the same pipeline runs identically in the local
//! runner, in a benchmark and in a Lambda stage.
//!
//! Start with [`Pipeline::builder`]; run a pipeline with [`Pipeline::engine`].
#![warn(missing_docs)]

pub mod checkpoint;
pub mod combine;
mod engine;
pub mod error;
pub mod join;
pub mod operators;
mod pipeline;
pub mod record;
pub mod state;
pub mod time;
pub mod trigger;
pub mod watermark;
pub mod window;

pub use checkpoint::{Checkpoint, CheckpointImage, StateStore};
pub use engine::{Engine, EngineMetrics};
pub use error::{PipelineError, StateError};
pub use operators::{IntervalJoinSide, KeyedProcessFunction, LookupTable, ProcessContext, TimeDomain};
pub use pipeline::{KeyedStream, Pipeline, PipelineBuilder, Stream, WindowedStream};
pub use record::{LateRecord, Output, PartitionId, ResultId};
pub use time::{Timestamp, MAX_TIMESTAMP, MIN_TIMESTAMP};
pub use trigger::{Accumulation, Firing, PaneInfo, PaneTiming, Trigger};
pub use watermark::WatermarkStrategy;
pub use window::{Window, Windowing};
