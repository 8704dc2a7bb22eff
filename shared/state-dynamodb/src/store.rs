//! The store: load and commit one shard's checkpoint (see the crate documentation).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, KeysAndAttributes, Put, TransactWriteItem, WriteRequest};
use aws_sdk_dynamodb::Client;
use shardflow_engine::{Checkpoint, CheckpointImage, Committed, StateStore};
use shardflow_stage::SequenceNumber;
use xxhash_rust::xxh3::Xxh3;

use crate::error::StoreError;
use crate::manifest::{GroupRef, Manifest};
use crate::spill::{self, SpillBucket, SpillPointer};

/// The largest key-group state kept inline in an item (DynamoDB items are at most 400 KB).
pub const MAX_INLINE_STATE_BYTES: usize = 350 * 1024;
/// Actions per `TransactWriteItems`.
pub const MAX_TRANSACTION_ITEMS: usize = 100;
/// Bytes per `TransactWriteItems` (4 MB, less headroom for keys and attribute names).
const MAX_TRANSACTION_BYTES: usize = 4 * 1024 * 1024 - 64 * 1024;
/// Keys per `BatchGetItem`.
const MAX_BATCH_GET: usize = 100;
/// Deletes per `BatchWriteItem`.
const MAX_BATCH_DELETE: usize = 25;
/// The default state horizon (see the crate documentation, "Expiry"): 90 days.
pub const DEFAULT_STATE_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// The TTL attribute of every item the store writes (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// The checkpoint item's attribute holding the opaque shuffle state (binary; absent when none).
pub const SHUFFLE_STATE_ATTRIBUTE: &str = "shuffle_state";

/// A record on which user code failed, and how often (kept with the checkpoint so that a poison
/// record is retried a bounded number of times across invocations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFailure {
    /// The failing record.
    pub sequence_number: SequenceNumber,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The last failure's message.
    pub reason: String,
}

/// Where a shard's input stands, committed atomically with its state: the position of
/// [`StateStore`] for this store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardPosition {
    /// The last sequence number the state covers (`None`: none yet; a commit then keeps the
    /// stored one).
    pub sequence_number: Option<SequenceNumber>,
    /// The record that failed after it, if the commit records one.
    pub failure: Option<RecordFailure>,
}

/// What [`DynamoDbCheckpointStore::load`] found, with the fencing version (operations tools read
/// it; a stage reads through [`StateStore::load`]).
#[derive(Debug)]
pub struct LoadedCheckpoint {
    /// The committed version (0: nothing committed yet).
    pub version: u64,
    /// The last committed sequence number of the shard.
    pub sequence_number: Option<SequenceNumber>,
    /// The engine state, if any was committed.
    pub image: Option<CheckpointImage>,
    /// The record that failed last, if the last commit recorded one.
    pub failure: Option<RecordFailure>,
    /// The opaque shuffle state committed with it (a shuffle's downstream stage), if any.
    pub shuffle_state: Option<Vec<u8>>,
}

/// The shard's progress item: the last record any invocation handled, by whom and on which
/// checkpoint version (see the crate documentation, "Progress").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardProgress {
    /// The last sequence number handled (emitted), committed or not.
    pub sequence_number: SequenceNumber,
    /// The id of the container (stage instance) that handled it.
    pub container: String,
    /// The checkpoint version its state started from.
    pub version: u64,
    /// Batches handled since that checkpoint without a commit (0 right after a commit).
    pub batches_since_commit: u64,
    /// When (epoch milliseconds) the checkpoint interval of these batches started.
    pub interval_started_ms: u64,
}

/// One strongly consistent read of a shard's partition key ([`DynamoDbCheckpointStore::probe`]):
/// the checkpoint item's fencing attributes and the progress item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardProbe {
    /// The committed version (0: nothing committed).
    pub version: u64,
    /// The attempt id of the commit that wrote it.
    pub attempt: Option<u64>,
    /// The committed position.
    pub sequence_number: Option<SequenceNumber>,
    /// The progress item, if any invocation wrote one.
    pub progress: Option<ShardProgress>,
}

/// What a commit wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitStats {
    /// Items written (key-group slots plus the checkpoint item).
    pub items_written: usize,
    /// Bytes of state written (inline and spilled).
    pub bytes_written: usize,
    /// Transactions used (1 when the commit fits one).
    pub transactions: usize,
    /// Key groups spilled to S3 (objects written).
    pub objects_written: usize,
    /// Key groups rewritten unchanged because they neared the end of the state horizon.
    pub groups_refreshed: usize,
    /// Slot items deleted after the flip (superseded slots and those of removed key groups).
    pub items_deleted: usize,
}

/// A step inside a commit, where a test can inject a crash (see
/// [`DynamoDbCheckpointStore::with_crash_hook`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitStep {
    /// Before anything is written.
    BeforeWrite,
    /// After the `n`-th transaction of key-group slots (counted from 1), before the next one
    /// (or, after the last, before [`CommitStep::BeforeFlip`]; multi-transaction commits only).
    AfterSlotTransaction(usize),
    /// After the `n`-th spilled key group of the commit is in S3 (counted from 1), before the next
    /// one (commits that spill more than one group only).
    AfterSpillObject(usize),
    /// After the spilled key groups are in S3, before any item is written (commits that spill only).
    AfterSpill,
    /// After every slot is written, before the checkpoint flip (multi-transaction commits only).
    BeforeFlip,
    /// After the flip, before superseded objects and removed groups' items are deleted.
    AfterFlip,
    /// After the flip, after the `n`-th delete request of the clean-up (objects one by one, then
    /// slot items in batches; counted from 1), before the next one.
    AfterCleanUpDelete(usize),
}

/// Seconds since the Unix epoch (the clock of the TTL attribute; replaceable in tests).
pub type EpochClock = Arc<dyn Fn() -> u64 + Send + Sync>;

fn system_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Decides whether to crash at a commit step (test hook).
pub type CrashHook = std::sync::Arc<dyn Fn(CommitStep) -> bool + Send + Sync>;

