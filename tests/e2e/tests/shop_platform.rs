//! The seed platform end to end: `infra/template.yaml` deployed to LocalStack with the real
//! stage binaries (receipts, revenue, order-enrich, archive), a generated shop CDC stream put into
//! its Kinesis stream, and every output checked against what the embedded runner computes on the
//! same input — one code path, two runtimes:
//!
//! - receipts: the SQS queue subscribed to the topic holds exactly the embedded runner's receipts
//!   (same ids, same values, none twice);
//! - revenue: the Postgres table holds one row per (product, currency, window) with the embedded
//!   runner's final revenue and order count;
//! - order-enrich: the S3 objects and the output stream hold the embedded runner's enriched orders;
//! - archive: the archive in S3 reads back as exactly the records put, in order;
//! - bad input: a malformed record lands in the dead-letter queue once per decoding stage, with the
//!   reason and its bytes, and everything after it flows; records later than the allowed lateness
//!   are dead-lettered as `late`, as many as the embedded runner's late side output counts;
//! - replay: the archive run as a bounded stream through the same code gives the live results;
//! - a redelivered batch (the same records invoked again, as Lambda does after a timeout) changes
//!   no output.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use base64::Engine as _;
use prost::Message as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use shardflow_archive::ArchiveReader;
use shardflow_connectors::{KinesisEnvelope, ResultMessage};
use shardflow_e2e::{delete_stack, deploy, invoke, require_function_zips};
use shardflow_gen::shop::{encode, ShopFormat};
use shardflow_kinesis::{KinesisProducer, KinesisTransport, ProducerConfig, StreamRecord};
use shardflow_local::{IterInput, LocalRunner};
use shardflow_runtime::{DeadLetter, DeadLetterKind};
use shardflow_schemas::{ChangeEvent, Customer, Entity, Op, Row};
use shardflow_shop::pipelines::{order_enrich, receipts, revenue, EnrichedOrder, Receipt, RevenueRow};
use shardflow_shop::{ShopConfig, ShopGenerator};
use shardflow_shop_stages::replay::replay;
use shardflow_shop_stages::ShopDecoder;

/// Change events generated (`SHARDFLOW_E2E_EVENTS` overrides).
const EVENTS: u64 = 3_000;
const SEED: u64 = 7;
/// The shop's order rate in event time (`SHARDFLOW_E2E_ORDERS_PER_SEC` overrides): slow enough
/// that a short input spans several minutes, so orders complete and windows close within it.
const ORDERS_PER_SEC: f64 = 1.0;
const FUNCTIONS: [&str; 4] = ["receipts", "revenue", "order-enrich", "archive"];
const DEADLINE: Duration = Duration::from_secs(240);
/// The bytes of the malformed record (not a Protobuf `ChangeEvent`: field 1 with wire type 7).
const MALFORMED: &[u8] = b"\x0f\xff\xffnot a change event";

/// A line of the embedded runner's result files.
#[derive(Debug, Deserialize)]
struct ResultLine<T> {
    id: String,
    value: T,
}

/// What the embedded runner computed.
struct Expected {
    receipts: Vec<ResultLine<Receipt>>,
    revenue: BTreeMap<(i64, String, i64), (i64, u64)>,
    enriched: Vec<ResultLine<EnrichedOrder>>,
    late: HashMap<String, u64>,
}

fn generate() -> Vec<ChangeEvent> {
    let events = std::env::var("SHARDFLOW_E2E_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(EVENTS);
    let mut config = ShopConfig::new(SEED, events, 1);
    config.orders_per_sec = std::env::var("SHARDFLOW_E2E_ORDERS_PER_SEC")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ORDERS_PER_SEC);
    let mut generator = ShopGenerator::new(config);
    std::iter::from_fn(|| generator.next_event().map(|(_, e)| e)).collect()
}

