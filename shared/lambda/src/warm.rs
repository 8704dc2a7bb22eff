//! Warm state: the engines of the shards a container served, kept between its invocations.
//!
//! Lambda may send a shard's next batch to any container, so a warm engine is only a guess: a
//! batch uses it when the shard's checkpoint item still holds the version the entry committed
//! ([`shardflow_state_dynamodb::DynamoDbCheckpointStore::is_current`]), and loads the shard from
//! the store otherwise. An entry is put back only after a successful commit, so it always holds
//! exactly the committed state. Entries cost their state's encoded size (at the last full load,
//! or the largest commit since: a shard that grew from nothing is counted by what it wrote)
//! times [`DECODED_OVERHEAD`]; the least recently used go first when the budget is exceeded.

use std::sync::Mutex;

use shardflow_engine::Engine;
use shardflow_state_dynamodb::{DynamoDbCheckpointStore, ShardPosition};

/// Decoded state in memory per byte of encoded state (an estimate of maps, boxes and
/// accumulators around the encoded bytes).
pub const DECODED_OVERHEAD: usize = 4;
/// The smallest cost counted for an entry (the engine itself and its bookkeeping).
const MIN_ENTRY_BYTES: usize = 64 << 10;

/// One shard's engine as committed, with the store that knows its committed version.
pub(crate) struct WarmShard<In, Out> {
    pub(crate) engine: Engine<In, Out>,
    pub(crate) store: DynamoDbCheckpointStore,
    pub(crate) position: ShardPosition,
    /// Encoded state bytes at the last full load or the largest commit since (the entry's cost
    /// is derived from it).
    pub(crate) state_bytes: usize,
}

impl<In, Out> WarmShard<In, Out> {
    fn cost(&self) -> usize {
        (self.state_bytes * DECODED_OVERHEAD).max(MIN_ENTRY_BYTES)
    }
}

/// The warm entries of a container, by shard, least recently used first.
pub(crate) struct WarmShards<In, Out> {
    budget_bytes: usize,
    entries: Mutex<Vec<(String, WarmShard<In, Out>)>>,
}

impl<In, Out> WarmShards<In, Out> {
    /// A cache holding at most `budget_bytes` of estimated state (0: nothing is kept).
    pub(crate) fn new(budget_bytes: usize) -> Self {
        WarmShards {
            budget_bytes,
            entries: Mutex::new(Vec::new()),
        }
    }

    /// Takes the entry of `shard` out (a batch owns it while it runs).
    pub(crate) fn take(&self, shard: &str) -> Option<WarmShard<In, Out>> {
        let mut entries = self.entries.lock().ok()?;
        let at = entries.iter().position(|(s, _)| s == shard)?;
        Some(entries.remove(at).1)
    }

    /// Puts `entry` back as the most recently used, evicting the least recently used entries
    /// while over the budget (an entry larger than the whole budget is not kept).
    pub(crate) fn put(&self, shard: &str, entry: WarmShard<In, Out>) {
        if entry.cost() > self.budget_bytes {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        entries.retain(|(s, _)| s != shard);
        entries.push((shard.to_owned(), entry));
        let mut total: usize = entries.iter().map(|(_, e)| e.cost()).sum();
        while total > self.budget_bytes && !entries.is_empty() {
            let (_, evicted) = entries.remove(0);
            total -= evicted.cost();
        }
    }

    /// Shards held, least recently used first.
    pub(crate) fn shards(&self) -> Vec<String> {
        self.entries
            .lock()
            .map(|e| e.iter().map(|(s, _)| s.clone()).collect())
            .unwrap_or_default()
    }
}

/// The default budget: half the function's memory (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, in MB;
/// 128 MB when unset, as outside Lambda).
pub fn default_budget_bytes() -> usize {
    let mb: usize = std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    mb * (1 << 20) / 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardflow_engine::{Pipeline, Windowing};

    fn entry(state_bytes: usize) -> WarmShard<u64, u64> {
        let pipeline = Pipeline::builder("count")
            .event_time(|v: &u64| *v as i64)
            .key_by(|v| *v)
            .window(Windowing::tumbling(1_000).unwrap())
            .aggregate(shardflow_engine::combine::Count, |_, _, _, n| n)
            .sink("counts");
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .build();
        let client = aws_sdk_dynamodb::Client::from_conf(config);
        WarmShard {
            engine: pipeline.engine(),
            store: DynamoDbCheckpointStore::new(client, "state", "count", "shard"),
            position: ShardPosition::default(),
            state_bytes,
        }
    }

    #[test]
    fn the_least_recently_used_shards_leave_when_the_budget_is_exceeded() {
        let mb = 1 << 20;
        // Each entry of 1 MiB of encoded state costs 4 MiB: three fit 12 MiB, not four.
        let warm = WarmShards::new(12 * mb);
        for shard in ["a", "b", "c"] {
            warm.put(shard, entry(mb));
        }
        assert!(warm.take("a").is_some(), "a was kept");
        warm.put("a", entry(mb));
        warm.put("d", entry(mb));
        assert_eq!(warm.shards(), ["c", "a", "d"], "b, least recently used, left");
    }

    #[test]
    fn a_shard_larger_than_the_whole_budget_is_not_kept() {
        let warm = WarmShards::new(8 << 20);
        warm.put("big", entry(4 << 20));
        assert!(warm.shards().is_empty());
        warm.put("small", entry(0));
        assert_eq!(warm.shards(), ["small"], "an empty shard costs the minimum");
    }
}
