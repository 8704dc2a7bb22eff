//! The DynamoDB checkpoint store against DynamoDB Local (or LocalStack): round trips, increments,
//! fencing of stale invocations, commits larger than one transaction.
//!
//! Needs `AWS_ENDPOINT_URL_DYNAMODB` (or `AWS_ENDPOINT_URL`) pointing at an emulator; `scripts/test`
//! starts one and sets it.

use aws_sdk_dynamodb::Client;
use shardflow_engine::combine::Count;
use shardflow_engine::{Output, Pipeline, Trigger, Windowing};
use shardflow_stage::SequenceNumber;
use std::sync::{Arc, Mutex};

use shardflow_state_dynamodb::{CommitStep, CrashHook, DynamoDbCheckpointStore, StoreError};

type Event = (u64, i64);
type Row = (u64, i64, u64);

async fn client_and_table(name: &str) -> (Client, String) {
    shardflow_testkit::state_table(name).await
}

fn pipeline(max_key_groups: u16) -> Pipeline<Event, Row> {
    Pipeline::builder("counts")
        .max_key_groups(max_key_groups)
        .event_time(|e: &Event| e.1)
        .key_by(|e| e.0)
        .window(Windowing::tumbling(1_000).unwrap())
        .trigger(Trigger::at_watermark())
        .aggregate(Count, |k, w, _, n| (*k, w.start, n))
        .sink("counts")
}

fn seq(i: u64) -> SequenceNumber {
    SequenceNumber::parse(&format!("4965{i:020}")).unwrap()
}

fn events(keys: u64, n: u64) -> Vec<Event> {
    (0..n).map(|i| (i % keys, (i as i64) * 7)).collect()
}

fn values(mut out: Vec<Output<Row>>) -> Vec<Row> {
    let mut v: Vec<Row> = out.drain(..).map(|o| o.value).collect();
    v.sort();
    v
}

/// The whole input in one engine, for comparison.
fn uninterrupted(p: &Pipeline<Event, Row>, input: &[Event]) -> Vec<Row> {
    let mut e = p.engine();
    let part = e.partition("s");
    let mut out = Vec::new();
    for (i, ev) in input.iter().enumerate() {
        e.process(part, i as u64, 0, *ev);
        out.extend(e.drain_output());
    }
    e.finish();
    out.extend(e.drain_output());
    values(out)
}

#[tokio::test]
async fn committed_state_restores_an_engine_that_finishes_like_an_uninterrupted_one() {
    let (client, table) = client_and_table("roundtrip").await;
    let p = pipeline(32);
    let input = events(50, 2_000);
    let mut store = DynamoDbCheckpointStore::new(client.clone(), &table, "counts", "shardId-000000000000");
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.version, 0);
    assert!(loaded.image.is_none());

    let mut out = Vec::new();
    let mut engine = p.engine();
    let part = engine.partition("s");
    for (chunk_no, chunk) in input.chunks(500).enumerate() {
        let base = chunk_no * 500;
        for (i, ev) in chunk.iter().enumerate() {
            engine.process(part, (base + i) as u64, 0, *ev);
        }
        out.extend(engine.drain_output());
        let cp = engine.snapshot().unwrap();
        let stats = store.commit(&cp, &seq((base + chunk.len()) as u64)).await.unwrap();
        assert!(stats.items_written >= 1);
        // A fresh invocation picks up exactly where this one committed.
        let mut fresh = DynamoDbCheckpointStore::new(client.clone(), &table, "counts", "shardId-000000000000");
        let loaded = fresh.load().await.unwrap();
        assert_eq!(loaded.version, chunk_no as u64 + 1);
        assert_eq!(loaded.sequence_number, Some(seq((base + chunk.len()) as u64)));
        engine = shardflow_engine::Engine::restore(&p, loaded.image.as_ref().unwrap()).unwrap();
        store = fresh;
    }
    engine.finish();
    out.extend(engine.drain_output());
    assert_eq!(values(out), uninterrupted(&p, &input));
}

#[tokio::test]
async fn items_written_follow_dirty_key_groups_not_records() {
    let (client, table) = client_and_table("dirty").await;
    let p = pipeline(128);
    let mut store = DynamoDbCheckpointStore::new(client, &table, "counts", "shardId-000000000001");
    store.load().await.unwrap();
    let mut engine = p.engine();
    let part = engine.partition("s");
    // 5,000 records of 3 keys: at most 3 key groups change.
    for i in 0..5_000u64 {
        engine.process(part, i, 0, (i % 3, 10));
    }
    let stats = store.commit(&engine.snapshot().unwrap(), &seq(5_000)).await.unwrap();
    assert!(stats.items_written <= 3 + 1, "{stats:?}");
    assert_eq!(stats.transactions, 1);
    // Nothing changed: only the checkpoint item is written.
    let stats = store.commit(&engine.snapshot().unwrap(), &seq(5_001)).await.unwrap();
    assert_eq!(stats.items_written, 1, "{stats:?}");
}

