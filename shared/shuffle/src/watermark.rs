//! Downstream watermark: the minimum over the upstream shards' watermark records, with lineage.
//!
//! # Protocol
//! - Every upstream shard sends a [`WatermarkRecord`] to every shuffle shard when its watermark
//!   advances, and before its first data (so it is known before it can be late).
//! - A downstream shard's input watermark is the minimum over the upstream shards it knows that
//!   are neither retired nor idle, and never moves back (the engine's
//!   [`WatermarkTracker`] does the combining, with no out-of-orderness: an upstream watermark
//!   already has it subtracted).
//! - **Idleness.** Lambda does not invoke an upstream stage for a shard without new records, so
//!   a silent upstream shard would hold every window back forever (apache/beam#31085). An
//!   upstream shard not heard from (watermark or data) for the idleness timeout of the
//!   downstream's processing time stops holding the watermark back until it is heard from
//!   again. Processing time advances with the downstream's invocations, so a window closes at
//!   most one idleness timeout (plus the gap to the next invocation) after the last active
//!   upstream shard passed it.
//! - **Resharding upstream.** A child's watermark record names its parents; they are retired
//!   (removed from the minimum for good) once it arrives, so a closed parent never stalls the
//!   watermark; the minimum never goes back. A split's first child to report also announces
//!   the other child at its own starting watermark (`UpstreamShard::siblings`), so the other
//!   child holds the watermark from the moment the parent is retired (without it the other
//!   shards could move the watermark past the other child's first rows before it is heard
//!   from). A shard that reports `closed` (end of input) is retired at once.
//! - **Resharding downstream.** A child shard [`ShuffleWatermark::adopt`]s its parents' states:
//!   the same upstream shards, the larger watermark.
//! - A watermark record of a stage or stream this shard does not consume, or of a retired
//!   upstream shard, changes nothing and is reported ([`WatermarkUpdate::Ignored`]).
//!
//! Retired upstream shards are remembered (by name) so a late repeat of theirs stays ignored.

use serde::{Deserialize, Serialize};
use shardflow_engine::time::DurationMs;
use shardflow_engine::watermark::WatermarkTracker;
use shardflow_engine::{PipelineError, Timestamp, WatermarkStrategy, MAX_TIMESTAMP, MIN_TIMESTAMP};

use crate::record::{DataRecord, WatermarkRecord};

/// Why a watermark record was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Its stage and source stream are not among those this shard consumes.
    UnknownSource,
    /// Its upstream shard was retired (a child of it reported, or it ended).
    Retired,
}

/// What a watermark record or a tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatermarkUpdate {
    /// The input watermark advanced to this value.
    Advanced(Timestamp),
    /// The input watermark did not change.
    Unchanged,
    /// The record was ignored (log it).
    Ignored(Ignored),
}

/// A source this shard consumes: an upstream stage and the stream it reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Source {
    /// The upstream stage's name.
    pub stage: String,
    /// The stream it reads.
    pub stream: String,
}

impl Source {
    /// The source (`stage`, `stream`).
    pub fn new(stage: impl Into<String>, stream: impl Into<String>) -> Self {
        Source {
            stage: stage.into(),
            stream: stream.into(),
        }
    }
}

