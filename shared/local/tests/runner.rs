//! The local runner end to end: resume after an interruption, dead letters, late output.

use std::path::Path;

mod common;

use common::{block_on, shards, Ev};
use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::trigger::Firing;
use shardflow_engine::{Pipeline, Trigger, WatermarkStrategy, Windowing};
use shardflow_local::{IterInput, JsonLinesFiles, LocalRunner, RunManifest, RunSummary};

fn sums() -> Pipeline<Ev, (u32, i64, u64, i64)> {
    Pipeline::builder("sums")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(2_000).unwrap())
        .max_key_groups(16)
        .event_time(|e: &Ev| e.ts)
        .key_by(|e| e.key)
        .window(Windowing::tumbling(10_000).unwrap())
        .trigger(
            Trigger::at_watermark()
                .with_early_firings(Firing::every_processing_ms(3_000))
                .with_allowed_lateness(5_000)
                .unwrap()
                .accumulating(),
        )
        .aggregate((Count, Sum::of(|e: &Ev| e.amount)), |k, w, _, (n, s)| {
            (*k, w.start, n, s)
        })
        .sink("sums")
}

fn big_amounts() -> Pipeline<Ev, Ev> {
    Pipeline::builder("big")
        .event_time(|e: &Ev| e.ts)
        .filter(|e| e.amount > 90)
        .sink("big")
}

fn runner(out: &Path) -> LocalRunner<Ev> {
    LocalRunner::new(out)
        .job(sums())
        .job(big_amounts())
        .checkpoints(out.join("state"), 500)
        .full_checkpoint_every(3)
        .batch_size(8)
        .fsync(false)
        .input_id("test-shards")
}

fn run(out: &Path, stop_after: Option<u64>) -> RunSummary {
    let mut input = IterInput::from_vecs(shards(6_000, 100, 7));
    let mut r = runner(out);
    if let Some(k) = stop_after {
        r = r.stop_after(k);
    }
    block_on(r.run(&mut input)).unwrap()
}

fn read(out: &Path, file: &str) -> String {
    std::fs::read_to_string(out.join(file)).unwrap()
}

fn ids(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn interrupted_and_resumed_runs_write_exactly_the_output_of_one_run() {
    let once = tempfile::tempdir().unwrap();
    let full = run(once.path(), None);
    assert!(!full.interrupted);
    let expected_sums = read(once.path(), "sums.jsonl");
    let expected_big = read(once.path(), "big.jsonl");
    let expected_late = read(once.path(), "late.jsonl");
    assert!(ids(&expected_sums).len() > 100, "the test needs results");
    assert!(expected_sums.contains("\"timing\":\"early\"") && expected_sums.contains("\"timing\":\"late\""));
    assert!(full.pipelines[0].late_records > 0, "the test needs late records");

    for cuts in [vec![1_234], vec![500], vec![77, 2_500, 1_999], vec![5_999]] {
        let dir = tempfile::tempdir().unwrap();
        let mut total = 0;
        for (i, k) in cuts.iter().enumerate() {
            let s = run(dir.path(), Some(*k));
            assert!(s.interrupted);
            assert_eq!(s.records_read, *k, "cut {i} of {cuts:?}");
            total += k;
        }
        let last = run(dir.path(), None);
        if total > 500 {
            assert!(
                last.resumed_from_epoch.is_some() && last.records_skipped >= 500,
                "{cuts:?}"
            );
        }
        assert_eq!(ids(&read(dir.path(), "sums.jsonl")), ids(&expected_sums), "{cuts:?}");
        assert_eq!(read(dir.path(), "sums.jsonl"), expected_sums, "{cuts:?}");
        assert_eq!(read(dir.path(), "big.jsonl"), expected_big, "{cuts:?}");
        assert_eq!(read(dir.path(), "late.jsonl"), expected_late, "{cuts:?}");
        assert_eq!(
            last.pipelines,
            full.pipelines
                .iter()
                .map(|p| {
                    let mut p = p.clone();
                    p.output = dir.path().join(p.output.file_name().unwrap());
                    p
                })
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_finished_state_directory_is_resumed_as_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), None);
    let before = read(dir.path(), "sums.jsonl");
    let again = run(dir.path(), None);
    assert_eq!(again.records_read, 0);
    assert_eq!(read(dir.path(), "sums.jsonl"), before);
    assert!(RunManifest::read(&dir.path().join("state")).unwrap().unwrap().finished);
}

#[test]
fn state_of_another_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), Some(1_000));
    let mut input = IterInput::from_vecs(shards(6_000, 100, 7));
    let err = block_on(runner(dir.path()).input_id("other").run(&mut input)).unwrap_err();
    assert!(err.to_string().contains("cannot be resumed"), "{err}");
}

