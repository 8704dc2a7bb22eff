//! The shop's input, the embedded runner's expected results, and the clients' chores shared by
//! the end-to-end tests.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use shardflow_connectors::ResultMessage;
use shardflow_kinesis::{KinesisProducer, KinesisTransport, ProducerConfig, StreamRecord};
use shardflow_local::{IterInput, LocalRunner};
use shardflow_schemas::{ChangeEvent, Customer, Entity, Op, Row};
use shardflow_shop::pipelines::{
    order_enrich, receipts, receipts_next, revenue, EnrichInput, EnrichedOrder, Receipt, ReceiptNext, RevenueRow,
    ENRICH_SESSION_GAP_MS, OUT_OF_ORDERNESS_MS,
};
use shardflow_shop::{ShopConfig, ShopGenerator};

/// Change events generated (`SHARDFLOW_E2E_EVENTS` overrides).
pub const EVENTS: u64 = 3_000;
/// The generator's seed.
pub const SEED: u64 = 7;
/// The shop's order rate in event time (`SHARDFLOW_E2E_ORDERS_PER_SEC` overrides): slow enough
/// that a short input spans several minutes, so orders complete and windows close within it.
pub const ORDERS_PER_SEC: f64 = 1.0;
/// The functions of the template.
pub const FUNCTIONS: [&str; 6] = [
    "receipts",
    "revenue-keyby",
    "revenue-shuffled",
    "order-enrich-keyby",
    "order-enrich-shuffled",
    "archive",
];
/// The functions of the template that read a shuffle stream, with the stack output naming it:
/// a redelivered batch of theirs is one of their shuffle stream's.
pub const SHUFFLED_FUNCTIONS: [(&str, &str); 2] = [
    ("revenue-shuffled", "RevenueShuffleStream"),
    ("order-enrich-shuffled", "EnrichShuffleStream"),
];
/// How long outputs may take to appear.
pub const DEADLINE: Duration = Duration::from_secs(240);
/// The bytes of the malformed record (not a Protobuf `ChangeEvent`: field 1 with wire type 7).
pub const MALFORMED: &[u8] = b"\x0f\xff\xffnot a change event";

/// A line of the embedded runner's result files.
#[derive(Debug, Deserialize)]
pub struct ResultLine<T> {
    /// The result's id.
    pub id: String,
    /// The result's event time.
    pub ts: i64,
    /// The result.
    pub value: T,
}

/// What the embedded runner computed.
pub struct Expected {
    /// The receipts.
    pub receipts: Vec<ResultLine<Receipt>>,
    /// The final revenue per (product, currency, window start): (cents, orders).
    pub revenue: BTreeMap<(i64, String, i64), (i64, u64)>,
    /// The final pane's timing per (product, currency, window start): `early`, `on_time`, `late`.
    pub revenue_panes: BTreeMap<(i64, String, i64), String>,
    /// The enriched orders.
    pub enriched: Vec<ResultLine<EnrichedOrder>>,
    /// Late records per pipeline.
    pub late: HashMap<String, u64>,
}

/// The generated shop changes (one shard, in arrival order).
pub fn generate() -> Vec<ChangeEvent> {
    let events = std::env::var("SHARDFLOW_E2E_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(EVENTS);
    generate_events(events)
}

/// `events` generated shop changes (one shard, in arrival order).
pub fn generate_events(events: u64) -> Vec<ChangeEvent> {
    let rate = std::env::var("SHARDFLOW_E2E_ORDERS_PER_SEC")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ORDERS_PER_SEC);
    generate_at(events, rate)
}

/// `events` generated shop changes at `orders_per_sec` orders per second of event time (one
/// shard, in arrival order).
pub fn generate_at(events: u64, orders_per_sec: f64) -> Vec<ChangeEvent> {
    let mut config = ShopConfig::new(SEED, events, 1);
    config.orders_per_sec = orders_per_sec;
    let mut generator = ShopGenerator::new(config);
    std::iter::from_fn(|| generator.next_event().map(|(_, e)| e)).collect()
}

/// `events` generated shop changes with no late change: none is delayed beyond the generator's
/// normal jitter (2 s). Put a call at a time ([`put_records_in_order`]), each shard's records,
/// under any sharding, come in nearly this order (a call's retried records trail it by at most a
/// call), far within the receipts' allowed lateness, so no receipt depends on how the stream is
/// sharded.
pub fn generate_on_time(events: u64) -> Vec<ChangeEvent> {
    generate_on_time_at(events, ORDERS_PER_SEC)
}

