//! The clickstream `sessions` stage as its function runs it — built by `shardflow-app` from the
//! variables the template sets — against LocalStack's DynamoDB, S3 and SQS: after a batch, a
//! redelivery of it with more records and the end of the input, the DynamoDB table holds the
//! latest pane of every session the embedded runner computes from the same records, and S3 one
//! object per pane.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use shardflow_clickstream::{latest_sessions, sessions_stage, Session, PAGE_VIEWS_STREAM};
use shardflow_connectors::item_value;
use shardflow_lambda::EndOfInput;
use shardflow_stage::ShardBatch;

const SHARD: &str = "shardId-000000000000";

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/shard-a.jsonl")
}

/// Records `range` of `lines` as Lambda sends them from one shard.
fn batch(lines: &[String], range: std::ops::Range<usize>) -> ShardBatch {
    let records: Vec<serde_json::Value> = range
        .map(|i| {
            let sequence = format!("4965{i:020}");
            serde_json::json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": format!("p{i}"),
                    "sequenceNumber": sequence,
                    "data": base64::engine::general_purpose::STANDARD.encode(&lines[i]),
                    "approximateArrivalTimestamp": 1_795_651_200.5 + i as f64,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{SHARD}:{sequence}"),
                "eventName": "aws:kinesis:record",
                "awsRegion": "us-east-1",
                "eventSourceARN": format!("arn:aws:kinesis:us-east-1:000000000000:stream/{PAGE_VIEWS_STREAM}"),
            })
        })
        .collect();
    ShardBatch::from_value(serde_json::json!({ "Records": records })).expect("a Kinesis event")
}

/// The embedded runner's sessions over the sample: every result id, and the latest pane's value
/// per (user, session start).
async fn embedded() -> (Vec<String>, BTreeMap<(String, i64), Session>) {
    #[derive(serde::Deserialize)]
    struct Line {
        id: String,
    }
    let out = tempfile::tempdir().expect("a temporary directory");
    sessions_stage()
        .run_local(&[sample()], out.path())
        .await
        .expect("the embedded run");
    let text = std::fs::read_to_string(out.path().join("sessions.jsonl")).expect("sessions.jsonl");
    let mut ids: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Line>(l).expect("a result line").id)
        .collect();
    ids.sort();
    (ids, latest_sessions(&text).expect("session lines"))
}

#[tokio::test]
async fn the_sessions_stage_upserts_the_embedded_runners_latest_panes_into_dynamodb() {
    let (dynamodb, state_table) = shardflow_testkit::state_table("click-state").await;
    let sessions_table = shardflow_testkit::unique_name("click-sessions");
    shardflow_connectors::create_upsert_table(&dynamodb, &sessions_table)
        .await
        .expect("the sessions table");
    let (s3, bucket) = shardflow_testkit::bucket("click-archive").await;
    let (_, dlq) = shardflow_testkit::queue("click-dlq").await;
    // What the synthesized template sets on the function.
    let vars: HashMap<String, String> = [
        ("SHARDFLOW_STAGE", "sessions"),
        ("SHARDFLOW_STATE_TABLE", state_table.as_str()),
        ("SHARDFLOW_DLQ_URL", dlq.as_str()),
        ("SHARDFLOW_SINK_SESSIONS_TABLE_TABLE", sessions_table.as_str()),
        ("SHARDFLOW_SINK_SESSIONS_ARCHIVE_BUCKET", bucket.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let stage = sessions_stage().lambda_stage(&vars).await.expect("the stage");

    let lines: Vec<String> = std::fs::read_to_string(sample())
        .expect("the sample")
        .lines()
        .map(str::to_owned)
        .collect();
    stage.handle(batch(&lines, 0..8)).await.expect("the first batch");
    // Lambda redelivers the first records with the rest (an answer lost, say).
    stage
        .handle(batch(&lines, 0..lines.len()))
        .await
        .expect("the redelivery");
    stage
        .end_of_input(&EndOfInput {
            stream: PAGE_VIEWS_STREAM.to_owned(),
            shard_id: SHARD.to_owned(),
        })
        .await
        .expect("the end of the input");

    let (ids, expected) = embedded().await;
    let scan = dynamodb
        .scan()
        .table_name(&sessions_table)
        .consistent_read(true)
        .send()
        .await
        .expect("Scan");
    let stored: BTreeMap<(String, i64), Session> = scan
        .items()
        .iter()
        .map(|item| {
            let session: Session = item_value(item).expect("a session item");
            ((session.user_id.clone(), session.session_start_ms), session)
        })
        .collect();
    assert_eq!(scan.items().len(), stored.len(), "one item per (user, session start)");
    assert_eq!(stored, expected, "one item per session, holding its latest pane");
    assert!(expected.len() >= 4, "the sample has sessions: {expected:?}");

    let mut objects: Vec<String> = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("sessions/")
        .send()
        .await
        .expect("ListObjectsV2")
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .filter_map(|k| k.rsplit('/').next())
        .map(|name| name.trim_end_matches(".json").to_owned())
        .collect();
    objects.sort();
    assert_eq!(objects, ids, "one S3 object per pane the embedded runner emits");
}
