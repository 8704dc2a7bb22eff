//! Checkpoints can be taken between any two records: feeding an input in arbitrary batches, with
//! snapshot -> encode -> decode -> commit to a state store (an incremental chain) -> load ->
//! restore between batches, produces exactly the output of one uninterrupted run — results (ids,
//! timestamps, panes, values, in order), the late side output and the metrics.
//!
//! And, for inputs without late data and with on-time-only triggers, any interleaving of the
//! partitions produces the same multiset of results (ids included).

mod common;

use std::collections::BTreeSet;
use std::fmt::Debug;

use common::*;
use proptest::prelude::*;
use shardflow_engine::checkpoint::{Checkpoint, InMemoryStateStore, StateStore};
use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::{
    join, Engine, EngineMetrics, Firing, IntervalJoinSide, LateRecord, Output, Pipeline, Trigger, Window, Windowing,
};

/// `default` cases, or `PROPTEST_CASES` when set (for a long local hunt:
/// `PROPTEST_CASES=5000 cargo test --release -p shardflow-engine --test checkpoint_equivalence`).
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// Inputs

/// One step of a run.
#[derive(Debug, Clone)]
enum Op {
    /// A record of a partition at its next offset.
    Rec {
        part: usize,
        offset: u64,
        arrival: i64,
        ev: Ev,
    },
    /// Processing time advances without a record.
    Tick(i64),
    /// A partition ends (a later record of it reopens it).
    End(usize),
}

#[derive(Debug, Clone)]
struct Input {
    parts: usize,
    ops: Vec<Op>,
}

const PART_NAMES: [&str; 4] = ["shard-0", "shard-1", "shard-2", "shard-3"];

/// 2..=4 partitions, 4 keys, event time advancing with disorder of up to 29 ms (the watermark
/// allows 10: some records are late, most of those within the allowed lateness), about 1 in 20
/// records far beyond the allowed lateness, arrival times increasing, processing-time ticks and partition
/// ends sprinkled in.
fn input_strategy() -> impl Strategy<Value = Input> {
    (
        2usize..=4,
        prop::collection::vec(
            (0usize..4, 0u32..4, 0i64..6, 0i64..30, 0u8..20, 0i64..25, 0u8..2),
            1..120,
        ),
    )
        .prop_map(|(parts, steps)| {
            let (mut clock, mut arrival) = (0i64, 0i64);
            let mut offsets = vec![0u64; parts];
            let mut ops = Vec::new();
            for (i, (p, key, dt, jitter, kind, darr, side)) in steps.into_iter().enumerate() {
                let part = p % parts;
                clock += dt;
                arrival += darr;
                let ts = match kind {
                    0 | 1 => {
                        arrival += 40;
                        ops.push(Op::Tick(arrival));
                        continue;
                    }
                    2 => {
                        ops.push(Op::End(part));
                        continue;
                    }
                    3 => clock - 150 - jitter, // beyond any allowed lateness below
                    _ => clock - jitter,
                };
                let ev = Ev {
                    key,
                    ts,
                    v: i as i64,
                    side,
                };
                ops.push(Op::Rec {
                    part,
                    offset: offsets[part],
                    arrival,
                    ev,
                });
                offsets[part] += 1;
            }
            Input { parts, ops }
        })
}

// ---------------------------------------------------------------------------------------------
// Runs

#[derive(Debug, PartialEq)]
struct Run<Out> {
    out: Vec<Output<Out>>,
    late: Vec<LateRecord>,
    metrics: EngineMetrics,
}

fn apply<Out: Send + 'static>(e: &mut Engine<Ev, Out>, ids: &[u32], op: &Op) {
    match op {
        Op::Rec {
            part,
            offset,
            arrival,
            ev,
        } => e.process(ids[*part], *offset, *arrival, ev.clone()),
        Op::Tick(now) => e.advance_processing_time(*now),
        Op::End(part) => e.end_partition(ids[*part]),
    }
}

fn register<Out: Send + 'static>(e: &mut Engine<Ev, Out>, parts: usize) -> Vec<u32> {
    PART_NAMES[..parts].iter().map(|n| e.partition(n)).collect()
}

fn run_uninterrupted<Out: Send + 'static>(make: fn() -> Pipeline<Ev, Out>, input: &Input) -> Run<Out> {
    let mut e = make().engine();
    let ids = register(&mut e, input.parts);
    for op in &input.ops {
        apply(&mut e, &ids, op);
    }
    e.finish();
    Run {
        out: e.drain_output(),
        late: e.drain_late(),
        metrics: e.metrics(),
    }
}