/// As [`generate_on_time`], at `orders_per_sec` orders per second of event time.
pub fn generate_on_time_at(events: u64, orders_per_sec: f64) -> Vec<ChangeEvent> {
    let mut config = ShopConfig::new(SEED, events, 1);
    config.orders_per_sec = orders_per_sec;
    config.late_fraction = 0.0;
    config.too_late_fraction = 0.0;
    let mut generator = ShopGenerator::new(config);
    std::iter::from_fn(|| generator.next_event().map(|(_, e)| e)).collect()
}

/// `events` generated shop changes with none later than the allowed lateness (the generator's
/// late ones, 70–250 s behind, stay and update their windows in late panes). Whether a change
/// beyond the allowed lateness is dropped depends on how the shards of a sharded stream
/// interleave; without them, every window's final totals do not.
pub fn generate_within_lateness(events: u64) -> Vec<ChangeEvent> {
    let mut config = ShopConfig::new(SEED, events, 1);
    config.orders_per_sec = ORDERS_PER_SEC;
    config.too_late_fraction = 0.0;
    let mut generator = ShopGenerator::new(config);
    std::iter::from_fn(|| generator.next_event().map(|(_, e)| e)).collect()
}

/// A change far later in event time than the input, which moves every stage's watermark past
/// every window of the input (a Lambda stage's windows close on data, not on the end of input).
/// It is an update of a customer no order refers to, so it adds no result of its own.
pub fn watermark_mover(events: &[ChangeEvent]) -> ChangeEvent {
    let last = events.iter().map(ChangeEvent::event_time).max().unwrap_or(0);
    customer_touch(events, last + 3 * 60 * 60_000)
}

/// An update at event time `ts` of a customer no order of `events` refers to: a change that
/// moves a stage's watermark to `ts` (less its bound) and adds no result of its own.
pub fn customer_touch(events: &[ChangeEvent], ts: i64) -> ChangeEvent {
    let customer = Customer {
        customer_id: 999_999_999,
        name: "watermark".into(),
        email: "watermark@example.com".into(),
        country: "NL".into(),
        created_at_ms: ts,
        updated_at_ms: ts,
        ..Default::default()
    };
    let row = Row::from(Entity::Customer(customer));
    let mut source = events.last().and_then(|e| e.source.clone()).unwrap_or_default();
    source.table = "customers".into();
    source.ts_ms = ts;
    ChangeEvent {
        op: Op::Update as i32,
        before: Some(row.clone()),
        after: Some(row),
        source: Some(source),
        ts_ms: ts,
    }
}

/// The open shards of `stream`, by starting hash key: (id, first hash key, last hash key).
pub async fn open_shards(stream: &str) -> Vec<(String, u128, u128)> {
    let listed = shardflow_testkit::kinesis()
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("list shards");
    let mut shards: Vec<(String, u128, u128)> = listed
        .shards()
        .iter()
        .filter(|s| {
            s.sequence_number_range()
                .is_none_or(|r| r.ending_sequence_number().is_none())
        })
        .map(|s| {
            let range = s.hash_key_range().expect("a hash key range");
            (
                s.shard_id().to_owned(),
                range.starting_hash_key().parse().expect("a hash key"),
                range.ending_hash_key().parse().expect("a hash key"),
            )
        })
        .collect();
    shards.sort_by_key(|s| s.1);
    shards
}

/// The first partition key `{prefix}{n}` whose hash lands in `[low, high]`.
pub fn key_in(prefix: &str, low: u128, high: u128) -> String {
    (0..)
        .map(|n| format!("{prefix}{n}"))
        .find(|k| (low..=high).contains(&shardflow_lambda::hash_key(k)))
        .expect("a partition key in every range")
}

/// The [`watermark_mover`] of `events` once for every open shard of `stream` (partition keys
/// that land in each): every shard's stages, and every upstream shard of a shuffled stage, see
/// their watermark pass the input.
pub async fn movers_for_every_shard(stream: &str, events: &[ChangeEvent]) -> Vec<(String, Vec<u8>)> {
    let mover = shardflow_gen::shop::encode(&watermark_mover(events), shardflow_gen::shop::ShopFormat::Protobuf)
        .expect("encode the mover")
        .1;
    open_shards(stream)
        .await
        .iter()
        .map(|(_, low, high)| (key_in("watermark-", *low, *high), mover.clone()))
        .collect()
}

