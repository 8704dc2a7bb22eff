//! One message of Postgres' logical replication protocol (pgoutput), as the CDC reader gets it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = shardflow_cdc::pgoutput::decode(data);
});
