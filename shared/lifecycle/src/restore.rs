//! `restore_savepoint`: seeds a stage's state from a savepoint, in the store's own format.
//!
//! # Restore
//! [`restore_savepoint`] reads the manifest, refuses a savepoint of another savepoint format,
//! state format, pipeline, pipeline version or key-group count than the caller expects
//! ([`RestoreExpectations`]), reads every file and verifies its size, checksum and header (all of
//! them before anything is written), refuses to write over a stage that has any state unless
//! forced, and then commits each shard's checkpoint through the store itself
//! (`DynamoDbCheckpointStore::commit_with_failure`, `ver` 1, large groups spilled to the given
//! bucket) — the target table holds exactly what a stage that processed the same records would
//! have committed. `Stage::handle` of the new stage loads it, restores the engine, and skips by
//! sequence number every record at or before the savepoint's position; an event source mapping
//! started `AT_TIMESTAMP` slightly before the savepoint
//! ([`SavepointManifest::resume_at_ms`]: each shard's manifest entry records the arrival time of
//! the last record its state covers; mappings cannot start at a sequence number) therefore continues exactly where the old stage stopped. A restore is atomic per
//! shard, not across shards: if it fails part way, rerun it with `force`.
//!
//! # With the new pipeline
//! Given the pipeline the stage will run ([`RestoreOptions::pipeline`], a
//! [`CheckTarget`]), the restore applies the rule of every restore before anything is written:
//! each shard's image is restored into the pipeline as a dry run; state of an operator the
//! pipeline does not have refuses the whole restore ([`LifecycleError::RestoreRefused`], naming
//! the operators) unless [`RestoreOptions::allow_dropped_state`] is set, in which case that state
//! is left out of what is written — so the stage, strict by default, restores what the savepoint
//! restore accepted. An image that does not restore at all (damaged, another pipeline) refuses it
//! too. Without a pipeline the savepoint is copied as it is and the stage's own restore applies
//! the rule at its first load.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use shardflow_engine::checkpoint::{FORMAT_VERSION, MIN_FORMAT_VERSION};
use shardflow_engine::{Checkpoint, CheckpointImage};
use shardflow_stage::SequenceNumber;
use shardflow_state_dynamodb::{DynamoDbCheckpointStore, RecordFailure, SpillBucket, MAX_INLINE_STATE_BYTES};

use crate::check::CheckTarget;
use crate::error::LifecycleError;
use crate::manifest::{
    checksum, S3Location, SavepointManifest, ShardEntry, MANIFEST_FILE, MIN_SAVEPOINT_FORMAT_VERSION, SAVEPOINT_FORMAT,
    SAVEPOINT_FORMAT_VERSION,
};
use crate::shards::{check_stage_name, delete_stage, stage_has_state};
pub use crate::shuffle::ShuffleTarget;

/// What the caller requires of the savepoint; `None` accepts any value. The formats are always
/// checked against what this release reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreExpectations {
    /// The pipeline's name.
    pub pipeline: Option<String>,
    /// The pipeline's version label.
    pub pipeline_version: Option<String>,
    /// The key-group count.
    pub max_key_groups: Option<u16>,
}

/// What to restore where.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The savepoint.
    pub savepoint: S3Location,
    /// The stage to seed.
    pub stage: String,
    /// Its state table.
    pub table: String,
    /// Where key groups too large for an item go (needed only if the savepoint has such groups).
    pub spill_bucket: Option<String>,
    /// Refusals.
    pub expect: RestoreExpectations,
    /// Delete the stage's existing state first instead of refusing.
    pub force: bool,
    /// Shards written at once (default 8).
    pub concurrency: usize,
    /// The pipeline the stage will run: each shard is dry-run restored into it first (see the
    /// module documentation). `None`: copied as it is.
    pub pipeline: Option<Arc<CheckTarget>>,
    /// With a pipeline: leave out the state of operators it does not have instead of refusing.
    pub allow_dropped_state: bool,
    /// For a shuffle's downstream stage that will read another shuffle stream than the saved
    /// stage did (a blue/green copy's own): each shard goes under the target's open shard owning
    /// the same key groups, without its position (see `shuffle`). `None`: shard ids and
    /// positions as saved.
    pub shuffle_target: Option<ShuffleTarget>,
}

