//! The AWS requests ONE batch of a stage costs (issue 19, "Per-batch request counts"), against
//! LocalStack: a revenue-like keyed aggregation and an order-enrich-like session join, at a given
//! state size per shard, warm and cold, with the checkpoint interval at one batch and at 30 s.
//!
//! Counted by interceptors on the stage's own clients (DynamoDB, S3, Kinesis). LocalStack does not
//! bill and does not return consumed capacity unless asked, so the units are computed the way
//! DynamoDB bills from the items in the requests and responses (see [`item_size`]):
//! - reads: strongly consistent, 1 RRU per 4 KB per item for GetItem and BatchGetItem, per 4 KB of
//!   all items returned for Query; a GetItem that finds nothing still costs 1;
//! - writes: standard 1 WRU per KB of the item (at least 1), transactional 2 WRU per KB; a put
//!   that replaces an item costs by the larger of the two; a delete by the size of the item
//!   deleted. Old and deleted sizes are known because every write of the run (the prefill
//!   included) goes through the same meter, which remembers each item's size by key.
//!
//! The small test runs in CI and asserts the shape of the counts; the measurement is `#[ignore]`d:
//! `cargo test -p shardflow-lambda --test request_counts -- --ignored --nocapture` (3.7 min in a debug
//! build on LocalStack, mostly the 50 MB prefills; not yet timed as `--release`).
//!
//! Needs `AWS_ENDPOINT_URL` pointing at LocalStack (`source localstack/env`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextRef,
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput;
use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemInput;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemInput;
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::put_item::PutItemInput;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
use aws_sdk_dynamodb::operation::update_item::UpdateItemInput;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::operation::get_records::GetRecordsOutput;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::ShardIteratorType;
use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::{Pipeline, Trigger, WatermarkStrategy, Windowing};
use shardflow_lambda::{input_record, CheckpointInterval, Stage, StageConfig};
use shardflow_stage::{InputRecord, JsonDecoder, SequenceNumber, ShardBatch};
use shardflow_stage::{MemoryDeadLetters, MemoryResultSink};
use shardflow_state_dynamodb::SpillBucket;

/// Records per measured batch: the template's batch size.
const BATCH: usize = 500;
/// Event time of record 0; all records stay inside the first hour, so no window closes.
const T0: i64 = 1_700_000_000_000;

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
struct Ev {
    key: u64,
    side: u8,
    cents: i64,
    ts_ms: i64,
    note: String,
}

type Row = (u64, i64, u64, i64);
type Measured = Stage<Ev, Row, JsonDecoder<Ev>, MemoryResultSink<Row>, MemoryDeadLetters>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Like the shop's `revenue`: count and sum per key in 1-hour tumbling windows.
    Revenue,
    /// Like the shop's `order_enrich`: two sides joined per key in session windows (1-hour gap).
    Enrich,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Revenue => "revenue",
            Kind::Enrich => "order-enrich",
        }
    }

    fn pipeline(self) -> Pipeline<Ev, Row> {
        let b = Pipeline::builder(self.name())
            .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
            .event_time(|e: &Ev| e.ts_ms)
            .key_by(|e| e.key);
        match self {
            Kind::Revenue => b
                .window(Windowing::tumbling(3_600_000).unwrap())
                .trigger(Trigger::at_watermark())
                .aggregate((Count, Sum::of(|e: &Ev| e.cents)), |k, w, _, (n, c)| {
                    (*k, w.start, n, c)
                })
                .sink("revenue"),
            Kind::Enrich => b
                .window(Windowing::session(3_600_000).unwrap())
                .trigger(Trigger::at_watermark())
                .join(
                    2,
                    |e: &Ev| usize::from(e.side),
                    |k, w, lists| vec![(*k, w.start, lists[0].len() as u64, lists[1].len() as i64)],
                )
                .sink("enriched"),
        }
    }

    /// Record `i` of a run over `keys` keys, in turn: the prefill visits every key once (revenue)
    /// or twice, once per side (enrich). Consecutive keys fall into key groups spread by a hash.
    fn event(self, i: u64, keys: u64) -> Ev {
        let (key, side) = match self {
            Kind::Revenue => (i % keys, 0),
            Kind::Enrich => ((i / 2) % keys, (i % 2) as u8),
        };
        Ev {
            key,
            side,
            cents: 100 + (i % 5_000) as i64,
            ts_ms: T0 + (i / 1_000) as i64,
            note: match self {
                Kind::Revenue => String::new(),
                Kind::Enrich => format!("customer-{key}@example.com, order {i}"),
            },
        }
    }

    /// Prefill records for about `state_bytes` of state, calibrated on a local engine.
    fn prefill_records(self, state_bytes: usize) -> u64 {
        const SAMPLE: u64 = 20_000;
        let p = self.pipeline();
        let mut e = p.engine();
        let part = e.partition("x");
        for i in 0..SAMPLE {
            e.process(part, i, 0, self.event(i, self.keys_for(SAMPLE)));
        }
        let cp = e.snapshot().unwrap();
        let bytes: usize = cp
            .operators
            .iter()
            .flat_map(|o| o.key_groups.iter())
            .map(|g| g.bytes.len())
            .sum();
        (state_bytes as u64 * SAMPLE / bytes as u64).max(1)
    }

    fn keys_for(self, records: u64) -> u64 {
        match self {
            Kind::Revenue => records,
            Kind::Enrich => records.div_ceil(2),
        }
    }
}

