//! Key groups too large for an item, kept in S3 (see the crate documentation, "Large state").

use aws_sdk_s3::primitives::ByteStream;
use xxhash_rust::xxh3::xxh3_128;

use crate::error::StoreError;

/// Where large key groups go: an S3 bucket (and its client).
#[derive(Clone, Debug)]
pub struct SpillBucket {
    client: aws_sdk_s3::Client,
    bucket: String,
}

/// The pointer a slot item holds instead of the state of a spilled key group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SpillPointer {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// XXH3-128 of the bytes, 32 hex digits.
    pub checksum: String,
}

/// The checksum stored in a [`SpillPointer`].
pub(crate) fn checksum(bytes: &[u8]) -> String {
    format!("{:032x}", xxh3_128(bytes))
}

/// The object key of one spilled key group: `state/{stage}/{operator}/{group}/{shard}/v{version}-{checksum}`.
///
/// The version makes it unique per commit; the checksum makes a stale invocation that writes the
/// same version with other content (and then loses the flip) write another object instead of
/// overwriting the committed one.
pub(crate) fn object_key(stage: &str, operator: &str, group: u16, shard: &str, version: u64, checksum: &str) -> String {
    format!("state/{stage}/{operator}/{group}/{shard}/v{version}-{checksum}")
}

impl SpillBucket {
    /// Spill to `bucket` through `client`.
    pub fn new(client: aws_sdk_s3::Client, bucket: &str) -> Self {
        SpillBucket {
            client,
            bucket: bucket.to_owned(),
        }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub(crate) async fn put(&self, key: &str, bytes: &[u8]) -> Result<SpillPointer, StoreError> {
        let sum = checksum(bytes);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(bytes.to_vec()))
            .send()
            .await
            .map_err(|e| StoreError::s3("PutObject", e))?;
        Ok(SpillPointer {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            size: bytes.len() as u64,
            checksum: sum,
        })
    }

    /// Reads the object `pointer` names and verifies its size and checksum.
    pub(crate) async fn get(&self, pointer: &SpillPointer) -> Result<Vec<u8>, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&pointer.bucket)
            .key(&pointer.key)
            .send()
            .await
            .map_err(|e| StoreError::s3("GetObject", e))?;
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::s3("GetObject", e))?
            .into_bytes()
            .to_vec();
        if bytes.len() as u64 != pointer.size || checksum(&bytes) != pointer.checksum {
            return Err(StoreError::SpillChecksum {
                key: pointer.key.clone(),
                expected: format!("{} bytes, xxh3 {}", pointer.size, pointer.checksum),
                found: format!("{} bytes, xxh3 {}", bytes.len(), checksum(&bytes)),
            });
        }
        Ok(bytes)
    }

    /// Deletes `key` (best effort: a failure is logged, the lifecycle rule removes what is left).
    pub(crate) async fn delete(&self, key: &str) {
        if let Err(e) = self.client.delete_object().bucket(&self.bucket).key(key).send().await {
            tracing::warn!(bucket = %self.bucket, %key, error = %StoreError::s3("DeleteObject", e), "superseded state object not deleted");
        }
    }
}
