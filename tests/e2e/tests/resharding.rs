//! Resharding under deployed stages on LocalStack: the template deployed with two shards, the
//! real `receipts` and `archive` functions consuming them through their event source mappings;
//! a third of the input, then a shard split, a third more, then the split's children merged, the
//! rest. The receipts (SQS subscribed to the topic) are exactly the embedded runner's on the
//! same input — every receipt once, none twice — the archive holds every record once, and
//! order-enrich's pair (`order-enrich-keyby` → its shuffle stream → `order-enrich-shuffled`)
//! streams each of the embedded runner's enriched orders once.
//!
//! The input has no late change (see [`generate_on_time`]) and is put in order, so its results
//! do not depend on how the stream is sharded: a child shard that missed its parents' state (an
//! order's dedup horizon, an open window) would publish a receipt twice or with other content.
//!
//! The shards are split and merged while the stages still work through the records before
//! them: a child's first batch comes only after its parents' last (as Lambda does it; on
//! LocalStack the extension's lineage-aware poller, see `localstack/README.md`), and the child
//! adopts its parents' committed state for its keys.

use std::collections::BTreeSet;
use std::time::Instant;

use shardflow_e2e::shop::*;
use shardflow_e2e::{deploy, require_function_zips, StackGuard};
use shardflow_gen::shop::{encode, ShopFormat};
use shardflow_lambda::hash_key;
use shardflow_lifecycle::EventSourceBarrier;

