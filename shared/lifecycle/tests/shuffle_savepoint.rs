//! Savepoints of a shuffle's two stages against LocalStack (Kinesis, DynamoDB, S3), as blue/green
//! takes them: the running pair (a 2-shard input stream, a 2-shard shuffle stream) is saved
//! mid-stream — the upstream first, then the downstream — and restored into a fresh pair with the
//! same stage names, a new state table and a shuffle stream of its own (a target stream of
//! another layout is refused); the fresh pair is delivered the input from before the savepoint
//! on, as a mapping started a margin early is. Both pairs' results together equal the single
//! engine's over the whole input, each result once, and the restored downstream has the saved
//! marks and shuffle watermark. Unlifted, the downstream is saved one upstream batch later, so its
//! marks reach beyond the upstream's savepoint and drop that batch when the fresh upstream sends
//! it again; lifted (partials per batch, as the shop's revenue), the downstream is saved where the
//! upstream was, and the fresh pair is cut into other batches.
//!
//! Needs `AWS_ENDPOINT_URL` pointing at LocalStack.

#[path = "../../lambda/tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;

use common::shuffle::{
    consume_shuffle, downstream, lifted_split, results, single_engine_over, split, upstream, Down, Shuffled, Up,
    DOWNSTREAM, UPSTREAM,
};
use common::streams::{deliver, put, read_shards, round_robin};
use common::{purchase, Purchase, Row};
use shardflow_engine::{ResultId, SplitPipeline};
use shardflow_lifecycle::{
    create_savepoint, restore_savepoint, stage_has_state, LifecycleError, RestoreOptions, S3Location, SavepointOptions,
    SavepointReport, ShuffleTarget,
};
use shardflow_shuffle::DownstreamState;
use shardflow_stage::{InputRecord, ShardBatch};
use shardflow_state_dynamodb::DynamoDbCheckpointStore;

/// Records per batch, on both sides of the shuffle.
const SIZE: usize = 10;

/// Delivers `batches` (shard, records) of `input` to `up`, in order; every one must succeed.
async fn deliver_upstream<S: Shuffled>(up: &Up<S>, input: &str, batches: &[(String, Vec<InputRecord>)]) {
    for (shard, records) in batches {
        let batch = ShardBatch {
            stream: input.to_owned(),
            shard_id: shard.clone(),
            records: records.clone(),
        };
        assert_eq!(
            deliver(batch, |b| up.handle(b)).await,
            0,
            "upstream batch of {shard} failed"
        );
    }
}

/// One colour's upstream and downstream stages: state in `table`, shuffle stream `shuffle`.
fn pair<S: Shuffled>(
    split: &SplitPipeline<Purchase, S, Row>,
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    kinesis: &aws_sdk_kinesis::Client,
    input: &str,
    shuffle: &str,
) -> (Up<S>, Down<S>) {
    let up = upstream(split, client, table, kinesis, input, shuffle, None);
    let down = downstream(split, client, table, kinesis, input, shuffle, None, None);
    (up, down)
}

async fn save(stage: &str, table: &str, bucket: &str, prefix: &str) -> SavepointReport {
    let options = SavepointOptions::new(stage, table, S3Location::new(bucket, prefix));
    create_savepoint(&shardflow_testkit::dynamodb(), &shardflow_testkit::s3(), &options)
        .await
        .unwrap()
}

/// The shuffle state committed for `shard` of `stage` in `table` and the position beside it.
async fn shuffle_state(table: &str, stage: &str, shard: &str) -> (Option<DownstreamState>, Option<String>) {
    let mut store = DynamoDbCheckpointStore::new(shardflow_testkit::dynamodb(), table, stage, shard);
    let loaded = store.load().await.unwrap();
    let state = loaded.shuffle_state.map(|b| DownstreamState::decode(&b).unwrap());
    (state, loaded.sequence_number.map(|s| s.as_str().to_owned()))
}

#[tokio::test]
async fn a_shuffle_pair_saved_mid_stream_continues_in_a_fresh_pair_with_every_result_once() {
    blue_then_green(&split(), "sp-shuffle", 160, Downstream::SavedOneBatchLater, None).await;
}

