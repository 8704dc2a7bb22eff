//! `sink_with_buckets`: what a closed event-time bucket holds does not depend on batching,
//! restores or where the engine ran, and a merged child unites its parents' open buckets.

use shardflow_engine::{CheckpointImage, ClosedBucket, Engine, EventTimeBuckets, Pipeline, WatermarkStrategy};

/// (key, event time): a window-free pipeline whose results are its inputs, in 1 s buckets.
fn pipeline() -> Pipeline<(u32, i64), (u32, i64)> {
    Pipeline::builder("buckets")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(500).expect("non-negative"))
        .event_time(|r: &(u32, i64)| r.1)
        .sink_with_buckets("out", EventTimeBuckets::new(1_000).expect("positive"))
}

/// Out-of-order inputs over about 10 s of event time.
fn inputs() -> Vec<(u32, i64)> {
    (0..200u32)
        .map(|i| (i, i64::from(i) * 50 - if i % 7 == 0 { 400 } else { 0 }))
        .collect()
}

type Summary = Vec<(i64, i64, Vec<(u128, i64, (u32, i64))>)>;

fn summary(buckets: &[ClosedBucket<(u32, i64)>]) -> Summary {
    buckets
        .iter()
        .map(|b| {
            (
                b.start,
                b.end,
                b.results.iter().map(|o| (o.id.0, o.timestamp, o.value)).collect(),
            )
        })
        .collect()
}

/// Runs `inputs` through a fresh engine, snapshotting and restoring into a new engine every
/// `cut` records (a batch of a Lambda stage, each maybe in another container); returns the
/// buckets closed, including at the end of input.
fn run(cut: usize) -> Summary {
    let p = pipeline();
    let mut engine = p.engine();
    let mut closed = Vec::new();
    for (n, chunk) in inputs().chunks(cut).enumerate() {
        let shard = engine.partition("shard-0");
        for (i, value) in chunk.iter().enumerate() {
            engine.process(shard, (n * cut + i) as u64, 0, *value);
        }
        closed.extend(engine.drain_buckets());
        let image = CheckpointImage::new(engine.snapshot_full().expect("snapshot"));
        engine = Engine::restore(&p, &image).expect("restore");
    }
    engine.finish();
    closed.extend(engine.drain_buckets());
    summary(&closed)
}

#[test]
fn buckets_close_with_the_same_results_however_the_input_is_batched_and_restored() {
    let whole = run(usize::MAX);
    assert_eq!(whole.len(), 11, "buckets from -1 s to 10 s");
    let results: usize = whole.iter().map(|b| b.2.len()).sum();
    assert_eq!(results, 200, "every result is in exactly one bucket");
    for (start, end, results) in &whole {
        assert_eq!(end - start, 1_000);
        assert!(results.iter().all(|(_, ts, _)| (start..end).contains(&ts)));
        assert!(results.windows(2).all(|w| w[0].0 < w[1].0), "sorted by id");
    }
    for cut in [1, 7, 33, 100] {
        assert_eq!(run(cut), whole, "batches of {cut}");
    }
}

#[test]
fn a_bucket_closes_only_when_the_watermark_passes_its_last_millisecond() {
    let mut engine = pipeline().engine();
    let shard = engine.partition("shard-0");
    engine.process(shard, 0, 0, (1, 100));
    engine.process(shard, 1, 0, (2, 1_400)); // watermark 900: bucket 0 still open
    assert!(engine.drain_buckets().is_empty());
    engine.process(shard, 2, 0, (3, 1_499)); // watermark 999: bucket 0 closes
    let closed = engine.drain_buckets();
    assert_eq!(
        summary(&closed).iter().map(|b| (b.0, b.2.len())).collect::<Vec<_>>(),
        [(0, 1)]
    );
    assert_eq!(engine.drain_output().len(), 3, "results still come out one by one");
}

#[test]
fn a_merged_child_unites_its_parents_open_buckets() {
    let p = pipeline();
    let mut images = Vec::new();
    for (shard, keys) in [("left", 0..3u32), ("right", 10..12u32)] {
        let mut parent = p.engine();
        let id = parent.partition(shard);
        for k in keys {
            parent.process(id, u64::from(k), 0, (k, 200 + i64::from(k)));
        }
        assert!(parent.drain_buckets().is_empty());
        images.push(CheckpointImage::new(parent.snapshot_full().expect("snapshot")));
    }
    let mut child = Engine::adopt(&p, &images, &|_| false).expect("adopt");
    child.finish();
    let closed = child.drain_buckets();
    assert_eq!(closed.len(), 1, "{closed:?}");
    let mut keys: Vec<u32> = closed[0].results.iter().map(|o| o.value.0).collect();
    keys.sort_unstable();
    assert_eq!(keys, [0, 1, 2, 10, 11]);
}
