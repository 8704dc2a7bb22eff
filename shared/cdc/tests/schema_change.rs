//! A change of the source schema while the pipelines run: a nullable column added to `orders`
//! and a column dropped from `order_lines` (real Postgres, logical decoding). The generic envelope
//! carries each row with the columns it had when it was written; the shop envelope, which reads
//! its columns by name, maps rows of both schemas; and the shop pipelines' checkpoint taken
//! before the change restores as stored after it, their results equal to a run without the cut.
//! Dropping a column the shop envelope needs stops the mapping with an error naming the column.

mod common;

use common::{poll_until, Fixture};
use shardflow_cdc::{ChangeEvent, ColumnValue, EncodeError, Format, MemoryChangeSink, ShopMapError, SnapshotMode};
use shardflow_engine::checkpoint::CheckpointImage;
use shardflow_engine::{Engine, Pipeline, RestoreOptions};
use shardflow_schemas::ChangeEvent as ShopChange;
use shardflow_stage::{ProtobufDecoder, RecordDecoder};

/// The reader's events as the shop pipelines read them.
fn shop_events(events: &[ChangeEvent]) -> Vec<ShopChange> {
    let decoder = ProtobufDecoder::<ShopChange>::new();
    events
        .iter()
        .map(|e| decoder.decode(&Format::Shop.encode(e).unwrap().data).unwrap())
        .collect()
}

/// The values `p` emits for `input`, run whole; and run over `input[..cut]`, checkpointed,
/// restored (the restore must be plain) and run over the rest.
fn whole_and_cut<Out: Send + Clone + std::fmt::Debug + 'static>(
    p: &Pipeline<ShopChange, Out>,
    input: &[ShopChange],
    cut: usize,
) -> (Vec<Out>, Vec<Out>) {
    let run = |e: &mut Engine<ShopChange, Out>, from: usize, to: usize| {
        let shard = e.partition("shard-0");
        for (i, event) in input.iter().enumerate().take(to).skip(from) {
            e.process(shard, i as u64, 0, event.clone());
        }
    };
    let mut whole = p.engine();
    run(&mut whole, 0, input.len());
    whole.finish();
    let mut before = p.engine();
    run(&mut before, 0, cut);
    let mut out: Vec<Out> = before.drain_output().into_iter().map(|o| o.value).collect();
    let image = CheckpointImage::new(before.snapshot().unwrap());
    let (mut after, report) = Engine::restore_with(p, &image, RestoreOptions::strict()).unwrap();
    assert!(report.is_plain(), "{report:?}");
    run(&mut after, cut, input.len());
    after.finish();
    out.extend(after.drain_output().into_iter().map(|o| o.value));
    (whole.drain_output().into_iter().map(|o| o.value).collect(), out)
}

