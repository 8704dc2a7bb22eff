//! `create_savepoint`: every shard's committed state, read consistently, written to S3 with a
//! manifest.
//!
//! # Savepoint layout
//! Under `s3://{bucket}/{prefix}/`:
//! - `shards/{n}.sfck`, one file per shard that has a checkpoint item (open and closed shards
//!   alike, so children that have not committed yet can still adopt their parents' state after a
//!   restore): the shard's complete committed state as one *full* engine checkpoint in the
//!   engine's own versioned encoding (`SFCK`, [`shardflow_engine::Checkpoint::encode`]) — engine
//!   state (watermarks of every partition, counters), every operator's meta state, and every key
//!   group (timers live inside the key groups). Spilled key groups are read from S3, their
//!   checksum verified by the store, and inlined.
//! - `manifest.json` ([`SavepointManifest`]), written **last**: the savepoint's commit point. A
//!   prefix without a manifest is an incomplete savepoint and is never restored. It holds the
//!   savepoint format version, the engine's state format version, the pipeline's name and an
//!   optional version label, the key-group count, and per shard its position (sequence number),
//!   checkpoint `ver`, epoch, watermark, pending poison-record attempts, and the file's size and
//!   XXH3-128 checksum.
//! - `shards/{n}.shuffle` (format version 2), for a shard of a shuffle's downstream stage: its
//!   `shuffle_state` attribute as stored (`shardflow_shuffle::DownstreamState`, postcard: the
//!   per-upstream-shard dedup marks and watermarks), read at the same `ver` as the state; named
//!   with its size and checksum by the shard's manifest entry ([`ShuffleStateFile`]).
//!
//! # A shuffle's two stages
//! The upstream stage (`*-keyby`) holds no keyed state and no partial aggregates across batches
//! (a lifted combiner is made and flushed within one batch), only its engine's watermarks and
//! its positions, which an ordinary savepoint carries. The downstream stage's savepoint carries
//! its shuffle state. The two savepoints fit together when the downstream's dedup marks reach
//! what the upstream's savepoint positions cover and no further: save the upstream first with
//! its mappings left disabled (`leave_disabled`), let the downstream consume the shuffle stream
//! to its end, save the downstream, enable the upstream again. A restored upstream then sends
//! only records after its positions, all above the restored marks. (Marks *above* the upstream's
//! positions — the downstream saved later while the upstream ran on — are also exact for an
//! unlifted pipeline: the restored upstream re-sends those records with the same ids and the
//! marks drop them; with combiner lifting a partial's id depends on the batch cut, so a re-sent
//! batch cut differently could be counted twice. Marks *below* them lose the records in
//! between: they were sent to the old shuffle stream only.)
//!
//! # Consistency
//! A shard's state changes only when its checkpoint item flips to the next `ver` (the store's
//! commit point); the slot items a manifest names are written once and never modified. Reading a
//! shard is therefore consistent when its `ver` is the same before and after the read: the
//! savepoint reads `ver` (strongly consistent), loads the checkpoint and its slots (the store's
//! `load`, which refuses slots of another version and spilled objects of another checksum),
//! and reads `ver` again. If a commit slipped in between, the shard is read again (up to
//! [`SavepointOptions::max_attempts`] times), then the savepoint fails with
//! [`LifecycleError::Moving`]. So **every shard's file is exactly a committed state at a batch
//! boundary**, even when the stage is not paused. That is all a restore needs: a shard's state
//! depends only on its own records (keys never span shards, see `shardflow-lambda`), and each
//! shard resumes from its own position.
//!
//! Without a pause the shards' boundaries are taken at different instants (while one shard is
//! read, another commits). Such a savepoint is restorable exactly, but it is not the state of the
//! whole stage at one instant, and the old stage keeps moving past it. **With a pause**
//! (`function` in [`SavepointOptions`]) the savepoint is also one cut of the whole stage:
//! 1. every Kinesis event source mapping of the function is disabled
//!    (`UpdateEventSourceMapping Enabled=false`) and polled until it reports `Disabled`;
//! 2. then the stage's checkpoint items are polled until no `ver` changed for
//!    [`SavepointOptions::quiet_period`] — an invocation that was already running when the
//!    mapping stopped polling may still commit its batch;
//! 3. the shards are read as above; a `ver` that changed anyway fails the read of that shard
//!    rather than letting it through;
//! 4. the mappings that were enabled before are enabled again (also when the read failed),
//!    unless the caller asked to leave them disabled (to move the stage to a new deployment).
//!
//! Limits of the barrier: `Disabled` means Lambda stopped polling, not that every invocation
//! ended; an invocation running longer than the quiet period (up to the function's timeout)
//! can commit after it — the `ver` check catches that shard, but the savepoint then fails or
//! reads it again. A mapping re-enabled resumes from its own position in the stream, which is
//! behind or at the checkpoints, and the stage skips what is committed. A savepoint taken
//! without `function` never stops the stage.
//!

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use shardflow_engine::checkpoint::FORMAT_VERSION;
use shardflow_engine::EngineMetrics;
use shardflow_state_dynamodb::{DynamoDbCheckpointStore, SpillBucket};