fn record(kind: Kind, i: u64, keys: u64) -> InputRecord {
    let e = kind.event(i, keys);
    InputRecord {
        // Below any sequence number of the emulator's stream (56 digits): the prefill comes first.
        sequence: SequenceNumber::parse(&format!("1{i:020}")).unwrap(),
        partition_key: format!("k{}", e.key),
        arrival_ms: e.ts_ms,
        data: serde_json::to_vec(&e).unwrap(),
    }
}

// ----------------------------------------------------------------------------------------------
// The meter.

/// What one batch cost.
#[derive(Debug, Clone, Default, PartialEq)]
struct Cost {
    /// DynamoDB requests by operation.
    ddb: BTreeMap<String, u64>,
    /// Read request units (strongly consistent).
    rru: f64,
    /// Write request units (transactional doubled).
    wru: f64,
    /// Items written inside TransactWriteItems / with standard writes.
    tx_items: u64,
    std_items: u64,
    /// S3 requests by operation, bytes sent (request bodies) and received (response bodies).
    s3: BTreeMap<String, u64>,
    s3_up: u64,
    s3_down: u64,
    /// Kinesis requests by operation and records returned by GetRecords.
    kinesis: BTreeMap<String, u64>,
    gap_records: u64,
    /// State bytes the stage committed (its EMF line's `StateBytesWritten`).
    state_written: u64,
}

impl Cost {
    fn ddb_requests(&self) -> u64 {
        self.ddb.values().sum()
    }
    fn s3_requests(&self) -> u64 {
        self.s3.values().sum()
    }
    fn get_records(&self) -> u64 {
        self.kinesis.get("GetRecords").copied().unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy)]
enum Service {
    DynamoDb,
    S3,
    Kinesis,
}

/// Counts the requests of a client; one meter is shared by the clients of every container.
#[derive(Debug, Clone)]
struct Meter {
    service: Service,
    cost: Arc<Mutex<Cost>>,
    /// Item sizes by table and key, from every write seen (to bill replacements and deletes).
    sizes: Arc<Mutex<HashMap<String, usize>>>,
}

/// The size of an attribute value as DynamoDB bills it (UTF-8 bytes of strings, bytes of binary,
/// about one byte per two digits of numbers, 3 bytes plus one per element of maps and lists).
fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => n.len().div_ceil(2) + 1,
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::M(m) => 3 + m.iter().map(|(k, v)| k.len() + value_size(v) + 1).sum::<usize>(),
        AttributeValue::L(l) => 3 + l.iter().map(|v| value_size(v) + 1).sum::<usize>(),
        _ => 0,
    }
}