/// The input watermark of one downstream shard, stored in its checkpoint.
///
/// ```
/// use shardflow_shuffle::{ShuffleWatermark, Source, WatermarkRecord, WatermarkUpdate};
///
/// let mut input = ShuffleWatermark::new([Source::new("revenue-keyby", "cdc")], Some(60_000))?;
/// let report = |shard, watermark, parents| WatermarkRecord {
///     stage: "revenue-keyby", source_stream: "cdc", source_shard: shard,
///     watermark, closed: false, parents,
/// };
/// input.observe(&report("shardId-000000000000", 5_000, vec![]), 0);
/// input.observe(&report("shardId-000000000001", 9_000, vec![]), 0);
/// assert_eq!(input.current(), 5_000);
/// // Shard 0 was split; its first child retires it.
/// let child = report("shardId-000000000002", 8_000, vec!["shardId-000000000000"]);
/// assert_eq!(input.observe(&child, 10), WatermarkUpdate::Advanced(8_000));
/// // Shard 1 goes silent: after a minute of processing time it holds nothing back.
/// input.observe(&report("shardId-000000000002", 20_000, vec![]), 30_000);
/// assert_eq!(input.advance_processing_time(61_000), WatermarkUpdate::Advanced(20_000));
/// # Ok::<(), shardflow_engine::PipelineError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShuffleWatermark {
    sources: Vec<Source>,
    /// One partition per upstream shard, named `stage/shard`; ended = retired.
    tracker: WatermarkTracker,
}

fn partition_name(stage: &str, shard: &str) -> String {
    // Kinesis shard ids have no '/', so the name is unambiguous.
    format!("{stage}/{shard}")
}

impl ShuffleWatermark {
    /// The watermark of a shard consuming `sources`; `idleness` (ms of processing time, `None`
    /// for never) is when a silent upstream shard stops holding it back.
    pub fn new(sources: impl IntoIterator<Item = Source>, idleness: Option<DurationMs>) -> Result<Self, PipelineError> {
        let mut strategy = WatermarkStrategy::bounded_out_of_orderness(0)?;
        if let Some(ms) = idleness {
            strategy = strategy.with_idleness(ms)?;
        }
        Ok(ShuffleWatermark {
            sources: sources.into_iter().collect(),
            tracker: WatermarkTracker::new(strategy),
        })
    }

    /// The input watermark ([`MIN_TIMESTAMP`] until every known upstream shard has reported).
    pub fn current(&self) -> Timestamp {
        self.tracker.current()
    }

    /// The sources consumed.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// The upstream shards known as `(stage/shard, watermark, retired)`.
    pub fn upstream_shards(&self) -> impl Iterator<Item = (&str, Timestamp, bool)> {
        self.tracker
            .partitions()
            .iter()
            .map(|p| (p.name.as_str(), p.max_timestamp, p.ended))
    }

    fn update(&self, before: Timestamp) -> WatermarkUpdate {
        if self.current() > before {
            WatermarkUpdate::Advanced(self.current())
        } else {
            WatermarkUpdate::Unchanged
        }
    }

    /// The partition of a known upstream shard: `Err` if it is retired, `None` if unknown.
    fn known(&self, name: &str) -> Result<Option<u32>, Ignored> {
        match self.tracker.partitions().iter().position(|p| p.name == name) {
            Some(i) if self.tracker.partitions()[i].ended => Err(Ignored::Retired),
            Some(i) => Ok(Some(i as u32)),
            None => Ok(None),
        }
    }

    /// Takes in `record`, received at processing time `now` (ms).
    pub fn observe(&mut self, record: &WatermarkRecord<'_>, now: Timestamp) -> WatermarkUpdate {
        if !self
            .sources
            .iter()
            .any(|s| s.stage == record.stage && s.stream == record.source_stream)
        {
            return WatermarkUpdate::Ignored(Ignored::UnknownSource);
        }
        let before = self.current();
        let name = partition_name(record.stage, record.source_shard);
        let partition = match self.known(&name) {
            Err(ignored) => return WatermarkUpdate::Ignored(ignored),
            Ok(Some(p)) => p,
            Ok(None) => self.tracker.partition(&name),
        };
        self.tracker.observe(partition, record.watermark, now);
        for parent in &record.parents {
            // An unknown parent is registered as retired, so that a late record of it is ignored.
            let parent = self.tracker.partition(&partition_name(record.stage, parent));
            self.tracker.end_partition(parent);
        }
        if record.closed {
            self.tracker.end_partition(partition);
        }
        self.update(before)
    }

