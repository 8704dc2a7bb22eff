//! Large key groups spilled to S3, deletion of removed key groups, and the TTL safety net, against
//! the DynamoDB and S3 of LocalStack.
//!
//! Needs `AWS_ENDPOINT_URL` pointing at LocalStack (`source localstack/env`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use shardflow_engine::combine::Collect;
use shardflow_engine::state::key_group;
use shardflow_engine::{Engine, Pipeline, Trigger, WatermarkStrategy, Windowing};
use shardflow_stage::SequenceNumber;
use shardflow_state_dynamodb::{
    CommitStep, CrashHook, DynamoDbCheckpointStore, SpillBucket, StoreError, MAX_INLINE_STATE_BYTES,
};

type Event = (u64, i64, String);
type Row = (u64, i64, usize, usize);

const STAGE: &str = "blobs";
const KEY_GROUPS: u16 = 8;

/// Collects every event of a key in 1,000-second windows: state grows with the payloads.
fn pipeline() -> Pipeline<Event, Row> {
    Pipeline::builder("blobs")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
        .max_key_groups(KEY_GROUPS)
        .event_time(|e: &Event| e.1)
        .key_by(|e| e.0)
        .window(Windowing::tumbling(1_000_000).unwrap())
        .trigger(Trigger::at_watermark())
        .aggregate(Collect, |k, w, _, v: Vec<Event>| {
            (*k, w.start, v.len(), v.iter().map(|e| e.2.len()).sum())
        })
        .sink("blobs")
}

fn seq(i: u64) -> SequenceNumber {
    SequenceNumber::parse(&format!("4965{i:020}")).unwrap()
}

/// `n` events of `key` with 1 KB payloads at times `start..`.
fn events(key: u64, start: i64, n: usize) -> Vec<Event> {
    (0..n).map(|i| (key, start + i as i64, format!("{i:0>1024}"))).collect()
}

fn feed(engine: &mut Engine<Event, Row>, input: &[Event]) -> Vec<Row> {
    let part = engine.partition("s");
    for (i, e) in input.iter().enumerate() {
        engine.process(part, i as u64, 0, e.clone());
    }
    engine.drain_output().into_iter().map(|o| o.value).collect()
}

fn finished(mut engine: Engine<Event, Row>) -> Vec<Row> {
    engine.finish();
    let mut v: Vec<Row> = engine.drain_output().into_iter().map(|o| o.value).collect();
    v.sort();
    v
}

async fn objects(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let out = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    let mut keys: Vec<String> = out
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    keys.sort();
    keys
}

async fn slot_items(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    operator: &str,
    group: u16,
) -> Vec<HashMap<String, AttributeValue>> {
    client
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(format!("{STAGE}#kg#{operator}#{group}")))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .items()
        .to_vec()
}

struct Fixture {
    client: aws_sdk_dynamodb::Client,
    table: String,
    s3: aws_sdk_s3::Client,
    bucket: String,
}

impl Fixture {
    async fn new(name: &str) -> Self {
        let (client, table) = shardflow_testkit::state_table(name).await;
        let (s3, bucket) = shardflow_testkit::bucket(name).await;
        Fixture {
            client,
            table,
            s3,
            bucket,
        }
    }

    fn store(&self, shard: &str) -> DynamoDbCheckpointStore {
        DynamoDbCheckpointStore::new(self.client.clone(), &self.table, STAGE, shard)
            .with_spill_bucket(Some(SpillBucket::new(self.s3.clone(), &self.bucket)))
    }
}

#[tokio::test]
async fn a_key_group_of_a_megabyte_round_trips_through_s3() {
    let f = Fixture::new("spill").await;
    let p = pipeline();
    let input = events(7, 0, 1_000);
    let mut store = f.store("shardId-000000000000");
    store.load().await.unwrap();
    let mut engine = p.engine();
    assert!(feed(&mut engine, &input).is_empty());
    let cp = engine.snapshot().unwrap();
    assert!(
        cp.size_hint() > 2 * MAX_INLINE_STATE_BYTES,
        "the test needs a group over the limit"
    );
    let stats = store.commit(&cp, &seq(1_000)).await.unwrap();
    assert_eq!(stats.objects_written, 1, "{stats:?}");

    let group = key_group(&7u64, KEY_GROUPS);
    let operator = &cp.operators[0].operator;
    let keys = objects(&f.s3, &f.bucket).await;
    assert_eq!(keys.len(), 1);
    assert!(
        keys[0].starts_with(&format!("state/{STAGE}/{operator}/{group}/shardId-000000000000/v1-")),
        "{keys:?}"
    );
    let items = slot_items(&f.client, &f.table, operator, group).await;
    assert_eq!(items.len(), 1);
    assert!(
        !items[0].contains_key("state"),
        "a spilled slot holds the pointer, not the state"
    );
    assert_eq!(items[0].get("s3_key"), Some(&AttributeValue::S(keys[0].clone())));

    let loaded = f.store("shardId-000000000000").load().await.unwrap();
    let restored = Engine::restore(&p, loaded.image.as_ref().unwrap()).unwrap();
    let mut reference = p.engine();
    feed(&mut reference, &input);
    assert_eq!(finished(restored), finished(reference));
    assert_eq!(finished_len(&p, &input), vec![(7, 0, 1_000, 1_024_000)]);
}