/// An item's billed size: attribute names plus values.
fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn item_key(table: &str, item: &HashMap<String, AttributeValue>) -> String {
    format!("{table}|{:?}|{:?}", item.get("pk"), item.get("sk"))
}

fn units(bytes: usize, unit: usize) -> f64 {
    bytes.div_ceil(unit).max(1) as f64
}

/// The operation's name: the first of `types` the input is.
macro_rules! operation {
    ($input:expr, $($module:ident :: $op:ident :: $ty:ident),+ $(,)?) => {{
        let input = $input;
        let mut name = "other";
        $(if input.downcast_ref::<$module::operation::$op::$ty>().is_some() {
            name = stringify!($ty).trim_end_matches("Input");
        })+
        name.to_owned()
    }};
}

fn operation(service: Service, context: &BeforeSerializationInterceptorContextRef<'_>) -> String {
    let input = context.input();
    match service {
        Service::DynamoDb => operation!(
            input,
            aws_sdk_dynamodb::get_item::GetItemInput,
            aws_sdk_dynamodb::batch_get_item::BatchGetItemInput,
            aws_sdk_dynamodb::query::QueryInput,
            aws_sdk_dynamodb::put_item::PutItemInput,
            aws_sdk_dynamodb::delete_item::DeleteItemInput,
            aws_sdk_dynamodb::update_item::UpdateItemInput,
            aws_sdk_dynamodb::batch_write_item::BatchWriteItemInput,
            aws_sdk_dynamodb::transact_write_items::TransactWriteItemsInput,
        ),
        Service::S3 => operation!(
            input,
            aws_sdk_s3::put_object::PutObjectInput,
            aws_sdk_s3::get_object::GetObjectInput,
            aws_sdk_s3::head_object::HeadObjectInput,
            aws_sdk_s3::delete_object::DeleteObjectInput,
            aws_sdk_s3::delete_objects::DeleteObjectsInput,
            aws_sdk_s3::list_objects_v2::ListObjectsV2Input,
        ),
        Service::Kinesis => operation!(
            input,
            aws_sdk_kinesis::get_records::GetRecordsInput,
            aws_sdk_kinesis::get_shard_iterator::GetShardIteratorInput,
            aws_sdk_kinesis::list_shards::ListShardsInput,
            aws_sdk_kinesis::describe_stream::DescribeStreamInput,
        ),
    }
}

impl Meter {
    fn new(service: Service, sizes: &Arc<Mutex<HashMap<String, usize>>>, cost: &Arc<Mutex<Cost>>) -> Self {
        Meter {
            service,
            cost: cost.clone(),
            sizes: sizes.clone(),
        }
    }

    /// The units of writing `item` (`factor` 2 in a transaction), remembering its size.
    fn write(&self, table: &str, item: &HashMap<String, AttributeValue>, factor: f64) -> f64 {
        let size = item_size(item);
        let old = self
            .sizes
            .lock()
            .unwrap()
            .insert(item_key(table, item), size)
            .unwrap_or(0);
        factor * units(size.max(old), 1024)
    }

    /// The size last written under `key` (0 if none was seen).
    fn remembered(&self, table: &str, key: &HashMap<String, AttributeValue>) -> usize {
        self.sizes
            .lock()
            .unwrap()
            .get(&item_key(table, key))
            .copied()
            .unwrap_or(0)
    }

    fn delete(&self, table: &str, key: &HashMap<String, AttributeValue>, factor: f64) -> f64 {
        let old = self.sizes.lock().unwrap().remove(&item_key(table, key)).unwrap_or(0);
        factor * units(old, 1024)
    }

