//! `Engine::adopt`: children of a split or merge take over their parents' state, filtered by key,
//! and finish like one engine over the whole input.

use shardflow_engine::combine::Count;
use shardflow_engine::{CheckpointImage, Engine, Pipeline, Trigger, WatermarkStrategy, Windowing};

type Event = (u64, i64);
type Row = (u64, i64, u64);

fn pipeline() -> Pipeline<Event, Row> {
    Pipeline::builder("counts")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
        .max_key_groups(16)
        .event_time(|e: &Event| e.1)
        .key_by(|e| e.0)
        .window(Windowing::tumbling(100).unwrap())
        .trigger(Trigger::at_watermark())
        .aggregate(Count, |k, w, _, n| (*k, w.start, n))
        .sink("counts")
}

fn run(engine: &mut Engine<Event, Row>, partition: &str, input: &[Event], out: &mut Vec<Row>) {
    let p = engine.partition(partition);
    for (i, e) in input.iter().enumerate() {
        engine.process(p, i as u64, 0, *e);
    }
    out.extend(engine.drain_output().into_iter().map(|o| o.value));
}

fn is_even(key: &[u8]) -> bool {
    postcard::from_bytes::<u64>(key).is_ok_and(|k| k % 2 == 0)
}

#[test]
fn split_children_keeping_their_keys_finish_like_one_engine() {
    let p = pipeline();
    let parent_input: Vec<Event> = (0..40).map(|i| (i % 6, i as i64 * 5)).collect();
    let child_input = |even: bool| -> Vec<Event> {
        (0..40)
            .map(|i| (i % 6, 200 + i as i64 * 5))
            .filter(|e| (e.0 % 2 == 0) == even)
            .collect()
    };
    let mut out = Vec::new();
    let mut parent = p.engine();
    run(&mut parent, "parent", &parent_input, &mut out);
    let image = CheckpointImage::new(parent.snapshot_full().unwrap());
    for even in [true, false] {
        let keep = move |k: &[u8]| is_even(k) == even;
        let mut child = Engine::adopt(&p, std::slice::from_ref(&image), &keep).unwrap();
        assert!(
            child.watermark() >= parent.watermark(),
            "the watermark never moves back"
        );
        run(
            &mut child,
            if even { "child-a" } else { "child-b" },
            &child_input(even),
            &mut out,
        );
        // Close the windows up to the end of the input in each child.
        run(
            &mut child,
            if even { "child-a" } else { "child-b" },
            &[(if even { 100 } else { 101 }, 10_000)],
            &mut out,
        );
    }
    let mut reference = p.engine();
    let mut expected = Vec::new();
    let mut all = parent_input.clone();
    all.extend(child_input(true));
    all.extend(child_input(false));
    all.push((100, 10_000));
    // One partition in event-time order: no record is late there either.
    all.sort_by_key(|e| e.1);
    run(&mut reference, "one", &all, &mut expected);
    out.sort();
    expected.sort();
    assert!(!expected.is_empty());
    assert_eq!(out, expected);
}

#[test]
fn a_merge_child_holds_both_parents_keys_and_the_larger_watermark() {
    let p = pipeline();
    let mut out = Vec::new();
    let mut left = p.engine();
    run(&mut left, "left", &[(0, 10), (2, 20), (0, 150)], &mut out);
    let mut right = p.engine();
    run(&mut right, "right", &[(1, 30), (3, 120), (1, 160)], &mut out);
    let images = [
        CheckpointImage::new(left.snapshot_full().unwrap()),
        CheckpointImage::new(right.snapshot_full().unwrap()),
    ];
    let child = Engine::adopt(&p, &images, &|_| true).unwrap();
    assert_eq!(child.watermark(), left.watermark().max(right.watermark()));
    let mut child = child;
    child.finish();
    out.extend(child.drain_output().into_iter().map(|o| o.value));
    out.sort();
    assert_eq!(
        out,
        vec![(0, 0, 1), (0, 100, 1), (1, 0, 1), (1, 100, 1), (2, 0, 1), (3, 100, 1)]
    );
}
