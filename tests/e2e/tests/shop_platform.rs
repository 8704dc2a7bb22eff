//! The seed platform end to end: `infra/template.yaml` deployed to LocalStack with the real
//! stage binaries (receipts, revenue-keyby → shuffle stream → revenue-shuffled, order-enrich,
//! archive), a generated shop CDC stream put into its Kinesis stream (one shard: order-enrich is
//! exact on one only; `shuffle.rs` runs revenue on four), and every output checked against what
//! the embedded runner computes on the same input — one code path, two runtimes:
//!
//! - receipts: the SQS queue subscribed to the topic holds exactly the embedded runner's receipts
//!   (same ids, same values, none twice);
//! - revenue: the Postgres table holds one row per (product, currency, window) with the embedded
//!   runner's final revenue and order count, computed over the shuffle;
//! - order-enrich: the S3 objects and the output stream hold the embedded runner's enriched orders;
//! - archive: the archive in S3 reads back as exactly the records put, in order;
//! - bad input: a malformed record lands in the dead-letter queue once per decoding stage, with the
//!   reason and its bytes, and everything after it flows; records later than the allowed lateness
//!   are dead-lettered as `late`, as many as the embedded runner's late side output counts
//!   (revenue's by `revenue-shuffled`, with the shuffled record that carried the late value);
//! - replay: the archive run as a bounded stream through the same code gives the live results,
//!   locally and fanned out as invocations of a second deployment's `revenue-keyby` function
//!   (whose `revenue-shuffled` reads its own shuffle stream);
//! - a redelivered batch (the same records invoked again, as Lambda does after a timeout) changes
//!   no output.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use prost::Message as _;
use shardflow_archive::ArchiveReader;
use shardflow_connectors::{KinesisEnvelope, ResultMessage};
use shardflow_e2e::shop::*;
use shardflow_e2e::{deploy, invoke, require_function_zips, StackGuard};
use shardflow_gen::shop::{encode, ShopFormat};
use shardflow_lifecycle::{
    invoke_replay, replay, shard_batches, EventSourceBarrier, InvokeReplayOptions, MappingState,
};
use shardflow_schemas::ChangeEvent;
use shardflow_shop::pipelines::{order_enrich, receipts, revenue, EnrichedOrder, Receipt, ENRICHED_ORDERS_BUCKET_MS};

use shardflow_shop_stages::ShopDecoder;
use shardflow_stage::{DeadLetter, DeadLetterKind};

