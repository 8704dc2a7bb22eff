//! The proof of the shuffle: a split pipeline run as two stages over an in-memory shuffle stream
//! — upstream partitions in random batches, redelivered and crashing after their shuffle write,
//! downstream shards polling in random batches, crashing and restoring from their checkpoints,
//! the shuffle stream split and merged — equals the single engine fed the same upstream batches
//! in the same order: the same result ids, panes, values and late records.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::{
    CheckpointImage, Engine, Firing, LateRecord, Lifted, Output, Pipeline, ShuffleOutput, SplitPipeline, Trigger,
    WatermarkStrategy, Windowing,
};
use shardflow_shuffle::{
    BatchEnd, DownstreamCheckpoint, DownstreamShard, KeyGroupSpace, MemoryShuffle, Packed, ShardMap, Source,
    UpstreamBatch, UpstreamShard,
};
use shardflow_stage::SequenceNumber;

const STAGE: &str = "up";
const STREAM: &str = "input";
const DOWN: &str = "down";
const KEY_GROUPS: u16 = 32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ev {
    key: u8,
    ts: i64,
    v: i64,
}

/// (key, window start, sum, count)
type Out = (u8, i64, i64, u64);

/// The windowed stream of the test pipelines: values divisible by 3 are doubled by a
/// `flat_map`, the key is shuffled, 10 ms windows (or 20 ms sliding by 10) with `lateness` ms of
/// allowed lateness and a late pane every `late_every` late values.
fn windowed(
    out_of_orderness: i64,
    lateness: i64,
    late_every: u32,
    sliding: bool,
) -> shardflow_engine::WindowedStream<Ev, u8, Ev, shardflow_engine::Upstream<Ev, Ev>> {
    let windowing = if sliding {
        Windowing::sliding(20, 10).unwrap()
    } else {
        Windowing::tumbling(10).unwrap()
    };
    Pipeline::builder("two-stage")
        .max_key_groups(KEY_GROUPS)
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(out_of_orderness).unwrap())
        .event_time(|e: &Ev| e.ts)
        .flat_map(|e: Ev| {
            if e.v % 3 == 0 {
                vec![e.clone(), Ev { v: e.v + 1, ..e }]
            } else {
                vec![e]
            }
        })
        .key_by(|e: &Ev| e.key)
        .shuffle()
        .unwrap()
        .window(windowing)
        .trigger(
            Trigger::at_watermark()
                .with_allowed_lateness(lateness)
                .unwrap()
                .with_late_firings(Firing::every_elements(late_every)),
        )
}

/// Sums and counts per key and window of [`windowed`].
fn pipeline(out_of_orderness: i64, lateness: i64, late_every: u32) -> SplitPipeline<Ev, Ev, Out> {
    windowed(out_of_orderness, lateness, late_every, false)
        .aggregate((Sum::of(|e: &Ev| e.v), Count), |k, w, _p, (s, n)| (*k, w.start, s, n))
        .sink("out")
}

/// The shuffled values of [`lifted`].
type LiftedEv = Lifted<u8, Ev, (i64, u64)>;

/// [`pipeline`] with its aggregation lifted.
fn lifted(out_of_orderness: i64, lateness: i64, late_every: u32, sliding: bool) -> SplitPipeline<Ev, LiftedEv, Out> {
    windowed(out_of_orderness, lateness, late_every, sliding)
        .aggregate_lifted((Sum::of(|e: &Ev| e.v), Count), |k, w, _p, (s, n)| (*k, w.start, s, n))
        .sink("out")
}

/// [`pipeline`] unlifted, with the windows of [`lifted`].
fn unlifted(out_of_orderness: i64, lateness: i64, late_every: u32, sliding: bool) -> SplitPipeline<Ev, Ev, Out> {
    windowed(out_of_orderness, lateness, late_every, sliding)
        .aggregate((Sum::of(|e: &Ev| e.v), Count), |k, w, _p, (s, n)| (*k, w.start, s, n))
        .sink("out")
}

/// A result as a sink sees it.
type ResultKey = (u128, i64, String, Out);
/// A late record, its partition by name.
type LateKey = (String, String, Option<u64>, i64, i64, String);

fn result_key(o: &Output<Out>) -> ResultKey {
    (o.id.0, o.timestamp, format!("{:?}", o.pane), o.value)
}

