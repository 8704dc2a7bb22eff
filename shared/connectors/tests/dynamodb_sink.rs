//! `DynamoDbSink` against the DynamoDB of LocalStack: one item per key and window, the latest
//! pane kept whatever the order of deliveries, an oversized item refused.

mod common;

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use common::{pane, Count};
use shardflow_connectors::{
    create_upsert_table, DynamoDbItemError, DynamoDbSink, DynamoDbSinkConfig, ITEM_RESULT_ID_ATTRIBUTE,
    PANE_INDEX_ATTRIBUTE,
};
use shardflow_stage::ResultSink;

const START: i64 = 1_795_651_200_000;

async fn table(prefix: &str) -> (aws_sdk_dynamodb::Client, String) {
    let client = shardflow_testkit::dynamodb();
    let table = shardflow_testkit::unique_name(prefix);
    create_upsert_table(&client, &table).await.expect("create the table");
    (client, table)
}

fn sink(client: &aws_sdk_dynamodb::Client, table: &str) -> DynamoDbSink<Count> {
    DynamoDbSink::new(
        client.clone(),
        DynamoDbSinkConfig::new(table, |c: &Count| c.key.clone()),
    )
}

/// Every item of `table`, by (pk, sk).
async fn items(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> HashMap<(String, String), HashMap<String, AttributeValue>> {
    let scan = client
        .scan()
        .table_name(table)
        .consistent_read(true)
        .send()
        .await
        .expect("Scan");
    scan.items()
        .iter()
        .map(|item| {
            let s = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned().expect("a key");
            ((s("pk"), s("sk")), item.clone())
        })
        .collect()
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> i64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name} is not a number in {item:?}"))
}

fn window_sk(start: i64) -> String {
    format!("{start:016}-{:016}", start + 60_000)
}

#[tokio::test]
async fn panes_in_order_leave_each_windows_latest_pane() {
    let (client, table) = table("ddb-in-order").await;
    let sink = sink(&client, &table);
    for p in 0..3 {
        sink.emit(&[
            pane("a", START, p, 10 + i64::from(p)),
            pane("b", START, p, 20 + i64::from(p)),
        ])
        .await
        .expect("emit");
    }
    sink.emit(&[pane("a", START + 60_000, 0, 7)])
        .await
        .expect("next window");
    let stored = items(&client, &table).await;
    assert_eq!(stored.len(), 3, "one item per key and window: {stored:?}");
    let a = &stored[&("a".to_owned(), window_sk(START))];
    assert_eq!((number(a, "count"), number(a, PANE_INDEX_ATTRIBUTE)), (12, 2));
    assert_eq!(
        a[ITEM_RESULT_ID_ATTRIBUTE].as_s().ok(),
        Some(&common::id_of("a", START, 2).to_hex())
    );
    assert_eq!(number(&stored[&("b".to_owned(), window_sk(START))], "count"), 22);
    assert_eq!(
        number(&stored[&("a".to_owned(), window_sk(START + 60_000))], "count"),
        7
    );
}

#[tokio::test]
async fn an_older_pane_delivered_after_a_newer_one_changes_nothing() {
    let (client, table) = table("ddb-out-of-order").await;
    let sink = sink(&client, &table);
    // Pane 2 first, then panes 0 and 1 (a stale invocation, or a redelivered older batch), then
    // one batch holding panes 1 and 3 of b out of order.
    sink.emit(&[pane("a", START, 2, 12)]).await.expect("pane 2");
    sink.emit(&[pane("a", START, 0, 10)]).await.expect("pane 0");
    sink.emit(&[pane("a", START, 1, 11)]).await.expect("pane 1");
    sink.emit(&[pane("b", START, 3, 23), pane("b", START, 1, 21)])
        .await
        .expect("b");
    let stored = items(&client, &table).await;
    let a = &stored[&("a".to_owned(), window_sk(START))];
    assert_eq!((number(a, "count"), number(a, PANE_INDEX_ATTRIBUTE)), (12, 2));
    let b = &stored[&("b".to_owned(), window_sk(START))];
    assert_eq!((number(b, "count"), number(b, PANE_INDEX_ATTRIBUTE)), (23, 3));
}

#[tokio::test]
async fn a_redelivered_batch_leaves_the_table_unchanged() {
    let (client, table) = table("ddb-redelivered").await;
    let sink = sink(&client, &table);
    let batch: Vec<_> = (0..25).map(|i| pane(&format!("k{i}"), START, 1, i)).collect();
    sink.emit(&batch).await.expect("first");
    let before = items(&client, &table).await;
    sink.emit(&batch).await.expect("redelivery");
    sink.emit(&batch[3..9]).await.expect("partial redelivery");
    assert_eq!(items(&client, &table).await, before);
    assert_eq!(before.len(), 25);
}

#[tokio::test]
async fn an_item_over_400_kb_fails_the_emit_with_a_typed_error_and_writes_nothing() {
    let (client, table) = table("ddb-too-large").await;
    // Keyed by the count, so that the oversized field is an attribute, not the key.
    let sink = DynamoDbSink::new(
        client.clone(),
        DynamoDbSinkConfig::new(&table, |c: &Count| format!("n{}", c.count)),
    );
    let mut big = pane("big", START, 0, 2);
    big.value.key = "k".repeat(401 * 1024);
    assert!(matches!(sink.item(&big), Err(DynamoDbItemError::TooLarge { .. })));
    let small = pane("small", START, 0, 1);
    let err = sink
        .emit(&[small, big])
        .await
        .expect_err("an oversized item fails the emit");
    assert!(err.message.contains("over DynamoDB's limit"), "{err}");
    assert!(
        items(&client, &table).await.is_empty(),
        "nothing of the failed emit was written"
    );
}
