//! Joins: the 2-way and the 100-way window join on a shared key, the interval join (bounds, both
//! arrival orders, cleanup by watermark, checked against a brute-force oracle), and the lookup
//! join (inner and left).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::*;
use proptest::prelude::*;
use shardflow_engine::{join, IntervalJoinSide, LookupTable, Pipeline, Window, Windowing, MIN_TIMESTAMP};

/// A window join of `sides` inputs in tumbling windows of `size`: one row per combination that
/// takes one element of every input, as `(key, window start, the rows' values in input order)`.
fn window_join(name: &str, sides: usize, size: i64) -> Pipeline<Ev, (u32, i64, Vec<i64>)> {
    Pipeline::builder(name)
        .watermarks(ooo(0))
        .max_key_groups(32)
        .event_time(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key)
        .window(Windowing::tumbling(size).unwrap())
        .join(
            sides,
            |e: &Ev| usize::from(e.side),
            |k: &u32, w: &Window, lists: &[Vec<Ev>]| {
                join::inner(lists)
                    .into_iter()
                    .map(|row| (*k, w.start, row.iter().map(|e| e.v).collect()))
                    .collect()
            },
        )
        .sink("joined")
}

#[test]
fn two_way_window_join_emits_every_pair_of_a_key_in_a_window() {
    let mut e = window_join("orders-payments", 2, 10).engine();
    let s = e.partition("s0");
    let input = [
        ev_side(1, 3, 7, 1),   // a payment before its order
        ev_side(1, 1, 100, 0), // order of key 1
        ev_side(1, 4, 8, 1),   // a second payment
        ev_side(2, 5, 200, 0), // an order without payment
        ev_side(3, 6, 9, 1),   // a payment without order
        ev_side(1, 12, 300, 0),
    ];
    for (i, x) in input.into_iter().enumerate() {
        e.process(s, i as u64, 0, x);
    }
    let out = e.drain_output();
    assert_eq!(
        panes(&out),
        vec![
            (w(0, 10), on_time(0), (1, 0, vec![100, 7])),
            (w(0, 10), on_time(0), (1, 0, vec![100, 8])),
        ]
    );
    assert_ne!(out[0].id, out[1].id, "two rows of one pane have distinct ids");
    e.finish();
    assert!(e.drain_output().is_empty(), "[10,20) has an order and no payment");
}

#[test]
fn hundred_way_window_join_of_100_streams_on_a_shared_key() {
    const STREAMS: usize = 100;
    let mut e = window_join("hundred", STREAMS, 10).engine();
    let parts: Vec<_> = (0..STREAMS).map(|i| e.partition(&format!("stream-{i:03}"))).collect();
    let value = |i: usize, key: u32| (i * 1_000) as i64 + i64::from(key);
    let mut offsets = vec![0u64; STREAMS];
    let mut feed = |e: &mut shardflow_engine::Engine<Ev, _>, i: usize, x: Ev| {
        e.process(parts[i], offsets[i], 0, x);
        offsets[i] += 1;
    };
    // window [0,10): every stream sends keys 0..4, except stream 57, which misses key 3
    for key in 0..4u32 {
        for i in 0..STREAMS {
            if (i, key) != (57, 3) {
                feed(&mut e, i, ev_side(key, (i % 9) as i64, value(i, key), i as u8));
            }
        }
    }
    assert!(e.drain_output().is_empty());
    // every stream moves past the window, stream 99 (at ts 0) last
    for i in 0..STREAMS {
        feed(&mut e, i, ev_side(9, 10 + (i % 10) as i64, value(i, 9), i as u8));
        if i + 1 < STREAMS {
            assert_eq!(
                e.pending_output(),
                0,
                "stream 99 still holds the watermark after stream {i}"
            );
        }
    }
    assert_eq!(e.watermark(), 10);
    let row = |key: u32| (0..STREAMS).map(|i| value(i, key)).collect::<Vec<i64>>();
    let out = e.drain_output();
    assert_eq!(
        panes(&out),
        vec![
            (w(0, 10), on_time(0), (0, 0, row(0))),
            (w(0, 10), on_time(0), (1, 0, row(1))),
            (w(0, 10), on_time(0), (2, 0, row(2))),
        ],
        "key 3 lacks stream 57: no row"
    );
    e.finish();
    assert_eq!(panes(&e.drain_output()), vec![(w(10, 20), on_time(0), (9, 10, row(9)))]);
    assert_eq!(e.metrics().records_in, 499);
    assert_eq!(e.metrics().late_records, 0);
}

type Pair = (u32, i64, i64, i64, i64);