fn late_key<I: Send + 'static, O: Send + 'static>(engine: &Engine<I, O>, r: &LateRecord) -> LateKey {
    let name = r
        .partition
        .and_then(|p| engine.partitions().get(p as usize))
        .map_or_else(String::new, |p| p.name.clone());
    (
        r.operator.clone(),
        name,
        r.offset,
        r.timestamp,
        r.watermark,
        format!("{:?}", r.window),
    )
}

fn shard_name(p: usize) -> String {
    format!("shardId-{p:012}")
}

/// One upstream partition's stage: its engine, committed state and position, and a batch
/// written but not committed (a crash after the shuffle write).
struct Up<S> {
    name: String,
    engine: Engine<Ev, ShuffleOutput<S>>,
    image: Option<CheckpointImage>,
    position: usize,
    batches: usize,
    pending: Option<(usize, Packed, ShardMap)>,
    last: Option<Packed>,
    done: bool,
}

/// One downstream shard's stage: the shard, its committed checkpoint, what it emitted since.
struct Down<S> {
    shard: DownstreamShard<S, Out>,
    committed: DownstreamCheckpoint,
    results: Vec<ResultKey>,
    late: Vec<LateKey>,
}

/// The two-stage run.
struct TwoStage<S> {
    split: SplitPipeline<Ev, S, Out>,
    input: Vec<Vec<Ev>>,
    sizes: Vec<usize>,
    shuffle: MemoryShuffle,
    ups: Vec<Up<S>>,
    downs: BTreeMap<String, Down<S>>,
    /// Final checkpoints of closed shuffle shards read to their end.
    finished: BTreeMap<String, DownstreamCheckpoint>,
    /// Children waiting for their parents: (child, its key groups, parents).
    waiting: Vec<(String, Range<u16>, Vec<String>)>,
    /// Upstream batches in the order of their first shuffle write: (partition, start, len, closed).
    order: Vec<(usize, usize, usize, bool)>,
    results: Vec<ResultKey>,
    late: Vec<LateKey>,
    /// Results emitted and then lost in a crash (re-emitted later with the same ids).
    lost: Vec<ResultKey>,
}