fn finished_len(p: &Pipeline<Event, Row>, input: &[Event]) -> Vec<Row> {
    let mut e = p.engine();
    feed(&mut e, input);
    finished(e)
}

#[tokio::test]
async fn a_crash_between_the_spill_and_the_flip_leaves_the_previous_state_readable() {
    let f = Fixture::new("spillcrash").await;
    let p = pipeline();
    let shard = "shardId-000000000001";
    let first = events(7, 0, 500);
    let second = events(7, 500, 500);
    let mut store = f.store(shard);
    store.load().await.unwrap();
    let mut engine = p.engine();
    feed(&mut engine, &first);
    store.commit(&engine.snapshot().unwrap(), &seq(500)).await.unwrap();
    let v1_objects = objects(&f.s3, &f.bucket).await;
    assert_eq!(v1_objects.len(), 1);

    // The next commit dies after writing its object, before any item points to it.
    let crash: CrashHook = Arc::new(|step| step == CommitStep::AfterSpill);
    let mut crashing = f.store(shard).with_crash_hook(Some(crash));
    let loaded = crashing.load().await.unwrap();
    let mut resumed = Engine::restore(&p, loaded.image.as_ref().unwrap()).unwrap();
    feed(&mut resumed, &second);
    let cp = resumed.snapshot().unwrap();
    assert!(matches!(
        crashing.commit(&cp, &seq(1_000)).await,
        Err(StoreError::InjectedCrash(_))
    ));
    assert_eq!(
        objects(&f.s3, &f.bucket).await.len(),
        2,
        "the orphan of the crashed commit"
    );

    let mut reader = f.store(shard);
    let loaded = reader.load().await.unwrap();
    assert_eq!(loaded.version, 1);
    assert_eq!(loaded.sequence_number, Some(seq(500)));
    let restored = Engine::restore(&p, loaded.image.as_ref().unwrap()).unwrap();
    assert_eq!(finished(restored), vec![(7, 0, 500, 512_000)]);

    // The redelivered batch commits; the superseded version's object is deleted after the flip.
    let mut retried = Engine::restore(&p, loaded.image.as_ref().unwrap()).unwrap();
    feed(&mut retried, &second);
    reader.commit(&retried.snapshot().unwrap(), &seq(1_000)).await.unwrap();
    let after = objects(&f.s3, &f.bucket).await;
    assert!(!after.contains(&v1_objects[0]), "{after:?}");
    assert_eq!(
        after.len(),
        1,
        "the retry rewrote the same content under the same key: {after:?}"
    );
    let loaded = f.store(shard).load().await.unwrap();
    let restored = Engine::restore(&p, loaded.image.as_ref().unwrap()).unwrap();
    assert_eq!(finished(restored), vec![(7, 0, 1_000, 1_024_000)]);
}

#[tokio::test]
async fn without_a_spill_bucket_a_large_group_fails_the_commit_and_writes_nothing() {
    let (client, table) = shardflow_testkit::state_table("nospill").await;
    let p = pipeline();
    let shard = "shardId-000000000002";
    let mut store = DynamoDbCheckpointStore::new(client.clone(), &table, STAGE, shard);
    store.load().await.unwrap();
    let mut engine = p.engine();
    feed(&mut engine, &events(7, 0, 400));
    match store.commit(&engine.snapshot().unwrap(), &seq(400)).await {
        Err(StoreError::SpillNotConfigured { bytes, .. }) => assert!(bytes > MAX_INLINE_STATE_BYTES),
        other => panic!("expected SpillNotConfigured, got {other:?}"),
    }
    let loaded = DynamoDbCheckpointStore::new(client, &table, STAGE, shard)
        .load()
        .await
        .unwrap();
    assert_eq!(loaded.version, 0);
}

/// Two keys in different key groups.
fn keys_in_two_groups() -> (u64, u64) {
    let a = 1u64;
    let b = (2..100u64)
        .find(|k| key_group(k, KEY_GROUPS) != key_group(&a, KEY_GROUPS))
        .unwrap();
    (a, b)
}

