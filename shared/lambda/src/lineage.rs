//! Shard lineage: which shards a shard was split or merged from, and which hash keys it owns.

use std::collections::HashMap;
use std::future::Future;
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::sync::Mutex;

use thiserror::Error;

/// One shard as Kinesis describes it (`ListShards`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// The shard id.
    pub shard_id: String,
    /// `ParentShardId` and `AdjacentParentShardId` (none for an original shard, one after a split,
    /// two after a merge).
    pub parents: Vec<String>,
    /// The hash keys it owns: Kinesis routes a record to the shard whose range holds
    /// MD5(partition key) read as a 128-bit big-endian integer.
    pub hash_key_range: RangeInclusive<u128>,
}

/// Why the lineage of a shard could not be read.
#[derive(Debug, Error)]
pub enum LineageError {
    /// Kinesis refused or failed `ListShards`.
    #[error("Kinesis {operation} failed: {message}")]
    Kinesis {
        /// The API call.
        operation: &'static str,
        /// The SDK's error.
        message: String,
    },
    /// Kinesis answered with a shard description that is not well formed.
    #[error("shard {shard}: {reason}")]
    Malformed {
        /// The shard.
        shard: String,
        /// What is wrong.
        reason: String,
    },
}

/// The future of [`ShardLineage::shard`].
pub type ShardFuture<'a> = Pin<Box<dyn Future<Output = Result<Option<ShardInfo>, LineageError>> + Send + 'a>>;

/// Where a stage learns the lineage of its shards.
pub trait ShardLineage: Send + Sync {
    /// The description of `shard_id`, or `None` if the stream has no such shard.
    fn shard<'a>(&'a self, shard_id: &'a str) -> ShardFuture<'a>;

    /// The other children of `shard`'s parents (a split's second child; none after a merge or
    /// for an original shard), among the shards this lineage has read. A split makes both
    /// children at once, so once [`ShardLineage::shard`] found one, both are known.
    fn siblings(&self, shard: &ShardInfo) -> Vec<String> {
        let _ = shard;
        Vec::new()
    }
}

/// The shards of `known` other than `shard` with the same parents as `shard` (none if it has
/// none), in shard id order.
fn siblings_among<'a>(known: impl Iterator<Item = &'a ShardInfo>, shard: &ShardInfo) -> Vec<String> {
    if shard.parents.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<String> = known
        .filter(|s| s.shard_id != shard.shard_id && s.parents == shard.parents)
        .map(|s| s.shard_id.clone())
        .collect();
    out.sort();
    out
}

/// A fixed lineage (unit tests, and streams that are never resharded: [`FixedLineage::default`]
/// knows no shard, so every shard is an original one).
#[derive(Debug, Clone, Default)]
pub struct FixedLineage {
    shards: HashMap<String, ShardInfo>,
}

impl FixedLineage {
    /// A lineage of the given shards.
    pub fn new(shards: impl IntoIterator<Item = ShardInfo>) -> Self {
        FixedLineage {
            shards: shards.into_iter().map(|s| (s.shard_id.clone(), s)).collect(),
        }
    }
}

impl ShardLineage for FixedLineage {
    fn shard<'a>(&'a self, shard_id: &'a str) -> ShardFuture<'a> {
        Box::pin(async move { Ok(self.shards.get(shard_id).cloned()) })
    }

    fn siblings(&self, shard: &ShardInfo) -> Vec<String> {
        siblings_among(self.shards.values(), shard)
    }
}

/// The lineage of a Kinesis stream's shards, read with `ListShards` and cached (a shard's parents
/// and range never change; an unknown shard makes it list again).
#[derive(Debug)]
pub struct KinesisLineage {
    client: aws_sdk_kinesis::Client,
    stream: String,
    cache: Mutex<HashMap<String, ShardInfo>>,
}

