//! # shardflow-state-dynamodb
//!
//! Checkpoints of a Lambda stage's shards in DynamoDB (large key groups in S3): the
//! [`shardflow_engine::StateStore`] of a deployed stage, between `shardflow-lambda` and the table.
//!
//! # Protocol
//! One table (string keys `pk`, `sk`) holds, per stage:
//! - a **checkpoint item** per shard (`pk = {stage}#shard#{shard}`, `sk = checkpoint`): the last
//!   committed sequence number, a `ver` counter (the fencing token), and the manifest — engine
//!   state (watermarks, counters), each operator's meta state, and for each key group the slot
//!   item holding its live state and the version it was written for; and, for the downstream
//!   stage of a shuffle, its opaque shuffle state (`shuffle_state`: dedup marks and upstream
//!   watermarks), written by the same conditional write;
//! - **slot items** (`pk = {stage}#kg#{operator}#{group}`, `sk = {shard}#slot{id}`), each holding
//!   one key group's encoded state and the checkpoint version it was written for. The slot id is
//!   a fresh random id of the commit attempt that wrote it: no two attempts ever write the same
//!   item.
//!
//! A commit of checkpoint version `v + 1` (read at `v`) writes every changed key group into a new
//! slot item of its own attempt (`attribute_not_exists`), then replaces the checkpoint item
//! conditioned on `ver = v` (or on its absence for `v = 0`). The checkpoint item is the commit
//! point: until it flips, readers see version `v` and the slot items it names, which no commit
//! touches; after it flips they see `v + 1`. When the whole commit fits in one
//! `TransactWriteItems` (100 actions, 4 MB) it is one transaction; larger commits write the slot
//! items in transactions of up to 100 items and flip the checkpoint last, which keeps it atomic
//! beyond DynamoDB's transaction limits. After the flip the superseded slot items are deleted
//! (best effort, in `BatchWriteItem`s of 25 deletes; unconditionally, since no later commit
//! writes an item of another attempt's slot id); the items of attempts that crashed or lost the
//! flip are never referenced and expire by TTL. A commit thus costs one write per dirty key
//! group plus the checkpoint item, and one delete per superseded slot.
//!
//! Fencing: a stale or concurrent invocation of the same shard read an older `ver`; whatever slot
//! items it wrote are its own and unreferenced, and its flip fails the `ver = v` condition. It gets
//! [`StoreError::Conflict`] and fails the invocation, and Lambda redelivers the batch to a fresh
//! invocation, which reloads and skips what is committed. A retry after a crash in the middle of a
//! commit — with the same or different content — writes new items of its own and is never blocked
//! by what the crashed attempt left.
//! Transactions carry a `ClientRequestToken` derived from their content, so an SDK retry of a
//! transaction that did commit succeeds idempotently instead of reporting a conflict.
//!
//! # Progress (interval commits)
//! A stage that commits every few batches keeps, next to the checkpoint item, a **progress item**
//! per shard (`pk` of the checkpoint item, `sk = progress`): the last sequence number any
//! invocation handled (emitted) whether committed or not, the id of the container that handled it
//! (`container`), the checkpoint version its state started from (`base_ver`), the batches since
//! that commit (`batches`) and when the interval started (`since_ms`, epoch ms).
//! - [`DynamoDbCheckpointStore::probe`] reads both items with one strongly consistent `Query` of
//!   the partition key ([`ShardProbe`]).
//! - [`DynamoDbCheckpointStore::write_progress`] writes it with one `PutItem` conditioned on the
//!   sequence number the caller read (or on its absence), so two invocations cannot both advance
//!   a shard from the same point: the loser gets [`StoreError::ProgressConflict`].
//! - The checkpoint flip does not touch it; the stage moves it to the commit right after the flip
//!   (same condition). A progress item behind the checkpoint means nothing; one beyond it means
//!   records were handled after the commit, which the next invocation reads from Kinesis. It only
//!   moves forward, so a lost or refused write after a commit hides nothing.
//!
//! Cost of a batch that does not commit: the `Query` (both items) and one `PutItem`.
//!
//! # Large state
//! A key group whose encoded state is over [`MAX_INLINE_STATE_BYTES`] (items are at most 400 KB)
//! is written to S3 ([`SpillBucket`]) *before* any item of the commit, under
//! `state/{stage}/{operator}/{group}/{shard}/v{version}-{xxh3}`; its slot item then holds the
//! pointer (`s3_bucket`, `s3_key`, `s3_size`, `s3_xxh3`) instead of `state`, and `load` fetches
//! the object and verifies size and checksum ([`StoreError::SpillChecksum`]). The version makes
//! the key unique per commit, the checksum makes a stale invocation that loses the flip write its
//! own object rather than overwrite a committed one; a retry of the same batch writes the same
//! bytes to the same key. Nothing points to an object until the flip, so a crash before it leaves
//! the previous version readable. After the flip the objects of superseded versions are deleted,
//! best effort. Without a spill bucket such a group fails the commit
//! ([`StoreError::SpillNotConfigured`]) before anything is written.
//!
//! Orphans (objects of commits that crashed before their flip, and deletes that failed) are
//! removed by the bucket's lifecycle rule, which the infrastructure template declares: expire
//! objects under `state/` after the state horizon plus one day (91 days with the default). That
//! is safe for live state only because of the refresh below: a live object is rewritten under a
//! new key at least every half horizon while its shard commits.
//!
//! # Expiry
//! - A key group that the engine empties (windows past allowed lateness are dropped; an emptied
//!   group arrives as empty bytes) leaves the manifest at the flip; after the flip its slot item
//!   and its object are deleted, best effort (a later re-creation of the group is written to a
//!   slot of its own attempt, which this delete never names).
//! - A full commit is the whole state: an operator it does not list (one a restore dropped, or a
//!   format 1 entry rewritten under its new id) leaves the manifest at the flip, and its slot
//!   items and objects are deleted after it, as an emptied group's are — so dropped state never
//!   comes back on the next load.
//! - Safety net for abandoned stages: every item carries the TTL attribute [`TTL_ATTRIBUTE`]
//!   (`expires_at`, epoch seconds) = write time + the state horizon ([`DEFAULT_STATE_TTL`], 90
//!   days; `with_state_ttl`, `None` disables it), and [`create_state_table`] enables TTL on it. A
//!   running stage never loses live state to TTL: the checkpoint item is rewritten by every
//!   commit, and `load` notes live groups written more than half a horizon ago, which the next
//!   commit rewrites (same bytes, new version and expiry; counted as `groups_refreshed`).
//!   Caveat: a shard that commits nothing for more than half a horizon (no records at all) can
//!   see groups it last wrote over a horizon ago expire; its next `load` then fails as
//!   [`StoreError::Corrupt`] rather than resume from partial state. Choose a horizon longer than
//!   twice the longest silence of a shard. Closed parent shards stop committing, so their items
//!   expire one horizon after the reshard — after their children have copied their state.
#![warn(missing_docs)]

mod error;
mod manifest;
mod spill;
mod store;
mod table;

pub use error::StoreError;
pub use spill::SpillBucket;
pub use store::{
    CommitStats, CommitStep, CrashHook, DynamoDbCheckpointStore, EpochClock, LoadedCheckpoint, RecordFailure,
    ShardPosition, ShardProbe, ShardProgress, DEFAULT_STATE_TTL, MAX_INLINE_STATE_BYTES, MAX_TRANSACTION_ITEMS,
    SHUFFLE_STATE_ATTRIBUTE, TTL_ATTRIBUTE,
};
pub use table::create_state_table;
