//! `shardflow cdc` writes Debezium JSON lines to its file sink and stops by itself when idle.

mod common;

use clap::Parser;
use common::Fixture;
use shardflow_cdc::cli::{run_with_sink, CdcArgs};
use shardflow_cdc::{FileSink, Format};

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    args: CdcArgs,
}

#[tokio::test(flavor = "current_thread")]
async fn cdc_command_snapshots_streams_to_a_file_and_stops_when_idle() {
    let fx = Fixture::new("command").await;
    let s = &fx.schema;
    fx.sql(&format!(
        "CREATE TABLE {s}.t (id int PRIMARY KEY, v text); INSERT INTO {s}.t VALUES (1, 'old')"
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("changes.jsonl");
    let url = common::database_url();
    let table = format!("{s}.t");
    let out_arg = out.display().to_string();
    let argv = [
        "cdc",
        "--database-url",
        &url,
        "--slot",
        &fx.slot,
        "--publication",
        &fx.publication,
        "--tables",
        &table,
        "--out",
        &out_arg,
        "--format",
        "json",
        "--create-slot",
        "--create-publication",
        "--replica-identity",
        "set-full",
        "--until-idle",
        "1.5",
        "--poll-interval-ms",
        "20",
        "--progress-secs",
        "0",
    ];
    let args = Wrapper::try_parse_from(argv).unwrap().args;
    assert_eq!(args.format, Format::Json);
    let writer = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        fx.sql(&format!(
            "INSERT INTO {s}.t VALUES (2, 'new'); UPDATE {s}.t SET v = 'newer' WHERE id = 2"
        ))
        .await;
    };
    let sink = FileSink::append_to_file(&out, args.format).await.unwrap();
    let (summary, ()) = tokio::join!(run_with_sink(&args, sink), writer);
    let summary = summary.unwrap();
    assert_eq!((summary.snapshot_rows, summary.changes), (1, 2));

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ops: Vec<&str> = lines.iter().map(|l| l["op"].as_str().unwrap()).collect();
    assert_eq!(ops, vec!["r", "c", "u"]);
    assert_eq!(lines[2]["before"]["v"], "new");
    assert_eq!(lines[2]["after"]["v"], "newer");
    assert_eq!(lines[2]["source"]["table"], "t");
    fx.cleanup().await;
}
