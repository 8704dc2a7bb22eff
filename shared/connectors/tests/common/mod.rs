//! Results to emit in the sinks' integration tests, and helpers to read destinations back.
#![allow(dead_code)]

use serde::{Deserialize, Serialize};
use shardflow_engine::{Output, PaneInfo, PaneTiming, ResultId, Window};

/// A window result's value: a key and a count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    pub key: String,
    pub window_start: i64,
    pub count: i64,
}

/// The id a test gives to the pane `pane` of `key`'s window starting at `start` (distinct for
/// every triple, like the engine's ids).
pub fn id_of(key: &str, start: i64, pane: u32) -> ResultId {
    let mut h = 0xcbf2_9ce4_8422_2325_u128;
    for b in key.bytes().chain(start.to_le_bytes()).chain(pane.to_le_bytes()) {
        h = (h ^ u128::from(b)).wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    ResultId(h)
}

/// Pane `pane` of `key`'s 1-minute window starting at `start`, counting `count`.
pub fn pane(key: &str, start: i64, pane: u32, count: i64) -> Output<Count> {
    let window = Window::new(start, start + 60_000);
    Output {
        id: id_of(key, start, pane),
        timestamp: window.max_timestamp(),
        pane: Some((
            window,
            PaneInfo {
                timing: if pane == 0 {
                    PaneTiming::Early
                } else {
                    PaneTiming::OnTime
                },
                index: pane,
            },
        )),
        value: Count {
            key: key.to_owned(),
            window_start: start,
            count,
        },
    }
}

/// `n` on-time results of distinct keys, in the window starting 2026-11-26T00:00:00Z.
pub fn results(n: usize) -> Vec<Output<Count>> {
    (0..n)
        .map(|i| pane(&format!("key-{i}"), 1_795_651_200_000, 0, i as i64))
        .collect()
}

/// Every message of `queue_url`, received until `expected` arrived and then one more empty long
/// poll (to catch extra messages), each deleted once read.
pub async fn drain_queue(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    expected: usize,
) -> Vec<aws_sdk_sqs::types::Message> {
    let mut messages = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut empty_after_expected = 0;
    while std::time::Instant::now() < deadline {
        let batch = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .expect("ReceiveMessage");
        let received = batch.messages().to_vec();
        if received.is_empty() && messages.len() >= expected {
            empty_after_expected += 1;
            if empty_after_expected >= 2 {
                break;
            }
        }
        for m in received {
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle().expect("a receipt handle"))
                .send()
                .await
                .expect("DeleteMessage");
            messages.push(m);
        }
    }
    messages
}

/// A new SQS queue (FIFO if `fifo`) and its URL and ARN.
pub async fn queue(sqs: &aws_sdk_sqs::Client, prefix: &str, fifo: bool) -> (String, String) {
    let mut name = shardflow_testkit::unique_name(prefix);
    let mut create = sqs.create_queue();
    if fifo {
        name.push_str(".fifo");
        create = create.attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
    }
    let url = create
        .queue_name(name)
        .send()
        .await
        .expect("CreateQueue")
        .queue_url()
        .expect("a queue URL")
        .to_owned();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn).cloned())
        .expect("a queue ARN");
    (url, arn)
}

/// A new S3 bucket.
pub async fn bucket(s3: &aws_sdk_s3::Client, prefix: &str) -> String {
    let name = shardflow_testkit::unique_name(prefix).to_lowercase();
    s3.create_bucket().bucket(&name).send().await.expect("CreateBucket");
    name
}

/// Every object key under `prefix` of `bucket`.
pub async fn keys(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .expect("ListObjectsV2");
        keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        match page.next_continuation_token() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    keys.sort();
    keys
}

/// The bytes of an object.
pub async fn object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("GetObject")
        .body
        .collect()
        .await
        .expect("the object's body")
        .into_bytes()
        .to_vec()
}
