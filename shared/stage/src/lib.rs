//! # shardflow-stage
//!
//! The pure core of a stage, between a Kinesis batch and the engine: a `KinesisEvent` as a
//! [`ShardBatch`], ordering and redelivery by [`SequenceNumber`], decoding with dead letters,
//! one batch through the engine ([`process_batch`]), the sink traits every connector implements
//! ([`ResultSink`], [`DeadLetterSink`]), the partial batch response and the metrics line. It
//! makes no AWS call, so it runs the same in a Lambda (`shardflow-lambda`), a replay and a
//! benchmark.
#![warn(missing_docs)]

pub mod batch;
pub mod dead_letter;
pub mod decode;
pub mod env;
pub mod metrics;
pub mod response;
pub mod sequence;
pub mod shard_batch;
pub mod sink;

pub use batch::{partition_name, process_batch, BatchOutcome};
pub use dead_letter::{DeadLetter, DeadLetterKind};
pub use decode::{DecodeError, JsonDecoder, ProtobufDecoder, RecordDecoder, Tagged, TaggingDecoder};
pub use env::{optional_var, required_var, EnvError};
pub use metrics::{json_object_of, BatchMetrics, EmfRecord, EMF_DIMENSION, EMF_NAMESPACE, METRICS as EMF_METRICS};
pub use response::batch_response;
pub use sequence::{SequenceNumber, SequenceNumberError};
pub use shard_batch::{stream_name, BatchError, InputRecord, ShardBatch};
pub use sink::{BothSinks, DeadLetterSink, MapSink, MemoryDeadLetters, MemoryResultSink, ResultSink, SinkError};
