//! Watermarks inside an engine: the minimum over partitions, idle partitions (the stall of
//! apache/beam#31085), ended partitions.

mod common;

use common::*;
use shardflow_engine::combine::Sum;
use shardflow_engine::{Pipeline, WatermarkStrategy, Windowing, MAX_TIMESTAMP, MIN_TIMESTAMP};

/// Sum of v per key and tumbling 10 ms window.
fn sums(strategy: WatermarkStrategy) -> Pipeline<Ev, (u32, i64)> {
    Pipeline::builder("watermarks")
        .watermarks(strategy)
        .event_time(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key)
        .window(Windowing::tumbling(10).unwrap())
        .aggregate(Sum::of(|e: &Ev| e.v), |k, _w, _p, s| (*k, s))
        .sink("out")
}

#[test]
fn the_slowest_partition_holds_the_watermark_back() {
    let mut e = sums(ooo(0)).engine();
    let a = e.partition("a");
    let b = e.partition("b");
    e.process(a, 0, 0, ev(1, 5, 1));
    e.process(a, 1, 0, ev(1, 15, 10));
    e.process(a, 2, 0, ev(1, 25, 100));
    assert_eq!(e.watermark(), MIN_TIMESTAMP, "b has said nothing yet");
    assert!(e.drain_output().is_empty());
    e.process(b, 0, 0, ev(1, 12, 1_000));
    assert_eq!(e.watermark(), 12, "min(a 25, b 12)");
    assert_eq!(panes(&e.drain_output()), vec![(w(0, 10), on_time(0), (1, 1))]);
    e.process(b, 1, 0, ev(1, 30, 10_000));
    assert_eq!(e.watermark(), 25, "now a is the slower one");
    assert_eq!(panes(&e.drain_output()), vec![(w(10, 20), on_time(0), (1, 1_010))]);
    e.finish();
    assert_eq!(e.watermark(), MAX_TIMESTAMP);
    assert_eq!(
        panes(&e.drain_output()),
        vec![(w(20, 30), on_time(0), (1, 100)), (w(30, 40), on_time(0), (1, 10_000))]
    );
    let parts = e.partitions();
    assert_eq!((parts[0].name.as_str(), parts[0].max_timestamp), ("a", 25));
    assert_eq!((parts[1].name.as_str(), parts[1].max_timestamp), ("b", 30));
}

#[test]
fn bounded_out_of_orderness_is_subtracted_from_each_partition() {
    let mut e = sums(ooo(4)).engine();
    let a = e.partition("a");
    e.process(a, 0, 0, ev(1, 12, 1));
    assert_eq!(e.watermark(), 8);
    e.process(a, 1, 0, ev(1, 6, 2)); // behind the maximum, but [0,10) is still open: on time
    e.process(a, 2, 0, ev(1, 14, 4)); // watermark 10
    assert_eq!(panes(&e.drain_output()), vec![(w(0, 10), on_time(0), (1, 2))]);
    assert!(e.drain_late().is_empty());
}

/// Partition a produces every 250 ms of processing time; b (an empty shard) never does.
fn silent_shard(strategy: WatermarkStrategy) -> Vec<(i64, Vec<(shardflow_engine::Window, i64)>)> {
    let mut e = sums(strategy).engine();
    let a = e.partition("shard-a");
    let _b = e.partition("shard-b");
    let mut fired = Vec::new();
    for i in 0..8u64 {
        let arrival = i as i64 * 250;
        e.process(a, i, arrival, ev(1, i as i64 * 10 + 5, 1));
        for (window, _, (_, s)) in panes(&e.drain_output()) {
            fired.push((arrival, vec![(window, s)]));
        }
    }
    fired
}

#[test]
fn an_idle_partition_stops_holding_the_watermark_back_after_the_idleness_timeout() {
    // apache/beam#31085: a shard that receives nothing must not stall every window forever.
    let strategy = ooo(0).with_idleness(1_000).unwrap();
    let fired = silent_shard(strategy);
    assert_eq!(
        fired,
        vec![
            // at arrival 1000, b has been silent for 1000 ms: the watermark jumps to a's (45)
            (1_000, vec![(w(0, 10), 1)]),
            (1_000, vec![(w(10, 20), 1)]),
            (1_000, vec![(w(20, 30), 1)]),
            (1_000, vec![(w(30, 40), 1)]),
            (1_250, vec![(w(40, 50), 1)]),
            (1_500, vec![(w(50, 60), 1)]),
            (1_750, vec![(w(60, 70), 1)]),
        ]
    );
}

