//! Split pipelines (`key_by(..).shuffle()`): the cut, external watermarks and explicit
//! provenance — the engine's side of the shuffle between two stages.

mod common;

use common::*;
use shardflow_engine::combine::Sum;
use shardflow_engine::{
    Pipeline, PipelineError, SplitPipeline, Trigger, WatermarkStrategy, Windowing, MAX_TIMESTAMP, MIN_TIMESTAMP,
};

/// Sum of v per key and tumbling 10 ms window, late records after 5 ms of lateness, with a
/// `flat_map` that doubles odd values (so inputs have 1 or 2 outputs).
fn sums() -> SplitPipeline<Ev, Ev, (u32, i64, i64)> {
    Pipeline::builder("split")
        .watermarks(ooo(2))
        .event_time(|e: &Ev| e.ts)
        .flat_map(|e: Ev| if e.v % 2 == 1 { vec![e.clone(), e] } else { vec![e] })
        .key_by(|e: &Ev| e.key)
        .shuffle()
        .unwrap()
        .window(Windowing::tumbling(10).unwrap())
        .trigger(Trigger::at_watermark().with_allowed_lateness(5).unwrap())
        .aggregate(Sum::of(|e: &Ev| e.v), |k, w, _p, s| (*k, w.start, s))
        .sink("out")
}

#[test]
fn a_stateful_operator_before_the_shuffle_marker_is_refused() {
    let refused = Pipeline::builder("dedup-then-shuffle")
        .event_time(|e: &Ev| e.ts)
        .deduplicate(|e| e.v, 1_000)
        .key_by(|e| e.key)
        .shuffle()
        .err();
    assert_eq!(
        refused,
        Some(PipelineError::StatefulBeforeShuffle {
            operator: "deduplicate-0".into()
        })
    );
}

#[test]
fn an_external_watermark_moves_only_when_advanced_and_never_back() {
    let split = sums();
    assert!(split.downstream.watermark_strategy().is_external());
    let mut down = split.downstream.engine();
    let a = down.partition("a");
    let origin = |offset| shardflow_engine::InputOrigin {
        source: 1,
        offset,
        index: 0,
    };
    down.process_from(a, origin(0), 3, 0, ev(1, 3, 10));
    down.process_from(a, origin(1), 25, 0, ev(1, 25, 10));
    assert_eq!(down.watermark(), MIN_TIMESTAMP, "records do not move it");
    down.advance_watermark(9);
    assert_eq!(down.watermark(), 9);
    assert_eq!(down.drain_output().len(), 1, "the window [0, 10) fired at 9");
    down.advance_watermark(4);
    assert_eq!(down.watermark(), 9, "never back");
    down.advance_watermark(40);
    down.process_from(a, origin(2), 7, 0, ev(1, 7, 10));
    let late = down.drain_late();
    assert_eq!(
        (late.len(), late[0].partition, late[0].offset, late[0].watermark),
        (1, Some(a), Some(2), 40)
    );
    down.finish();
    assert_eq!(down.watermark(), MAX_TIMESTAMP);
}

#[test]
fn the_whole_of_a_split_pipeline_gives_the_ids_of_the_same_pipeline_without_the_marker() {
    let unsplit = Pipeline::builder("split")
        .watermarks(ooo(2))
        .event_time(|e: &Ev| e.ts)
        .flat_map(|e: Ev| if e.v % 2 == 1 { vec![e.clone(), e] } else { vec![e] })
        .key_by(|e: &Ev| e.key)
        .window(Windowing::tumbling(10).unwrap())
        .trigger(Trigger::at_watermark().with_allowed_lateness(5).unwrap())
        .aggregate(Sum::of(|e: &Ev| e.v), |k, w, _p, s| (*k, w.start, s))
        .sink("out");
    let input = [ev(1, 3, 1), ev(2, 4, 2), ev(1, 14, 3), ev(1, 5, 4), ev(2, 30, 5)];
    let run = |mut e: shardflow_engine::Engine<Ev, (u32, i64, i64)>| {
        let p = e.partition("a");
        for (offset, r) in input.iter().enumerate() {
            e.process(p, offset as u64, 0, r.clone());
        }
        e.finish();
        e.drain_output()
    };
    assert_eq!(run(sums().whole.engine()), run(unsplit.engine()));
}

/// The upstream half of `sums` on one partition, then its downstream half fed as the shuffle
/// feeds it: each value after raising the watermark to its partition's watermark before it.
#[test]
fn the_halves_fed_value_by_value_reproduce_the_whole_pipelines_results_and_late_records() {
    let split = sums();
    let input = [
        ev(1, 3, 1),
        ev(2, 4, 2),
        ev(1, 14, 3),
        ev(1, 5, 4),
        ev(2, 30, 5),
        ev(1, 12, 7),
        ev(1, 2, 9),
    ];
    let mut whole = split.whole.engine();
    let wp = whole.partition("a");
    let mut up = split.upstream.engine();
    let up_p = up.partition("a");
    let mut down = split.downstream.engine();
    let dp = down.partition("a");
    for (offset, r) in input.iter().enumerate() {
        whole.process(wp, offset as u64, 0, r.clone());
        let wm_before = up.partition_watermark(up_p);
        up.process(up_p, offset as u64, 0, r.clone());
        for o in up.drain_output() {
            assert_eq!(
                o.value.key_group,
                shardflow_engine::state::key_group(&o.value.value.key, 128)
            );
            down.advance_watermark(wm_before);
            down.process_from(dp, o.value.origin, o.timestamp, 0, o.value.value);
        }
    }
    whole.finish();
    down.finish();
    let whole_out = whole.drain_output();
    assert!(
        whole_out.iter().any(|o| o.pane.is_some_and(|(_, p)| p.index > 0)),
        "a late firing"
    );
    assert_eq!(down.drain_output(), whole_out);
    let whole_late = whole.drain_late();
    assert!(!whole_late.is_empty(), "a late record");
    assert_eq!(down.drain_late(), whole_late);
}

#[test]
fn the_downstream_half_starts_at_the_minimum_watermark_with_external_strategy() {
    assert_eq!(WatermarkStrategy::external().idleness(), None);
    let down = sums().downstream.engine();
    assert_eq!(down.watermark(), MIN_TIMESTAMP);
    assert_eq!(sums().downstream.name(), sums().whole.name());
}