/// The event-time minute (S3 bucket of enriched orders) of `ts`.
fn minute_of(ts: i64) -> i64 {
    ts.div_euclid(ENRICHED_ORDERS_BUCKET_MS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_stages_on_localstack_match_the_embedded_runner() {
    require_function_zips(&FUNCTIONS);
    let events = generate();
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
            ("ChangesShardCount", "1"),
        ],
    );
    let _guard = StackGuard(stack.clone());
    let output = |k: &str| outputs.get(k).cloned().unwrap_or_else(|| panic!("stack output {k}"));
    let (changes, changes_arn) = (output("ChangesStreamName"), output("ChangesStreamArn"));
    let receipts_queue = subscribe_queue(&output("ReceiptsTopicArn")).await;

    // the input: the generated changes with a malformed record a third of the way in, then (once
    // they are stored) the watermark mover
    let mut records: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| encode(e, ShopFormat::Protobuf).expect("encode a change"))
        .collect();
    records.insert(records.len() / 3, ("malformed".to_owned(), MALFORMED.to_vec()));
    let mover = encode(&watermark_mover(&events), ShopFormat::Protobuf).expect("encode the mover");
    let mut put: Vec<Vec<u8>> = records.iter().map(|(_, d)| d.clone()).collect();
    put.push(mover.1.clone());
    let started = Instant::now();
    put_records(&changes, records).await;
    put_records(&changes, vec![mover]).await;

    // what the embedded runner computes on the same input: the stream's records in its order
    // (concurrent PutRecords calls store records in another order than they were sent)
    let stored: Vec<Vec<u8>> =
        shardflow_testkit::read_stream(&shardflow_testkit::kinesis(), &changes, put.len(), DEADLINE)
            .await
            .into_iter()
            .map(|r| r.data)
            .collect();
    assert_eq!(sorted(&stored), sorted(&put), "the stream holds the records put");
    let decoded: Vec<ChangeEvent> = stored
        .iter()
        .filter_map(|d| ChangeEvent::decode(d.as_slice()).ok())
        .collect();
    assert_eq!(
        decoded.len(),
        put.len() - 1,
        "every record but the malformed one decodes"
    );
    let expected = embedded(&decoded).await;
    assert!(
        !expected.receipts.is_empty() && !expected.revenue.is_empty() && !expected.enriched.is_empty(),
        "the input yields results in every pipeline (receipts {}, revenue {}, enriched {})",
        expected.receipts.len(),
        expected.revenue.len(),
        expected.enriched.len()
    );

    // archive: every record, once, in the stream's order
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
    let archived_data: Vec<Vec<u8>> = archived.0.iter().map(|r| r.data.clone()).collect();
    assert_eq!(
        archived_data.len(),
        stored.len(),
        "the archive holds as many records as the stream"
    );
    let first_difference = archived_data.iter().zip(&stored).position(|(a, b)| a != b);
    assert_eq!(
        first_difference, None,
        "the archive holds the stream's records in its order"
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
    let streamed = shardflow_testkit::read_stream(
        &shardflow_testkit::kinesis(),
        &output("EnrichedOrdersStreamName"),
        want_enriched.len(),
        DEADLINE,
    )
    .await;
    let streamed: Vec<KinesisEnvelope<EnrichedOrder>> = streamed
        .iter()
        .map(|r| serde_json::from_slice(&r.data).expect("an enriched order envelope"))
        .collect();
    assert_eq!(
        streamed.len(),
        want_enriched.len(),
        "each enriched order is streamed once"
    );
    assert_eq!(by_id(streamed.into_iter().map(|e| (e.id, e.value))), want_enriched);

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
    assert_eq!(stages, BTreeSet::from(["order-enrich", "receipts", "revenue-keyby"]));
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
    let mut late_by_stage: HashMap<String, u64> = HashMap::new();
    for l in letters.iter().filter(|l| l.kind == DeadLetterKind::Late) {
        let pipeline = l.stage.trim_end_matches("-shuffled").replace('-', "_");
        *late_by_stage.entry(pipeline).or_default() += 1;
    }
    for (pipeline, late) in &expected.late {
        assert_eq!(
            late_by_stage.get(pipeline).copied().unwrap_or(0),
            *late,
            "late records of {pipeline} are dead-lettered as the embedded runner counts them"
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
    let replayed = replay(&revenue(), &ShopDecoder::new(), "revenue", &archived_records, 500).expect("replay revenue");
    let mut replayed_revenue = BTreeMap::new();
    for o in &replayed.outputs {
        let r = &o.value;
        replayed_revenue.insert(
            (r.product_id, r.currency.clone(), r.window_start_ms),
            (r.revenue_cents, r.order_count),
        );
    }
    assert_eq!(replayed_revenue, rows, "the replayed revenue is the live one");
    let late = |letters: &[DeadLetter]| letters.iter().filter(|l| l.kind == DeadLetterKind::Late).count() as u64;
    assert_eq!(late(&replayed.dead_letters), expected.late["revenue"]);
    let replayed = replay(
        &order_enrich(),
        &ShopDecoder::new(),
        "order-enrich",
        &archived_records,
        500,
    )
    .expect("replay order-enrich");
    assert_eq!(
        by_id(replayed.outputs.iter().map(|o| (o.id.to_hex(), o.value.clone()))),
        want_enriched,
        "the replayed enriched orders are the live ones"
    );
    assert_eq!(late(&replayed.dead_letters), expected.late["order_enrich"]);
    let undecodable = replayed
        .dead_letters
        .iter()
        .filter(|l| l.kind == DeadLetterKind::Undecodable)
        .count();
    assert_eq!(undecodable, 1, "the replay dead-letters the malformed record");

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
    let shuffle = output("RevenueShuffleStreamName");
    let (shuffle_shard, shuffled_first) = first_records(&shuffle, 100).await;
    assert!(
        !shuffled_first.is_empty(),
        "the shuffle stream's first shard holds records"
    );
    let shuffled_event = kinesis_event(&output("RevenueShuffleStreamArn"), &shuffle_shard, &shuffled_first);
    for f in FUNCTIONS {
        let event = if f == "revenue-shuffled" {
            &shuffled_event
        } else {
            &event
        };
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

    let _ = shardflow_testkit::postgres()
        .await
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {revenue_table}; DROP TABLE IF EXISTS {backfill_table}"
        ))
        .await;
}