/// The upstream stages of the template's shuffles: each CDC shard's first record reaches the
/// shuffled stages through them.
pub const UPSTREAM_STAGES: [&str; 2] = ["revenue-keyby", "order-enrich-keyby"];

/// Registers every open shard of `stream` downstream of the shuffles before the input flows: one
/// [`customer_touch`] per shard at a minute before `events` (no result of its own), then waits
/// until each of `upstreams` (of [`UPSTREAM_STAGES`]: those running) committed it (`state`: the
/// stack's state table).
/// A CDC shard first heard of later would join a watermark the other shards already moved, as it
/// would in one engine fed the shards in that order, and its first rows could be late there
/// (order-enrich allows no lateness). Returns the records it put.
pub async fn register_every_shard(
    stream: &str,
    state: &str,
    events: &[ChangeEvent],
    upstreams: &[&str],
) -> Vec<Vec<u8>> {
    let first = events.iter().map(ChangeEvent::event_time).min().unwrap_or(0);
    let touch = shardflow_gen::shop::encode(
        &customer_touch(events, first - 60_000),
        shardflow_gen::shop::ShopFormat::Protobuf,
    )
    .expect("encode the registration")
    .1;
    let registrations: Vec<(String, Vec<u8>)> = open_shards(stream)
        .await
        .iter()
        .map(|(_, low, high)| (key_in("register-", *low, *high), touch.clone()))
        .collect();
    let put: Vec<Vec<u8>> = registrations.iter().map(|(_, d)| d.clone()).collect();
    let started = Instant::now();
    put_records_in_order(stream, registrations).await;
    for upstream in upstreams {
        caught_up(upstream, state, stream, put.len(), started).await;
    }
    put
}

/// The lines of an embedded runner's result file.
pub fn read_lines<T: DeserializeOwned>(path: &std::path::Path) -> Vec<ResultLine<T>> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

/// The three pipelines over the input as one shard, in the embedded runner.
pub async fn embedded(events: &[ChangeEvent]) -> Expected {
    let out = tempfile::tempdir().expect("a temporary directory");
    let mut input = IterInput::from_vecs(vec![events.to_vec()]);
    let summary = LocalRunner::new(out.path())
        .fsync(false)
        .job(receipts())
        .job(revenue())
        .job(order_enrich())
        .run(&mut input)
        .await
        .expect("the embedded run");
    let late = summary
        .pipelines
        .iter()
        .map(|p| (p.pipeline.clone(), p.late_records))
        .collect();
    let mut revenue = BTreeMap::new();
    let mut revenue_panes = BTreeMap::new();
    for line in read_lines::<RevenueRow>(&out.path().join("revenue.jsonl")) {
        let r = line.value;
        // accumulating panes: the last pane of a window holds its totals
        let key = (r.product_id, r.currency, r.window_start_ms);
        revenue_panes.insert(key.clone(), r.pane);
        revenue.insert(key, (r.revenue_cents, r.order_count));
    }
    Expected {
        receipts: read_lines(&out.path().join("receipts.jsonl")),
        revenue,
        revenue_panes,
        enriched: read_lines(&out.path().join("enriched_orders.jsonl")),
        late,
    }
}

/// The receipts of the next release of the receipts pipeline (`receipts_next`) over the input as
/// one shard, in the embedded runner.
pub async fn embedded_receipts_next(events: &[ChangeEvent]) -> Vec<ResultLine<ReceiptNext>> {
    let out = tempfile::tempdir().expect("a temporary directory");
    let mut input = IterInput::from_vecs(vec![events.to_vec()]);
    LocalRunner::new(out.path())
        .fsync(false)
        .job(receipts_next())
        .run(&mut input)
        .await
        .expect("the embedded run of receipts_next");
    read_lines(&out.path().join("receipts.jsonl"))
}

/// Puts `records` (partition key, data) into `stream` and waits for their acknowledgement.
pub async fn put_records(stream: &str, records: Vec<(String, Vec<u8>)>) {
    let producer = KinesisProducer::new(
        KinesisTransport::new(shardflow_testkit::kinesis(), stream),
        ProducerConfig::default(),
    );
    for (key, data) in records {
        producer.send(StreamRecord::new(key, data)).await.expect("put a record");
    }
    producer.flush().await.expect("flush the producer");
}

