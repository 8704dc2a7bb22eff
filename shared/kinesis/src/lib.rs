//! # shardflow-kinesis
//!
//! The Kinesis producer every shardflow tool that writes streams uses (the CDC reader, the
//! workload generators).
//!
//! * **Batching**: records go out as `PutRecords` calls of at most 500 records and 5 MiB; a
//!   record over 1 MiB (data plus partition key), with a partition key outside 1-256
//!   characters or with an explicit hash key that is not a decimal in `[0, 2¹²⁸)` is refused at
//!   [`KinesisProducer::send`] with [`ProducerError::Invalid`].
//! * **Explicit hash keys**: a [`StreamRecord`] may name the point of the hash-key space whose
//!   shard stores it (`ExplicitHashKey`, the shuffle's routing); it does not count toward the
//!   size limits, and a stored record's result names its shard ([`RecordResult::Stored`]).
//! * **Order per partition key**: records of one key are stored in the order they were sent,
//!   even across retries. `PutRecords` is not atomic, so the producer keeps at most one record
//!   of a key in flight and sends a key's oldest record first ([`queue`] explains the rule).
//!   `SequenceNumberForOrdering` exists only on the single-record `PutRecord`, so it cannot give
//!   this over batches.
//! * **Retries**: exactly the records that failed with a retryable code
//!   (`ProvisionedThroughputExceededException`, `InternalFailure`, ...), and whole calls that
//!   failed transiently, are retried with exponential backoff and full jitter ([`Backoff`]).
//!   A non-retryable failure, or a record out of retries, stops the producer with an error.
//! * **Bounded memory**: records are held until stored within a byte budget
//!   ([`ProducerConfig::buffer_bytes`]); `send` waits while it is used up (backpressure).
//! * **Acknowledgement**: [`KinesisProducer::flush`] resolves only when every record sent before
//!   it is stored, so a caller can commit its own position (e.g. a CDC reader's LSN) after it.
//!
//! The per-call transport is a trait ([`PutRecordsTransport`]) so the producer's retry and
//! ordering logic is tested against injected failures as well as against LocalStack.

pub mod batch;
pub mod producer;
pub mod queue;
pub mod transport;

pub use batch::{
    is_retryable, is_valid_explicit_hash_key, Backoff, InvalidRecord, PutRecordsLimits, RecordResult, StreamRecord,
    MAX_PARTITION_KEY_CHARS,
};
pub use producer::{KinesisProducer, ProducerConfig, ProducerError, ProducerStats};
pub use transport::{client_from_env, request_entries, CallError, KinesisTransport, PutRecordsTransport};
