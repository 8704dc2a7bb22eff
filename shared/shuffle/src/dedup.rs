//! Downstream dedup: per-upstream-shard high-water marks drop redelivered shuffled records.
//!
//! # Why a high-water mark is enough
//! An upstream shard (stage, source shard) makes its records' ids in increasing order of
//! (source sequence number, output index). **Assumption:** a downstream shard receives the
//! records of one upstream shard in that order, apart from repeats. It holds because Kinesis
//! keeps each shard's order and the upstream sends a shard's frames one after another, each only
//! once the previous one is stored ([`crate::pack`]); a retried or redelivered upstream batch
//! re-sends a prefix of what follows the last commit, all at or below the mark. So a record is a
//! duplicate iff its id is at or below its upstream shard's mark, and one mark replaces a set of
//! ids.
//!
//! # Resharding of the shuffle stream
//! Before a merge, an upstream shard's frames to the two parents are in flight independently, so
//! a retry may land in the merged child *after* later records that reached the other parent.
//! Marks are therefore kept per *segment*: a run of key groups that has been on one shuffle shard
//! since the mark began. A new shard has one segment (all its key groups); a split child keeps
//! its parent's segments cut to its own groups; a merge child keeps its parents' segments apart.
//! So a downstream shard holds one mark per upstream shard and segment, normally one.
//!
//! # Bounded state
//! The marks of an upstream shard are retired once a child of it is heard from (its watermark
//! record names it as parent): Lambda commits a parent's last batch before it starts the
//! children, so no repeat of the parent can follow. A replay of a retired shard's records (an
//! upstream restarted from an older position) is not recognised.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use shardflow_stage::SequenceNumber;

use crate::record::{DataRecord, RecordId, WatermarkRecord};

/// How far an upstream shard's records have been delivered: the largest id seen.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    /// The source sequence number.
    pub sequence: SequenceNumber,
    /// The output index within that source record.
    pub output_index: u32,
}

impl Position {
    /// Whether `id` is at or below this position.
    fn covers(&self, id: &RecordId<'_>) -> bool {
        (&*id.sequence, id.output_index) <= (&self.sequence, self.output_index)
    }
}

/// What to do with a data record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First delivery: process it (its mark has advanced).
    New,
    /// At or below its upstream shard's mark: drop it.
    Duplicate,
    /// Its key group is not this shard's (the upstream's shard map was stale; the upstream
    /// re-sends it to its owner): drop it.
    NotOwned,
}

/// The dedup state of one downstream shard, stored in its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupState {
    owned: Range<u16>,
    /// Disjoint, sorted, tiling `owned`.
    segments: Vec<Range<u16>>,
    /// stage → source shard → mark per segment.
    marks: BTreeMap<String, BTreeMap<String, Vec<Option<Position>>>>,
}

impl DedupState {
    /// The state of a shard that owns the key groups `owned` and has no parent.
    pub fn new(owned: Range<u16>) -> Self {
        let segments = if owned.is_empty() { vec![] } else { vec![owned.clone()] };
        DedupState {
            owned,
            segments,
            marks: BTreeMap::new(),
        }
    }

