//! Revenue and order-enrich over the shuffle, deployed: `infra/template.yaml` on LocalStack with a
//! 4-shard CDC stream and a 4-shard shuffle stream for each, the real `revenue-keyby`,
//! `revenue-shuffled`, `order-enrich-keyby` and `order-enrich-shuffled` binaries (the ticks from
//! the template's EventBridge schedules), 10,000 generated changes, and the revenue table in
//! Postgres and the enriched-orders stream compared with the embedded runner's results on the same
//! changes:
//!
//! - every (product, currency, minute) holds the embedded runner's final totals (on-time panes and
//!   the late panes of the generator's late changes), and its window is closed (`on_time` or
//!   `late`, never an `early` pane left standing); some windows end in a late pane;
//! - the enriched orders streamed are the embedded runner's, each once, except those of the
//!   sessions a change behind the one-shard watermark may fall into (order-enrich allows no
//!   lateness, so whether such a change joins its session or is late depends on how the CDC
//!   shards interleave, see [`interleaving_dependent`]); most orders are compared;
//! - one shard of revenue's shuffle stream is split while the changes flow (its children adopt its key
//!   groups and its dedup and watermark state, and records go on to them);
//! - one CDC shard falls silent for the last half of the input; the windows after its last change
//!   still close, through the downstream's idleness rule (`ShuffleIdlenessMs`) once the tick's
//!   heartbeats invoke it with nothing else to read.
//!
//! Every CDC shard is registered downstream before the input flows (a first change per shard, at
//! an event time before the input's): a shard first heard of late would join a watermark the
//! others already moved, as it would in one engine fed the shards in that order — the input is
//! chosen so that the final totals do not depend on how the shards interleave (no change later
//! than the allowed lateness, see [`generate_within_lateness`]).
//!
//! The other stages of the template are paused (this test is about the shuffles). It takes about
//! 3–5 minutes on LocalStack: the put (the emulator stores ~200–800 records/s), the stages, then
//! the idleness timeout plus up to a minute for the next tick.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use shardflow_connectors::KinesisEnvelope;
use shardflow_e2e::shop::*;
use shardflow_e2e::{deploy, require_function_zips, StackGuard};
use shardflow_gen::shop::{encode, ShopFormat};
use shardflow_lambda::hash_key;
use shardflow_lifecycle::EventSourceBarrier;
use shardflow_schemas::ChangeEvent;
use shardflow_shop::pipelines::EnrichedOrder;

/// Changes put (at least 10,000, issue 13).
const CHANGES: u64 = 10_000;
/// The downstream's idleness timeout: longer than the stages' lag behind each other on the
/// emulator, short enough for CI.
const IDLENESS_MS: &str = "45000";
/// How long the revenue may take to be complete and closed after the last put: the stages'
/// catching up, the idleness timeout, a tick (every minute) and a batch.
const SETTLE: Duration = Duration::from_secs(360);

/// `records` with each partition key that lands in `[low, high]` replaced by the first
/// `{key}#{n}` that does not: the same key always maps to the same new key, so a row's changes
/// stay in one shard, in order.
fn avoiding(records: Vec<(String, Vec<u8>)>, low: u128, high: u128) -> Vec<(String, Vec<u8>)> {
    records
        .into_iter()
        .map(|(key, data)| {
            if !(low..=high).contains(&hash_key(&key)) {
                return (key, data);
            }
            let moved = (0..)
                .map(|n| format!("{key}#{n}"))
                .find(|k| !(low..=high).contains(&hash_key(k)))
                .expect("a key outside the range");
            (moved, data)
        })
        .collect()
}

fn encoded(events: &[ChangeEvent]) -> Vec<(String, Vec<u8>)> {
    events
        .iter()
        .map(|e| encode(e, ShopFormat::Protobuf).expect("encode a change"))
        .collect()
}

