//! # shardflow-archive
//!
//! The archive of a Kinesis stream in S3, as Kinesis Data Firehose would write it: the generic
//! `archive` stage that writes it ([`stage()`], from the function's environment) and the reader
//! that replays it as a bounded stream (`shardflow-lifecycle`'s replay).
//!
//! # Layout
//! One object per (batch, UTC hour of arrival):
//! `{prefix}/{stream}/{YYYY-MM-DD}/{HH}/{shard}-{first sequence number}.ndjson.gz`, gzip-compressed
//! NDJSON, one [`ArchivedRecord`] per line (the payload in base64, with the record's shard,
//! sequence number, partition key and arrival time), in sequence order.
//!
//! # Exactly once
//! The archive runs as a stage ([`archive_pipeline`], [`ArchiveDecoder`], [`ArchiveSink`]) whose
//! checkpoint holds the last archived sequence number per shard; a batch writes its objects, then
//! commits. An object's key is a function of the first record it holds, and that record is the
//! first one after the committed position or the first of its hour: a redelivered batch — with the
//! same bounds or others, after a crash or a lost commit — starts at the same record and
//! overwrites the same objects with its own records, and whatever a longer crashed attempt held
//! beyond them is rewritten by the batch that commits those records, under the key of the first of
//! them. The committed objects hold every record once.

#![warn(missing_docs)]

mod key;
mod reader;
mod record;
mod s3_error;
mod sink;
mod stage;

use shardflow_engine::Pipeline;

pub use key::{object_key, ObjectKey};
pub use reader::{ArchiveReader, ReadError};
pub use record::{ArchiveDecoder, ArchivedRecord};
pub use sink::{ArchiveSink, ArchiveSinkConfig};
pub use stage::{stage, ArchiveStage, ARCHIVE_BUCKET_ENV, ARCHIVE_PREFIX_ENV};

/// The archive stage's pipeline: every record as it is, event time = arrival time. Stateless, so
/// its results are one per record, in order, with ids of their own position.
pub fn archive_pipeline() -> Pipeline<ArchivedRecord, ArchivedRecord> {
    Pipeline::builder::<ArchivedRecord>("archive")
        .event_time(|r: &ArchivedRecord| r.arrival_ms)
        .sink("archive")
}