/// Left side 0, right side 1, anything else neither; `(key, left ts, left v, right ts, right v)`.
fn interval_join(out_of_orderness: i64, lower: i64, upper: i64) -> Pipeline<Ev, Pair> {
    Pipeline::builder("interval")
        .watermarks(ooo(out_of_orderness))
        .max_key_groups(16)
        .event_time(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key)
        .interval_join(
            |e: &Ev| match e.side {
                0 => IntervalJoinSide::Left,
                1 => IntervalJoinSide::Right,
                _ => IntervalJoinSide::Neither,
            },
            lower,
            upper,
            |k, l, r| (*k, l.ts, l.v, r.ts, r.v),
        )
        .sink("pairs")
}

#[test]
fn interval_join_matches_within_inclusive_bounds_when_the_left_side_comes_first() {
    // right.ts in [left.ts - 5, left.ts + 10]
    let mut e = interval_join(1_000, -5, 10).engine();
    let s = e.partition("s0");
    let input = [
        ev_side(1, 100, 1, 0),
        ev_side(1, 95, 2, 1),  // lower bound: match
        ev_side(1, 94, 3, 1),  // below: no
        ev_side(1, 110, 4, 1), // upper bound: match
        ev_side(1, 111, 5, 1), // above: no
        ev_side(1, 100, 6, 1), // same time: match
        ev_side(2, 100, 7, 1), // other key: no
    ];
    for (i, x) in input.into_iter().enumerate() {
        e.process(s, i as u64, 0, x);
    }
    let out = e.drain_output();
    assert_eq!(
        values(&out),
        vec![(1, 100, 1, 95, 2), (1, 100, 1, 110, 4), (1, 100, 1, 100, 6)]
    );
    assert_eq!(
        out.iter().map(|o| o.timestamp).collect::<Vec<_>>(),
        vec![100, 110, 100],
        "a pair carries the later timestamp"
    );
    assert!(out.iter().all(|o| o.pane.is_none()));
}

#[test]
fn interval_join_matches_within_inclusive_bounds_when_the_right_side_comes_first() {
    let mut e = interval_join(1_000, -5, 10).engine();
    let s = e.partition("s0");
    let input = [
        ev_side(2, 200, 1, 1),
        ev_side(2, 190, 2, 0), // 200 in [185, 200]: match
        ev_side(2, 189, 3, 0), // [184, 199]: no
        ev_side(2, 205, 4, 0), // [200, 215]: match
        ev_side(2, 206, 5, 0), // [201, 216]: no
        ev_side(3, 200, 6, 0), // other key
    ];
    for (i, x) in input.into_iter().enumerate() {
        e.process(s, i as u64, 0, x);
    }
    assert_eq!(
        values(&e.drain_output()),
        vec![(2, 190, 2, 200, 1), (2, 205, 4, 200, 1)]
    );
}

/// Number of key groups the interval join holds (from a full snapshot).
fn buffered_groups(e: &mut shardflow_engine::Engine<Ev, Pair>) -> usize {
    let cp = e.snapshot_full().unwrap();
    cp.operators
        .iter()
        .filter(|o| o.operator.starts_with("interval_join"))
        .map(|o| o.key_groups.len())
        .sum()
}

#[test]
fn interval_join_drops_buffered_records_once_the_watermark_rules_out_any_partner() {
    let mut e = interval_join(0, -5, 10).engine();
    let s = e.partition("s0");
    let tick = |e: &mut shardflow_engine::Engine<Ev, Pair>, off: u64, ts: i64| {
        e.process(s, off, 0, ev_side(99, ts, 0, 2)); // side "neither": only moves the watermark
    };
    e.process(s, 0, 0, ev_side(1, 100, 1, 0)); // left: partners up to 110
    tick(&mut e, 1, 109);
    assert_eq!(buffered_groups(&mut e), 1);
    e.process(s, 2, 0, ev_side(1, 110, 2, 1)); // right at 110 > watermark 109: matches
    assert_eq!(values(&e.drain_output()), vec![(1, 100, 1, 110, 2)]);
    tick(&mut e, 3, 110); // the left one stays: a right one at 110 is not late yet
    e.process(s, 4, 0, ev_side(1, 110, 3, 1)); // at the watermark: joined (Flink's rule)
    assert_eq!(values(&e.drain_output()), vec![(1, 100, 1, 110, 3)]);
    e.process(s, 5, 0, ev_side(1, 109, 4, 1)); // behind the watermark: late
    let late = e.drain_late();
    assert_eq!(late.len(), 1);
    assert_eq!((late[0].timestamp, late[0].watermark, late[0].window), (109, 110, None));
    tick(&mut e, 6, 111); // left 100 expires (100 + 10 < 111)
    e.process(s, 7, 0, ev_side(1, 111, 5, 0)); // left at 111: both rights at 110 in [106, 121]
    assert_eq!(
        values(&e.drain_output()),
        vec![(1, 111, 5, 110, 2), (1, 111, 5, 110, 3)],
        "and not with left 100, which is gone"
    );
    tick(&mut e, 8, 115);
    assert_eq!(
        buffered_groups(&mut e),
        1,
        "the rights at 110 stay while the watermark is at 115, left 111 until 121"
    );
    tick(&mut e, 9, 121);
    assert_eq!(
        buffered_groups(&mut e),
        1,
        "left 111 stays while the watermark is at 121"
    );
    tick(&mut e, 10, 122);
    assert_eq!(buffered_groups(&mut e), 0, "nothing can match any more: state is empty");
    assert_eq!(e.metrics().late_records, 1);
}

