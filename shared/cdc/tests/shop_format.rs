//! `--format shop`: inserts, updates, deletes and a multi-row transaction on the shop's tables
//! (`shared/shop/sql/schema.sql`) come out of the reader as the shop's typed envelope, and the
//! decoder of the shop's stages reads back exactly the expected events; a table the shop envelope
//! cannot hold stops the reader with an error naming it, confirming nothing.

mod common;

use common::{poll_until, Fixture};
use shardflow_cdc::{
    CdcError, CdcReader, ChangeSinkError, EncodeError, FileSink, Format, MemoryChangeSink, ShopMapError, SnapshotMode,
};
use shardflow_schemas::{ChangeEvent, Customer, Entity, Op, Order, OrderLine, OrderStatus, Row};
use shardflow_stage::{ProtobufDecoder, RecordDecoder};

const T0: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z

fn customer(orders: i64, last_order_at_ms: i64) -> Customer {
    Customer {
        customer_id: 1,
        name: "Ada 1".into(),
        email: "ada.1@example.com".into(),
        country: "DE".into(),
        orders_count: orders,
        last_order_at_ms,
        created_at_ms: T0,
        updated_at_ms: if orders == 0 { T0 } else { T0 + 60_250 },
    }
}

fn order(status: OrderStatus, updated_at_ms: i64) -> Order {
    Order {
        order_id: 100,
        customer_id: 1,
        status: status as i32,
        total_cents: 1_497,
        currency: "EUR".into(),
        line_count: 2,
        created_at_ms: T0 + 60_250,
        updated_at_ms,
    }
}

fn line(line_no: i32, product_id: i64, quantity: i32) -> OrderLine {
    OrderLine {
        order_id: 100,
        line_no,
        product_id,
        quantity,
        unit_price_cents: 499,
        currency: "EUR".into(),
        created_at_ms: T0 + 60_250,
    }
}

