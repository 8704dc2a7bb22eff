//! End-to-end latency of a deployed stage at a steady rate: `receipts`, from a completed
//! purchase's change put into the CDC stream (acknowledged by Kinesis) to its receipt visible in
//! an SQS queue subscribed to the topic (the queue's `SentTimestamp`).
//!
//! A measurement, not a check of speed: it asserts only that every receipt arrives once, and
//! prints the percentiles. Run it on purpose (LocalStack up, functions packaged):
//!
//! ```sh
//! SHARDFLOW_LATENCY_RATE=20 SHARDFLOW_LATENCY_SECS=60 \
//!   cargo test --release -p shardflow-e2e --test latency -- --ignored --nocapture
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message as _;
use serde::Deserialize;
use shardflow_e2e::{deploy, require_function_zips, StackGuard};
use shardflow_kinesis::{KinesisProducer, KinesisTransport, ProducerConfig, StreamRecord};
use shardflow_schemas::{ChangeEvent, Entity, Op, Order, OrderStatus, Row, Source};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// An update that completes order `order_id` now.
fn completion(order_id: i64) -> ChangeEvent {
    let now = now_ms();
    let order = |status: OrderStatus| Order {
        order_id,
        customer_id: order_id % 1_000,
        status: status as i32,
        total_cents: 1_999,
        currency: "EUR".into(),
        line_count: 1,
        created_at_ms: now - 60_000,
        updated_at_ms: now,
    };
    ChangeEvent {
        op: Op::Update as i32,
        before: Some(Row::from(Entity::Order(order(OrderStatus::Shipped)))),
        after: Some(Row::from(Entity::Order(order(OrderStatus::Completed)))),
        source: Some(Source {
            connector: "postgresql".into(),
            db: "shop".into(),
            schema: "public".into(),
            table: "orders".into(),
            ts_ms: now,
            ..Default::default()
        }),
        ts_ms: now,
    }
}

#[derive(Debug, Deserialize)]
struct ReceiptMessage {
    value: ReceiptValue,
}

#[derive(Debug, Deserialize)]
struct ReceiptValue {
    order_id: i64,
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it on purpose (see the module documentation)"]
async fn receipts_latency_at_a_steady_rate() {
    require_function_zips(&shardflow_e2e::shop::FUNCTIONS);
    let rate = env_or("SHARDFLOW_LATENCY_RATE", 20);
    let secs = env_or("SHARDFLOW_LATENCY_SECS", 60);
    let stack = shardflow_testkit::unique_name("latency");
    let outputs = deploy(
        &stack,
        "infra/template.yaml",
        &[
            ("Architecture", "x86_64"),
            ("DatabaseUrl", &shardflow_testkit::postgres_url()),
            ("RevenueTable", &stack.replace('-', "_")),
        ],
    );
    let _guard = StackGuard(stack.clone());
    let stream = outputs["ChangesStreamName"].clone();
    let sqs = shardflow_testkit::sqs();
    let queue_name = shardflow_testkit::unique_name("latency-receipts");
    let queue = sqs
        .create_queue()
        .queue_name(&queue_name)
        .send()
        .await
        .expect("create the queue")
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    shardflow_testkit::sns()
        .subscribe()
        .topic_arn(&outputs["ReceiptsTopicArn"])
        .protocol("sqs")
        .endpoint(format!("arn:aws:sqs:us-east-1:000000000000:{queue_name}"))
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("subscribe");

    // one record per put, acknowledged before the next, at a steady rate
    let producer = KinesisProducer::new(
        KinesisTransport::new(shardflow_testkit::kinesis(), &stream),
        ProducerConfig::default(),
    );
    let total = rate * secs;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut acked: HashMap<i64, i64> = HashMap::new();
    let started = Instant::now();
    for i in 0..total {
        let order_id = 1_000_000 + i as i64;
        let event = completion(order_id);
        producer
            .send(StreamRecord::new(format!("orders:{order_id}"), event.encode_to_vec()))
            .await
            .expect("put");
        producer.flush().await.expect("acknowledged");
        acked.insert(order_id, now_ms());
        let next = period * (i as u32 + 1);
        if let Some(wait) = next.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    let put_secs = started.elapsed().as_secs_f64();

    // every receipt, with the time SQS received it
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while latencies.len() < total as usize && Instant::now() < deadline {
        let out = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .expect("receive");
        for m in out.messages() {
            let receipt: ReceiptMessage = serde_json::from_str(m.body().unwrap_or_default()).expect("a receipt");
            let sent: i64 = m
                .attributes()
                .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp))
                .and_then(|v| v.parse().ok())
                .expect("SentTimestamp");
            let put = acked.remove(&receipt.value.order_id).expect("one receipt per order");
            latencies.push(sent - put);
            if let Some(h) = m.receipt_handle() {
                let _ = sqs.delete_message().queue_url(&queue).receipt_handle(h).send().await;
            }
        }
    }
    assert!(acked.is_empty(), "{} orders got no receipt", acked.len());
    latencies.sort_unstable();
    println!(
        "receipts end-to-end latency over {} records put at {rate}/s ({put_secs:.1} s): \
         p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
}
