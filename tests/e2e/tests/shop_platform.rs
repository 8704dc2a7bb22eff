//! The seed platform end to end: `infra/template.yaml` deployed to LocalStack with the real
//! stage binaries (receipts, revenue-keyby → shuffle stream → revenue-shuffled,
//! order-enrich-keyby → shuffle stream → order-enrich-shuffled, archive), a generated shop CDC
//! stream put in order into its two-shard Kinesis stream (`shuffle.rs` runs four), and every
//! output checked against what the embedded runner computes on the same input — one code path,
//! two runtimes. The input has no late change (see [`generate_on_time`]): with more than one CDC
//! shard, whether a change behind the watermark is late depends on how the shards interleave, so
//! late input comes last, after every shard's watermark passed the input:
//!
//! - receipts: the SQS queue subscribed to the topic holds exactly the embedded runner's receipts
//!   (same ids, same values, none twice);
//! - revenue: the Postgres table holds one row per (product, currency, window) with the embedded
//!   runner's final revenue and order count, computed over the shuffle;
//! - order-enrich: the S3 objects and the output stream hold the embedded runner's enriched orders,
//!   computed over the shuffle;
//! - archive: the archive in S3 reads back as exactly the records put, each shard's in order;
//! - bad input: a malformed record lands in the dead-letter queue once per decoding stage, with the
//!   reason and its bytes, and everything after it flows;
//! - replay: the archive run as a bounded stream through the same code gives the live results:
//!   locally for receipts (each archived shard in its own engine, exact for a pipeline keyed by
//!   the partition key), and fanned out as invocations of a second deployment's `revenue-keyby`
//!   function (whose `revenue-shuffled` reads its own shuffle stream);
//! - a redelivered batch (the same records invoked again, as Lambda does after a timeout) changes
//!   no output;
//! - late input: changes put again once every shard's watermark passed the input are
//!   dead-lettered as `late` by each stage that keeps them, as many as the embedded runner's late
//!   side output counts (revenue's by `revenue-shuffled` and order-enrich's by
//!   `order-enrich-shuffled`, with the shuffled record that carried the late value).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use prost::Message as _;
use shardflow_archive::ArchiveReader;
use shardflow_connectors::ResultMessage;
use shardflow_e2e::shop::*;
use shardflow_e2e::{deploy, invoke, require_function_zips, StackGuard};
use shardflow_gen::shop::{encode, ShopFormat};
use shardflow_lifecycle::{
    invoke_replay, replay, shard_batches, EventSourceBarrier, InvokeReplayOptions, MappingState,
};
use shardflow_schemas::{ChangeEvent, Entity, Op, OrderStatus};
use shardflow_shop::pipelines::{receipts, EnrichedOrder, Receipt, ENRICHED_ORDERS_BUCKET_MS};

use shardflow_shop_stages::ShopDecoder;
use shardflow_stage::{DeadLetter, DeadLetterKind};

/// CDC shards: more than one, so that the stages keyed by other columns than the stream's
/// partition key (revenue, order-enrich) are exact only through their shuffles.
const CDC_SHARDS: usize = 2;

/// Changes of `events` that, put again after every shard's watermark passed the input, are late
/// in every pipeline that keeps them: the first inserted order line (revenue) and the first
/// completion of an order (receipts, order-enrich).
fn stragglers(events: &[ChangeEvent]) -> Vec<ChangeEvent> {
    let line = events
        .iter()
        .find(|e| e.op() == Op::Create && matches!(e.after_entity(), Some(Entity::OrderLine(_))));
    let completion = events
        .iter()
        .find(|e| matches!(e.after_entity(), Some(Entity::Order(o)) if o.status() == OrderStatus::Completed));
    [line, completion].into_iter().flatten().cloned().collect()
}

/// Late dead letters by pipeline (`revenue-shuffled` and `revenue` count for `revenue`).
fn late_by_pipeline(letters: &[DeadLetter]) -> HashMap<String, u64> {
    let mut late: HashMap<String, u64> = HashMap::new();
    for l in letters.iter().filter(|l| l.kind == DeadLetterKind::Late) {
        let pipeline = l.stage.trim_end_matches("-shuffled").replace('-', "_");
        *late.entry(pipeline).or_default() += 1;
    }
    late
}