/// A key group to write in a commit, before its item is built.
struct GroupWrite {
    operator: String,
    group: u16,
    /// The slot id of this commit attempt.
    slot: u64,
    /// The slot this write supersedes (its item is deleted after the flip).
    replaces_slot: Option<u64>,
    bytes: Vec<u8>,
    /// Set once the group is in S3.
    pointer: Option<SpillPointer>,
    /// The object of the live version this write supersedes (deleted after the flip).
    replaces: Option<String>,
}

/// A fresh slot id for one commit attempt: unique per attempt (version, clock, process, counter),
/// so that the items of an attempt that crashed or lost the flip never collide with another's.
fn attempt_id(stage: &str, shard: &str, version: u64) -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = Xxh3::new();
    h.update(stage.as_bytes());
    h.update(&[0]);
    h.update(shard.as_bytes());
    h.update(&version.to_le_bytes());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    h.update(&nanos.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(&COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_le_bytes());
    h.digest()
}

/// A full checkpoint is the whole state: removes from `manifest` every operator `checkpoint` does
/// not list (an operator the pipeline no longer has, whose state a restore dropped, or a format 1
/// entry rewritten under its new id), adding its groups to `removed` so that their slot items
/// and objects are deleted after the flip. Without this, dropped state would come back on the
/// next load.
fn forget_unlisted_operators(manifest: &mut Manifest, checkpoint: &Checkpoint, removed: &mut Vec<(String, GroupRef)>) {
    let listed: std::collections::HashSet<&str> = checkpoint.operators.iter().map(|o| o.operator.as_str()).collect();
    let (kept, forgotten): (Vec<_>, Vec<_>) = std::mem::take(&mut manifest.operators)
        .into_iter()
        .partition(|o| listed.contains(o.id.as_str()));
    manifest.operators = kept;
    for o in forgotten {
        removed.extend(o.groups.into_iter().map(|g| (o.id.clone(), g)));
    }
}

/// One write of a transaction, with its approximate size and a digest of its content.
struct SlotPut {
    put: Put,
    bytes: usize,
    digest: u64,
}

/// What a commit will write, planned before anything is.
struct CommitPlan {
    /// The manifest of the new version.
    manifest: Manifest,
    /// The key groups to write.
    writes: Vec<GroupWrite>,
    /// The key groups the commit removes (emptied), with where they lived.
    removed: Vec<(String, GroupRef)>,
    /// S3 objects the commit supersedes (deleted after the flip).
    superseded: Vec<String>,
    /// Slot items the commit supersedes (deleted after the flip).
    superseded_slots: Vec<(String, u16, u64)>,
    stats: CommitStats,
}

#[derive(Debug, Clone)]
struct CommittedVersion {
    version: u64,
    /// The attempt id of the commit that wrote the version (told apart from another writer's
    /// commit of the same `ver`, such as a forced restore).
    attempt: Option<u64>,
    sequence_number: Option<SequenceNumber>,
    manifest: Option<Manifest>,
}

/// The checkpoint store of one shard of one stage.
#[derive(Clone)]
pub struct DynamoDbCheckpointStore {
    client: Client,
    table: String,
    stage: String,
    shard: String,
    committed: Option<CommittedVersion>,
    max_transaction_items: usize,
    crash_hook: Option<CrashHook>,
    spill: Option<SpillBucket>,
    ttl: Option<Duration>,
    clock: EpochClock,
    /// Bytes of live groups that the next commit rewrites (read by `load`: they near the horizon).
    refresh: HashMap<(String, u16), Vec<u8>>,
    /// The slot id of the commit in progress (fresh for every attempt).
    attempt: u64,
    /// The opaque shuffle state the checkpoint item holds (as loaded or last committed) and the
    /// next commit writes (see [`DynamoDbCheckpointStore::set_shuffle_state`]).
    shuffle_state: Option<Vec<u8>>,
}

impl std::fmt::Debug for DynamoDbCheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoDbCheckpointStore")
            .field("table", &self.table)
            .field("stage", &self.stage)
            .field("shard", &self.shard)
            .field("committed", &self.committed)
            .finish_non_exhaustive()
    }
}

