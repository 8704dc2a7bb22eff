//! A stage against DynamoDB (the emulator): redeliveries, dead letters, poison records and
//! concurrent duplicate invocations leave every result exactly once in an idempotent sink.

mod common;

use common::{event, expected, purchase, purchases, results, revenue, stage, Purchase, Row};
use shardflow_lambda::StageError;
use shardflow_stage::DeadLetterKind;
use shardflow_state_dynamodb::StoreError;

#[tokio::test]
async fn a_redelivered_batch_emits_nothing_new() {
    let s = stage("redelivery", None).await;
    let batch = event("shardId-000000000000", &purchases(0..60));
    let r = s.handle(batch.clone()).await.unwrap();
    assert!(r.batch_item_failures.is_empty());
    let writes = s.sink().writes().len();
    assert!(writes > 0);
    let r = s.handle(batch).await.unwrap();
    assert!(r.batch_item_failures.is_empty());
    assert_eq!(s.sink().writes().len(), writes, "nothing emitted for a committed batch");
    assert_eq!(results(&s), expected(0..60));
}

#[tokio::test]
async fn batches_cut_differently_on_redelivery_give_the_uninterrupted_result() {
    let s = stage("recut", None).await;
    s.handle(event("shardId-000000000000", &purchases(0..50)))
        .await
        .unwrap();
    // Lambda redelivers from an older position with other batch boundaries.
    s.handle(event("shardId-000000000000", &purchases(20..90)))
        .await
        .unwrap();
    s.handle(event("shardId-000000000000", &purchases(90..130)))
        .await
        .unwrap();
    assert_eq!(results(&s), expected(0..130));
    // Writes may repeat (the idempotent sink absorbs them) but never contradict.
    assert_eq!(s.sink().distinct().len(), results(&s).len());
}

#[tokio::test]
async fn malformed_records_go_to_dead_letters_and_the_rest_flows() {
    let s = stage("malformed", None).await;
    let mut records = purchases(0..40);
    records[7].1 = b"{not json".to_vec();
    records[8].1 = br#"{"product":"x"}"#.to_vec();
    s.handle(event("shardId-000000000000", &records)).await.unwrap();
    let letters = s.dead_letters().letters();
    assert_eq!(letters.len(), 2);
    assert!(letters.iter().all(|l| l.kind == DeadLetterKind::Undecodable));
    assert_eq!(letters[0].data().unwrap(), b"{not json");
    assert_eq!(results(&s), expected((0..40).filter(|i| *i != 7 && *i != 8)));
}

#[tokio::test]
async fn a_poison_record_is_retried_then_dead_lettered_and_the_shard_moves_on() {
    // Product 2 makes user code panic: record 2 is the first such record.
    let s = stage("poison", Some(2)).await.max_attempts(3);
    let shard = "shardId-000000000000";
    // Only record 2 is of product 2 in 0..5; the rest of the input has products 0 and 1.
    let input: Vec<(u64, Vec<u8>)> = (0..30)
        .map(|i| {
            let mut p: Purchase = serde_json::from_slice(&purchase(i)).unwrap();
            if i != 2 && p.product == 2 {
                p.product = 1;
            }
            (i, serde_json::to_vec(&p).unwrap())
        })
        .collect();
    let mut attempts = 0;
    let mut from = 0;
    loop {
        let r = s.handle(event(shard, &input[from..])).await.unwrap();
        match r.batch_item_failures.first() {
            Some(f) => {
                attempts += 1;
                assert_eq!(f.item_identifier.as_deref(), Some("496500000000000000000002"));
                from = 2; // Lambda retries from the reported record
                assert!(attempts <= 3, "a poison record must not block the shard");
            }
            None => break,
        }
    }
    assert_eq!(attempts, 3);
    let poison: Vec<_> = s
        .dead_letters()
        .letters()
        .into_iter()
        .filter(|l| l.kind == DeadLetterKind::Poison)
        .collect();
    assert_eq!(poison.len(), 1);
    assert!(
        poison[0].reason.contains("cannot price product 2"),
        "{}",
        poison[0].reason
    );
    // Everything but the poison record is counted, once.
    let p = revenue(None);
    let mut e = p.engine();
    let part = e.partition("x");
    for (i, data) in &input {
        if *i != 2 {
            e.process(part, *i, 0, serde_json::from_slice(data).unwrap());
        }
    }
    let mut want: Vec<Row> = e.drain_output().into_iter().map(|o| o.value).collect();
    want.sort();
    assert_eq!(results(&s), want);
}

#[tokio::test]
async fn concurrent_duplicate_invocations_commit_once() {
    let s = stage("concurrent", None).await;
    let batch = event("shardId-000000000000", &purchases(0..80));
    let (a, b) = tokio::join!(s.handle(batch.clone()), s.handle(batch.clone()));
    let outcomes = [a, b];
    let conflicts = outcomes
        .iter()
        .filter(|r| matches!(r, Err(StageError::Store(StoreError::Conflict { .. }))))
        .count();
    let ok = outcomes.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok + conflicts, 2, "{outcomes:?}");
    assert!(ok >= 1);
    // Lambda retries the loser: nothing new, and the sink holds each result once.
    s.handle(batch).await.unwrap();
    assert_eq!(results(&s), expected(0..80));
}

#[tokio::test]
async fn end_of_input_fires_the_open_windows_once_and_later_records_are_late() {
    let s = stage("end-of-input", None).await;
    let shard = "shardId-000000000000";
    // 0..25 s: windows [0,10) and [10,20) close on the watermark, [20,30) stays open.
    s.handle(event(shard, &purchases(0..25))).await.unwrap();
    let closed = results(&s);
    assert_eq!(closed, expected(0..25));
    let end = shardflow_lambda::EndOfInput {
        stream: "purchases".into(),
        shard_id: shard.into(),
    };
    let request = shardflow_lambda::StageRequest::from_value(end.to_json()).unwrap();
    s.serve(request).await.unwrap();
    let mut all: Vec<Row> = {
        let p = revenue(None);
        let mut e = p.engine();
        let part = e.partition("x");
        for i in 0..25 {
            e.process(part, i, 0, serde_json::from_slice(&purchase(i)).unwrap());
        }
        e.finish();
        e.drain_output().into_iter().map(|o| o.value).collect()
    };
    all.sort();
    assert!(all.len() > closed.len(), "the open window fires at the end of input");
    assert_eq!(results(&s), all);
    let writes = s.sink().writes().len();
    // A repeated end of input emits nothing; a record after it is late, not lost.
    s.end_of_input(&end).await.unwrap();
    assert_eq!(s.sink().writes().len(), writes);
    s.handle(event(shard, &purchases(25..26))).await.unwrap();
    assert_eq!(s.sink().writes().len(), writes);
    let letters = s.dead_letters().letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].kind, DeadLetterKind::Late);
    // A shard that never committed has nothing to end.
    let other = shardflow_lambda::EndOfInput {
        stream: "purchases".into(),
        shard_id: "shardId-000000000009".into(),
    };
    s.end_of_input(&other).await.unwrap();
    assert_eq!(s.sink().writes().len(), writes);
}
