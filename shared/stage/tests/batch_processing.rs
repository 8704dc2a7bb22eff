//! A Kinesis batch from a JSON fixture through the engine: decoding, dead letters, late routing,
//! redelivery skipping and the partial batch response.

use aws_lambda_events::event::kinesis::KinesisEvent;
use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::{CheckpointImage, Engine, Pipeline, Trigger, WatermarkStrategy, Windowing};
use shardflow_stage::{
    batch_response, process_batch, BatchError, DeadLetterKind, InputRecord, JsonDecoder, SequenceNumber, ShardBatch,
};

#[derive(Debug, Clone, serde::Deserialize)]
struct Purchase {
    #[allow(dead_code)]
    order_id: u64,
    product: u32,
    cents: i64,
    ts_ms: i64,
}

const FIXTURE: &str = include_str!("fixtures/purchases-batch.json");

fn event() -> KinesisEvent {
    serde_json::from_str(FIXTURE).expect("fixture is a Kinesis event")
}

/// Revenue per product per minute; 1 s out-of-orderness so the fifth record is late.
fn revenue() -> Pipeline<Purchase, (u32, i64, u64, i64)> {
    Pipeline::builder("revenue")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(1_000).unwrap())
        .event_time(|p: &Purchase| p.ts_ms)
        .key_by(|p| p.product)
        .window(Windowing::tumbling(60_000).unwrap())
        .trigger(Trigger::at_watermark())
        .aggregate((Count, Sum::of(|p: &Purchase| p.cents)), |product, w, _, (n, cents)| {
            (*product, w.start, n, cents)
        })
        .sink("revenue")
}

fn batch() -> ShardBatch {
    ShardBatch::from_json(FIXTURE.as_bytes()).expect("fixture is a one-shard batch")
}

#[test]
fn fixture_round_trips_and_becomes_one_shard_batch() {
    let e = event();
    let again: KinesisEvent = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
    assert_eq!(again, e);
    let batch = batch();
    assert_eq!(batch.stream, "shop-purchases");
    assert_eq!(batch.shard_id, "shardId-000000000002");
    assert_eq!(batch.records.len(), 5);
    // The fixture spells these 1700000000.25 and 1700000010.1, as Kinesis drops trailing zeros.
    assert_eq!(batch.records[0].arrival_ms, 1_700_000_000_250);
    assert_eq!(batch.records[1].arrival_ms, 1_700_000_010_100);
    assert_eq!(batch.records[0].partition_key, "order-1");
    assert!(std::str::from_utf8(&batch.records[0].data)
        .unwrap()
        .contains("\"cents\":1200"));
}

#[test]
fn malformed_and_late_records_become_dead_letters_and_the_batch_goes_on() {
    let batch = batch();
    let pipeline = revenue();
    let mut engine = pipeline.engine();
    let out = process_batch(
        &mut engine,
        "revenue",
        &batch,
        &JsonDecoder::<Purchase>::new(),
        None,
        None,
    );
    assert_eq!(out.records_in, 5);
    assert_eq!(out.processed, 4);
    assert_eq!(out.undecodable, 1);
    assert_eq!(out.late, 1);
    let kinds: Vec<_> = out
        .dead_letters
        .iter()
        .map(|d| (d.kind, d.sequence_number.clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (
                DeadLetterKind::Undecodable,
                "49650000000000000000000000000000000000000000000000000003".to_string()
            ),
            (
                DeadLetterKind::Late,
                "49650000000000000000000000000000000000000000000000000005".to_string()
            ),
        ]
    );
    assert!(
        out.dead_letters[0].reason.contains("json decode error"),
        "{}",
        out.dead_letters[0].reason
    );
    assert_eq!(
        out.dead_letters[0].data().unwrap(),
        br#"{"order_id":3,"product":"seven"}"#
    );
    assert!(out.dead_letters[1].reason.contains("allowed lateness"));
    // The minute [1700000000000, 1700000060000) of product 7 closed when record 4 moved the watermark.
    let values: Vec<_> = out.outputs.iter().map(|o| o.value).collect();
    assert_eq!(values, vec![(7, 1_699_999_980_000, 2, 2_000)]);
    assert_eq!(
        out.last_sequence.unwrap().as_str(),
        "49650000000000000000000000000000000000000000000000000005"
    );
}