/// The attempt id a checkpoint item was written by (`None` for items of older releases).
fn attempt_of(item: &HashMap<String, AttributeValue>) -> Option<u64> {
    match item.get("attempt") {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl DynamoDbCheckpointStore {
    /// The store of `shard` of `stage` in `table`.
    pub fn new(client: Client, table: &str, stage: &str, shard: &str) -> Self {
        DynamoDbCheckpointStore {
            client,
            table: table.to_owned(),
            stage: stage.to_owned(),
            shard: shard.to_owned(),
            committed: None,
            max_transaction_items: MAX_TRANSACTION_ITEMS,
            crash_hook: None,
            spill: None,
            ttl: Some(DEFAULT_STATE_TTL),
            clock: Arc::new(system_clock),
            refresh: HashMap::new(),
            attempt: 0,
            shuffle_state: None,
        }
    }

    /// Spills key groups over [`MAX_INLINE_STATE_BYTES`] to `bucket` (without one, such a group
    /// fails the commit with [`StoreError::SpillNotConfigured`]).
    pub fn with_spill_bucket(mut self, bucket: Option<SpillBucket>) -> Self {
        self.spill = bucket;
        self
    }

    /// The state horizon: every item is written with `expires_at` = now + `ttl`, and a live group
    /// not rewritten for `ttl / 2` is rewritten by the next commit. `None` writes no TTL.
    /// Default [`DEFAULT_STATE_TTL`].
    pub fn with_state_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl.filter(|t| t.as_secs() >= 2);
        self
    }

    /// Replaces the clock of the TTL attribute (tests).
    pub fn with_clock(mut self, clock: EpochClock) -> Self {
        self.clock = clock;
        self
    }

    fn expires_at(&self, now: u64) -> Option<AttributeValue> {
        self.ttl.map(|t| n(now.saturating_add(t.as_secs())))
    }

    /// Limits the actions per transaction (default and maximum 100), e.g. to exercise
    /// multi-transaction commits in tests.
    pub fn with_max_transaction_items(mut self, n: usize) -> Self {
        self.max_transaction_items = n.clamp(2, MAX_TRANSACTION_ITEMS);
        self
    }

    /// Test hook: `hook(step)` returning true makes the commit stop at `step` with
    /// [`StoreError::InjectedCrash`], as if the process died there.
    pub fn with_crash_hook(mut self, hook: Option<CrashHook>) -> Self {
        self.crash_hook = hook;
        self
    }

    fn crash_at(&self, step: CommitStep) -> Result<(), StoreError> {
        match &self.crash_hook {
            Some(hook) if hook(step) => Err(StoreError::InjectedCrash(format!("{step:?}"))),
            _ => Ok(()),
        }
    }

    fn checkpoint_key(&self) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), s(format!("{}#shard#{}", self.stage, self.shard))),
            ("sk".to_owned(), s("checkpoint")),
        ])
    }

    fn progress_key(&self) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), s(format!("{}#shard#{}", self.stage, self.shard))),
            ("sk".to_owned(), s("progress")),
        ])
    }

    /// The version this store last loaded or committed (`None` before the first `load`).
    pub fn committed_version(&self) -> Option<u64> {
        self.committed.as_ref().map(|c| c.version)
    }

    /// Whether `probe` shows the version (and commit attempt) this store last loaded or committed.
    pub fn is_current_in(&self, probe: &ShardProbe) -> bool {
        self.committed
            .as_ref()
            .is_some_and(|c| c.version == probe.version && c.attempt == probe.attempt)
    }

    /// Reads the checkpoint item's `ver`, `attempt` and `sequence_number` and the progress item
    /// with one strongly consistent `Query` of the shard's partition key.
    pub async fn probe(&self) -> Result<ShardProbe, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(format!("{}#shard#{}", self.stage, self.shard)))
            .projection_expression("sk, ver, attempt, sequence_number, container, base_ver, batches, since_ms")
            .send()
            .await
            .map_err(|e| StoreError::dynamodb("Query", e))?;
        let mut probe = ShardProbe::default();
        let number = |item: &HashMap<String, AttributeValue>, name: &str| -> Result<Option<u64>, StoreError> {
            match item.get(name) {
                Some(AttributeValue::N(v)) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| self.corrupt(format!("{name} is not a number"))),
                Some(_) => Err(self.corrupt(format!("{name} is not a number"))),
                None => Ok(None),
            }
        };
        let sequence = |item: &HashMap<String, AttributeValue>| -> Result<Option<SequenceNumber>, StoreError> {
            match item.get("sequence_number") {
                Some(AttributeValue::S(v)) => SequenceNumber::parse(v)
                    .map(Some)
                    .map_err(|e| self.corrupt(e.to_string())),
                _ => Ok(None),
            }
        };
        for item in out.items() {
            match item.get("sk") {
                Some(AttributeValue::S(sk)) if sk == "checkpoint" => {
                    probe.version = number(item, "ver")?.ok_or_else(|| self.corrupt("checkpoint item without ver"))?;
                    probe.attempt = attempt_of(item);
                    probe.sequence_number = sequence(item)?;
                }
                Some(AttributeValue::S(sk)) if sk == "progress" => {
                    let Some(sequence_number) = sequence(item)? else {
                        return Err(self.corrupt("progress item without sequence_number"));
                    };
                    probe.progress = Some(ShardProgress {
                        sequence_number,
                        container: match item.get("container") {
                            Some(AttributeValue::S(c)) => c.clone(),
                            _ => String::new(),
                        },
                        version: number(item, "base_ver")?.unwrap_or(0),
                        batches_since_commit: number(item, "batches")?.unwrap_or(0),
                        interval_started_ms: number(item, "since_ms")?.unwrap_or(0),
                    });
                }
                _ => {}
            }
        }
        Ok(probe)
    }

    /// Writes the progress item with one `PutItem` conditioned on the sequence number the caller
    /// read (`read`; `None`: on its absence), so that two invocations cannot both advance the
    /// shard from the same point: the loser gets [`StoreError::ProgressConflict`].
    pub async fn write_progress(
        &self,
        progress: &ShardProgress,
        read: Option<&SequenceNumber>,
    ) -> Result<(), StoreError> {
        let mut item = self.progress_key();
        item.insert("sequence_number".into(), s(progress.sequence_number.as_str()));
        item.insert("container".into(), s(&progress.container));
        item.insert("base_ver".into(), n(progress.version));
        item.insert("batches".into(), n(progress.batches_since_commit));
        item.insert("since_ms".into(), n(progress.interval_started_ms));
        if let Some(at) = self.expires_at((self.clock)()) {
            item.insert(TTL_ATTRIBUTE.into(), at);
        }
        let mut put = self.client.put_item().table_name(&self.table).set_item(Some(item));
        put = match read {
            Some(seq) => put
                .condition_expression("sequence_number = :read")
                .expression_attribute_values(":read", s(seq.as_str())),
            None => put.condition_expression("attribute_not_exists(pk)"),
        };
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(_)) => Err(StoreError::ProgressConflict {
                    stage: self.stage.clone(),
                    shard: self.shard.clone(),
                    expected: read.map(|r| r.as_str().to_owned()),
                }),
                _ => Err(StoreError::dynamodb("PutItem", e)),
            },
        }
    }

    fn slot_key(&self, operator: &str, group: u16, slot: u64) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), s(format!("{}#kg#{operator}#{group}", self.stage))),
            ("sk".to_owned(), s(format!("{}#slot{slot:016x}", self.shard))),
        ])
    }

    /// The key of the state object of a spilled group written for `version`.
    fn object_key(&self, operator: &str, group: u16, version: u64, checksum: &str) -> String {
        spill::object_key(&self.stage, operator, group, &self.shard, version, checksum)
    }

    fn corrupt(&self, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            stage: self.stage.clone(),
            shard: self.shard.clone(),
            reason: reason.into(),
        }
    }

    /// Reads the shard's committed checkpoint (strongly consistent) and every live key group.
    /// Another invocation committing between the two reads deletes the slots this one was about
    /// to read: that is [`StoreError::Conflict`] (retryable, as a lost commit is), told from a
    /// corrupt checkpoint by reading the item's version again.
    pub async fn load(&mut self) -> Result<LoadedCheckpoint, StoreError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.checkpoint_key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::dynamodb("GetItem", e))?
            .item;
        let Some(item) = item else {
            self.refresh.clear();
            self.shuffle_state = None;
            self.committed = Some(CommittedVersion {
                version: 0,
                attempt: None,
                sequence_number: None,
                manifest: None,
            });
            return Ok(LoadedCheckpoint {
                version: 0,
                sequence_number: None,
                image: None,
                failure: None,
                shuffle_state: None,
            });
        };
        let version = match item.get("ver") {
            Some(AttributeValue::N(v)) => v.parse().map_err(|_| self.corrupt("ver is not a number"))?,
            _ => return Err(self.corrupt("checkpoint item without ver")),
        };
        let sequence_number = match item.get("sequence_number") {
            Some(AttributeValue::S(v)) => Some(SequenceNumber::parse(v).map_err(|e| self.corrupt(e.to_string()))?),
            _ => None,
        };
        let manifest: Manifest = match item.get("manifest") {
            Some(AttributeValue::B(b)) => {
                postcard::from_bytes(b.as_ref()).map_err(|e| self.corrupt(format!("manifest: {e}")))?
            }
            _ => return Err(self.corrupt("checkpoint item without manifest")),
        };
        let failure = match (item.get("failed_sequence_number"), item.get("failed_attempts")) {
            (Some(AttributeValue::S(seq)), Some(AttributeValue::N(n))) => Some(RecordFailure {
                sequence_number: SequenceNumber::parse(seq).map_err(|e| self.corrupt(e.to_string()))?,
                attempts: n.parse().map_err(|_| self.corrupt("failed_attempts is not a number"))?,
                reason: match item.get("failed_reason") {
                    Some(AttributeValue::S(r)) => r.clone(),
                    _ => String::new(),
                },
            }),
            _ => None,
        };
        let shuffle_state = match item.get(SHUFFLE_STATE_ATTRIBUTE) {
            Some(AttributeValue::B(b)) => Some(b.as_ref().to_vec()),
            _ => None,
        };
        let (checkpoint, slots) = match self.read_live_state(&manifest).await {
            Ok(read) => read,
            Err(e) => return Err(self.conflict_if_moved_on(version, e).await),
        };
        self.refresh.clear();
        if let Some(ttl) = self.ttl {
            let due = (self.clock)().saturating_sub(ttl.as_secs() / 2);
            for o in &manifest.operators {
                for g in o.groups.iter().filter(|g| g.written_at <= due) {
                    if let Some(bytes) = slots.get(&(o.id.clone(), g.key_group)) {
                        self.refresh.insert((o.id.clone(), g.key_group), bytes.clone());
                    }
                }
            }
        }
        self.committed = Some(CommittedVersion {
            version,
            attempt: attempt_of(&item),
            sequence_number: sequence_number.clone(),
            manifest: Some(manifest),
        });
        self.shuffle_state.clone_from(&shuffle_state);
        Ok(LoadedCheckpoint {
            version,
            sequence_number,
            image: Some(CheckpointImage::new(checkpoint)),
            failure,
            shuffle_state,
        })
    }

    /// The checkpoint the manifest describes, assembled from its live slots (and spilled objects),
    /// and the slots read. A slot missing or of another version is [`StoreError::Corrupt`] here;
    /// the caller tells it from a concurrent commit ([`Self::conflict_if_moved_on`]).
    async fn read_live_state(
        &self,
        manifest: &Manifest,
    ) -> Result<(Checkpoint, HashMap<(String, u16), Vec<u8>>), StoreError> {
        let slots = self.read_slots(manifest).await?;
        let mut missing = Vec::new();
        let checkpoint = manifest.to_checkpoint(|op, g| match slots.get(&(op.to_owned(), g.key_group)) {
            Some(b) => b.clone(),
            None => {
                missing.push(format!("{op}/{}", g.key_group));
                Vec::new()
            }
        });
        if !missing.is_empty() {
            return Err(self.corrupt(format!("live slots missing or of another version: {missing:?}")));
        }
        Ok((checkpoint, slots))
    }

    /// What a failed read of the live state of checkpoint `version` means: a commit by another
    /// invocation between the read of the checkpoint item and the read of its slots deletes the
    /// slots (and spilled objects) it supersedes, so a slot or object missing is only corruption
    /// if the checkpoint item still holds `version`. Re-reads its `ver` (one strongly consistent
    /// `GetItem` of that attribute): moved on, the load lost a race and is a
    /// [`StoreError::Conflict`] (load again, or fail the invocation for Lambda to retry); still
    /// `version`, the error `e` stands. Errors that no commit causes pass through unread.
    async fn conflict_if_moved_on(&self, version: u64, e: StoreError) -> StoreError {
        if !matches!(
            e,
            StoreError::Corrupt { .. } | StoreError::S3 { .. } | StoreError::SpillChecksum { .. }
        ) {
            return e;
        }
        match self.stored_version().await {
            Ok((stored, _)) if stored != version => {
                tracing::info!(stage = %self.stage, shard = %self.shard, loaded = version, stored, error = %e,
                    "the checkpoint was committed again while its state was read: a conflict, not corruption");
                StoreError::Conflict {
                    stage: self.stage.clone(),
                    shard: self.shard.clone(),
                    expected: version,
                }
            }
            Ok(_) => e,
            Err(reread) => {
                tracing::warn!(stage = %self.stage, shard = %self.shard, error = %e, %reread,
                    "reading the state failed, and so did re-reading the checkpoint's version");
                reread
            }
        }
    }

    /// The checkpoint item's `ver` (0 without an item) and commit attempt, read strongly
    /// consistent with a projection of those two attributes.
    async fn stored_version(&self) -> Result<(u64, Option<u64>), StoreError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.checkpoint_key()))
            .consistent_read(true)
            .projection_expression("#ver, #attempt")
            .expression_attribute_names("#ver", "ver")
            .expression_attribute_names("#attempt", "attempt")
            .send()
            .await
            .map_err(|e| StoreError::dynamodb("GetItem", e))?
            .item;
        let stored = match item.as_ref().and_then(|i| i.get("ver")) {
            Some(AttributeValue::N(v)) => v.parse().map_err(|_| self.corrupt("ver is not a number"))?,
            Some(_) => return Err(self.corrupt("ver is not a number")),
            None => 0,
        };
        Ok((stored, item.as_ref().and_then(attempt_of)))
    }

    /// The opaque shuffle state of the shard (a shuffle's downstream dedup marks and watermarks):
    /// as the last [`DynamoDbCheckpointStore::load`] read it from the checkpoint item, or as set
    /// since. `None` for a stage without a shuffle input.
    pub fn shuffle_state(&self) -> Option<&[u8]> {
        self.shuffle_state.as_deref()
    }

    /// Sets the shuffle state the next commit writes into the checkpoint item, in the same
    /// conditional write as the manifest and position (so it commits atomically with them).
    /// Until it is set again, every later commit writes the same bytes.
    pub fn set_shuffle_state(&mut self, state: Option<Vec<u8>>) {
        self.shuffle_state = state;
    }

    /// Whether the shard's checkpoint item still holds the version this store last loaded or
    /// committed: one strongly consistent read of the item (its `ver` alone is returned; DynamoDB
    /// charges the item's size), instead of the item and every key group. `false` before the
    /// first `load`, or once another writer committed.
    pub async fn is_current(&self) -> Result<bool, StoreError> {
        let Some(committed) = &self.committed else {
            return Ok(false);
        };
        let (stored, attempt) = self.stored_version().await?;
        Ok(stored == committed.version && attempt == committed.attempt)
    }

    /// Reads the live slot of every key group in the manifest (and the S3 objects of spilled
    /// ones); only slots written for the version the manifest names are returned.
    async fn read_slots(&self, manifest: &Manifest) -> Result<HashMap<(String, u16), Vec<u8>>, StoreError> {
        let mut wanted: HashMap<(String, String), (String, GroupRef)> = HashMap::new();
        for o in &manifest.operators {
            for g in &o.groups {
                let key = self.slot_key(&o.id, g.key_group, g.slot);
                if let (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) = (key.get("pk"), key.get("sk")) {
                    wanted.insert((pk.clone(), sk.clone()), (o.id.clone(), g.clone()));
                }
            }
        }
        let mut keys: Vec<HashMap<String, AttributeValue>> = wanted
            .keys()
            .map(|(pk, sk)| HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))]))
            .collect();
        let mut found = HashMap::new();
        let mut spilled = Vec::new();
        while !keys.is_empty() {
            let chunk: Vec<_> = keys.drain(..keys.len().min(MAX_BATCH_GET)).collect();
            let request = KeysAndAttributes::builder()
                .set_keys(Some(chunk))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::dynamodb("BatchGetItem", e))?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| StoreError::dynamodb("BatchGetItem", e))?;
            for item in out
                .responses
                .and_then(|mut r| r.remove(&self.table))
                .unwrap_or_default()
            {
                let (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) = (item.get("pk"), item.get("sk"))
                else {
                    continue;
                };
                let Some((op, g)) = wanted.get(&(pk.clone(), sk.clone())) else {
                    continue;
                };
                let written_for = match item.get("ver") {
                    Some(AttributeValue::N(v)) => v.parse::<u64>().ok(),
                    _ => None,
                };
                if written_for != Some(g.version) {
                    continue; // reported as missing by the caller
                }
                if let Some(AttributeValue::B(b)) = item.get("state") {
                    found.insert((op.clone(), g.key_group), b.clone().into_inner());
                } else if let Some(pointer) = self.pointer_of(&item)? {
                    spilled.push((op.clone(), g.key_group, pointer));
                }
            }
            if let Some(unprocessed) = out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                keys.extend(unprocessed.keys);
            }
        }
        for (op, group, pointer) in spilled {
            let bucket = self.spill.as_ref().ok_or_else(|| {
                self.corrupt(format!(
                    "{op}/{group} is spilled to s3://{}/{} but the store has no spill bucket",
                    pointer.bucket, pointer.key
                ))
            })?;
            found.insert((op, group), bucket.get(&pointer).await?);
        }
        Ok(found)
    }

    /// The S3 pointer of a slot item of a spilled group, if it is one.
    fn pointer_of(&self, item: &HashMap<String, AttributeValue>) -> Result<Option<SpillPointer>, StoreError> {
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(v)) => Some(v.clone()),
            _ => None,
        };
        let (Some(bucket), Some(key), Some(checksum)) = (text("s3_bucket"), text("s3_key"), text("s3_xxh3")) else {
            return Ok(None);
        };
        let size = match item.get("s3_size") {
            Some(AttributeValue::N(v)) => v.parse().map_err(|_| self.corrupt("s3_size is not a number"))?,
            _ => return Err(self.corrupt("spilled slot without s3_size")),
        };
        Ok(Some(SpillPointer {
            bucket,
            key,
            size,
            checksum,
        }))
    }

    /// Commits `checkpoint` (incremental or full) as the state of the shard after `sequence`,
    /// atomically, conditioned on the version read by the last `load` or `commit`.
    pub async fn commit(
        &mut self,
        checkpoint: &Checkpoint,
        sequence: &SequenceNumber,
    ) -> Result<CommitStats, StoreError> {
        self.commit_with_failure(checkpoint, Some(sequence), None).await
    }

    /// Like [`DynamoDbCheckpointStore::commit`], also recording (or, with `None`, clearing) the
    /// record that failed after `sequence`. `sequence` is `None` when nothing of the shard was
    /// handled yet (the first record failed); the stored position is then kept.
    ///
    /// The steps (see the crate documentation): plan the slot writes, spill large groups to S3,
    /// write the slots and flip the checkpoint item (one transaction, or several and the flip
    /// last), then delete what the flip superseded.
    pub async fn commit_with_failure(
        &mut self,
        checkpoint: &Checkpoint,
        sequence: Option<&SequenceNumber>,
        failure: Option<&RecordFailure>,
    ) -> Result<CommitStats, StoreError> {
        let committed = self.committed.clone().ok_or(StoreError::NotLoaded)?;
        let new_version = committed.version + 1;
        let mut plan = self.plan(&committed, checkpoint, new_version)?;
        self.crash_at(CommitStep::BeforeWrite)?;
        self.spill_large_groups(&mut plan, new_version).await?;
        let now = (self.clock)();
        let puts = self.slot_puts(&mut plan, new_version, now)?;
        let position = sequence.cloned().or(committed.sequence_number.clone());
        let flip = self.flip(&plan.manifest, committed.version, position.as_ref(), failure, now)?;
        self.write(puts, flip, new_version, &mut plan.stats).await?;
        plan.stats.items_written += 1;
        self.refresh.clear();
        self.committed = Some(CommittedVersion {
            version: new_version,
            attempt: Some(self.attempt),
            sequence_number: position,
            manifest: Some(plan.manifest),
        });
        self.crash_at(CommitStep::AfterFlip)?;
        let mut stale_slots = plan.superseded_slots;
        stale_slots.extend(plan.removed.iter().map(|(op, g)| (op.clone(), g.key_group, g.slot)));
        plan.superseded
            .extend(plan.removed.iter().filter_map(|(_, g)| g.object.clone()));
        self.clean_up(&plan.superseded, &stale_slots, &mut plan.stats).await?;
        Ok(plan.stats)
    }

    /// The manifest of version `new_version` and the key-group writes that take the committed
    /// state to `checkpoint`'s.
    fn plan(
        &mut self,
        committed: &CommittedVersion,
        checkpoint: &Checkpoint,
        new_version: u64,
    ) -> Result<CommitPlan, StoreError> {
        let mut manifest = match &committed.manifest {
            Some(m) => {
                if m.pipeline != checkpoint.pipeline || m.max_key_groups != checkpoint.max_key_groups {
                    return Err(shardflow_engine::StateError::Mismatch(format!(
                        "stored checkpoint is of {}/{} key groups, this commit of {}/{}",
                        m.pipeline, m.max_key_groups, checkpoint.pipeline, checkpoint.max_key_groups
                    ))
                    .into());
                }
                m.clone()
            }
            None => Manifest::empty(&checkpoint.pipeline, checkpoint.max_key_groups),
        };
        manifest.epoch = checkpoint.epoch;
        manifest.engine = checkpoint.engine.clone();
        self.attempt = attempt_id(&self.stage, &self.shard, new_version);
        let mut plan = CommitPlan {
            manifest,
            writes: Vec::new(),
            removed: Vec::new(),
            superseded: Vec::new(),
            superseded_slots: Vec::new(),
            stats: CommitStats::default(),
        };
        if checkpoint.full {
            forget_unlisted_operators(&mut plan.manifest, checkpoint, &mut plan.removed);
        }
        for op in &checkpoint.operators {
            self.plan_operator(
                &mut plan.manifest,
                op,
                checkpoint.full,
                &mut plan.writes,
                &mut plan.removed,
            );
        }
        self.plan_refresh(&plan.manifest, &mut plan.writes, &mut plan.stats);
        Ok(plan)
    }

    /// Writes the groups too large for an item to S3 before any item of the commit, so that the
    /// objects exist before anything points to them.
    async fn spill_large_groups(&self, plan: &mut CommitPlan, new_version: u64) -> Result<(), StoreError> {
        let spills = plan
            .writes
            .iter()
            .filter(|w| w.bytes.len() > MAX_INLINE_STATE_BYTES)
            .count();
        for w in plan
            .writes
            .iter_mut()
            .filter(|w| w.bytes.len() > MAX_INLINE_STATE_BYTES)
        {
            if plan.stats.objects_written > 0 {
                self.crash_at(CommitStep::AfterSpillObject(plan.stats.objects_written))?;
            }
            let Some(bucket) = &self.spill else {
                return Err(StoreError::SpillNotConfigured {
                    operator: w.operator.clone(),
                    group: w.group,
                    bytes: w.bytes.len(),
                    limit: MAX_INLINE_STATE_BYTES,
                });
            };
            let key = self.object_key(&w.operator, w.group, new_version, &spill::checksum(&w.bytes));
            w.pointer = Some(bucket.put(&key, &w.bytes).await?);
            plan.stats.objects_written += 1;
        }
        if spills > 0 {
            self.crash_at(CommitStep::AfterSpill)?;
        }
        Ok(())
    }

    /// The slot items of the planned writes, noting in the manifest where each group now lives.
    fn slot_puts(&self, plan: &mut CommitPlan, new_version: u64, now: u64) -> Result<Vec<SlotPut>, StoreError> {
        let mut puts: Vec<SlotPut> = Vec::with_capacity(plan.writes.len());
        for w in std::mem::take(&mut plan.writes) {
            plan.superseded.extend(w.replaces.clone());
            plan.superseded_slots
                .extend(w.replaces_slot.map(|slot| (w.operator.clone(), w.group, slot)));
            puts.push(self.slot_put(&w, new_version, now, &mut plan.stats)?);
            plan.manifest.operator_mut(&w.operator).set(GroupRef {
                key_group: w.group,
                slot: w.slot,
                version: new_version,
                written_at: now,
                object: w.pointer.map(|p| p.key),
            });
        }
        Ok(puts)
    }

    /// The conditional write of the checkpoint item that makes version `expected + 1` current:
    /// the commit point.
    fn flip(
        &self,
        manifest: &Manifest,
        expected: u64,
        position: Option<&SequenceNumber>,
        failure: Option<&RecordFailure>,
        now: u64,
    ) -> Result<SlotPut, StoreError> {
        let manifest_bytes = postcard::to_allocvec(manifest).map_err(|e| self.corrupt(format!("manifest: {e}")))?;
        let mut item = self.checkpoint_key();
        item.insert("ver".into(), n(expected + 1));
        item.insert("attempt".into(), n(self.attempt));
        if let Some(at) = self.expires_at(now) {
            item.insert(TTL_ATTRIBUTE.into(), at);
        }
        if let Some(p) = position {
            item.insert("sequence_number".into(), s(p.as_str()));
        }
        if let Some(f) = failure {
            item.insert("failed_sequence_number".into(), s(f.sequence_number.as_str()));
            item.insert("failed_attempts".into(), n(u64::from(f.attempts)));
            item.insert(
                "failed_reason".into(),
                s(f.reason.chars().take(2_000).collect::<String>()),
            );
        }
        item.insert("manifest".into(), AttributeValue::B(Blob::new(manifest_bytes.clone())));
        if let Some(state) = &self.shuffle_state {
            item.insert(
                SHUFFLE_STATE_ATTRIBUTE.into(),
                AttributeValue::B(Blob::new(state.clone())),
            );
        }
        let mut flip = Put::builder().table_name(&self.table).set_item(Some(item));
        flip = if expected == 0 {
            flip.condition_expression("attribute_not_exists(pk)")
        } else {
            flip.condition_expression("ver = :expected")
                .expression_attribute_values(":expected", n(expected))
        };
        let flip = flip
            .build()
            .map_err(|e| StoreError::dynamodb("TransactWriteItems", e))?;
        let mut digest = Xxh3::new();
        digest.update(&self.attempt.to_le_bytes());
        digest.update(&manifest_bytes);
        digest.update(position.map_or("", |p| p.as_str()).as_bytes());
        if let Some(f) = failure {
            digest.update(f.sequence_number.as_str().as_bytes());
            digest.update(&f.attempts.to_le_bytes());
            digest.update(f.reason.as_bytes());
        }
        if let Some(state) = &self.shuffle_state {
            digest.update(state);
        }
        Ok(SlotPut {
            bytes: manifest_bytes.len() + self.shuffle_state.as_ref().map_or(0, Vec::len) + 256,
            digest: digest.digest(),
            put: flip,
        })
    }

    /// Writes the slot items and then the flip: in one transaction when everything fits one,
    /// otherwise the slots in transactions of their own and the flip last.
    async fn write(
        &self,
        mut puts: Vec<SlotPut>,
        flip: SlotPut,
        new_version: u64,
        stats: &mut CommitStats,
    ) -> Result<(), StoreError> {
        let total_bytes: usize = puts.iter().map(|p| p.bytes).sum::<usize>() + flip.bytes;
        let max_items = self.max_transaction_items;
        if puts.len() < max_items && total_bytes <= MAX_TRANSACTION_BYTES {
            puts.push(flip);
            return self.transact(puts, new_version, stats).await;
        }
        let mut chunks: Vec<Vec<SlotPut>> = Vec::new();
        let mut chunk_bytes = 0;
        for put in puts {
            match chunks.last_mut() {
                Some(chunk) if chunk.len() < max_items && chunk_bytes + put.bytes <= MAX_TRANSACTION_BYTES => {
                    chunk_bytes += put.bytes;
                    chunk.push(put);
                }
                _ => {
                    chunk_bytes = put.bytes;
                    chunks.push(vec![put]);
                }
            }
        }
        for (i, chunk) in chunks.into_iter().enumerate() {
            self.transact(chunk, new_version, stats).await?;
            self.crash_at(CommitStep::AfterSlotTransaction(i + 1))?;
        }
        self.crash_at(CommitStep::BeforeFlip)?;
        self.transact(vec![flip], new_version, stats).await
    }

    /// Plans the writes of one operator's changed key groups and records its removed ones.
    fn plan_operator(
        &self,
        manifest: &mut Manifest,
        op: &shardflow_engine::checkpoint::OperatorState,
        full: bool,
        writes: &mut Vec<GroupWrite>,
        removed: &mut Vec<(String, GroupRef)>,
    ) {
        let om = manifest.operator_mut(&op.operator);
        om.meta = op.meta.clone();
        let previous = std::mem::take(&mut om.groups);
        if !full {
            om.groups = previous.clone();
        }
        let present: std::collections::HashSet<u16> = op.key_groups.iter().map(|g| g.key_group).collect();
        if full {
            // A full checkpoint drops every group it does not list.
            removed.extend(
                previous
                    .iter()
                    .filter(|g| !present.contains(&g.key_group))
                    .map(|g| (op.operator.clone(), g.clone())),
            );
        }
        for g in &op.key_groups {
            let live = previous
                .binary_search_by_key(&g.key_group, |r| r.key_group)
                .ok()
                .map(|i| &previous[i]);
            if g.bytes.is_empty() {
                if let Some(r) = om.remove(g.key_group).or_else(|| live.cloned()) {
                    removed.push((op.operator.clone(), r));
                }
                continue;
            }
            // The manifest entry is set once the write is built.
            writes.push(GroupWrite {
                operator: op.operator.clone(),
                group: g.key_group,
                slot: self.attempt,
                replaces_slot: live.map(|l| l.slot),
                bytes: g.bytes.clone(),
                pointer: None,
                replaces: live.and_then(|l| l.object.clone()),
            });
        }
    }

    /// Adds rewrites of the live groups that `load` found near the end of the state horizon and
    /// that this commit neither writes nor removes.
    fn plan_refresh(&mut self, manifest: &Manifest, writes: &mut Vec<GroupWrite>, stats: &mut CommitStats) {
        for ((operator, group), bytes) in std::mem::take(&mut self.refresh) {
            if writes.iter().any(|w| w.operator == operator && w.group == group) {
                continue;
            }
            let Some(live) = manifest
                .operators
                .iter()
                .find(|o| o.id == operator)
                .and_then(|o| o.get(group))
            else {
                continue; // removed by this commit
            };
            writes.push(GroupWrite {
                slot: self.attempt,
                replaces_slot: Some(live.slot),
                replaces: live.object.clone(),
                operator,
                group,
                bytes,
                pointer: None,
            });
            stats.groups_refreshed += 1;
        }
    }

    /// The conditional write of one key group's slot item (inline, or the pointer to its object).
    fn slot_put(
        &self,
        w: &GroupWrite,
        new_version: u64,
        now: u64,
        stats: &mut CommitStats,
    ) -> Result<SlotPut, StoreError> {
        let mut item = self.slot_key(&w.operator, w.group, w.slot);
        item.insert("ver".into(), n(new_version));
        if let Some(at) = self.expires_at(now) {
            item.insert(TTL_ATTRIBUTE.into(), at);
        }
        let mut digest = Xxh3::new();
        digest.update(w.operator.as_bytes());
        digest.update(&w.group.to_le_bytes());
        digest.update(&w.slot.to_le_bytes());
        digest.update(&w.bytes);
        let item_bytes = match &w.pointer {
            Some(p) => {
                item.insert("s3_bucket".into(), s(&p.bucket));
                item.insert("s3_key".into(), s(&p.key));
                item.insert("s3_size".into(), n(p.size));
                item.insert("s3_xxh3".into(), s(&p.checksum));
                p.key.len() + p.bucket.len() + 64
            }
            None => {
                item.insert("state".into(), AttributeValue::B(Blob::new(w.bytes.clone())));
                w.bytes.len()
            }
        };
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            // A fresh item of this attempt: nothing else ever writes it.
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| StoreError::dynamodb("TransactWriteItems", e))?;
        stats.bytes_written += w.bytes.len();
        stats.items_written += 1;
        Ok(SlotPut {
            put,
            bytes: item_bytes + 256,
            digest: digest.digest(),
        })
    }

    /// After the flip: deletes the objects of superseded and removed groups and the slot items
    /// they lived in, the items in `BatchWriteItem`s of [`MAX_BATCH_DELETE`] (unconditionally: a
    /// slot id belongs to one commit attempt, so no later commit ever writes a deleted item
    /// again). Best effort — what a crash leaves behind (including the items of attempts that
    /// never flipped) expires (TTL on items, the bucket's lifecycle rule on objects). Fails only
    /// with an injected crash.
    async fn clean_up(
        &self,
        superseded: &[String],
        stale_slots: &[(String, u16, u64)],
        stats: &mut CommitStats,
    ) -> Result<(), StoreError> {
        let mut deletes = 0;
        if let Some(bucket) = &self.spill {
            for key in superseded {
                if deletes > 0 {
                    self.crash_at(CommitStep::AfterCleanUpDelete(deletes))?;
                }
                bucket.delete(key).await;
                deletes += 1;
            }
        }
        for chunk in stale_slots.chunks(MAX_BATCH_DELETE) {
            if deletes > 0 {
                self.crash_at(CommitStep::AfterCleanUpDelete(deletes))?;
            }
            deletes += 1;
            let mut requests = Vec::with_capacity(chunk.len());
            for (operator, group, slot) in chunk {
                let request = DeleteRequest::builder()
                    .set_key(Some(self.slot_key(operator, *group, *slot)))
                    .build()
                    .map_err(|e| StoreError::dynamodb("BatchWriteItem", e))?;
                requests.push(WriteRequest::builder().delete_request(request).build());
            }
            stats.items_deleted += self.delete_items(requests).await;
        }
        Ok(())
    }

    /// Sends `requests` (deletes) in one `BatchWriteItem`, resending what DynamoDB leaves
    /// unprocessed a few times. Returns how many were processed; failures are logged.
    async fn delete_items(&self, mut requests: Vec<WriteRequest>) -> usize {
        let total = requests.len();
        for attempt in 0..4u32 {
            if requests.is_empty() {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(25 << attempt)).await;
            }
            let result = self
                .client
                .batch_write_item()
                .request_items(&self.table, std::mem::take(&mut requests))
                .send()
                .await;
            match result {
                Ok(out) => {
                    requests = out
                        .unprocessed_items
                        .and_then(|mut u| u.remove(&self.table))
                        .unwrap_or_default();
                }
                Err(e) => {
                    tracing::warn!(stage = %self.stage, shard = %self.shard,
                        error = %StoreError::dynamodb("BatchWriteItem", e), "superseded slot items not deleted");
                    return 0;
                }
            }
        }
        if !requests.is_empty() {
            tracing::warn!(stage = %self.stage, shard = %self.shard, left = requests.len(),
                "superseded slot items left unprocessed; they expire by TTL");
        }
        total - requests.len()
    }

    /// Writes `puts` in one transaction whose request token is derived from its content, so that
    /// a retry of the same transaction is idempotent and a different one is not mistaken for it.
    async fn transact(&self, puts: Vec<SlotPut>, new_version: u64, stats: &mut CommitStats) -> Result<(), StoreError> {
        let mut token = Xxh3::new();
        token.update(self.table.as_bytes());
        token.update(&[0]);
        token.update(self.stage.as_bytes());
        token.update(&[0]);
        token.update(self.shard.as_bytes());
        token.update(&new_version.to_le_bytes());
        let items: Vec<TransactWriteItem> = puts
            .into_iter()
            .map(|p| {
                token.update(&p.digest.to_le_bytes());
                TransactWriteItem::builder().put(p.put).build()
            })
            .collect();
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .client_request_token(format!("{:032x}", token.digest128()))
            .send()
            .await;
        stats.transactions += 1;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c))
                    if c.cancellation_reasons()
                        .iter()
                        .any(|r| r.code() == Some("ConditionalCheckFailed")) =>
                {
                    Err(StoreError::Conflict {
                        stage: self.stage.clone(),
                        shard: self.shard.clone(),
                        expected: new_version - 1,
                    })
                }
                _ => Err(StoreError::dynamodb("TransactWriteItems", e)),
            },
        }
    }
}

impl StateStore for DynamoDbCheckpointStore {
    type Error = StoreError;
    type Position = ShardPosition;
    type CommitStats = CommitStats;

    /// The committed state and position (`None` before the first commit); also what the next
    /// commit is fenced on.
    async fn load(&mut self) -> Result<Option<Committed<ShardPosition>>, StoreError> {
        let loaded = DynamoDbCheckpointStore::load(self).await?;
        if loaded.version == 0 {
            return Ok(None);
        }
        let image = loaded
            .image
            .ok_or_else(|| self.corrupt("a committed checkpoint without state"))?;
        Ok(Some(Committed {
            image,
            position: ShardPosition {
                sequence_number: loaded.sequence_number,
                failure: loaded.failure,
            },
        }))
    }

    async fn commit(&mut self, checkpoint: &Checkpoint, position: &ShardPosition) -> Result<CommitStats, StoreError> {
        self.commit_with_failure(checkpoint, position.sequence_number.as_ref(), position.failure.as_ref())
            .await
    }
}
