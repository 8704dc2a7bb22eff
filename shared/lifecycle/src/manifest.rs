//! The savepoint manifest (`manifest.json`) and S3 locations.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use crate::error::LifecycleError;

/// The `format` field of every savepoint manifest.
pub const SAVEPOINT_FORMAT: &str = "shardflow-savepoint";
/// The savepoint layout version this release writes: 2 added a shuffle downstream stage's
/// [`ShuffleStateFile`] per shard.
pub const SAVEPOINT_FORMAT_VERSION: u32 = 2;
/// The oldest savepoint layout version this release reads (version 1 has no shuffle state; its
/// shards restore as they did).
pub const MIN_SAVEPOINT_FORMAT_VERSION: u32 = 1;
/// The manifest's file name under the savepoint's prefix.
pub const MANIFEST_FILE: &str = "manifest.json";

/// A record on which user code failed, with its attempts so far (kept so that a poison record
/// is still dead-lettered after the same number of attempts once restored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureEntry {
    /// The failing record's sequence number.
    pub sequence_number: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The last failure's message.
    pub reason: String,
}

/// The shuffle state of a shard of a shuffle's downstream stage (`shardflow_shuffle::DownstreamState`:
/// its dedup marks and upstream watermarks, the checkpoint item's `shuffle_state` attribute,
/// stored as its bytes), one file beside the shard's state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShuffleStateFile {
    /// The file, relative to the savepoint's prefix.
    pub file: String,
    /// Its size in bytes.
    pub size: u64,
    /// XXH3-128 of the file, 32 hex digits.
    pub xxh3: String,
}

/// One shard of a savepoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// The Kinesis shard id.
    pub shard: String,
    /// The last sequence number the state covers (`None`: nothing of the shard committed yet
    /// beyond a failure record).
    pub sequence_number: Option<String>,
    /// The checkpoint `ver` the state was read at.
    pub version: u64,
    /// The engine checkpoint's epoch.
    pub epoch: u64,
    /// The shard engine's combined watermark (epoch ms; `i64::MIN` before any record).
    pub watermark: i64,
    /// The shard engine's processing time: the latest arrival time (Kinesis'
    /// `ApproximateArrivalTimestamp`, epoch ms) of a record the state covers; `i64::MIN` if
    /// unknown (none yet, or a manifest written before this field).
    #[serde(default = "unknown_time")]
    pub processing_time: i64,
    /// Key groups holding state, over all operators.
    pub key_groups: usize,
    /// Bytes of key-group state.
    pub state_bytes: u64,
    /// The record that failed last and its attempts, if any.
    pub failure: Option<FailureEntry>,
    /// The state file, relative to the savepoint's prefix.
    pub file: String,
    /// The file's size in bytes.
    pub size: u64,
    /// XXH3-128 of the file, 32 hex digits.
    pub xxh3: String,
    /// The shard's shuffle state, for a shuffle's downstream stage (format version 2; `None` for
    /// any other stage and in version 1).
    #[serde(default)]
    pub shuffle_state: Option<ShuffleStateFile>,
}

/// The barrier under which a savepoint was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyInfo {
    /// The function whose event source mappings were disabled, if any.
    pub paused_function: Option<String>,
    /// The mappings disabled for the read.
    pub paused_mappings: Vec<String>,
    /// Whether every shard's `ver` was also unchanged from before the first shard was read until
    /// after the last: the savepoint is then the state of the whole stage at one instant.
    pub single_cut: bool,
}

/// `manifest.json`: what a savepoint holds (see [`create_savepoint`](crate::create_savepoint), "Savepoint layout").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavepointManifest {
    /// Always [`SAVEPOINT_FORMAT`].
    pub format: String,
    /// The layout version, [`SAVEPOINT_FORMAT_VERSION`] for this release.
    pub format_version: u32,
    /// The engine checkpoint format version of the files (`SFCK` header).
    pub state_format_version: u16,
    /// When the savepoint was completed (epoch ms).
    pub created_at_ms: i64,
    /// The stage it was taken of.
    pub stage: String,
    /// The state table it was read from.
    pub table: String,
    /// The pipeline's name (from the checkpoints).
    pub pipeline: String,
    /// A version label of the pipeline's code given by the operator (e.g. a release or commit).
    pub pipeline_version: Option<String>,
    /// The pipeline's key-group count.
    pub max_key_groups: u16,
    /// How the savepoint was made consistent.
    pub consistency: ConsistencyInfo,
    /// Every shard, sorted by shard id.
    pub shards: Vec<ShardEntry>,
}

