//! # shardflow-engine
//!
//! The middle of every stage's data flow: decoded input records go in (one partition per shard
//! or file), results with deterministic ids and late records come out, and a checkpoint of the
//! state can be taken between any two records. It does no I/O and reads no clock; the local
//! runner and the Lambda stage feed it and write what it emits.
//!
//! Describe a pipeline with [`Pipeline::builder`]; run it with [`Pipeline::engine`].
#![warn(missing_docs)]

pub mod checkpoint;
pub mod combine;
mod engine;
pub mod error;
pub mod join;
pub mod lift;
pub mod operators;
mod pipeline;
pub mod record;
pub mod restore;
pub mod schema;
pub mod state;
pub mod time;
pub mod trigger;
pub mod watermark;
pub mod window;

pub use checkpoint::{Checkpoint, CheckpointImage, Committed, StateStore};
pub use engine::{Engine, EngineMetrics};
pub use error::{PipelineError, StateError};
pub use lift::{BatchCombiner, Lifted, Shuffled};
pub use operators::{
    ClosedBucket, EventTimeBuckets, IntervalJoinSide, KeyedProcessFunction, LookupTable, ProcessContext, TimeDomain,
};
pub use pipeline::{
    KeyedStream, Pipeline, PipelineBuilder, SplitPipeline, StatefulOperator, Stream, Unsplit, Upstream, WindowedStream,
    SHUFFLE_SINK,
};
pub use record::{InputOrigin, LateRecord, Output, PartitionId, ResultId, ShuffleOutput};
pub use restore::{OperatorRestore, RestoreOptions, RestoreOutcome, RestoreReport};
pub use time::{Timestamp, MAX_TIMESTAMP, MIN_TIMESTAMP};
pub use trigger::{Accumulation, Firing, PaneInfo, PaneTiming, Trigger};
pub use watermark::WatermarkStrategy;
pub use window::{Window, Windowing};
