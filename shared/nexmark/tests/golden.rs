//! Golden tests: the queries over the bench's sample input (`nexmark_gen.py --events 100000
//! --seed 7 --rate 1000`) give exactly the rows of `bench/expected/<q>.csv` (computed by
//! `bench/oracle.py`, itself checked against Flink), and q0 passes the oracle's own check.
//!
//! The bench directory lives beside the checkout (`../shared/bench`); without it these tests
//! fail, they never pass silently.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use shardflow_nexmark::cli::{self, NexmarkArgs, QueryArg};
use shardflow_nexmark::{run_query, Query, RunReport};

const BENCH_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/bench");
const SAMPLE_MD5: &str = "077a47377b42a7265df14adbf6fb2add";
const SAMPLE_EVENTS: u64 = 100_000;
const SAMPLE_BIDS: usize = 92_000;

fn bench_dir() -> PathBuf {
    let dir = PathBuf::from(BENCH_DIR);
    assert!(
        dir.join("nexmark_gen.py").is_file() && dir.join("expected").is_dir(),
        "the Nexmark bench harness is missing: expected nexmark_gen.py, oracle.py and expected/ in {} \
         (the read-only `shared/` directory beside the checkout)",
        dir.display()
    );
    dir
}

/// The sample input, generated once per test binary and checked against the md5 the expected
/// CSVs were computed for.
fn sample() -> &'static Path {
    static SAMPLE: OnceLock<PathBuf> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let bench = bench_dir();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nexmark-golden");
        std::fs::create_dir_all(&dir).expect("creating the sample directory");
        let path = dir.join("s7.jsonl");
        let status = Command::new("python3")
            .arg(bench.join("nexmark_gen.py"))
            .args(["--events", "100000", "--seed", "7", "--rate", "1000", "--out"])
            .arg(&path)
            .status()
            .expect("running python3 nexmark_gen.py");
        assert!(status.success(), "nexmark_gen.py failed: {status}");
        let md5 = Command::new("md5sum").arg(&path).output().expect("running md5sum");
        let md5 = String::from_utf8_lossy(&md5.stdout);
        assert_eq!(
            md5.split_whitespace().next(),
            Some(SAMPLE_MD5),
            "the generator's output changed: bench/expected/ no longer describes it"
        );
        path
    })
}

fn run_on(query: Query, input: &Path) -> (RunReport, String) {
    let file = std::fs::File::open(input).expect("opening the input");
    let mut out = Vec::new();
    let report = run_query(query, file, &mut out, &mut |_| {}).expect("the run succeeds");
    (report, String::from_utf8(out).expect("CSV output is UTF-8"))
}

/// Header and rows (sorted) of a CSV text.
fn header_and_sorted_rows(csv: &str) -> (String, Vec<String>) {
    let mut lines = csv.lines();
    let header = lines.next().unwrap_or_default().to_owned();
    let mut rows: Vec<String> = lines.map(str::to_owned).collect();
    rows.sort_unstable();
    (header, rows)
}

fn assert_matches_expected(query: Query) {
    let expected = std::fs::read_to_string(bench_dir().join("expected").join(format!("{query}.csv")))
        .expect("reading the expected CSV");
    let (report, got) = run_on(query, sample());
    assert_eq!(report.events_in, SAMPLE_EVENTS);
    assert_eq!(report.malformed_lines, 0);
    assert_eq!(report.late_records, 0, "the sample has no late data");
    let (exp_header, exp_rows) = header_and_sorted_rows(&expected);
    let (got_header, got_rows) = header_and_sorted_rows(&got);
    assert_eq!(got_header, exp_header, "{query}: header");
    assert_eq!(got_header, query.header());
    assert_eq!(
        report.results_out as usize,
        got_rows.len(),
        "{query}: every result is written"
    );
    if got_rows != exp_rows {
        let missing: Vec<_> = exp_rows
            .iter()
            .filter(|r| got_rows.binary_search(r).is_err())
            .take(3)
            .collect();
        let extra: Vec<_> = got_rows
            .iter()
            .filter(|r| exp_rows.binary_search(r).is_err())
            .take(3)
            .collect();
        panic!(
            "{query}: {} rows, expected {}; missing e.g. {missing:?}; unexpected e.g. {extra:?}",
            got_rows.len(),
            exp_rows.len()
        );
    }
}

