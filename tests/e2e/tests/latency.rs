//! End-to-end latency of deployed stages at a steady rate, one deploy, two paths measured at the
//! same time from the same puts:
//!
//! - **receipts** (one stage): from a completed purchase's change put into the CDC stream
//!   (acknowledged by Kinesis) to its receipt visible in an SQS queue subscribed to the topic
//!   (the queue's `SentTimestamp`);
//! - **revenue** (two stages and the shuffle hop: `revenue-keyby` → shuffle stream →
//!   `revenue-shuffled`): from the put of the change that closes a revenue window to the
//!   window's row in the Postgres revenue table (the first poll that sees it; polls every
//!   [`POLL_EVERY`], so a row's time is late by at most that).
//!
//! Each tick of the steady rate puts, in one `PutRecords`, an order-line insert of a product of
//! its own and the completion of an order, both committed at the tick's event time. Event time
//! runs one revenue window (plus the watermarks' out-of-orderness) per tick, so each tick's put
//! moves the watermark past the window of the previous tick's line: that window's on-time pane is
//! due as soon as the put reaches `revenue-shuffled`, and its latency is put → row, as a
//! receipt's is put → message (receipts fire per element at once, whatever the event time). One
//! CDC shard and one shuffle shard, so that no other shard holds the watermark back.
//!
//! A measurement, not a check of speed: it asserts only that every receipt and every closed
//! window's row arrives, and prints the percentiles. Run it on purpose (LocalStack up,
//! functions packaged):
//!
//! ```sh
//! SHARDFLOW_LATENCY_RATE=5 SHARDFLOW_LATENCY_SECS=60 \
//!   cargo test -p shardflow-e2e --test latency -- --ignored --nocapture
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message as _;
use serde::Deserialize;
use shardflow_e2e::{deploy, require_function_zips, StackGuard};
use shardflow_kinesis::{KinesisProducer, KinesisTransport, ProducerConfig, StreamRecord};
use shardflow_schemas::{ChangeEvent, Entity, Op, Order, OrderLine, OrderStatus, Row, Source};
use shardflow_shop::pipelines::{OUT_OF_ORDERNESS_MS, REVENUE_WINDOW_MS};

/// How often the revenue table is polled for new rows.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// The first order id and product id of the run (far from the shop generator's).
const FIRST_ID: i64 = 1_000_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// The event time of tick `tick`: one revenue window per tick from the minute `start_ms` is in,
/// past the watermark's out-of-orderness, so tick `n + 1` closes the window of tick `n`.
fn tick_event_time(start_ms: i64, tick: u64) -> i64 {
    let first_window = start_ms - start_ms.rem_euclid(REVENUE_WINDOW_MS);
    first_window + tick as i64 * REVENUE_WINDOW_MS + OUT_OF_ORDERNESS_MS + 500
}

fn source(table: &str, ts_ms: i64) -> Option<Source> {
    Some(Source {
        connector: "postgresql".into(),
        db: "shop".into(),
        schema: "public".into(),
        table: table.into(),
        ts_ms,
        ..Default::default()
    })
}

/// An update that completes order `order_id`, committed at `ts_ms`.
fn completion(order_id: i64, ts_ms: i64) -> ChangeEvent {
    let order = |status: OrderStatus| Order {
        order_id,
        customer_id: order_id % 1_000,
        status: status as i32,
        total_cents: 1_999,
        currency: "EUR".into(),
        line_count: 1,
        created_at_ms: ts_ms - 60_000,
        updated_at_ms: ts_ms,
    };
    ChangeEvent {
        op: Op::Update as i32,
        before: Some(Row::from(Entity::Order(order(OrderStatus::Shipped)))),
        after: Some(Row::from(Entity::Order(order(OrderStatus::Completed)))),
        source: source("orders", ts_ms),
        ts_ms,
    }
}