use crate::barrier::{EventSourceBarrier, MappingState};
use crate::error::LifecycleError;
use crate::manifest::{
    checksum, shard_file, shuffle_state_file, ConsistencyInfo, FailureEntry, S3Location, SavepointManifest, ShardEntry,
    ShuffleStateFile, MANIFEST_FILE, SAVEPOINT_FORMAT, SAVEPOINT_FORMAT_VERSION,
};
use crate::shards::{check_stage_name, checkpoint_version, stage_checkpoints};

/// What to save and how.
#[derive(Debug, Clone)]
pub struct SavepointOptions {
    /// The stage.
    pub stage: String,
    /// Its state table.
    pub table: String,
    /// Where the savepoint goes (a prefix that holds no savepoint yet).
    pub location: S3Location,
    /// A version label of the pipeline's code, recorded in the manifest.
    pub pipeline_version: Option<String>,
    /// Pause the function's event source mappings for the read (see the module documentation).
    pub barrier: Option<EventSourceBarrier>,
    /// Leave the paused mappings disabled (when the stage is being replaced).
    pub leave_disabled: bool,
    /// With a barrier: how long no checkpoint may change before the read starts (default 10 s;
    /// an invocation in flight when the mapping stopped may still commit).
    pub quiet_period: Duration,
    /// With a barrier: how long to wait for that quiet period (default 16 minutes, beyond the
    /// longest Lambda timeout).
    pub quiet_timeout: Duration,
    /// Reads of a shard whose `ver` changed during the read before giving up (default 5).
    pub max_attempts: u32,
    /// Shards read at once (default 8).
    pub concurrency: usize,
}

impl SavepointOptions {
    /// Options with the defaults: no barrier, no version label.
    pub fn new(stage: &str, table: &str, location: S3Location) -> Self {
        SavepointOptions {
            stage: stage.to_owned(),
            table: table.to_owned(),
            location,
            pipeline_version: None,
            barrier: None,
            leave_disabled: false,
            quiet_period: Duration::from_secs(10),
            quiet_timeout: Duration::from_secs(16 * 60),
            max_attempts: 5,
            concurrency: 8,
        }
    }
}

/// What a savepoint wrote.
#[derive(Debug, Clone)]
pub struct SavepointReport {
    /// Where.
    pub location: S3Location,
    /// Its manifest.
    pub manifest: SavepointManifest,
    /// Bytes written (files and manifest).
    pub bytes_written: u64,
    /// Shards that had to be read more than once (they committed during the read).
    pub reread_shards: usize,
    /// Time from the start to the manifest written (pause and resume included).
    pub elapsed: Duration,
}