#[tokio::test(flavor = "current_thread")]
async fn a_column_added_and_a_column_dropped_flow_through_the_envelopes_and_the_pipelines_restore() {
    let fx = Fixture::new("change14_schema_change").await;
    let s = &fx.schema;
    fx.sql(&format!(
        "SET search_path TO {s}; {} RESET search_path; ALTER TABLE {s}.order_lines ADD COLUMN legacy_sku text;",
        shardflow_shop::sql::SCHEMA_SQL
    ))
    .await;
    let mut config = fx.config(&["customers", "orders", "order_lines", "payments", "shipments"]);
    config.snapshot = SnapshotMode::Never;
    let mut reader = shardflow_cdc::CdcReader::connect(&common::database_url(), config)
        .await
        .unwrap();

    // Before the change: an order of two lines (with the legacy column), completed.
    fx.sql(&format!(
        "INSERT INTO {s}.customers VALUES (1, 'Ada', 'ada@example.com', 'DE', 0, NULL, now(), now());
         BEGIN;
           INSERT INTO {s}.orders VALUES (100, 1, 'pending', 1497, 'EUR', 2, now(), now());
           INSERT INTO {s}.order_lines VALUES (100, 1, 7, 1, 499, 'EUR', now(), 'SKU-7'),
                                              (100, 2, 9, 2, 499, 'EUR', now(), 'SKU-9');
         COMMIT;
         UPDATE {s}.orders SET status = 'completed', updated_at = now() WHERE order_id = 100;"
    ))
    .await;
    let mut sink = MemoryChangeSink::default();
    poll_until(&mut reader, &mut sink, |s| s.events.len() >= 5).await;
    let cut = sink.events.len();
    assert_eq!(cut, 5);

    // The change: a nullable column added, a column dropped; then orders with and without it.
    fx.sql(&format!(
        "ALTER TABLE {s}.orders ADD COLUMN coupon text;
         ALTER TABLE {s}.order_lines DROP COLUMN legacy_sku;
         BEGIN;
           INSERT INTO {s}.orders VALUES (101, 1, 'pending', 499, 'EUR', 1, now(), now(), 'WINTER');
           INSERT INTO {s}.order_lines VALUES (101, 1, 7, 1, 499, 'EUR', now());
         COMMIT;
         BEGIN;
           INSERT INTO {s}.orders (order_id, customer_id, status, total_cents, currency, line_count, created_at, updated_at)
             VALUES (102, 1, 'pending', 998, 'EUR', 1, now(), now());
           INSERT INTO {s}.order_lines VALUES (102, 1, 9, 2, 499, 'EUR', now());
         COMMIT;
         UPDATE {s}.orders SET status = 'completed', updated_at = now() WHERE order_id = 101;
         UPDATE {s}.orders SET status = 'completed', updated_at = now() WHERE order_id = 102;"
    ))
    .await;
    poll_until(&mut reader, &mut sink, |s| s.events.len() >= cut + 6).await;
    let events = sink.events.clone();
    assert_eq!(events.len(), cut + 6);

    // The generic envelope: each row with the columns it had when it was written.
    let column = |e: &ChangeEvent, c: &str| e.after.as_ref().and_then(|row| row.get(c)).cloned();
    let lines: Vec<&ChangeEvent> = events.iter().filter(|e| e.source.table.name == "order_lines").collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(column(lines[0], "legacy_sku"), Some(ColumnValue::Text("SKU-7".into())));
    assert!(lines[2..].iter().all(|e| column(e, "legacy_sku").is_none()), "dropped");
    let orders: Vec<&ChangeEvent> = events.iter().filter(|e| e.source.table.name == "orders").collect();
    assert!(
        orders[..2].iter().all(|e| column(e, "coupon").is_none()),
        "not there yet"
    );
    let coupons: Vec<Option<ColumnValue>> = orders[2..].iter().map(|e| column(e, "coupon")).collect();
    assert_eq!(
        coupons,
        [
            Some(ColumnValue::Text("WINTER".into())),
            Some(ColumnValue::Null),
            Some(ColumnValue::Text("WINTER".into())),
            Some(ColumnValue::Null),
        ]
    );
    let generic = ProtobufDecoder::<shardflow_schemas::cdc::v1::ChangeEvent>::new();
    for event in &events {
        let pb = generic.decode(&Format::Protobuf.encode(event).unwrap().data).unwrap();
        assert_eq!(&shardflow_cdc::proto::from_proto(pb).unwrap(), event);
    }

    // The shop envelope maps rows of both schemas; the pipelines' state of before the change
    // restores as stored, and the results equal a run without the cut.
    let input = shop_events(&events);
    let (whole, cut_run) = whole_and_cut(&shardflow_shop::revenue(), &input, cut);
    let revenue: i64 = whole
        .iter()
        .filter(|r| r.pane == "on_time")
        .map(|r| r.revenue_cents)
        .sum();
    assert_eq!(revenue, 499 + 998 + 499 + 998, "every line counted once");
    assert_eq!(cut_run, whole);
    let (whole, cut_run) = whole_and_cut(&shardflow_shop::receipts(), &input, cut);
    let receipts: Vec<i64> = whole.iter().map(|r| r.order_id).collect();
    assert_eq!(receipts, [100, 101, 102]);
    assert_eq!(cut_run, whole);

    // Dropping a column the shop envelope needs: the mapping stops, naming it.
    fx.sql(&format!(
        "ALTER TABLE {s}.orders DROP COLUMN currency;
         UPDATE {s}.orders SET status = 'cancelled', updated_at = now() WHERE order_id = 101;"
    ))
    .await;
    poll_until(&mut reader, &mut sink, |s| s.events.len() > cut + 6).await;
    let err = Format::Shop.encode(sink.events.last().unwrap()).unwrap_err();
    assert!(
        matches!(
            &err,
            EncodeError::Shop(ShopMapError::MissingColumn { column: "currency", .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("currency"), "{err}");
    drop(reader);
    fx.cleanup().await;
}