/// The event-time minute (S3 bucket of enriched orders) of `ts`.
fn minute_of(ts: i64) -> i64 {
    ts.div_euclid(ENRICHED_ORDERS_BUCKET_MS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_stages_on_localstack_match_the_embedded_runner() {
    require_function_zips(&FUNCTIONS);
    let events = generate_on_time(
        std::env::var("SHARDFLOW_E2E_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(EVENTS),
    );
    // deploy the template as it is, with a table of this run's own
    let stack = shardflow_testkit::unique_name("shop");
    let revenue_table = stack.replace('-', "_");
    let database_url = shardflow_testkit::postgres_url();
    let outputs = deploy(
        &stack,
        "infra/template.yaml",
        &[
            ("Architecture", "x86_64"),
            ("DatabaseUrl", &database_url),
            ("RevenueTable", &revenue_table),
            ("FunctionTimeout", "30"),
            ("ChangesShardCount", &CDC_SHARDS.to_string()),
        ],
    );
    let _guard = StackGuard(stack.clone());
    let output = |k: &str| outputs.get(k).cloned().unwrap_or_else(|| panic!("stack output {k}"));
    let (changes, changes_arn) = (output("ChangesStreamName"), output("ChangesStreamArn"));
    let receipts_queue = subscribe_queue(&output("ReceiptsTopicArn")).await;

    // the input: the generated changes with a malformed record a third of the way in, put in
    // order (one call at a time: each shard holds its changes in the generated order), then (once
    // they are stored) the watermark mover on every shard
    let mut records: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| encode(e, ShopFormat::Protobuf).expect("encode a change"))
        .collect();
    records.insert(records.len() / 3, ("malformed".to_owned(), MALFORMED.to_vec()));
    let movers = movers_for_every_shard(&changes, &events).await;
    assert_eq!(movers.len(), CDC_SHARDS, "a mover for every CDC shard");
    let started = Instant::now();
    let mut put = register_every_shard(&changes, &output("StateTableName"), &events, &UPSTREAM_STAGES).await;
    put.extend(records.iter().map(|(_, d)| d.clone()));
    put.extend(movers.iter().map(|(_, d)| d.clone()));
    put_records_in_order(&changes, records).await;
    put_records_in_order(&changes, movers).await;

    // what the embedded runner computes on the same input: the changes in the generated order,
    // which each shard keeps (one mover: the others repeat it)
    let stored_records =
        shardflow_testkit::read_stream(&shardflow_testkit::kinesis(), &changes, put.len(), DEADLINE).await;
    let stored: Vec<Vec<u8>> = stored_records.iter().map(|r| r.data.clone()).collect();
    assert_eq!(sorted(&stored), sorted(&put), "the stream holds the records put");
    let shards: BTreeSet<&str> = stored_records.iter().map(|r| r.shard_id.as_str()).collect();
    assert_eq!(shards.len(), CDC_SHARDS, "every CDC shard holds changes");
    let decoded = stored
        .iter()
        .filter(|d| ChangeEvent::decode(d.as_slice()).is_ok())
        .count();
    assert_eq!(decoded, put.len() - 1, "every record but the malformed one decodes");
    let first = events.iter().map(ChangeEvent::event_time).min().unwrap_or(0);
    let mut in_order = vec![customer_touch(&events, first - 60_000)];
    in_order.extend(events.iter().cloned());
    in_order.push(watermark_mover(&events));
    let expected = embedded(&in_order).await;
    assert!(
        !expected.receipts.is_empty() && !expected.revenue.is_empty() && !expected.enriched.is_empty(),
        "the input yields results in every pipeline (receipts {}, revenue {}, enriched {})",
        expected.receipts.len(),
        expected.revenue.len(),
        expected.enriched.len()
    );

    // archive: every record, once, each shard's in the shard's order
    let archive = ArchiveReader::new(shardflow_testkit::s3(), output("ArchiveBucketName"), "archive");
    let archived = eventually("the archive of every record", started, || async {
        let (records, repeated) = archive
            .read_stream(Some(&changes), None)
            .await
            .map_err(|e| e.to_string())?;
        if records.len() >= stored.len() {
            Ok((records, repeated))
        } else {
            Err(format!("{} of {} records archived", records.len(), stored.len()))
        }
    })
    .await;
    assert_eq!(archived.1, 0, "no record is archived twice");
    assert_eq!(
        archived.0.len(),
        stored.len(),
        "the archive holds as many records as the stream"
    );
    let mut archived_by_shard: BTreeMap<&str, Vec<&[u8]>> = BTreeMap::new();
    for r in &archived.0 {
        archived_by_shard.entry(&r.shard_id).or_default().push(&r.data);
    }
    let mut stored_by_shard: BTreeMap<&str, Vec<&[u8]>> = BTreeMap::new();
    for r in &stored_records {
        stored_by_shard.entry(&r.shard_id).or_default().push(&r.data);
    }
    assert!(
        archived_by_shard == stored_by_shard,
        "the archive holds each shard's records in the shard's order"
    );

    // receipts: the embedded runner's, each once
    let sqs = shardflow_testkit::sqs();
    let got = drain_until(&sqs, &receipts_queue, expected.receipts.len(), "every receipt", started).await;
    let receipts_got: Vec<ResultMessage<Receipt>> = got
        .iter()
        .map(|b| serde_json::from_str(b).unwrap_or_else(|e| panic!("a receipt message: {e}: {b}")))
        .collect();
    let ids: BTreeSet<&str> = receipts_got.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), receipts_got.len(), "no receipt is published twice");
    assert_eq!(
        by_id(receipts_got.iter().map(|r| (r.id.clone(), r.value.clone()))),
        by_id(expected.receipts.iter().map(|l| (l.id.clone(), l.value.clone()))),
        "the receipts are the embedded runner's"
    );

    // revenue: one row per window with the embedded runner's totals
    let rows = eventually("the revenue rows", started, || async {
        let rows = revenue_rows(&revenue_table).await;
        if rows == expected.revenue {
            Ok(rows)
        } else {
            Err(format!(
                "{} of {} windows, or other totals",
                rows.len(),
                expected.revenue.len()
            ))
        }
    })
    .await;
    assert_eq!(rows, expected.revenue);

    // order-enrich: the output stream holds the embedded runner's enriched orders, and S3 those
    // of every minute the watermark passed (one object per minute: a result is emitted when the
    // watermark passes its event time, so every minute before the last result's is closed).
    let want_enriched = by_id(expected.enriched.iter().map(|l| (l.id.clone(), l.value.clone())));
    let last_minute = expected
        .enriched
        .iter()
        .map(|l| minute_of(l.ts))
        .max()
        .unwrap_or(i64::MIN);
    let want_in_s3 = by_id(
        expected
            .enriched
            .iter()
            .filter(|l| minute_of(l.ts) < last_minute)
            .map(|l| (l.id.clone(), l.value.clone())),
    );
    let bucket = output("OutputBucketName");
    let in_s3 = eventually("the enriched orders in S3", started, || async {
        let lines: Vec<ResultMessage<EnrichedOrder>> = s3_results(&bucket, "enriched-orders/").await;
        let closed = lines.iter().filter(|m| want_in_s3.contains_key(&m.id)).count();
        if closed >= want_in_s3.len() {
            Ok(lines)
        } else {
            Err(format!(
                "{closed} of {} enriched orders of closed minutes",
                want_in_s3.len()
            ))
        }
    })
    .await;
    let ids: BTreeSet<&str> = in_s3.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len(), in_s3.len(), "no enriched order in two objects");
    let in_s3 = by_id(in_s3.into_iter().map(|m| (m.id, m.value)));
    for (id, value) in &in_s3 {
        assert_eq!(want_enriched.get(id), Some(value), "{id} is an expected enriched order");
    }
    assert_enriched_streamed_once(
        &output("EnrichedOrdersStreamName"),
        &want_enriched,
        "the enriched orders streamed",
    )
    .await;

    // bad input: the malformed record once per decoding stage, late records as the embedded runner counts them
    let dlq = output("DeadLetterQueueUrl");
    // revenue's late lines are judged after the shuffle: revenue-shuffled dead-letters each with
    // the shuffled record that carried it
    let want_late: u64 = expected.late.values().sum();
    let letters = drain_until(&sqs, &dlq, 3 + want_late as usize, "the dead letters", started).await;
    let letters: Vec<DeadLetter> = letters
        .iter()
        .map(|b| serde_json::from_str(b).unwrap_or_else(|e| panic!("a dead letter: {e}: {b}")))
        .collect();
    let undecodable: Vec<&DeadLetter> = letters
        .iter()
        .filter(|l| l.kind == DeadLetterKind::Undecodable)
        .collect();
    let stages: BTreeSet<&str> = undecodable.iter().map(|l| l.stage.as_str()).collect();
    assert_eq!(
        stages,
        BTreeSet::from(["order-enrich-keyby", "receipts", "revenue-keyby"])
    );
    for letter in &undecodable {
        assert_eq!(
            letter.data().as_deref(),
            Some(MALFORMED),
            "the dead letter keeps the bytes"
        );
        assert!(
            letter.reason.contains("protobuf"),
            "the reason says why: {}",
            letter.reason
        );
    }
    let late_by_stage = late_by_pipeline(&letters);
    let late_letters: Vec<String> = letters
        .iter()
        .filter(|l| l.kind == DeadLetterKind::Late)
        .map(|l| format!("{}: {}", l.stage, l.reason))
        .collect();
    for (pipeline, late) in &expected.late {
        assert_eq!(
            late_by_stage.get(pipeline).copied().unwrap_or(0),
            *late,
            "late records of {pipeline} are dead-lettered as the embedded runner counts them: {late_letters:#?}"
        );
    }

    // the archive replayed as a bounded stream through the same code gives the live results
    let (archived_records, _) = archive
        .read_stream(Some(&changes), None)
        .await
        .expect("read the archive");
    let replayed =
        replay(&receipts(), &ShopDecoder::new(), "receipts", &archived_records, 500).expect("replay receipts");
    assert_eq!(
        by_id(replayed.outputs.iter().map(|o| (o.id.to_hex(), o.value.clone()))),
        by_id(receipts_got.iter().map(|r| (r.id.clone(), r.value.clone()))),
        "the replayed receipts are the live ones"
    );
    let undecodable = replayed
        .dead_letters
        .iter()
        .filter(|l| l.kind == DeadLetterKind::Undecodable)
        .count();
    assert_eq!(undecodable, 1, "the replay dead-letters the malformed record");
    // (revenue and order-enrich key by other columns than the partition key: a local replay, one
    // engine per archived shard, is exact for them on a one-shard stream only; revenue is replayed
    // through its deployed stages below)

    // the archive replayed as Lambda invocations of the revenue-keyby function of a deployment
    // that consumes no CDC stream (its own shuffle stream, whose revenue-shuffled mapping alone is
    // enabled, and its own revenue table): the live revenue again. The archive ends with the
    // watermark mover, which closes every window as it did live.
    // short: "{stack}-revenue-shuffled" must stay within Lambda's 64 characters
    let backfill = format!("{stack}-bf");
    let backfill_table = backfill.replace('-', "_");
    deploy(
        &backfill,
        "infra/template.yaml",
        &[
            ("Architecture", "x86_64"),
            ("DatabaseUrl", &database_url),
            ("RevenueTable", &backfill_table),
            ("FunctionTimeout", "30"),
            ("EventSourceMappingsEnabled", "false"),
        ],
    );
    let backfill_guard = StackGuard(backfill.clone());
    let shuffled = EventSourceBarrier::new(shardflow_testkit::lambda(), &format!("{backfill}-revenue-shuffled"));
    let mappings: Vec<MappingState> = shuffled
        .kinesis_mappings()
        .await
        .expect("the backfill's revenue-shuffled mapping")
        .into_iter()
        .map(|m| MappingState { was_enabled: true, ..m })
        .collect();
    shuffled.resume(&mappings).await.expect("enable revenue-shuffled");
    let mut options = InvokeReplayOptions::new(&format!("{backfill}-revenue-keyby"), &changes_arn, "us-east-1");
    options.batch_size = 400;
    let shards = shard_batches(&archived_records).expect("archived shards");
    let taken = std::sync::atomic::AtomicUsize::new(0);
    let progress = |n: usize| {
        taken.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    };
    let report = invoke_replay(&shardflow_testkit::lambda(), shards, &options, &progress)
        .await
        .expect("replay into the backfill's revenue-keyby function");
    assert_eq!(report.records, archived_records.len());
    assert_eq!(
        taken.into_inner(),
        archived_records.len(),
        "progress hears of every record"
    );
    assert!(
        report.invocations > archived_records.len() / 400,
        "one invocation per batch: {report:?}"
    );
    eventually("the revenue replayed through Lambda", Instant::now(), || async {
        let replayed = revenue_rows(&backfill_table).await;
        if replayed == rows {
            Ok(())
        } else {
            Err(format!("{} of {} windows, or other totals", replayed.len(), rows.len()))
        }
    })
    .await;
    drop(backfill_guard);

    // a redelivered batch changes nothing: the CDC stream's to the stages reading it, the
    // shuffle stream's to revenue-shuffled
    let (shard, first) = first_records(&changes, 100).await;
    let event = kinesis_event(&changes_arn, &shard, &first);
    let mut shuffled_events = HashMap::new();
    for (function, shuffle) in SHUFFLED_FUNCTIONS {
        let (shuffle_shard, shuffled_first) = first_records(&output(&format!("{shuffle}Name")), 100).await;
        assert!(!shuffled_first.is_empty(), "the first shard of {shuffle} holds records");
        let arn = output(&format!("{shuffle}Arn"));
        shuffled_events.insert(function, kinesis_event(&arn, &shuffle_shard, &shuffled_first));
    }
    for f in FUNCTIONS {
        let event = shuffled_events.get(f).unwrap_or(&event);
        let response = invoke(&format!("{stack}-{f}"), event);
        assert_eq!(
            response,
            serde_json::json!({ "batchItemFailures": [] }),
            "{f} answers a redelivered batch with no failures"
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut again = Vec::new();
    drain_queue(&sqs, &receipts_queue, &mut again).await;
    assert!(again.is_empty(), "a redelivered batch publishes no receipt: {again:?}");
    drain_queue(&sqs, &dlq, &mut again).await;
    assert!(again.is_empty(), "a redelivered batch dead-letters nothing: {again:?}");
    assert_eq!(revenue_rows(&revenue_table).await, expected.revenue);
    let (rearchived, repeated) = archive
        .read_stream(Some(&changes), None)
        .await
        .expect("read the archive");
    assert_eq!(
        (rearchived.len(), repeated),
        (stored.len(), 0),
        "the archive is unchanged"
    );

    // late input: changes put again now, when every shard's watermark (every stage's, every
    // upstream shard's of a shuffle) is past the input, whatever shard they land in; each stage
    // that keeps them dead-letters them as late, as the embedded runner counts them, and no
    // output changes
    let stragglers = stragglers(&events);
    assert_eq!(stragglers.len(), 2, "an order line and a completion to put again");
    let mut with_stragglers = in_order.clone();
    with_stragglers.extend(stragglers.iter().cloned());
    let late_after = embedded(&with_stragglers).await.late;
    let want_late: HashMap<String, u64> = late_after
        .iter()
        .map(|(pipeline, late)| {
            (
                pipeline.clone(),
                late - expected.late.get(pipeline).copied().unwrap_or(0),
            )
        })
        .filter(|(_, late)| *late > 0)
        .collect();
    assert_eq!(
        want_late.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from(["order_enrich", "receipts", "revenue"]),
        "the put-again changes are late in every pipeline: {want_late:?}"
    );
    let records: Vec<(String, Vec<u8>)> = stragglers
        .iter()
        .map(|e| encode(e, ShopFormat::Protobuf).expect("encode a change"))
        .collect();
    put_records_in_order(&changes, records).await;
    let want_letters = want_late.values().sum::<u64>() as usize;
    let letters = drain_until(&sqs, &dlq, want_letters, "the late dead letters", Instant::now()).await;
    let letters: Vec<DeadLetter> = letters
        .iter()
        .map(|b| serde_json::from_str(b).unwrap_or_else(|e| panic!("a dead letter: {e}: {b}")))
        .collect();
    assert_eq!(
        late_by_pipeline(&letters),
        want_late,
        "the put-again changes are dead-lettered as late, once per stage that keeps them"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    drain_queue(&sqs, &receipts_queue, &mut again).await;
    assert!(again.is_empty(), "a late completion publishes no receipt: {again:?}");
    assert_eq!(revenue_rows(&revenue_table).await, expected.revenue);

    let _ = shardflow_testkit::postgres()
        .await
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {revenue_table}; DROP TABLE IF EXISTS {backfill_table}"
        ))
        .await;
}