    /// Notes that a data record of (`stage`, `source_shard`) arrived at `now`: the shard is not
    /// idle. An unknown or retired shard is ignored (only watermark records make shards known).
    pub fn heard_from(&mut self, stage: &str, source_shard: &str, now: Timestamp) -> WatermarkUpdate {
        self.observe_known(stage, source_shard, MIN_TIMESTAMP, now)
    }

    /// Raises known upstream shard (`stage`, `source_shard`) to `watermark` at `now`.
    fn observe_known(
        &mut self,
        stage: &str,
        source_shard: &str,
        watermark: Timestamp,
        now: Timestamp,
    ) -> WatermarkUpdate {
        let before = self.current();
        match self.known(&partition_name(stage, source_shard)) {
            Ok(Some(p)) => {
                self.tracker.observe(p, watermark, now);
                self.update(before)
            }
            Ok(None) => WatermarkUpdate::Ignored(Ignored::UnknownSource),
            Err(ignored) => WatermarkUpdate::Ignored(ignored),
        }
    }

    /// Takes in data record `record`, received at `now`: its upstream shard's watermark rises to
    /// the record's `wm_before` (the watermark that shard had just before the record), and the
    /// shard is not idle. An unknown or retired shard is ignored, as in
    /// [`ShuffleWatermark::heard_from`]. Call it before the record is processed: the single
    /// engine processes a record under the watermark from before it.
    pub fn observe_data(&mut self, record: &DataRecord<'_>, now: Timestamp) -> WatermarkUpdate {
        self.observe_known(record.id.stage, record.id.source_shard, record.wm_before, now)
    }

    /// Advances processing time to `now` (at every invocation): silent shards may turn idle.
    pub fn advance_processing_time(&mut self, now: Timestamp) -> WatermarkUpdate {
        let before = self.current();
        self.tracker.advance_processing_time(now);
        self.update(before)
    }

    /// Takes over the state of `parent`, a shuffle shard this one was split or merged from (call
    /// once per parent, with its final state): its upstream shards, their watermarks and
    /// retirements; the input watermark becomes the larger of the two.
    pub fn adopt(&mut self, parent: &ShuffleWatermark) {
        for s in &parent.sources {
            if !self.sources.contains(s) {
                self.sources.push(s.clone());
            }
        }
        let retired: Vec<String> = self
            .tracker
            .partitions()
            .iter()
            .filter(|p| p.ended)
            .map(|p| p.name.clone())
            .collect();
        // The engine's adoption takes every partition as ended; reopen what the parent had open.
        self.tracker.adopt(&parent.tracker);
        for p in parent.tracker.partitions() {
            if !p.ended && !retired.contains(&p.name) {
                let id = self.tracker.partition(&p.name);
                self.tracker.observe(id, p.max_timestamp, p.last_active);
            }
        }
    }

