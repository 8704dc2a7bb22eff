//! Watermarks: per-partition event-time progress, combined by minimum.
//!
//! # Protocol
//! - Every input partition (a Kinesis shard, a file, a simulated shard) has its own watermark:
//!   the largest event time seen in it minus the bounded out-of-orderness (Flink's
//!   `forBoundedOutOfOrderness`, Flink SQL's `WATERMARK FOR ts AS ts - INTERVAL ...`). A watermark
//!   `W` promises that no more records with timestamp `<= W` are expected.
//! - The engine's watermark is the minimum over the *active* partitions, and never moves back.
//! - A partition that has produced no record for `idleness` ms of processing time is *idle* and
//!   stops holding the combined watermark back (Flink's `withIdleness`; apache/beam#31085 is the
//!   stall this avoids). Its next record makes it active again. When every partition is idle the
//!   combined watermark is the largest partition watermark: each partition has then said all it
//!   has to say.
//! - A partition that ends (a closed parent shard after a reshard, the end of a file) is removed
//!   from the minimum; when all partitions have ended the watermark is [`MAX_TIMESTAMP`].
//! - The watermark is recomputed after every record, so it does not depend on how the input was
//!   cut into batches.
//! - An engine with [`WatermarkStrategy::external`] watermarks derives nothing from its records:
//!   whoever feeds it sets the combined watermark ([`crate::Engine::advance_watermark`]), as the
//!   keyed downstream half of a split pipeline does from its upstream's watermarks.

use serde::{Deserialize, Serialize};

use crate::error::PipelineError;
use crate::record::PartitionId;
use crate::time::{DurationMs, Timestamp, MAX_TIMESTAMP, MIN_TIMESTAMP};

/// How watermarks are generated from the records of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkStrategy {
    out_of_orderness: DurationMs,
    idleness: Option<DurationMs>,
    external: bool,
}

impl WatermarkStrategy {
    /// Records may arrive up to `ms` behind the largest timestamp seen in their partition.
    pub fn bounded_out_of_orderness(ms: DurationMs) -> Result<Self, PipelineError> {
        if ms < 0 {
            return Err(PipelineError::InvalidParameter {
                what: "out-of-orderness",
                reason: format!("must not be negative, got {ms}"),
            });
        }
        Ok(WatermarkStrategy {
            out_of_orderness: ms,
            idleness: None,
            external: false,
        })
    }

    /// Watermarks set from outside: records do not move the watermark; the engine's feeder
    /// raises it with [`crate::Engine::advance_watermark`] (the downstream half of a split
    /// pipeline, whose watermark is its upstream partitions'). Ending partitions and
    /// [`crate::Engine::finish`] still end the input.
    pub fn external() -> Self {
        WatermarkStrategy {
            out_of_orderness: 0,
            idleness: None,
            external: true,
        }
    }

    /// Whether watermarks are set from outside ([`WatermarkStrategy::external`]).
    pub fn is_external(&self) -> bool {
        self.external
    }

    /// A partition without records for `ms` of processing time stops holding the watermark back.
    pub fn with_idleness(mut self, ms: DurationMs) -> Result<Self, PipelineError> {
        if ms <= 0 {
            return Err(PipelineError::InvalidParameter {
                what: "idleness timeout",
                reason: format!("must be positive, got {ms}"),
            });
        }
        self.idleness = Some(ms);
        Ok(self)
    }

    /// The bounded out-of-orderness in ms.
    pub fn out_of_orderness(&self) -> DurationMs {
        self.out_of_orderness
    }

    /// The idleness timeout, if any.
    pub fn idleness(&self) -> Option<DurationMs> {
        self.idleness
    }
}

impl Default for WatermarkStrategy {
    /// Four seconds of out-of-orderness, no idleness timeout.
    fn default() -> Self {
        WatermarkStrategy {
            out_of_orderness: 4_000,
            idleness: None,
            external: false,
        }
    }
}

/// The watermark state of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionWatermark {
    /// The partition's name (e.g. a shard id).
    pub name: String,
    /// Largest event time seen.
    pub max_timestamp: Timestamp,
    /// Processing time of its last record.
    pub last_active: Timestamp,
    /// Whether it ended (no more records will come).
    pub ended: bool,
}

/// Tracks the watermarks of every partition and combines them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkTracker {
    out_of_orderness: DurationMs,
    idleness: Option<DurationMs>,
    partitions: Vec<PartitionWatermark>,
    combined: Timestamp,
    processing_time: Timestamp,
    /// The first processing time seen: partitions registered before it count as active from it.
    clock_start: Timestamp,
}