impl KinesisLineage {
    /// The lineage of `stream` (its name or ARN).
    pub fn new(client: aws_sdk_kinesis::Client, stream: &str) -> Self {
        KinesisLineage {
            client,
            stream: stream.to_owned(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, shard_id: &str) -> Option<ShardInfo> {
        self.cache.lock().ok().and_then(|c| c.get(shard_id).cloned())
    }

    async fn list(&self) -> Result<Vec<ShardInfo>, LineageError> {
        let mut shards = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let request = match &next {
                Some(token) => self.client.list_shards().next_token(token),
                None if self.stream.starts_with("arn:") => self.client.list_shards().stream_arn(&self.stream),
                None => self.client.list_shards().stream_name(&self.stream),
            };
            let out = request.send().await.map_err(|e| LineageError::Kinesis {
                operation: "ListShards",
                message: format!("{}", aws_sdk_kinesis::error::DisplayErrorContext(e)),
            })?;
            for s in out.shards() {
                let range = s.hash_key_range();
                let parse = |v: Option<&str>, what: &str| {
                    v.and_then(|v| v.parse::<u128>().ok())
                        .ok_or_else(|| LineageError::Malformed {
                            shard: s.shard_id().to_owned(),
                            reason: format!("{what} hash key is not a 128-bit number"),
                        })
                };
                let start = parse(range.map(|r| r.starting_hash_key()), "starting")?;
                let end = parse(range.map(|r| r.ending_hash_key()), "ending")?;
                shards.push(ShardInfo {
                    shard_id: s.shard_id().to_owned(),
                    parents: s
                        .parent_shard_id()
                        .into_iter()
                        .chain(s.adjacent_parent_shard_id())
                        .map(str::to_owned)
                        .collect(),
                    hash_key_range: start..=end,
                });
            }
            next = out.next_token().map(str::to_owned);
            if next.is_none() {
                return Ok(shards);
            }
        }
    }
}

impl ShardLineage for KinesisLineage {
    fn shard<'a>(&'a self, shard_id: &'a str) -> ShardFuture<'a> {
        Box::pin(async move {
            if let Some(info) = self.cached(shard_id) {
                return Ok(Some(info));
            }
            let shards = self.list().await?;
            if let Ok(mut cache) = self.cache.lock() {
                for s in &shards {
                    cache.insert(s.shard_id.clone(), s.clone());
                }
            }
            Ok(shards.into_iter().find(|s| s.shard_id == shard_id))
        })
    }

    fn siblings(&self, shard: &ShardInfo) -> Vec<String> {
        self.cache
            .lock()
            .map(|cache| siblings_among(cache.values(), shard))
            .unwrap_or_default()
    }
}

/// The hash key Kinesis routes `partition_key` by: MD5 of its UTF-8 bytes, big-endian.
pub fn hash_key(partition_key: &str) -> u128 {
    use md5::Digest;
    u128::from_be_bytes(md5::Md5::digest(partition_key.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_keys_are_the_md5_of_the_partition_key_big_endian() {
        // md5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(hash_key(""), 0xd41d8cd98f00b204e9800998ecf8427e);
    }

    #[tokio::test]
    async fn a_fixed_lineage_answers_what_it_was_given() {
        let child = ShardInfo {
            shard_id: "shardId-000000000001".into(),
            parents: vec!["shardId-000000000000".into()],
            hash_key_range: 0..=u128::MAX / 2,
        };
        let lineage = FixedLineage::new([child.clone()]);
        assert_eq!(lineage.shard("shardId-000000000001").await.unwrap(), Some(child));
        assert_eq!(lineage.shard("shardId-000000000009").await.unwrap(), None);
    }

    #[test]
    fn a_split_childs_sibling_is_the_other_child_and_a_merge_child_has_none() {
        let shard = |id: &str, parents: &[&str]| ShardInfo {
            shard_id: id.into(),
            parents: parents.iter().map(|p| (*p).to_owned()).collect(),
            hash_key_range: 0..=1,
        };
        let lineage = FixedLineage::new([
            shard("s0", &[]),
            shard("s1", &[]),
            shard("s2", &["s0"]),
            shard("s3", &["s0"]),
            shard("s4", &["s1", "s2"]),
        ]);
        assert_eq!(lineage.siblings(&shard("s2", &["s0"])), vec!["s3".to_owned()]);
        assert_eq!(lineage.siblings(&shard("s3", &["s0"])), vec!["s2".to_owned()]);
        assert!(lineage.siblings(&shard("s4", &["s1", "s2"])).is_empty());
        assert!(lineage.siblings(&shard("s1", &[])).is_empty());
    }
}
