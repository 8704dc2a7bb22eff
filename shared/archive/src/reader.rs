//! Reading the archive back: the objects of a stream, as a bounded stream of records.

use std::io::Read;

use flate2::read::GzDecoder;
use shardflow_stage::SequenceNumber;
use thiserror::Error;

use crate::key::ObjectKey;
use crate::record::ArchivedRecord;

/// Why the archive could not be read.
#[derive(Debug, Error)]
pub enum ReadError {
    /// S3 refused or failed a request.
    #[error("S3 {operation} s3://{bucket}/{key}: {message}")]
    S3 {
        /// The API call.
        operation: &'static str,
        /// The bucket.
        bucket: String,
        /// The key or prefix.
        key: String,
        /// The SDK's error.
        message: String,
    },
    /// An object is not gzip NDJSON of archived records.
    #[error("s3://{bucket}/{key} line {line}: {reason}")]
    Malformed {
        /// The bucket.
        bucket: String,
        /// The object.
        key: String,
        /// The line (1-based; 0 for the compression).
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Reads the archive under a prefix of a bucket.
#[derive(Debug, Clone)]
pub struct ArchiveReader {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl ArchiveReader {
    /// The archive under `prefix` (no trailing `/`; empty for none) of `bucket`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        ArchiveReader {
            client,
            bucket: bucket.into(),
            prefix: prefix.into().trim_end_matches('/').to_owned(),
        }
    }

    /// The archive objects of `stream` (all streams for `None`) whose UTC date is within
    /// `dates` (inclusive `YYYY-MM-DD` bounds; `None` for all), with their S3 keys, in key order.
    /// Other objects under the prefix are ignored.
    pub async fn objects(
        &self,
        stream: Option<&str>,
        dates: Option<(&str, &str)>,
    ) -> Result<Vec<(String, ObjectKey)>, ReadError> {
        let list_prefix = match (self.prefix.is_empty(), stream) {
            (true, None) => String::new(),
            (true, Some(s)) => format!("{s}/"),
            (false, None) => format!("{}/", self.prefix),
            (false, Some(s)) => format!("{}/{s}/", self.prefix),
        };
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&list_prefix)
            .into_paginator()
            .send();
        let mut objects = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| ReadError::S3 {
                operation: "ListObjectsV2",
                bucket: self.bucket.clone(),
                key: list_prefix.clone(),
                message: crate::s3_error::describe(e),
            })?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                let Some(parsed) = ObjectKey::parse(&self.prefix, key) else {
                    continue;
                };
                if dates.is_some_and(|(from, to)| parsed.date.as_str() < from || parsed.date.as_str() > to) {
                    continue;
                }
                objects.push((key.to_owned(), parsed));
            }
        }
        objects.sort();
        Ok(objects)
    }

    /// The records of one object, in its order.
    pub async fn read_object(&self, key: &str) -> Result<Vec<ArchivedRecord>, ReadError> {
        let s3_error = |operation, message: String| ReadError::S3 {
            operation,
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            message,
        };
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_error("GetObject", crate::s3_error::describe(e)))?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| s3_error("GetObject", e.to_string()))?
            .into_bytes();
        decode(&body).map_err(|(line, reason)| ReadError::Malformed {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            line,
            reason,
        })
    }

    /// Every record of `stream` within `dates` (see [`ArchiveReader::objects`]), ordered by shard
    /// then sequence number. A position archived twice (which the archive stage never writes) is
    /// kept once and counted in the second value, so a caller can report it.
    pub async fn read_stream(
        &self,
        stream: Option<&str>,
        dates: Option<(&str, &str)>,
    ) -> Result<(Vec<ArchivedRecord>, usize), ReadError> {
        let mut records = Vec::new();
        for (key, _) in self.objects(stream, dates).await? {
            records.extend(self.read_object(&key).await?);
        }
        Ok(order_and_dedup(records))
    }
}

/// Decodes gzip NDJSON; the error is (line, reason).
pub(crate) fn decode(body: &[u8]) -> Result<Vec<ArchivedRecord>, (usize, String)> {
    let mut text = String::new();
    GzDecoder::new(body)
        .read_to_string(&mut text)
        .map_err(|e| (0, format!("not gzip text: {e}")))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| serde_json::from_str(line).map_err(|e| (i + 1, e.to_string())))
        .collect()
}

/// Sorts by stream, shard and sequence number (numerically), dropping repeated positions.
pub(crate) fn order_and_dedup(mut records: Vec<ArchivedRecord>) -> (Vec<ArchivedRecord>, usize) {
    let position = |r: &ArchivedRecord| {
        (
            r.stream.clone(),
            r.shard_id.clone(),
            SequenceNumber::parse(&r.sequence_number).ok(),
            r.sequence_number.clone(),
        )
    };
    records.sort_by_cached_key(position);
    let before = records.len();
    records.dedup_by(|a, b| a.stream == b.stream && a.shard_id == b.shard_id && a.sequence_number == b.sequence_number);
    let repeated = before - records.len();
    (records, repeated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{encode, runs};

    fn record(shard: &str, sequence: &str, arrival_ms: i64) -> ArchivedRecord {
        ArchivedRecord {
            stream: "s".into(),
            shard_id: shard.into(),
            sequence_number: sequence.into(),
            partition_key: "k".into(),
            arrival_ms,
            data: sequence.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_batch_splits_into_runs_per_hour_that_round_trip_through_gzip_ndjson() {
        let hour = 3_600_000;
        let batch = [
            record("a", "9", 10 * hour - 1),
            record("a", "10", 10 * hour - 1),
            record("a", "11", 10 * hour),
        ];
        let refs: Vec<&ArchivedRecord> = batch.iter().collect();
        let runs = runs(&refs);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].0.first_sequence, "9");
        assert_eq!(runs[1].0.first_sequence, "11");
        let body = encode(&runs[0].1).unwrap();
        assert_eq!(encode(&runs[0].1).unwrap(), body, "the encoding is deterministic");
        assert_eq!(decode(&body).unwrap(), batch[..2].to_vec());
        assert!(decode(b"not gzip").is_err());
    }

    #[test]
    fn records_are_ordered_numerically_and_repeats_counted() {
        let (records, repeated) = order_and_dedup(vec![
            record("a", "10", 0),
            record("a", "9", 0),
            record("a", "10", 0),
            record("b", "1", 0),
        ]);
        let positions: Vec<_> = records
            .iter()
            .map(|r| (r.shard_id.as_str(), r.sequence_number.as_str()))
            .collect();
        assert_eq!(positions, [("a", "9"), ("a", "10"), ("b", "1")]);
        assert_eq!(repeated, 1);
    }
}
