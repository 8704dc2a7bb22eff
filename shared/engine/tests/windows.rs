//! Window assignment and firing: tumbling, sliding (overlapping), session (merging, out of
//! order) and global windows, with exact panes and values.

mod common;

use common::*;
use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::window::{LateSessionRule, SessionWindows};
use shardflow_engine::{Firing, Pipeline, Trigger, Window, Windowing, MAX_TIMESTAMP, MIN_TIMESTAMP};

/// `(key, count, sum of v)` per key and window, fired by `trigger`.
fn count_sum(windowing: Windowing, trigger: Trigger, out_of_orderness: i64) -> Pipeline<Ev, (u32, u64, i64)> {
    Pipeline::builder("windows")
        .watermarks(ooo(out_of_orderness))
        .event_time(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key)
        .window(windowing)
        .trigger(trigger)
        .aggregate((Count, Sum::of(|e: &Ev| e.v)), |k, _w, _p, (n, s)| (*k, n, s))
        .sink("out")
}

#[test]
fn tumbling_window_fires_once_when_the_watermark_reaches_its_last_millisecond() {
    let p = count_sum(Windowing::tumbling(10).unwrap(), Trigger::at_watermark(), 0);
    let mut e = p.engine();
    let s = e.partition("s0");
    e.process(s, 0, 0, ev(1, 1, 10));
    e.process(s, 1, 0, ev(2, 5, 20));
    e.process(s, 2, 0, ev(1, 8, 30));
    assert!(e.drain_output().is_empty(), "watermark 8 < 9, the window's last ms");
    e.process(s, 3, 0, ev(2, 9, 40));
    let out = e.drain_output();
    assert_eq!(
        panes(&out),
        vec![(w(0, 10), on_time(0), (1, 2, 40)), (w(0, 10), on_time(0), (2, 2, 60)),],
        "ts 9 belongs to [0, 10) and watermark 9 fires it"
    );
    assert!(
        out.iter().all(|o| o.timestamp == 9),
        "a window result carries its last ms"
    );
    e.process(s, 4, 0, ev(1, 10, 5));
    e.process(s, 5, 0, ev(1, 19, 6));
    assert_eq!(panes(&e.drain_output()), vec![(w(10, 20), on_time(0), (1, 2, 11))]);
    e.process(s, 6, 0, ev(1, 25, 7));
    assert!(e.drain_output().is_empty());
    e.finish();
    assert_eq!(panes(&e.drain_output()), vec![(w(20, 30), on_time(0), (1, 1, 7))]);
    assert_eq!(e.metrics().results_out, 4);
    assert_eq!(e.metrics().late_records, 0);
}

#[test]
fn sliding_windows_count_a_record_in_every_overlapping_window() {
    let p = count_sum(Windowing::sliding(10, 5).unwrap(), Trigger::at_watermark(), 0);
    let mut e = p.engine();
    let s = e.partition("s0");
    // ts 3 -> [-5,5) [0,10); ts 7 -> [0,10) [5,15); ts 12 -> [5,15) [10,20)
    e.process(s, 0, 0, ev(1, 3, 1));
    assert!(e.drain_output().is_empty());
    e.process(s, 1, 0, ev(1, 7, 10));
    assert_eq!(panes(&e.drain_output()), vec![(w(-5, 5), on_time(0), (1, 1, 1))]);
    e.process(s, 2, 0, ev(1, 12, 100));
    assert_eq!(panes(&e.drain_output()), vec![(w(0, 10), on_time(0), (1, 2, 11))]);
    e.finish();
    assert_eq!(
        panes(&e.drain_output()),
        vec![
            (w(5, 15), on_time(0), (1, 2, 110)),
            (w(10, 20), on_time(0), (1, 1, 100)),
        ]
    );
}

#[test]
fn sliding_windows_with_size_not_a_multiple_of_slide_fire_each_window_with_its_records() {
    // size 5, slide 2: ts 4 -> [0,5) [2,7) [4,9); ts 5 -> [2,7) [4,9)
    let p = count_sum(Windowing::sliding(5, 2).unwrap(), Trigger::at_watermark(), 100);
    let mut e = p.engine();
    let s = e.partition("s0");
    e.process(s, 0, 0, ev(1, 4, 1));
    e.process(s, 1, 0, ev(1, 5, 10));
    e.finish();
    assert_eq!(
        panes(&e.drain_output()),
        vec![
            (w(0, 5), on_time(0), (1, 1, 1)),
            (w(2, 7), on_time(0), (1, 2, 11)),
            (w(4, 9), on_time(0), (1, 2, 11)),
        ]
    );
}