/// Takes a savepoint of `options.stage` (see the module documentation).
pub async fn create_savepoint(
    dynamodb: &aws_sdk_dynamodb::Client,
    s3: &aws_sdk_s3::Client,
    options: &SavepointOptions,
) -> Result<SavepointReport, LifecycleError> {
    check_stage_name(&options.stage)?;
    let started = Instant::now();
    let manifest_key = options.location.key(MANIFEST_FILE);
    let existing = s3
        .head_object()
        .bucket(&options.location.bucket)
        .key(&manifest_key)
        .send()
        .await;
    match existing {
        Ok(_) => {
            return Err(LifecycleError::Invalid(format!(
                "{} already holds a savepoint; choose another prefix",
                options.location
            )))
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {}
        Err(e) => return Err(LifecycleError::aws("S3", "HeadObject", e)),
    }
    let Some(barrier) = &options.barrier else {
        let mut report = save(dynamodb, s3, options, &[]).await?;
        report.elapsed = started.elapsed();
        return Ok(report);
    };
    let paused = barrier.pause().await?;
    let result = match wait_quiet(dynamodb, options).await {
        Ok(()) => save(dynamodb, s3, options, &paused).await,
        Err(e) => Err(e),
    };
    if !options.leave_disabled {
        if let Err(e) = barrier.resume(&paused).await {
            match &result {
                Ok(_) => return Err(e),
                Err(read) => {
                    tracing::error!(function = %barrier.function(), error = %e, "event source mappings not enabled again after a failed savepoint ({read})");
                }
            }
        }
    }
    let mut report = result?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Waits until no checkpoint of the stage changed for the quiet period.
async fn wait_quiet(dynamodb: &aws_sdk_dynamodb::Client, options: &SavepointOptions) -> Result<(), LifecycleError> {
    let started = Instant::now();
    let poll = (options.quiet_period / 4).clamp(Duration::from_millis(100), Duration::from_secs(2));
    let mut last = stage_checkpoints(dynamodb, &options.table, &options.stage).await?;
    let mut quiet_since = Instant::now();
    loop {
        if quiet_since.elapsed() >= options.quiet_period {
            return Ok(());
        }
        if started.elapsed() >= options.quiet_timeout {
            return Err(LifecycleError::NotQuiet {
                stage: options.stage.clone(),
                waited_secs: started.elapsed().as_secs(),
            });
        }
        tokio::time::sleep(poll).await;
        let now = stage_checkpoints(dynamodb, &options.table, &options.stage).await?;
        if now != last {
            tracing::info!(stage = %options.stage, "checkpoints still changing after the pause");
            last = now;
            quiet_since = Instant::now();
        }
    }
}

/// One shard read and written.
struct SavedShard {
    entry: ShardEntry,
    pipeline: String,
    max_key_groups: u16,
    rereads: u32,
}

async fn save(
    dynamodb: &aws_sdk_dynamodb::Client,
    s3: &aws_sdk_s3::Client,
    options: &SavepointOptions,
    paused: &[MappingState],
) -> Result<SavepointReport, LifecycleError> {
    let before = stage_checkpoints(dynamodb, &options.table, &options.stage).await?;
    if before.is_empty() {
        return Err(LifecycleError::NoState {
            stage: options.stage.clone(),
            table: options.table.clone(),
        });
    }
    let mut saved: BTreeMap<String, SavedShard> = BTreeMap::new();
    let mut to_read: Vec<String> = before.iter().map(|c| c.shard.clone()).collect();
    let mut single_cut = true;
    for _ in 0..options.max_attempts.max(1) {
        let read: Vec<SavedShard> = stream::iter(to_read.iter().map(|shard| save_shard(dynamodb, s3, options, shard)))
            .buffer_unordered(options.concurrency.max(1))
            .try_collect()
            .await?;
        for s in read {
            saved.insert(s.entry.shard.clone(), s);
        }
        // Shards that got their first checkpoint during the read (children of a reshard) are
        // read too, so that no shard's progress is left out.
        let after = stage_checkpoints(dynamodb, &options.table, &options.stage).await?;
        single_cut &= after.len() == before.len()
            && after
                .iter()
                .zip(&before)
                .all(|(a, b)| a.shard == b.shard && a.version == b.version);
        to_read = after
            .iter()
            .filter(|c| !saved.contains_key(&c.shard))
            .map(|c| c.shard.clone())
            .collect();
        if to_read.is_empty() {
            break;
        }
    }
    if !to_read.is_empty() {
        return Err(LifecycleError::ShardsAppearing {
            stage: options.stage.clone(),
            shards: to_read,
        });
    }
    let first = saved.values().next().ok_or_else(|| LifecycleError::NoState {
        stage: options.stage.clone(),
        table: options.table.clone(),
    })?;
    let (pipeline, max_key_groups) = (first.pipeline.clone(), first.max_key_groups);
    if let Some(other) = saved
        .values()
        .find(|s| s.pipeline != pipeline || s.max_key_groups != max_key_groups)
    {
        return Err(LifecycleError::MixedPipelines {
            stage: options.stage.clone(),
            reason: format!(
                "shard {} is of {}/{} key groups, shard {} of {}/{}",
                first.entry.shard, pipeline, max_key_groups, other.entry.shard, other.pipeline, other.max_key_groups
            ),
        });
    }
    let reread_shards = saved.values().filter(|s| s.rereads > 0).count();
    let manifest = SavepointManifest {
        format: SAVEPOINT_FORMAT.to_owned(),
        format_version: SAVEPOINT_FORMAT_VERSION,
        state_format_version: FORMAT_VERSION,
        created_at_ms: now_ms(),
        stage: options.stage.clone(),
        table: options.table.clone(),
        pipeline,
        pipeline_version: options.pipeline_version.clone(),
        max_key_groups,
        consistency: ConsistencyInfo {
            paused_function: options.barrier.as_ref().map(|b| b.function().to_owned()),
            paused_mappings: paused.iter().map(|m| m.uuid.clone()).collect(),
            single_cut,
        },
        shards: saved.into_values().map(|s| s.entry).collect(),
    };
    let body = serde_json::to_vec_pretty(&manifest).map_err(|e| LifecycleError::Corrupt {
        location: options.location.to_string(),
        reason: format!("manifest: {e}"),
    })?;
    let bytes_written = manifest
        .shards
        .iter()
        .map(|s| s.size + s.shuffle_state.as_ref().map_or(0, |f| f.size))
        .sum::<u64>()
        + body.len() as u64;
    put(s3, &options.location.bucket, &options.location.key(MANIFEST_FILE), body).await?;
    tracing::info!(location = %options.location, shards = manifest.shards.len(), bytes = bytes_written, single_cut, "savepoint written");
    Ok(SavepointReport {
        location: options.location.clone(),
        manifest,
        bytes_written,
        reread_shards,
        elapsed: Duration::ZERO,
    })
}

/// Reads one shard at a batch boundary (its `ver` unchanged across the read) and writes its file.
async fn save_shard(
    dynamodb: &aws_sdk_dynamodb::Client,
    s3: &aws_sdk_s3::Client,
    options: &SavepointOptions,
    shard: &str,
) -> Result<SavedShard, LifecycleError> {
    let mut attempt = 0;
    let (loaded, rereads) = loop {
        attempt += 1;
        let before = checkpoint_version(dynamodb, &options.table, &options.stage, shard).await?;
        // The spill bucket only matters for its client: a pointer names its own bucket.
        let mut store = DynamoDbCheckpointStore::new(dynamodb.clone(), &options.table, &options.stage, shard)
            .with_spill_bucket(Some(SpillBucket::new(s3.clone(), &options.location.bucket)));
        let loaded = store.load().await;
        let after = checkpoint_version(dynamodb, &options.table, &options.stage, shard).await?;
        let consistent = before == after && matches!(&loaded, Ok(l) if l.version == before);
        let moved = before != after || matches!(&loaded, Ok(l) if l.version != before);
        match loaded {
            Ok(l) if consistent => break (l, attempt - 1),
            // A load that failed while the shard committed (its superseded slots deleted under
            // the read) is retried like one that saw two versions.
            _ if moved && attempt < options.max_attempts => {
                tracing::info!(stage = %options.stage, shard, before, after, "shard committed during the read; reading it again");
            }
            Err(e) if !moved => return Err(e.into()),
            _ => {
                return Err(LifecycleError::Moving {
                    stage: options.stage.clone(),
                    shard: shard.to_owned(),
                    attempts: attempt,
                    before,
                    after,
                })
            }
        }
    };
    let image = loaded.image.ok_or_else(|| LifecycleError::NoState {
        stage: options.stage.clone(),
        table: options.table.clone(),
    })?;
    let (metrics, _) = EngineMetrics::of_checkpoint(&image)?;
    let checkpoint = image.to_checkpoint();
    let bytes = checkpoint.encode()?;
    let file = shard_file(shard);
    // A shuffle's downstream stage: its dedup marks and upstream watermarks, committed by the
    // same flip as the state, so read at the same `ver`.
    let shuffle_state = loaded.shuffle_state.map(|bytes| {
        let entry = ShuffleStateFile {
            file: shuffle_state_file(shard),
            size: bytes.len() as u64,
            xxh3: checksum(&bytes),
        };
        (entry, bytes)
    });
    let entry = ShardEntry {
        shard: shard.to_owned(),
        sequence_number: loaded.sequence_number.map(|s| s.as_str().to_owned()),
        version: loaded.version,
        epoch: checkpoint.epoch,
        watermark: metrics.watermark,
        processing_time: metrics.processing_time,
        key_groups: checkpoint.key_groups_written(),
        state_bytes: checkpoint
            .operators
            .iter()
            .flat_map(|o| &o.key_groups)
            .map(|g| g.bytes.len() as u64)
            .sum(),
        failure: loaded.failure.map(|f| FailureEntry {
            sequence_number: f.sequence_number.as_str().to_owned(),
            attempts: f.attempts,
            reason: f.reason,
        }),
        size: bytes.len() as u64,
        xxh3: checksum(&bytes),
        file,
        shuffle_state: shuffle_state.as_ref().map(|(entry, _)| entry.clone()),
    };
    put(s3, &options.location.bucket, &options.location.key(&entry.file), bytes).await?;
    if let Some((file, bytes)) = shuffle_state {
        put(s3, &options.location.bucket, &options.location.key(&file.file), bytes).await?;
    }
    Ok(SavedShard {
        pipeline: checkpoint.pipeline,
        max_key_groups: checkpoint.max_key_groups,
        entry,
        rereads,
    })
}

pub(crate) async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), LifecycleError> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(|e| LifecycleError::aws("S3", "PutObject", e))?;
    Ok(())
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
