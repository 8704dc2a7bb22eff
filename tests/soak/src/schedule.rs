//! The seeded fault schedule: which fault starts when and for how long. Pure: the same seed and
//! run length give the same schedule, so a failing soak is rerun with the same faults.

use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// A kind of fault the soak injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// `kill -9` of every running process of a stage's function (mid-batch when one runs).
    KillFunction,
    /// Every DynamoDB call of the functions held longer than the function timeout: the running
    /// invocations time out and are killed by the runtime.
    FunctionTimeout,
    /// DynamoDB answers a share of the functions' calls with `ProvisionedThroughputExceededException`.
    DynamoDbThrottle,
    /// DynamoDB answers a share of the functions' calls with HTTP 500.
    DynamoDbServerError,
    /// Kinesis answers a share of the calls (the soak's producer and the functions) with
    /// `ProvisionedThroughputExceededException`.
    KinesisThrottle,
    /// Kinesis answers a share of the calls with HTTP 500.
    KinesisServerError,
    /// SNS refuses every publish (HTTP 500) for the fault's duration.
    SnsOutage,
    /// A shard of the input stream is split in two.
    SplitShard,
    /// Two adjacent open shards of the input stream (the last split's children) are merged.
    MergeShards,
    /// A shard of the shuffle stream between the revenue stages is split in two.
    SplitShuffleShard,
    /// Two adjacent open shards of the shuffle stream are merged.
    MergeShuffleShards,
    /// The Postgres the revenue stage writes is shut down (connections cut) for the fault's
    /// duration and started again.
    PostgresRestart,
    /// `kill -9` of the CDC reader (`shardflow cdc`), down for the fault's duration, then started
    /// again on its slot. Not in the seeded schedule ([`FaultKind::ALL`]): the CDC phase places it
    /// halfway through itself (`crate::cdc`).
    KillCdcReader,
}

impl FaultKind {
    /// Every kind the seeded schedule places, in a fixed order (the schedule shuffles them).
    pub const ALL: [FaultKind; 12] = [
        FaultKind::KillFunction,
        FaultKind::FunctionTimeout,
        FaultKind::DynamoDbThrottle,
        FaultKind::DynamoDbServerError,
        FaultKind::KinesisThrottle,
        FaultKind::KinesisServerError,
        FaultKind::SnsOutage,
        FaultKind::SplitShard,
        FaultKind::MergeShards,
        FaultKind::SplitShuffleShard,
        FaultKind::MergeShuffleShards,
        FaultKind::PostgresRestart,
    ];

    /// The kind's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillFunction => "kill-function",
            FaultKind::FunctionTimeout => "function-timeout",
            FaultKind::DynamoDbThrottle => "dynamodb-throttle",
            FaultKind::DynamoDbServerError => "dynamodb-5xx",
            FaultKind::KinesisThrottle => "kinesis-throttle",
            FaultKind::KinesisServerError => "kinesis-5xx",
            FaultKind::SnsOutage => "sns-outage",
            FaultKind::SplitShard => "split-shard",
            FaultKind::MergeShards => "merge-shards",
            FaultKind::SplitShuffleShard => "split-shuffle-shard",
            FaultKind::MergeShuffleShards => "merge-shuffle-shards",
            FaultKind::PostgresRestart => "postgres-restart",
            FaultKind::KillCdcReader => "kill-cdc-reader",
        }
    }

    /// Whether the fault is one act (a kill, a reshard) rather than a window of time.
    pub fn is_instant(self) -> bool {
        matches!(
            self,
            FaultKind::KillFunction
                | FaultKind::SplitShard
                | FaultKind::MergeShards
                | FaultKind::SplitShuffleShard
                | FaultKind::MergeShuffleShards
        )
    }
}

/// One scheduled fault.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fault {
    /// Its kind.
    pub kind: FaultKind,
    /// When it starts, from the start of the feed.
    #[serde(rename = "at_ms", serialize_with = "as_ms")]
    pub at: Duration,
    /// How long it lasts (zero for an instant fault).
    #[serde(rename = "duration_ms", serialize_with = "as_ms")]
    pub duration: Duration,
    /// The share of calls it fails (proxy faults; 1.0 otherwise).
    pub probability: f64,
    /// Which function a kill targets (an index into the running functions, taken modulo).
    pub target: usize,
}

impl Fault {
    /// When it ends.
    pub fn end(&self) -> Duration {
        self.at + self.duration
    }
}

fn as_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The splits and the merges that undo them, per stream.
const RESHARDS: [(FaultKind, FaultKind); 2] = [
    (FaultKind::SplitShard, FaultKind::MergeShards),
    (FaultKind::SplitShuffleShard, FaultKind::MergeShuffleShards),
];