fn session_input() -> Vec<Ev> {
    vec![
        ev(1, 20, 1),    // [20,30)
        ev(1, 0, 10),    // [0,10)
        ev(1, 9, 100),   // [9,19) merges with [0,10) -> [0,19)
        ev(1, 15, 1000), // [15,25) bridges [0,19) and [20,30) -> [0,30)
        ev(1, 45, 5),    // [45,55): 15 ms after the last one, a new session
        ev(2, 50, 7),    // another key: its own session even though it overlaps key 1's
    ]
}

#[test]
fn session_windows_merge_when_an_out_of_order_record_bridges_them() {
    let p = count_sum(Windowing::session(10).unwrap(), Trigger::at_watermark(), 100);
    let mut e = p.engine();
    let s = e.partition("s0");
    for (i, x) in session_input().into_iter().enumerate() {
        e.process(s, i as u64, 0, x);
    }
    assert!(e.drain_output().is_empty(), "watermark is below every session's end");
    e.finish();
    assert_eq!(
        panes(&e.drain_output()),
        vec![
            (w(0, 30), on_time(0), (1, 4, 1111)),
            (w(45, 55), on_time(0), (1, 1, 5)),
            (w(50, 60), on_time(0), (2, 1, 7)),
        ]
    );
}

#[test]
fn session_windows_are_the_same_whatever_the_arrival_order() {
    let input = session_input();
    let expected = {
        let p = count_sum(Windowing::session(10).unwrap(), Trigger::at_watermark(), 1_000);
        let mut e = p.engine();
        let s = e.partition("s0");
        for (i, x) in input.iter().enumerate() {
            e.process(s, i as u64, 0, x.clone());
        }
        e.finish();
        panes(&e.drain_output())
    };
    // every rotation and the reverse of the input
    let mut orders: Vec<Vec<Ev>> = (0..input.len())
        .map(|r| {
            let mut v = input.clone();
            v.rotate_left(r);
            v
        })
        .collect();
    orders.push(input.iter().rev().cloned().collect());
    for order in orders {
        let p = count_sum(Windowing::session(10).unwrap(), Trigger::at_watermark(), 1_000);
        let mut e = p.engine();
        let s = e.partition("s0");
        for (i, x) in order.iter().enumerate() {
            e.process(s, i as u64, 0, x.clone());
        }
        e.finish();
        assert_eq!(panes(&e.drain_output()), expected, "order {order:?}");
    }
}

#[test]
fn session_window_fires_when_the_watermark_passes_the_end_of_the_gap() {
    let p = count_sum(Windowing::session(10).unwrap(), Trigger::at_watermark(), 0);
    let mut e = p.engine();
    let s = e.partition("s0");
    e.process(s, 0, 0, ev(1, 0, 1));
    e.process(s, 1, 0, ev(1, 5, 2)); // session [0,15)
    e.process(s, 2, 0, ev(2, 13, 3)); // watermark 13
    assert!(e.drain_output().is_empty());
    e.process(s, 3, 0, ev(2, 14, 4)); // watermark 14 = last ms of [0,15)
    assert_eq!(panes(&e.drain_output()), vec![(w(0, 15), on_time(0), (1, 2, 3))]);
}

#[test]
fn session_windows_that_only_touch_do_not_merge() {
    let p = count_sum(Windowing::session(1).unwrap(), Trigger::at_watermark(), 100);
    let mut e = p.engine();
    let s = e.partition("s0");
    e.process(s, 0, 0, ev(1, 0, 1)); // [0, 1)
    e.process(s, 1, 0, ev(1, 1, 2)); // [1, 2): touches [0, 1), shares no millisecond
    e.process(s, 2, 0, ev(1, 2, 4)); // [2, 3)
    e.finish();
    assert_eq!(
        panes(&e.drain_output()),
        vec![
            (w(0, 1), on_time(0), (1, 1, 1)),
            (w(1, 2), on_time(0), (1, 1, 2)),
            (w(2, 3), on_time(0), (1, 1, 4))
        ],
        "Beam's rule; Flink would merge them into [0, 3)"
    );
}

/// A pane of `count_sum`: window, pane, `(key, count, sum)`.
type Pane = (Window, shardflow_engine::PaneInfo, (u32, u64, i64));

