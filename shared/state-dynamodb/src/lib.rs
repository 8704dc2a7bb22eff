//! # shardflow-state-dynamodb
//!
//! Checkpoints of a Lambda stage's shards in DynamoDB.
//!
//! # Protocol
//! One table (string keys `pk`, `sk`) holds, per stage:
//! - a **checkpoint item** per shard (`pk = {stage}#shard#{shard}`, `sk = checkpoint`): the last
//!   committed sequence number, a `ver` counter (the fencing token), and the manifest — engine
//!   state (watermarks, counters), each operator's meta state, and for each key group which of
//!   its two slots is live and at which version;
//! - two **slot items** per key group of each operator (`pk = {stage}#kg#{operator}#{group}`,
//!   `sk = {shard}#slot0|slot1`), each holding a key group's encoded state and the checkpoint
//!   version it was written for.
//!
//! A commit of checkpoint version `v + 1` (read at `v`) writes every changed key group into the
//! slot that is *not* live, conditioned on that slot having been written for a version `< v + 1`,
//! then replaces the checkpoint item conditioned on `ver = v` (or on its absence for `v = 0`).
//! The checkpoint item is the commit point: until it flips, readers see version `v` and its live
//! slots, which the commit never touches; after it flips they see `v + 1`. When the whole commit
//! fits in one `TransactWriteItems` (100 actions, 4 MB) it is one transaction; larger commits write
//! the slots in transactions of up to 100 items and flip the checkpoint last, which keeps it atomic
//! beyond DynamoDB's transaction limits.
//!
//! Fencing: a stale or concurrent invocation of the same shard read an older `ver`; its slot
//! writes fail the `< v + 1` condition once a newer commit wrote that slot, and its flip fails the
//! `ver = v` condition. Either way it gets [`StoreError::Conflict`] and fails the invocation, and
//! Lambda redelivers the batch to a fresh invocation, which reloads and skips what is committed.
//! Transactions carry a `ClientRequestToken` derived from their content, so an SDK retry of a
//! transaction that did commit succeeds idempotently instead of reporting a conflict.
#![warn(missing_docs)]

mod error;
mod manifest;
mod store;
mod table;

pub use error::StoreError;
pub use store::{
    CommitStats, CommitStep, CrashHook, DynamoDbCheckpointStore, LoadedCheckpoint, RecordFailure,
    MAX_INLINE_STATE_BYTES, MAX_TRANSACTION_ITEMS,
};
pub use table::create_state_table;