#[test]
fn agg_counts_and_sums_bids_per_auction_and_tumbling_window_exactly_as_flink() {
    assert_matches_expected(Query::Agg);
}

#[test]
fn q5_finds_the_hottest_auctions_of_every_hopping_window_exactly_as_flink() {
    assert_matches_expected(Query::Q5);
}

#[test]
fn q7_finds_every_highest_bid_of_every_tumbling_window_exactly_as_flink() {
    assert_matches_expected(Query::Q7);
}

#[test]
fn q8_joins_new_persons_with_their_auctions_per_window_exactly_as_flink() {
    assert_matches_expected(Query::Q8);
}

#[test]
fn q0_passes_every_bid_through_as_the_oracle_checks() {
    let bench = bench_dir();
    let out = tempfile::tempdir().expect("a temporary directory");
    let (report, csv) = run_on(Query::Q0, sample());
    assert_eq!(report.results_out as usize, SAMPLE_BIDS);
    assert_eq!(csv.lines().count(), SAMPLE_BIDS + 1, "header plus one row per bid");
    std::fs::write(out.path().join("q0.csv"), csv).expect("writing q0.csv");
    let check = Command::new("python3")
        .arg(bench.join("oracle.py"))
        .arg("--input")
        .arg(sample())
        .args(["--queries", "q0", "--check-dir"])
        .arg(out.path())
        .output()
        .expect("running python3 oracle.py");
    assert!(
        check.status.success(),
        "oracle.py rejected q0's output:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn malformed_lines_are_reported_with_their_line_numbers_and_the_run_goes_on() {
    let text = std::fs::read_to_string(sample()).expect("reading the sample");
    let clean: Vec<&str> = text.lines().take(20_000).collect();
    // Bad lines inserted so that they become lines 3, 1001 and 15000 of the input.
    let mut lines: Vec<&str> = clean.clone();
    lines.insert(2, "{\"event_type\":2,\"bid\":");
    lines.insert(1000, "{\"event_type\":9,\"person\":null}");
    lines.insert(14_999, "\u{1F600} not json");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (clean_path, dirty_path) = (dir.path().join("clean.jsonl"), dir.path().join("dirty.jsonl"));
    std::fs::write(&clean_path, clean.join("\n") + "\n").expect("writing");
    std::fs::write(&dirty_path, lines.join("\n") + "\n").expect("writing");

    let (clean_report, clean_csv) = run_on(Query::Agg, &clean_path);
    let (report, csv) = run_on(Query::Agg, &dirty_path);
    assert_eq!(report.malformed_lines, 3);
    let at: Vec<u64> = report.first_errors.iter().map(|e| e.line()).collect();
    assert_eq!(at, vec![3, 1001, 15_000]);
    assert!(report.first_errors[1].to_string().contains("unknown event_type 9"));
    assert_eq!(report.events_in, clean_report.events_in, "every good line is processed");
    assert_eq!(header_and_sorted_rows(&csv), header_and_sorted_rows(&clean_csv));
    assert!(clean_report.results_out > 0);
}

#[test]
fn query_all_writes_one_csv_per_query_into_the_output_directory() {
    let out = tempfile::tempdir().expect("a temporary directory");
    cli::run(NexmarkArgs {
        query: QueryArg::All,
        input: sample().to_path_buf(),
        output: None,
        output_dir: Some(out.path().to_path_buf()),
    })
    .expect("shardflow nexmark --query all");
    for query in Query::ALL {
        let csv = std::fs::read_to_string(out.path().join(format!("{query}.csv"))).expect("the query's CSV");
        assert_eq!(csv.lines().next(), Some(query.header()));
    }
    let q7 = std::fs::read_to_string(out.path().join("q7.csv")).expect("q7.csv");
    let expected = std::fs::read_to_string(bench_dir().join("expected/q7.csv")).expect("expected q7");
    assert_eq!(header_and_sorted_rows(&q7), header_and_sorted_rows(&expected));
}
