//! What a 10,000-record batch costs in DynamoDB, against LocalStack: the items a commit writes
//! follow the key groups the batch dirtied (plus the checkpoint item), not its records. The
//! numbers are printed (`--nocapture`) for the benchmark report.
//!
//! Needs `AWS_ENDPOINT_URL` pointing at LocalStack (`source localstack/env`).

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use common::{revenue, Purchase};
use shardflow_engine::state::{key_group, DEFAULT_MAX_KEY_GROUPS};
use shardflow_lambda::{Stage, StageConfig};
use shardflow_stage::{InputRecord, JsonDecoder, SequenceNumber, ShardBatch};
use shardflow_stage::{MemoryDeadLetters, MemoryResultSink};

const BATCH: u64 = 10_000;

/// Batch `n` of 10,000 purchases of `products` products, 100 per second of event time.
fn batch(n: u64, products: u64) -> ShardBatch {
    let records = (0..BATCH)
        .map(|j| {
            let i = n * BATCH + j;
            let p = Purchase {
                product: ((i * 7919) % products) as u32,
                cents: 100 + (i % 5_000) as i64,
                ts_ms: 1_700_000_000_000 + i as i64 * 10,
            };
            InputRecord {
                sequence: SequenceNumber::parse(&format!("4965{i:040}")).unwrap(),
                partition_key: format!("order-{i}"),
                arrival_ms: p.ts_ms + 200,
                data: serde_json::to_vec(&p).unwrap(),
            }
        })
        .collect();
    ShardBatch {
        stream: "purchases".into(),
        shard_id: "shardId-000000000000".into(),
        records,
    }
}

/// Key groups holding state after batch `n`: those of the products in its last open window.
fn live_groups(n: u64, products: u64) -> BTreeSet<u16> {
    let last = batch(n, products);
    let end = last.records.last().map_or(0, |r| r.arrival_ms - 200);
    let window_start = end - end.rem_euclid(10_000);
    last.records
        .iter()
        .map(|r| serde_json::from_slice::<Purchase>(&r.data).unwrap())
        .filter(|p| p.ts_ms >= window_start)
        .map(|p| key_group(&p.product, DEFAULT_MAX_KEY_GROUPS))
        .collect()
}

async fn items_written(products: u64) -> Vec<(u64, usize)> {
    let (client, table) = shardflow_testkit::state_table(&format!("cost{products}")).await;
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let written = lines.clone();
    let stage = Stage::new(
        "revenue",
        revenue(None),
        JsonDecoder::<Purchase>::new(),
        MemoryResultSink::new(),
        MemoryDeadLetters::default(),
        client,
        &table,
        StageConfig::default(),
    )
    .unwrap()
    .with_metrics_writer(Arc::new(move |line: &str| {
        written.lock().unwrap().push(line.to_owned())
    }));
    let mut out = Vec::new();
    for n in 0..3 {
        stage.handle(batch(n, products)).await.unwrap();
        let line: serde_json::Value = serde_json::from_str(lines.lock().unwrap().last().unwrap()).unwrap();
        let items = line["StateItemsWritten"].as_u64().unwrap();
        let groups = live_groups(n, products).len();
        eprintln!(
            "{products} products, batch {n}: {} records, {groups} key groups dirty and live, {items} items \
             written, {} bytes of state, commit {} ms",
            line["RecordsIn"], line["StateBytesWritten"], line["CommitDuration"]
        );
        out.push((items, groups));
    }
    out
}

#[tokio::test]
async fn items_written_per_batch_follow_dirty_key_groups_not_records() {
    // 20 products: a handful of key groups per 10,000 records.
    for (items, groups) in items_written(20).await {
        assert!(groups <= 20);
        assert_eq!(
            items,
            groups as u64 + 1,
            "one item per live dirty key group, plus the checkpoint"
        );
    }
    // 2,000 products: every key group is dirty, still one item each.
    for (items, groups) in items_written(2_000).await {
        assert_eq!(groups, usize::from(DEFAULT_MAX_KEY_GROUPS));
        assert_eq!(items, groups as u64 + 1);
    }
}
