//! Semantics of the shop pipelines on small hand-built change streams.

use shardflow_engine::{Engine, Output};
use shardflow_schemas::{
    ChangeEvent, Customer, Entity, Op, Order, OrderLine, OrderStatus, Payment, PaymentStatus, Row, Shipment,
    ShipmentStatus, Source,
};
use shardflow_shop::pipelines::{order_enrich, receipts, revenue, ENRICH_SESSION_GAP_MS};

const T0: i64 = 1_704_067_200_000;

fn change(op: Op, before: Option<Entity>, after: Option<Entity>, commit: i64, lsn: u64) -> ChangeEvent {
    let table = after
        .as_ref()
        .or(before.as_ref())
        .map(|e| e.table().as_str())
        .unwrap_or_default();
    ChangeEvent {
        op: op as i32,
        before: before.map(Row::from),
        after: after.map(Row::from),
        source: Some(Source {
            connector: "postgresql".into(),
            db: "shop".into(),
            schema: "public".into(),
            table: table.into(),
            lsn,
            tx_id: lsn as i64,
            ts_ms: commit,
        }),
        ts_ms: commit,
    }
}

fn line(order_id: i64, product_id: i64, quantity: i32, price: i64, commit: i64) -> ChangeEvent {
    let l = OrderLine {
        order_id,
        line_no: 1,
        product_id,
        quantity,
        unit_price_cents: price,
        currency: "EUR".into(),
        created_at_ms: commit,
    };
    change(Op::Create, None, Some(Entity::OrderLine(l)), commit, order_id as u64)
}

fn order(order_id: i64, customer_id: i64, status: OrderStatus, at: i64) -> Order {
    Order {
        order_id,
        customer_id,
        status: status as i32,
        total_cents: 4_200,
        currency: "EUR".into(),
        line_count: 1,
        created_at_ms: T0,
        updated_at_ms: at,
    }
}

/// A record fed to an engine: (arrival, event); offsets are positions in the list.
fn feed<Out: Send + 'static>(engine: &mut Engine<ChangeEvent, Out>, events: Vec<(i64, ChangeEvent)>) {
    let shard = engine.partition("shard-0");
    for (offset, (arrival, e)) in events.into_iter().enumerate() {
        engine.process(shard, offset as u64, arrival, e);
    }
}

#[test]
fn revenue_fires_early_on_time_and_late_panes_and_sends_too_late_lines_aside() {
    let mut engine = revenue().engine();
    let shard = engine.partition("shard-0");
    // Window [T0, T0+60s) of product 7: a line at 1 s (2 x 1000), a line at 5 s arriving at 12 s.
    engine.process(shard, 0, T0 + 1_000, line(1, 7, 2, 1_000, T0 + 1_000));
    engine.process(shard, 1, T0 + 12_000, line(2, 7, 1, 500, T0 + 5_000));
    let early: Vec<_> = engine.drain_output().into_iter().map(|o| o.value).collect();
    assert_eq!(
        early.len(),
        1,
        "10 s of processing time after the first line: an early pane"
    );
    assert_eq!(
        (early[0].pane.as_str(), early[0].revenue_cents, early[0].order_count),
        ("early", 2_000, 1)
    );

    // Another product moves the watermark past the window's end: the on-time pane holds both lines.
    engine.process(shard, 2, T0 + 70_000, line(3, 8, 1, 100, T0 + 70_000));
    let panes: Vec<_> = engine
        .drain_output()
        .into_iter()
        .map(|o| o.value)
        .filter(|r| r.product_id == 7)
        .collect();
    let on_time = panes.iter().find(|r| r.pane == "on_time").expect("an on-time pane");
    assert_eq!((on_time.revenue_cents, on_time.order_count), (2_500, 2));
    assert!(panes
        .iter()
        .all(|r| r.window_start_ms == T0 && r.window_end_ms == T0 + 60_000));

    // A late line within the 5 min of allowed lateness updates the window (accumulating).
    engine.process(shard, 3, T0 + 80_000, line(4, 7, 3, 100, T0 + 30_000));
    let late: Vec<_> = engine
        .drain_output()
        .into_iter()
        .map(|o| o.value)
        .filter(|r| r.product_id == 7)
        .collect();
    assert_eq!(late.len(), 1, "{late:?}");
    assert_eq!(
        (late[0].pane.as_str(), late[0].revenue_cents, late[0].order_count),
        ("late", 2_800, 3)
    );
    assert!(
        late[0].pane_index > on_time.pane_index,
        "a sink upserts the highest pane index"
    );

    // Past the allowed lateness a line of the window goes to the late side output.
    engine.process(shard, 4, T0 + 500_000, line(5, 9, 1, 100, T0 + 500_000));
    engine.drain_output();
    engine.process(shard, 5, T0 + 501_000, line(6, 7, 1, 100, T0 + 40_000));
    assert!(
        engine.drain_output().iter().all(|o| o.value.product_id != 7),
        "the window is closed"
    );
    let aside = engine.drain_late();
    assert_eq!(aside.len(), 1);
    assert_eq!((aside[0].offset, aside[0].timestamp), (Some(5), T0 + 40_000));
    assert_eq!(engine.metrics().late_records, 1);
}