impl RestoreOptions {
    /// Options with no expectations, no spill bucket, not forced.
    pub fn new(savepoint: S3Location, stage: &str, table: &str) -> Self {
        RestoreOptions {
            savepoint,
            stage: stage.to_owned(),
            table: table.to_owned(),
            spill_bucket: None,
            expect: RestoreExpectations::default(),
            force: false,
            concurrency: 8,
            pipeline: None,
            allow_dropped_state: false,
            shuffle_target: None,
        }
    }
}

/// What a restore wrote.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The savepoint's manifest.
    pub manifest: SavepointManifest,
    /// Items deleted first (with `force`).
    pub items_deleted: usize,
    /// Items written (slot items and checkpoint items).
    pub items_written: usize,
    /// Bytes of key-group state written.
    pub bytes_written: usize,
    /// Key groups spilled to S3.
    pub objects_written: usize,
    /// Time from the start to the last shard committed.
    pub elapsed: Duration,
}

/// One shard read back and verified.
pub(crate) struct ShardState {
    pub(crate) entry: ShardEntry,
    pub(crate) checkpoint: Checkpoint,
    pub(crate) sequence_number: Option<SequenceNumber>,
    pub(crate) failure: Option<RecordFailure>,
    /// The shard's shuffle state (a shuffle's downstream stage), verified against the manifest.
    pub(crate) shuffle_state: Option<Vec<u8>>,
    /// The shard it is restored as (the saved shard, or a shuffle target's shard).
    pub(crate) target_shard: String,
}

/// Reads `options.savepoint` and seeds `options.stage` in `options.table` with it.
pub async fn restore_savepoint(
    dynamodb: &aws_sdk_dynamodb::Client,
    s3: &aws_sdk_s3::Client,
    options: &RestoreOptions,
) -> Result<RestoreReport, LifecycleError> {
    check_stage_name(&options.stage)?;
    let started = Instant::now();
    let manifest = read_manifest(s3, &options.savepoint).await?;
    check_manifest(&options.savepoint, &manifest, &options.expect)?;
    let shards: Vec<ShardState> = stream::iter(
        manifest
            .shards
            .iter()
            .map(|entry| read_shard(s3, &options.savepoint, &manifest, entry)),
    )
    .buffered(options.concurrency.max(1))
    .try_collect()
    .await?;
    let mut shards = shards;
    if let Some(target) = &options.shuffle_target {
        let map = target.shard_map(manifest.max_key_groups).await?;
        crate::shuffle::assign_shards(&options.savepoint.to_string(), &mut shards, &map)?;
    }
    if let Some(target) = &options.pipeline {
        for shard in &mut shards {
            apply_restore_rule(options, target, shard)?;
        }
    }
    if options.spill_bucket.is_none() {
        let large = shards.iter().find_map(|s| {
            s.checkpoint
                .operators
                .iter()
                .flat_map(|o| o.key_groups.iter().map(move |g| (&o.operator, g)))
                .find(|(_, g)| g.bytes.len() > MAX_INLINE_STATE_BYTES)
                .map(|(op, g)| (s.entry.shard.clone(), op.clone(), g.key_group, g.bytes.len()))
        });
        if let Some((shard, operator, group, bytes)) = large {
            return Err(LifecycleError::Invalid(format!(
                "key group {group} of {operator} (shard {shard}) is {bytes} bytes, over the inline limit of \
                 {MAX_INLINE_STATE_BYTES}: give a spill bucket (--bucket)"
            )));
        }
    }
    let existing = stage_has_state(dynamodb, &options.table, &options.stage).await?;
    let mut items_deleted = 0;
    if existing > 0 {
        if !options.force {
            return Err(LifecycleError::TargetNotEmpty {
                stage: options.stage.clone(),
                table: options.table.clone(),
                items: existing,
            });
        }
        items_deleted = delete_stage(dynamodb, s3, &options.table, &options.stage).await?;
        tracing::warn!(stage = %options.stage, table = %options.table, items = items_deleted, "existing state deleted (--force)");
    }
    let spill = options.spill_bucket.as_deref().map(|b| SpillBucket::new(s3.clone(), b));
    let stats: Vec<shardflow_state_dynamodb::CommitStats> = stream::iter(shards.iter().map(|s| {
        let spill = spill.clone();
        async move {
            let mut store =
                DynamoDbCheckpointStore::new(dynamodb.clone(), &options.table, &options.stage, &s.target_shard)
                    .with_spill_bucket(spill);
            let loaded = store.load().await?;
            if loaded.version != 0 {
                return Err(LifecycleError::TargetNotEmpty {
                    stage: options.stage.clone(),
                    table: options.table.clone(),
                    items: 1,
                });
            }
            store.set_shuffle_state(s.shuffle_state.clone());
            let stats = store
                .commit_with_failure(&s.checkpoint, s.sequence_number.as_ref(), s.failure.as_ref())
                .await?;
            Ok::<_, LifecycleError>(stats)
        }
    }))
    .buffer_unordered(options.concurrency.max(1))
    .try_collect()
    .await?;
    let report = RestoreReport {
        items_deleted,
        items_written: stats.iter().map(|s| s.items_written).sum(),
        bytes_written: stats.iter().map(|s| s.bytes_written).sum(),
        objects_written: stats.iter().map(|s| s.objects_written).sum(),
        manifest,
        elapsed: started.elapsed(),
    };
    tracing::info!(stage = %options.stage, table = %options.table, shards = report.manifest.shards.len(),
        items = report.items_written, "savepoint restored");
    Ok(report)
}