#[tokio::test]
async fn a_key_group_emptied_by_a_fired_window_has_its_items_and_object_deleted() {
    let f = Fixture::new("remove").await;
    let p = pipeline();
    let shard = "shardId-000000000003";
    let (a, b) = keys_in_two_groups();
    let mut store = f.store(shard);
    store.load().await.unwrap();
    let mut engine = p.engine();
    // Key a: a spilled group, written twice (the second commit deletes the first slot item).
    feed(&mut engine, &events(a, 0, 200));
    store.commit(&engine.snapshot().unwrap(), &seq(1)).await.unwrap();
    feed(&mut engine, &events(a, 200, 300));
    store.commit(&engine.snapshot().unwrap(), &seq(2)).await.unwrap();
    let operator = engine.snapshot().unwrap().operators[0].operator.clone();
    store.commit(&engine.snapshot().unwrap(), &seq(3)).await.unwrap();
    let group_a = key_group(&a, KEY_GROUPS);
    assert_eq!(
        slot_items(&f.client, &f.table, &operator, group_a).await.len(),
        1,
        "only the live slot item is left"
    );
    assert_eq!(objects(&f.s3, &f.bucket).await.len(), 1);

    // Key b far in the future: the watermark passes a's window, which fires and empties a's group.
    let fired = feed(&mut engine, &[(b, 5_000_000, "x".into())]);
    assert_eq!(fired, vec![(a, 0, 500, 512_000)]);
    let stats = store.commit(&engine.snapshot().unwrap(), &seq(4)).await.unwrap();
    assert_eq!(stats.items_deleted, 1, "{stats:?}");
    assert!(slot_items(&f.client, &f.table, &operator, group_a).await.is_empty());
    assert!(objects(&f.s3, &f.bucket).await.is_empty());
    let group_b = key_group(&b, KEY_GROUPS);
    assert_eq!(slot_items(&f.client, &f.table, &operator, group_b).await.len(), 1);

    let loaded = f.store(shard).load().await.unwrap();
    let restored = Engine::restore(&p, loaded.image.as_ref().unwrap()).unwrap();
    assert_eq!(finished(restored), vec![(b, 5_000_000, 1, 1)]);
}

#[tokio::test]
async fn a_crash_between_spill_writes_or_clean_up_deletes_leaves_a_readable_state() {
    let f = Fixture::new("spillsteps").await;
    let p = pipeline();
    let shard = "shardId-000000000005";
    let (a, b) = keys_in_two_groups();
    let steps = Arc::new(std::sync::Mutex::new(Vec::new()));
    let crash_at = Arc::new(std::sync::Mutex::new(None::<CommitStep>));
    let (seen, at) = (steps.clone(), crash_at.clone());
    let hook: CrashHook = Arc::new(move |step| {
        seen.lock().unwrap().push(step);
        *at.lock().unwrap() == Some(step)
    });
    let store = || f.store(shard).with_crash_hook(Some(hook.clone()));
    let mut first = [events(a, 0, 400), events(b, 0, 400)].concat();
    first.sort_by_key(|e| e.1);

    // Two spilled groups: a crash after the first object leaves nothing committed.
    *crash_at.lock().unwrap() = Some(CommitStep::AfterSpillObject(1));
    let mut s = store();
    s.load().await.unwrap();
    let mut engine = p.engine();
    feed(&mut engine, &first);
    let cp = engine.snapshot().unwrap();
    assert!(matches!(
        s.commit(&cp, &seq(1)).await,
        Err(StoreError::InjectedCrash(_))
    ));
    assert_eq!(objects(&f.s3, &f.bucket).await.len(), 1);
    assert_eq!(f.store(shard).load().await.unwrap().version, 0);
    *crash_at.lock().unwrap() = None;
    let mut s = store();
    s.load().await.unwrap();
    steps.lock().unwrap().clear();
    s.commit(&cp, &seq(1)).await.unwrap();
    assert_eq!(
        *steps.lock().unwrap(),
        vec![
            CommitStep::BeforeWrite,
            CommitStep::AfterSpillObject(1),
            CommitStep::AfterSpill,
            CommitStep::AfterFlip
        ]
    );
    let v1 = objects(&f.s3, &f.bucket).await;
    assert_eq!(v1.len(), 2, "the retry rewrote the crashed attempt's object: {v1:?}");

    // Both groups grow: the clean-up deletes two objects and two slot items; a crash after the
    // first delete leaves the committed version whole.
    *crash_at.lock().unwrap() = Some(CommitStep::AfterCleanUpDelete(1));
    let mut s = store();
    let loaded = s.load().await.unwrap();
    let mut engine = Engine::restore(&p, loaded.image.as_ref().unwrap()).unwrap();
    let mut second = [events(a, 400, 100), events(b, 400, 100)].concat();
    second.sort_by_key(|e| e.1);
    feed(&mut engine, &second);
    steps.lock().unwrap().clear();
    assert!(matches!(
        s.commit(&engine.snapshot().unwrap(), &seq(2)).await,
        Err(StoreError::InjectedCrash(_))
    ));
    assert_eq!(steps.lock().unwrap().last(), Some(&CommitStep::AfterCleanUpDelete(1)));
    let left = objects(&f.s3, &f.bucket).await;
    assert_eq!(
        left.len(),
        3,
        "two new objects and one superseded one not yet deleted: {left:?}"
    );
    let loaded = f.store(shard).load().await.unwrap();
    assert_eq!(loaded.version, 2);
    let restored = Engine::restore(&p, loaded.image.as_ref().unwrap()).unwrap();
    let mut want = vec![(a, 0, 500, 500 * 1_024), (b, 0, 500, 500 * 1_024)];
    want.sort();
    assert_eq!(finished(restored), want);
}