#[tokio::test]
async fn a_lifted_pair_saved_in_order_continues_in_other_batch_cuts_with_every_result_once() {
    // minute windows: 400 purchases a second apart, a third of them before the savepoint
    blue_then_green(
        &lifted_split(),
        "sp-lifted",
        400,
        Downstream::SavedAtTheUpstreamsPoint,
        Some(7),
    )
    .await;
}

/// When the downstream is saved, relative to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Downstream {
    /// After it consumed one more upstream batch (its marks beyond the upstream's savepoint).
    SavedOneBatchLater,
    /// After it consumed what the upstream sent up to its savepoint.
    SavedAtTheUpstreamsPoint,
}

/// Runs blue over a third of `purchases` purchases, saves its pair (the downstream as
/// `downstream` says), restores it into green (same stage names, another table and shuffle
/// stream), runs green over the rest — from two batches before the savepoint, in blue's batch
/// cuts or, with `green_size`, in batches of that size — and checks both pairs' results against
/// the single engine.
async fn blue_then_green<S: Shuffled>(
    split: &SplitPipeline<Purchase, S, Row>,
    prefix: &str,
    purchases: u64,
    downstream: Downstream,
    green_size: Option<usize>,
) {
    let (_, bucket) = shardflow_testkit::bucket(prefix).await;
    let (client, blue_table) = shardflow_testkit::state_table(&format!("{prefix}-blue")).await;
    let (kinesis, input) = shardflow_testkit::kinesis_stream(&format!("{prefix}-in"), 2).await;
    let (_, blue_shuffle) = shardflow_testkit::kinesis_stream(&format!("{prefix}-blue"), 2).await;
    let (blue_up, blue_down) = pair(split, &client, &blue_table, &kinesis, &input, &blue_shuffle);
    put(&kinesis, &input, (0..purchases).map(|i| (format!("p{i}"), purchase(i)))).await;
    let records = read_shards(&kinesis, &input).await;
    let order = round_robin(&records, SIZE);
    let cut = order.len() / 3;

    // Blue runs over the first third; its downstream consumes all of it.
    deliver_upstream(&blue_up, &input, &order[..cut]).await;
    let (consumed, failures) = consume_shuffle(&blue_down, &kinesis, &blue_shuffle, SIZE, &BTreeMap::new()).await;
    assert_eq!(failures, 0);
    // The upstream is saved first (a deployed one with its mappings paused) ...
    let up_saved = save(UPSTREAM, &blue_table, &bucket, "blue/up").await;
    assert!(
        up_saved.manifest.shards.iter().all(|s| s.shuffle_state.is_none()),
        "the upstream holds no shuffle state"
    );
    // ... unlifted, the upstream runs one batch more, which the downstream consumes before it is
    // saved: its marks reach beyond the upstream's savepoint.
    if downstream == Downstream::SavedOneBatchLater {
        deliver_upstream(&blue_up, &input, &order[cut..=cut]).await;
        let (_, failures) = consume_shuffle(&blue_down, &kinesis, &blue_shuffle, SIZE, &consumed).await;
        assert_eq!(failures, 0);
    }
    let down_saved = save(DOWNSTREAM, &blue_table, &bucket, "blue/down").await;
    assert_eq!(down_saved.manifest.shards.len(), 2);
    assert!(
        down_saved.manifest.shards.iter().all(|s| s.shuffle_state.is_some()),
        "every downstream shard's dedup marks and watermarks are saved: {:?}",
        down_saved.manifest.shards
    );
    let blue_results = results(&blue_down);
    assert!(!blue_results.is_empty(), "blue closed windows before its savepoint");

    // Green: the same stage names, a state table and a shuffle stream of its own.
    let (_, green_table) = shardflow_testkit::state_table(&format!("{prefix}-green")).await;
    let (_, green_shuffle) = shardflow_testkit::kinesis_stream(&format!("{prefix}-green"), 2).await;
    let s3 = shardflow_testkit::s3();
    let up_restore = RestoreOptions::new(up_saved.location.clone(), UPSTREAM, &green_table);
    restore_savepoint(&client, &s3, &up_restore).await.unwrap();
    // A shuffle stream of another layout is refused, and nothing is written.
    let (_, odd_shuffle) = shardflow_testkit::kinesis_stream(&format!("{prefix}-odd"), 3).await;
    let mut refused = RestoreOptions::new(down_saved.location.clone(), DOWNSTREAM, &green_table);
    refused.shuffle_target = Some(ShuffleTarget::new(kinesis.clone(), &odd_shuffle));
    match restore_savepoint(&client, &s3, &refused).await {
        Err(LifecycleError::Refused { reason, .. }) => assert!(reason.contains("no open shard"), "{reason}"),
        other => panic!("a 3-shard target stream is not refused: {other:?}"),
    }
    assert_eq!(stage_has_state(&client, &green_table, DOWNSTREAM).await.unwrap(), 0);
    shardflow_testkit::delete_stream(&kinesis, &odd_shuffle).await;
    let mut down_restore = RestoreOptions::new(down_saved.location.clone(), DOWNSTREAM, &green_table);
    down_restore.shuffle_target = Some(ShuffleTarget::new(kinesis.clone(), &green_shuffle));
    restore_savepoint(&client, &s3, &down_restore).await.unwrap();
    // Each green shuffle shard holds the blue shard's marks and watermark of the same key groups,
    // without blue's position (green's stream has sequence numbers of its own).
    for (blue_shard, green_shard) in read_shards(&kinesis, &blue_shuffle)
        .await
        .keys()
        .zip(read_shards(&kinesis, &green_shuffle).await.keys())
    {
        let (saved, blue_position) = shuffle_state(&blue_table, DOWNSTREAM, blue_shard).await;
        let (restored, green_position) = shuffle_state(&green_table, DOWNSTREAM, green_shard).await;
        let (saved, restored) = (saved.unwrap(), restored.unwrap());
        assert_eq!(
            restored, saved,
            "green {green_shard} restored blue {blue_shard}'s shuffle state"
        );
        assert!(restored.watermark.current() > i64::MIN, "a restored watermark");
        assert!(blue_position.is_some());
        assert_eq!(green_position, None);
    }

    // Green's mapping starts a margin before the savepoint: it gets two batches the upstream's
    // savepoint covers (skipped), then the rest — unlifted, first the batch blue sent after the
    // upstream's savepoint (re-sent, dropped downstream by the restored marks).
    let rest = match green_size {
        None => order[cut..].to_vec(),
        Some(size) => round_robin(&after(&records, &order[..cut]), size),
    };
    let (green_up, green_down) = pair(split, &client, &green_table, &kinesis, &input, &green_shuffle);
    deliver_upstream(&green_up, &input, &order[cut - 2..cut]).await;
    deliver_upstream(&green_up, &input, &rest).await;
    let (_, failures) = consume_shuffle(&green_down, &kinesis, &green_shuffle, SIZE, &BTreeMap::new()).await;
    assert_eq!(failures, 0);
    let green_results = results(&green_down);
    assert!(!green_results.is_empty(), "green closed the later windows");
    for id in green_results.keys() {
        assert!(!blue_results.contains_key(id), "result {id:?} emitted by both colours");
    }
    let mut both = blue_results;
    both.extend(green_results);
    let delivered: Vec<(String, Vec<InputRecord>)> = order[..cut].iter().chain(&rest).cloned().collect();
    let expected: BTreeMap<ResultId, Row> = single_engine_over(&split.whole, &delivered, &[])
        .drain_output()
        .into_iter()
        .map(|o| (o.id, o.value))
        .collect();
    assert_eq!(
        both, expected,
        "blue then green: each result once, as the single engine"
    );
    for stream in [&input, &blue_shuffle, &green_shuffle] {
        shardflow_testkit::delete_stream(&kinesis, stream).await;
    }
}

/// The records of `records` not in `batches`, per shard (the batches are each shard's prefix).
fn after(
    records: &BTreeMap<String, Vec<InputRecord>>,
    batches: &[(String, Vec<InputRecord>)],
) -> BTreeMap<String, Vec<InputRecord>> {
    records
        .iter()
        .map(|(shard, all)| {
            let done: usize = batches.iter().filter(|(s, _)| s == shard).map(|(_, b)| b.len()).sum();
            (shard.clone(), all[done..].to_vec())
        })
        .collect()
}