/// Dry-runs the restore of `shard` into `target`: refuses state of operators the pipeline does
/// not have unless `options.allow_dropped_state`, and then leaves it out of the checkpoint.
fn apply_restore_rule(
    options: &RestoreOptions,
    target: &CheckTarget,
    shard: &mut ShardState,
) -> Result<(), LifecycleError> {
    let report = target.dry_run(&CheckpointImage::new(shard.checkpoint.clone()))?;
    let dropped: BTreeSet<String> = report.dropped().into_iter().map(str::to_owned).collect();
    if dropped.is_empty() {
        return Ok(());
    }
    if !options.allow_dropped_state {
        return Err(LifecycleError::RestoreRefused {
            savepoint: options.savepoint.to_string(),
            target: target.name().to_owned(),
            shard: shard.entry.shard.clone(),
            unmatched: dropped.into_iter().collect(),
            starts_empty: report.starts_empty().into_iter().map(str::to_owned).collect(),
        });
    }
    tracing::warn!(shard = %shard.entry.shard, target = target.name(), dropped = ?dropped,
        "savepoint restore: state of operators the pipeline does not have is left out");
    let schemas_of_dropped: BTreeSet<String> = dropped
        .iter()
        .map(|id| format!("{}{id}", shardflow_engine::schema::SCHEMA_ENTRY_PREFIX))
        .collect();
    shard
        .checkpoint
        .operators
        .retain(|o| !dropped.contains(&o.operator) && !schemas_of_dropped.contains(&o.operator));
    Ok(())
}

async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, LifecycleError> {
    let out = match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
        Err(e) => return Err(LifecycleError::aws("S3", "GetObject", e)),
    };
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| LifecycleError::aws("S3", "GetObject", e))?
        .into_bytes()
        .to_vec();
    Ok(Some(bytes))
}

/// Reads and parses `manifest.json` of a savepoint.
pub(crate) async fn read_manifest(
    s3: &aws_sdk_s3::Client,
    location: &S3Location,
) -> Result<SavepointManifest, LifecycleError> {
    let key = location.key(MANIFEST_FILE);
    let Some(bytes) = get(s3, &location.bucket, &key).await? else {
        return Err(LifecycleError::Refused {
            location: location.to_string(),
            reason: format!("no {MANIFEST_FILE}: not a savepoint, or an incomplete one"),
        });
    };
    serde_json::from_slice(&bytes).map_err(|e| LifecycleError::Refused {
        location: location.to_string(),
        reason: format!("{MANIFEST_FILE} is not a savepoint manifest: {e}"),
    })
}

