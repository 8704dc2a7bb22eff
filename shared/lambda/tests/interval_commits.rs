//! Interval commits against LocalStack (a real Kinesis stream with real sequence numbers, the
//! state table in DynamoDB): a stage that commits every few batches emits exactly the results of
//! an uninterrupted run, also when containers alternate on the shard (each reads the other's
//! uncommitted records from Kinesis) and when invocations die between emitting and answering.

mod common;

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::ShardIteratorType;
use common::{distinct_results, expected, purchase, revenue, Purchase, Row, TestStage};
use shardflow_lambda::{input_record, CheckpointInterval, CrashPoint, Stage, StageConfig, StageError};
use shardflow_stage::DeadLetterKind;
use shardflow_stage::{InputRecord, JsonDecoder, MemoryDeadLetters, MemoryResultSink, ShardBatch};

const RECORDS: u64 = 120;
const BATCH: usize = 10;

/// A stream of one shard holding purchases `0..RECORDS`, put in order; returns the client, the
/// stream, its shard and the records as GetRecords returns them.
async fn stream_of_purchases(prefix: &str) -> (aws_sdk_kinesis::Client, String, String, Vec<InputRecord>) {
    stream_of(prefix, purchase).await
}

/// A stream of one shard holding `payload(i)` for `i` in `0..RECORDS`, put in order.
async fn stream_of(
    prefix: &str,
    payload: fn(u64) -> Vec<u8>,
) -> (aws_sdk_kinesis::Client, String, String, Vec<InputRecord>) {
    let (kinesis, stream) = shardflow_testkit::kinesis_stream(prefix, 1).await;
    for i in 0..RECORDS {
        kinesis
            .put_record()
            .stream_name(&stream)
            .partition_key(format!("p{i}"))
            .data(Blob::new(payload(i)))
            .send()
            .await
            .unwrap();
    }
    let shards = kinesis.list_shards().stream_name(&stream).send().await.unwrap();
    let shard = shards.shards()[0].shard_id().to_owned();
    let mut iterator = kinesis
        .get_shard_iterator()
        .stream_name(&stream)
        .shard_id(&shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let mut records = Vec::new();
    while records.len() < RECORDS as usize {
        let out = kinesis.get_records().shard_iterator(&iterator).send().await.unwrap();
        records.extend(out.records().iter().map(|r| input_record(r).unwrap()));
        iterator = out.next_shard_iterator().unwrap().to_owned();
    }
    (kinesis, stream, shard, records)
}

/// The batches Lambda would deliver: `BATCH` records each, in order.
fn batches(stream: &str, shard: &str, records: &[InputRecord]) -> Vec<ShardBatch> {
    records
        .chunks(BATCH)
        .map(|c| ShardBatch {
            stream: stream.to_owned(),
            shard_id: shard.to_owned(),
            records: c.to_vec(),
        })
        .collect()
}

/// A container of the stage committing every `interval` batches.
fn container(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    kinesis: &aws_sdk_kinesis::Client,
    interval: u64,
) -> TestStage {
    container_of(revenue(None), client, table, kinesis, interval)
}

/// A container of `pipeline` committing every `interval` batches.
fn container_of(
    pipeline: shardflow_engine::Pipeline<Purchase, Row>,
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    kinesis: &aws_sdk_kinesis::Client,
    interval: u64,
) -> TestStage {
    Stage::new(
        "revenue",
        pipeline,
        JsonDecoder::new(),
        MemoryResultSink::new(),
        MemoryDeadLetters::default(),
        client.clone(),
        table,
        StageConfig::default(),
    )
    .unwrap()
    .with_checkpoint_interval(CheckpointInterval::batches(interval))
    .with_kinesis(kinesis.clone())
}

/// The checkpoint item's `ver` (commits so far).
async fn committed_version(client: &aws_sdk_dynamodb::Client, table: &str, shard: &str) -> u64 {
    let item = client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(format!("revenue#shard#{shard}")))
        .key("sk", AttributeValue::S("checkpoint".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item;
    match item.as_ref().and_then(|i| i.get("ver")) {
        Some(AttributeValue::N(v)) => v.parse().unwrap(),
        _ => 0,
    }
}

#[tokio::test]
async fn one_container_with_an_interval_of_five_batches_commits_every_fifth_batch_and_emits_the_uninterrupted_result() {
    let (client, table) = shardflow_testkit::state_table("interval-one").await;
    let (kinesis, stream, shard, records) = stream_of_purchases("interval-one").await;
    let stage = container(&client, &table, &kinesis, 5);
    let mut versions = Vec::new();
    for batch in batches(&stream, &shard, &records) {
        assert!(stage.handle(batch).await.unwrap().batch_item_failures.is_empty());
        versions.push(committed_version(&client, &table, &shard).await);
    }
    // The first batch commits (nothing was committed), then every fifth.
    assert_eq!(versions, [1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3]);
    assert_eq!(distinct_results(&[&stage]), expected(0..RECORDS));
}

#[tokio::test]
async fn two_containers_alternating_with_an_interval_of_three_read_each_others_records_from_kinesis() {
    let (client, table) = shardflow_testkit::state_table("interval-two").await;
    let (kinesis, stream, shard, records) = stream_of_purchases("interval-two").await;
    let (a, b) = (
        container(&client, &table, &kinesis, 3),
        container(&client, &table, &kinesis, 3),
    );
    let mut versions = Vec::new();
    for (i, batch) in batches(&stream, &shard, &records).into_iter().enumerate() {
        let c = if i % 2 == 0 { &a } else { &b };
        assert!(c.handle(batch).await.unwrap().batch_item_failures.is_empty());
        versions.push(committed_version(&client, &table, &shard).await);
    }
    // The interval counts batches across containers (the progress item carries the count).
    assert_eq!(versions, [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]);
    // Neither container saw every record in its batches: each read the other's from Kinesis.
    assert_eq!(distinct_results(&[&a, &b]), expected(0..RECORDS));
}

/// A crash hook armed for one point at a time: the next time the invocation reaches it, it dies.
#[derive(Clone, Default)]
struct Armed(Arc<Mutex<Option<CrashPoint>>>);

impl Armed {
    fn arm(&self, point: CrashPoint) {
        *self.0.lock().unwrap() = Some(point);
    }

    fn hook(&self) -> shardflow_lambda::StageCrashHook {
        let armed = self.0.clone();
        Arc::new(move |point| {
            let mut armed = armed.lock().unwrap();
            if *armed == Some(point) {
                *armed = None;
                return true;
            }
            false
        })
    }
}

#[tokio::test]
async fn crashes_after_emitting_and_after_writing_progress_with_redelivery_emit_the_results_once() {
    let (client, table) = shardflow_testkit::state_table("interval-crash").await;
    let (kinesis, stream, shard, records) = stream_of_purchases("interval-crash").await;
    let armed = Armed::default();
    let a = container(&client, &table, &kinesis, 4).with_crash_hook(armed.hook());
    let b = container(&client, &table, &kinesis, 4);
    let mut crashes = 0;
    for (i, batch) in batches(&stream, &shard, &records).into_iter().enumerate() {
        // Batches 2 and 6 die after emitting (before the progress write), batches 3 and 7 after
        // the progress write (before answering); none of them is due to commit.
        let crash = match i {
            2 | 6 => Some(CrashPoint::AfterEmit),
            3 | 7 => Some(CrashPoint::AfterProgress),
            _ => None,
        };
        if let Some(point) = crash {
            armed.arm(point);
            match a.handle(batch.clone()).await {
                Err(StageError::InjectedCrash(p)) if p == point => crashes += 1,
                other => panic!("batch {i}: expected a crash at {point:?}, got {other:?}"),
            }
        }
        // Lambda redelivers the batch: to the same container, or, for batch 7, to another one.
        let c = if i == 7 { &b } else { &a };
        assert!(
            c.handle(batch).await.unwrap().batch_item_failures.is_empty(),
            "batch {i}"
        );
    }
    assert_eq!(crashes, 4);
    assert_eq!(distinct_results(&[&a, &b]), expected(0..RECORDS));
}

/// The poison record of the failure test: the only purchase of product 2.
const POISON: u64 = 25;

/// Purchase `i`, of product 2 only for [`POISON`].
fn purchase_with_one_poison(i: u64) -> Vec<u8> {
    let mut p: Purchase = serde_json::from_slice(&purchase(i)).unwrap();
    p.product = if i == POISON { 2 } else { p.product.min(1) };
    serde_json::to_vec(&p).unwrap()
}

#[tokio::test]
async fn a_record_failing_after_uncommitted_batches_commits_them_with_its_attempts_and_is_dead_lettered_once_poison() {
    let (client, table) = shardflow_testkit::state_table("interval-poison").await;
    let (kinesis, stream, shard, records) = stream_of("interval-poison", purchase_with_one_poison).await;
    let stage = container_of(revenue(Some(2)), &client, &table, &kinesis, 4).max_attempts(3);
    // Lambda: batches of `BATCH` from the position after the last acknowledged record; after a
    // batch item failure it retries from the failed record. Batch 0 commits, batch 1 only writes
    // progress, batch 2 fails on the poison record: the failure is committed on top of batch 1's
    // records, which the commit must include (read back from Kinesis: the warm engine saw part of
    // the failing batch and is dropped).
    let (mut from, mut failures) = (0, 0);
    while from < records.len() {
        let batch = ShardBatch {
            stream: stream.clone(),
            shard_id: shard.clone(),
            records: records[from..(from + BATCH).min(records.len())].to_vec(),
        };
        let response = stage.handle(batch).await.unwrap();
        match response.batch_item_failures.first() {
            Some(f) => {
                failures += 1;
                assert!(failures <= 3, "a poison record must not block the shard");
                let failed = f.item_identifier.as_deref().unwrap();
                from = records.iter().position(|r| r.sequence.as_str() == failed).unwrap();
                assert_eq!(from, POISON as usize);
            }
            None => from = (from + BATCH).min(records.len()),
        }
    }
    assert_eq!(failures, 3);
    let poison: Vec<_> = stage
        .dead_letters()
        .letters()
        .into_iter()
        .filter(|l| l.kind == DeadLetterKind::Poison)
        .collect();
    assert_eq!(poison.len(), 1, "{poison:?}");
    let p = revenue(None);
    let mut e = p.engine();
    let part = e.partition("x");
    for i in (0..RECORDS).filter(|i| *i != POISON) {
        e.process(
            part,
            i,
            0,
            serde_json::from_slice(&purchase_with_one_poison(i)).unwrap(),
        );
    }
    let mut want: Vec<Row> = e.drain_output().into_iter().map(|o| o.value).collect();
    want.sort();
    assert_eq!(distinct_results(&[&stage]), want);
}

#[tokio::test]
async fn a_gap_read_from_kinesis_is_counted_in_the_emf_line_with_its_get_records_calls() {
    let (client, table) = shardflow_testkit::state_table("interval-gap-emf").await;
    let (kinesis, stream, shard, records) = stream_of_purchases("interval-gap-emf").await;
    let lines: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let writer = || -> shardflow_lambda::MetricsWriter {
        let lines = lines.clone();
        Arc::new(move |line: &str| lines.lock().unwrap().push(serde_json::from_str(line).unwrap()))
    };
    let a = container(&client, &table, &kinesis, 3).with_metrics_writer(writer());
    let b = container(&client, &table, &kinesis, 3).with_metrics_writer(writer());
    // `a` commits batch 0 and only moves the progress item with batch 1; `b` gets batch 2 and
    // must read batch 1 back from Kinesis first.
    for (i, batch) in batches(&stream, &shard, &records).into_iter().take(3).enumerate() {
        let c = if i < 2 { &a } else { &b };
        assert!(c.handle(batch).await.unwrap().batch_item_failures.is_empty());
    }
    let gaps: Vec<(u64, u64)> = lines
        .lock()
        .unwrap()
        .iter()
        .map(|l| (l["GapRecords"].as_u64().unwrap(), l["GapGetRecords"].as_u64().unwrap()))
        .collect();
    assert_eq!(gaps.len(), 3);
    assert_eq!(&gaps[..2], [(0, 0), (0, 0)], "no gap before batches 0 and 1");
    assert_eq!(gaps[2].0, BATCH as u64, "batch 1 read back before batch 2");
    assert!(gaps[2].1 >= 1, "{gaps:?}");
}

/// Revenue per product over one day: a product per record, so the state grows with every batch
/// until a commit writes it.
fn daily_revenue() -> shardflow_engine::Pipeline<Purchase, Row> {
    use shardflow_engine::combine::{Count, Sum};
    use shardflow_engine::{Trigger, WatermarkStrategy, Windowing};
    shardflow_engine::Pipeline::builder("revenue")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
        .event_time(|p: &Purchase| p.ts_ms)
        .key_by(|p| p.product)
        .window(Windowing::tumbling(86_400_000).unwrap())
        .trigger(Trigger::at_watermark())
        .aggregate((Count, Sum::of(|p: &Purchase| p.cents)), |k, w, _, (n, c)| {
            (*k, w.start, n, c)
        })
        .sink("revenue")
}

/// Purchase `i` of product `i`.
fn purchase_of_its_own_product(i: u64) -> Vec<u8> {
    let mut p: Purchase = serde_json::from_slice(&purchase(i)).unwrap();
    p.product = i as u32;
    serde_json::to_vec(&p).unwrap()
}

#[tokio::test]
async fn a_bytes_bound_commits_the_first_batch_after_which_the_changed_state_exceeds_it_also_across_containers() {
    let (client, table) = shardflow_testkit::state_table("interval-bytes").await;
    let (kinesis, stream, shard, records) = stream_of("interval-bytes", purchase_of_its_own_product).await;
    let batches = batches(&stream, &shard, &records);
    // The bound: the state three batches change, so that a commit comes about every third batch.
    let mut probe = daily_revenue().engine();
    let part = probe.partition("x");
    for i in 0..(3 * BATCH as u64) {
        probe.process(
            part,
            i,
            0,
            serde_json::from_slice(&purchase_of_its_own_product(i)).unwrap(),
        );
    }
    let bound = probe.dirty_bytes() as u64 - 1;
    // The commits an engine's dirty bytes call for: the first batch (nothing committed), then
    // every batch after which the state changed since the last commit exceeds the bound.
    let mut mirror = daily_revenue().engine();
    let part = mirror.partition("x");
    let mut want = Vec::new();
    let mut version = 0;
    for (b, batch) in batches.iter().enumerate() {
        for (j, _) in batch.records.iter().enumerate() {
            let i = (b * BATCH + j) as u64;
            mirror.process(
                part,
                i,
                0,
                serde_json::from_slice(&purchase_of_its_own_product(i)).unwrap(),
            );
        }
        if version == 0 || mirror.dirty_bytes() as u64 > bound {
            mirror.snapshot().unwrap();
            version += 1;
        }
        want.push(version);
    }
    assert!(
        (3..batches.len() as u64).contains(&version),
        "the bound makes some batches commit and not others: {want:?}"
    );

    // Two containers alternating every two batches, an hour's time bound that never passes: the
    // one that finds the other's uncommitted records re-reads them, and they count as changed.
    let interval = CheckpointInterval::millis_or_bytes(3_600_000, bound);
    let a = container_of(daily_revenue(), &client, &table, &kinesis, 1).with_checkpoint_interval(interval);
    let b = container_of(daily_revenue(), &client, &table, &kinesis, 1).with_checkpoint_interval(interval);
    let mut versions = Vec::new();
    for (i, batch) in batches.into_iter().enumerate() {
        let c = if (i / 2) % 2 == 0 { &a } else { &b };
        assert!(c.handle(batch).await.unwrap().batch_item_failures.is_empty());
        versions.push(committed_version(&client, &table, &shard).await);
    }
    assert_eq!(versions, want);
}

/// A rendezvous for two invocations at [`CrashPoint::AfterLoad`]: while armed, each waits there
/// (up to a minute, so a lost partner fails the test rather than hanging it) until both have
/// opened the shard, so both start from the same progress point. Never crashes.
#[derive(Clone, Default)]
struct Rendezvous(Arc<(Mutex<(bool, u32)>, std::sync::Condvar)>);

impl Rendezvous {
    /// Arms the rendezvous for the next two invocations to reach `AfterLoad`.
    fn arm(&self, armed: bool) {
        *self.0 .0.lock().unwrap() = (armed, 0);
    }

    fn hook(&self) -> shardflow_lambda::StageCrashHook {
        let pair = self.0.clone();
        Arc::new(move |point| {
            if point != CrashPoint::AfterLoad {
                return false;
            }
            // Blocking in place hands this worker's other tasks (the other invocation, maybe)
            // to another worker while this one waits.
            tokio::task::block_in_place(|| {
                let (state, all) = &*pair;
                let mut state = state.lock().unwrap();
                if !state.0 {
                    return false;
                }
                state.1 += 1;
                all.notify_all();
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while state.1 < 2 {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    assert!(!left.is_zero(), "the other invocation never opened the shard");
                    state = all.wait_timeout(state, left).unwrap().0;
                }
                false
            })
        })
    }
}

/// The shard's progress item: its sequence number and the container that wrote it.
async fn progress_item(client: &aws_sdk_dynamodb::Client, table: &str, shard: &str) -> Option<(String, String)> {
    let item = client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(format!("revenue#shard#{shard}")))
        .key("sk", AttributeValue::S("progress".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item?;
    match (item.get("sequence_number"), item.get("container")) {
        (Some(AttributeValue::S(seq)), Some(AttributeValue::S(c))) => Some((seq.clone(), c.clone())),
        _ => None,
    }
}

/// Delivers batch `race` to `a` and `b` at once (Lambda redelivering a batch after a timeout
/// while the first invocation still runs), after `a` handled the batches before it alone; both
/// open the shard before either writes. Checks that exactly one wins, that the loser fails on
/// the store's condition, that its retry emits no result the winner did not, and that the run
/// ends with one engine's results. Returns whether the loser had emitted before failing.
async fn race_on_one_batch(name: &str, interval: u64, race: usize, commits: bool) -> bool {
    let (client, table) = shardflow_testkit::state_table(name).await;
    let (kinesis, stream, shard, records) = stream_of_purchases(name).await;
    let meet = Rendezvous::default();
    let a = Arc::new(container(&client, &table, &kinesis, interval).with_crash_hook(meet.hook()));
    let b = Arc::new(container(&client, &table, &kinesis, interval).with_crash_hook(meet.hook()));
    let all = batches(&stream, &shard, &records);
    for batch in &all[..race] {
        assert!(a.handle(batch.clone()).await.unwrap().batch_item_failures.is_empty());
    }
    let version_before = committed_version(&client, &table, &shard).await;
    meet.arm(true);
    let (ta, tb) = (a.clone(), b.clone());
    let (ba, bb) = (all[race].clone(), all[race].clone());
    let ja = tokio::spawn(async move { ta.handle(ba).await });
    let jb = tokio::spawn(async move { tb.handle(bb).await });
    let (ra, rb) = (ja.await.unwrap(), jb.await.unwrap());
    meet.arm(false);
    let (winner, loser, lost) = match (ra, rb) {
        (Ok(w), Err(e)) => (&a, &b, (w, e)),
        (Err(e), Ok(w)) => (&b, &a, (w, e)),
        (ra, rb) => panic!("exactly one invocation must win the race: got {ra:?} and {rb:?}"),
    };
    assert!(lost.0.batch_item_failures.is_empty());
    assert!(
        matches!(
            lost.1,
            StageError::Store(
                shardflow_state_dynamodb::StoreError::ProgressConflict { .. }
                    | shardflow_state_dynamodb::StoreError::Conflict { .. }
            )
        ),
        "the loser must fail on the store's condition: {:?}",
        lost.1
    );
    let version_after = committed_version(&client, &table, &shard).await;
    assert_eq!(
        version_after,
        version_before + u64::from(commits),
        "the raced batch must commit exactly {} time(s)",
        u64::from(commits)
    );
    let (_, by) = progress_item(&client, &table, &shard).await.expect("a progress item");
    assert_eq!(by, winner.container_id(), "the progress item names the winner");
    let winner_ids: std::collections::BTreeSet<_> = winner.sink().writes().into_iter().map(|o| o.id).collect();
    let emitted_before_failing = !loser.sink().writes().is_empty();
    // Lambda retries the failed invocation: it finds the batch handled and emits nothing new.
    assert!(loser
        .handle(all[race].clone())
        .await
        .unwrap()
        .batch_item_failures
        .is_empty());
    let new: Vec<_> = loser
        .sink()
        .writes()
        .into_iter()
        .filter(|o| !winner_ids.contains(&o.id))
        .collect();
    assert!(
        new.is_empty(),
        "the loser's retry emitted results the winner did not: {new:?}"
    );
    assert_eq!(
        distinct_results(&[winner, loser]),
        distinct_results(&[winner]),
        "the loser's results differ from the winner's"
    );
    assert_eq!(committed_version(&client, &table, &shard).await, version_after);
    for (i, batch) in all.into_iter().enumerate().skip(race + 1) {
        let c = if i % 2 == 0 { &a } else { &b };
        assert!(
            c.handle(batch).await.unwrap().batch_item_failures.is_empty(),
            "batch {i}"
        );
    }
    assert_eq!(distinct_results(&[&a, &b]), expected(0..RECORDS));
    emitted_before_failing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_invocations_of_one_uncommitted_batch_at_once_advance_the_progress_item_once_and_the_loser_retries_silently(
) {
    // Interval 4: batch 0 commits, batch 1 moves the progress item, batch 2 is raced (not due).
    let emitted = race_on_one_batch("interval-race-progress", 4, 2, false).await;
    // Both emit before writing progress: the loser's results carried the winner's ids.
    assert!(emitted, "the loser emitted nothing before failing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_invocations_of_one_due_batch_at_once_commit_once_and_the_loser_retries_silently() {
    // Interval 2: batch 0 commits, batch 1 moves the progress item, batch 2 is due and raced.
    race_on_one_batch("interval-race-commit", 2, 2, true).await;
}

#[tokio::test]
async fn switching_the_interval_from_three_batches_to_one_continues_from_the_records_handled_after_the_checkpoint() {
    let (client, table) = shardflow_testkit::state_table("interval-switch").await;
    let (kinesis, stream, shard, records) = stream_of_purchases("interval-switch").await;
    let all = batches(&stream, &shard, &records);
    // At interval 3: batch 0 commits, 1 and 2 only move the progress item, 3 commits, 4 and 5
    // only move it. Then the stage is redeployed at one batch: a new container takes the shard.
    let before = container(&client, &table, &kinesis, 3);
    for batch in &all[..6] {
        assert!(before
            .handle(batch.clone())
            .await
            .unwrap()
            .batch_item_failures
            .is_empty());
    }
    assert_eq!(committed_version(&client, &table, &shard).await, 2);
    let after = container(&client, &table, &kinesis, 1);
    let mut versions = Vec::new();
    for batch in &all[6..] {
        assert!(after
            .handle(batch.clone())
            .await
            .unwrap()
            .batch_item_failures
            .is_empty());
        versions.push(committed_version(&client, &table, &shard).await);
    }
    // Every batch commits now, and batches 4 and 5 count: their records were read back from
    // Kinesis before batch 6, not skipped as older than the batch.
    assert_eq!(versions, [3, 4, 5, 6, 7, 8]);
    assert_eq!(distinct_results(&[&before, &after]), expected(0..RECORDS));
}
