//! Triggers: early panes by element count and by processing time, the on-time pane, late panes
//! within the allowed lateness (accumulating and discarding), the late side output, pane indices.

mod common;

use std::collections::BTreeMap;

use common::*;
use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::{Engine, Firing, PaneInfo, Pipeline, Trigger, Window, Windowing};

/// `(key, count, sum of v)` per key and tumbling window of `size`, fired by `trigger`, watermark
/// without out-of-orderness.
fn count_sum(size: i64, trigger: Trigger) -> Pipeline<Ev, (u32, u64, i64)> {
    Pipeline::builder("triggers")
        .watermarks(ooo(0))
        .event_time(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key)
        .window(Windowing::tumbling(size).unwrap())
        .trigger(trigger)
        .aggregate((Count, Sum::of(|e: &Ev| e.v)), |k, _w, _p, (n, s)| (*k, n, s))
        .sink("out")
}

#[test]
fn early_panes_fire_every_n_elements_then_the_on_time_pane() {
    let run = |trigger: Trigger| {
        let mut e = count_sum(100, trigger).engine();
        let s = e.partition("s0");
        let mut out = Vec::new();
        for (i, ts) in [10, 20, 30, 40, 50].into_iter().enumerate() {
            e.process(s, i as u64, 0, ev(1, ts, ts));
            out.push(panes(&e.drain_output()));
        }
        e.process(s, 5, 0, ev(2, 100, 1)); // watermark 100 >= 99
        out.push(panes(&e.drain_output()));
        out
    };
    let win = w(0, 100);
    let early2 = Trigger::at_watermark().with_early_firings(Firing::every_elements(2));
    assert_eq!(
        run(early2.accumulating()),
        vec![
            vec![],
            vec![(win, early(0), (1, 2, 30))],
            vec![],
            vec![(win, early(1), (1, 4, 100))],
            vec![],
            vec![(win, on_time(2), (1, 5, 150))],
        ]
    );
    assert_eq!(
        run(early2.discarding()),
        vec![
            vec![],
            vec![(win, early(0), (1, 2, 30))],
            vec![],
            vec![(win, early(1), (1, 2, 70))],
            vec![],
            vec![(win, on_time(2), (1, 1, 50))],
        ]
    );
}

#[test]
fn on_time_pane_after_early_panes_fires_always_when_accumulating_and_only_with_new_data_when_discarding() {
    let run = |trigger: Trigger| {
        let mut e = count_sum(100, trigger).engine();
        let s = e.partition("s0");
        e.process(s, 0, 0, ev(1, 10, 1));
        e.process(s, 1, 0, ev(1, 20, 2));
        e.process(s, 2, 0, ev(2, 100, 0));
        panes(&e.drain_output())
    };
    let early2 = Trigger::at_watermark().with_early_firings(Firing::every_elements(2));
    assert_eq!(
        run(early2.accumulating()),
        vec![(w(0, 100), early(0), (1, 2, 3)), (w(0, 100), on_time(1), (1, 2, 3))]
    );
    assert_eq!(run(early2.discarding()), vec![(w(0, 100), early(0), (1, 2, 3))]);
}

#[test]
fn early_panes_fire_by_processing_time_after_the_first_element_of_a_pane() {
    let trigger = Trigger::at_watermark()
        .with_early_firings(Firing::every_processing_ms(1_000))
        .accumulating();
    let mut e = count_sum(100, trigger).engine();
    let s = e.partition("s0");
    e.process(s, 0, 0, ev(1, 10, 1)); // arms a firing at 1000
    e.process(s, 1, 400, ev(1, 20, 2));
    e.advance_processing_time(999);
    assert!(e.drain_output().is_empty());
    e.advance_processing_time(1_000);
    assert_eq!(panes(&e.drain_output()), vec![(w(0, 100), early(0), (1, 2, 3))]);
    e.advance_processing_time(5_000);
    assert!(e.drain_output().is_empty(), "no new element, no new pane");
    e.process(s, 2, 5_500, ev(1, 30, 4)); // arms a firing at 6500
    e.process(s, 3, 5_600, ev(2, 100, 0)); // watermark 100: the on-time pane takes the pending element
    assert_eq!(panes(&e.drain_output()), vec![(w(0, 100), on_time(1), (1, 3, 7))]);
    e.advance_processing_time(10_000);
    assert_eq!(
        panes(&e.drain_output()),
        vec![(w(100, 200), early(0), (2, 1, 0))],
        "only key 2's own window fires early; key 1's timer armed at 5500 was cancelled by the on-time pane"
    );
    // a timer due at a record's arrival fires before that record is added
    e.process(s, 4, 20_000, ev(3, 150, 1)); // arms 21000 for [100,200)
    e.process(s, 5, 21_000, ev(3, 160, 2));
    assert_eq!(panes(&e.drain_output()), vec![(w(100, 200), early(0), (3, 1, 1))]);
    e.advance_processing_time(22_000);
    assert_eq!(panes(&e.drain_output()), vec![(w(100, 200), early(1), (3, 2, 3))]);
}