/// The insert of order `order_id`'s one line, of product `product_id`, committed at `ts_ms`.
fn line_insert(order_id: i64, product_id: i64, ts_ms: i64) -> ChangeEvent {
    let line = OrderLine {
        order_id,
        line_no: 1,
        product_id,
        quantity: 1,
        unit_price_cents: 1_999,
        currency: "EUR".into(),
        created_at_ms: ts_ms,
    };
    ChangeEvent {
        op: Op::Create as i32,
        before: None,
        after: Some(Row::from(Entity::OrderLine(line))),
        source: source("order_lines", ts_ms),
        ts_ms,
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

fn summary(sorted: &[i64]) -> String {
    format!(
        "{} samples: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
        sorted.len(),
        percentile(sorted, 0.5),
        percentile(sorted, 0.9),
        percentile(sorted, 0.99),
        sorted.last().copied().unwrap_or_default()
    )
}

/// When each product's revenue row was first seen, and the pane it was seen with.
type FirstSeen = Arc<Mutex<HashMap<i64, (i64, String)>>>;

/// Polls `table` every [`POLL_EVERY`] until `stop` is set, recording in `seen` the first
/// sighting of each row of a product from [`FIRST_ID`] on: the time the poll started (the row
/// was committed before it).
async fn watch_revenue(table: String, seen: FirstSeen, stop: Arc<std::sync::atomic::AtomicBool>) {
    let client = shardflow_testkit::postgres().await;
    let sql = format!("SELECT product_id, pane FROM {table} WHERE product_id >= $1");
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let polled_at = now_ms();
        // the stage creates the table on its first start: until then the query fails
        if let Ok(rows) = client.query(&sql, &[&FIRST_ID]).await {
            let mut seen = seen.lock().expect("the watcher's map");
            for row in rows {
                let product: i64 = row.get(0);
                seen.entry(product).or_insert_with(|| (polled_at, row.get(1)));
            }
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it on purpose (see the module documentation)"]
async fn receipts_and_revenue_latency_at_a_steady_rate() {
    require_function_zips(&shardflow_e2e::shop::FUNCTIONS);
    let rate = env_or("SHARDFLOW_LATENCY_RATE", 5);
    let secs = env_or("SHARDFLOW_LATENCY_SECS", 60);
    let stack = shardflow_testkit::unique_name("latency");
    let revenue_table = stack.replace('-', "_");
    let outputs = deploy(
        &stack,
        "infra/template.yaml",
        &[
            ("Architecture", "x86_64"),
            ("DatabaseUrl", &shardflow_testkit::postgres_url()),
            ("RevenueTable", &revenue_table),
            ("ChangesShardCount", "1"),
            ("RevenueShuffleShardCount", "1"),
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

    let seen: FirstSeen = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = tokio::spawn(watch_revenue(revenue_table.clone(), seen.clone(), stop.clone()));

    // one PutRecords per tick (a line and a completion), acknowledged before the next
    let producer = KinesisProducer::new(
        KinesisTransport::new(shardflow_testkit::kinesis(), &stream),
        ProducerConfig::default(),
    );
    let ticks = rate * secs;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let start_ms = now_ms();
    let mut acked_orders: HashMap<i64, i64> = HashMap::new();
    let mut tick_acked = Vec::with_capacity(ticks as usize);
    let started = Instant::now();
    for tick in 0..ticks {
        let id = FIRST_ID + tick as i64;
        let ts_ms = tick_event_time(start_ms, tick);
        producer
            .send(StreamRecord::new(
                format!("order_lines:{id}"),
                line_insert(id, id, ts_ms).encode_to_vec(),
            ))
            .await
            .expect("put the line");
        producer
            .send(StreamRecord::new(
                format!("orders:{id}"),
                completion(id, ts_ms).encode_to_vec(),
            ))
            .await
            .expect("put the completion");
        producer.flush().await.expect("acknowledged");
        let acked = now_ms();
        acked_orders.insert(id, acked);
        tick_acked.push(acked);
        let next = period * (tick as u32 + 1);
        if let Some(wait) = next.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    let put_secs = started.elapsed().as_secs_f64();

    // every receipt, with the time SQS received it
    let mut receipts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !acked_orders.is_empty() && Instant::now() < deadline {
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
            let put = acked_orders
                .remove(&receipt.value.order_id)
                .expect("one receipt per order");
            receipts.push(sent - put);
            if let Some(h) = m.receipt_handle() {
                let _ = sqs.delete_message().queue_url(&queue).receipt_handle(h).send().await;
            }
        }
    }
    assert!(acked_orders.is_empty(), "{} orders got no receipt", acked_orders.len());

    // every window closed by a later tick (all but the last tick's), timed from that tick's put
    let closed = ticks.saturating_sub(1) as usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.lock().expect("the watcher's map").len() < closed && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.await.expect("the revenue watcher");
    let seen = seen.lock().expect("the watcher's map").clone();
    let mut revenue = Vec::with_capacity(closed);
    let mut panes: HashMap<String, usize> = HashMap::new();
    for (tick, closing_put) in tick_acked.iter().enumerate().skip(1) {
        let product = FIRST_ID + tick as i64 - 1;
        let Some((first_seen, pane)) = seen.get(&product) else {
            continue;
        };
        revenue.push(first_seen - closing_put);
        *panes.entry(pane.clone()).or_default() += 1;
    }
    assert_eq!(revenue.len(), closed, "every closed window's row reaches Postgres");

    receipts.sort_unstable();
    revenue.sort_unstable();
    println!("{ticks} ticks put at {rate}/s ({put_secs:.1} s), one CDC shard, one shuffle shard");
    println!(
        "receipts (1 stage, put -> SQS):                       {}",
        summary(&receipts)
    );
    println!(
        "revenue (2 stages + shuffle hop, put -> Postgres row): {} (first seen as: {panes:?})",
        summary(&revenue)
    );
    println!(
        "revenue - receipts at p50: {} ms",
        percentile(&revenue, 0.5) - percentile(&receipts, 0.5)
    );
}
