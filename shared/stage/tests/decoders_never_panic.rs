//! Property tests over arbitrary bytes for every decoder of input-derived data in the runtime:
//! the Kinesis event parser and the JSON and Protobuf decoders of the shop's change envelope.
//! They return an error value, whatever the bytes; the same targets run longer under cargo-fuzz
//! (`fuzz/`), and these keep CI exercising them without it.

use proptest::prelude::*;
use shardflow_schemas::ChangeEvent;
use shardflow_stage::{BatchError, JsonDecoder, ProtobufDecoder, RecordDecoder, ShardBatch};

fn fixture(path: &str) -> Vec<u8> {
    let path = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn kinesis_event() -> Vec<u8> {
    fixture("tests/fixtures/purchases-batch.json")
}

fn change_event_json() -> Vec<u8> {
    fixture("../schemas/tests/fixtures/order_completed.json")
}

fn change_event_protobuf() -> Vec<u8> {
    fixture("../schemas/tests/fixtures/order_completed.pb")
}

/// `bytes` with up to a few bytes overwritten, cut at `cut` (a fraction of its length).
fn mutated(mut bytes: Vec<u8>, edits: &[(usize, u8)], cut: f64) -> Vec<u8> {
    for &(at, b) in edits {
        let len = bytes.len();
        if len > 0 {
            bytes[at % len] = b;
        }
    }
    let keep = (bytes.len() as f64 * cut) as usize;
    bytes.truncate(keep.max(1));
    bytes
}

/// A Protobuf record decodes to an event that re-encodes to bytes decoding to the same event, or
/// fails with a Protobuf error.
fn protobuf_round_trips_or_fails(bytes: &[u8]) -> Result<(), TestCaseError> {
    let decoder = ProtobufDecoder::<ChangeEvent>::new();
    match decoder.decode(bytes) {
        Ok(event) => prop_assert_eq!(decoder.decode(&prost::Message::encode_to_vec(&event)), Ok(event)),
        Err(e) => prop_assert_eq!(e.format, "protobuf"),
    }
    Ok(())
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8)>> {
    proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6)
}

#[test]
fn the_seeds_decode() {
    assert_eq!(ShardBatch::from_json(&kinesis_event()).unwrap().records.len(), 5);
    let json = JsonDecoder::<ChangeEvent>::new().decode(&change_event_json()).unwrap();
    let pb = ProtobufDecoder::<ChangeEvent>::new()
        .decode(&change_event_protobuf())
        .unwrap();
    assert_eq!(json, pb, "the JSON and Protobuf fixtures are the same event");
}

proptest! {
    #[test]
    fn the_kinesis_event_parser_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let parsed = ShardBatch::from_json(&bytes);
        if serde_json::from_slice::<serde_json::Value>(&bytes).is_err() {
            prop_assert!(matches!(parsed, Err(BatchError::NotAnEvent(_))), "{parsed:?}");
        }
    }

    #[test]
    fn the_kinesis_event_parser_never_panics_on_a_mutated_event(edits in edits(), cut in 0.0..=1.0f64) {
        let _ = ShardBatch::from_json(&mutated(kinesis_event(), &edits, cut));
    }

    #[test]
    fn the_change_event_decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = JsonDecoder::<ChangeEvent>::new().decode(&bytes) {
            prop_assert_eq!(e.format, "json");
        }
        protobuf_round_trips_or_fails(&bytes)?;
    }

    #[test]
    fn the_change_event_decoders_never_panic_on_mutated_fixtures(edits in edits(), cut in 0.0..=1.0f64) {
        let _ = JsonDecoder::<ChangeEvent>::new().decode(&mutated(change_event_json(), &edits, cut));
        protobuf_round_trips_or_fails(&mutated(change_event_protobuf(), &edits, cut))?;
    }
}