/// A change far later in event time than the input, which moves every stage's watermark past
/// every window of the input (a Lambda stage's windows close on data, not on the end of input).
/// It is an update of a customer no order refers to, so it adds no result of its own.
fn watermark_mover(events: &[ChangeEvent]) -> ChangeEvent {
    let last = events.iter().map(ChangeEvent::event_time).max().unwrap_or(0);
    let ts = last + 3 * 60 * 60_000;
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

fn read_lines<T: DeserializeOwned>(path: &std::path::Path) -> Vec<ResultLine<T>> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

/// The three pipelines over the input as one shard, in the embedded runner.
fn embedded(events: &[ChangeEvent]) -> Expected {
    let out = tempfile::tempdir().expect("a temporary directory");
    let mut input = IterInput::from_vecs(vec![events.to_vec()]);
    let summary = LocalRunner::new(out.path())
        .fsync(false)
        .job(receipts())
        .job(revenue())
        .job(order_enrich())
        .run(&mut input)
        .expect("the embedded run");
    let late = summary
        .pipelines
        .iter()
        .map(|p| (p.pipeline.clone(), p.late_records))
        .collect();
    let mut revenue = BTreeMap::new();
    for line in read_lines::<RevenueRow>(&out.path().join("revenue.jsonl")) {
        let r = line.value;
        // accumulating panes: the last pane of a window holds its totals
        revenue.insert(
            (r.product_id, r.currency, r.window_start_ms),
            (r.revenue_cents, r.order_count),
        );
    }
    Expected {
        receipts: read_lines(&out.path().join("receipts.jsonl")),
        revenue,
        enriched: read_lines(&out.path().join("enriched_orders.jsonl")),
        late,
    }
}

async fn put_records(stream: &str, records: Vec<(String, Vec<u8>)>) {
    let producer = KinesisProducer::new(
        KinesisTransport::new(shardflow_testkit::kinesis(), stream),
        ProducerConfig::default(),
    );
    for (key, data) in records {
        producer.send(StreamRecord::new(key, data)).await.expect("put a record");
    }
    producer.flush().await.expect("flush the producer");
}

/// Polls `check` until it returns `Some`, or panics with `what` after the deadline.
async fn eventually<T, F, Fut>(what: &str, started: Instant, mut check: F) -> T
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
async fn drain_queue(sqs: &aws_sdk_sqs::Client, queue: &str, into: &mut Vec<String>) {
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
async fn drain_until(sqs: &aws_sdk_sqs::Client, queue: &str, want: usize, what: &str, started: Instant) -> Vec<String> {
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
async fn subscribe_queue(topic: &str) -> String {
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

async fn revenue_rows(table: &str) -> BTreeMap<(i64, String, i64), (i64, u64)> {
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

async fn s3_results<T: DeserializeOwned>(bucket: &str, prefix: &str) -> Vec<ResultMessage<T>> {
    let s3 = shardflow_testkit::s3();
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .expect("list the output bucket");
    let mut out = Vec::new();
    for object in listed.contents() {
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
        out.push(serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{key}: {e}")));
    }
    out
}

/// A Kinesis event of the stored records `records` of `stream_arn`, as Lambda delivers them.
fn kinesis_event(stream_arn: &str, shard: &str, records: &[aws_sdk_kinesis::types::Record]) -> serde_json::Value {
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

/// The first `n` stored records of the stream's only shard.
async fn first_records(stream: &str, n: i32) -> (String, Vec<aws_sdk_kinesis::types::Record>) {
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

fn sorted(records: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut v = records.to_vec();
    v.sort();
    v
}

fn by_id<T: Clone>(lines: impl IntoIterator<Item = (String, T)>) -> BTreeMap<String, T> {
    lines.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_stages_on_localstack_match_the_embedded_runner() {
    require_function_zips(&FUNCTIONS);
    let events = generate();
    // deploy the template as it is, with a table of this run's own
    let stack = shardflow_testkit::unique_name("shop");
    let revenue_table = stack.replace('-', "_");
    let database_url = shardflow_testkit::postgres_url();
    let outputs = deploy(
        &stack,
        "infra/template.yaml",
        &[
            ("Architecture", "x86_64"),
            ("DatabaseUrl", &database_url),
            ("RevenueTable", &revenue_table),
            ("FunctionTimeout", "30"),
        ],
    );
    let output = |k: &str| outputs.get(k).cloned().unwrap_or_else(|| panic!("stack output {k}"));
    let (changes, changes_arn) = (output("ChangesStreamName"), output("ChangesStreamArn"));
    let receipts_queue = subscribe_queue(&output("ReceiptsTopicArn")).await;

    // the input: the generated changes with a malformed record a third of the way in, then (once
    // they are stored) the watermark mover
    let mut records: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| encode(e, ShopFormat::Protobuf).expect("encode a change"))
        .collect();
    records.insert(records.len() / 3, ("malformed".to_owned(), MALFORMED.to_vec()));
    let mover = encode(&watermark_mover(&events), ShopFormat::Protobuf).expect("encode the mover");
    let mut put: Vec<Vec<u8>> = records.iter().map(|(_, d)| d.clone()).collect();
    put.push(mover.1.clone());
    let started = Instant::now();
    put_records(&changes, records).await;
    put_records(&changes, vec![mover]).await;

    // what the embedded runner computes on the same input: the stream's records in its order
    // (concurrent PutRecords calls store records in another order than they were sent)
    let stored: Vec<Vec<u8>> =
        shardflow_testkit::read_stream(&shardflow_testkit::kinesis(), &changes, put.len(), DEADLINE)
            .await
            .into_iter()
            .map(|r| r.data)
            .collect();
    assert_eq!(sorted(&stored), sorted(&put), "the stream holds the records put");
    let decoded: Vec<ChangeEvent> = stored
        .iter()
        .filter_map(|d| ChangeEvent::decode(d.as_slice()).ok())
        .collect();
    assert_eq!(
        decoded.len(),
        put.len() - 1,
        "every record but the malformed one decodes"
    );
    let expected = embedded(&decoded);
    assert!(
        !expected.receipts.is_empty() && !expected.revenue.is_empty() && !expected.enriched.is_empty(),
        "the input yields results in every pipeline (receipts {}, revenue {}, enriched {})",
        expected.receipts.len(),
        expected.revenue.len(),
        expected.enriched.len()
    );

    // archive: every record, once, in the stream's order
    let archive = ArchiveReader::new(shardflow_testkit::s3(), output("ArchiveBucketName"), "archive");
    let archived = eventually("the archive of every record", started, || async {
        let (records, repeated) = archive
            .read_stream(Some(&changes), None)
            .await
            .map_err(|e| e.to_string())?;
        if records.len() >= stored.len() {
            Ok((records, repeated))
        } else {
            Err(format!("{} of {} records archived", records.len(), stored.len()))
        }
    })
    .await;
    assert_eq!(archived.1, 0, "no record is archived twice");
    let archived_data: Vec<Vec<u8>> = archived.0.iter().map(|r| r.data.clone()).collect();
    assert_eq!(
        archived_data.len(),
        stored.len(),
        "the archive holds as many records as the stream"
    );
    let first_difference = archived_data.iter().zip(&stored).position(|(a, b)| a != b);
    assert_eq!(
        first_difference, None,
        "the archive holds the stream's records in its order"
    );

    // receipts: the embedded runner's, each once
    let sqs = shardflow_testkit::sqs();
    let got = drain_until(&sqs, &receipts_queue, expected.receipts.len(), "every receipt", started).await;
    let receipts_got: Vec<ResultMessage<Receipt>> = got
        .iter()
        .map(|b| serde_json::from_str(b).unwrap_or_else(|e| panic!("a receipt message: {e}: {b}")))
        .collect();
    let ids: BTreeSet<&str> = receipts_got.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), receipts_got.len(), "no receipt is published twice");
    assert_eq!(
        by_id(receipts_got.iter().map(|r| (r.id.clone(), r.value.clone()))),
        by_id(expected.receipts.iter().map(|l| (l.id.clone(), l.value.clone()))),
        "the receipts are the embedded runner's"
    );

    // revenue: one row per window with the embedded runner's totals
    let rows = eventually("the revenue rows", started, || async {
        let rows = revenue_rows(&revenue_table).await;
        if rows == expected.revenue {
            Ok(rows)
        } else {
            Err(format!(
                "{} of {} windows, or other totals",
                rows.len(),
                expected.revenue.len()
            ))
        }
    })
    .await;
    assert_eq!(rows, expected.revenue);

    // order-enrich: S3 and the output stream hold the embedded runner's enriched orders
    let want_enriched = by_id(expected.enriched.iter().map(|l| (l.id.clone(), l.value.clone())));
    let bucket = output("OutputBucketName");
    let in_s3 = eventually("the enriched orders in S3", started, || async {
        let objects: Vec<ResultMessage<EnrichedOrder>> = s3_results(&bucket, "enriched-orders/").await;
        if objects.len() >= want_enriched.len() {
            Ok(objects)
        } else {
            Err(format!("{} of {} objects", objects.len(), want_enriched.len()))
        }
    })
    .await;
    assert_eq!(by_id(in_s3.into_iter().map(|m| (m.id, m.value))), want_enriched);
    let streamed = shardflow_testkit::read_stream(
        &shardflow_testkit::kinesis(),
        &output("EnrichedOrdersStreamName"),
        want_enriched.len(),
        DEADLINE,
    )
    .await;
    let streamed: Vec<KinesisEnvelope<EnrichedOrder>> = streamed
        .iter()
        .map(|r| serde_json::from_slice(&r.data).expect("an enriched order envelope"))
        .collect();
    assert_eq!(
        streamed.len(),
        want_enriched.len(),
        "each enriched order is streamed once"
    );
    assert_eq!(by_id(streamed.into_iter().map(|e| (e.id, e.value))), want_enriched);

    // bad input: the malformed record once per decoding stage, late records as the embedded runner counts them
    let dlq = output("DeadLetterQueueUrl");
    let want_late: u64 = expected.late.values().sum();
    let letters = drain_until(&sqs, &dlq, 3 + want_late as usize, "the dead letters", started).await;
    let letters: Vec<DeadLetter> = letters
        .iter()
        .map(|b| serde_json::from_str(b).unwrap_or_else(|e| panic!("a dead letter: {e}: {b}")))
        .collect();
    let undecodable: Vec<&DeadLetter> = letters
        .iter()
        .filter(|l| l.kind == DeadLetterKind::Undecodable)
        .collect();
    let stages: BTreeSet<&str> = undecodable.iter().map(|l| l.stage.as_str()).collect();
    assert_eq!(stages, BTreeSet::from(["order-enrich", "receipts", "revenue"]));
    for letter in &undecodable {
        assert_eq!(
            letter.data().as_deref(),
            Some(MALFORMED),
            "the dead letter keeps the bytes"
        );
        assert!(
            letter.reason.contains("protobuf"),
            "the reason says why: {}",
            letter.reason
        );
    }
    let mut late_by_stage: HashMap<String, u64> = HashMap::new();
    for l in letters.iter().filter(|l| l.kind == DeadLetterKind::Late) {
        *late_by_stage.entry(l.stage.replace('-', "_")).or_default() += 1;
    }
    for (pipeline, late) in &expected.late {
        assert_eq!(
            late_by_stage.get(pipeline).copied().unwrap_or(0),
            *late,
            "late records of {pipeline} are dead-lettered as the embedded runner counts them"
        );
    }

    // the archive replayed as a bounded stream through the same code gives the live results
    let (archived_records, _) = archive
        .read_stream(Some(&changes), None)
        .await
        .expect("read the archive");
    let replayed =
        replay(&receipts(), &ShopDecoder::new(), "receipts", &archived_records, 500).expect("replay receipts");
    assert_eq!(
        by_id(replayed.outputs.iter().map(|o| (o.id.to_hex(), o.value.clone()))),
        by_id(receipts_got.iter().map(|r| (r.id.clone(), r.value.clone()))),
        "the replayed receipts are the live ones"
    );
    let replayed = replay(&revenue(), &ShopDecoder::new(), "revenue", &archived_records, 500).expect("replay revenue");
    let mut replayed_revenue = BTreeMap::new();
    for o in &replayed.outputs {
        let r = &o.value;
        replayed_revenue.insert(
            (r.product_id, r.currency.clone(), r.window_start_ms),
            (r.revenue_cents, r.order_count),
        );
    }
    assert_eq!(replayed_revenue, rows, "the replayed revenue is the live one");
    let late = |letters: &[DeadLetter]| letters.iter().filter(|l| l.kind == DeadLetterKind::Late).count() as u64;
    assert_eq!(late(&replayed.dead_letters), expected.late["revenue"]);
    let replayed = replay(
        &order_enrich(),
        &ShopDecoder::new(),
        "order-enrich",
        &archived_records,
        500,
    )
    .expect("replay order-enrich");
    assert_eq!(
        by_id(replayed.outputs.iter().map(|o| (o.id.to_hex(), o.value.clone()))),
        want_enriched,
        "the replayed enriched orders are the live ones"
    );
    assert_eq!(late(&replayed.dead_letters), expected.late["order_enrich"]);
    let undecodable = replayed
        .dead_letters
        .iter()
        .filter(|l| l.kind == DeadLetterKind::Undecodable)
        .count();
    assert_eq!(undecodable, 1, "the replay dead-letters the malformed record");

    // a redelivered batch changes nothing
    let (shard, first) = first_records(&changes, 100).await;
    let event = kinesis_event(&changes_arn, &shard, &first);
    for f in FUNCTIONS {
        let response = invoke(&format!("{stack}-{f}"), &event);
        assert_eq!(
            response,
            serde_json::json!({ "batchItemFailures": [] }),
            "{f} answers a redelivered batch with no failures"
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut again = Vec::new();
    drain_queue(&sqs, &receipts_queue, &mut again).await;
    assert!(again.is_empty(), "a redelivered batch publishes no receipt: {again:?}");
    drain_queue(&sqs, &dlq, &mut again).await;
    assert!(again.is_empty(), "a redelivered batch dead-letters nothing: {again:?}");
    assert_eq!(revenue_rows(&revenue_table).await, expected.revenue);
    let (rearchived, repeated) = archive
        .read_stream(Some(&changes), None)
        .await
        .expect("read the archive");
    assert_eq!(
        (rearchived.len(), repeated),
        (stored.len(), 0),
        "the archive is unchanged"
    );

    delete_stack(&stack);
    let _ = shardflow_testkit::postgres()
        .await
        .batch_execute(&format!("DROP TABLE IF EXISTS {revenue_table}"))
        .await;
}