/// The schedule's shape.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleConfig {
    /// The seed.
    pub seed: u64,
    /// How long the feed runs.
    pub feed: Duration,
    /// Quiet time at the start (the normal iterator age is measured then).
    pub warmup: Duration,
    /// Quiet time at the end of the feed, before the drain.
    pub cooldown: Duration,
    /// Longest window of a windowed fault.
    pub max_window: Duration,
    /// Slots per round of every kind at least this long: a long run repeats the kinds.
    pub min_slot: Duration,
}

/// The faults for `config`, sorted by start: every kind at least once (when the fault phase
/// has room for a slot per kind), in a seeded order, each in a slot of its own so no two
/// overlap; a split always comes before the merge that undoes it, so the stream's shard count
/// stays bounded.
pub fn schedule(config: &ScheduleConfig) -> Vec<Fault> {
    let phase = config.feed.saturating_sub(config.warmup + config.cooldown);
    let kinds = FaultKind::ALL.len() as u32;
    if phase.is_zero() {
        return Vec::new();
    }
    let rounds = (phase.as_secs_f64() / (config.min_slot.as_secs_f64() * f64::from(kinds)))
        .floor()
        .max(1.0) as u32;
    let slots = rounds * kinds;
    let slot = phase / slots;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(config.seed);
    let mut order: Vec<FaultKind> = Vec::new();
    for _ in 0..rounds {
        let mut round: Vec<FaultKind> = FaultKind::ALL.to_vec();
        round.shuffle(&mut rng);
        // a merge undoes the split before it: move the merge after the split if needed
        for (split, merge) in RESHARDS {
            let split = round.iter().position(|k| *k == split).unwrap_or(0);
            let merge = round.iter().position(|k| *k == merge).unwrap_or(0);
            if merge < split {
                round.swap(merge, split);
            }
        }
        order.extend(round);
    }
    let window = config.max_window.min(slot.mul_f64(0.6));
    order
        .into_iter()
        .enumerate()
        .map(|(i, kind)| {
            let slot_start = config.warmup + slot * i as u32;
            let duration = if kind.is_instant() { Duration::ZERO } else { window };
            let room = slot.saturating_sub(duration).mul_f64(0.5);
            let jitter = room.mul_f64(rng.random::<f64>());
            let probability = match kind {
                FaultKind::DynamoDbThrottle | FaultKind::KinesisThrottle => 0.5,
                FaultKind::DynamoDbServerError | FaultKind::KinesisServerError => 0.3,
                _ => 1.0,
            };
            Fault {
                kind,
                at: slot_start + jitter,
                duration,
                probability,
                target: rng.random_range(0..1024),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(seed: u64, minutes: u64) -> ScheduleConfig {
        ScheduleConfig {
            seed,
            feed: Duration::from_secs(minutes * 60),
            warmup: Duration::from_secs(20),
            cooldown: Duration::from_secs(30),
            max_window: Duration::from_secs(20),
            min_slot: Duration::from_secs(40),
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        assert_eq!(schedule(&config(1, 3)), schedule(&config(1, 3)));
        assert_ne!(schedule(&config(1, 3)), schedule(&config(2, 3)));
    }

    #[test]
    fn a_three_minute_run_injects_every_kind_once_without_overlap_inside_the_fault_phase() {
        let c = config(16, 3);
        let faults = schedule(&c);
        let mut kinds: Vec<FaultKind> = faults.iter().map(|f| f.kind).collect();
        kinds.sort();
        assert_eq!(kinds, FaultKind::ALL.to_vec());
        for pair in faults.windows(2) {
            assert!(pair[0].end() <= pair[1].at, "{pair:?} overlap");
        }
        let first = faults.first().map(|f| f.at).unwrap_or_default();
        let last = faults.iter().map(Fault::end).max().unwrap_or_default();
        assert!(first >= c.warmup);
        assert!(last <= c.feed - c.cooldown);
    }

    #[test]
    fn a_long_run_repeats_the_kinds_and_every_merge_follows_its_split() {
        for seed in 0..50 {
            let faults = schedule(&config(seed, 60));
            assert!(faults.len() >= 2 * FaultKind::ALL.len(), "{} faults", faults.len());
            for (split, merge) in RESHARDS {
                let mut open_splits = 0i32;
                for f in &faults {
                    if f.kind == split {
                        open_splits += 1;
                    } else if f.kind == merge {
                        open_splits -= 1;
                        assert!(open_splits >= 0, "seed {seed}: {merge:?} before its split");
                    }
                }
            }
        }
    }
}