#[test]
fn without_an_idleness_timeout_a_silent_partition_stalls_the_watermark() {
    assert_eq!(
        silent_shard(ooo(0)),
        vec![],
        "the failure the idleness timeout exists for"
    );
}

#[test]
fn advancing_processing_time_alone_releases_the_watermark_of_idle_partitions() {
    let mut e = sums(ooo(0).with_idleness(1_000).unwrap()).engine();
    let a = e.partition("a");
    let b = e.partition("b");
    e.process(a, 0, 0, ev(1, 25, 1));
    e.process(b, 0, 0, ev(1, 3, 2));
    assert_eq!(e.watermark(), 3);
    e.advance_processing_time(999);
    assert_eq!(e.watermark(), 3);
    assert!(e.drain_output().is_empty());
    e.advance_processing_time(1_000);
    // both are idle now: each has said all it has to say, the watermark is the largest (25)
    assert_eq!(e.watermark(), 25);
    assert_eq!(panes(&e.drain_output()), vec![(w(0, 10), on_time(0), (1, 2))]);
}

#[test]
fn an_idle_partition_that_wakes_up_holds_the_watermark_again_but_cannot_move_it_back() {
    let mut e = sums(ooo(0).with_idleness(1_000).unwrap()).engine();
    let a = e.partition("a");
    let b = e.partition("b");
    e.process(b, 0, 0, ev(2, 1, 7));
    e.process(a, 0, 500, ev(1, 5, 1));
    e.process(a, 1, 1_000, ev(1, 25, 1)); // b idle: watermark 25
    assert_eq!(e.watermark(), 25);
    assert_eq!(
        panes(&e.drain_output()),
        vec![(w(0, 10), on_time(0), (1, 1)), (w(0, 10), on_time(0), (2, 7))]
    );
    e.process(b, 1, 1_100, ev(2, 8, 100)); // b wakes up behind the watermark: late
    assert_eq!(e.watermark(), 25, "the watermark never moves back");
    assert_eq!(e.drain_late().len(), 1);
    e.process(b, 2, 1_200, ev(2, 31, 1)); // b is active again, at 31
    e.process(a, 2, 1_300, ev(1, 45, 1)); // a at 45, b at 31: b holds the watermark at 31
    assert_eq!(e.watermark(), 31);
    assert_eq!(panes(&e.drain_output()), vec![(w(20, 30), on_time(0), (1, 1))]);
}

#[test]
fn an_ended_partition_leaves_the_minimum_and_when_all_ended_every_window_fires() {
    let mut e = sums(ooo(0)).engine();
    let a = e.partition("a");
    let b = e.partition("b");
    e.process(a, 0, 0, ev(1, 5, 1));
    e.process(a, 1, 0, ev(1, 15, 10));
    e.process(b, 0, 0, ev(2, 2, 100));
    assert_eq!(e.watermark(), 2);
    assert!(e.drain_output().is_empty());
    e.end_partition(b);
    assert_eq!(e.watermark(), 15);
    assert_eq!(
        panes(&e.drain_output()),
        vec![(w(0, 10), on_time(0), (1, 1)), (w(0, 10), on_time(0), (2, 100))]
    );
    assert!(e.partitions()[1].ended);
    e.end_partition(a);
    assert_eq!(e.watermark(), MAX_TIMESTAMP);
    assert_eq!(panes(&e.drain_output()), vec![(w(10, 20), on_time(0), (1, 10))]);
}

#[test]
fn a_partition_that_never_produced_and_ends_does_not_hold_the_watermark() {
    let mut e = sums(ooo(0)).engine();
    let a = e.partition("a");
    let empty = e.partition("empty");
    e.process(a, 0, 0, ev(1, 15, 1));
    assert_eq!(e.watermark(), MIN_TIMESTAMP);
    e.end_partition(empty);
    assert_eq!(e.watermark(), 15);
}
