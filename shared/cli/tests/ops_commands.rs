//! `shardflow savepoint create|restore|check` and `shardflow status` as a user runs them, against
//! LocalStack (DynamoDB, S3): the state of a stage is seeded through the checkpoint store, saved,
//! restored under another name (a second restore is refused with a clear message), and both
//! stages' status is read as JSON; a savepoint of the shop's revenue pipeline is checked against
//! this build's pipelines.
//!
//! Needs `AWS_ENDPOINT_URL` pointing at LocalStack.

use std::process::{Command, Output};

mod common;
use common::ok;

use shardflow_engine::combine::Count;
use shardflow_engine::{Pipeline, Trigger, WatermarkStrategy, Windowing};
use shardflow_stage::SequenceNumber;
use shardflow_state_dynamodb::DynamoDbCheckpointStore;

fn shardflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shardflow"))
        .args(args)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_ENDPOINT_URL", shardflow_testkit::endpoint("DYNAMODB"))
        .output()
        .unwrap()
}

fn counts() -> Pipeline<(u32, i64), (u32, u64)> {
    Pipeline::builder("counts")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
        .max_key_groups(32)
        .event_time(|e: &(u32, i64)| e.1)
        .key_by(|e| e.0)
        .window(Windowing::tumbling(1_000_000).unwrap())
        .trigger(Trigger::at_watermark())
        .aggregate(Count, |k, _, _, n| (*k, n))
        .sink("counts")
}

#[tokio::test]
async fn savepoint_restore_and_status_from_the_command_line() {
    let (client, table) = shardflow_testkit::state_table("cli-ops").await;
    let (_, bucket) = shardflow_testkit::bucket("cli-ops").await;
    for (s, shard) in ["shardId-000000000000", "shardId-000000000001"].iter().enumerate() {
        let p = counts();
        let mut e = p.engine();
        let part = e.partition(shard);
        for i in 0..200u64 {
            e.process(part, i, 0, ((i % 50) as u32 + 100 * s as u32, 1_000 + i as i64));
        }
        let mut store = DynamoDbCheckpointStore::new(client.clone(), &table, "counts", shard);
        store.load().await.unwrap();
        let seq = SequenceNumber::parse(&format!("4965{:020}", 199 + s)).unwrap();
        store.commit(&e.snapshot().unwrap(), &seq).await.unwrap();
    }

    let created = ok(shardflow(&[
        "savepoint",
        "create",
        "--stage",
        "counts",
        "--table",
        &table,
        "--bucket",
        &bucket,
        "--prefix",
        "sp/cli",
    ]));
    assert!(
        created.contains(&format!("savepoint s3://{bucket}/sp/cli")),
        "{created}"
    );
    assert!(
        created.contains("2 shard(s)") && created.contains("one cut of the whole stage"),
        "{created}"
    );

    let (_, table2) = shardflow_testkit::state_table("cli-ops-green").await;
    let savepoint = format!("s3://{bucket}/sp/cli");
    let refused = shardflow(&[
        "savepoint",
        "restore",
        "--savepoint",
        &savepoint,
        "--stage",
        "green",
        "--table",
        &table2,
        "--expect-key-groups",
        "128",
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("it has 32 key groups, expected 128"), "{stderr}");

    let restored = ok(shardflow(&[
        "savepoint",
        "restore",
        "--savepoint",
        &savepoint,
        "--stage",
        "green",
        "--table",
        &table2,
        "--expect-key-groups",
        "32",
        "--expect-pipeline",
        "counts",
    ]));
    assert!(restored.contains("2 shard(s)"), "{restored}");
    let again = shardflow(&[
        "savepoint",
        "restore",
        "--savepoint",
        &savepoint,
        "--stage",
        "green",
        "--table",
        &table2,
    ]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already has") && stderr.contains("--force"), "{stderr}");

    let blue: serde_json::Value = serde_json::from_str(&ok(shardflow(&[
        "status", "--stage", "counts", "--table", &table, "--json",
    ])))
    .unwrap();
    let green: serde_json::Value = serde_json::from_str(&ok(shardflow(&[
        "status", "--stage", "green", "--table", &table2, "--json",
    ])))
    .unwrap();
    let shards = |v: &serde_json::Value| {
        v["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["shard"].as_str().unwrap().to_owned(),
                    s["sequence_number"].as_str().unwrap().to_owned(),
                    s["state_items"].as_u64().unwrap(),
                    s["state_bytes"].as_u64().unwrap(),
                    s["watermark_ms"].as_i64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(shards(&blue), shards(&green));
    assert_eq!(shards(&blue)[1].1, "496500000000000000000200");
    assert!(shards(&blue).iter().all(|s| s.2 > 0 && s.3 > 0 && s.4 >= 1_000));
    assert_eq!(green["shards"][0]["version"], 1);

    let text = ok(shardflow(&["status", "--stage", "counts", "--table", &table]));
    assert!(text.starts_with(&format!("stage counts (table {table})")), "{text}");
    assert!(text.contains("shardId-000000000001"), "{text}");
}

#[tokio::test]
async fn savepoint_check_from_the_command_line() {
    use shardflow_shop::generator::{ShopConfig, ShopGenerator};
    let (client, table) = shardflow_testkit::state_table("cli-check").await;
    let (_, bucket) = shardflow_testkit::bucket("cli-check").await;
    let shard = "shardId-000000000000";
    let p = shardflow_shop::pipelines::revenue();
    let mut e = p.engine();
    let part = e.partition(shard);
    let mut generator = ShopGenerator::new(ShopConfig::new(7, 2_000, 1));
    let mut offset = 0u64;
    while let Some(tx) = generator.next_transaction() {
        for event in tx {
            e.process(part, offset, 0, event);
            offset += 1;
        }
    }
    let mut store = DynamoDbCheckpointStore::new(client.clone(), &table, "revenue", shard);
    store.load().await.unwrap();
    let seq = SequenceNumber::parse(&format!("4965{:020}", offset)).unwrap();
    store.commit(&e.snapshot().unwrap(), &seq).await.unwrap();
    ok(shardflow(&[
        "savepoint",
        "create",
        "--stage",
        "revenue",
        "--table",
        &table,
        "--bucket",
        &bucket,
        "--prefix",
        "sp/check",
    ]));
    let savepoint = format!("s3://{bucket}/sp/check");

    let checked = ok(shardflow(&[
        "savepoint",
        "check",
        "--savepoint",
        &savepoint,
        "--pipeline",
        "revenue",
    ]));
    assert!(
        checked.starts_with(&format!("savepoint {savepoint} against revenue")),
        "{checked}"
    );
    assert!(checked.contains("restored from window_aggregate-0  1/1"), "{checked}");
    assert!(checked.contains("PASSED"), "{checked}");
    let json = ok(shardflow(&[
        "savepoint",
        "check",
        "--savepoint",
        &savepoint,
        "--pipeline",
        "revenue",
        "--json",
    ]));
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["passed"], true);
    assert_eq!(json["operators"][0]["outcome"], "restored");

    let refused = shardflow(&[
        "savepoint",
        "check",
        "--savepoint",
        &savepoint,
        "--pipeline",
        "receipts",
    ]);
    assert!(!refused.status.success());
    let stdout = String::from_utf8_lossy(&refused.stdout);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stdout.contains("pipeline          FAILED"), "{stdout}");
    assert!(stderr.contains("does not restore into receipts"), "{stderr}");
    let unknown = shardflow(&["savepoint", "check", "--savepoint", &savepoint, "--pipeline", "nope"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown pipeline \"nope\""));
}