impl<S: Serialize + DeserializeOwned + Send + 'static> TwoStage<S> {
    fn new(split: SplitPipeline<Ev, S, Out>, input: Vec<Vec<Ev>>, sizes: Vec<usize>, shards: u16) -> Self {
        let shuffle = MemoryShuffle::new(ShardMap::even(KeyGroupSpace::new(KEY_GROUPS), shards));
        let ups = (0..input.len())
            .map(|p| Up {
                name: shard_name(p),
                engine: split.upstream.engine(),
                image: None,
                position: 0,
                batches: 0,
                pending: None,
                last: None,
                done: false,
            })
            .collect();
        let mut run = TwoStage {
            split,
            input,
            sizes,
            shuffle,
            ups,
            downs: BTreeMap::new(),
            finished: BTreeMap::new(),
            waiting: Vec::new(),
            order: Vec::new(),
            results: Vec::new(),
            late: Vec::new(),
            lost: Vec::new(),
        };
        for s in run.shuffle.map().shards().to_vec() {
            let owned = run.shuffle.map().groups_of(&s.shard_id).unwrap();
            let shard = DownstreamShard::new(
                &run.split.downstream,
                &s.shard_id,
                owned,
                [Source::new(STAGE, STREAM)],
                None,
            )
            .unwrap();
            run.start_down(shard);
        }
        run
    }

    fn start_down(&mut self, mut shard: DownstreamShard<S, Out>) {
        let committed = shard.checkpoint().unwrap();
        self.downs.insert(
            shard.shard_id().to_owned(),
            Down {
                shard,
                committed,
                results: vec![],
                late: vec![],
            },
        );
    }

    /// Registers every upstream partition before any data, as the embedded runner does: each
    /// sends its first watermark record, so the downstream knows them all from the start.
    fn register_all(&mut self) {
        for p in 0..self.ups.len() {
            let up = &mut self.ups[p];
            let shard = UpstreamShard {
                stage: STAGE,
                stream: STREAM,
                shard: &up.name,
                parents: &[],
                siblings: &[],
            };
            let packed = UpstreamBatch::begin(&mut up.engine, self.shuffle.map(), shard)
                .unwrap()
                .finish(BatchEnd::Open)
                .unwrap();
            self.shuffle.put(&packed, 0);
            up.image = Some(CheckpointImage::new(up.engine.snapshot_full().unwrap()));
            self.order.push((p, 0, 0, false));
        }
    }

    /// Runs partition `p`'s next batch through the upstream half: the packed records and the
    /// batch's length and end.
    fn pack(&mut self, p: usize) -> (Packed, usize, bool) {
        let up = &self.ups[p];
        let total = self.input[p].len();
        let len = match &up.pending {
            Some((len, ..)) => *len,
            None => self.sizes[(p + up.batches) % self.sizes.len()].min(total - up.position),
        };
        self.pack_len(p, len)
    }

    /// Runs partition `p`'s next `len` records through the upstream half as one batch.
    fn pack_len(&mut self, p: usize, len: usize) -> (Packed, usize, bool) {
        let up = &mut self.ups[p];
        let total = self.input[p].len();
        let closed = up.position + len == total;
        let parents: [&str; 0] = [];
        let mut batch = UpstreamBatch::begin(
            &mut up.engine,
            self.shuffle.map(),
            UpstreamShard {
                stage: STAGE,
                stream: STREAM,
                shard: &up.name,
                parents: &parents,
                siblings: &[],
            },
        )
        .unwrap()
        .with_combiner(self.split.batch_combiner());
        for i in up.position..up.position + len {
            let sequence = SequenceNumber::parse(&i.to_string()).unwrap();
            batch.push(&sequence, i as u64, 0, self.input[p][i].clone()).unwrap();
        }
        let end = if closed { BatchEnd::Closed } else { BatchEnd::Open };
        (batch.finish(end).unwrap(), len, closed)
    }

    /// The upstream stage restarts from its last commit (a crash).
    fn crash_up(&mut self, p: usize) {
        let up = &mut self.ups[p];
        up.engine = match &up.image {
            Some(image) => Engine::restore(&self.split.upstream, image).unwrap(),
            None => self.split.upstream.engine(),
        };
    }

    /// Partition `p`'s next batch; `mode` picks a crash or a redelivery.
    fn upstream_batch(&mut self, p: usize, mode: usize) {
        if self.ups[p].done {
            return;
        }
        let (packed, len, closed) = self.pack(p);
        match &self.ups[p].pending {
            // Unless the shuffle stream was resharded meanwhile (then re-packed for its shards).
            Some((_, sent, map)) if map == self.shuffle.map() => {
                assert_eq!(sent, &packed, "a retried batch re-sends byte-identical records")
            }
            Some(_) => {}
            None => self.order.push((p, self.ups[p].position, len, closed)),
        }
        match mode {
            // Written, then a crash before the commit: the batch is retried later.
            0 => {
                self.shuffle.put(&packed, 0);
                self.ups[p].pending = Some((len, packed, self.shuffle.map().clone()));
                self.crash_up(p);
                return;
            }
            // A crash within the write (some records stored), retried at once.
            1 => {
                let mut part = packed.clone();
                part.records.truncate(packed.records.len() / 2);
                self.shuffle.put(&part, 0);
                self.ups[p].pending = Some((len, packed.clone(), self.shuffle.map().clone()));
                self.crash_up(p);
                let (again, ..) = self.pack(p);
                self.shuffle.put(&again, 0);
            }
            // A crash within the write, then Lambda's bisect: the batch's halves run as two
            // batches, cut elsewhere than the first try. Exact while each shard's share of a
            // batch is one frame (it has all of the first try or none of it): see
            // docs/shuffle-and-checkpoints.md, "Interval commits of the shuffle stages".
            3 if len > 1 => {
                let shards: BTreeSet<&str> = packed.records.iter().map(|r| r.shard_id.as_str()).collect();
                assert_eq!(shards.len(), packed.records.len(), "one frame per shard and batch");
                let mut part = packed.clone();
                part.records.truncate(packed.records.len() / 2);
                self.shuffle.put(&part, 0);
                self.crash_up(p);
                self.ups[p].pending = None;
                let half = len / 2;
                let (first, ..) = self.pack_len(p, half);
                self.shuffle.put(&first, 0);
                self.commit_up(p, half, false);
                let (second, ..) = self.pack_len(p, len - half);
                self.shuffle.put(&second, 0);
                self.commit_up(p, len - half, closed);
                self.ups[p].last = Some(second);
                return;
            }
            _ => {
                self.shuffle.put(&packed, 0);
            }
        }
        self.commit_up(p, len, closed);
        let up = &mut self.ups[p];
        // Lambda redelivers a committed batch's records (a lost response): the same bytes.
        if mode == 2 {
            self.shuffle.put(&packed, 0);
        }
        up.last = Some(packed);
    }

    /// Partition `p`'s upstream commits its batch of `len` records (`closed`: its last).
    fn commit_up(&mut self, p: usize, len: usize, closed: bool) {
        let up = &mut self.ups[p];
        up.image = Some(CheckpointImage::new(up.engine.snapshot_full().unwrap()));
        up.position += len;
        up.batches += 1;
        up.pending = None;
        up.done = closed;
    }

    /// Redelivers partition `p`'s last committed batch, byte-identical.
    fn redeliver_up(&mut self, p: usize) {
        if let Some(last) = self.ups[p].last.clone() {
            self.shuffle.put(&last, 0);
        }
    }

    /// Shard `id` reads up to `max` records; then commits, crashes, or neither.
    fn poll(&mut self, id: &str, max: usize, commit: bool, crash: bool) {
        let Some(down) = self.downs.get_mut(id) else { return };
        down.shard.poll(&self.shuffle, DOWN, "shuffle", max);
        let engine = down.shard.engine_mut();
        let results: Vec<ResultKey> = engine.drain_output().iter().map(result_key).collect();
        let late: Vec<LateRecord> = engine.drain_late();
        let late: Vec<LateKey> = late.iter().map(|r| late_key(engine, r)).collect();
        down.results.extend(results);
        down.late.extend(late);
        if crash {
            self.lost.append(&mut down.results);
            down.late.clear();
            down.shard = DownstreamShard::restore(&self.split.downstream, id, &down.committed).unwrap();
            return;
        }
        if commit {
            self.commit(id);
        }
    }

    fn commit(&mut self, id: &str) {
        let Some(down) = self.downs.get_mut(id) else { return };
        down.committed = down.shard.checkpoint().unwrap();
        self.results.append(&mut down.results);
        self.late.append(&mut down.late);
        let closed = self.shuffle.map().groups_of(id).is_none();
        if closed && down.shard.caught_up(&self.shuffle) {
            let done = self.downs.remove(id).unwrap();
            self.finished.insert(id.to_owned(), done.committed);
            self.start_children();
        }
    }

    /// Children whose parents are all read to their end start from the parents' checkpoints.
    fn start_children(&mut self) {
        let ready: Vec<usize> = (0..self.waiting.len())
            .filter(|&i| self.waiting[i].2.iter().all(|p| self.finished.contains_key(p)))
            .collect();
        for i in ready.into_iter().rev() {
            let (child, owned, parents) = self.waiting.remove(i);
            let images: Vec<DownstreamCheckpoint> = parents.iter().map(|p| self.finished[p].clone()).collect();
            let shard = DownstreamShard::adopt(&self.split.downstream, &child, owned, &images, None).unwrap();
            self.start_down(shard);
        }
    }

    /// Splits open shard `a % n`, or merges it with its right neighbour.
    fn reshard(&mut self, split: bool, a: usize) {
        let shards = self.shuffle.map().shards().to_vec();
        let i = a % shards.len();
        let (parents, children) = if split && shards.len() < 8 {
            let Ok((lo, hi)) = self.shuffle.split(&shards[i].shard_id) else {
                return;
            };
            (vec![shards[i].shard_id.clone()], vec![lo, hi])
        } else if !split && i + 1 < shards.len() {
            let child = self
                .shuffle
                .merge(&shards[i].shard_id, &shards[i + 1].shard_id)
                .unwrap();
            (
                vec![shards[i].shard_id.clone(), shards[i + 1].shard_id.clone()],
                vec![child],
            )
        } else {
            return;
        };
        for child in children {
            let owned = self.shuffle.map().groups_of(&child).unwrap();
            self.waiting.push((child, owned, parents.clone()));
        }
    }

    /// Every partition to its end, then every shard to its end.
    fn drain(&mut self) {
        for p in 0..self.ups.len() {
            while !self.ups[p].done {
                self.upstream_batch(p, 3);
            }
        }
        while let Some(id) = self.downs.keys().next().cloned() {
            let n = self.shuffle.records(&id).len();
            self.poll(&id, n, true, false);
            let closed = self.shuffle.map().groups_of(&id).is_none();
            if !closed {
                // An open shard read to its end stays; finish it.
                let down = self.downs.remove(&id).unwrap();
                self.finished.insert(id.clone(), down.committed);
            }
        }
        assert!(self.waiting.is_empty(), "every child started");
    }

    /// The single engine over the same batches in the order of their first write.
    fn reference(&self) -> (Vec<ResultKey>, Vec<LateKey>) {
        self.reference_of(&self.split.whole)
    }

    /// Pipeline `whole` in one engine over the same batches in the order of their first write.
    fn reference_of(&self, whole: &Pipeline<Ev, Out>) -> (Vec<ResultKey>, Vec<LateKey>) {
        let mut engine = whole.engine();
        let mut ids = BTreeMap::new();
        for &(p, start, len, closed) in &self.order {
            let id = *ids.entry(p).or_insert_with(|| engine.partition(&shard_name(p)));
            for i in start..start + len {
                engine.process(id, i as u64, 0, self.input[p][i].clone());
            }
            if closed {
                engine.end_partition(id);
            }
        }
        let results = engine.drain_output().iter().map(result_key).collect();
        let late = engine.drain_late().iter().map(|r| late_key(&engine, r)).collect();
        (results, late)
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// One step of a run: (kind, a, b).
fn steps() -> impl Strategy<Value = Vec<(u8, usize, usize)>> {
    prop::collection::vec((0u8..9, any::<usize>(), any::<usize>()), 0..120)
}

fn inputs() -> impl Strategy<Value = Vec<Vec<Ev>>> {
    let ev = (0u8..12, 0i64..120, 0i64..30).prop_map(|(key, ts, v)| Ev { key, ts, v });
    prop::collection::vec(prop::collection::vec(ev, 0..14), 1..=16)
}

fn run<S: Serialize + DeserializeOwned + Send + 'static>(
    split: SplitPipeline<Ev, S, Out>,
    input: Vec<Vec<Ev>>,
    sizes: Vec<usize>,
    shards: u16,
    steps: Vec<(u8, usize, usize)>,
) -> TwoStage<S> {
    run_registered(split, input, sizes, shards, steps, false)
}