/// Refuses a manifest of another format or another pipeline than expected.
pub(crate) fn check_manifest(
    location: &S3Location,
    m: &SavepointManifest,
    expect: &RestoreExpectations,
) -> Result<(), LifecycleError> {
    let refuse = |reason: String| {
        Err(LifecycleError::Refused {
            location: location.to_string(),
            reason,
        })
    };
    if m.format != SAVEPOINT_FORMAT {
        return refuse(format!("format {:?}, not {SAVEPOINT_FORMAT:?}", m.format));
    }
    if !(MIN_SAVEPOINT_FORMAT_VERSION..=SAVEPOINT_FORMAT_VERSION).contains(&m.format_version) {
        return refuse(format!(
            "savepoint format version {}; this release reads versions {MIN_SAVEPOINT_FORMAT_VERSION} to \
             {SAVEPOINT_FORMAT_VERSION}",
            m.format_version
        ));
    }
    if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&m.state_format_version) {
        return refuse(format!(
            "state format version {}; this release reads versions {MIN_FORMAT_VERSION} to {FORMAT_VERSION}",
            m.state_format_version
        ));
    }
    if let Some(p) = &expect.pipeline {
        if &m.pipeline != p {
            return refuse(format!("it is of pipeline {:?}, expected {p:?}", m.pipeline));
        }
    }
    if let Some(v) = &expect.pipeline_version {
        if m.pipeline_version.as_ref() != Some(v) {
            return refuse(format!(
                "it is of pipeline version {:?}, expected {v:?}",
                m.pipeline_version
            ));
        }
    }
    if let Some(k) = expect.max_key_groups {
        if m.max_key_groups != k {
            return refuse(format!(
                "it has {} key groups, expected {k}; the key-group count is fixed for a pipeline's life \
                 (state cannot be redistributed)",
                m.max_key_groups
            ));
        }
    }
    if m.shards.is_empty() {
        return refuse("it holds no shard".into());
    }
    Ok(())
}

/// Reads the savepoint's file `name` and verifies its size and checksum against the manifest's.
async fn read_verified(
    s3: &aws_sdk_s3::Client,
    location: &S3Location,
    name: &str,
    size: u64,
    xxh3: &str,
) -> Result<Vec<u8>, LifecycleError> {
    let key = location.key(name);
    let corrupt = |reason: String| LifecycleError::Corrupt {
        location: format!("s3://{}/{key}", location.bucket),
        reason,
    };
    let bytes = get(s3, &location.bucket, &key)
        .await?
        .ok_or_else(|| corrupt("missing".into()))?;
    if bytes.len() as u64 != size || checksum(&bytes) != xxh3 {
        return Err(corrupt(format!(
            "expected {size} bytes with xxh3 {xxh3}, found {} bytes with xxh3 {}",
            bytes.len(),
            checksum(&bytes)
        )));
    }
    Ok(bytes)
}

