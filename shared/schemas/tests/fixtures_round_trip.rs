//! Round trips of the change envelope through JSON and Protobuf, against fixtures whose binary
//! form was produced by `protoc` from the same data (see `fixtures/*.txtpb`), so prost's encoding
//! and decoding are checked against an independent implementation.

use prost::Message;
use shardflow_schemas::{ChangeEvent, Entity, Op, OrderStatus, PaymentStatus, Table};

const FIXTURES: &[&str] = &["order_completed", "payment_created"];

fn fixture(name: &str, ext: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}.{ext}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn from_json(name: &str) -> ChangeEvent {
    serde_json::from_slice(&fixture(name, "json")).unwrap_or_else(|e| panic!("{name}.json: {e}"))
}

#[test]
fn protoc_encoding_decodes_to_the_json_fixture() {
    for name in FIXTURES {
        let decoded = ChangeEvent::decode(fixture(name, "pb").as_slice()).unwrap();
        assert_eq!(decoded, from_json(name), "{name}");
    }
}

#[test]
fn prost_encoding_of_the_json_fixture_equals_protocs_bytes() {
    for name in FIXTURES {
        assert_eq!(from_json(name).encode_to_vec(), fixture(name, "pb"), "{name}");
    }
}

#[test]
fn json_round_trips_to_the_same_document() {
    for name in FIXTURES {
        let event = from_json(name);
        let written: serde_json::Value = serde_json::to_value(&event).unwrap();
        let fixture: serde_json::Value = serde_json::from_slice(&fixture(name, "json")).unwrap();
        assert_eq!(written, fixture, "{name}");
        let back: ChangeEvent = serde_json::from_value(written).unwrap();
        assert_eq!(back, event, "{name}");
    }
}

#[test]
fn length_delimited_stream_round_trips() {
    let events: Vec<ChangeEvent> = FIXTURES.iter().map(|n| from_json(n)).collect();
    let mut buf = Vec::new();
    for e in &events {
        e.encode_length_delimited(&mut buf).unwrap();
    }
    let mut rest = buf.as_slice();
    let mut back = Vec::new();
    while !rest.is_empty() {
        back.push(ChangeEvent::decode_length_delimited(&mut rest).unwrap());
    }
    assert_eq!(back, events);
}

#[test]
fn serde_form_round_trips_through_postcard_as_keyed_state_does() {
    for name in FIXTURES {
        let event = from_json(name);
        let bytes = postcard::to_allocvec(&event).unwrap();
        let back: ChangeEvent = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, event, "{name}");
    }
}

#[test]
fn typed_access_to_the_fixture() {
    let e = from_json("order_completed");
    assert_eq!(e.op(), Op::Update);
    assert_eq!(e.table(), Some(Table::Orders));
    assert_eq!(e.event_time(), 1_704_067_355_500);
    assert_eq!(e.before_order().map(|o| o.status()), Some(OrderStatus::Shipped));
    assert_eq!(e.after_order().map(|o| o.status()), Some(OrderStatus::Completed));
    assert_eq!(e.partition_key().as_deref(), Some("orders:100042"));
    let p = from_json("payment_created");
    assert!(p.before.is_none());
    assert!(matches!(p.after_entity(), Some(Entity::Payment(x)) if x.status() == PaymentStatus::Authorized));
}

#[test]
fn enum_names_accept_proto_names_and_numbers_and_refuse_garbage() {
    let mut doc: serde_json::Value = serde_json::from_slice(&fixture("order_completed", "json")).unwrap();
    doc["op"] = "OP_UPDATE".into();
    doc["after"]["order"]["status"] = "ORDER_STATUS_CANCELLED".into();
    doc["before"]["order"]["status"] = "42".into();
    let e: ChangeEvent = serde_json::from_value(doc.clone()).unwrap();
    assert_eq!(e.op(), Op::Update);
    assert_eq!(e.after_order().map(|o| o.status()), Some(OrderStatus::Cancelled));
    assert_eq!(e.before_order().map(|o| o.status), Some(42), "unknown values are kept");
    assert_eq!(serde_json::to_value(&e).unwrap()["before"]["order"]["status"], "42");
    doc["op"] = "x".into();
    let err = serde_json::from_value::<ChangeEvent>(doc).unwrap_err();
    assert!(err.to_string().contains("unknown op"), "{err}");
}

#[test]
fn missing_fields_take_their_proto_defaults() {
    let e: ChangeEvent = serde_json::from_str(r#"{"op":"c","after":{"customer":{"customer_id":5}}}"#).unwrap();
    let c = e.after_customer().unwrap();
    assert_eq!((c.customer_id, c.email.as_str(), c.orders_count), (5, "", 0));
    assert!(e.source.is_none());
    assert_eq!(e.event_time(), 0);
}
