//! `order_enrich` cut at its key: the split pipeline run as two stages over the embedded runner's
//! in-memory shuffle (the upstream and downstream halves the Lambda stages run) writes the
//! enriched orders and late records of the single engine — same ids, sessions, values — on
//! generated shop streams of several seeds, CDC shard counts, shuffle shard counts and batch sizes.

use std::path::Path;
use std::sync::Arc;

use shardflow_local::{Arrival, LocalRunner, ProtobufFiles};
use shardflow_schemas::ChangeEvent;
use shardflow_shop::generator::{write_shard_files, ShopConfig};
use shardflow_shop::pipelines::{order_enrich, order_enrich_split};

/// The lines of `file` of a run in `out`, sorted (the downstream shards drain in turn, so the
/// two runs write the same lines in another order).
fn sorted_lines(out: &Path, file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(out.join(file)).unwrap_or_default();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort_unstable();
    lines
}

/// Runs `runner`'s jobs over the shard files `files`, arrival = commit time, in batches of `batch`.
fn run(runner: LocalRunner<ChangeEvent>, files: &[std::path::PathBuf], batch: usize) {
    let mut input = ProtobufFiles::<ChangeEvent>::open(files).unwrap();
    let runner = runner
        .arrival(Arrival::Field(Arc::new(|e: &ChangeEvent| e.ts_ms)))
        .batch_size(batch);
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(runner.run(&mut input))
        .unwrap();
}

#[test]
fn order_enrich_as_two_stages_equals_the_single_engine_at_any_shard_counts() {
    // (seed, CDC shards, shuffle shards, records per batch)
    let cases = [
        (1, 1, 1, 64),
        (2, 3, 2, 17),
        (3, 4, 4, 100),
        (4, 2, 7, 5),
        (5, 5, 3, 33),
    ];
    let mut enriched = 0;
    let mut late = 0;
    for (seed, shards, shuffle_shards, batch) in cases {
        let dir = tempfile::tempdir().unwrap();
        let config = ShopConfig::new(seed, 12_000, shards);
        let files = write_shard_files(&config, &dir.path().join("input"), None, |_| {}).unwrap();
        let (one, two) = (dir.path().join("one"), dir.path().join("two"));
        run(LocalRunner::new(&one).job(order_enrich()), &files, batch);
        run(
            LocalRunner::new(&two)
                .shuffle_shards(shuffle_shards)
                .split_job(order_enrich_split()),
            &files,
            batch,
        );
        let case = format!("seed {seed}, {shards} CDC shards, {shuffle_shards} shuffle shards, batches of {batch}");
        let expected = sorted_lines(&one, "enriched_orders.jsonl");
        assert_eq!(sorted_lines(&two, "enriched_orders.jsonl"), expected, "{case}");
        let expected_late = sorted_lines(&one, "late.jsonl");
        assert_eq!(sorted_lines(&two, "late.jsonl"), expected_late, "{case}");
        enriched += expected.len();
        late += expected_late.len();
    }
    assert!(enriched > 1_000, "orders enriched: {enriched}");
    eprintln!("{enriched} enriched orders and {late} late rows compared");
}

#[test]
fn the_split_order_enrichment_cuts_after_the_key_and_buckets_downstream() {
    let split = order_enrich_split();
    assert_eq!(
        split.upstream.stateful_operators().len(),
        0,
        "the upstream half is stateless"
    );
    let kinds: Vec<&str> = split.downstream.stateful_operators().iter().map(|o| o.kind()).collect();
    assert_eq!(kinds, ["window_aggregate", "event_time_buckets"]);
    assert!(!split.is_lifted(), "a join is not an aggregation to lift");
}
