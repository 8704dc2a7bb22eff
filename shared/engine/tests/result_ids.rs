//! Result ids: the same input gives the same ids in every run, and distinct results (panes,
//! keys, windows, partitions, pipelines, rows of a flat_map, pairs of a join) get distinct ids.

mod common;

use std::collections::BTreeSet;

use common::*;
use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::{Firing, IntervalJoinSide, Output, Pipeline, ResultId, Trigger, Windowing};

/// Count and sum per key in tumbling windows with early, on-time and late panes.
fn panes_pipeline(name: &str) -> Pipeline<Ev, (u32, u64, i64)> {
    Pipeline::builder(name)
        .watermarks(ooo(5))
        .event_time(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key)
        .window(Windowing::sliding(20, 10).unwrap())
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

fn input() -> Vec<(usize, Ev)> {
    let mut v = Vec::new();
    for i in 0..60i64 {
        let ts = i * 2 - (i % 5) * 7; // disorder, some of it late
        v.push(((i % 2) as usize, ev((i % 3) as u32, ts.max(0), i)));
    }
    v
}

fn run<Out: Send + 'static>(p: &Pipeline<Ev, Out>, names: &[&str], input: &[(usize, Ev)]) -> Vec<Output<Out>> {
    let mut e = p.engine();
    let ids: Vec<_> = names.iter().map(|n| e.partition(n)).collect();
    let mut offsets = [0u64; 2];
    for (p, x) in input {
        e.process(ids[*p], offsets[*p], 0, x.clone());
        offsets[*p] += 1;
    }
    e.finish();
    e.drain_output()
}

fn ids<T>(out: &[Output<T>]) -> Vec<ResultId> {
    out.iter().map(|o| o.id).collect()
}

#[test]
fn the_same_input_gives_the_same_ids_in_every_run() {
    let p = panes_pipeline("ids");
    let a = run(&p, &["a", "b"], &input());
    let b = run(&p, &["a", "b"], &input());
    assert!(a.len() > 30);
    assert_eq!(ids(&a), ids(&b));
    assert_eq!(a, b);
}

#[test]
fn every_pane_of_every_key_and_window_has_its_own_id() {
    let out = run(&panes_pipeline("ids"), &["a", "b"], &input());
    let panes: BTreeSet<_> = out
        .iter()
        .map(|o| {
            let (w, p) = o.pane.unwrap();
            (o.value.0, w, p.index)
        })
        .collect();
    let timings: BTreeSet<_> = out.iter().map(|o| o.pane.unwrap().1.timing).collect();
    assert_eq!(timings.len(), 3, "early, on-time and late panes are all there");
    assert_eq!(panes.len(), out.len(), "each output is one (key, window, pane)");
    let distinct: BTreeSet<_> = ids(&out).into_iter().collect();
    assert_eq!(distinct.len(), out.len());
}

#[test]
fn two_pipelines_never_share_an_id() {
    let a: BTreeSet<_> = ids(&run(&panes_pipeline("one"), &["a", "b"], &input()))
        .into_iter()
        .collect();
    let b: BTreeSet<_> = ids(&run(&panes_pipeline("two"), &["a", "b"], &input()))
        .into_iter()
        .collect();
    assert!(a.is_disjoint(&b));
}

fn pass_through(name: &str) -> Pipeline<Ev, i64> {
    Pipeline::builder(name)
        .watermarks(ooo(0))
        .event_time(|e: &Ev| e.ts)
        .map(|e| e.v)
        .sink("out")
}

#[test]
fn records_of_two_partitions_at_the_same_offset_get_distinct_ids() {
    // Offsets are positions within a partition (a line of a file, a record of a shard): two
    // partitions both have an offset 0, and a sink deduplicating on the id must keep both.
    let p = pass_through("pass");
    let mut e = p.engine();
    let a = e.partition("file-a");
    let b = e.partition("file-b");
    e.process(a, 0, 0, ev(1, 1, 10));
    e.process(b, 0, 0, ev(1, 1, 20));
    let out = e.drain_output();
    assert_eq!(values(&out), vec![10, 20]);
    assert_ne!(out[0].id, out[1].id);
}

#[test]
fn ids_of_stateless_results_depend_on_the_partition_name_not_on_registration_order() {
    let p = pass_through("pass");
    let input = input();
    let ab = run(&p, &["a", "b"], &input);
    // the same partitions, registered in the other order (e.g. another Lambda invocation)
    let mut e = p.engine();
    let b = e.partition("b");
    let a = e.partition("a");
    let mut offsets = [0u64; 2];
    for (part, x) in &input {
        e.process(if *part == 0 { a } else { b }, offsets[*part], 0, x.clone());
        offsets[*part] += 1;
    }
    e.finish();
    assert_eq!(ids(&ab), ids(&e.drain_output()));
}

#[test]
fn each_output_of_a_flat_map_has_its_own_id() {
    let p = Pipeline::builder("fan-out")
        .watermarks(ooo(0))
        .event_time(|e: &Ev| e.ts)
        .flat_map(|e: Ev| vec![e.v; 3])
        .flat_map(|v| vec![v, v + 1])
        .sink("out");
    let mut e = p.engine();
    let s = e.partition("s");
    for i in 0..10u64 {
        e.process(s, i, 0, ev(0, i as i64, i as i64));
    }
    let out = e.drain_output();
    assert_eq!(out.len(), 60);
    let distinct: BTreeSet<_> = ids(&out).into_iter().collect();
    assert_eq!(distinct.len(), 60);
}

#[test]
fn interval_join_pairs_of_records_from_different_partitions_get_distinct_ids() {
    let p = Pipeline::builder("pairs")
        .watermarks(ooo(100))
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
            -10,
            10,
            |_, l, r| (l.v, r.v),
        )
        .sink("out");
    let mut e = p.engine();
    let a = e.partition("a");
    let b = e.partition("b");
    e.process(a, 0, 0, ev_side(1, 5, 1, 0)); // left, offset 0 of a
    e.process(b, 0, 0, ev_side(1, 6, 2, 0)); // left, offset 0 of b
    e.process(a, 1, 0, ev_side(1, 7, 3, 1)); // right: pairs with both
    let out = e.drain_output();
    assert_eq!(values(&out), vec![(1, 3), (2, 3)]);
    assert_ne!(out[0].id, out[1].id);
}

#[test]
fn draining_one_by_one_after_every_record_gives_the_results_of_one_final_drain() {
    let p = panes_pipeline("drain-iter");
    let once = run(&p, &["a", "b"], &input());
    let mut e = p.engine();
    let ids_by_partition: Vec<_> = ["a", "b"].iter().map(|n| e.partition(n)).collect();
    let mut offsets = [0u64; 2];
    let mut one_by_one = Vec::new();
    for (p, x) in input() {
        e.process(ids_by_partition[p], offsets[p], 0, x);
        offsets[p] += 1;
        one_by_one.extend(e.drain_output_iter());
        assert_eq!(
            e.drain_output_iter().count(),
            0,
            "a drained result is not yielded twice"
        );
    }
    e.finish();
    one_by_one.extend(e.drain_output_iter());
    assert!(once.len() > 30);
    assert_eq!(ids(&one_by_one), ids(&once));
    let values = |out: &[Output<(u32, u64, i64)>]| out.iter().map(|o| o.value).collect::<Vec<_>>();
    assert_eq!(values(&one_by_one), values(&once));
}