#[test]
fn interval_join_treats_a_record_at_the_watermark_as_on_time_and_only_one_behind_it_as_late() {
    let mut e = interval_join(0, 0, 0).engine();
    let s = e.partition("s0");
    e.process(s, 0, 0, ev_side(1, 50, 1, 0)); // watermark 50
    e.process(s, 1, 0, ev_side(1, 50, 2, 1)); // ts == watermark: joined
    e.process(s, 2, 0, ev_side(1, 49, 3, 1)); // ts < watermark: late
    assert_eq!(values(&e.drain_output()), vec![(1, 50, 1, 50, 2)]);
    let late = e.drain_late();
    assert_eq!(late.iter().map(|l| l.timestamp).collect::<Vec<_>>(), vec![49]);
}

/// `default` cases, or `PROPTEST_CASES` when set.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(64), ..ProptestConfig::default() })]

    /// Every pair of non-late records of a key within the bounds is emitted exactly once, however
    /// the records arrive — so cleanup never drops a record that could still match.
    #[test]
    fn interval_join_emits_exactly_the_pairs_a_brute_force_join_finds(
        lower in -20i64..5,
        width in 0i64..25,
        disorder in 0i64..30,
        records in prop::collection::vec((0u32..3, 0i64..200, 0u8..2), 1..60),
    ) {
        let upper = lower + width;
        let mut e = interval_join(disorder, lower, upper).engine();
        let s = e.partition("s0");
        let mut kept = Vec::new();
        for (i, (key, ts, side)) in records.into_iter().enumerate() {
            let late = ts < e.watermark() && e.watermark() > MIN_TIMESTAMP;
            let x = ev_side(key, ts, i as i64, side);
            if !late {
                kept.push(x.clone());
            }
            e.process(s, i as u64, 0, x);
        }
        e.finish();
        let mut got: Vec<Pair> = values(&e.drain_output());
        let mut expected = Vec::new();
        for l in kept.iter().filter(|x| x.side == 0) {
            for r in kept.iter().filter(|x| x.side == 1) {
                if l.key == r.key && l.ts + lower <= r.ts && r.ts <= l.ts + upper {
                    expected.push((l.key, l.ts, l.v, r.ts, r.v));
                }
            }
        }
        got.sort();
        expected.sort();
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn lookup_join_inner_drops_records_without_a_row_and_left_keeps_them() {
    let table: Arc<dyn LookupTable<u32, String>> =
        Arc::new(BTreeMap::from([(1, "alice".to_string()), (3, "carol".to_string())]));
    let inner = Pipeline::builder("lookup-inner")
        .watermarks(ooo(0))
        .event_time(|e: &Ev| e.ts)
        .lookup_join(table.clone(), |e: &Ev| e.key, |e, row| row.map(|name| (e.v, name)))
        .sink("enriched");
    let left = Pipeline::builder("lookup-left")
        .watermarks(ooo(0))
        .event_time(|e: &Ev| e.ts)
        .lookup_join(table, |e: &Ev| e.key, |e, row| Some((e.v, row)))
        .sink("enriched");
    let input = [ev(1, 10, 100), ev(2, 11, 200), ev(3, 12, 300)];

    let mut e = inner.engine();
    let s = e.partition("s0");
    for (i, x) in input.iter().enumerate() {
        e.process(s, i as u64, 0, x.clone());
    }
    let out = e.drain_output();
    assert_eq!(
        values(&out),
        vec![(100, "alice".to_string()), (300, "carol".to_string())]
    );
    assert_eq!(out.iter().map(|o| o.timestamp).collect::<Vec<_>>(), vec![10, 12]);

    let mut e = left.engine();
    let s = e.partition("s0");
    for (i, x) in input.iter().enumerate() {
        e.process(s, i as u64, 0, x.clone());
    }
    let out = e.drain_output();
    assert_eq!(
        values(&out),
        vec![
            (100, Some("alice".to_string())),
            (200, None),
            (300, Some("carol".to_string()))
        ]
    );
    let ids: BTreeSet<_> = out.iter().map(|o| o.id).collect();
    assert_eq!(ids.len(), 3);
}