/// Like [`run_uninterrupted`], but after every op whose index is in `cuts`: drain (as a runner
/// does before it commits), incremental snapshot, encode, decode, commit to the store, load the
/// stored image, and continue on an engine restored from it (of a freshly built pipeline).
fn run_with_restores<Out: Send + 'static>(
    make: fn() -> Pipeline<Ev, Out>,
    input: &Input,
    cuts: &BTreeSet<usize>,
) -> Run<Out> {
    let mut store = InMemoryStateStore::default();
    let mut e = make().engine();
    let mut ids = register(&mut e, input.parts);
    let (mut out, mut late) = (Vec::new(), Vec::new());
    for (i, op) in input.ops.iter().enumerate() {
        apply(&mut e, &ids, op);
        if cuts.contains(&i) {
            out.extend(e.drain_output());
            late.extend(e.drain_late());
            let bytes = e.snapshot().expect("snapshot").encode().expect("encode");
            let checkpoint = Checkpoint::decode(&bytes).expect("decode");
            pollster::block_on(store.commit(&checkpoint, &())).expect("commit");
            let image = pollster::block_on(store.load())
                .expect("load")
                .expect("committed")
                .image;
            e = Engine::restore(&make(), &image).expect("restore");
            let again = register(&mut e, input.parts);
            assert_eq!(again, ids, "partitions keep their ids across a restore");
            ids = again;
        }
    }
    e.finish();
    out.extend(e.drain_output());
    late.extend(e.drain_late());
    Run {
        out,
        late,
        metrics: e.metrics(),
    }
}

fn check_equivalence<Out>(make: fn() -> Pipeline<Ev, Out>, input: &Input, cuts: &[usize]) -> Result<(), TestCaseError>
where
    Out: Send + 'static + PartialEq + Debug,
{
    let cuts: BTreeSet<usize> = cuts.iter().map(|c| c % input.ops.len().max(1)).collect();
    let straight = run_uninterrupted(make, input);
    let restored = run_with_restores(make, input, &cuts);
    prop_assert_eq!(&restored.out, &straight.out);
    prop_assert_eq!(&restored.late, &straight.late);
    prop_assert_eq!(restored.metrics, straight.metrics);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Pipelines

fn strategy() -> shardflow_engine::WatermarkStrategy {
    ooo(10).with_idleness(100).unwrap()
}

type CountSum = (u32, u64, i64);

/// Tumbling windows with early panes (every 3 elements or 30 ms of processing time), late panes
/// within 40 ms of allowed lateness, accumulating.
fn tumbling_early_late() -> Pipeline<Ev, CountSum> {
    Pipeline::builder("tumbling")
        .watermarks(strategy())
        .max_key_groups(8)
        .event_time(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key)
        .window(Windowing::tumbling(20).unwrap())
        .trigger(
            Trigger::at_watermark()
                .with_early_firings(Firing::every_processing_ms(30).or_elements(3))
                .with_allowed_lateness(40)
                .unwrap()
                .accumulating(),
        )
        .aggregate((Count, Sum::of(|e: &Ev| e.v)), |k, _w, _p, (n, s)| (*k, n, s))
        .sink("out")
}

/// Sliding windows (30 ms every 10 ms), discarding, late panes by processing time.
fn sliding_late_by_processing_time() -> Pipeline<Ev, CountSum> {
    Pipeline::builder("sliding")
        .watermarks(strategy())
        .max_key_groups(8)
        .event_time(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key)
        .window(Windowing::sliding(30, 10).unwrap())
        .trigger(
            Trigger::at_watermark()
                .with_allowed_lateness(20)
                .unwrap()
                .with_late_firings(Firing::every_processing_ms(25))
                .discarding(),
        )
        .aggregate((Count, Sum::of(|e: &Ev| e.v)), |k, _w, _p, (n, s)| (*k, n, s))
        .sink("out")
}

/// Session windows (gap 15) with early panes every 2 elements, accumulating, lateness 30.
fn session_early() -> Pipeline<Ev, CountSum> {
    Pipeline::builder("session")
        .watermarks(strategy())
        .max_key_groups(8)
        .event_time(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key)
        .window(Windowing::session(15).unwrap())
        .trigger(
            Trigger::at_watermark()
                .with_early_firings(Firing::every_elements(2))
                .with_allowed_lateness(30)
                .unwrap()
                .accumulating(),
        )
        .aggregate((Count, Sum::of(|e: &Ev| e.v)), |k, _w, _p, (n, s)| (*k, n, s))
        .sink("out")
}

type Joined = (u32, i64, Vec<i64>);

/// A 2-way window join in tumbling windows of 25 ms.
fn window_join() -> Pipeline<Ev, Joined> {
    window_join_with(strategy())
}

fn window_join_with(watermarks: shardflow_engine::WatermarkStrategy) -> Pipeline<Ev, Joined> {
    Pipeline::builder("window-join")
        .watermarks(watermarks)
        .max_key_groups(8)
        .event_time(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key)
        .window(Windowing::tumbling(25).unwrap())
        .join(
            2,
            |e: &Ev| usize::from(e.side),
            |k: &u32, w: &Window, lists: &[Vec<Ev>]| {
                join::inner(lists)
                    .into_iter()
                    .map(|row| (*k, w.start, row.iter().map(|e| e.v).collect()))
                    .collect()
            },
        )
        .sink("out")
}

type Pair = (u32, i64, i64);

/// An interval join: right.ts in [left.ts - 15, left.ts + 10].
fn interval_join() -> Pipeline<Ev, Pair> {
    interval_join_with(strategy())
}

fn interval_join_with(watermarks: shardflow_engine::WatermarkStrategy) -> Pipeline<Ev, Pair> {
    Pipeline::builder("interval-join")
        .watermarks(watermarks)
        .max_key_groups(8)
        .event_time(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key)
        .interval_join(
            |e: &Ev| {
                if e.side == 0 {
                    IntervalJoinSide::Left
                } else {
                    IntervalJoinSide::Right
                }
            },
            -15,
            10,
            |k, l, r| (*k, l.v, r.v),
        )
        .sink("out")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(48), ..ProptestConfig::default() })]

    #[test]
    fn tumbling_with_early_and_late_panes_survives_any_restore_points(
        input in input_strategy(), cuts in prop::collection::vec(0usize..200, 0..10)
    ) {
        check_equivalence(tumbling_early_late, &input, &cuts)?;
    }

    #[test]
    fn sliding_windows_survive_any_restore_points(
        input in input_strategy(), cuts in prop::collection::vec(0usize..200, 0..10)
    ) {
        check_equivalence(sliding_late_by_processing_time, &input, &cuts)?;
    }

    #[test]
    fn session_windows_survive_any_restore_points(
        input in input_strategy(), cuts in prop::collection::vec(0usize..200, 0..10)
    ) {
        check_equivalence(session_early, &input, &cuts)?;
    }

    #[test]
    fn window_join_survives_any_restore_points(
        input in input_strategy(), cuts in prop::collection::vec(0usize..200, 0..10)
    ) {
        check_equivalence(window_join, &input, &cuts)?;
    }

    #[test]
    fn interval_join_survives_any_restore_points(
        input in input_strategy(), cuts in prop::collection::vec(0usize..200, 0..10)
    ) {
        check_equivalence(interval_join, &input, &cuts)?;
    }
}