/// [`run`], with every partition registered first if `register_all`.
fn run_registered<S: Serialize + DeserializeOwned + Send + 'static>(
    split: SplitPipeline<Ev, S, Out>,
    input: Vec<Vec<Ev>>,
    sizes: Vec<usize>,
    shards: u16,
    steps: Vec<(u8, usize, usize)>,
    register_all: bool,
) -> TwoStage<S> {
    let n = input.len();
    let mut two = TwoStage::new(split, input, sizes, shards);
    if register_all {
        two.register_all();
    }
    for (kind, a, b) in steps {
        match kind {
            0..=3 => two.upstream_batch(a % n, b % 6),
            4 => two.redeliver_up(a % n),
            5..=7 => {
                let ids: Vec<String> = two.downs.keys().cloned().collect();
                if !ids.is_empty() {
                    let id = &ids[a % ids.len()];
                    two.poll(id, 1 + b % 4, b % 3 != 0, b % 7 == 0);
                }
            }
            _ => two.reshard(b % 2 == 0, a),
        }
    }
    two.drain();
    two
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// The whole proof: random inputs on 1–16 upstream partitions, 1–8 shuffle shards, random
    /// batch cuts on both sides, upstream crashes after the shuffle write (and within it, the
    /// batch retried whole or as its two halves: Lambda's bisect), redelivered upstream batches,
    /// downstream crashes restored from checkpoints with their dedup marks, splits and merges of
    /// the shuffle stream.
    #[test]
    fn the_two_stage_run_equals_the_single_engine_with_crashes_redelivery_and_resharding(
        input in inputs(),
        sizes in prop::collection::vec(1usize..6, 1..8),
        shards in 1u16..=8,
        out_of_orderness in 0i64..15,
        lateness in 0i64..25,
        late_every in 1u32..3,
        steps in steps(),
    ) {
        let two = run(pipeline(out_of_orderness, lateness, late_every), input, sizes, shards, steps);
        let (results, late) = two.reference();
        let got = sorted(two.results.clone());
        prop_assert_eq!(&got, &sorted(results));
        prop_assert_eq!(sorted(two.late.clone()), sorted(late));
        for lost in &two.lost {
            prop_assert!(got.binary_search(lost).is_ok(), "a result lost in a crash is re-emitted the same: {:?}", lost);
        }
    }
}