/// Puts `records` into `stream` in their order: one `PutRecords` call at a time, so that the
/// records of one call are stored before the next call's, and a record whose partition key came
/// before only once everything before it is stored (the producer puts one record per key in a
/// call and would send the records after a repeated key ahead of it). Within a call, records the
/// stream refused are retried after the others.
pub async fn put_records_in_order(stream: &str, records: Vec<(String, Vec<u8>)>) {
    let config = ProducerConfig {
        calls_in_flight: 1,
        ..ProducerConfig::default()
    };
    let producer = KinesisProducer::new(KinesisTransport::new(shardflow_testkit::kinesis(), stream), config);
    let mut keys: HashSet<String> = HashSet::new();
    for (key, data) in records {
        if !keys.insert(key.clone()) {
            producer.flush().await.expect("flush the producer");
            keys.clear();
            keys.insert(key.clone());
        }
        producer.send(StreamRecord::new(key, data)).await.expect("put a record");
    }
    producer.flush().await.expect("flush the producer");
}

/// Polls `check` until it returns `Some`, or panics with `what` after the deadline.
pub async fn eventually<T, F, Fut>(what: &str, started: Instant, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    loop {
        match check().await {
            Ok(v) => return v,
            Err(state) if started.elapsed() > DEADLINE => {
                panic!("{what} did not happen within {DEADLINE:?}; last state: {state}")
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
}

/// Every message in `queue` so far (received and deleted), appended to `into`.
pub async fn drain_queue(sqs: &aws_sdk_sqs::Client, queue: &str, into: &mut Vec<String>) {
    loop {
        let out = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive messages");
        if out.messages().is_empty() {
            return;
        }
        for m in out.messages() {
            into.push(m.body().unwrap_or_default().to_owned());
            if let Some(handle) = m.receipt_handle() {
                sqs.delete_message()
                    .queue_url(queue)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .expect("delete a message");
            }
        }
    }
}

/// Drains `queue` until it gave at least `want` messages, or panics after the deadline.
pub async fn drain_until(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    want: usize,
    what: &str,
    started: Instant,
) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        drain_queue(sqs, queue, &mut bodies).await;
        if bodies.len() >= want {
            return bodies;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{what}: {} of {want} messages within {DEADLINE:?}",
            bodies.len()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// A queue subscribed to `topic` with raw message delivery.
pub async fn subscribe_queue(topic: &str) -> String {
    let sqs = shardflow_testkit::sqs();
    let name = shardflow_testkit::unique_name("receipts");
    let url = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .expect("create the receipts queue")
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    let arn = format!("arn:aws:sqs:us-east-1:000000000000:{name}");
    shardflow_testkit::sns()
        .subscribe()
        .topic_arn(topic)
        .protocol("sqs")
        .endpoint(arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("subscribe the queue to the topic");
    url
}

/// The revenue table's rows: (product, currency, window start) -> (cents, orders); empty while the table does not exist.
pub async fn revenue_rows(table: &str) -> BTreeMap<(i64, String, i64), (i64, u64)> {
    let client = shardflow_testkit::postgres().await;
    let sql = format!("SELECT product_id, currency, window_start_ms, revenue_cents, order_count FROM {table}");
    match client.query(&sql, &[]).await {
        Ok(rows) => rows
            .iter()
            .map(|r| {
                let count: i64 = r.get(4);
                (
                    (r.get(0), r.get(1), r.get(2)),
                    (r.get(3), u64::try_from(count).unwrap_or_default()),
                )
            })
            .collect(),
        // the stage creates the table on its first start
        Err(_) => BTreeMap::new(),
    }
}

/// The revenue table's final panes' timings: (product, currency, window start) -> `early`,
/// `on_time` or `late`; empty while the table does not exist.
pub async fn revenue_panes(table: &str) -> BTreeMap<(i64, String, i64), String> {
    let client = shardflow_testkit::postgres().await;
    let sql = format!("SELECT product_id, currency, window_start_ms, pane FROM {table}");
    match client.query(&sql, &[]).await {
        Ok(rows) => rows
            .iter()
            .map(|r| ((r.get(0), r.get(1), r.get(2)), r.get(3)))
            .collect(),
        Err(_) => BTreeMap::new(),
    }
}

/// The event times, by customer, of the join rows of `events` that come behind the watermark of
/// one engine fed `events` in order (its largest event time so far less the out-of-orderness).
/// Deployed, a downstream's watermark at a record is at most that one (the minimum over the CDC
/// shards, each behind the whole), so a row at or ahead of it is on time either way; a row behind
/// it may be late in one run and joined in the other, which changes its customer's sessions
/// around it (never others: sessions are per customer).
pub fn interleaving_dependent(events: &[ChangeEvent]) -> BTreeMap<i64, Vec<i64>> {
    let mut behind: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    let mut max_ts = i64::MIN;
    for e in events {
        let ts = e.event_time();
        if ts < max_ts.saturating_sub(OUT_OF_ORDERNESS_MS) {
            let customer = match EnrichInput::from_change(e) {
                Some(EnrichInput::Order(_, o)) => Some(o.customer_id),
                Some(EnrichInput::Payment(_, p)) => Some(p.customer_id),
                Some(EnrichInput::Shipment(_, s)) => Some(s.customer_id),
                Some(EnrichInput::Customer(_, c)) => Some(c.customer_id),
                None => None,
            };
            if let Some(customer) = customer {
                behind.entry(customer).or_default().push(ts);
            }
        }
        max_ts = max_ts.max(ts);
    }
    behind
}

/// Whether `order`'s session is within a gap of a row of its customer in `dependent`: a session
/// that row may have joined, extended or bridged in one run and not in the other.
pub fn depends_on_interleaving(order: &EnrichedOrder, dependent: &BTreeMap<i64, Vec<i64>>) -> bool {
    dependent.get(&order.customer_id).is_some_and(|times| {
        times.iter().any(|t| {
            order.session_start_ms - ENRICH_SESSION_GAP_MS <= *t && *t <= order.session_end_ms + ENRICH_SESSION_GAP_MS
        })
    })
}

/// The result messages stored under `prefix` of `bucket` (every page of the listing).
pub async fn s3_results<T: DeserializeOwned>(bucket: &str, prefix: &str) -> Vec<ResultMessage<T>> {
    let s3 = shardflow_testkit::s3();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.expect("list the output bucket");
        for object in page.contents() {
            let key = object.key().unwrap_or_default();
            let body = s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .expect("get an output object")
                .body
                .collect()
                .await
                .expect("read an output object")
                .into_bytes();
            // One result per object, or one per line (an event-time bucket).
            for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                out.push(serde_json::from_slice(line).unwrap_or_else(|e| panic!("{key}: {e}")));
            }
        }
    }
    out
}

/// A Kinesis event of the stored records `records` of `stream_arn`, as Lambda delivers them.
pub fn kinesis_event(stream_arn: &str, shard: &str, records: &[aws_sdk_kinesis::types::Record]) -> serde_json::Value {
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            let arrival = r.approximate_arrival_timestamp().map_or(0.0, |t| t.as_secs_f64());
            serde_json::json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key(),
                    "sequenceNumber": r.sequence_number(),
                    "data": base64::engine::general_purpose::STANDARD.encode(r.data().as_ref()),
                    "approximateArrivalTimestamp": arrival,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{shard}:{}", r.sequence_number()),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::000000000000:role/e2e",
                "awsRegion": "us-east-1",
                "eventSourceARN": stream_arn,
            })
        })
        .collect();
    serde_json::json!({ "Records": records })
}