/// Early panes every 30 ms of processing time or every 2 elements, discarding.
fn early_by_time_or_count() -> Pipeline<Ev, CountSum> {
    Pipeline::builder("early")
        .watermarks(ooo(1_000))
        .event_time(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key)
        .window(Windowing::tumbling(1_000).unwrap())
        .trigger(Trigger::at_watermark().with_early_firings(Firing::every_processing_ms(30).or_elements(2)))
        .aggregate((Count, Sum::of(|e: &Ev| e.v)), |k, _w, _p, (n, s)| (*k, n, s))
        .sink("out")
}

#[test]
fn a_restore_does_not_reorder_processing_time_panes_that_fall_due_together() {
    let rec = |offset: u64, arrival: i64, key: u32| Op::Rec {
        part: 0,
        offset,
        arrival,
        ev: ev(key, 1, offset as i64),
    };
    let input = Input {
        parts: 1,
        ops: vec![
            rec(0, 0, 1),  // key 1: pane timer at 30
            rec(1, 1, 1),  // second element: the pane fires by count; the timer at 30 is now stale
            rec(2, 5, 2),  // key 2: timer at 35
            rec(3, 8, 1),  // key 1: timer at 38
            Op::Tick(100), // all due at once: key 2 (35) fires before key 1 (38)
        ],
    };
    let straight = run_uninterrupted(early_by_time_or_count, &input);
    let keys: Vec<(u32, u64)> = straight.out.iter().map(|o| (o.value.0, o.value.1)).collect();
    assert_eq!(
        keys,
        vec![(1, 2), (2, 1), (1, 1)],
        "panes in the order of their deadlines"
    );
    let restored = run_with_restores(early_by_time_or_count, &input, &BTreeSet::from([3]));
    assert_eq!(restored, straight);
}

#[test]
fn the_generated_inputs_exercise_every_kind_of_pane_and_the_late_side_output() {
    // Guards the strategy: a property over inputs that never produce late data or early panes
    // would prove little.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut timings, mut late) = (BTreeSet::new(), 0);
    for _ in 0..20 {
        let input = input_strategy().new_tree(&mut runner).unwrap().current();
        let run = run_uninterrupted(tumbling_early_late, &input);
        timings.extend(run.out.iter().filter_map(|o| o.pane.map(|p| p.1.timing)));
        late += run.late.len();
    }
    assert_eq!(timings.len(), 3, "early, on-time and late panes: {timings:?}");
    assert!(late > 0, "some records went to the late side output");
}

