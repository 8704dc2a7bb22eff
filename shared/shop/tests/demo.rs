//! `shardflow demo` on small runs: the files it writes, and resume after an interruption.

use std::path::Path;

use shardflow_shop::demo::{execute, DemoArgs};

fn args(out: &Path, events: u64) -> DemoArgs {
    DemoArgs {
        events,
        shards: 4,
        out: out.to_path_buf(),
        seed: 11,
        checkpoint_every: 2_000,
        corrupt_every: 1_000,
        batch_size: 64,
        stop_after: None,
        fresh: false,
        shuffle_shards: 0,
        report: None,
        allow_dropped_state: false,
    }
}

fn lines(out: &Path, file: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_small_demo_writes_every_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let report = execute(&args(dir.path(), 12_000), false).unwrap();
    let run = &report.run;
    assert_eq!(run.records_read, 12_000);
    assert_eq!(run.dead_letters, 12, "every 1000th record is damaged");
    assert_eq!(report.input_files.len(), 4);
    for (file, pipeline) in [
        ("revenue.jsonl", "revenue"),
        ("receipts.jsonl", "receipts"),
        ("enriched_orders.jsonl", "order_enrich"),
    ] {
        let n = lines(dir.path(), file).len() as u64;
        let summary = run.pipelines.iter().find(|p| p.pipeline == pipeline).unwrap();
        assert!(n > 0, "{file} is empty");
        assert_eq!(n, summary.results_out, "{file}");
        assert_eq!(summary.records_in, 12_000 - 12);
    }
    let dead = lines(dir.path(), "dead_letters.jsonl");
    assert_eq!(dead.len(), 12);
    assert!(dead
        .iter()
        .all(|d| d["reason"].as_str().unwrap().contains("invalid Protobuf")));
    let late = lines(dir.path(), "late.jsonl");
    assert_eq!(
        late.len() as u64,
        run.pipelines.iter().map(|p| p.late_records).sum::<u64>()
    );
    assert!(dir.path().join("state/MANIFEST.json").exists());
    let receipts = lines(dir.path(), "receipts.jsonl");
    let mut ids: Vec<_> = receipts
        .iter()
        .map(|r| r["value"]["order_id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), receipts.len(), "one receipt per order");
}

#[test]
fn an_interrupted_demo_resumes_to_the_same_outputs() {
    let once = tempfile::tempdir().unwrap();
    execute(&args(once.path(), 8_000), false).unwrap();
    let twice = tempfile::tempdir().unwrap();
    let first = execute(
        &DemoArgs {
            stop_after: Some(5_555),
            ..args(twice.path(), 8_000)
        },
        false,
    )
    .unwrap();
    assert!(first.run.interrupted);
    let second = execute(&args(twice.path(), 8_000), false).unwrap();
    assert_eq!(second.run.resumed_from_epoch, Some(2));
    assert_eq!(second.run.records_skipped, 4_000);
    for file in [
        "revenue.jsonl",
        "receipts.jsonl",
        "enriched_orders.jsonl",
        "late.jsonl",
        "dead_letters.jsonl",
    ] {
        let a = std::fs::read(once.path().join(file)).unwrap();
        let b = std::fs::read(twice.path().join(file)).unwrap();
        assert!(a == b, "{file} differs after resume");
    }
    // A finished run is not resumed: running again starts over and writes the same files.
    let third = execute(&args(twice.path(), 8_000), false).unwrap();
    assert_eq!(third.run.resumed_from_epoch, None);
    assert_eq!(third.run.records_read, 8_000);
}

#[test]
fn the_demo_with_a_shuffle_writes_the_revenue_and_enriched_orders_of_one_engine_but_revenues_early_panes() {
    let one = tempfile::tempdir().unwrap();
    execute(&args(one.path(), 8_000), false).unwrap();
    let two = tempfile::tempdir().unwrap();
    let report = execute(
        &DemoArgs {
            shuffle_shards: 3,
            ..args(two.path(), 8_000)
        },
        false,
    )
    .unwrap();
    assert!(report.run.pipelines.iter().any(|p| p.pipeline == "revenue"));
    let not_early = |out: &Path| {
        let mut rows: Vec<String> = lines(out, "revenue.jsonl")
            .into_iter()
            .filter(|r| r["value"]["pane"] != "early")
            .map(|mut r| {
                // Pane indexes count the early panes before them.
                r["value"]["pane_index"] = serde_json::Value::Null;
                r["pane"]["index"] = serde_json::Value::Null;
                r["id"] = serde_json::Value::Null;
                r.to_string()
            })
            .collect();
        rows.sort_unstable();
        rows
    };
    let expected = not_early(one.path());
    assert!(!expected.is_empty());
    assert_eq!(not_early(two.path()), expected);
    assert_eq!(lines(one.path(), "receipts.jsonl"), lines(two.path(), "receipts.jsonl"));
    // The split order enrichment writes the same orders, shuffle shard by shuffle shard.
    let sorted = |out: &Path, file: &str| {
        let mut rows: Vec<String> = lines(out, file).iter().map(|l| l.to_string()).collect();
        rows.sort_unstable();
        rows
    };
    let enriched = sorted(one.path(), "enriched_orders.jsonl");
    assert!(!enriched.is_empty());
    assert_eq!(sorted(two.path(), "enriched_orders.jsonl"), enriched);
    let sorted_late = |out: &Path| {
        let mut late: Vec<String> = lines(out, "late.jsonl").iter().map(|l| l.to_string()).collect();
        late.sort_unstable();
        late
    };
    assert_eq!(sorted_late(two.path()), sorted_late(one.path()), "late records");
}

#[test]
fn a_reported_demo_prints_a_batch_line_per_pipeline_and_shard_that_add_up_to_its_summary() {
    let out = tempfile::tempdir().unwrap();
    let report = execute(
        &DemoArgs {
            report: Some(out.path().join("report.html")),
            ..args(out.path(), 6_000)
        },
        false,
    )
    .unwrap();
    let records: Vec<shardflow_stage::EmfRecord> = report
        .metrics_lines
        .iter()
        .map(|l| shardflow_stage::EmfRecord::parse_line(l).unwrap())
        .collect();
    for p in &report.run.pipelines {
        let mine: Vec<_> = records.iter().filter(|r| r.stage == p.pipeline).collect();
        let sum = |f: fn(&shardflow_stage::BatchMetrics) -> u64| mine.iter().map(|r| f(&r.metrics)).sum::<u64>();
        assert_eq!(sum(|m| m.records_in), p.records_in, "{}", p.pipeline);
        assert_eq!(sum(|m| m.results_out), p.results_out, "{}", p.pipeline);
        assert_eq!(sum(|m| m.late_records), p.late_records, "{}", p.pipeline);
        assert_eq!(
            sum(|m| m.dead_letter_records),
            report.run.dead_letters,
            "{}",
            p.pipeline
        );
        let shards: std::collections::BTreeSet<&str> = mine.iter().map(|r| r.shard.as_str()).collect();
        assert_eq!(shards.len(), 4, "{shards:?}");
        // Every shard's watermark moves forward batch after batch.
        for shard in shards {
            let marks: Vec<i64> = mine
                .iter()
                .filter(|r| r.shard == shard)
                .filter_map(|r| r.watermark_ms())
                .collect();
            assert!(
                marks.windows(2).all(|w| w[1] >= w[0]) && marks.len() > 1,
                "{shard}: {marks:?}"
            );
        }
    }
    assert!(report.run.dead_letters > 0);
}