#[test]
fn revenue_ignores_updates_deletes_and_other_tables() {
    let mut engine = revenue().engine();
    let l = line(1, 7, 1, 100, T0).after_entity().cloned();
    feed(
        &mut engine,
        vec![
            (T0, change(Op::Update, l.clone(), l.clone(), T0, 1)),
            (T0, change(Op::Delete, l, None, T0, 2)),
            (
                T0,
                change(
                    Op::Create,
                    None,
                    Some(Entity::Order(order(1, 1, OrderStatus::Pending, T0))),
                    T0,
                    3,
                ),
            ),
        ],
    );
    engine.finish();
    assert!(engine.drain_output().is_empty());
}

fn completed(order_id: i64, customer_id: i64, from: OrderStatus, at: i64, lsn: u64) -> ChangeEvent {
    change(
        Op::Update,
        Some(Entity::Order(order(order_id, customer_id, from, at - 1))),
        Some(Entity::Order(order(order_id, customer_id, OrderStatus::Completed, at))),
        at,
        lsn,
    )
}

#[test]
fn receipts_exactly_once_per_completed_purchase() {
    let paid = change(
        Op::Update,
        Some(Entity::Order(order(10, 3, OrderStatus::Pending, T0))),
        Some(Entity::Order(order(10, 3, OrderStatus::Paid, T0 + 1_000))),
        T0 + 1_000,
        1,
    );
    let done = completed(10, 3, OrderStatus::Shipped, T0 + 90_000, 2);
    let events = vec![
        (T0 + 1_000, paid),
        (T0 + 90_500, done.clone()),
        (T0 + 91_000, done.clone()), // redelivered change
        (T0 + 92_000, completed(10, 3, OrderStatus::Completed, T0 + 92_000, 3)), // completed -> completed
        (T0 + 95_000, completed(11, 3, OrderStatus::Shipped, T0 + 95_000, 4)),
    ];
    let mut engine = receipts().engine();
    feed(&mut engine, events.clone());
    let first: Vec<Output<_>> = engine.drain_output();
    engine.finish();
    let rest = engine.drain_output();
    assert!(rest.is_empty(), "nothing more at the end of input: {rest:?}");
    let orders: Vec<i64> = first.iter().map(|o| o.value.order_id).collect();
    assert_eq!(orders, vec![10, 11], "one receipt per completed order, emitted at once");
    assert_eq!(first[0].value.receipt_id, "rcpt-10");
    assert_eq!(first[0].value.total_cents, 4_200);
    assert_eq!(first[0].value.completed_at_ms, T0 + 90_000);

    // The same completion first seen at another offset (after a replay) has the same id.
    let mut replay = receipts().engine();
    feed(
        &mut replay,
        vec![
            (T0, completed(11, 3, OrderStatus::Shipped, T0 + 95_000, 4)),
            events[1].clone(),
        ],
    );
    let ids: Vec<_> = replay.drain_output().iter().map(|o| o.id).collect();
    assert_eq!(ids, vec![first[1].id, first[0].id]);
}

fn customer(id: i64) -> Entity {
    Entity::Customer(Customer {
        customer_id: id,
        name: format!("Ada {id}"),
        email: format!("ada.{id}@example.com"),
        country: "DE".into(),
        orders_count: 1,
        ..Default::default()
    })
}

fn payment(order_id: i64, customer_id: i64, status: PaymentStatus) -> Entity {
    Entity::Payment(Payment {
        payment_id: order_id + 500,
        order_id,
        customer_id,
        status: status as i32,
        amount_cents: 4_200,
        currency: "EUR".into(),
        method: "card".into(),
        ..Default::default()
    })
}