/// The first `n` stored records of the stream's first shard.
pub async fn first_records(stream: &str, n: i32) -> (String, Vec<aws_sdk_kinesis::types::Record>) {
    let kinesis = shardflow_testkit::kinesis();
    let shards = kinesis
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("list shards");
    let shard = shards.shards()[0].shard_id().to_owned();
    let iterator = kinesis
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(&shard)
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("shard iterator")
        .shard_iterator()
        .unwrap_or_default()
        .to_owned();
    let page = kinesis
        .get_records()
        .shard_iterator(iterator)
        .limit(n)
        .send()
        .await
        .expect("get records");
    (shard, page.records().to_vec())
}

/// The records sorted (to compare multisets).
pub fn sorted(records: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut v = records.to_vec();
    v.sort();
    v
}

/// Results keyed by id.
pub fn by_id<T: Clone>(lines: impl IntoIterator<Item = (String, T)>) -> BTreeMap<String, T> {
    lines.into_iter().collect()
}

/// Waits until `stage` committed the last record of every shard of `stream` (`records` put);
/// returns the records it read.
pub async fn caught_up(
    stage: &str,
    table: &str,
    stream: &str,
    records: usize,
    started: Instant,
) -> Vec<shardflow_testkit::ReadRecord> {
    let stored = shardflow_testkit::read_stream(&shardflow_testkit::kinesis(), stream, records, DEADLINE).await;
    committed_through(stage, table, &stored, started).await;
    stored
}

