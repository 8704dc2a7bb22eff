//! # shardflow-runtime
//!
//! Runs a shardflow pipeline as a Lambda stage on Kinesis batches. This crate holds the parts
//! that do not talk to AWS — turning a `KinesisEvent` into a [`ShardBatch`], ordering and
//! deduplicating by [`SequenceNumber`], decoding records with dead-lettering, driving the engine
//! over a batch ([`process_batch`]), the partial batch response, and CloudWatch Embedded Metric
//! Format lines — so that they are tested without any service and run the same everywhere.
#![warn(missing_docs)]

pub mod batch;
pub mod dead_letter;
pub mod decode;
pub mod metrics;
pub mod response;
pub mod sequence;
pub mod shard_batch;

pub use batch::{partition_name, process_batch, BatchOutcome};
pub use dead_letter::{DeadLetter, DeadLetterKind};
pub use decode::{DecodeError, JsonDecoder, ProtobufDecoder, RecordDecoder};
pub use metrics::BatchMetrics;
pub use response::batch_response;
pub use sequence::{SequenceNumber, SequenceNumberError};
pub use shard_batch::{BatchError, InputRecord, ShardBatch};
