//! The reader's CPU cost per change, without Postgres: `pgoutput` messages (as the slot returns
//! them) decoded, assembled into change events, and encoded in each output format.
//!
//! Input: 10 000 changes of the shop's `orders` table (`shared/shop/sql/schema.sql`, REPLICA
//! IDENTITY FULL) in 100 transactions: 50 inserts and 50 updates each (an update carries the
//! old and the new row).
//!
//! `cargo bench -p shardflow-cdc --bench decode_encode`

use std::collections::HashMap;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardflow_cdc::assembler::{Applied, ChangeAssembler};
use shardflow_cdc::pgoutput::{build, decode, TupleValue};
use shardflow_cdc::value::oid;
use shardflow_cdc::{ChangeEvent, Format, Lsn, TableName};

const ORDERS_OID: u32 = 16_500;
const TRANSACTIONS: u64 = 100;
const PER_TRANSACTION: u64 = 100;

fn order(id: u64, status: &str) -> Vec<TupleValue> {
    let t = |s: String| TupleValue::Text(s);
    vec![
        t(id.to_string()),
        t((id % 997).to_string()),
        t(status.to_owned()),
        t((1_000 + id % 50_000).to_string()),
        t("EUR".to_owned()),
        t((1 + id % 4).to_string()),
        t(format!(
            "2024-01-01 00:{:02}:{:02}.{:03}+00",
            (id / 60) % 60,
            id % 60,
            id % 1000
        )),
        t(format!(
            "2024-01-01 01:{:02}:{:02}.{:03}+00",
            (id / 60) % 60,
            id % 60,
            id % 1000
        )),
    ]
}

/// The messages of the workload, with their LSNs, as a peek returns them.
fn messages() -> Vec<(Lsn, Vec<u8>)> {
    let mut out = vec![(
        Lsn(1),
        build::relation(
            ORDERS_OID,
            "public",
            "orders",
            b'f',
            &[
                (true, "order_id", oid::INT8),
                (true, "customer_id", oid::INT8),
                (true, "status", 25),
                (true, "total_cents", oid::INT8),
                (true, "currency", 1042),
                (true, "line_count", oid::INT4),
                (true, "created_at", oid::TIMESTAMPTZ),
                (true, "updated_at", oid::TIMESTAMPTZ),
            ],
        ),
    )];
    let mut lsn = 100u64;
    for tx in 0..TRANSACTIONS {
        let begin_lsn = lsn;
        let final_lsn = begin_lsn + PER_TRANSACTION * 100 + 50;
        out.push((
            Lsn(begin_lsn),
            build::begin(final_lsn, 757_382_400_000_000, 1_000 + tx as u32),
        ));
        for i in 0..PER_TRANSACTION / 2 {
            let id = tx * PER_TRANSACTION + i;
            lsn += 100;
            out.push((Lsn(lsn), build::insert(ORDERS_OID, &order(id, "pending"))));
            lsn += 100;
            let old = order(id, "pending");
            out.push((
                Lsn(lsn),
                build::update(ORDERS_OID, Some((b'O', &old)), &order(id, "paid")),
            ));
        }
        out.push((
            Lsn(final_lsn),
            build::commit(final_lsn, final_lsn + 8, 757_382_400_000_000),
        ));
        lsn = final_lsn + 100;
    }
    out
}

fn assembler() -> ChangeAssembler {
    ChangeAssembler::new(
        "shop",
        HashMap::from([(TableName::new("public", "orders"), vec!["order_id".to_owned()])]),
        None,
    )
}

/// Decodes and assembles every message; calls `each` with every event; returns the events seen.
fn run(messages: &[(Lsn, Vec<u8>)], mut each: impl FnMut(&ChangeEvent)) -> u64 {
    let mut assembler = assembler();
    let mut events = Vec::with_capacity(1_000);
    let mut n = 0u64;
    for (lsn, bytes) in messages {
        let msg = decode(bytes).expect("a well-formed message");
        if let Applied::Committed { .. } = assembler.apply(*lsn, msg, 0, &mut events).expect("consistent") {
            for e in events.drain(..) {
                each(&e);
                n += 1;
            }
        }
    }
    n
}

fn decode_encode(c: &mut Criterion) {
    let input = messages();
    let changes = TRANSACTIONS * PER_TRANSACTION;
    assert_eq!(run(&input, |_| {}), changes);
    let mut group = c.benchmark_group("cdc");
    group.throughput(Throughput::Elements(changes));
    group.bench_function("decode_assemble", |b| {
        b.iter(|| {
            run(&input, |e| {
                std::hint::black_box(e);
            })
        })
    });
    for (name, format) in [
        ("protobuf", Format::Protobuf),
        ("json", Format::Json),
        ("shop", Format::Shop),
    ] {
        group.bench_function(format!("decode_assemble_encode/{name}"), |b| {
            b.iter(|| {
                let mut bytes = 0usize;
                run(&input, |e| bytes += format.encode(e).expect("encodable").data.len());
                bytes
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode_encode);
criterion_main!(benches);