fn change(op: Op, before: Option<Entity>, after: Option<Entity>) -> ChangeEvent {
    ChangeEvent {
        op: op as i32,
        before: before.map(Row::from),
        after: after.map(Row::from),
        source: None,
        ts_ms: 0,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn shop_tables_stream_as_the_typed_shop_envelope() {
    let fx = Fixture::new("shop").await;
    let s = &fx.schema;
    fx.sql(&format!(
        "SET search_path TO {s}; {} CREATE TABLE widgets (id int PRIMARY KEY); RESET search_path;",
        shardflow_shop::sql::SCHEMA_SQL
    ))
    .await;
    let mut config = fx.config(&["customers", "orders", "order_lines", "payments", "shipments", "widgets"]);
    config.snapshot = SnapshotMode::Never;
    let mut reader = CdcReader::connect(&common::database_url(), config).await.unwrap();
    assert_eq!(
        reader.prepared().warnings.len(),
        1,
        "schema.sql sets REPLICA IDENTITY FULL, widgets has the default: {:?}",
        reader.prepared().warnings
    );

    // One simple query string is one transaction: a call per transaction.
    let ts = |t: &str| format!("'2024-01-01 00:0{t}+00'");
    let (t0, t1, t2) = (ts("0:00"), ts("1:00.250"), ts("2:00"));
    fx.sql(&format!(
        "INSERT INTO {s}.customers VALUES (1, 'Ada 1', 'ada.1@example.com', 'DE', 0, NULL, {t0}, {t0})"
    ))
    .await;
    fx.sql(&format!(
        "BEGIN;
           UPDATE {s}.customers SET orders_count = 1, last_order_at = {t1}, updated_at = {t1} WHERE customer_id = 1;
           INSERT INTO {s}.orders VALUES (100, 1, 'pending', 1497, 'EUR', 2, {t1}, {t1});
           INSERT INTO {s}.order_lines VALUES (100, 1, 7, 1, 499, 'EUR', {t1}), (100, 2, 9, 2, 499, 'EUR', {t1});
         COMMIT;"
    ))
    .await;
    fx.sql(&format!(
        "UPDATE {s}.orders SET status = 'paid', updated_at = {t2} WHERE order_id = 100"
    ))
    .await;
    fx.sql(&format!(
        "DELETE FROM {s}.order_lines WHERE order_id = 100 AND line_no = 2"
    ))
    .await;
    let mut sink = MemoryChangeSink::default();
    poll_until(&mut reader, &mut sink, |s| s.events.len() >= 7).await;
    assert_eq!(sink.events.len(), 7);

    let decoder = ProtobufDecoder::<ChangeEvent>::new();
    let mut decoded = Vec::new();
    let mut keys = Vec::new();
    for event in &sink.events {
        let record = Format::Shop.encode(event).unwrap();
        keys.push(record.partition_key);
        decoded.push(decoder.decode(&record.data).unwrap());
    }
    let pending = order(OrderStatus::Pending, T0 + 60_250);
    let expected = vec![
        change(Op::Create, None, Some(Entity::Customer(customer(0, 0)))),
        change(
            Op::Update,
            Some(Entity::Customer(customer(0, 0))),
            Some(Entity::Customer(customer(1, T0 + 60_250))),
        ),
        change(Op::Create, None, Some(Entity::Order(pending.clone()))),
        change(Op::Create, None, Some(Entity::OrderLine(line(1, 7, 1)))),
        change(Op::Create, None, Some(Entity::OrderLine(line(2, 9, 2)))),
        change(
            Op::Update,
            Some(Entity::Order(pending)),
            Some(Entity::Order(order(OrderStatus::Paid, T0 + 120_000))),
        ),
        change(Op::Delete, Some(Entity::OrderLine(line(2, 9, 2))), None),
    ];
    let images: Vec<ChangeEvent> = decoded
        .iter()
        .map(|e| ChangeEvent {
            source: None,
            ts_ms: 0,
            ..e.clone()
        })
        .collect();
    assert_eq!(images, expected);
    assert_eq!(
        keys,
        [
            "customers:1",
            "customers:1",
            "orders:100",
            "order_lines:100:1",
            "order_lines:100:2",
            "orders:100",
            "order_lines:100:2"
        ]
    );

    let sources: Vec<_> = decoded.iter().map(|e| e.source.clone().unwrap()).collect();
    let tables: Vec<&str> = sources.iter().map(|s| s.table.as_str()).collect();
    assert_eq!(
        tables,
        [
            "customers",
            "customers",
            "orders",
            "order_lines",
            "order_lines",
            "orders",
            "order_lines"
        ]
    );
    assert!(sources
        .iter()
        .all(|src| src.connector == "postgresql" && src.db == "test" && &src.schema == s));
    let tx: Vec<i64> = sources.iter().map(|s| s.tx_id).collect();
    assert!(tx[1..5].iter().all(|t| *t == tx[1]), "one transaction: {tx:?}");
    assert!(tx[0] < tx[1] && tx[1] < tx[5] && tx[5] < tx[6], "commit order: {tx:?}");
    assert!(sources
        .windows(2)
        .all(|w| w[0].lsn < w[1].lsn && w[0].ts_ms <= w[1].ts_ms));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for e in &decoded {
        let commit = e.source.as_ref().unwrap().ts_ms;
        assert!((now - 60_000..=now).contains(&commit), "commit time {commit}");
        assert!(e.ts_ms >= commit, "processed after the commit");
    }

    // The generic envelope of the same events decodes back to the reader's events.
    let generic = ProtobufDecoder::<shardflow_schemas::cdc::v1::ChangeEvent>::new();
    for event in &sink.events {
        let pb = generic.decode(&Format::Protobuf.encode(event).unwrap().data).unwrap();
        assert_eq!(&shardflow_cdc::proto::from_proto(pb).unwrap(), event);
    }

    // A table outside the shop: the reader stops with the mapping error and confirms nothing.
    let confirmed = fx.slot_confirmed().await;
    fx.sql(&format!("INSERT INTO {s}.widgets VALUES (1)")).await;
    let mut shop_sink = FileSink::append_to_file(std::path::Path::new("/dev/null"), Format::Shop)
        .await
        .unwrap();
    let mut err = None;
    for _ in 0..100 {
        match reader.poll(&mut shop_sink).await {
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let err = err.expect("the widgets insert fails to encode");
    assert!(
        matches!(
            &err,
            CdcError::Sink(ChangeSinkError::Encode(EncodeError::Shop(ShopMapError::UnknownTable(t)))) if t.name == "widgets"
        ),
        "{err}"
    );
    assert!(err.to_string().contains("widgets"), "{err}");
    assert_eq!(
        fx.slot_confirmed().await,
        confirmed,
        "nothing confirmed past the failure"
    );
    drop(reader);
    fx.cleanup().await;
}
