//! The customer-360 join on the embedded runner over sample files, one per table: every
//! (customer, window) with a changed row gets one activity row whose per-table counts and sums
//! are those of the sample itself, and a malformed line is dead-lettered without stopping its
//! table.

use std::collections::BTreeMap;
use std::path::PathBuf;

use shardflow_customer360::{app, sample_rows, Activity, JOIN, TABLES, WINDOW_MS};

const ROWS: usize = 30;
const BASE_MS: i64 = 1_700_000_000_000;

/// Writes the sample of every table to `<dir>/<table>.jsonl` (a malformed line in `payments`).
fn write_sample(dir: &std::path::Path) -> Vec<PathBuf> {
    TABLES
        .iter()
        .enumerate()
        .map(|(side, table)| {
            let mut lines: Vec<String> = sample_rows(side, ROWS, BASE_MS)
                .iter()
                .map(|r| serde_json::to_string(r).expect("a row"))
                .collect();
            if *table == "payments" {
                lines.insert(5, "{\"customer\":".to_owned());
            }
            let path = dir.join(format!("{table}.jsonl"));
            std::fs::write(&path, lines.join("\n") + "\n").expect("write a sample file");
            path
        })
        .collect()
}

/// What the join means, computed from the sample directly: per (customer, window start), each
/// table's rows and amounts.
fn oracle() -> BTreeMap<(u32, i64), Activity> {
    let mut out: BTreeMap<(u32, i64), Activity> = BTreeMap::new();
    for side in 0..TABLES.len() {
        for row in sample_rows(side, ROWS, BASE_MS) {
            let start = row.ts_ms - row.ts_ms.rem_euclid(WINDOW_MS);
            let a = out.entry((row.customer, start)).or_insert_with(|| Activity {
                customer: row.customer,
                window_start_ms: start,
                rows: vec![0; TABLES.len()],
                cents: vec![0; TABLES.len()],
            });
            a.rows[side] += 1;
            a.cents[side] += row.cents;
        }
    }
    out
}

#[tokio::test]
async fn every_customer_and_window_gets_one_row_holding_each_tables_changes() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let files = write_sample(dir.path());
    let out = dir.path().join("out");
    let summary = app().run_local(JOIN, &files, &out).await.expect("the embedded run");
    assert_eq!(summary.dead_letters, 1, "the malformed payments line");
    let text = std::fs::read_to_string(out.join("activity.jsonl")).expect("activity.jsonl");
    let mut got: BTreeMap<(u32, i64), Activity> = BTreeMap::new();
    for line in text.lines() {
        let line: serde_json::Value = serde_json::from_str(line).expect("a result line");
        let a: Activity = serde_json::from_value(line["value"].clone()).expect("an activity row");
        assert!(
            got.insert((a.customer, a.window_start_ms), a).is_none(),
            "one row per customer and window"
        );
    }
    let expected = oracle();
    assert!(expected.len() > 10, "the sample spans several windows and customers");
    assert_eq!(got, expected);
}

#[tokio::test]
async fn a_file_that_names_no_table_is_refused_naming_the_convention() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let stray = dir.path().join("clicks.jsonl");
    std::fs::write(&stray, "{}\n").expect("write");
    let err = app()
        .run_local(JOIN, &[stray], &dir.path().join("out"))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("names no input"), "{err}");
}
