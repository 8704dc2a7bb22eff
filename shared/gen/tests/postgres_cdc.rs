//! End to end: a generated shop workload executed against Postgres (`gen shop --database-url`),
//! captured by the CDC reader as the shop's typed envelope into the Kinesis of LocalStack
//! (`AWS_ENDPOINT_URL`), read back with the decoder of the shop's stages and run through the
//! `revenue` pipeline: every row's changes equal the generated ones, in order, and the revenue
//! equals the generated order lines'.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use shardflow_cdc::{CdcConfig, CdcReader, ChangeSink, Format, KinesisSink, SnapshotMode, TableName};
use shardflow_kinesis::{KinesisProducer, KinesisTransport, ProducerConfig};
use shardflow_schemas::{ChangeEvent, Op};
use shardflow_shop::{revenue, ShopConfig, ShopGenerator};
use shardflow_stage::{ProtobufDecoder, RecordDecoder};

const NAME: &str = "gen_it_shop";

async fn drop_objects(admin: &tokio_postgres::Client) {
    admin
        .batch_execute(&format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{NAME}';
             DROP PUBLICATION IF EXISTS {NAME}; DROP SCHEMA IF EXISTS {NAME} CASCADE;"
        ))
        .await
        .unwrap();
}

/// The row images of a change with `source` and `ts_ms` cleared; `r` (the generator's initial
/// customers, inserted into the database) as `c`.
fn images(e: &ChangeEvent) -> ChangeEvent {
    let op = if e.op == Op::Read as i32 {
        Op::Create as i32
    } else {
        e.op
    };
    ChangeEvent {
        op,
        source: None,
        ts_ms: 0,
        ..e.clone()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn generated_workload_flows_from_postgres_through_cdc_and_kinesis_into_the_revenue_pipeline() {
    let admin = shardflow_testkit::postgres().await;
    drop_objects(&admin).await;
    let mut loader = shardflow_testkit::postgres().await;
    shardflow_gen::postgres::prepare_schema(&loader, NAME, true)
        .await
        .unwrap();

    let tables = ["customers", "orders", "order_lines", "payments", "shipments"];
    let mut config = CdcConfig::new(NAME, NAME, tables.iter().map(|t| TableName::new(NAME, *t)).collect());
    config.create_slot = true;
    config.create_publication = true;
    config.snapshot = SnapshotMode::Never;
    let mut reader = CdcReader::connect(&shardflow_testkit::postgres_url(), config)
        .await
        .unwrap();

    let workload = ShopConfig::new(11, 3_000, 1);
    let report = shardflow_gen::postgres::load_shop(&mut loader, workload.clone(), 0.0, |_| {})
        .await
        .unwrap();
    assert!(report.changes >= 3_000 && report.transactions > 500, "{report:?}");

    let (kinesis, stream) = shardflow_testkit::kinesis_stream("cdc-shop", 2).await;
    let mut sink = KinesisSink::new(
        KinesisProducer::new(
            KinesisTransport::new(kinesis.clone(), &stream),
            ProducerConfig::default(),
        ),
        Format::Shop,
    );
    let started = std::time::Instant::now();
    while sink.sent() < report.changes {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out: {} changes",
            sink.sent()
        );
        if reader.poll(&mut sink).await.unwrap().events == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    sink.flush().await.unwrap();
    assert_eq!(sink.sent(), report.changes, "no change twice");
    drop(reader);

    let records =
        shardflow_testkit::read_stream(&kinesis, &stream, report.changes as usize, Duration::from_secs(60)).await;
    let decoder = ProtobufDecoder::<ChangeEvent>::new();
    let decoded: Vec<(String, ChangeEvent)> = records
        .iter()
        .map(|r| (r.partition_key.clone(), decoder.decode(&r.data).unwrap()))
        .collect();
    assert_eq!(decoded.len() as u64, report.changes);

    // Per row (partition key), the captured changes are the generated ones in commit order.
    let mut generator = ShopGenerator::in_commit_order(workload);
    let generated: Vec<ChangeEvent> = std::iter::from_fn(|| generator.next_transaction()).flatten().collect();
    let mut expected: BTreeMap<String, Vec<ChangeEvent>> = BTreeMap::new();
    for e in &generated {
        expected.entry(e.partition_key().unwrap()).or_default().push(images(e));
    }
    let mut captured: BTreeMap<String, Vec<ChangeEvent>> = BTreeMap::new();
    for (key, e) in &decoded {
        assert_eq!(
            Some(key),
            e.partition_key().as_ref(),
            "record keyed by table:primary key"
        );
        captured.entry(key.clone()).or_default().push(images(e));
    }
    assert_eq!(captured.len(), expected.len());
    assert_eq!(captured, expected);
    let tx_ids: HashSet<i64> = decoded.iter().map(|(_, e)| e.source.as_ref().unwrap().tx_id).collect();
    assert_eq!(
        tx_ids.len() as u64,
        report.transactions,
        "one database transaction per generated one"
    );
    for (_, e) in &decoded {
        let s = e.source.as_ref().unwrap();
        assert_eq!((s.db.as_str(), s.schema.as_str()), ("test", NAME));
        assert_eq!(e.table().map(|t| t.as_str()), Some(s.table.as_str()));
    }

    // The revenue pipeline on the captured stream: the latest pane of every (product, window)
    // sums to the generated lines' revenue.
    let mut engine = revenue().engine();
    let shard = engine.partition("shard-0");
    for (offset, (_, e)) in decoded.into_iter().enumerate() {
        let arrival = e.ts_ms;
        engine.process(shard, offset as u64, arrival, e);
    }
    engine.finish();
    let mut latest: HashMap<(i64, i64), (u32, i64)> = HashMap::new();
    for row in engine.drain_output().into_iter().map(|o| o.value) {
        let slot = latest.entry((row.product_id, row.window_start_ms)).or_insert((0, 0));
        if row.pane_index >= slot.0 {
            *slot = (row.pane_index, row.revenue_cents);
        }
    }
    let revenue_cents: i64 = latest.values().map(|(_, cents)| cents).sum();
    let generated_cents: i64 = generated
        .iter()
        .filter(|e| e.op == Op::Create as i32)
        .filter_map(|e| e.after_order_line())
        .map(|l| i64::from(l.quantity) * l.unit_price_cents)
        .sum();
    assert!(generated_cents > 0);
    assert_eq!(revenue_cents, generated_cents);
    assert_eq!(engine.metrics().late_records, 0);

    shardflow_testkit::delete_stream(&kinesis, &stream).await;
    drop(loader);
    drop_objects(&admin).await;
}