fn shipment(order_id: i64, customer_id: i64, status: ShipmentStatus) -> Entity {
    Entity::Shipment(Shipment {
        shipment_id: order_id + 900,
        order_id,
        customer_id,
        status: status as i32,
        carrier: "DHL".into(),
        tracking_number: format!("TRK{order_id}"),
        ..Default::default()
    })
}

/// A customer's full lifecycle of one order from `t`, optionally without some parts.
fn lifecycle(c: i64, order_id: i64, t: i64, with_customer: bool, with_shipment: bool) -> Vec<(i64, ChangeEvent)> {
    let lsn = (order_id as u64) * 100;
    let mut v = Vec::new();
    if with_customer {
        v.push((t, change(Op::Update, None, Some(customer(c)), t, lsn)));
    }
    v.push((
        t,
        change(
            Op::Create,
            None,
            Some(Entity::Order(order(order_id, c, OrderStatus::Pending, t))),
            t,
            lsn + 1,
        ),
    ));
    v.push((
        t + 10_000,
        change(
            Op::Create,
            None,
            Some(payment(order_id, c, PaymentStatus::Authorized)),
            t + 10_000,
            lsn + 2,
        ),
    ));
    v.push((
        t + 15_000,
        change(
            Op::Update,
            None,
            Some(payment(order_id, c, PaymentStatus::Captured)),
            t + 15_000,
            lsn + 3,
        ),
    ));
    if with_shipment {
        v.push((
            t + 60_000,
            change(
                Op::Create,
                None,
                Some(shipment(order_id, c, ShipmentStatus::Shipped)),
                t + 60_000,
                lsn + 4,
            ),
        ));
        v.push((
            t + 120_000,
            change(
                Op::Update,
                None,
                Some(shipment(order_id, c, ShipmentStatus::Delivered)),
                t + 120_000,
                lsn + 5,
            ),
        ));
        v.push((
            t + 120_000,
            completed(order_id, c, OrderStatus::Shipped, t + 120_000, lsn + 6),
        ));
    }
    v
}

#[test]
fn an_enriched_order_only_when_order_payment_shipment_and_customer_are_present() {
    let mut events = Vec::new();
    events.extend(lifecycle(1, 100, T0, true, true)); // complete
    events.extend(lifecycle(2, 200, T0 + 1_000, true, false)); // no shipment
    events.extend(lifecycle(3, 300, T0 + 2_000, false, true)); // no customer row
    events.sort_by_key(|(arrival, _)| *arrival);
    let mut engine = order_enrich().engine();
    feed(&mut engine, events);
    engine.finish();
    let out: Vec<_> = engine.drain_output().into_iter().map(|o| o.value).collect();
    assert_eq!(out.len(), 1, "{out:?}");
    let e = &out[0];
    assert_eq!((e.order_id, e.customer_id), (100, 1));
    assert_eq!(e.order_status, "completed", "the latest order image of the session");
    assert_eq!(
        (e.payment_status.as_str(), e.shipment_status.as_str()),
        ("captured", "delivered")
    );
    assert_eq!(e.customer_email, "ada.1@example.com");
    assert_eq!(
        (e.session_start_ms, e.session_end_ms),
        (T0, T0 + 120_000 + ENRICH_SESSION_GAP_MS)
    );
}

#[test]
fn a_row_arriving_after_its_session_closed_is_counted_late() {
    let mut events = lifecycle(1, 100, T0, true, true);
    // Another customer's activity moves the watermark far beyond customer 1's session.
    events.push((
        T0 + 600_000,
        change(Op::Update, None, Some(customer(9)), T0 + 600_000, 10_000),
    ));
    // Customer 1's payment refund committed during the session, delivered 10 minutes late.
    events.push((
        T0 + 601_000,
        change(
            Op::Update,
            None,
            Some(payment(100, 1, PaymentStatus::Refunded)),
            T0 + 20_000,
            10_001,
        ),
    ));
    let mut engine = order_enrich().engine();
    feed(&mut engine, events);
    assert_eq!(
        engine.drain_output().len(),
        1,
        "the session fired when the watermark passed it"
    );
    let late = engine.drain_late();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].timestamp, T0 + 20_000);
    engine.finish();
    assert!(engine.drain_output().is_empty(), "the late row changes nothing");
}