async fn wait_active(stream: &str) {
    let kinesis = shardflow_testkit::kinesis();
    eventually(&format!("{stream} active"), Instant::now(), || async {
        let status = kinesis
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .stream_description_summary()
            .map(|d| d.stream_status().clone());
        match status {
            Some(aws_sdk_kinesis::types::StreamStatus::Active) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revenue_and_enriched_orders_over_shuffles_with_a_silent_cdc_shard_equal_the_embedded_runner() {
    require_function_zips(&FUNCTIONS);
    let events = generate_within_lateness(CHANGES);
    let expected = embedded(&events).await;
    assert_eq!(
        expected.late.get("revenue").copied(),
        Some(0),
        "no change is later than the allowed lateness"
    );
    assert!(
        expected.revenue_panes.values().any(|p| p == "late"),
        "the input has late changes that update closed windows"
    );

    let stack = shardflow_testkit::unique_name("shuffle");
    let revenue_table = stack.replace('-', "_");
    let outputs = deploy(
        &stack,
        "infra/template.yaml",
        &[
            ("Architecture", "x86_64"),
            ("DatabaseUrl", &shardflow_testkit::postgres_url()),
            ("RevenueTable", &revenue_table),
            ("FunctionTimeout", "30"),
            ("ChangesShardCount", "4"),
            ("RevenueShuffleShardCount", "4"),
            ("ShuffleIdlenessMs", IDLENESS_MS),
        ],
    );
    let _guard = StackGuard(stack.clone());
    let output = |k: &str| outputs.get(k).cloned().unwrap_or_else(|| panic!("stack output {k}"));
    let (changes, shuffle, state) = (
        output("ChangesStreamName"),
        output("RevenueShuffleStreamName"),
        output("StateTableName"),
    );
    for function in ["ReceiptsFunctionName", "ArchiveFunctionName"] {
        EventSourceBarrier::new(shardflow_testkit::lambda(), &output(function))
            .pause()
            .await
            .expect("pause a stage this test does not look at");
    }
    let cdc = open_shards(&changes).await;
    assert_eq!(cdc.len(), 4, "the CDC stream has four shards");
    for stream in [&shuffle, &output("EnrichShuffleStreamName")] {
        assert_eq!(open_shards(stream).await.len(), 4, "{stream} has four shards");
    }

    // every CDC shard registered downstream first: one change each, before the input in event time
    let started = Instant::now();
    register_every_shard(&changes, &state, &events, &UPSTREAM_STAGES).await;

    // the first half on every CDC shard, with a split of a shuffle shard in its middle
    let half = events.len() / 2;
    let quarter = half / 2;
    put_records_in_order(&changes, encoded(&events[..quarter])).await;
    let (parent, low, high) = open_shards(&shuffle).await[0].clone();
    shardflow_testkit::kinesis()
        .split_shard()
        .stream_name(&shuffle)
        .shard_to_split(&parent)
        .new_starting_hash_key((low + (high - low) / 2 + 1).to_string())
        .send()
        .await
        .expect("split a shuffle shard");
    wait_active(&shuffle).await;
    put_records_in_order(&changes, encoded(&events[quarter..half])).await;

    // the second half avoids the last CDC shard, which stays silent for the rest of the run; then
    // a watermark mover on every other shard
    let (silent, silent_low, silent_high) = cdc[3].clone();
    put_records_in_order(&changes, avoiding(encoded(&events[half..]), silent_low, silent_high)).await;
    let mover = encode(&watermark_mover(&events), ShopFormat::Protobuf)
        .expect("encode")
        .1;
    let movers: Vec<(String, Vec<u8>)> = cdc[..3]
        .iter()
        .map(|(_, low, high)| (key_in("watermark-", *low, *high), mover.clone()))
        .collect();
    put_records_in_order(&changes, movers).await;
    let put_done = started.elapsed();

    // the stream as stored: the silent shard holds only the first half's changes
    let total = events.len() + 2 * cdc.len() - 1;
    let stored = shardflow_testkit::read_stream(&shardflow_testkit::kinesis(), &changes, total, DEADLINE).await;
    assert_eq!(stored.len(), total, "the CDC stream holds every change put");
    let late_half: BTreeSet<Vec<u8>> = encoded(&events[half..]).into_iter().map(|(_, d)| d).collect();
    let on_silent: Vec<&shardflow_testkit::ReadRecord> = stored.iter().filter(|r| r.shard_id == silent).collect();
    assert!(
        on_silent.len() > 1,
        "the silent shard had changes before it fell silent"
    );
    assert!(
        on_silent.iter().all(|r| !late_half.contains(&r.data)),
        "no change of the second half is in the silent shard"
    );

    // the revenue: the embedded runner's totals, every window closed
    let settle = Instant::now();
    loop {
        let (rows, panes) = (revenue_rows(&revenue_table).await, revenue_panes(&revenue_table).await);
        let open: Vec<_> = panes.iter().filter(|(_, p)| p.as_str() == "early").collect();
        if rows == expected.revenue && open.is_empty() {
            assert!(
                panes.values().any(|p| p == "late"),
                "late changes reach Postgres in late panes"
            );
            break;
        }
        if settle.elapsed() > SETTLE {
            let missing: Vec<_> = expected
                .revenue
                .keys()
                .filter(|k| !rows.contains_key(*k))
                .take(5)
                .collect();
            let differing: Vec<_> = expected
                .revenue
                .iter()
                .filter(|(k, v)| rows.get(*k).is_some_and(|got| got != *v))
                .take(5)
                .collect();
            panic!(
                "the revenue did not become the embedded runner's within {SETTLE:?} of the last put: \
                 {} of {} windows, {} still early (e.g. {:?}), missing e.g. {missing:?}, differing e.g. {differing:?}",
                rows.len(),
                expected.revenue.len(),
                open.len(),
                open.first()
            );
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let settled = settle.elapsed();

    // the enriched orders: the embedded runner's, but for the sessions a row behind the one-shard
    // watermark may have changed
    let dependent = interleaving_dependent(&events);
    let stable = |orders: Vec<(String, EnrichedOrder)>| -> BTreeMap<String, EnrichedOrder> {
        by_id(
            orders
                .into_iter()
                .filter(|(_, o)| !depends_on_interleaving(o, &dependent)),
        )
    };
    let want_enriched = stable(
        expected
            .enriched
            .iter()
            .map(|l| (l.id.clone(), l.value.clone()))
            .collect(),
    );
    assert!(
        want_enriched.len() * 2 > expected.enriched.len(),
        "most enriched orders are compared: {} of {} ({} customers with rows behind the watermark)",
        want_enriched.len(),
        expected.enriched.len(),
        dependent.len()
    );
    let enriched_stream = output("EnrichedOrdersStreamName");
    let streamed = eventually("the enriched orders streamed", Instant::now(), || async {
        let read = shardflow_testkit::read_stream(&shardflow_testkit::kinesis(), &enriched_stream, 0, DEADLINE).await;
        let envelopes: Vec<KinesisEnvelope<EnrichedOrder>> = read
            .iter()
            .map(|r| serde_json::from_slice(&r.data).expect("an enriched order envelope"))
            .collect();
        let got = stable(envelopes.iter().map(|e| (e.id.clone(), e.value.clone())).collect());
        if want_enriched.keys().all(|id| got.contains_key(id)) {
            Ok(envelopes)
        } else {
            Err(format!(
                "{} of {} comparable enriched orders streamed",
                got.len(),
                want_enriched.len()
            ))
        }
    })
    .await;
    let ids: BTreeSet<&str> = streamed.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), streamed.len(), "no enriched order is streamed twice");
    assert_eq!(
        stable(streamed.into_iter().map(|e| (e.id, e.value)).collect()),
        want_enriched,
        "the enriched orders are the embedded runner's"
    );

    // the split's children took over the parent's key groups downstream
    let children: BTreeSet<String> = open_shards(&shuffle)
        .await
        .into_iter()
        .map(|(id, _, _)| id)
        .filter(|id| id.as_str() > "shardId-000000000003")
        .collect();
    assert_eq!(children.len(), 2, "the split has two children");
    let committed: BTreeSet<String> =
        shardflow_lifecycle::stage_checkpoints(&shardflow_testkit::dynamodb(), &state, "revenue-shuffled")
            .await
            .expect("revenue-shuffled's checkpoints")
            .into_iter()
            .map(|c| c.shard)
            .collect();
    for shard in children.iter().chain([&parent]) {
        assert!(
            committed.contains(shard),
            "revenue-shuffled committed {shard}: {committed:?}"
        );
    }
    eprintln!(
        "shuffle: {} changes put in {:.0} s, revenue complete and closed {:.0} s later ({} windows); \
         {} of {} enriched orders compared",
        stored.len(),
        put_done.as_secs_f64(),
        settled.as_secs_f64(),
        expected.revenue.len(),
        want_enriched.len(),
        expected.enriched.len()
    );

    let _ = shardflow_testkit::postgres()
        .await
        .batch_execute(&format!("DROP TABLE IF EXISTS {revenue_table}"))
        .await;
}