impl WatermarkTracker {
    /// A tracker with no partitions yet.
    pub fn new(strategy: WatermarkStrategy) -> Self {
        WatermarkTracker {
            out_of_orderness: strategy.out_of_orderness,
            idleness: strategy.idleness,
            partitions: Vec::new(),
            combined: MIN_TIMESTAMP,
            processing_time: MIN_TIMESTAMP,
            clock_start: MIN_TIMESTAMP,
        }
    }

    /// The id of partition `name`, registering it on first use.
    pub fn partition(&mut self, name: &str) -> PartitionId {
        if let Some(i) = self.partitions.iter().position(|p| p.name == name) {
            return i as PartitionId;
        }
        self.partitions.push(PartitionWatermark {
            name: name.to_owned(),
            max_timestamp: MIN_TIMESTAMP,
            last_active: self.processing_time,
            ended: false,
        });
        self.partitions.len() as PartitionId - 1
    }

    /// Switches to `strategy` (on restore: the strategy is part of the pipeline's code, not of
    /// its state, so a redeployed pipeline's strategy applies from the next record on). The
    /// combined watermark is kept: it never moves back.
    pub fn set_strategy(&mut self, strategy: WatermarkStrategy) {
        self.out_of_orderness = strategy.out_of_orderness;
        self.idleness = strategy.idleness;
    }

    /// The partitions, indexed by [`PartitionId`].
    pub fn partitions(&self) -> &[PartitionWatermark] {
        &self.partitions
    }

    /// The combined watermark.
    pub fn current(&self) -> Timestamp {
        self.combined
    }

    /// The latest processing time seen.
    pub fn processing_time(&self) -> Timestamp {
        self.processing_time
    }

    /// Records a record of `partition` at event time `ts` arriving at processing time `now`.
    /// Returns the new combined watermark if it advanced.
    #[inline]
    pub fn observe(&mut self, partition: PartitionId, ts: Timestamp, now: Timestamp) -> Option<Timestamp> {
        let p = self.partitions.get_mut(partition as usize)?;
        let was_idle = is_idle(self.idleness, p, self.clock_start, self.processing_time);
        let raised = ts > p.max_timestamp;
        if raised {
            p.max_timestamp = ts;
        }
        p.last_active = p.last_active.max(now);
        p.ended = false;
        self.tick(now);
        if raised || was_idle || self.idleness.is_some() {
            self.recompute()
        } else {
            None
        }
    }

    /// The watermark of `partition` alone: its largest event time minus the out-of-orderness
    /// ([`MIN_TIMESTAMP`] before its first record or for an unknown partition).
    pub fn partition_watermark_of(&self, partition: PartitionId) -> Timestamp {
        self.partitions
            .get(partition as usize)
            .map_or(MIN_TIMESTAMP, |p| self.partition_watermark(p))
    }

    /// Advances processing time to `now` without recombining the partitions (external
    /// watermarks: the partitions' state does not make the watermark).
    pub fn advance_clock(&mut self, now: Timestamp) {
        if now > self.processing_time {
            self.tick(now);
        }
    }

    /// Raises the combined watermark to `watermark` if that is later (external watermarks).
    /// Returns the new combined watermark if it advanced.
    pub fn raise_to(&mut self, watermark: Timestamp) -> Option<Timestamp> {
        if watermark > self.combined {
            self.combined = watermark;
            Some(watermark)
        } else {
            None
        }
    }

    /// Advances processing time (idleness is measured on it). Returns the new combined watermark
    /// if it advanced because partitions became idle.
    pub fn advance_processing_time(&mut self, now: Timestamp) -> Option<Timestamp> {
        if now <= self.processing_time {
            return None;
        }
        self.tick(now);
        self.recompute()
    }

    /// Takes over the partitions of `parent` (the tracker of a closed parent shard) as ended
    /// partitions, without recomputing: the combined watermark and processing time become the
    /// larger of the two, so they never move back; the next record recomputes the combination.
    pub fn adopt(&mut self, parent: &WatermarkTracker) {
        for p in &parent.partitions {
            match self.partitions.iter_mut().find(|q| q.name == p.name) {
                Some(q) => {
                    q.max_timestamp = q.max_timestamp.max(p.max_timestamp);
                    q.last_active = q.last_active.max(p.last_active);
                    q.ended = true;
                }
                None => self.partitions.push(PartitionWatermark {
                    ended: true,
                    ..p.clone()
                }),
            }
        }
        self.combined = self.combined.max(parent.combined);
        self.processing_time = self.processing_time.max(parent.processing_time);
        self.clock_start = self.clock_start.max(parent.clock_start);
    }

    /// Marks a partition as ended. Returns the new combined watermark if it advanced.
    pub fn end_partition(&mut self, partition: PartitionId) -> Option<Timestamp> {
        let p = self.partitions.get_mut(partition as usize)?;
        p.ended = true;
        self.recompute()
    }