#[test]
fn early_firing_by_count_or_processing_time_whichever_comes_first() {
    let trigger = Trigger::at_watermark()
        .with_early_firings(Firing::every_processing_ms(100).or_elements(3))
        .discarding();
    let mut e = count_sum(1_000, trigger).engine();
    let s = e.partition("s0");
    e.process(s, 0, 0, ev(1, 1, 1));
    e.process(s, 1, 10, ev(1, 2, 2));
    e.process(s, 2, 20, ev(1, 3, 4)); // third element: fires by count
    assert_eq!(panes(&e.drain_output()), vec![(w(0, 1_000), early(0), (1, 3, 7))]);
    e.advance_processing_time(100);
    assert!(e.drain_output().is_empty(), "the count firing reset the pane's timer");
    e.process(s, 3, 150, ev(1, 4, 8)); // arms 250
    e.advance_processing_time(250);
    assert_eq!(panes(&e.drain_output()), vec![(w(0, 1_000), early(1), (1, 1, 8))]);
}

type Seen = Vec<(u64, Window, PaneInfo, (u32, u64, i64))>;

/// The late-data scenario: window [0,10), allowed lateness 20 (so the window is kept until the
/// watermark reaches 9 + 20 = 29).
fn late_scenario(trigger: Trigger) -> (Seen, Engine<Ev, (u32, u64, i64)>) {
    let mut e = count_sum(10, trigger).engine();
    let s = e.partition("s0");
    let input = [
        ev(1, 1, 1),
        ev(2, 12, 2), // watermark 12: on-time pane of [0,10)
        ev(1, 3, 4),  // late, within lateness: late pane
        ev(1, 5, 8),  // late pane
        ev(2, 28, 0), // watermark 28: [10,20) fires; [0,10) is kept (29 > 28)
        ev(1, 6, 16), // still within lateness
        ev(2, 29, 0), // watermark 29: [0,10) is dropped, [20,30) fires
        ev(1, 7, 32), // beyond the allowed lateness: side output
    ];
    let mut seen = Vec::new();
    for (i, x) in input.into_iter().enumerate() {
        e.process(s, i as u64, 0, x);
        seen.extend(
            panes(&e.drain_output())
                .into_iter()
                .map(|(w, p, v)| (i as u64, w, p, v)),
        );
    }
    (seen, e)
}

#[test]
fn late_panes_within_allowed_lateness_accumulate() {
    let trigger = Trigger::at_watermark()
        .with_allowed_lateness(20)
        .unwrap()
        .accumulating();
    let (seen, _) = late_scenario(trigger);
    assert_eq!(
        seen,
        vec![
            (1, w(0, 10), on_time(0), (1, 1, 1)),
            (2, w(0, 10), late(1), (1, 2, 5)),
            (3, w(0, 10), late(2), (1, 3, 13)),
            (4, w(10, 20), on_time(0), (2, 1, 2)),
            (5, w(0, 10), late(3), (1, 4, 29)),
            (6, w(20, 30), on_time(0), (2, 2, 0)),
        ]
    );
}

#[test]
fn late_panes_within_allowed_lateness_discard() {
    let trigger = Trigger::at_watermark().with_allowed_lateness(20).unwrap().discarding();
    let (seen, _) = late_scenario(trigger);
    assert_eq!(
        seen,
        vec![
            (1, w(0, 10), on_time(0), (1, 1, 1)),
            (2, w(0, 10), late(1), (1, 1, 4)),
            (3, w(0, 10), late(2), (1, 1, 8)),
            (4, w(10, 20), on_time(0), (2, 1, 2)),
            (5, w(0, 10), late(3), (1, 1, 16)),
            (6, w(20, 30), on_time(0), (2, 2, 0)),
        ]
    );
}

#[test]
fn records_beyond_allowed_lateness_go_to_the_side_output_and_are_counted() {
    let trigger = Trigger::at_watermark()
        .with_allowed_lateness(20)
        .unwrap()
        .accumulating();
    let (seen, mut e) = late_scenario(trigger);
    let last_of_key_1 = seen.iter().rfind(|x| x.3 .0 == 1).map(|x| x.3);
    assert_eq!(last_of_key_1, Some((1, 4, 29)), "the record with v 32 is in no pane");
    let late_records = e.drain_late();
    assert_eq!(late_records.len(), 1);
    let r = &late_records[0];
    assert_eq!(r.operator, "window_aggregate-0");
    assert_eq!((r.partition, r.offset), (Some(0), Some(7)));
    assert_eq!((r.timestamp, r.watermark, r.window), (7, 29, Some(w(0, 10))));
    assert_eq!(e.metrics().late_records, 1);
    assert_eq!(e.metrics().records_in, 8);
    assert!(e.drain_late().is_empty(), "drained once");
    e.finish();
    assert!(e.drain_output().is_empty(), "the late record opened no window");
    assert_eq!(e.metrics().late_records, 1, "the counter keeps the total");
}