fn encoded(events: &[shardflow_schemas::ChangeEvent]) -> Vec<(String, Vec<u8>)> {
    events
        .iter()
        .map(|e| encode(e, ShopFormat::Protobuf).expect("encode"))
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

/// The open shards: (id, parent, adjacent parent, starting hash key, ending hash key).
async fn open_shards(stream: &str) -> Vec<(String, Option<String>, Option<String>, u128, u128)> {
    let listed = shardflow_testkit::kinesis()
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("list shards");
    let mut shards: Vec<_> = listed
        .shards()
        .iter()
        .filter(|s| {
            s.sequence_number_range()
                .is_none_or(|r| r.ending_sequence_number().is_none())
        })
        .map(|s| {
            let range = s.hash_key_range().expect("a hash key range");
            (
                s.shard_id().to_owned(),
                s.parent_shard_id().map(str::to_owned),
                s.adjacent_parent_shard_id().map(str::to_owned),
                range.starting_hash_key().parse::<u128>().expect("a hash key"),
                range.ending_hash_key().parse::<u128>().expect("a hash key"),
            )
        })
        .collect();
    shards.sort_by_key(|s| s.3);
    shards
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_and_merge_while_the_stages_run_keep_every_receipt_once() {
    require_function_zips(&FUNCTIONS);
    let events = generate_on_time(3_000);
    let third = events.len() / 3;
    let stack = shardflow_testkit::unique_name("reshard");
    let outputs = deploy(
        &stack,
        "infra/template.yaml",
        &[
            ("Architecture", "x86_64"),
            ("DatabaseUrl", &shardflow_testkit::postgres_url()),
            ("RevenueTable", &stack.replace('-', "_")),
            ("ChangesShardCount", "2"),
            ("FunctionTimeout", "30"),
        ],
    );
    let _guard = StackGuard(stack.clone());
    let output = |k: &str| outputs.get(k).cloned().unwrap_or_else(|| panic!("stack output {k}"));
    let (stream, table) = (output("ChangesStreamName"), output("StateTableName"));
    let receipts_queue = subscribe_queue(&output("ReceiptsTopicArn")).await;
    // revenue's pair sits this one out (its shuffle over a resharded stream is tested by
    // shared/lambda/tests/shuffle_stages.rs and tests/e2e/tests/shuffle.rs); order-enrich's pair
    // runs, every CDC shard registered downstream before the input flows
    for function in ["RevenueKeyByFunctionName", "RevenueShuffledFunctionName"] {
        EventSourceBarrier::new(shardflow_testkit::lambda(), &output(function))
            .pause()
            .await
            .expect("disable the mapping");
    }
    let registrations = register_every_shard(&stream, &table, &events, &["order-enrich-keyby"]).await;
    let kinesis = shardflow_testkit::kinesis();
    let started = Instant::now();

    // a third of the input on two shards
    put_records_in_order(&stream, encoded(&events[..third])).await;
    let before = open_shards(&stream).await;
    assert_eq!(before.len(), 2, "the stream starts with two shards");

    // split the first shard in the middle of its range; a third more
    let (parent, _, _, low, high) = before[0].clone();
    kinesis
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(&parent)
        .new_starting_hash_key((low + (high - low) / 2 + 1).to_string())
        .send()
        .await
        .expect("split a shard");
    wait_active(&stream).await;
    let children: Vec<String> = open_shards(&stream)
        .await
        .into_iter()
        .filter(|s| s.1.as_deref() == Some(parent.as_str()))
        .map(|s| s.0)
        .collect();
    assert_eq!(children.len(), 2, "the split has two children");
    put_records_in_order(&stream, encoded(&events[third..2 * third])).await;

    // merge the two children back into one shard; the rest, then the watermark mover
    kinesis
        .merge_shards()
        .stream_name(&stream)
        .shard_to_merge(&children[0])
        .adjacent_shard_to_merge(&children[1])
        .send()
        .await
        .expect("merge the children");
    wait_active(&stream).await;
    let merged: Vec<String> = open_shards(&stream)
        .await
        .into_iter()
        .filter(|s| children.contains(&s.1.clone().unwrap_or_default()))
        .map(|s| s.0)
        .collect();
    assert_eq!(merged.len(), 1, "the merge has one child");
    put_records_in_order(&stream, encoded(&events[2 * third..])).await;
    // each shard runs its own engine, so each open shard gets a watermark mover, once the rest is
    // stored (a PutRecords call stores what it can and the producer retries the rest, so records
    // of one call may be stored out of order)
    let mover = encode(&watermark_mover(&events), ShopFormat::Protobuf)
        .expect("encode")
        .1;
    let open = open_shards(&stream).await;
    let movers: Vec<(String, Vec<u8>)> = open
        .iter()
        .map(|(_, _, _, low, high)| {
            let key = (0..)
                .map(|i| format!("watermark-{i}"))
                .find(|k| (*low..=*high).contains(&hash_key(k)))
                .expect("a partition key in every range");
            (key, mover.clone())
        })
        .collect();
    let total = registrations.len() + events.len() + open.len();
    put_records_in_order(&stream, movers).await;
    let stored = caught_up("receipts", &table, &stream, total, started).await;
    caught_up("archive", &table, &stream, total, started).await;

    // every shard of the lineage was processed by the stage
    let shards_read: BTreeSet<String> = stored.iter().map(|r| r.shard_id.clone()).collect();
    for shard in children.iter().chain(&merged).chain([&parent]) {
        assert!(shards_read.contains(shard), "records were stored in {shard}");
    }

    // the receipts are the embedded runner's, each once
    let expected = embedded(&events).await;
    assert!(expected.late.values().all(|n| *n == 0), "the input has no late record");
    assert_receipts_once(
        &receipts_queue,
        &expected.receipts,
        "the receipts across the reshards",
        started,
    )
    .await;

    // order-enrich's pair through the split and the merge: each of the embedded runner's enriched
    // orders streamed once, equal (the split's first child to report announces the other child
    // downstream, so the other shards cannot move order-enrich-shuffled's watermark past the
    // other child's first rows: order-enrich allows no lateness)
    let want_enriched = by_id(expected.enriched.iter().map(|l| (l.id.clone(), l.value.clone())));
    assert!(!want_enriched.is_empty(), "the input yields enriched orders");
    assert_enriched_streamed_once(
        &output("EnrichedOrdersStreamName"),
        &want_enriched,
        "the enriched orders across the reshards (the embedded runner's)",
    )
    .await;

    // the archive holds every record once
    let archive =
        shardflow_archive::ArchiveReader::new(shardflow_testkit::s3(), output("ArchiveBucketName"), "archive");
    let (archived, repeated) = archive
        .read_stream(Some(&stream), None)
        .await
        .expect("read the archive");
    assert_eq!(repeated, 0, "no record is archived twice");
    let mut archived: Vec<(String, String)> = archived.into_iter().map(|r| (r.shard_id, r.sequence_number)).collect();
    let mut want: Vec<(String, String)> = stored
        .iter()
        .map(|r| (r.shard_id.clone(), r.sequence_number.clone()))
        .collect();
    archived.sort();
    want.sort();
    assert_eq!(archived, want, "the archive holds every stored record once");
}
