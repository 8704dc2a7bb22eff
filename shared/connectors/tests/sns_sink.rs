//! `SnsSink` against the SNS and SQS of LocalStack: a topic delivering raw messages to a queue.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{drain_queue, queue, results, Count};
use shardflow_connectors::{ResultMessage, SnsSink, SnsSinkConfig, RESULT_ID_ATTRIBUTE};
use shardflow_stage::ResultSink;

/// A topic (FIFO if `fifo`) subscribed by a new queue of the same kind with raw delivery.
async fn topic_to_queue(prefix: &str, fifo: bool) -> (String, String) {
    let sns = shardflow_testkit::sns();
    let sqs = shardflow_testkit::sqs();
    let (queue_url, queue_arn) = queue(&sqs, prefix, fifo).await;
    let mut name = shardflow_testkit::unique_name(prefix);
    let mut create = sns.create_topic();
    if fifo {
        name.push_str(".fifo");
        create = create.attributes("FifoTopic", "true");
    }
    let topic_arn = create
        .name(name)
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn()
        .expect("a topic ARN")
        .to_owned();
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn)
        .attributes("RawMessageDelivery", "true")
        .return_subscription_arn(true)
        .send()
        .await
        .expect("Subscribe");
    (topic_arn, queue_url)
}

#[tokio::test]
async fn a_fifo_topic_delivers_each_result_once_when_a_batch_is_emitted_twice() {
    let (topic_arn, queue_url) = topic_to_queue("sns-fifo", true).await;
    let sink = SnsSink::new(
        shardflow_testkit::sns(),
        SnsSinkConfig::new(&topic_arn)
            .message_group(|o: &shardflow_engine::Output<Count>| format!("group-{}", o.value.count % 3)),
    );
    let outputs = results(23);
    sink.emit(&outputs).await.expect("first emit");
    sink.emit(&outputs).await.expect("redelivered emit");

    let messages = drain_queue(&shardflow_testkit::sqs(), &queue_url, outputs.len()).await;
    assert_eq!(messages.len(), outputs.len(), "each result exactly once");
    let mut received = BTreeMap::new();
    for m in &messages {
        let body: ResultMessage<Count> = serde_json::from_str(m.body().expect("a body")).expect("a result message");
        let group = m
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId))
            .cloned();
        assert_eq!(
            group,
            Some(format!("group-{}", body.value.count % 3)),
            "the group of the user function"
        );
        received.insert(body.id.clone(), body);
    }
    let expected: BTreeMap<String, Count> = outputs.iter().map(|o| (o.id.to_hex(), o.value.clone())).collect();
    assert_eq!(
        received
            .into_iter()
            .map(|(id, m)| (id, m.value))
            .collect::<BTreeMap<_, _>>(),
        expected
    );
}

#[tokio::test]
async fn a_standard_topic_labels_every_message_with_its_result_id() {
    let (topic_arn, queue_url) = topic_to_queue("sns-std", false).await;
    let sink = SnsSink::new(shardflow_testkit::sns(), SnsSinkConfig::new(&topic_arn));
    let outputs = results(12);
    sink.emit(&outputs).await.expect("first emit");
    sink.emit(&outputs).await.expect("redelivered emit");

    // A standard topic cannot deduplicate: both deliveries arrive, and the attribute lets the
    // consumer keep one of each.
    let messages = drain_queue(&shardflow_testkit::sqs(), &queue_url, 2 * outputs.len()).await;
    assert_eq!(messages.len(), 2 * outputs.len());
    let mut distinct = BTreeSet::new();
    for m in &messages {
        let body: ResultMessage<Count> = serde_json::from_str(m.body().expect("a body")).expect("a result message");
        let attribute = m
            .message_attributes()
            .and_then(|a| a.get(RESULT_ID_ATTRIBUTE))
            .and_then(|v| v.string_value())
            .expect("the result-id attribute");
        assert_eq!(attribute, body.id, "the attribute names the message's result");
        distinct.insert(body.id);
    }
    let expected: BTreeSet<String> = outputs.iter().map(|o| o.id.to_hex()).collect();
    assert_eq!(distinct, expected);
}