#[test]
fn without_allowed_lateness_a_record_in_a_fired_window_is_late() {
    let mut e = count_sum(10, Trigger::at_watermark()).engine();
    let s = e.partition("s0");
    e.process(s, 0, 0, ev(1, 9, 1)); // watermark 9: [0,10) fires
    e.process(s, 1, 0, ev(1, 9, 2)); // same ms, window already fired: late
    e.process(s, 2, 0, ev(1, 10, 4)); // next window: fine
    e.finish();
    assert_eq!(
        panes(&e.drain_output()),
        vec![(w(0, 10), on_time(0), (1, 1, 1)), (w(10, 20), on_time(0), (1, 1, 4))]
    );
    let late = e.drain_late();
    assert_eq!(late.len(), 1);
    assert_eq!((late[0].offset, late[0].timestamp), (Some(1), 9));
    assert_eq!(e.metrics().late_records, 1);
}

#[test]
fn a_record_too_late_for_some_sliding_windows_still_counts_in_the_open_ones() {
    let p = Pipeline::builder("sliding-late")
        .watermarks(ooo(0))
        .event_time(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key)
        .window(Windowing::sliding(10, 5).unwrap())
        .aggregate(Count, |k, _w, _p, n| (*k, n))
        .sink("out");
    let mut e = p.engine();
    let s = e.partition("s0");
    e.process(s, 0, 0, ev(1, 20, 0)); // watermark 20: [10,20) is closed
    e.process(s, 1, 0, ev(1, 17, 0)); // [10,20) closed, [15,25) open
    e.finish();
    assert_eq!(
        panes(&e.drain_output()),
        vec![(w(15, 25), on_time(0), (1, 2)), (w(20, 30), on_time(0), (1, 1)),]
    );
    assert!(e.drain_late().is_empty(), "it was not dropped: it counted in [15,25)");
}

#[test]
fn late_panes_by_processing_time_and_the_last_pending_late_data_flushed_at_garbage_collection() {
    let trigger = Trigger::at_watermark()
        .with_allowed_lateness(20)
        .unwrap()
        .with_late_firings(Firing::every_processing_ms(100))
        .accumulating();
    let mut e = count_sum(10, trigger).engine();
    let s = e.partition("s0");
    e.process(s, 0, 0, ev(1, 1, 1));
    e.process(s, 1, 0, ev(2, 12, 0)); // on-time pane
    assert_eq!(panes(&e.drain_output()), vec![(w(0, 10), on_time(0), (1, 1, 1))]);
    e.process(s, 2, 1_000, ev(1, 3, 2)); // late, arms 1100
    e.process(s, 3, 1_050, ev(1, 4, 4));
    assert!(e.drain_output().is_empty());
    e.advance_processing_time(1_100);
    assert_eq!(panes(&e.drain_output()), vec![(w(0, 10), late(1), (1, 3, 7))]);
    e.process(s, 4, 1_200, ev(1, 5, 8)); // arms 1300
    e.process(s, 5, 1_250, ev(2, 29, 0)); // watermark 29: garbage collection of [0,10)
    assert_eq!(
        panes(&e.drain_output()),
        vec![
            (w(10, 20), on_time(0), (2, 1, 0)),
            (w(0, 10), late(2), (1, 4, 15)),
            (w(20, 30), on_time(0), (2, 1, 0)),
        ],
        "pending late data of [0,10) is emitted before its state is dropped (in timer order)"
    );
    e.advance_processing_time(2_000);
    assert!(e.drain_output().is_empty());
}

#[test]
fn pane_indices_of_each_window_count_up_from_zero_without_gaps() {
    let trigger = Trigger::at_watermark()
        .with_early_firings(Firing::every_elements(2))
        .with_allowed_lateness(50)
        .unwrap()
        .accumulating();
    let mut e = count_sum(10, trigger).engine();
    let s = e.partition("s0");
    // three keys, timestamps cycling with disorder, watermark climbing
    let mut off = 0;
    for round in 0..30i64 {
        for key in 0..3u32 {
            let ts = round * 3 + i64::from(key) * 7 - (round % 4) * 9;
            e.process(s, off, off as i64, ev(key, ts.max(0), 1));
            off += 1;
        }
    }
    e.finish();
    let out = e.drain_output();
    assert!(out.len() > 20, "a scenario with many panes: {}", out.len());
    let mut next: BTreeMap<(u32, Window), u32> = BTreeMap::new();
    let mut timings = std::collections::BTreeSet::new();
    for (window, pane, (key, _, _)) in panes(&out) {
        let expected = next.entry((key, window)).or_insert(0);
        assert_eq!(pane.index, *expected, "key {key} window {window:?}");
        *expected += 1;
        timings.insert(pane.timing);
    }
    assert_eq!(
        timings.len(),
        3,
        "early, on-time and late panes all occurred: {timings:?}"
    );
}