#[test]
fn redelivered_records_at_or_below_the_checkpoint_are_skipped() {
    let batch = batch();
    let pipeline = revenue();
    let mut engine = pipeline.engine();
    let committed = SequenceNumber::parse("49650000000000000000000000000000000000000000000000000002").unwrap();
    let out = process_batch(
        &mut engine,
        "revenue",
        &batch,
        &JsonDecoder::<Purchase>::new(),
        Some(&committed),
        None,
    );
    assert_eq!(out.skipped_duplicates, 2);
    assert_eq!(out.processed, 2, "records 4 and 5 (3 does not decode)");
    assert_eq!(engine.metrics().records_in, 2);
}

#[test]
fn a_payload_that_is_not_an_event_is_refused() {
    assert!(matches!(
        ShardBatch::from_json(b"{\"Records\": 5}"),
        Err(BatchError::NotAnEvent(_))
    ));
    assert!(matches!(ShardBatch::from_json(b"\xff"), Err(BatchError::NotAnEvent(_))));
}

/// Found by the `kinesis_event` fuzz target: `aws_lambda_events` multiplied the fractional
/// digits of an arrival time unchecked (a panic in debug builds).
#[test]
fn an_arrival_time_with_many_fractional_digits_is_read_exactly_not_overflowed() {
    let event = |arrival: &str| {
        format!(
            r#"{{"Records": [{{"kinesis": {{"kinesisSchemaVersion": "1.0", "partitionKey": "k",
                "sequenceNumber": "1", "data": "", "approximateArrivalTimestamp": {arrival}}},
                "eventSource": "aws:kinesis", "eventID": "shardId-000000000002:1"}}]}}"#
        )
    };
    let batch = ShardBatch::from_json(event("\"00000000000.04224376450473525252\"").as_bytes()).unwrap();
    assert_eq!(batch.records[0].arrival_ms, 42);
    let batch = ShardBatch::from_json(event("1700000000.04224376450473525252").as_bytes()).unwrap();
    assert_eq!(batch.records[0].arrival_ms, 1_700_000_000_042);
    for bad in ["-1.5", "\"soon\"", "null", "99999999999999999999"] {
        assert!(
            matches!(
                ShardBatch::from_json(event(bad).as_bytes()),
                Err(BatchError::BadArrivalTime { index: 0, .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn a_batch_mixing_shards_is_refused() {
    let mut e = event();
    e.records[3].event_id =
        Some("shardId-000000000009:49650000000000000000000000000000000000000000000000000004".into());
    match ShardBatch::from_event(e) {
        Err(BatchError::MixedSources { index: 3, .. }) => {}
        other => panic!("expected MixedSources at 3, got {other:?}"),
    }
}

#[test]
fn out_of_order_sequence_numbers_are_refused() {
    let mut e = event();
    e.records.swap(1, 2);
    assert!(matches!(
        ShardBatch::from_event(e),
        Err(BatchError::OutOfOrder { index: 2, .. })
    ));
}

#[test]
fn partial_failure_response_names_the_first_failed_record() {
    let batch = batch();
    let r = batch_response(Some(&batch.records[3].sequence));
    assert_eq!(r.batch_item_failures.len(), 1);
    assert_eq!(
        r.batch_item_failures[0].item_identifier.as_deref(),
        Some("49650000000000000000000000000000000000000000000000000004")
    );
}

/// Panics on product 9, like a bug in user code.
fn fragile() -> Pipeline<Purchase, u32> {
    Pipeline::builder("fragile")
        .event_time(|p: &Purchase| p.ts_ms)
        .map(|p: Purchase| {
            assert!(p.product != 9, "cannot handle product 9");
            p.product
        })
        .sink("products")
}

#[test]
fn a_panic_in_user_code_stops_the_batch_at_that_record() {
    let batch = batch();
    let pipeline = fragile();
    let mut engine = pipeline.engine();
    let out = process_batch(
        &mut engine,
        "fragile",
        &batch,
        &JsonDecoder::<Purchase>::new(),
        None,
        None,
    );
    let (at, message) = out.panicked_at.expect("record 4 panics");
    assert_eq!(at, 3);
    assert!(message.contains("cannot handle product 9"), "{message}");
    assert_eq!(
        out.last_sequence.unwrap().as_str(),
        "49650000000000000000000000000000000000000000000000000003",
        "everything before the panicking record is handled"
    );
    assert_eq!(out.processed, 2);
}

#[test]
fn a_poison_record_is_dead_lettered_and_the_rest_goes_on() {
    let batch = batch();
    let pipeline = fragile();
    let mut engine = pipeline.engine();
    let poison = batch.records[3].sequence.clone();
    let out = process_batch(
        &mut engine,
        "fragile",
        &batch,
        &JsonDecoder::<Purchase>::new(),
        None,
        Some((&poison, "user code panicked 3 times: cannot handle product 9")),
    );
    assert!(out.panicked_at.is_none());
    assert_eq!(out.processed, 3);
    let poisoned: Vec<_> = out
        .dead_letters
        .iter()
        .filter(|d| d.kind == DeadLetterKind::Poison)
        .collect();
    assert_eq!(poisoned.len(), 1);
    assert_eq!(poisoned[0].sequence_number, poison.as_str());
    assert_eq!(out.outputs.len(), 3);
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Envelope {
    id: String,
    ts_ms: i64,
}

/// Drops envelopes whose id was already seen (what a stage reading another's Kinesis sink does).
fn deduplicated() -> Pipeline<Envelope, String> {
    Pipeline::builder("next")
        .event_time(|e: &Envelope| e.ts_ms)
        .deduplicate(|e: &Envelope| e.id.clone(), 3_600_000)
        .map(|e: Envelope| e.id)
        .sink("ids")
}

/// A batch of envelopes with the given ids, at sequence numbers `first..`.
fn envelopes(first: u64, ids: &[&str]) -> ShardBatch {
    let records = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let n = first + i as u64;
            InputRecord {
                sequence: SequenceNumber::parse(&format!("4965{n:020}")).unwrap(),
                partition_key: (*id).to_owned(),
                arrival_ms: 1_700_000_000_000 + n as i64,
                data: format!(r#"{{"id":"{id}","ts_ms":{}}}"#, 1_700_000_000_000 + n as i64).into_bytes(),
            }
        })
        .collect();
    ShardBatch {
        stream: "results".into(),
        shard_id: "shardId-000000000000".into(),
        records,
    }
}

#[test]
fn repeats_dropped_by_deduplicate_are_counted_per_batch() {
    let pipeline = deduplicated();
    let decoder = JsonDecoder::<Envelope>::new();
    let mut engine = pipeline.engine();
    let first = envelopes(0, &["a", "b", "a"]);
    let out = process_batch(&mut engine, "next", &first, &decoder, None, None);
    assert_eq!((out.processed, out.duplicates_dropped, out.outputs.len()), (3, 1, 2));

    // The next invocation restores the committed state: only this batch's repeats are counted.
    let image = CheckpointImage::new(engine.snapshot().unwrap());
    let mut engine = Engine::restore(&pipeline, &image).unwrap();
    assert_eq!(engine.metrics().duplicates_dropped, 1, "the engine's total survives");
    let second = envelopes(3, &["b", "c"]);
    let out = process_batch(&mut engine, "next", &second, &decoder, None, None);
    assert_eq!((out.duplicates_dropped, out.outputs.len()), (1, 1));

    // A redelivered batch is skipped before the engine: nothing is dropped by deduplicate.
    let committed = second.last_sequence().cloned();
    let out = process_batch(&mut engine, "next", &second, &decoder, committed.as_ref(), None);
    assert_eq!((out.skipped_duplicates, out.duplicates_dropped), (2, 0));
}
