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
