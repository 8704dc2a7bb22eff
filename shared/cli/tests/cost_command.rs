//! `shardflow cost` as a user runs it (no services needed): the shop preset's table has every
//! stage and the comparison columns, `--json` is one document with the same columns, and bad
//! input is a clear error rather than a panic.

use std::process::{Command, Output};

mod common;
use common::ok;

fn shardflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shardflow"))
        .args(args)
        .output()
        .unwrap()
}

const SHOP: [&str; 11] = [
    "cost",
    "--preset",
    "shop",
    "--rate",
    "1000",
    "--shards",
    "4",
    "--batching-window-s",
    "1",
    "--checkpoint-interval-s",
    "30",
];

#[test]
fn the_shop_preset_prints_every_stage_and_the_comparison_columns() {
    let table = ok(shardflow(&SHOP));
    for stage in ["archive", "receipts", "revenue", "order-enrich"] {
        assert!(table.contains(&format!("\n{stage} Lambda")), "{stage}:\n{table}");
    }
    for column in [
        "commit every batch",
        "commit every 30 s",
        "Managed Flink",
        "Lambda tumbling 60 s",
    ] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("$ per month") && l.contains(column)),
            "{column}:\n{table}"
        );
    }
    for row in [
        "stream changes Kinesis",
        "Flink application Managed Flink",
        "total $ per month",
        "$ per million events",
    ] {
        assert!(table.contains(row), "{row}:\n{table}");
    }
    assert!(
        table.contains("as of 2026-12-05") && table.contains("never fetched"),
        "{table}"
    );
    assert!(table.contains("measured:") && table.contains("assumed:"), "{table}");
}

#[test]
fn per_batch_commits_alone_and_shuffle_streams_as_an_option() {
    let table = ok(shardflow(&[
        "cost",
        "--preset",
        "shop",
        "--checkpoint-interval-batches",
        "1",
        "--shuffle",
    ]));
    assert!(!table.contains("commit every 30 s"), "{table}");
    for row in [
        "stream revenue-shuffle Kinesis",
        "stream order-enrich-shuffle Kinesis",
        "revenue-keyby Lambda",
    ] {
        assert!(table.contains(row), "{row}:\n{table}");
    }
}

#[test]
fn json_output_is_one_document_with_every_column_and_its_totals() {
    let mut args = SHOP.to_vec();
    args.push("--json");
    let out = ok(shardflow(&args));
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let columns = report["columns"].as_array().unwrap();
    let labels: Vec<&str> = columns.iter().map(|c| c["label"].as_str().unwrap()).collect();
    assert_eq!(
        labels,
        [
            "commit every batch",
            "commit every 30 s",
            "Managed Flink",
            "Lambda tumbling 60 s"
        ]
    );
    for c in columns {
        assert!(c["total_usd_month"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(report["prices_as_of"], "2026-12-05");
    assert!(report["basis"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["kind"] == "measured"));
}

#[test]
fn bad_input_is_a_clear_error() {
    let out = shardflow(&["cost", "--emf", "revenue"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("STAGE=FILE"));
    let out = shardflow(&["cost", "--emf", "nosuch=/nonexistent/file.log"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/file.log"));
    let out = shardflow(&["cost", "--batch-size", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--batch-size"));
}

#[test]
fn a_price_table_of_ones_own_replaces_the_built_in_one() {
    let printed: serde_json::Value = serde_json::from_str(&ok(shardflow(&["cost", "--print-prices"]))).unwrap();
    assert_eq!(printed["region"], "us-east-1");
    let mut doubled = printed.clone();
    doubled["flink_kpu_hour"] = serde_json::json!(0.22);
    let dir = std::env::temp_dir().join(format!("shardflow-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("prices.json");
    std::fs::write(&path, doubled.to_string()).unwrap();
    let flink = |extra: &[&str]| {
        let mut args = vec!["cost", "--json"];
        args.extend_from_slice(extra);
        let report: serde_json::Value = serde_json::from_str(ok(shardflow(&args)).trim()).unwrap();
        report["columns"][1]["processing_usd_month"].as_f64().unwrap()
    };
    let built_in = flink(&[]);
    let own = flink(&["--prices", path.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    // 2 KPU × 730 h at twice the price; the running storage is unchanged.
    assert!((own - built_in - 2.0 * 730.0 * 0.11).abs() < 1e-6, "{built_in} → {own}");
}