// ---------------------------------------------------------------------------------------------
// Interleavings

/// Per-partition records whose disorder (9 ms) stays below the watermark's bound (10 ms), so that
/// no record is ever late, whatever the interleaving.
fn partitioned_strategy() -> impl Strategy<Value = Vec<Vec<Ev>>> {
    prop::collection::vec(
        prop::collection::vec((0u32..4, 0i64..6, 0i64..10, 0u8..2), 0..40),
        2..=4,
    )
    .prop_map(|parts| {
        parts
            .into_iter()
            .enumerate()
            .map(|(p, steps)| {
                let mut clock = 0;
                steps
                    .into_iter()
                    .enumerate()
                    .map(|(i, (key, dt, jitter, side))| {
                        clock += dt;
                        Ev {
                            key,
                            ts: clock - jitter,
                            v: (p * 1_000 + i) as i64,
                            side,
                        }
                    })
                    .collect()
            })
            .collect()
    })
}

/// Feeds the partitions in the order `schedule` picks them (each pick takes the partition's next
/// record, skipping exhausted ones; leftovers follow in partition order); returns the results
/// as sorted debug strings (a multiset) and the number of late records.
fn interleaved<Out: Send + 'static + Debug>(
    make: fn() -> Pipeline<Ev, Out>,
    parts: &[Vec<Ev>],
    schedule: &[usize],
) -> (Vec<String>, usize) {
    let mut e = make().engine();
    let ids = register(&mut e, parts.len());
    let mut next = vec![0usize; parts.len()];
    let mut order = Vec::new();
    for &pick in schedule {
        let p = pick % parts.len();
        if next[p] < parts[p].len() {
            order.push(p);
            next[p] += 1;
        }
    }
    for (p, records) in parts.iter().enumerate() {
        order.extend(std::iter::repeat_n(p, records.len() - next[p]));
    }
    let mut offsets = vec![0usize; parts.len()];
    for (arrival, p) in order.into_iter().enumerate() {
        let x = parts[p][offsets[p]].clone();
        e.process(ids[p], offsets[p] as u64, arrival as i64, x);
        offsets[p] += 1;
    }
    e.finish();
    let mut out: Vec<String> = e.drain_output().iter().map(|o| format!("{o:?}")).collect();
    out.sort();
    (out, e.drain_late().len())
}

/// No idleness timeout here: an idle partition would let the watermark pass records it still
/// has, which makes them late depending on the interleaving (as it should).
fn on_time_only(name: &'static str, windowing: Windowing) -> Pipeline<Ev, CountSum> {
    Pipeline::builder(name)
        .watermarks(ooo(10))
        .max_key_groups(8)
        .event_time(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key)
        .window(windowing)
        .aggregate((Count, Sum::of(|e: &Ev| e.v)), |k, _w, _p, (n, s)| (*k, n, s))
        .sink("out")
}

fn tumbling_on_time() -> Pipeline<Ev, CountSum> {
    on_time_only("tumbling", Windowing::tumbling(20).unwrap())
}
fn sliding_on_time() -> Pipeline<Ev, CountSum> {
    on_time_only("sliding", Windowing::sliding(30, 10).unwrap())
}
fn session_on_time() -> Pipeline<Ev, CountSum> {
    on_time_only("session", Windowing::session(15).unwrap())
}
fn window_join_on_time() -> Pipeline<Ev, Joined> {
    window_join_with(ooo(10))
}
fn interval_join_on_time() -> Pipeline<Ev, Pair> {
    interval_join_with(ooo(10))
}

fn check_interleavings<Out: Send + 'static + Debug>(
    make: fn() -> Pipeline<Ev, Out>,
    parts: &[Vec<Ev>],
    a: &[usize],
    b: &[usize],
) -> Result<(), TestCaseError> {
    let (out_a, late_a) = interleaved(make, parts, a);
    let (out_b, late_b) = interleaved(make, parts, b);
    prop_assert_eq!((late_a, late_b), (0, 0), "the inputs were built to have no late data");
    prop_assert_eq!(out_a, out_b);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(48), ..ProptestConfig::default() })]

    #[test]
    fn any_interleaving_of_partitions_gives_the_same_results(
        parts in partitioned_strategy(),
        a in prop::collection::vec(0usize..4, 0..160),
        b in prop::collection::vec(0usize..4, 0..160),
    ) {
        check_interleavings(tumbling_on_time, &parts, &a, &b)?;
        check_interleavings(sliding_on_time, &parts, &a, &b)?;
        check_interleavings(session_on_time, &parts, &a, &b)?;
        check_interleavings(window_join_on_time, &parts, &a, &b)?;
        check_interleavings(interval_join_on_time, &parts, &a, &b)?;
    }
}