    /// The state of a shard owning `owned` that was split or merged from `parents` (their final
    /// states; their owned groups must be disjoint, as shard lineage makes them). It keeps the
    /// parents' segments and marks on its own groups.
    pub fn adopt<'p>(parents: impl IntoIterator<Item = &'p DedupState>, owned: Range<u16>) -> Self {
        // (segment, parent, the parent's segment index), cut to `owned`.
        let parents: Vec<&DedupState> = parents.into_iter().collect();
        let mut pieces: Vec<(Range<u16>, usize, usize)> = Vec::new();
        for (p, parent) in parents.iter().enumerate() {
            for (s, seg) in parent.segments.iter().enumerate() {
                let cut = seg.start.max(owned.start)..seg.end.min(owned.end);
                if !cut.is_empty() {
                    pieces.push((cut, p, s));
                }
            }
        }
        pieces.sort_by_key(|(seg, ..)| seg.start);
        // Groups no parent owned (not from a real lineage) start segments of their own.
        let mut segments = Vec::new();
        let mut origin = Vec::new();
        let mut next = owned.start;
        for (seg, p, s) in pieces {
            if seg.start < next {
                continue; // overlapping parents: the first one wins
            }
            if seg.start > next {
                segments.push(next..seg.start);
                origin.push(None);
            }
            next = seg.end;
            segments.push(seg);
            origin.push(Some((p, s)));
        }
        if next < owned.end {
            segments.push(next..owned.end);
            origin.push(None);
        }
        let mut marks: BTreeMap<String, BTreeMap<String, Vec<Option<Position>>>> = BTreeMap::new();
        for (p, parent) in parents.iter().enumerate() {
            for (stage, shards) in &parent.marks {
                for (shard, parent_marks) in shards {
                    let child = marks
                        .entry(stage.clone())
                        .or_default()
                        .entry(shard.clone())
                        .or_insert_with(|| vec![None; segments.len()]);
                    for (mark, from) in child.iter_mut().zip(&origin) {
                        if let Some((_, s)) = from.filter(|(q, _)| *q == p) {
                            mark.clone_from(parent_marks.get(s).unwrap_or(&None));
                        }
                    }
                }
            }
        }
        DedupState { owned, segments, marks }
    }

    /// The key groups this shard owns.
    pub fn owned(&self) -> Range<u16> {
        self.owned.clone()
    }

    /// The segments (one unless the shard was merged).
    pub fn segments(&self) -> &[Range<u16>] {
        &self.segments
    }

    /// Marks held (at most upstream shards × segments).
    pub fn marks(&self) -> usize {
        self.marks
            .values()
            .flat_map(BTreeMap::values)
            .map(|m| m.iter().flatten().count())
            .sum()
    }

    /// The mark of upstream shard (`stage`, `source_shard`) for key group `key_group`.
    pub fn mark(&self, stage: &str, source_shard: &str, key_group: u16) -> Option<&Position> {
        let segment = self.segment_of(key_group)?;
        self.marks.get(stage)?.get(source_shard)?.get(segment)?.as_ref()
    }

    fn segment_of(&self, key_group: u16) -> Option<usize> {
        if !self.owned.contains(&key_group) {
            return None;
        }
        let i = self.segments.partition_point(|s| s.end <= key_group);
        // Segments tile the owned groups; in a damaged state a group outside them is not owned.
        self.segments.get(i).filter(|s| s.contains(&key_group)).map(|_| i)
    }

    /// Judges `record` and, if it is new, advances its mark: call it once per delivered record,
    /// in delivery order, and store the state with the effects of the records judged new.
    pub fn check(&mut self, record: &DataRecord<'_>) -> Verdict {
        let Some(segment) = self.segment_of(record.key_group) else {
            return Verdict::NotOwned;
        };
        let id = &record.id;
        let shards = match self.marks.get_mut(id.stage) {
            Some(shards) => shards,
            None => self.marks.entry(id.stage.to_owned()).or_default(),
        };
        let marks = match shards.get_mut(id.source_shard) {
            Some(marks) => marks,
            None => shards
                .entry(id.source_shard.to_owned())
                .or_insert_with(|| vec![None; self.segments.len()]),
        };
        // A restored state lists a mark per segment; a shorter list (a damaged checkpoint)
        // has no mark for the missing segments rather than a panic.
        if marks.len() < self.segments.len() {
            marks.resize(self.segments.len(), None);
        }
        let mark = &mut marks[segment];
        if mark.as_ref().is_some_and(|m| m.covers(id)) {
            return Verdict::Duplicate;
        }
        *mark = Some(Position {
            sequence: id.sequence.clone().into_owned(),
            output_index: id.output_index,
        });
        Verdict::New
    }

    /// Forgets the marks of upstream shard (`stage`, `source_shard`); whether it had any.
    pub fn retire(&mut self, stage: &str, source_shard: &str) -> bool {
        let Some(shards) = self.marks.get_mut(stage) else {
            return false;
        };
        let had = shards.remove(source_shard).is_some();
        if shards.is_empty() {
            self.marks.remove(stage);
        }
        had
    }

    /// Retires the parents `record` names (a child has started, so they are done); how many
    /// had marks.
    pub fn retire_parents(&mut self, record: &WatermarkRecord<'_>) -> usize {
        record
            .parents
            .iter()
            .filter(|parent| self.retire(record.stage, parent))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;
    use crate::pack::Packer;
    use crate::record::tests::seq;
    use crate::record::ShuffleRecord;
    use crate::route::{KeyGroupSpace, ShardMap};
    use proptest::prelude::*;
    use std::borrow::Cow;

    fn record<'a>(shard: &'a str, sequence: &'a SequenceNumber, index: u32, group: u16) -> DataRecord<'a> {
        DataRecord {
            id: RecordId {
                stage: "up",
                source_shard: shard,
                sequence: Cow::Borrowed(sequence),
                output_index: index,
            },
            key_group: group,
            timestamp: 0,
            origin: shardflow_engine::InputOrigin {
                source: 0,
                offset: 0,
                index: 0,
            },
            wm_before: 0,
            payload: b"",
        }
    }

    #[test]
    fn a_record_at_or_below_its_upstream_shards_mark_is_a_duplicate() {
        let mut d = DedupState::new(0..8);
        let (s5, s9) = (seq("5"), seq("10"));
        assert_eq!(d.check(&record("a", &s5, 0, 1)), Verdict::New);
        assert_eq!(d.check(&record("a", &s5, 1, 2)), Verdict::New);
        assert_eq!(d.check(&record("a", &s5, 1, 2)), Verdict::Duplicate);
        assert_eq!(
            d.check(&record("a", &s5, 0, 7)),
            Verdict::Duplicate,
            "one mark per segment"
        );
        assert_eq!(d.check(&record("b", &s5, 0, 1)), Verdict::New, "another upstream shard");
        assert_eq!(d.check(&record("a", &s9, 0, 1)), Verdict::New, "10 > 5 numerically");
        assert_eq!(d.check(&record("a", &s9, 0, 8)), Verdict::NotOwned);
        assert_eq!(d.marks(), 2);
    }

    #[test]
    fn a_retry_landing_in_a_merged_child_after_its_siblings_later_records_is_not_dropped() {
        // Upstream ids 1 and 3 go to parent A (groups 0..4), 2 to parent B (groups 4..8); the
        // frame to A fails, B stores 2, the shards merge, and the retry of A lands in the child.
        let (s1, s2, s3) = (seq("1"), seq("2"), seq("3"));
        let a = DedupState::new(0..4);
        let mut b = DedupState::new(4..8);
        assert_eq!(b.check(&record("u", &s2, 0, 5)), Verdict::New);
        let mut child = DedupState::adopt([&a, &b], 0..8);
        assert_eq!(child.segments(), [0..4, 4..8]);
        assert_eq!(child.check(&record("u", &s1, 0, 1)), Verdict::New);
        assert_eq!(child.check(&record("u", &s3, 0, 2)), Verdict::New);
        assert_eq!(child.check(&record("u", &s2, 0, 5)), Verdict::Duplicate);
    }

    #[test]
    fn a_split_child_keeps_its_parents_marks_on_its_own_groups() {
        let s = seq("7");
        let mut parent = DedupState::new(0..8);
        parent.check(&record("u", &s, 0, 6));
        let low = DedupState::adopt([&parent], 0..4);
        let mut high = DedupState::adopt([&parent], 4..8);
        assert_eq!((low.segments().len(), &low.segments()[0]), (1, &(0..4)));
        assert_eq!(low.mark("up", "u", 1).map(|p| p.output_index), Some(0));
        assert_eq!(high.check(&record("u", &s, 0, 6)), Verdict::Duplicate);
        assert_eq!(high.check(&record("u", &s, 0, 2)), Verdict::NotOwned);
    }

    #[test]
    fn a_childs_watermark_record_retires_its_parents_marks() {
        let s = seq("7");
        let mut d = DedupState::new(0..8);
        d.check(&record("p", &s, 0, 1));
        d.check(&record("q", &s, 0, 1));
        let child = WatermarkRecord {
            stage: "up",
            source_stream: "cdc",
            source_shard: "c",
            watermark: 0,
            closed: false,
            parents: vec!["p", "x"],
        };
        assert_eq!(d.retire_parents(&child), 1);
        assert_eq!(d.marks(), 1);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<DedupState>(&json).unwrap(), d);
    }

    #[test]
    fn a_damaged_checkpoint_state_judges_records_without_panicking() {
        let s = seq("7");
        let no_segments = r#"{"owned":{"start":0,"end":8},"segments":[],"marks":{}}"#;
        let mut d: DedupState = serde_json::from_str(no_segments).unwrap();
        assert_eq!(d.check(&record("a", &s, 0, 1)), Verdict::NotOwned);
        let short_marks = r#"{"owned":{"start":0,"end":8},"segments":[{"start":0,"end":4},{"start":4,"end":8}],
            "marks":{"up":{"a":[]}}}"#;
        let mut d: DedupState = serde_json::from_str(short_marks).unwrap();
        assert_eq!(d.check(&record("a", &s, 0, 6)), Verdict::New);
        assert_eq!(
            DedupState::adopt([&d], 0..8).check(&record("a", &s, 0, 1)),
            Verdict::New
        );
    }

    /// A downstream shard: its Kinesis shard (frames), its committed position and state.
    #[derive(Clone)]
    struct Downstream {
        frames: Vec<Vec<u8>>,
        committed: (usize, DedupState),
    }

    fn id_of(r: &DataRecord<'_>) -> (String, u128, u32) {
        (
            r.id.source_shard.to_owned(),
            r.id.sequence.as_str().parse().unwrap(),
            r.id.output_index,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Upstream shards make 0 to 2 outputs per input record; each invocation takes a random
        /// batch from its committed position, sends all, part or none of its calls, and commits
        /// or crashes; downstream shards process random prefixes and commit or crash. Every
        /// output is processed exactly once.
        #[test]
        fn random_batch_cuts_with_redelivery_deliver_every_record_exactly_once(
            upstreams in prop::collection::vec(prop::collection::vec(0u32..3, 1..30), 1..4),
            shards in 1u16..4,
            ops in prop::collection::vec((0u8..4, 0usize..64, 0usize..64), 1..80),
        ) {
            let space = KeyGroupSpace::new(8);
            let map = ShardMap::even(space, shards);
            let names: Vec<String> = (0..upstreams.len()).map(|u| format!("shardId-{u:012}")).collect();
            // Input record i of upstream u has sequence number 1000 + 7i and outputs[u][i] outputs.
            let seqs: Vec<SequenceNumber> = (0..30).map(|i| seq(&(1000 + 7 * i).to_string())).collect();
            let group = |u: usize, i: usize, j: u32| ((u * 5 + i * 3 + j as usize) % 8) as u16;
            let mut position = vec![0usize; upstreams.len()];
            let mut down: Vec<Downstream> = (0..shards)
                .map(|s| Downstream {
                    frames: vec![],
                    committed: (0, DedupState::new(map.groups_of(&map.shards()[usize::from(s)].shard_id).unwrap())),
                })
                .collect();
            let mut processed: Vec<(String, u128, u32)> = Vec::new();
            let run_down = |down: &mut Downstream, upto: usize, commit: bool, processed: &mut Vec<_>| {
                let (mut at, mut state) = down.committed.clone();
                let mut effects = Vec::new();
                while at < upto.min(down.frames.len()) {
                    for r in Frame::parse(&down.frames[at]).unwrap().records() {
                        if let ShuffleRecord::Data(d) = r.unwrap() {
                            if state.check(&d) == Verdict::New {
                                effects.push(id_of(&d));
                            }
                        }
                    }
                    at += 1;
                }
                if commit {
                    processed.extend(effects);
                    down.committed = (at, state);
                }
            };
            // After the random operations, every upstream shard runs to its end without a crash.
            let drain = (0..upstreams.len()).flat_map(|u| std::iter::repeat_n((0, u, 7), 30));
            for (kind, a, b) in ops.into_iter().chain(drain) {
                if kind == 3 {
                    let n = down.len();
                    let d = &mut down[a % n];
                    let upto = d.committed.0 + b % 4;
                    run_down(d, upto, b % 3 != 0, &mut processed);
                    continue;
                }
                let u = a % upstreams.len();
                let (start, end) = (position[u], (position[u] + 1 + b % 8).min(upstreams[u].len()));
                let mut packer = Packer::with_max_record_bytes(&map, 200);
                for i in start..end {
                    for j in 0..upstreams[u][i] {
                        packer.push_data(&record(&names[u], &seqs[i], j, group(u, i, j))).unwrap();
                    }
                }
                let packed = packer.finish();
                let calls = packed.calls();
                // kind 0: all sent, committed; 1: all sent, crash; 2: crash within the sending.
                let sent = if kind == 2 { b % (calls.len() + 1) } else { calls.len() };
                for (c, call) in calls.iter().enumerate().take(sent + usize::from(kind == 2)) {
                    for (k, r) in packed.records[call.clone()].iter().enumerate() {
                        // The call cut by the crash stores only some of its records.
                        if c < sent || (a + k) % 2 == 0 {
                            down[r.shard_index].frames.push(r.data.clone());
                        }
                    }
                }
                if kind == 0 {
                    position[u] = end;
                }
            }
            for d in &mut down {
                let n = d.frames.len();
                run_down(d, n, true, &mut processed);
            }
            let mut want: Vec<(String, u128, u32)> = Vec::new();
            for (u, outputs) in upstreams.iter().enumerate() {
                for (i, &n) in outputs.iter().enumerate() {
                    for j in 0..n {
                        want.push((names[u].clone(), 1000 + 7 * i as u128, j));
                    }
                }
            }
            processed.sort();
            want.sort();
            prop_assert_eq!(processed, want);
        }
    }
}