#[test]
fn malformed_records_go_to_dead_letters_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("shard-a.jsonl");
    let b = dir.path().join("shard-b.jsonl");
    std::fs::write(
        &a,
        "{\"key\":1,\"ts\":1000,\"amount\":95}\n{\"key\":1,\"ts\":\n\n{\"key\":2,\"ts\":1500,\"amount\":99}\n",
    )
    .unwrap();
    std::fs::write(&b, "not json at all\n{\"key\":3,\"ts\":2000,\"amount\":91}\r\n").unwrap();
    let out = dir.path().join("out");
    let mut input = JsonLinesFiles::<Ev>::open(&[&a, &b]).unwrap();
    let summary = block_on(LocalRunner::new(&out).job(big_amounts()).run(&mut input)).unwrap();
    assert_eq!(summary.records_read, 5);
    assert_eq!(summary.dead_letters, 2);
    assert_eq!(summary.pipelines[0].results_out, 3, "the valid records all got through");
    let dead: Vec<serde_json::Value> = read(&out, "dead_letters.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 2);
    assert_eq!(
        (dead[0]["partition"].as_str(), dead[0]["offset"].as_u64()),
        (Some("shard-a"), Some(1))
    );
    assert!(dead[0]["reason"].as_str().unwrap().starts_with("invalid JSON"));
    assert_eq!(dead[0]["raw"], "{\"key\":1,\"ts\":");
    assert_eq!(
        (dead[1]["partition"].as_str(), dead[1]["offset"].as_u64()),
        (Some("shard-b"), Some(0))
    );
    assert_eq!(dead[1]["raw"], "not json at all");
}

#[test]
fn late_records_are_written_with_their_partition_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let on_time = |ts| Ev { key: 1, ts, amount: 1 };
    // shard-0: the watermark reaches 60 s, then a record of the first window (gc at 15 s) arrives.
    let mut input = IterInput::from_vecs(vec![vec![on_time(1_000), on_time(62_000), on_time(2_000)]]);
    let summary = block_on(LocalRunner::new(dir.path()).job(sums()).run(&mut input)).unwrap();
    assert_eq!(summary.pipelines[0].late_records, 1);
    let late: serde_json::Value = serde_json::from_str(read(dir.path(), "late.jsonl").trim()).unwrap();
    assert_eq!(late["pipeline"], "sums");
    assert_eq!(late["partition"], "shard-0");
    assert_eq!(late["offset"], 2);
    assert_eq!(late["event_time"], 2_000);
    assert_eq!(late["window"]["start"], 0);
}

/// `sums` whose window operator has the uid `uid`, after a filter that keeps everything (a
/// changed build of the same pipeline).
fn sums_named(uid: &str) -> Pipeline<Ev, (u32, i64, u64, i64)> {
    Pipeline::builder("sums")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(2_000).unwrap())
        .max_key_groups(16)
        .event_time(|e: &Ev| e.ts)
        .filter(|e| e.amount >= 0)
        .key_by(|e| e.key)
        .window(Windowing::tumbling(10_000).unwrap())
        .aggregate(Count, |k, w, _, n| (*k, w.start, n, 0))
        .uid(uid)
        .unwrap()
        .sink("sums")
}

fn run_named(out: &Path, uid: &str, stop_after: Option<u64>, allow_dropped_state: bool) -> Result<RunSummary, String> {
    let mut input = IterInput::from_vecs(shards(2_000, 100, 7));
    let mut r = LocalRunner::new(out)
        .job(sums_named(uid))
        .checkpoints(out.join("state"), 500)
        .batch_size(8)
        .fsync(false)
        .input_id("test-shards")
        .allow_dropped_state(allow_dropped_state);
    if let Some(k) = stop_after {
        r = r.stop_after(k);
    }
    block_on(r.run(&mut input)).map_err(|e| e.to_string())
}

#[test]
fn a_resume_into_a_pipeline_without_the_checkpointed_operator_is_refused_naming_it_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    run_named(dir.path(), "minutes", Some(1_200), false).unwrap();
    // Same ids: the resume restores the window's state.
    let same = run_named(dir.path(), "minutes", Some(300), false).unwrap();
    assert!(same.resumed_from_epoch.is_some() && same.interrupted);
    let err = run_named(dir.path(), "ten-seconds", None, false).unwrap_err();
    assert!(
        err.contains("\"minutes\"") && err.contains("\"ten-seconds\"") && err.contains("sums"),
        "{err}"
    );
    let resumed = run_named(dir.path(), "ten-seconds", None, true).unwrap();
    assert!(resumed.resumed_from_epoch.is_some());
    assert!(!resumed.interrupted);
}
