//! The Lambda payload of a Kinesis invocation: `ShardBatch::from_json` returns a batch or a
//! `BatchError`, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardflow_stage::ShardBatch;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = ShardBatch::from_json(data) {
        let _ = batch.last_sequence();
        let _ = batch.truncated(batch.records.len() / 2);
    }
});