    /// DynamoDB write units of a request, from its input.
    fn ddb_writes(&self, context: &BeforeSerializationInterceptorContextRef<'_>) -> (f64, u64, u64) {
        let input = context.input();
        if let Some(i) = input.downcast_ref::<PutItemInput>() {
            let table = i.table_name().unwrap_or_default();
            return (self.write(table, i.item().unwrap_or(&HashMap::new()), 1.0), 0, 1);
        }
        if let Some(i) = input.downcast_ref::<DeleteItemInput>() {
            let table = i.table_name().unwrap_or_default();
            return (self.delete(table, i.key().unwrap_or(&HashMap::new()), 1.0), 0, 1);
        }
        if let Some(i) = input.downcast_ref::<UpdateItemInput>() {
            // Not used by the store today; billed as a write of the key's remembered size.
            let table = i.table_name().unwrap_or_default();
            return (
                units(self.remembered(table, i.key().unwrap_or(&HashMap::new())), 1024),
                0,
                1,
            );
        }
        if let Some(i) = input.downcast_ref::<BatchWriteItemInput>() {
            let mut wru = 0.0;
            let mut n = 0;
            for (table, requests) in i.request_items().into_iter().flatten() {
                for r in requests {
                    n += 1;
                    if let Some(p) = r.put_request() {
                        wru += self.write(table, p.item(), 1.0);
                    } else if let Some(d) = r.delete_request() {
                        wru += self.delete(table, d.key(), 1.0);
                    }
                }
            }
            return (wru, 0, n);
        }
        if let Some(i) = input.downcast_ref::<TransactWriteItemsInput>() {
            let mut wru = 0.0;
            let mut n = 0;
            for t in i.transact_items() {
                n += 1;
                if let Some(p) = t.put() {
                    wru += self.write(p.table_name(), p.item(), 2.0);
                } else if let Some(d) = t.delete() {
                    wru += self.delete(d.table_name(), d.key(), 2.0);
                } else if let Some(c) = t.condition_check() {
                    wru += 2.0 * units(self.remembered(c.table_name(), c.key()), 1024);
                } else if let Some(u) = t.update() {
                    wru += 2.0 * units(self.remembered(u.table_name(), u.key()), 1024);
                }
            }
            return (wru, n, 0);
        }
        (0.0, 0, 0)
    }

    /// DynamoDB read units of a response.
    fn ddb_reads(context: &FinalizerInterceptorContextRef<'_>) -> f64 {
        let Some(Ok(output)) = context.output_or_error() else {
            return 0.0;
        };
        if let Some(o) = output.downcast_ref::<GetItemOutput>() {
            return units(o.item().map_or(0, item_size), 4096);
        }
        if let Some(o) = output.downcast_ref::<BatchGetItemOutput>() {
            let items = o.responses().into_iter().flat_map(|r| r.values()).flatten();
            return items.map(|i| units(item_size(i), 4096)).sum();
        }
        if let Some(o) = output.downcast_ref::<QueryOutput>() {
            return units(o.items().iter().map(item_size).sum(), 4096);
        }
        0.0
    }
}