fn unknown_time() -> i64 {
    i64::MIN
}

/// How far before the savepoint a restored stage's mapping starts `AT_TIMESTAMP`
/// ([`SavepointManifest::resume_at_ms`]): arrival times are approximate, so it starts a minute
/// early and skips by sequence number what the savepoint covers.
pub const RESUME_MARGIN_MS: i64 = 60_000;

impl SavepointManifest {
    /// Total key-group state bytes.
    pub fn state_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.state_bytes).sum()
    }

    /// Where a restored stage's event source mapping can start `AT_TIMESTAMP` (epoch ms): the
    /// earliest latest-arrival time over the shards the savepoint covers, less
    /// [`RESUME_MARGIN_MS`]. Every record after the savepoint arrived at or after it (Kinesis'
    /// `AT_TIMESTAMP` starts at the first record whose arrival time is at or after the time
    /// given), and the stage skips the ones before by sequence number. `None` if a shard's time is
    /// unknown: start at `TRIM_HORIZON` then.
    pub fn resume_at_ms(&self) -> Option<i64> {
        let covered = self.shards.iter().filter(|s| s.sequence_number.is_some());
        let mut earliest: Option<i64> = None;
        for shard in covered {
            if shard.processing_time == i64::MIN {
                return None;
            }
            earliest = Some(earliest.map_or(shard.processing_time, |e| e.min(shard.processing_time)));
        }
        earliest.map(|t| t.saturating_sub(RESUME_MARGIN_MS).max(0))
    }
}

/// The checksum of a savepoint file (XXH3-128, 32 hex digits).
pub(crate) fn checksum(bytes: &[u8]) -> String {
    format!("{:032x}", xxh3_128(bytes))
}

/// The file name of a shard's state (shard ids are `shardId-` and digits; anything else is
/// escaped so that a name never leaves the prefix).
pub(crate) fn shard_file(shard: &str) -> String {
    let safe: String = shard
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("shards/{safe}-{:08x}.sfck", xxh3_128(shard.as_bytes()) as u32)
}

/// The file name of a shard's shuffle state: its state file's, ending `.shuffle`.
pub(crate) fn shuffle_state_file(shard: &str) -> String {
    let state = shard_file(shard);
    format!("{}.shuffle", state.trim_end_matches(".sfck"))
}

/// An S3 location: a bucket and a key prefix (without trailing slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The prefix (may be empty).
    pub prefix: String,
}

impl S3Location {
    /// A location from its parts; slashes around the prefix are trimmed.
    pub fn new(bucket: &str, prefix: &str) -> Self {
        S3Location {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        }
    }

    /// Parses `s3://bucket/prefix` (the prefix may be empty).
    pub fn parse(url: &str) -> Result<Self, LifecycleError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| LifecycleError::Invalid(format!("{url:?} is not an s3:// URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(LifecycleError::Invalid(format!("{url:?} names no bucket")));
        }
        Ok(S3Location::new(bucket, prefix))
    }

