//! `SqsSink` against the SQS of LocalStack: a FIFO queue receives each result once when a batch
//! is emitted twice; a standard queue's messages carry the result id.

mod common;

use std::collections::BTreeSet;

use common::{drain_queue, queue, results, Count};
use shardflow_connectors::{ResultMessage, SqsSink, SqsSinkConfig, RESULT_ID_ATTRIBUTE};
use shardflow_stage::ResultSink;

#[tokio::test]
async fn a_fifo_queue_receives_each_result_once_when_a_batch_is_emitted_twice() {
    let sqs = shardflow_testkit::sqs();
    let (url, _) = queue(&sqs, "sqs-sink-fifo", true).await;
    let sink = SqsSink::new(
        sqs.clone(),
        SqsSinkConfig::new(&url).message_group(|o: &shardflow_engine::Output<Count>| o.value.key.clone()),
    );
    let outputs = results(23);
    sink.emit(&outputs).await.expect("first emit");
    sink.emit(&outputs).await.expect("redelivered emit");
    let messages = drain_queue(&sqs, &url, outputs.len()).await;
    assert_eq!(messages.len(), outputs.len(), "each result exactly once");
    let values: BTreeSet<i64> = messages
        .iter()
        .map(|m| {
            let body: ResultMessage<Count> = serde_json::from_str(m.body().expect("a body")).expect("a result message");
            body.value.count
        })
        .collect();
    assert_eq!(values, (0..23).collect());
}

#[tokio::test]
async fn a_standard_queues_messages_carry_the_result_id() {
    let sqs = shardflow_testkit::sqs();
    let (url, _) = queue(&sqs, "sqs-sink-std", false).await;
    let sink = SqsSink::new(sqs.clone(), SqsSinkConfig::new(&url));
    let outputs = results(12);
    sink.emit(&outputs).await.expect("emit");
    let messages = drain_queue(&sqs, &url, outputs.len()).await;
    let ids: BTreeSet<String> = messages
        .iter()
        .map(|m| {
            let attribute = m
                .message_attributes()
                .and_then(|a| a.get(RESULT_ID_ATTRIBUTE))
                .and_then(|v| v.string_value())
                .expect("the result id attribute")
                .to_owned();
            let body: ResultMessage<Count> = serde_json::from_str(m.body().expect("a body")).expect("a result message");
            assert_eq!(body.id, attribute);
            attribute
        })
        .collect();
    assert_eq!(ids, outputs.iter().map(|o| o.id.to_hex()).collect());
}
