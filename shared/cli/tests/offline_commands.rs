//! `shardflow` commands that need no service, run as a user runs them: the help of `cdc` names
//! its real default format, and `gen` dates its events from the current time unless `--start`
//! fixes the start (the same stream again), with `--orders-per-sec` stretching the shop's input
//! over more event time.

use std::path::Path;
use std::process::{Command, Output};

fn shardflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shardflow"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = shardflow(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "shardflow {}: {stdout}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// 2024-01-01T00:00:00Z.
const FIXED_START_MS: i64 = 1_704_067_200_000;

#[test]
fn cdc_help_names_the_protobuf_default_and_every_format() {
    let help = ok(&["cdc", "--help"]);
    assert!(
        !help.contains("Debezium-style JSON events"),
        "the default is not JSON:\n{help}"
    );
    let about = help.lines().next().unwrap_or_default();
    assert!(
        about.contains("Protobuf") && about.contains("shardflow.cdc.v1.ChangeEvent"),
        "the first line names the default envelope: {about}"
    );
    assert!(
        about.contains("--format protobuf | json | shop"),
        "the first line names the formats: {about}"
    );
    assert!(help.contains("[default: protobuf]"), "{help}");
    for value in ["- protobuf:", "- json:", "- shop:"] {
        assert!(help.contains(value), "--help describes {value}\n{help}");
    }
    assert!(
        !help.contains("[`") && !help.contains("`]"),
        "--help shows no rustdoc link syntax:\n{help}"
    );
    let short = ok(&["cdc", "-h"]);
    assert!(short.lines().next() == Some(about), "{short}");
    assert!(
        short.contains("[default: protobuf] [possible values: protobuf, json, shop]"),
        "{short}"
    );

    let overview = ok(&["--help"]);
    let cdc = overview
        .lines()
        .find(|l| l.trim_start().starts_with("cdc "))
        .unwrap_or_else(|| panic!("`shardflow --help` lists cdc:\n{overview}"));
    assert!(
        cdc.contains("Protobuf") && !cdc.contains("JSON events"),
        "the command list describes cdc by its default: {cdc}"
    );
}

/// Runs `shardflow gen ARGS --out PATH` and returns the lines written.
fn gen_lines(path: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let args = [&["gen"], args, &["--out", path.to_str().unwrap()]].concat();
    ok(&args);
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The event times (`source.ts_ms`) of `shardflow gen shop --format json ARGS`.
fn gen_shop(path: &Path, args: &[&str]) -> Vec<i64> {
    let args = [&["shop", "--format", "json"], args].concat();
    gen_lines(path, &args)
        .iter()
        .map(|v| {
            v["source"]["ts_ms"]
                .as_i64()
                .unwrap_or_else(|| panic!("a change with an event time: {v}"))
        })
        .collect()
}

#[test]
fn gen_shop_starts_at_the_current_time_unless_given_a_start() {
    let dir = tempfile::tempdir().unwrap();
    let before = now_ms();
    let times = gen_shop(&dir.path().join("now.jsonl"), &["--events", "300"]);
    let after = now_ms();
    let first = *times.iter().min().unwrap();
    assert!(
        (before..=after).contains(&first),
        "the first change is dated when the command ran: {first} not in {before}..={after}"
    );

    let rfc3339 = gen_shop(
        &dir.path().join("a.jsonl"),
        &["--events", "300", "--start", "2024-01-01T00:00:00Z"],
    );
    assert_eq!(rfc3339.iter().min(), Some(&FIXED_START_MS));
    let epoch_ms = gen_shop(
        &dir.path().join("b.jsonl"),
        &["--events", "300", "--start", "1704067200000"],
    );
    assert_eq!(
        std::fs::read(dir.path().join("a.jsonl")).unwrap(),
        std::fs::read(dir.path().join("b.jsonl")).unwrap(),
        "a fixed start gives the same stream, however it is written"
    );
    assert_eq!(rfc3339, epoch_ms);

    let refused = shardflow(&["gen", "shop", "--start", "yesterday", "--out", "-"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("RFC 3339"), "{stderr}");
}

#[test]
fn gen_shop_orders_per_sec_stretches_the_input_over_minutes_of_event_time() {
    let dir = tempfile::tempdir().unwrap();
    let span = |extra: &[&str]| {
        let times = gen_shop(&dir.path().join("span.jsonl"), &[&["--events", "3000"], extra].concat());
        times.iter().max().unwrap() - times.iter().min().unwrap()
    };
    // the default rate: well under a minute, so no one-minute window would close
    assert!(span(&[]) < 60_000);
    // the README's walkthrough: several one-minute windows end before the input does
    let slow = span(&["--orders-per-sec", "0.5"]);
    assert!(slow > 8 * 60_000, "3,000 changes at 0.5 orders/s span {slow} ms");
}

#[test]
fn gen_nexmark_starts_at_the_current_time_unless_given_a_start() {
    let dir = tempfile::tempdir().unwrap();
    let date_times = |extra: &[&str]| {
        let args = [&["nexmark", "--events", "500"], extra].concat();
        gen_lines(&dir.path().join("nexmark.jsonl"), &args)
            .iter()
            .map(|v| {
                ["person", "auction", "bid"]
                    .iter()
                    .find_map(|k| v[k]["dateTime"].as_i64())
                    .unwrap_or_else(|| panic!("an event with a dateTime: {v}"))
            })
            .collect::<Vec<i64>>()
    };
    let before = now_ms();
    let now = date_times(&[]);
    let after = now_ms();
    assert!(
        now.iter().all(|t| (before..after + 2_500).contains(t)),
        "events dated from when the command ran ({before}..{after}): {:?}",
        &now[..5]
    );
    for start in ["2024-01-01T00:00:00Z", "1704067200000"] {
        let fixed = date_times(&["--start", start]);
        assert!(
            fixed
                .iter()
                .all(|t| (FIXED_START_MS..FIXED_START_MS + 2_500).contains(t)),
            "--start {start}: {:?}",
            &fixed[..5]
        );
    }
    // the flag's former name still works
    let old = date_times(&["--base-time-ms", "1704067200000"]);
    assert!(old.iter().all(|t| (FIXED_START_MS..FIXED_START_MS + 2_500).contains(t)));
}