/// Sessions of gap 20 with 20 ms of allowed lateness, accumulating, watermark = latest time:
/// key 1 opens [25, 45), key 2 moves the watermark to 50 (past the lateness of [9, 29), not of
/// [25, 45)), then key 1 at 9, then key 1 at -30 ([-30, -10) overlaps no session).
fn late_session_panes(sessions: SessionWindows) -> (Vec<Pane>, u64) {
    let trigger = Trigger::at_watermark()
        .with_allowed_lateness(20)
        .unwrap()
        .accumulating();
    let mut e = count_sum(Windowing::Session(sessions), trigger, 0).engine();
    let s = e.partition("s0");
    for (i, x) in [ev(1, 25, 1), ev(2, 50, 0), ev(1, 9, 2), ev(1, -30, 4)]
        .into_iter()
        .enumerate()
    {
        e.process(s, i as u64, 0, x);
    }
    let out = panes(&e.drain_output())
        .into_iter()
        .filter(|(_, _, (k, _, _))| *k == 1)
        .collect();
    (out, e.metrics().late_records)
}

#[test]
fn a_late_session_element_is_checked_against_its_own_window_before_merging_by_default() {
    let sessions = SessionWindows::new(20).unwrap();
    assert_eq!(sessions.late_rule(), LateSessionRule::CheckOwnWindow);
    let (panes, late) = late_session_panes(sessions);
    assert_eq!(panes, vec![(w(25, 45), on_time(0), (1, 1, 1))]);
    assert_eq!(
        late, 2,
        "9 is dropped although [9, 29) overlaps [25, 45), which is still open"
    );
}

#[test]
fn with_the_merge_first_rule_a_late_element_that_merges_into_a_live_session_is_kept() {
    let sessions = SessionWindows::new(20).unwrap().late_elements_merge_first();
    assert_eq!(sessions.late_rule(), LateSessionRule::MergeFirst);
    let (panes, late_records) = late_session_panes(sessions);
    assert_eq!(
        panes,
        vec![(w(25, 45), on_time(0), (1, 1, 1)), (w(9, 45), late(1), (1, 2, 3))],
        "9 extends the session and fires a late pane"
    );
    assert_eq!(
        late_records, 1,
        "-30 merges into nothing open and is late under either rule"
    );
}

#[test]
fn global_window_fires_at_finish() {
    let p = count_sum(Windowing::global(), Trigger::at_watermark(), 0);
    let mut e = p.engine();
    let s = e.partition("s0");
    for (i, ts) in [5, 1_000, 1_000_000].into_iter().enumerate() {
        e.process(s, i as u64, 0, ev(1, ts, ts));
    }
    e.process(s, 3, 0, ev(2, 7, 1));
    assert!(
        e.drain_output().is_empty(),
        "the global window never ends before the input does"
    );
    e.finish();
    let out = e.drain_output();
    assert_eq!(
        panes(&out),
        vec![
            (Window::GLOBAL, on_time(0), (1, 3, 1_001_005)),
            (Window::GLOBAL, on_time(0), (2, 1, 1)),
        ]
    );
    assert!(out.iter().all(|o| o.timestamp == MAX_TIMESTAMP));
    assert_eq!(Window::GLOBAL.start, MIN_TIMESTAMP);
}

#[test]
fn global_window_fires_early_panes_by_element_count() {
    let run = |trigger: Trigger| {
        let p = count_sum(Windowing::global(), trigger, 0);
        let mut e = p.engine();
        let s = e.partition("s0");
        let mut seen = Vec::new();
        for i in 0..5u64 {
            e.process(s, i, 0, ev(1, i as i64, 1 << i));
            seen.extend(panes(&e.drain_output()).into_iter().map(|(w, p, v)| (i, w, p, v)));
        }
        e.finish();
        seen.extend(panes(&e.drain_output()).into_iter().map(|(w, p, v)| (99, w, p, v)));
        seen
    };
    let g = Window::GLOBAL;
    assert_eq!(
        run(Trigger::at_watermark()
            .with_early_firings(Firing::every_elements(2))
            .accumulating()),
        vec![
            (1, g, early(0), (1, 2, 3)),
            (3, g, early(1), (1, 4, 15)),
            (99, g, on_time(2), (1, 5, 31)),
        ],
        "accumulating: each pane holds everything so far"
    );
    assert_eq!(
        run(Trigger::at_watermark()
            .with_early_firings(Firing::every_elements(2))
            .discarding()),
        vec![
            (1, g, early(0), (1, 2, 3)),
            (3, g, early(1), (1, 2, 12)),
            (99, g, on_time(2), (1, 1, 16)),
        ],
        "discarding: each pane holds what arrived since the previous one"
    );
}
