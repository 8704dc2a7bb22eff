//! The stage's cold loads follow the restore rule of every runner: state of an operator the
//! deployed pipeline does not have refuses the restore (a typed, retried-the-same failure that
//! names the operators and moves nothing) unless `StageConfig::restore` allows dropping it, and
//! then the dropped state is gone from the store after the next commit.
//!
//! Needs LocalStack (or DynamoDB Local): see `localstack/README.md`.

mod common;

use common::{event, purchases, Purchase, Row};
use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::{Pipeline, RestoreOptions, Trigger, WatermarkStrategy, Windowing};
use shardflow_lambda::{EndOfInput, Stage, StageConfig, StageError};
use shardflow_stage::{JsonDecoder, MemoryDeadLetters, MemoryResultSink};
use shardflow_state_dynamodb::DynamoDbCheckpointStore;

const SHARD: &str = "shardId-000000000000";

type NamedStage = Stage<Purchase, Row, JsonDecoder<Purchase>, MemoryResultSink<Row>, MemoryDeadLetters>;

/// The revenue pipeline with its window operator named `uid`.
fn revenue(uid: &str) -> Pipeline<Purchase, Row> {
    Pipeline::builder("revenue")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
        .event_time(|p: &Purchase| p.ts_ms)
        .key_by(|p| p.product)
        .window(Windowing::tumbling(10_000).unwrap())
        .trigger(Trigger::at_watermark())
        .aggregate((Count, Sum::of(|p: &Purchase| p.cents)), |k, w, _, (n, c)| {
            (*k, w.start, n, c)
        })
        .uid(uid)
        .unwrap()
        .sink("revenue")
}

fn stage(client: &aws_sdk_dynamodb::Client, table: &str, uid: &str, restore: RestoreOptions) -> NamedStage {
    Stage::new(
        "revenue",
        revenue(uid),
        JsonDecoder::new(),
        MemoryResultSink::new(),
        MemoryDeadLetters::default(),
        client.clone(),
        table,
        StageConfig {
            restore,
            ..StageConfig::default()
        },
    )
    .unwrap()
    .with_warm_state_budget(0)
}

/// The shard's committed version and the operator ids its state is kept under.
async fn committed(client: &aws_sdk_dynamodb::Client, table: &str) -> (u64, Vec<String>) {
    let loaded = DynamoDbCheckpointStore::new(client.clone(), table, "revenue", SHARD)
        .load()
        .await
        .unwrap();
    let ids = loaded
        .image
        .map(|i| i.operator_metas().map(|(id, _)| id.to_owned()).collect())
        .unwrap_or_default();
    (loaded.version, ids)
}

#[tokio::test]
async fn a_renamed_operator_refuses_every_invocation_naming_both_ids_and_moves_nothing() {
    let (client, table) = shardflow_testkit::state_table("refused").await;
    let blue = stage(&client, &table, "revenue-window", RestoreOptions::strict());
    blue.handle(event(SHARD, &purchases(0..20))).await.unwrap();
    assert_eq!(committed(&client, &table).await, (1, vec!["revenue-window".to_owned()]));

    let green = stage(&client, &table, "revenue-10s", RestoreOptions::strict());
    for attempt in 0..3 {
        // Lambda retries the batch: it fails the same way every time.
        match green.handle(event(SHARD, &purchases(20..30))).await {
            Err(e @ StageError::RestoreRefused { .. }) => {
                let StageError::RestoreRefused {
                    stage,
                    shard,
                    unmatched,
                    starts_empty,
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!((stage.as_str(), shard.as_str()), ("revenue", SHARD));
                assert_eq!(
                    (unmatched.clone(), starts_empty.clone()),
                    (vec!["revenue-window".to_owned()], vec!["revenue-10s".to_owned()])
                );
                let message = e.to_string();
                assert!(message.starts_with("RESTORE REFUSED"), "{message}");
                assert!(message.contains("SHARDFLOW_ALLOW_DROPPED_STATE"), "{message}");
            }
            other => panic!("attempt {attempt}: expected a refused restore, got {other:?}"),
        }
    }
    let end = EndOfInput {
        stream: "purchases".into(),
        shard_id: SHARD.into(),
    };
    assert!(matches!(
        green.end_of_input(&end).await,
        Err(StageError::RestoreRefused { .. })
    ));
    assert!(green.sink().writes().is_empty(), "nothing was emitted");
    assert_eq!(
        committed(&client, &table).await,
        (1, vec!["revenue-window".to_owned()]),
        "the shard did not advance and its state is intact"
    );
}

#[tokio::test]
async fn allowing_dropped_state_restores_and_the_next_commit_forgets_the_dropped_operator() {
    let (client, table) = shardflow_testkit::state_table("dropped").await;
    let blue = stage(&client, &table, "revenue-window", RestoreOptions::strict());
    blue.handle(event(SHARD, &purchases(0..20))).await.unwrap();

    let green = stage(&client, &table, "revenue-10s", RestoreOptions::allowing_dropped_state());
    green.handle(event(SHARD, &purchases(20..30))).await.unwrap();
    assert_eq!(committed(&client, &table).await, (2, vec!["revenue-10s".to_owned()]));

    // The dropped state is gone: a strict stage of the new pipeline restores it plainly.
    let strict = stage(&client, &table, "revenue-10s", RestoreOptions::strict());
    strict.handle(event(SHARD, &purchases(30..40))).await.unwrap();
    assert_eq!(committed(&client, &table).await.0, 3);
}