#[tokio::test]
async fn a_stale_invocation_loses_the_condition_and_changes_nothing() {
    let (client, table) = client_and_table("fencing").await;
    let p = pipeline(16);
    let shard = "shardId-000000000002";
    let mut a = DynamoDbCheckpointStore::new(client.clone(), &table, "counts", shard);
    let mut b = DynamoDbCheckpointStore::new(client.clone(), &table, "counts", shard);
    a.load().await.unwrap();
    b.load().await.unwrap();

    let mut ea = p.engine();
    let pa = ea.partition("s");
    ea.process(pa, 0, 0, (1, 5));
    a.commit(&ea.snapshot().unwrap(), &seq(1)).await.unwrap();

    // b read version 0 before a committed: its commit must fail and leave a's state intact.
    let mut eb = p.engine();
    let pb = eb.partition("s");
    eb.process(pb, 0, 0, (2, 5));
    eb.process(pb, 1, 0, (3, 5));
    match b.commit(&eb.snapshot().unwrap(), &seq(2)).await {
        Err(StoreError::Conflict { expected: 0, .. }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    let mut reader = DynamoDbCheckpointStore::new(client, &table, "counts", shard);
    let loaded = reader.load().await.unwrap();
    assert_eq!(loaded.version, 1);
    assert_eq!(loaded.sequence_number, Some(seq(1)));
    let mut restored = shardflow_engine::Engine::restore(&p, loaded.image.as_ref().unwrap()).unwrap();
    restored.finish();
    assert_eq!(values(restored.drain_output()), vec![(1, 0, 1)]);
}

#[tokio::test]
async fn a_commit_larger_than_one_transaction_is_atomic_at_the_flip() {
    let (client, table) = client_and_table("large").await;
    let p = pipeline(512);
    let input = events(3_000, 6_000);
    let mut store = DynamoDbCheckpointStore::new(client.clone(), &table, "counts", "shardId-000000000003");
    store.load().await.unwrap();
    let mut engine = p.engine();
    let part = engine.partition("s");
    for (i, ev) in input.iter().enumerate() {
        engine.process(part, i as u64, 0, *ev);
    }
    let mut out = engine.drain_output();
    let cp = engine.snapshot().unwrap();
    assert!(cp.key_groups_written() > 100, "the test needs more than 100 items");
    let stats = store.commit(&cp, &seq(6_000)).await.unwrap();
    assert!(stats.transactions >= 3, "{stats:?}");
    let mut fresh = DynamoDbCheckpointStore::new(client, &table, "counts", "shardId-000000000003");
    let loaded = fresh.load().await.unwrap();
    let mut restored = shardflow_engine::Engine::restore(&p, loaded.image.as_ref().unwrap()).unwrap();
    restored.finish();
    out.extend(restored.drain_output());
    assert_eq!(values(out), uninterrupted(&p, &input));
}

#[tokio::test]
async fn transactions_hold_at_most_the_configured_items_and_a_crash_between_them_changes_nothing() {
    let (client, table) = client_and_table("chunks").await;
    let p = pipeline(64);
    let shard = "shardId-000000000005";
    let store = |hook: Option<CrashHook>| {
        DynamoDbCheckpointStore::new(client.clone(), &table, "counts", shard)
            .with_max_transaction_items(4)
            .with_crash_hook(hook)
    };
    let input = events(40, 40);
    let mut first = store(None);
    first.load().await.unwrap();
    let mut engine = p.engine();
    let part = engine.partition("s");
    engine.process(part, 0, 0, input[0]);
    first.commit(&engine.snapshot().unwrap(), &seq(1)).await.unwrap();

    // Every step the commit passes, and a crash after its second slot transaction.
    let steps = Arc::new(Mutex::new(Vec::new()));
    let seen = steps.clone();
    let crash: CrashHook = Arc::new(move |step| {
        seen.lock().unwrap().push(step);
        step == CommitStep::AfterSlotTransaction(2)
    });
    let mut crashing = store(Some(crash));
    let loaded = crashing.load().await.unwrap();
    let mut resumed = shardflow_engine::Engine::restore(&p, loaded.image.as_ref().unwrap()).unwrap();
    let part = resumed.partition("s");
    for (i, ev) in input.iter().enumerate().skip(1) {
        resumed.process(part, i as u64, 0, *ev);
    }
    let cp = resumed.snapshot().unwrap();
    let groups = cp.key_groups_written();
    assert!(
        groups > 8,
        "the test needs more than two transactions of slots: {groups}"
    );
    assert!(matches!(
        crashing.commit(&cp, &seq(40)).await,
        Err(StoreError::InjectedCrash(_))
    ));
    assert_eq!(
        *steps.lock().unwrap(),
        vec![
            CommitStep::BeforeWrite,
            CommitStep::AfterSlotTransaction(1),
            CommitStep::AfterSlotTransaction(2)
        ]
    );
    // Eight slot items are written, none is visible: the shard is still at version 1.
    let mut reader = store(None);
    let loaded = reader.load().await.unwrap();
    assert_eq!((loaded.version, loaded.sequence_number.clone()), (1, Some(seq(1))));
    let mut restored = shardflow_engine::Engine::restore(&p, loaded.image.as_ref().unwrap()).unwrap();
    restored.finish();
    assert_eq!(values(restored.drain_output()), uninterrupted(&p, &input[..1]));

    // The retry commits in transactions of at most 4 items: ceil(groups / 4) of slots, then the flip.
    let stats = reader.commit(&cp, &seq(40)).await.unwrap();
    assert_eq!(stats.transactions, groups.div_ceil(4) + 1, "{stats:?}");
    let loaded = store(None).load().await.unwrap();
    let mut restored = shardflow_engine::Engine::restore(&p, loaded.image.as_ref().unwrap()).unwrap();
    restored.finish();
    assert_eq!(values(restored.drain_output()), uninterrupted(&p, &input));
}

#[tokio::test]
async fn superseded_slot_items_are_deleted_in_batches_after_the_flip() {
    let (client, table) = client_and_table("batchdelete").await;
    let p = pipeline(128);
    let shard = "shardId-000000000006";
    let mut store = DynamoDbCheckpointStore::new(client.clone(), &table, "counts", shard);
    store.load().await.unwrap();
    let mut engine = p.engine();
    let part = engine.partition("s");
    for i in 0..400u64 {
        engine.process(part, i, 0, (i, 10));
    }
    let first = store.commit(&engine.snapshot().unwrap(), &seq(1)).await.unwrap();
    let groups = first.items_written - 1;
    assert!(groups > 50, "the test needs more than two batches of deletes: {groups}");
    assert_eq!(first.items_deleted, 0);
    // Every group changes again: each new slot item supersedes one, which is deleted.
    for i in 0..400u64 {
        engine.process(part, 400 + i, 0, (i, 20));
    }
    let second = store.commit(&engine.snapshot().unwrap(), &seq(2)).await.unwrap();
    assert_eq!(
        (second.items_written, second.items_deleted),
        (groups + 1, groups),
        "{second:?}"
    );
    let slots = count_items(&client, &table, |_, sk| sk.contains("#slot")).await;
    assert_eq!(slots, groups, "one slot item per live key group is left");
    let loaded = DynamoDbCheckpointStore::new(client, &table, "counts", shard)
        .load()
        .await
        .unwrap();
    let mut restored = shardflow_engine::Engine::restore(&p, loaded.image.as_ref().unwrap()).unwrap();
    restored.finish();
    assert_eq!(restored.drain_output().len(), 400);
}

#[tokio::test]
async fn a_checkpoint_of_another_pipeline_is_refused() {
    let (client, table) = client_and_table("mismatch").await;
    let mut store = DynamoDbCheckpointStore::new(client, &table, "counts", "shardId-000000000004");
    store.load().await.unwrap();
    let mut e = pipeline(16).engine();
    let part = e.partition("s");
    e.process(part, 0, 0, (1, 1));
    store.commit(&e.snapshot().unwrap(), &seq(1)).await.unwrap();
    let mut other = pipeline(32).engine();
    let part = other.partition("s");
    other.process(part, 0, 0, (1, 1));
    assert!(matches!(
        store.commit(&other.snapshot().unwrap(), &seq(2)).await,
        Err(StoreError::State(_))
    ));
}

#[tokio::test]
async fn a_failing_record_is_remembered_until_a_commit_moves_past_it() {
    use shardflow_state_dynamodb::RecordFailure;
    let (client, table) = client_and_table("failure").await;
    let shard = "shardId-000000000005";
    let mut store = DynamoDbCheckpointStore::new(client.clone(), &table, "counts", shard);
    store.load().await.unwrap();
    let mut e = pipeline(16).engine();
    let part = e.partition("s");
    e.process(part, 0, 0, (1, 1));
    let failure = RecordFailure {
        sequence_number: seq(2),
        attempts: 1,
        reason: "boom".into(),
    };
    store
        .commit_with_failure(&e.snapshot().unwrap(), Some(&seq(1)), Some(&failure))
        .await
        .unwrap();
    let mut reader = DynamoDbCheckpointStore::new(client.clone(), &table, "counts", shard);
    let loaded = reader.load().await.unwrap();
    assert_eq!(loaded.failure, Some(failure.clone()));
    assert_eq!(loaded.sequence_number, Some(seq(1)));
    // A second failure of the first record keeps the position.
    let again = RecordFailure { attempts: 2, ..failure };
    reader
        .commit_with_failure(&e.snapshot().unwrap(), None, Some(&again))
        .await
        .unwrap();
    let loaded = DynamoDbCheckpointStore::new(client.clone(), &table, "counts", shard)
        .load()
        .await
        .unwrap();
    assert_eq!(loaded.sequence_number, Some(seq(1)));
    assert_eq!(loaded.failure.map(|f| f.attempts), Some(2));
    reader.commit(&e.snapshot().unwrap(), &seq(3)).await.unwrap();
    let loaded = DynamoDbCheckpointStore::new(client, &table, "counts", shard)
        .load()
        .await
        .unwrap();
    assert_eq!(loaded.failure, None);
    assert_eq!(loaded.sequence_number, Some(seq(3)));
}

/// Counts with repeats dropped first: two stateful operators, `deduplicate-0` and
/// `window_aggregate-0`.
fn deduplicated_pipeline() -> Pipeline<Event, Row> {
    Pipeline::builder("counts")
        .max_key_groups(16)
        .event_time(|e: &Event| e.1)
        .deduplicate(|e| *e, 60_000)
        .key_by(|e| e.0)
        .window(Windowing::tumbling(1_000).unwrap())
        .trigger(Trigger::at_watermark())
        .aggregate(Count, |k, w, _, n| (*k, w.start, n))
        .sink("counts")
}

/// The number of items in the table whose string keys `pk`, `sk` pass `keep`.
async fn count_items(client: &Client, table: &str, keep: impl Fn(&str, &str) -> bool) -> usize {
    let items = client
        .scan()
        .table_name(table)
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .items()
        .to_vec();
    let key = |item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>, name: &str| {
        item.get(name).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
    };
    items.iter().filter(|i| keep(&key(i, "pk"), &key(i, "sk"))).count()
}

/// The number of slot items of `operator` in the table.
async fn slot_items_of(client: &Client, table: &str, operator: &str) -> usize {
    let prefix = format!("#kg#{operator}#");
    count_items(client, table, |pk, _| pk.contains(&prefix)).await
}

#[tokio::test]
async fn a_full_commit_forgets_the_operators_it_does_not_list_so_dropped_state_never_comes_back() {
    let (client, table) = client_and_table("forget").await;
    let shard = "shardId-000000000007";
    let mut store = DynamoDbCheckpointStore::new(client.clone(), &table, "counts", shard);
    store.load().await.unwrap();
    let mut engine = deduplicated_pipeline().engine();
    let part = engine.partition("s");
    for (i, ev) in events(20, 100).into_iter().enumerate() {
        engine.process(part, i as u64, 0, ev);
    }
    store.commit(&engine.snapshot().unwrap(), &seq(100)).await.unwrap();
    assert!(slot_items_of(&client, &table, "deduplicate-0").await > 0);

    // The new pipeline has no deduplicate: its state is dropped (allowed) and the next
    // checkpoint, full, does not list it.
    let p = pipeline(16);
    let mut store = DynamoDbCheckpointStore::new(client.clone(), &table, "counts", shard);
    let loaded = store.load().await.unwrap();
    let (mut engine, report) = shardflow_engine::Engine::restore_with(
        &p,
        loaded.image.as_ref().unwrap(),
        shardflow_engine::RestoreOptions::allowing_dropped_state(),
    )
    .unwrap();
    assert_eq!(report.dropped(), ["deduplicate-0"]);
    let cp = engine.snapshot().unwrap();
    assert!(cp.full, "a restore that dropped state takes a full snapshot next");
    assert!(cp.operators.iter().all(|o| o.operator != "deduplicate-0"));
    store.commit(&cp, &seq(101)).await.unwrap();

    // The next load holds no state of the dropped operator: a strict restore succeeds and the
    // stale slot items were deleted after the flip.
    let loaded = DynamoDbCheckpointStore::new(client.clone(), &table, "counts", shard)
        .load()
        .await
        .unwrap();
    let image = loaded.image.unwrap();
    let ids: Vec<&str> = image.operator_metas().map(|(id, _)| id).collect();
    assert_eq!(ids, ["window_aggregate-0"]);
    let (_, report) =
        shardflow_engine::Engine::restore_with(&p, &image, shardflow_engine::RestoreOptions::strict()).unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(slot_items_of(&client, &table, "deduplicate-0").await, 0);
}

#[tokio::test]
async fn the_shuffle_state_commits_with_the_checkpoint_and_a_fenced_out_commit_does_not_change_it() {
    let (client, table) = client_and_table("shuffle-state").await;
    let shard = "shardId-000000000007";
    let mut store = DynamoDbCheckpointStore::new(client.clone(), &table, "counts", shard);
    assert_eq!(store.load().await.unwrap().shuffle_state, None);
    let mut e = pipeline(16).engine();
    let part = e.partition("s");
    e.process(part, 0, 0, (1, 1));
    store.set_shuffle_state(Some(b"marks v1".to_vec()));
    store.commit(&e.snapshot().unwrap(), &seq(1)).await.unwrap();
    let mut zombie = DynamoDbCheckpointStore::new(client.clone(), &table, "counts", shard);
    let loaded = zombie.load().await.unwrap();
    assert_eq!(loaded.shuffle_state.as_deref(), Some(&b"marks v1"[..]));
    assert_eq!(
        zombie.shuffle_state(),
        Some(&b"marks v1"[..]),
        "the store holds what it loaded"
    );
    // The first store commits again; the zombie, loaded before, loses the fence.
    store.set_shuffle_state(Some(b"marks v2".to_vec()));
    e.process(part, 1, 0, (2, 2));
    store.commit(&e.snapshot().unwrap(), &seq(2)).await.unwrap();
    zombie.set_shuffle_state(Some(b"stale".to_vec()));
    assert!(zombie.commit(&e.snapshot_full().unwrap(), &seq(3)).await.is_err());
    let loaded = DynamoDbCheckpointStore::new(client.clone(), &table, "counts", shard)
        .load()
        .await
        .unwrap();
    assert_eq!(loaded.shuffle_state.as_deref(), Some(&b"marks v2"[..]));
    assert_eq!(loaded.sequence_number, Some(seq(2)));
    // A commit that sets nothing new writes the same state again.
    e.process(part, 2, 0, (3, 3));
    store.commit(&e.snapshot().unwrap(), &seq(3)).await.unwrap();
    let loaded = DynamoDbCheckpointStore::new(client, &table, "counts", shard)
        .load()
        .await
        .unwrap();
    assert_eq!(loaded.shuffle_state.as_deref(), Some(&b"marks v2"[..]));
}

/// Holds a client's next `BatchGetItem` (the slot read of a load, after its read of the checkpoint
/// item) until released, so that a test can commit in between: the race of a cold load with
/// another container's commit, made deterministic.
#[derive(Clone, Default, Debug)]
struct SlotReadGate(Arc<(Mutex<GateState>, std::sync::Condvar)>);

#[derive(Default, Debug)]
struct GateState {
    armed: bool,
    held: bool,
    released: bool,
}

impl SlotReadGate {
    fn arm(&self) {
        *self.0 .0.lock().unwrap() = GateState {
            armed: true,
            ..GateState::default()
        };
    }

    /// Waits (polling, without blocking the runtime) until a slot read is held.
    async fn wait_held(&self) {
        for _ in 0..600 {
            if self.0 .0.lock().unwrap().held {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the load never read its slots");
    }

    fn release(&self) {
        self.0 .0.lock().unwrap().released = true;
        self.0 .1.notify_all();
    }
}

impl aws_sdk_dynamodb::config::Intercept for SlotReadGate {
    fn name(&self) -> &'static str {
        "slot-read-gate"
    }

    fn read_before_execution(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemInput;
        if context.input().downcast_ref::<BatchGetItemInput>().is_none() {
            return Ok(());
        }
        // Blocking in place hands this worker's other tasks (the committing test) to another.
        tokio::task::block_in_place(|| {
            let (state, released) = &*self.0;
            let mut state = state.lock().unwrap();
            if !state.armed {
                return;
            }
            state.armed = false;
            state.held = true;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !state.released {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                assert!(!left.is_zero(), "the gate was never released");
                state = released.wait_timeout(state, left).unwrap().0;
            }
        });
        Ok(())
    }
}

/// A store of `shard` on a client whose slot reads pass `gate`.
fn gated_store(client: &Client, table: &str, shard: &str, gate: &SlotReadGate) -> DynamoDbCheckpointStore {
    let gated = Client::from_conf(client.config().to_builder().interceptor(gate.clone()).build());
    DynamoDbCheckpointStore::new(gated, table, "counts", shard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_whose_slots_a_concurrent_commit_deletes_is_a_conflict_and_loading_again_reads_the_new_checkpoint() {
    let (client, table) = client_and_table("load-race").await;
    let p = pipeline(16);
    let shard = "shardId-000000000009";
    // Version 1: state in most key groups.
    let mut writer = DynamoDbCheckpointStore::new(client.clone(), &table, "counts", shard);
    writer.load().await.unwrap();
    let mut engine = p.engine();
    let part = engine.partition("s");
    let input = events(40, 400);
    for (i, ev) in input[..200].iter().enumerate() {
        engine.process(part, i as u64, 0, *ev);
    }
    writer.commit(&engine.snapshot().unwrap(), &seq(200)).await.unwrap();

    // A cold load reads the checkpoint item (version 1) and is held before its slot reads ...
    let gate = SlotReadGate::default();
    let mut cold = gated_store(&client, &table, shard, &gate);
    gate.arm();
    let load = tokio::spawn(async move { (cold.load().await, cold) });
    gate.wait_held().await;
    // ... while another container commits version 2 over every key, deleting version 1's slots.
    for (i, ev) in input[200..].iter().enumerate() {
        engine.process(part, (200 + i) as u64, 0, *ev);
    }
    engine.drain_output();
    let stats = writer.commit(&engine.snapshot().unwrap(), &seq(400)).await.unwrap();
    engine.finish();
    let rest = values(engine.drain_output());
    assert!(stats.items_deleted > 0, "version 1's slots are deleted: {stats:?}");
    gate.release();
    let (loaded, mut cold) = load.await.unwrap();
    match loaded {
        Err(StoreError::Conflict { expected: 1, .. }) => {}
        other => panic!("expected a conflict on version 1, got {:?}", other.map(|l| l.version)),
    }

    // Loading again reads version 2 whole, and its commit is fenced on version 2.
    let again = cold.load().await.unwrap();
    assert_eq!(again.version, 2);
    assert_eq!(again.sequence_number, Some(seq(400)));
    let mut restored = shardflow_engine::Engine::restore(&p, again.image.as_ref().unwrap()).unwrap();
    restored.finish();
    assert_eq!(values(restored.drain_output()), rest);
    assert!(!rest.is_empty());
}

#[tokio::test]
async fn a_live_slot_missing_without_a_newer_commit_is_still_reported_as_corrupt() {
    let (client, table) = client_and_table("load-corrupt").await;
    let p = pipeline(16);
    let shard = "shardId-000000000010";
    let mut writer = DynamoDbCheckpointStore::new(client.clone(), &table, "counts", shard);
    writer.load().await.unwrap();
    let mut engine = p.engine();
    let part = engine.partition("s");
    for (i, ev) in events(40, 200).iter().enumerate() {
        engine.process(part, i as u64, 0, *ev);
    }
    writer.commit(&engine.snapshot().unwrap(), &seq(200)).await.unwrap();
    // Delete one live slot item by hand: the checkpoint still names it.
    let items = client
        .scan()
        .table_name(&table)
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    let slot = items
        .items()
        .iter()
        .find(|i| {
            i.get("pk")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|pk| pk.contains("#kg#"))
        })
        .expect("a slot item")
        .clone();
    client
        .delete_item()
        .table_name(&table)
        .key("pk", slot["pk"].clone())
        .key("sk", slot["sk"].clone())
        .send()
        .await
        .unwrap();
    let mut reader = DynamoDbCheckpointStore::new(client.clone(), &table, "counts", shard);
    match reader.load().await {
        Err(StoreError::Corrupt { reason, .. }) => assert!(reason.contains("live slots missing"), "{reason}"),
        other => panic!("expected corruption, got {:?}", other.map(|l| l.version)),
    }
}
