//! `S3Sink` against the S3 of LocalStack: deterministic keys make rewrites overwrites.

mod common;

use common::{bucket, keys, object, pane, results, Count};
use shardflow_connectors::{ResultMessage, S3Sink, S3SinkConfig};
use shardflow_stage::ResultSink;

#[tokio::test]
async fn one_object_per_result_id_survives_a_redelivery_unchanged() {
    let s3 = shardflow_testkit::s3();
    let bucket = bucket(&s3, "s3sink").await;
    let sink = S3Sink::new(s3.clone(), S3SinkConfig::new(&bucket, "results"));
    let outputs = results(21);
    sink.emit(&outputs).await.expect("first emit");
    sink.emit(&outputs[5..]).await.expect("partial redelivery");
    sink.emit(&outputs).await.expect("redelivery");

    let stored = keys(&s3, &bucket, "results/").await;
    let mut expected: Vec<String> = outputs
        .iter()
        .map(|o| format!("results/2026-11-26/{}.json", o.id.to_hex()))
        .collect();
    expected.sort();
    assert_eq!(
        stored, expected,
        "one object per result, keyed by the window's day and the id"
    );
    for o in &outputs {
        let read: ResultMessage<Count> =
            serde_json::from_slice(&object(&s3, &bucket, &format!("results/2026-11-26/{}.json", o.id.to_hex())).await)
                .expect("a result message");
        assert_eq!(read.value, o.value);
        assert_eq!(read.pane_index, Some(0));
        assert_eq!(read.window_start_ms, Some(1_795_651_200_000));
    }
}

#[tokio::test]
async fn latest_pane_mode_keeps_the_latest_pane_whatever_the_delivery_order() {
    let s3 = shardflow_testkit::s3();
    let bucket = bucket(&s3, "s3latest").await;
    let sink = S3Sink::new(
        s3.clone(),
        S3SinkConfig::new(&bucket, "counts").latest_pane(|c: &Count| c.key.clone()),
    );
    let start = 1_795_651_200_000;
    // Pane 0 of a and b; then pane 1 of a and panes 1 and 2 of b in one batch; then the first
    // batch redelivered (older panes) and pane 1 of b alone again.
    sink.emit(&[pane("a", start, 0, 1), pane("b", start, 0, 10)])
        .await
        .expect("first");
    sink.emit(&[pane("a", start, 1, 2), pane("b", start, 1, 11), pane("b", start, 2, 12)])
        .await
        .expect("second");
    sink.emit(&[pane("a", start, 0, 1), pane("b", start, 0, 10)])
        .await
        .expect("old redelivered");
    sink.emit(&[pane("b", start, 1, 11)]).await.expect("old pane again");
    // Another window of a: its own object.
    sink.emit(&[pane("a", start + 60_000, 0, 7)])
        .await
        .expect("next window");

    let stored = keys(&s3, &bucket, "counts/").await;
    let a = format!("counts/2026-11-26/{start}-{}/a.json", start + 60_000);
    let b = format!("counts/2026-11-26/{start}-{}/b.json", start + 60_000);
    let a_next = format!("counts/2026-11-26/{}-{}/a.json", start + 60_000, start + 120_000);
    let mut expected = vec![a.clone(), a_next.clone(), b.clone()];
    expected.sort();
    assert_eq!(stored, expected, "one object per key and window");
    let read = |bytes: Vec<u8>| serde_json::from_slice::<ResultMessage<Count>>(&bytes).expect("a result message");
    let a_read = read(object(&s3, &bucket, &a).await);
    let b_read = read(object(&s3, &bucket, &b).await);
    assert_eq!((a_read.pane_index, a_read.value.count), (Some(1), 2));
    assert_eq!((b_read.pane_index, b_read.value.count), (Some(2), 12));
    assert_eq!(b_read.id, common::id_of("b", start, 2).to_hex());
    assert_eq!(read(object(&s3, &bucket, &a_next).await).value.count, 7);
}

#[tokio::test]
async fn concurrent_writers_of_one_window_leave_its_latest_pane() {
    let s3 = shardflow_testkit::s3();
    let bucket = bucket(&s3, "s3race").await;
    let start = 1_795_651_200_000;
    for round in 0..3 {
        let key = format!("k{round}");
        // Eight invocations (a stale one among them) writing panes 0..8 of one window at once.
        let sinks: Vec<_> = (0..8)
            .map(|_| {
                S3Sink::new(
                    s3.clone(),
                    S3SinkConfig::new(&bucket, "race").latest_pane(|c: &Count| c.key.clone()),
                )
            })
            .collect();
        let panes: Vec<_> = (0..8u32).map(|p| [pane(&key, start, p, i64::from(p))]).collect();
        let writes = sinks.iter().zip(&panes).map(|(sink, p)| sink.emit(p));
        for result in futures_util::future::join_all(writes).await {
            result.expect("every writer succeeds or finds a later pane");
        }
        let object_key = format!("race/2026-11-26/{start}-{}/{key}.json", start + 60_000);
        let read: ResultMessage<Count> =
            serde_json::from_slice(&object(&s3, &bucket, &object_key).await).expect("a result message");
        assert_eq!(read.pane_index, Some(7), "round {round}");
    }
}