impl Intercept for Meter {
    fn name(&self) -> &'static str {
        "request-meter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Service::S3 = self.service {
            let len = context.request().body().bytes().map_or_else(
                || {
                    context
                        .request()
                        .headers()
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0)
                },
                <[u8]>::len,
            );
            self.cost.lock().unwrap().s3_up += len as u64;
        }
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Service::S3 = self.service {
            let len: u64 = context
                .response()
                .headers()
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            self.cost.lock().unwrap().s3_down += len;
        }
        Ok(())
    }

    /// Requests and write units, from the input (taken by serialization, so not seen after).
    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = operation(self.service, context);
        let mut cost = self.cost.lock().unwrap();
        match self.service {
            Service::DynamoDb => {
                *cost.ddb.entry(op).or_default() += 1;
                let (wru, tx, std) = self.ddb_writes(context);
                cost.wru += wru;
                cost.tx_items += tx;
                cost.std_items += std;
            }
            Service::S3 => *cost.s3.entry(op).or_default() += 1,
            Service::Kinesis => *cost.kinesis.entry(op).or_default() += 1,
        }
        Ok(())
    }

    /// Read units and gap records, from the output.
    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let mut cost = self.cost.lock().unwrap();
        match self.service {
            Service::DynamoDb => cost.rru += Meter::ddb_reads(context),
            Service::S3 => {}
            Service::Kinesis => {
                if let Some(Ok(output)) = context.output_or_error() {
                    if let Some(o) = output.downcast_ref::<GetRecordsOutput>() {
                        cost.gap_records += o.records().len() as u64;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The metered clients of a run: every container of it uses these.
struct Clients {
    ddb: aws_sdk_dynamodb::Client,
    s3: aws_sdk_s3::Client,
    kinesis: aws_sdk_kinesis::Client,
    table: String,
    bucket: String,
    cost: Arc<Mutex<Cost>>,
    /// The EMF lines of every container.
    metrics: Arc<Mutex<Vec<String>>>,
}

impl Clients {
    async fn new(prefix: &str) -> Self {
        let (ddb, table) = shardflow_testkit::state_table(prefix).await;
        let (s3, bucket) = shardflow_testkit::bucket(prefix).await;
        let kinesis = shardflow_testkit::kinesis();
        let sizes = Arc::default();
        let cost = Arc::default();
        let meter = |s| Meter::new(s, &sizes, &cost);
        Clients {
            ddb: aws_sdk_dynamodb::Client::from_conf(
                ddb.config().to_builder().interceptor(meter(Service::DynamoDb)).build(),
            ),
            s3: aws_sdk_s3::Client::from_conf(s3.config().to_builder().interceptor(meter(Service::S3)).build()),
            kinesis: aws_sdk_kinesis::Client::from_conf(
                kinesis
                    .config()
                    .to_builder()
                    .interceptor(meter(Service::Kinesis))
                    .build(),
            ),
            table,
            bucket,
            cost,
            metrics: Arc::default(),
        }
    }

    fn take(&self) -> Cost {
        let mut cost = std::mem::take(&mut *self.cost.lock().unwrap());
        for line in std::mem::take(&mut *self.metrics.lock().unwrap()) {
            let line: serde_json::Value = serde_json::from_str(&line).unwrap();
            cost.state_written += line["StateBytesWritten"].as_u64().unwrap_or(0);
        }
        cost
    }

    /// A fresh container (cold: nothing in memory) committing every `interval`, with the warm
    /// budget of a 1 GB function: the default, half of 128 MB, does not keep a 50 MB shard
    /// loaded from the store (the estimate is a multiple of its encoded size).
    fn container(&self, kind: Kind, interval: CheckpointInterval) -> Measured {
        Stage::new(
            kind.name(),
            kind.pipeline(),
            JsonDecoder::new(),
            MemoryResultSink::new(),
            MemoryDeadLetters::default(),
            self.ddb.clone(),
            &self.table,
            StageConfig {
                checkpoint_interval: interval,
                ..StageConfig::default()
            },
        )
        .unwrap()
        .with_spill_bucket(SpillBucket::new(self.s3.clone(), &self.bucket))
        .with_kinesis(self.kinesis.clone())
        .with_warm_state_budget(512 << 20)
        .with_metrics_writer({
            let metrics = self.metrics.clone();
            Arc::new(move |line: &str| metrics.lock().unwrap().push(line.to_owned()))
        })
    }
}

/// A stream of one shard holding records `from..from + n` of the run, as GetRecords returns them.
async fn stream_batch(
    kinesis_stream: &(aws_sdk_kinesis::Client, String),
    kind: Kind,
    from: u64,
    keys: u64,
) -> Vec<InputRecord> {
    let (kinesis, stream) = kinesis_stream;
    let entries: Vec<_> = (from..from + BATCH as u64)
        .map(|i| {
            let r = record(kind, i, keys);
            aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                .partition_key(r.partition_key)
                .data(Blob::new(r.data))
                .build()
                .unwrap()
        })
        .collect();
    let out = kinesis
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await
        .unwrap();
    assert_eq!(out.failed_record_count(), Some(0));
    let first = out.records()[0].sequence_number().unwrap().to_owned();
    let shard = out.records()[0].shard_id().unwrap().to_owned();
    let mut iterator = kinesis
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(&shard)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(first)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let mut records = Vec::new();
    while records.len() < BATCH {
        let out = kinesis.get_records().shard_iterator(&iterator).send().await.unwrap();
        records.extend(out.records().iter().map(|r| input_record(r).unwrap()));
        iterator = out.next_shard_iterator().unwrap().to_owned();
    }
    records.truncate(BATCH);
    records
}

/// One row of the table.
#[derive(Debug, Clone)]
struct Line {
    kind: Kind,
    state_bytes: usize,
    interval: &'static str,
    case: &'static str,
    cost: Cost,
}

/// Measures one pipeline at about `state_bytes` of state in one shard.
async fn measure(kind: Kind, state_bytes: usize) -> Vec<Line> {
    let prefix = format!("rc-{}", kind.name());
    let clients = Clients::new(&prefix).await;
    let kinesis_stream = shardflow_testkit::kinesis_stream(&prefix, 1).await;
    let stream = kinesis_stream.1.clone();
    const SHARD: &str = "shardId-000000000000";
    let prefill = kind.prefill_records(state_bytes);
    let keys = kind.keys_for(prefill);
    let synthetic = |from: u64, n: u64| ShardBatch {
        stream: stream.clone(),
        shard_id: SHARD.into(),
        records: (from..from + n).map(|i| record(kind, i, keys)).collect(),
    };
    let every_batch = CheckpointInterval::default();
    let thirty_s = CheckpointInterval {
        batches: None,
        millis: Some(30_000),
        bytes: None,
    };
    let mut rows = Vec::new();
    let mut row = |interval, case, cost: Cost| {
        rows.push(Line {
            kind,
            state_bytes,
            interval,
            case,
            cost,
        })
    };

    // Prefill, committed every batch (500,000 records a batch).
    let a = clients.container(kind, every_batch);
    let mut next = 0;
    while next < prefill {
        let n = (prefill - next).min(500_000);
        assert!(a
            .handle(synthetic(next, n))
            .await
            .unwrap()
            .batch_item_failures
            .is_empty());
        next += n;
    }
    let prefill_cost = clients.take();
    eprintln!(
        "{}: {prefill} prefill records on {keys} keys, {} bytes to S3",
        kind.name(),
        prefill_cost.s3_up
    );

    // Interval 1 batch, warm: the container that committed the last batch.
    assert_eq!(a.warm_shards(), [SHARD], "the state fits the warm budget");
    assert!(a
        .handle(synthetic(next, BATCH as u64))
        .await
        .unwrap()
        .batch_item_failures
        .is_empty());
    next += BATCH as u64;
    row("1 batch", "warm", clients.take());
    // From here on real Kinesis records: a gap is read back after the committed sequence number,
    // so the checkpoint must stand at one the stream knows.
    let b = BATCH as u64;
    let k0 = stream_batch(&kinesis_stream, kind, next, keys).await;
    let k1 = stream_batch(&kinesis_stream, kind, next + b, keys).await;
    let k2 = stream_batch(&kinesis_stream, kind, next + 2 * b, keys).await;
    let k3 = stream_batch(&kinesis_stream, kind, next + 3 * b, keys).await;
    let batch = |records: Vec<InputRecord>| ShardBatch {
        stream: stream.clone(),
        shard_id: SHARD.into(),
        records,
    };
    clients.take();
    // Interval 1 batch, cold: a fresh container.
    let cold = clients.container(kind, every_batch).with_warm_state_budget(0);
    assert!(cold.handle(batch(k0)).await.unwrap().batch_item_failures.is_empty());
    row("1 batch", "cold", clients.take());

    // Interval 30 s.
    let w = clients.container(kind, thirty_s);
    assert!(w.handle(batch(k1)).await.unwrap().batch_item_failures.is_empty());
    row("30 s", "cold, no gap", clients.take());
    assert!(w.handle(batch(k2)).await.unwrap().batch_item_failures.is_empty());
    row("30 s", "warm", clients.take());
    let c = clients.container(kind, thirty_s).with_warm_state_budget(0);
    assert!(c.handle(batch(k3)).await.unwrap().batch_item_failures.is_empty());
    row("30 s", "cold, 2-batch gap", clients.take());
    rows
}

fn table(rows: &[Line]) -> String {
    let mut out = String::from(
        "| stage | state | interval | container | DDB requests | RRU | WRU (tx items / std items) | S3 requests | S3 MB up / down | Kinesis requests (records read) | state committed (MB) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let c = &r.cost;
        let ddb: Vec<String> = c.ddb.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let s3: Vec<String> = c.s3.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let kinesis: Vec<String> = c.kinesis.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out += &format!(
            "| {} | {} MB | {} | {} | {} ({}) | {} | {} ({} / {}) | {} ({}) | {:.2} / {:.2} | {} ({}) | {:.2} |\n",
            r.kind.name(),
            r.state_bytes as f64 / 1e6,
            r.interval,
            r.case,
            c.ddb_requests(),
            ddb.join(", "),
            c.rru,
            c.wru,
            c.tx_items,
            c.std_items,
            c.s3_requests(),
            if s3.is_empty() { "-".into() } else { s3.join(", ") },
            c.s3_up as f64 / 1e6,
            c.s3_down as f64 / 1e6,
            if kinesis.is_empty() {
                "-".into()
            } else {
                kinesis.join(", ")
            },
            c.gap_records,
            c.state_written as f64 / 1e6,
        );
    }
    out
}

fn case<'a>(rows: &'a [Line], interval: &str, case: &str) -> &'a Cost {
    &rows
        .iter()
        .find(|r| r.interval == interval && r.case == case)
        .unwrap()
        .cost
}

#[tokio::test]
async fn per_batch_counts_have_the_expected_shape_at_small_state() {
    for kind in [Kind::Revenue, Kind::Enrich] {
        let rows = measure(kind, 64 * 1024).await;
        println!("{}", table(&rows));
        let warm = case(&rows, "1 batch", "warm");
        let cold = case(&rows, "1 batch", "cold");
        assert_eq!(
            warm.rru, 1.0,
            "{kind:?}: a warm batch reads only the checkpoint: {warm:?}"
        );
        assert!(
            cold.rru > warm.rru,
            "{kind:?}: a cold batch reads every key group: {cold:?}"
        );
        assert!(warm.tx_items > 1 && warm.wru >= 2.0 * warm.tx_items as f64, "{warm:?}");
        assert_eq!(warm.s3_requests(), 0, "small state does not spill: {warm:?}");
        let iw = case(&rows, "30 s", "warm");
        assert_eq!(iw.tx_items, 0, "{kind:?}: no commit inside the interval: {iw:?}");
        assert!(iw.wru < warm.wru, "{kind:?}: {iw:?} vs {warm:?}");
        assert_eq!(iw.get_records(), 0);
        let gap = case(&rows, "30 s", "cold, 2-batch gap");
        assert!(
            gap.get_records() >= 1,
            "{kind:?}: the gap is read from Kinesis: {gap:?}"
        );
        assert!(gap.gap_records >= 2 * BATCH as u64, "{gap:?}");
    }
}

#[tokio::test]
#[ignore = "a measurement: about a minute on LocalStack, prints the README table"]
async fn per_batch_request_counts() {
    let mut rows = Vec::new();
    for kind in [Kind::Revenue, Kind::Enrich] {
        for bytes in [1_000_000, 50_000_000] {
            let started = std::time::Instant::now();
            rows.extend(measure(kind, bytes).await);
            eprintln!("{} at {bytes} bytes: {:?}", kind.name(), started.elapsed());
        }
    }
    println!("{}", table(&rows));
}
