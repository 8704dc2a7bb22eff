//! Split pipelines in the local runner: the two-stage topology over an in-memory shuffle writes
//! what the same pipeline in one engine writes, also when interrupted and resumed.

use std::path::Path;

mod common;

use common::{block_on, shards, Ev};
use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::trigger::Firing;
use shardflow_engine::{
    Lifted, Pipeline, SplitPipeline, Trigger, Upstream, WatermarkStrategy, WindowedStream, Windowing,
};
use shardflow_local::{IterInput, LocalRunner, RunSummary};

/// (key, window start, count, sum)
type Row = (u32, i64, u64, i64);

/// Per key and 10 s window, 5 s of allowed lateness with a late pane every two late values;
/// amounts above 95 are counted twice (a `flat_map` before the shuffle).
fn windowed() -> WindowedStream<Ev, u32, Ev, Upstream<Ev, Ev>> {
    Pipeline::builder("sums")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(2_000).unwrap())
        .max_key_groups(16)
        .event_time(|e: &Ev| e.ts)
        .flat_map(|e: Ev| if e.amount > 95 { vec![e.clone(), e] } else { vec![e] })
        .key_by(|e| e.key)
        .shuffle()
        .unwrap()
        .window(Windowing::tumbling(10_000).unwrap())
        .trigger(
            Trigger::at_watermark()
                .with_allowed_lateness(5_000)
                .unwrap()
                .with_late_firings(Firing::every_elements(2)),
        )
}

/// Count and sum of the amounts per key and window of [`windowed`].
fn sums() -> SplitPipeline<Ev, Ev, Row> {
    windowed()
        .aggregate((Count, Sum::of(|e: &Ev| e.amount)), |k, w, _, (n, s)| {
            (*k, w.start, n, s)
        })
        .sink("sums")
}

/// [`sums`] with its aggregation lifted.
fn lifted_sums() -> SplitPipeline<Ev, Lifted<u32, Ev, (u64, i64)>, Row> {
    windowed()
        .aggregate_lifted((Count, Sum::of(|e: &Ev| e.amount)), |k, w, _, (n, s)| {
            (*k, w.start, n, s)
        })
        .sink("sums")
}

fn runner(out: &Path) -> LocalRunner<Ev> {
    LocalRunner::new(out)
        .checkpoints(out.join("state"), 700)
        .full_checkpoint_every(3)
        .batch_size(8)
        .fsync(false)
        .input_id("split-shards")
}

fn run_split(out: &Path, shuffle_shards: u16, stop_after: Option<u64>) -> RunSummary {
    let mut input = IterInput::from_vecs(shards(4_000, 60, 11));
    let mut r = runner(out).split_job(sums()).shuffle_shards(shuffle_shards);
    if let Some(k) = stop_after {
        r = r.stop_after(k);
    }
    block_on(r.run(&mut input)).unwrap()
}

fn read(out: &Path, file: &str) -> String {
    std::fs::read_to_string(out.join(file)).unwrap()
}

fn sorted_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines
}

#[test]
fn a_split_pipeline_over_any_shuffle_shard_count_lifted_or_not_writes_what_one_engine_writes() {
    let whole = tempfile::tempdir().unwrap();
    let mut input = IterInput::from_vecs(shards(4_000, 60, 11));
    let one = block_on(runner(whole.path()).job(sums().whole).run(&mut input)).unwrap();
    let expected = read(whole.path(), "sums.jsonl");
    let expected_late = read(whole.path(), "late.jsonl");
    assert!(expected.contains("\"timing\":\"late\""), "the test needs late panes");
    assert!(one.pipelines[0].late_records > 0, "the test needs late records");
    for shuffle_shards in [1, 3, 4] {
        let dir = tempfile::tempdir().unwrap();
        let two = run_split(dir.path(), shuffle_shards, None);
        assert_eq!(
            sorted_lines(&read(dir.path(), "sums.jsonl")),
            sorted_lines(&expected),
            "{shuffle_shards} shards"
        );
        assert_eq!(
            sorted_lines(&read(dir.path(), "late.jsonl")),
            sorted_lines(&expected_late)
        );
        let (a, b) = (&two.pipelines[0], &one.pipelines[0]);
        assert_eq!(
            (a.records_in, a.results_out, a.late_records),
            (b.records_in, b.results_out, b.late_records)
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let mut input = IterInput::from_vecs(shards(4_000, 60, 11));
    assert!(lifted_sums().is_lifted());
    block_on(runner(dir.path()).split_job(lifted_sums()).run(&mut input)).unwrap();
    assert_eq!(
        sorted_lines(&read(dir.path(), "sums.jsonl")),
        sorted_lines(&expected),
        "lifted"
    );
    assert_eq!(
        sorted_lines(&read(dir.path(), "late.jsonl")),
        sorted_lines(&expected_late),
        "lifted"
    );
}

#[test]
fn an_interrupted_and_resumed_split_run_writes_exactly_the_output_of_one_run() {
    let once = tempfile::tempdir().unwrap();
    run_split(once.path(), 4, None);
    let expected = read(once.path(), "sums.jsonl");
    let expected_late = read(once.path(), "late.jsonl");
    for cuts in [vec![1_234], vec![77, 2_100, 1_999]] {
        let dir = tempfile::tempdir().unwrap();
        for k in &cuts {
            assert!(run_split(dir.path(), 4, Some(*k)).interrupted);
        }
        let last = run_split(dir.path(), 4, None);
        assert!(last.resumed_from_epoch.is_some(), "{cuts:?}");
        assert_eq!(read(dir.path(), "sums.jsonl"), expected, "{cuts:?}");
        assert_eq!(read(dir.path(), "late.jsonl"), expected_late, "{cuts:?}");
    }
}
