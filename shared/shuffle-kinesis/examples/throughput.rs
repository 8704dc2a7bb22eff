//! The shuffle writer's throughput against LocalStack (`AWS_ENDPOINT_URL`) and the PUT payload
//! units per shuffled record: `BATCHES` upstream batches of `RECORDS` small records (a 26-byte
//! JSON payload, ids with 56-digit sequence numbers as Kinesis makes them) over 128 key groups,
//! written into a fresh 4-shard shuffle stream.
//!
//! ```sh
//! source localstack/env
//! cargo run -p shardflow-shuffle-kinesis --example throughput -- [BATCHES=20] [RECORDS=10000]
//! ```

use std::borrow::Cow;
use std::time::{Duration, Instant};

use shardflow_kinesis::{KinesisTransport, PutRecordsTransport, StreamRecord};
use shardflow_shuffle::{DataRecord, KeyGroupSpace, PackError, Packed, Packer, RecordId, ShardMap, WatermarkRecord};
use shardflow_shuffle_kinesis::{ShuffleWriter, WriteStats, WriterConfig};
use shardflow_stage::SequenceNumber;

const SOURCE_SHARD: &str = "shardId-000000000003";

fn pack(map: &ShardMap, seqs: &[SequenceNumber], payloads: &[Vec<u8>], groups: &[u16]) -> Result<Packed, PackError> {
    let mut packer = Packer::new(map);
    for ((seq, payload), group) in seqs.iter().zip(payloads).zip(groups) {
        packer.push_data(&DataRecord {
            id: RecordId {
                stage: "revenue-keyby",
                source_shard: SOURCE_SHARD,
                sequence: Cow::Borrowed(seq),
                output_index: 0,
            },
            key_group: *group,
            timestamp: 1_704_067_200_000,
            payload,
        })?;
    }
    packer.push_watermark(&WatermarkRecord {
        stage: "revenue-keyby",
        source_stream: "cdc",
        source_shard: SOURCE_SHARD,
        watermark: 1_704_067_200_000,
        closed: false,
        parents: vec![],
    })?;
    Ok(packer.finish())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("a number"));
    let batches = args.next().unwrap_or(20);
    let per_batch = args.next().unwrap_or(10_000);
    let (client, stream) = shardflow_testkit::kinesis_stream("shuffle-throughput", 4).await;
    let space = KeyGroupSpace::new(128);
    let mut writer = ShuffleWriter::new(client.clone(), &stream, WriterConfig::default());
    writer.shard_map(space).await.expect("the shard map");

    let mut total = WriteStats::default();
    let (mut bytes, mut elapsed, mut pack_time) = (0usize, Duration::ZERO, Duration::ZERO);
    let (mut last_seqs, mut last_payloads, mut last_groups) = (Vec::new(), Vec::new(), Vec::new());
    for b in 0..batches {
        let seqs: Vec<SequenceNumber> = (0..per_batch)
            .map(|i| {
                let n = (b * per_batch + i) as u64 * 1_000;
                SequenceNumber::parse(&format!("4959033827149025660855969253836157109592{n:016}")).unwrap()
            })
            .collect();
        let payloads: Vec<Vec<u8>> = (0..per_batch)
            .map(|i| format!(r#"{{"product":{:>3},"cents":{:>3}}}"#, i % 997, i % 500).into_bytes())
            .collect();
        let groups: Vec<u16> = (0..per_batch).map(|i| space.key_group(&((i % 997) as u32))).collect();
        if b + 1 == batches {
            (last_seqs, last_payloads, last_groups) = (seqs.clone(), payloads.clone(), groups.clone());
        }
        let t = Instant::now();
        let packed = pack(writer.shard_map(space).await.unwrap(), &seqs, &payloads, &groups).unwrap();
        pack_time += t.elapsed();
        bytes += packed.records.iter().map(|r| r.billed_bytes()).sum::<usize>();
        let t = Instant::now();
        let stats = writer
            .send(space, packed, |m| pack(m, &seqs, &payloads, &groups))
            .await
            .expect("the batch is written");
        elapsed += t.elapsed();
        total.records += stats.records;
        total.data_records += stats.data_records;
        total.calls += stats.calls;
        total.payload_units += stats.payload_units;
        total.retries += stats.retries;
        total.repacks += stats.repacks;
    }
    // The same bytes through the bare transport, for the writer's own share of the time.
    let (raw_calls, mut raw) = (3u32, Duration::ZERO);
    let last = pack(
        writer.shard_map(space).await.unwrap(),
        &last_seqs,
        &last_payloads,
        &last_groups,
    )
    .unwrap();
    let records: Vec<StreamRecord> = last
        .records
        .iter()
        .map(|r| {
            StreamRecord::new(r.partition_key.clone(), r.data.clone())
                .with_explicit_hash_key(r.explicit_hash_key.parse().unwrap())
        })
        .collect();
    let transport = KinesisTransport::new(client.clone(), &stream);
    for _ in 0..raw_calls {
        let t = Instant::now();
        transport.put_records(&records).await.expect("a raw call");
        raw += t.elapsed();
    }
    let secs = elapsed.as_secs_f64();
    println!("{batches} batches of {per_batch} records into a 4-shard shuffle stream on LocalStack");
    println!(
        "sent: {} shuffled records in {} Kinesis records, {} calls, {} retries, {} re-packs",
        total.data_records, total.records, total.calls, total.retries, total.repacks
    );
    println!(
        "send: {secs:.2} s = {:.0} shuffled records/s, {:.2} MB/s, {:.1} ms per batch; packing {:.0} ns/record",
        total.data_records as f64 / secs,
        bytes as f64 / secs / 1e6,
        secs * 1e3 / batches as f64,
        pack_time.as_nanos() as f64 / total.data_records as f64
    );
    println!(
        "the last batch's {} records through the bare KinesisTransport: {:.1} ms per call",
        records.len(),
        raw.as_secs_f64() * 1e3 / f64::from(raw_calls)
    );
    println!(
        "payload units: {} = {:.4} per shuffled record ({:.1} bytes per record on the wire)",
        total.payload_units,
        total.payload_units as f64 / total.data_records as f64,
        bytes as f64 / total.data_records as f64
    );
    shardflow_testkit::delete_stream(&client, &stream).await;
}