/// A fixed run that certainly splits and merges the shuffle stream while late data, late panes
/// and crashes happen, so that the property above is not the only witness.
#[test]
fn a_split_and_a_merge_of_the_shuffle_stream_in_the_middle_of_late_data_change_no_result() {
    let ev = |key, ts, v| Ev { key, ts, v };
    let input = vec![
        vec![
            ev(1, 5, 1),
            ev(2, 15, 2),
            ev(1, 40, 3),
            ev(1, 7, 4),
            ev(3, 60, 5),
            ev(2, 3, 7),
        ],
        vec![ev(4, 2, 1), ev(1, 30, 9), ev(5, 12, 3), ev(4, 55, 2), ev(1, 8, 1)],
        vec![ev(6, 20, 6), ev(7, 50, 1), ev(6, 9, 2), ev(8, 70, 3)],
    ];
    let steps = vec![
        (0, 0, 3), // partition 0, a batch
        (0, 1, 0), // partition 1, written then a crash
        (5, 0, 1), // a downstream poll, committed
        (8, 0, 0), // split shard 0
        (0, 1, 3), // partition 1's batch again
        (0, 2, 1), // partition 2, a crash within the write
        (5, 1, 7), // a poll that crashes
        (4, 0, 0), // partition 0's last batch redelivered
        (8, 1, 1), // merge shards 1 and 2
        (0, 0, 2), // partition 0, committed then redelivered
        (6, 2, 2),
        (0, 1, 3),
        (0, 2, 3),
        (0, 0, 3),
    ];
    let two = run(pipeline(2, 20, 1), input, vec![2, 1, 3], 2, steps);
    let (results, late) = two.reference();
    assert!(
        two.finished.len() >= 5,
        "parents and children ran: {:?}",
        two.finished.keys()
    );
    assert!(!late.is_empty(), "late records");
    assert!(results.iter().any(|r| r.2.contains("Late")), "late panes");
    assert_eq!(sorted(two.results.clone()), sorted(results));
    assert_eq!(sorted(two.late.clone()), sorted(late));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Combiner lifting under the same random runs (tumbling or sliding windows, allowed lateness,
    /// late firings by count), every upstream partition known downstream before any data (as in
    /// the embedded runner): the lifted two-stage run equals the unlifted pipeline in one engine
    /// — ids, panes, values and late records.
    #[test]
    fn the_lifted_two_stage_run_equals_the_unlifted_single_engine(
        input in inputs(),
        sizes in prop::collection::vec(1usize..8, 1..8),
        shards in 1u16..=8,
        out_of_orderness in 0i64..15,
        lateness in 0i64..25,
        late_every in 1u32..3,
        sliding in any::<bool>(),
        steps in steps(),
    ) {
        let split = lifted(out_of_orderness, lateness, late_every, sliding);
        prop_assert!(split.is_lifted());
        let two = run_registered(split, input, sizes, shards, steps, true);
        let (results, late) = two.reference_of(&unlifted(out_of_orderness, lateness, late_every, sliding).whole);
        let got = sorted(two.results.clone());
        prop_assert_eq!(&got, &sorted(results));
        prop_assert_eq!(sorted(two.late.clone()), sorted(late));
        for lost in &two.lost {
            prop_assert!(got.binary_search(lost).is_ok(), "a result lost in a crash is re-emitted the same: {:?}", lost);
        }
    }
}

#[test]
fn early_firings_fall_back_to_the_unlifted_plan() {
    let split = windowed(0, 0, 1, false)
        .trigger(Trigger::at_watermark().with_early_firings(Firing::every_elements(2)))
        .aggregate_lifted((Sum::of(|e: &Ev| e.v), Count), |k, w, _p, (s, n)| (*k, w.start, s, n))
        .sink("out");
    assert!(!split.is_lifted());
    assert!(split.batch_combiner().is_none());
}
