//! Warm state against DynamoDB (the emulator): a container continues from its engine while the
//! shard's checkpoint item holds the version it committed, reloads when another container
//! committed since, and in either case emits exactly the results of one uninterrupted run.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::FinalizerInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput;
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use common::{distinct_results, event, expected, purchases, revenue, TestStage};
use shardflow_lambda::{Stage, StageConfig};
use shardflow_stage::{JsonDecoder, MemoryDeadLetters, MemoryResultSink};

const SHARD: &str = "shardId-000000000000";

/// Counts the DynamoDB items a client reads (GetItem, BatchGetItem and Query responses).
#[derive(Debug, Clone, Default)]
struct ItemsRead(Arc<Mutex<BTreeMap<&'static str, usize>>>);

impl ItemsRead {
    fn take(&self) -> BTreeMap<&'static str, usize> {
        self.0.lock().map(|mut m| std::mem::take(&mut *m)).unwrap_or_default()
    }
}

impl Intercept for ItemsRead {
    fn name(&self) -> &'static str {
        "items-read"
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Ok(output)) = context.output_or_error() else {
            return Ok(());
        };
        let read = if let Some(o) = output.downcast_ref::<GetItemOutput>() {
            Some(("GetItem", usize::from(o.item().is_some())))
        } else if let Some(o) = output.downcast_ref::<QueryOutput>() {
            Some(("Query", o.items().len()))
        } else {
            output.downcast_ref::<BatchGetItemOutput>().map(|o| {
                (
                    "BatchGetItem",
                    o.responses().map_or(0, |r| r.values().map(Vec::len).sum()),
                )
            })
        };
        if let (Some((op, items)), Ok(mut counts)) = (read, self.0.lock()) {
            *counts.entry(op).or_default() += items;
        }
        Ok(())
    }
}

/// A stage (one container) on `table`, its DynamoDB reads counted by `reads`.
fn container(client: &aws_sdk_dynamodb::Client, table: &str, reads: &ItemsRead) -> TestStage {
    let config = client.config().to_builder().interceptor(reads.clone()).build();
    Stage::new(
        "revenue",
        revenue(None),
        JsonDecoder::new(),
        MemoryResultSink::new(),
        MemoryDeadLetters::default(),
        aws_sdk_dynamodb::Client::from_conf(config),
        table,
        StageConfig::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn two_containers_alternating_on_one_shard_emit_the_uninterrupted_result() {
    let (client, table) = shardflow_testkit::state_table("warm-alternating").await;
    let reads = ItemsRead::default();
    let (a, b) = (container(&client, &table, &reads), container(&client, &table, &reads));
    for (i, from) in (0..300).step_by(30).enumerate() {
        let batch = event(SHARD, &purchases(from..from + 30));
        let c = if i % 2 == 0 { &a } else { &b };
        assert!(c.handle(batch).await.unwrap().batch_item_failures.is_empty());
        assert_eq!(
            c.warm_shards(),
            [SHARD],
            "the container keeps the shard it committed warm"
        );
    }
    // Each container found the other's commit on every batch after the first and reloaded: a
    // container that went on from its own memory would have missed the other's records.
    assert_eq!(distinct_results(&[&a, &b]), expected(0..300));
}

#[tokio::test]
async fn a_warm_container_reads_only_the_checkpoint_item_and_a_cold_one_every_key_group() {
    let (client, table) = shardflow_testkit::state_table("warm-reads").await;
    let reads = ItemsRead::default();
    let warm = container(&client, &table, &reads);
    warm.handle(event(SHARD, &purchases(0..30))).await.unwrap();
    reads.take();
    warm.handle(event(SHARD, &purchases(30..60))).await.unwrap();
    let warm_reads = reads.take();
    let cold = container(&client, &table, &reads).with_warm_state_budget(0);
    cold.handle(event(SHARD, &purchases(60..90))).await.unwrap();
    let cold_reads = reads.take();
    assert!(cold.warm_shards().is_empty(), "a zero budget keeps nothing");
    println!("items read per batch: warm {warm_reads:?}, cold {cold_reads:?}");
    assert_eq!(
        warm_reads,
        BTreeMap::from([("Query", 1)]),
        "one read of the shard's checkpoint item (the probe, which finds no progress item)"
    );
    assert_eq!(cold_reads.get("Query"), Some(&1), "the probe: {cold_reads:?}");
    assert_eq!(cold_reads.get("GetItem"), Some(&1), "the load: {cold_reads:?}");
    assert!(
        cold_reads.get("BatchGetItem").is_some_and(|n| *n >= 3),
        "a cold batch reads every live key group: {cold_reads:?}"
    );
    assert_eq!(distinct_results(&[&warm, &cold]), expected(0..90));
}