    /// Whether every known upstream shard has ended and the watermark is final.
    pub fn is_final(&self) -> bool {
        self.current() == MAX_TIMESTAMP
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn wm<'a>(shard: &'a str, watermark: Timestamp, parents: Vec<&'a str>) -> WatermarkRecord<'a> {
        WatermarkRecord {
            stage: "up",
            source_stream: "cdc",
            source_shard: shard,
            watermark,
            closed: false,
            parents,
        }
    }

    fn tracker(idleness: Option<DurationMs>) -> ShuffleWatermark {
        ShuffleWatermark::new([Source::new("up", "cdc")], idleness).unwrap()
    }

    #[test]
    fn the_input_watermark_is_the_minimum_over_upstream_shards_and_never_moves_back() {
        let mut w = tracker(None);
        assert_eq!(w.observe(&wm("a", 100, vec![]), 0), WatermarkUpdate::Advanced(100));
        assert_eq!(
            w.observe(&wm("b", 50, vec![]), 0),
            WatermarkUpdate::Unchanged,
            "never back"
        );
        assert_eq!(
            w.observe(&wm("a", 300, vec![]), 0),
            WatermarkUpdate::Unchanged,
            "b holds it"
        );
        assert_eq!(w.observe(&wm("b", 200, vec![]), 0), WatermarkUpdate::Advanced(200));
        assert_eq!(w.current(), 200);
    }

    #[test]
    fn a_silent_upstream_shard_stops_holding_the_watermark_back_after_the_idleness_timeout() {
        let mut w = tracker(Some(1_000));
        w.observe(&wm("a", 100, vec![]), 0);
        w.observe(&wm("b", 500, vec![]), 0);
        assert_eq!(w.current(), 100);
        assert_eq!(w.heard_from("up", "b", 800), WatermarkUpdate::Unchanged);
        assert_eq!(w.advance_processing_time(1_500), WatermarkUpdate::Advanced(500));
        assert_eq!(w.observe(&wm("b", 900, vec![]), 1_600), WatermarkUpdate::Advanced(900));
        assert_eq!(
            w.observe(&wm("a", 200, vec![]), 1_700),
            WatermarkUpdate::Unchanged,
            "active again, not back"
        );
        assert_eq!(w.observe(&wm("a", 1_000, vec![]), 1_800), WatermarkUpdate::Unchanged);
        assert_eq!(
            w.observe(&wm("b", 1_200, vec![]), 1_900),
            WatermarkUpdate::Advanced(1_000)
        );
    }

    #[test]
    fn a_childs_first_record_retires_its_closed_parent_so_resharding_never_stalls() {
        let mut w = tracker(None);
        w.observe(&wm("p", 100, vec![]), 0);
        w.observe(&wm("q", 400, vec![]), 0);
        assert_eq!(w.current(), 100);
        // p was split into c1 and c2: p never reports again.
        assert_eq!(w.observe(&wm("c1", 300, vec!["p"]), 10), WatermarkUpdate::Advanced(300));
        assert_eq!(w.observe(&wm("c2", 350, vec!["p"]), 10), WatermarkUpdate::Unchanged);
        assert_eq!(w.observe(&wm("c1", 500, vec!["p"]), 10), WatermarkUpdate::Advanced(350));
        assert_eq!(
            w.observe(&wm("p", 1_000, vec![]), 10),
            WatermarkUpdate::Ignored(Ignored::Retired)
        );
    }

    #[test]
    fn records_of_unknown_sources_or_retired_shards_are_reported_and_ignored() {
        let mut w = tracker(None);
        let mut other = wm("a", 5, vec![]);
        other.stage = "elsewhere";
        assert_eq!(w.observe(&other, 0), WatermarkUpdate::Ignored(Ignored::UnknownSource));
        assert_eq!(
            w.heard_from("up", "a", 0),
            WatermarkUpdate::Ignored(Ignored::UnknownSource)
        );
        let mut ended = wm("a", 50, vec![]);
        ended.closed = true;
        assert_eq!(w.observe(&ended, 0), WatermarkUpdate::Advanced(MAX_TIMESTAMP));
        assert!(w.is_final());
        assert_eq!(
            w.observe(&wm("a", 60, vec![]), 0),
            WatermarkUpdate::Ignored(Ignored::Retired)
        );
    }

    #[test]
    fn a_downstream_child_adopts_its_parents_upstream_shards_and_the_larger_watermark() {
        let (mut a, mut b) = (tracker(None), tracker(None));
        a.observe(&wm("u", 100, vec![]), 0);
        a.observe(&wm("v", 200, vec![]), 0);
        b.observe(&wm("u", 150, vec![]), 0);
        b.observe(&wm("v", 120, vec![]), 0);
        b.observe(&wm("w", 900, vec!["v"]), 0);
        let mut child = tracker(None);
        child.adopt(&a);
        child.adopt(&b);
        assert_eq!(child.current(), 150, "u at max(100, 150) holds it; v is retired in b");
        assert_eq!(
            child.observe(&wm("v", 1_000, vec![]), 1),
            WatermarkUpdate::Ignored(Ignored::Retired)
        );
        assert_eq!(
            child.observe(&wm("u", 2_000, vec![]), 1),
            WatermarkUpdate::Advanced(900)
        );
        let json = serde_json::to_string(&child).unwrap();
        assert_eq!(serde_json::from_str::<ShuffleWatermark>(&json).unwrap(), child);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Report { shard: usize, watermark: Timestamp },
        Data { shard: usize },
        Tick { ms: Timestamp },
        Split { shard: usize },
        Merge { shard: usize },
        AdoptDownstream,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0usize..8, 0i64..10_000).prop_map(|(shard, watermark)| Op::Report { shard, watermark }),
            1 => (0usize..8).prop_map(|shard| Op::Data { shard }),
            2 => (0i64..3_000).prop_map(|ms| Op::Tick { ms }),
            1 => (0usize..8).prop_map(|shard| Op::Split { shard }),
            1 => (0usize..8).prop_map(|shard| Op::Merge { shard }),
            1 => Just(Op::AdoptDownstream),
        ]
    }

    proptest! {
        /// Upstream shards report random (also decreasing) watermarks, go silent, split and
        /// merge (children start at their parents' watermark), the downstream shard splits:
        /// the input watermark never goes back, and once every live upstream shard reports `W`,
        /// it is at least `W` (retired parents hold nothing back).
        #[test]
        fn the_input_watermark_never_goes_back_and_resharding_never_stalls_it(
            ops in prop::collection::vec(op(), 1..60), idle in prop::option::of(500i64..5_000)
        ) {
            let mut w = tracker(idle);
            // Live upstream shards: (name, last reported watermark).
            let mut live: Vec<(String, Timestamp)> = (0..3).map(|i| (format!("s{i}"), MIN_TIMESTAMP)).collect();
            let mut next = 3;
            let mut now = 0;
            for (name, wmk) in &live {
                w.observe(&wm(name, *wmk, vec![]), now);
            }
            let fresh = |next: &mut usize| { *next += 1; format!("s{}", *next - 1) };
            for op in ops {
                let before = w.current();
                match op {
                    Op::Report { shard, watermark } => {
                        let n = live.len();
                        let (name, last) = &mut live[shard % n];
                        *last = (*last).max(watermark);
                        w.observe(&wm(name, *last, vec![]), now);
                    }
                    Op::Data { shard } => {
                        w.heard_from("up", &live[shard % live.len()].0, now);
                    }
                    Op::Tick { ms } => {
                        now += ms;
                        w.advance_processing_time(now);
                    }
                    Op::Split { shard } if live.len() < 8 => {
                        let (parent, last) = live.remove(shard % live.len());
                        for _ in 0..2 {
                            let child = fresh(&mut next);
                            w.observe(&wm(&child, last, vec![&parent]), now);
                            live.push((child, last));
                        }
                    }
                    Op::Merge { shard } if live.len() > 1 => {
                        let i = shard % (live.len() - 1);
                        let (p, lp) = live.remove(i);
                        let (q, lq) = live.remove(i);
                        let child = fresh(&mut next);
                        w.observe(&wm(&child, lp.max(lq), vec![&p, &q]), now);
                        live.push((child, lp.max(lq)));
                    }
                    Op::AdoptDownstream => {
                        let mut child = tracker(idle);
                        child.adopt(&w);
                        w = child;
                    }
                    Op::Split { .. } | Op::Merge { .. } => {}
                }
                prop_assert!(w.current() >= before, "{} < {}", w.current(), before);
            }
            let top = live.iter().map(|(_, l)| *l).max().unwrap_or(0).max(0) + 1;
            for (name, _) in &live {
                w.observe(&wm(name, top, vec![]), now);
            }
            prop_assert!(w.current() >= top, "{} < {}", w.current(), top);
        }
    }
}