/// Reads one shard's files and verifies them against the manifest.
pub(crate) async fn read_shard(
    s3: &aws_sdk_s3::Client,
    location: &S3Location,
    manifest: &SavepointManifest,
    entry: &ShardEntry,
) -> Result<ShardState, LifecycleError> {
    let file = format!("s3://{}/{}", location.bucket, location.key(&entry.file));
    let corrupt = |reason: String| LifecycleError::Corrupt {
        location: file.clone(),
        reason,
    };
    let bytes = read_verified(s3, location, &entry.file, entry.size, &entry.xxh3).await?;
    let checkpoint = Checkpoint::decode(&bytes)?;
    if checkpoint.pipeline != manifest.pipeline || checkpoint.max_key_groups != manifest.max_key_groups {
        return Err(corrupt(format!(
            "state of {}/{} key groups in a savepoint of {}/{}",
            checkpoint.pipeline, checkpoint.max_key_groups, manifest.pipeline, manifest.max_key_groups
        )));
    }
    if !checkpoint.full || checkpoint.epoch != entry.epoch {
        return Err(corrupt(format!(
            "not the full checkpoint of epoch {} the manifest names",
            entry.epoch
        )));
    }
    let sequence_number = entry
        .sequence_number
        .as_deref()
        .map(SequenceNumber::parse)
        .transpose()
        .map_err(|e| corrupt(e.to_string()))?;
    let failure = match &entry.failure {
        Some(f) => Some(RecordFailure {
            sequence_number: SequenceNumber::parse(&f.sequence_number).map_err(|e| corrupt(e.to_string()))?,
            attempts: f.attempts,
            reason: f.reason.clone(),
        }),
        None => None,
    };
    let shuffle_state = match &entry.shuffle_state {
        Some(f) => Some(read_verified(s3, location, &f.file, f.size, &f.xxh3).await?),
        None => None,
    };
    Ok(ShardState {
        target_shard: entry.shard.clone(),
        entry: entry.clone(),
        checkpoint,
        sequence_number,
        failure,
        shuffle_state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ConsistencyInfo;

    fn manifest() -> SavepointManifest {
        SavepointManifest {
            format: SAVEPOINT_FORMAT.into(),
            format_version: SAVEPOINT_FORMAT_VERSION,
            state_format_version: FORMAT_VERSION,
            created_at_ms: 0,
            stage: "s".into(),
            table: "t".into(),
            pipeline: "revenue".into(),
            pipeline_version: Some("v1".into()),
            max_key_groups: 128,
            consistency: ConsistencyInfo {
                paused_function: None,
                paused_mappings: vec![],
                single_cut: true,
            },
            shards: vec![ShardEntry {
                shard: "shardId-0".into(),
                sequence_number: Some("1".into()),
                version: 1,
                epoch: 1,
                watermark: 0,
                processing_time: 1_700_000_000_000,
                key_groups: 1,
                state_bytes: 1,
                failure: None,
                file: "shards/x".into(),
                size: 1,
                xxh3: "0".into(),
                shuffle_state: None,
            }],
        }
    }

    fn refused(m: &SavepointManifest, e: &RestoreExpectations) -> String {
        match check_manifest(&S3Location::new("b", "p"), m, e) {
            Err(LifecycleError::Refused { reason, .. }) => reason,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn manifests_are_checked_against_the_formats_and_the_expectations() {
        let loc = S3Location::new("b", "p");
        let any = RestoreExpectations::default();
        check_manifest(&loc, &manifest(), &any).unwrap();
        let exact = RestoreExpectations {
            pipeline: Some("revenue".into()),
            pipeline_version: Some("v1".into()),
            max_key_groups: Some(128),
        };
        check_manifest(&loc, &manifest(), &exact).unwrap();

        let mut m = manifest();
        m.format_version = SAVEPOINT_FORMAT_VERSION + 1;
        assert!(refused(&m, &any).contains(&format!("savepoint format version {}", SAVEPOINT_FORMAT_VERSION + 1)));
        let mut m = manifest();
        m.format_version = MIN_SAVEPOINT_FORMAT_VERSION;
        check_manifest(&loc, &m, &any).expect("a version 1 savepoint still restores");
        let mut m = manifest();
        m.state_format_version = FORMAT_VERSION + 1;
        assert!(refused(&m, &any).contains("state format version"));
        let mut m = manifest();
        m.format = "other".into();
        assert!(refused(&m, &any).contains("format \"other\""));
        let e = RestoreExpectations {
            max_key_groups: Some(64),
            ..any.clone()
        };
        assert!(refused(&manifest(), &e).contains("128 key groups, expected 64"));
        let e = RestoreExpectations {
            pipeline: Some("orders".into()),
            ..any.clone()
        };
        assert!(refused(&manifest(), &e).contains("pipeline \"revenue\", expected \"orders\""));
        let e = RestoreExpectations {
            pipeline_version: Some("v2".into()),
            ..any.clone()
        };
        assert!(refused(&manifest(), &e).contains("expected \"v2\""));
        let mut m = manifest();
        m.shards.clear();
        assert!(refused(&m, &any).contains("no shard"));
    }
}
