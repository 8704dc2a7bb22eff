//! Kinesis helpers of the shuffle tests: putting records, reading every shard from the start,
//! cutting shards into batches, delivering them as Lambda does.

use std::collections::BTreeMap;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::ShardIteratorType;
use shardflow_lambda::input_record;
use shardflow_stage::{InputRecord, ShardBatch};

/// Puts `payload`s with partition keys `p{i}` (spread over the shards) into `stream`.
pub async fn put(kinesis: &aws_sdk_kinesis::Client, stream: &str, payloads: impl Iterator<Item = (String, Vec<u8>)>) {
    for (key, data) in payloads {
        kinesis
            .put_record()
            .stream_name(stream)
            .partition_key(key)
            .data(Blob::new(data))
            .send()
            .await
            .unwrap();
    }
}

/// Every shard of `stream` with its records from the start, as GetRecords returns them.
pub async fn read_shards(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> BTreeMap<String, Vec<InputRecord>> {
    let shards = kinesis.list_shards().stream_name(stream).send().await.unwrap();
    let mut out = BTreeMap::new();
    for shard in shards.shards() {
        let mut iterator = kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator
            .unwrap();
        let mut records = Vec::new();
        loop {
            let page = kinesis.get_records().shard_iterator(&iterator).send().await.unwrap();
            records.extend(page.records().iter().map(|r| input_record(r).unwrap()));
            if page.records().is_empty() && page.millis_behind_latest().is_none_or(|ms| ms == 0) {
                break;
            }
            // A closed shard read to its end has no next iterator.
            let Some(next) = page.next_shard_iterator() else { break };
            iterator = next.to_owned();
        }
        out.insert(shard.shard_id().to_owned(), records);
    }
    out
}

pub fn batches(stream: &str, shard: &str, records: &[InputRecord], size: usize) -> Vec<ShardBatch> {
    records
        .chunks(size)
        .map(|c| ShardBatch {
            stream: stream.to_owned(),
            shard_id: shard.to_owned(),
            records: c.to_vec(),
        })
        .collect()
}

/// Lambda's delivery: each batch until it succeeds (a failed invocation is retried).
pub async fn deliver<F, Fut, E>(batch: ShardBatch, handle: F) -> usize
where
    F: Fn(ShardBatch) -> Fut,
    Fut: std::future::Future<Output = Result<aws_lambda_events::event::streams::KinesisEventResponse, E>>,
    E: std::fmt::Display,
{
    for failures in 0..20 {
        match handle(batch.clone()).await {
            Ok(_) => return failures,
            Err(e) => eprintln!("invocation failed, retried: {e}"),
        }
    }
    panic!("a batch failed 20 times");
}

/// The order in which the tests deliver input batches: round robin over the shards, `size`
/// records each.
pub fn round_robin(input: &BTreeMap<String, Vec<InputRecord>>, size: usize) -> Vec<(String, Vec<InputRecord>)> {
    let mut per_shard: Vec<(String, std::slice::Chunks<'_, InputRecord>)> =
        input.iter().map(|(s, r)| (s.clone(), r.chunks(size))).collect();
    let mut order = Vec::new();
    loop {
        let before = order.len();
        for (shard, chunks) in &mut per_shard {
            if let Some(c) = chunks.next() {
                order.push((shard.clone(), c.to_vec()));
            }
        }
        if order.len() == before {
            return order;
        }
    }
}