    /// The key of `name` under the prefix.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_parse_with_and_without_prefix() {
        let l = S3Location::parse("s3://b/savepoints/x/").unwrap();
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("b", "savepoints/x"));
        assert_eq!(l.key(MANIFEST_FILE), "savepoints/x/manifest.json");
        let l = S3Location::parse("s3://b").unwrap();
        assert_eq!(l.key(MANIFEST_FILE), "manifest.json");
        assert!(S3Location::parse("b/x").is_err());
        assert!(S3Location::parse("s3:///x").is_err());
    }

    #[test]
    fn a_restored_stage_resumes_a_margin_before_the_earliest_shard_and_an_old_manifest_reads() {
        let shard = |id: &str, seq: Option<&str>, processing_time: i64| {
            serde_json::json!({
                "shard": id, "sequence_number": seq, "version": 3, "epoch": 3, "watermark": 0,
                "processing_time": processing_time, "key_groups": 1, "state_bytes": 1,
                "failure": null, "file": "shards/x", "size": 1, "xxh3": "0"
            })
        };
        let manifest = |shards: Vec<serde_json::Value>| -> SavepointManifest {
            serde_json::from_value(serde_json::json!({
                "format": SAVEPOINT_FORMAT, "format_version": 1, "state_format_version": 1,
                "created_at_ms": 0, "stage": "s", "table": "t", "pipeline": "p", "pipeline_version": null,
                "max_key_groups": 128,
                "consistency": {"paused_function": null, "paused_mappings": [], "single_cut": true},
                "shards": shards
            }))
            .unwrap()
        };
        let m = manifest(vec![
            shard("shardId-0", Some("1"), 1_700_000_500_000),
            shard("shardId-1", Some("2"), 1_700_000_100_000),
            // a shard that never processed a record does not hold the start back
            shard("shardId-2", None, i64::MIN),
        ]);
        assert_eq!(m.resume_at_ms(), Some(1_700_000_100_000 - RESUME_MARGIN_MS));
        let unknown = manifest(vec![shard("shardId-0", Some("1"), i64::MIN)]);
        assert_eq!(unknown.resume_at_ms(), None, "unknown: start at TRIM_HORIZON");
        let mut old = serde_json::to_value(&m).unwrap();
        for s in old["shards"].as_array_mut().unwrap() {
            s.as_object_mut().unwrap().remove("processing_time");
        }
        let old: SavepointManifest = serde_json::from_value(old).unwrap();
        assert_eq!(old.shards[0].processing_time, i64::MIN);
        assert_eq!(old.resume_at_ms(), None);
    }

    /// The golden manifests of each format version (`tests/fixtures/savepoint_manifest_v*.json`).
    fn fixture(version: u32) -> serde_json::Value {
        let text = match version {
            1 => include_str!("../tests/fixtures/savepoint_manifest_v1.json"),
            _ => include_str!("../tests/fixtures/savepoint_manifest_v2.json"),
        };
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn the_version_2_manifest_names_a_downstream_shards_shuffle_state_file_and_writes_back_byte_for_byte() {
        let golden = fixture(2);
        let m: SavepointManifest = serde_json::from_value(golden.clone()).unwrap();
        assert_eq!(m.format_version, SAVEPOINT_FORMAT_VERSION);
        let shuffle = m.shards[0].shuffle_state.as_ref().expect("the shuffle state file");
        assert_eq!(shuffle.file, "shards/shardId-000000000000-1a2b3c4d.shuffle");
        assert_eq!(
            (shuffle.size, shuffle.xxh3.as_str()),
            (187, "fedcba9876543210fedcba9876543210")
        );
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            golden,
            "the format this release writes"
        );
    }

    #[test]
    fn a_version_1_manifest_reads_with_no_shuffle_state() {
        let m: SavepointManifest = serde_json::from_value(fixture(1)).unwrap();
        assert_eq!(m.format_version, MIN_SAVEPOINT_FORMAT_VERSION);
        assert_eq!(m.shards[0].shuffle_state, None);
        assert_eq!(m.shards[0].sequence_number.as_deref().map(str::len), Some(56));
    }

    #[test]
    fn a_shards_shuffle_state_file_sits_beside_its_state_file() {
        let state = shard_file("shardId-000000000003");
        assert_eq!(
            shuffle_state_file("shardId-000000000003"),
            format!("{}.shuffle", state.trim_end_matches(".sfck"))
        );
        assert_ne!(shuffle_state_file("shardId-000000000003"), state);
    }

    #[test]
    fn shard_files_stay_under_the_prefix_and_are_distinct() {
        assert!(shard_file("shardId-000000000001").starts_with("shards/shardId-000000000001-"));
        let odd = shard_file("../../x");
        assert!(!odd.contains(".."), "{odd}");
        assert_ne!(shard_file("a/b"), shard_file("a_b"));
    }
}