fn expires_at(item: &HashMap<String, AttributeValue>) -> Option<u64> {
    match item.get("expires_at") {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

#[tokio::test]
async fn items_carry_expires_at_and_groups_near_the_horizon_are_rewritten() {
    let (client, table) = shardflow_testkit::state_table("ttl").await;
    let ttl = client.describe_time_to_live().table_name(&table).send().await.unwrap();
    let description = ttl.time_to_live_description().unwrap();
    assert_eq!(description.attribute_name(), Some("expires_at"));

    let p = pipeline();
    let shard = "shardId-000000000004";
    let now = Arc::new(AtomicU64::new(1_000_000));
    let clock_now = now.clone();
    let store = || {
        let clock_now = clock_now.clone();
        DynamoDbCheckpointStore::new(client.clone(), &table, STAGE, shard)
            .with_state_ttl(Some(Duration::from_secs(100)))
            .with_clock(Arc::new(move || clock_now.load(Ordering::SeqCst)))
    };
    let (a, b) = keys_in_two_groups();
    let mut s = store();
    s.load().await.unwrap();
    let mut engine = p.engine();
    feed(&mut engine, &events(a, 0, 3));
    let cp = engine.snapshot().unwrap();
    let operator = cp.operators[0].operator.clone();
    s.commit(&cp, &seq(1)).await.unwrap();
    let items = slot_items(&client, &table, &operator, key_group(&a, KEY_GROUPS)).await;
    assert_eq!(items.iter().map(expires_at).collect::<Vec<_>>(), vec![Some(1_000_100)]);

    // 40 s later (under half the horizon) a commit touching only b leaves a's slot alone.
    now.store(1_000_040, Ordering::SeqCst);
    let mut s = store();
    let loaded = s.load().await.unwrap();
    let mut engine = Engine::restore(&p, loaded.image.as_ref().unwrap()).unwrap();
    feed(&mut engine, &events(b, 10, 1));
    assert_eq!(
        s.commit(&engine.snapshot().unwrap(), &seq(2))
            .await
            .unwrap()
            .groups_refreshed,
        0
    );

    // 60 s after a's write (past half the horizon) the next commit rewrites it with a new expiry.
    now.store(1_000_060, Ordering::SeqCst);
    let mut s = store();
    let loaded = s.load().await.unwrap();
    let mut engine = Engine::restore(&p, loaded.image.as_ref().unwrap()).unwrap();
    feed(&mut engine, &events(b, 20, 1));
    let stats = s.commit(&engine.snapshot().unwrap(), &seq(3)).await.unwrap();
    assert_eq!(stats.groups_refreshed, 1, "{stats:?}");
    let mut items: Vec<u64> = slot_items(&client, &table, &operator, key_group(&a, KEY_GROUPS))
        .await
        .iter()
        .filter_map(expires_at)
        .collect();
    items.sort();
    assert_eq!(
        items,
        vec![1_000_160],
        "the superseded slot item is deleted; the new one carries the new expiry"
    );
    let checkpoint = client
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S(format!("{STAGE}#shard#{shard}")))
        .key("sk", AttributeValue::S("checkpoint".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(checkpoint.item().and_then(expires_at), Some(1_000_160));

    // The refreshed state is the same state.
    let loaded = store().load().await.unwrap();
    let restored = Engine::restore(&p, loaded.image.as_ref().unwrap()).unwrap();
    assert_eq!(finished(restored), vec![(a, 0, 3, 3 * 1_024), (b, 0, 2, 2 * 1_024)]);
}