    /// Ends every partition: the watermark becomes [`MAX_TIMESTAMP`].
    pub fn end_all(&mut self) -> Option<Timestamp> {
        for p in &mut self.partitions {
            p.ended = true;
        }
        if self.combined < MAX_TIMESTAMP {
            self.combined = MAX_TIMESTAMP;
            Some(MAX_TIMESTAMP)
        } else {
            None
        }
    }

    fn tick(&mut self, now: Timestamp) {
        if self.clock_start == MIN_TIMESTAMP {
            self.clock_start = now;
        }
        self.processing_time = self.processing_time.max(now);
    }

    fn partition_watermark(&self, p: &PartitionWatermark) -> Timestamp {
        if p.max_timestamp == MIN_TIMESTAMP {
            MIN_TIMESTAMP
        } else {
            p.max_timestamp.saturating_sub(self.out_of_orderness)
        }
    }

    fn recompute(&mut self) -> Option<Timestamp> {
        let mut min_active = MAX_TIMESTAMP;
        let mut max_any = MIN_TIMESTAMP;
        let mut any_active = false;
        let mut any_open = false;
        for p in &self.partitions {
            if p.ended {
                continue;
            }
            any_open = true;
            let wm = self.partition_watermark(p);
            max_any = max_any.max(wm);
            if !is_idle(self.idleness, p, self.clock_start, self.processing_time) {
                any_active = true;
                min_active = min_active.min(wm);
            }
        }
        let candidate = if !any_open {
            if self.partitions.is_empty() {
                return None;
            }
            MAX_TIMESTAMP
        } else if any_active {
            min_active
        } else {
            max_any
        };
        if candidate > self.combined {
            self.combined = candidate;
            Some(candidate)
        } else {
            None
        }
    }
}

fn is_idle(idleness: Option<DurationMs>, p: &PartitionWatermark, clock_start: Timestamp, now: Timestamp) -> bool {
    idleness.is_some_and(|idle| p.last_active.max(clock_start).saturating_add(idle) <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(idle: Option<DurationMs>) -> WatermarkTracker {
        let mut s = WatermarkStrategy::bounded_out_of_orderness(4_000).unwrap();
        if let Some(i) = idle {
            s = s.with_idleness(i).unwrap();
        }
        WatermarkTracker::new(s)
    }

    #[test]
    fn combined_watermark_is_the_minimum_of_partitions_minus_the_bound() {
        let mut t = tracker(None);
        let a = t.partition("a");
        let b = t.partition("b");
        assert_eq!(t.observe(a, 10_000, 0), None, "b has seen nothing yet");
        assert_eq!(t.observe(b, 20_000, 0), Some(6_000));
        assert_eq!(t.observe(a, 30_000, 0), Some(16_000));
        assert_eq!(t.current(), 16_000);
    }

    #[test]
    fn watermark_never_moves_back() {
        let mut t = tracker(None);
        let a = t.partition("a");
        t.observe(a, 10_000, 0);
        assert_eq!(t.current(), 6_000);
        assert_eq!(t.observe(a, 1_000, 0), None);
        let b = t.partition("b");
        t.observe(b, 5_000, 0);
        assert_eq!(t.current(), 6_000, "a new slower partition does not move it back");
    }

    #[test]
    fn idle_partition_stops_holding_the_watermark_back() {
        let mut t = tracker(Some(1_000));
        let a = t.partition("a");
        let b = t.partition("b");
        t.observe(a, 10_000, 0);
        t.observe(b, 1_000, 0);
        assert_eq!(t.current(), -3_000);
        // a keeps producing, b is silent for more than the idleness timeout
        t.observe(a, 20_000, 500);
        assert_eq!(t.current(), -3_000);
        assert_eq!(t.observe(a, 21_000, 1_500), Some(17_000));
        // b wakes up: it holds the watermark again but cannot move it back
        assert_eq!(t.observe(b, 2_000, 1_600), None);
        assert_eq!(t.current(), 17_000);
    }

    #[test]
    fn all_idle_partitions_release_the_watermark_by_processing_time() {
        let mut t = tracker(Some(1_000));
        let a = t.partition("a");
        let b = t.partition("b");
        t.observe(a, 10_000, 0);
        t.observe(b, 8_000, 0);
        assert_eq!(t.current(), 4_000);
        assert_eq!(t.advance_processing_time(5_000), Some(6_000));
    }

    #[test]
    fn ended_partitions_leave_the_minimum_and_all_ended_is_max() {
        let mut t = tracker(None);
        let a = t.partition("a");
        let b = t.partition("b");
        t.observe(a, 10_000, 0);
        t.observe(b, 50_000, 0);
        assert_eq!(t.end_partition(a), Some(46_000));
        assert_eq!(t.end_partition(b), Some(MAX_TIMESTAMP));
    }
}