/// Waits until `stage` (state table `table`) committed, in every shard of `stored` (records read
/// from its input stream), that shard's last record of `stored` or a later one.
pub async fn committed_through(stage: &str, table: &str, stored: &[shardflow_testkit::ReadRecord], started: Instant) {
    let parse = |s: &str| shardflow_stage::SequenceNumber::parse(s).expect("a Kinesis sequence number");
    let mut last: BTreeMap<String, shardflow_stage::SequenceNumber> = BTreeMap::new();
    for r in stored {
        last.insert(r.shard_id.clone(), parse(&r.sequence_number));
    }
    let dynamodb = shardflow_testkit::dynamodb();
    eventually(&format!("{stage} catching up"), started, || async {
        let committed: BTreeMap<String, Option<String>> =
            shardflow_lifecycle::stage_checkpoints(&dynamodb, table, stage)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|c| (c.shard, c.sequence_number))
                .collect();
        let behind: Vec<&String> = last
            .iter()
            .filter(|(shard, seq)| {
                committed
                    .get(*shard)
                    .cloned()
                    .flatten()
                    .is_none_or(|c| parse(&c) < **seq)
            })
            .map(|(shard, _)| shard)
            .collect();
        if behind.is_empty() {
            Ok(())
        } else {
            Err(format!("shards {behind:?} behind; committed {committed:?}"))
        }
    })
    .await;
}

/// Reads `stream` (an enriched-orders output) until it held as many records as `want` and
/// asserts that it holds each of `want`'s enriched orders once, with its value (`what` names them
/// in the failure).
pub async fn assert_enriched_streamed_once(stream: &str, want: &BTreeMap<String, EnrichedOrder>, what: &str) {
    let streamed = shardflow_testkit::read_stream(&shardflow_testkit::kinesis(), stream, want.len(), DEADLINE).await;
    let streamed: Vec<shardflow_connectors::KinesisEnvelope<EnrichedOrder>> = streamed
        .iter()
        .map(|r| serde_json::from_slice(&r.data).expect("an enriched order envelope"))
        .collect();
    assert_eq!(
        streamed.len(),
        want.len(),
        "{what}: each enriched order is streamed once"
    );
    assert_eq!(&by_id(streamed.into_iter().map(|e| (e.id, e.value))), want, "{what}");
}

/// Drains `queue` (subscribed to a receipts topic) until it held as many receipts as `expected`,
/// and a few seconds more for any extra; asserts that no receipt id came twice and that the
/// receipts are `expected`'s (`what` names them in the failure); fields a receipt has beyond a
/// [`Receipt`]'s are not compared. Returns the messages' bodies.
pub async fn assert_receipts_once(
    queue: &str,
    expected: &[ResultLine<Receipt>],
    what: &str,
    started: Instant,
) -> Vec<String> {
    let sqs = shardflow_testkit::sqs();
    let mut bodies = drain_until(&sqs, queue, expected.len(), what, started).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    drain_queue(&sqs, queue, &mut bodies).await;
    let receipts: Vec<ResultMessage<Receipt>> = bodies
        .iter()
        .map(|b| serde_json::from_str(b).unwrap_or_else(|e| panic!("a receipt: {e}: {b}")))
        .collect();
    let ids: std::collections::BTreeSet<&str> = receipts.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), receipts.len(), "{what}: no receipt is published twice");
    assert_eq!(
        by_id(receipts.iter().map(|r| (r.id.clone(), r.value.clone()))),
        by_id(expected.iter().map(|l| (l.id.clone(), l.value.clone()))),
        "{what}: the receipts are the embedded runner's"
    );
    bodies
}
