//! `deduplicate`: repeats of an id are dropped and counted, ids are forgotten after the horizon,
//! a value too late to be checked goes to the late output, and all of it survives a restore.

mod common;

use common::*;
use shardflow_engine::combine::Count;
use shardflow_engine::{CheckpointImage, Engine, Pipeline, Trigger, Windowing};

/// Events deduplicated by `v` (their id) with a horizon of `horizon` ms.
fn dedup(horizon: i64) -> Pipeline<Ev, Ev> {
    Pipeline::builder("dedup")
        .watermarks(ooo(0))
        .max_key_groups(16)
        .event_time(|e: &Ev| e.ts)
        .deduplicate(|e: &Ev| e.v, horizon)
        .sink("out")
}

#[test]
fn repeats_within_the_horizon_are_dropped_and_counted() {
    let mut e = dedup(10_000).engine();
    let (a, b) = (e.partition("a"), e.partition("b"));
    // The upstream wrote ids 1..=3, then (a redelivery) 2 and 3 again, through both shards.
    let input = [
        (a, ev(1, 100, 1)),
        (b, ev(2, 110, 2)),
        (a, ev(3, 120, 3)),
        (b, ev(2, 110, 2)),
        (a, ev(3, 120, 3)),
    ];
    for (offset, (p, x)) in input.into_iter().enumerate() {
        e.process(p, offset as u64, 0, x);
    }
    e.finish();
    let out: Vec<i64> = e.drain_output().iter().map(|o| o.value.v).collect();
    assert_eq!(out, vec![1, 2, 3]);
    assert_eq!(e.metrics().duplicates_dropped, 2);
    assert_eq!(e.metrics().late_records, 0);
    assert!(e.drain_late().is_empty());
}

#[test]
fn an_id_is_forgotten_once_the_watermark_passes_its_horizon_and_a_late_value_is_not_lost_silently() {
    let mut e = dedup(1_000).engine();
    let p = e.partition("p");
    e.process(p, 0, 0, ev(1, 100, 7));
    e.process(p, 1, 0, ev(1, 5_000, 8)); // the watermark passes 100 + 1000: id 7 is forgotten
                                         // A repeat of id 7 with its original time cannot be checked any more: late output.
    e.process(p, 2, 0, ev(1, 100, 7));
    // id 7 again at a time inside the horizon of the watermark: a new value.
    e.process(p, 3, 0, ev(1, 4_500, 7));
    // id 8 again within its horizon: a repeat.
    e.process(p, 4, 0, ev(1, 5_000, 8));
    e.finish();
    let out: Vec<(i64, i64)> = e.drain_output().iter().map(|o| (o.value.ts, o.value.v)).collect();
    assert_eq!(out, vec![(100, 7), (5_000, 8), (4_500, 7)]);
    let late = e.drain_late();
    assert_eq!(late.len(), 1);
    assert_eq!((late[0].timestamp, late[0].offset), (100, Some(2)));
    assert_eq!(late[0].operator, "deduplicate-0");
    let m = e.metrics();
    assert_eq!((m.duplicates_dropped, m.late_records), (1, 1));
}

#[test]
fn the_state_holds_only_ids_within_the_horizon() {
    let mut e = dedup(1_000).engine();
    let p = e.partition("p");
    for i in 0..100 {
        e.process(p, i as u64, 0, ev(1, i * 100, i));
    }
    let snap = e.snapshot_full().expect("snapshot");
    let bytes: usize = snap
        .operators
        .iter()
        .flat_map(|o| &o.key_groups)
        .map(|g| g.bytes.len())
        .sum();
    e.finish();
    let after = e.snapshot().expect("snapshot after the end");
    let remaining: usize = after
        .operators
        .iter()
        .flat_map(|o| &o.key_groups)
        .map(|g| g.bytes.len())
        .sum();
    assert!(bytes > 0);
    assert_eq!(remaining, 0, "every id forgotten once the watermark reached the end");
    // 100 ids over 9900 ms, watermark 9900, horizon 1000 ms: the ids with ts + 1000 > 9900 are
    // remembered, the others are forgotten (and their repeats go to the late output).
    let mut restored = Engine::restore(&dedup(1_000), &CheckpointImage::new(snap)).expect("restore");
    let q = restored.partition("p");
    let repeats_remembered = (0..100).filter(|&i| {
        let before = restored.metrics().duplicates_dropped;
        restored.process(q, 1_000 + i as u64, 0, ev(1, i * 100, i));
        restored.metrics().duplicates_dropped > before
    });
    assert_eq!(repeats_remembered.count(), 10, "ids 90..=99");
    assert_eq!(
        restored.drain_late().len(),
        90,
        "the repeats of forgotten ids are late, not lost"
    );
    assert!(restored.drain_output().is_empty());
}

#[test]
fn a_restored_engine_still_drops_repeats_and_keeps_its_count() {
    let pipeline = dedup(60_000);
    let mut e = pipeline.engine();
    let p = e.partition("p");
    e.process(p, 0, 0, ev(1, 1_000, 1));
    e.process(p, 1, 0, ev(1, 1_000, 1));
    e.process(p, 2, 0, ev(1, 2_000, 2));
    let base = e.snapshot().expect("snapshot");
    assert_eq!(e.drain_output().len(), 2);

    let mut r = Engine::restore(&pipeline, &CheckpointImage::new(base)).expect("restore");
    assert_eq!(r.metrics().duplicates_dropped, 1, "the count survives the restore");
    let p = r.partition("p");
    r.process(p, 3, 0, ev(1, 2_000, 2));
    r.process(p, 4, 0, ev(1, 1_000, 1));
    r.process(p, 5, 0, ev(1, 3_000, 3));
    r.finish();
    let out: Vec<i64> = r.drain_output().iter().map(|o| o.value.v).collect();
    assert_eq!(out, vec![3]);
    assert_eq!(r.metrics().duplicates_dropped, 3);
}

#[test]
fn window_counts_after_deduplication_equal_those_of_one_delivery() {
    let counts = |input: &[Ev]| {
        let pipeline = Pipeline::builder("dedup-count")
            .watermarks(ooo(0))
            .event_time(|e: &Ev| e.ts)
            .deduplicate(|e: &Ev| e.v, 60_000)
            .key_by(|e: &Ev| e.key)
            .window(Windowing::tumbling(1_000).unwrap())
            .trigger(Trigger::at_watermark())
            .aggregate(Count, |k, w, _, n| (*k, w.start, n))
            .sink("counts");
        let mut e = pipeline.engine();
        let p = e.partition("p");
        for (i, x) in input.iter().enumerate() {
            e.process(p, i as u64, 0, x.clone());
        }
        e.finish();
        let mut out: Vec<_> = e.drain_output().into_iter().map(|o| o.value).collect();
        out.sort();
        out
    };
    let once: Vec<Ev> = (0..40).map(|i| ev((i % 3) as u32, i * 50, i)).collect();
    // Every record delivered twice, the second time a batch later.
    let mut twice = once.clone();
    for chunk in once.chunks(7) {
        twice.extend_from_slice(chunk);
    }
    twice.sort_by_key(|e| e.ts);
    assert_eq!(counts(&twice), counts(&once));
    assert_eq!(counts(&once).iter().map(|(_, _, n)| n).sum::<u64>(), 40);
}
