//! The upstream cost of the shuffle hop per record: key group, route, encode and pack a
//! 10,000-record batch of 200-byte payloads (500 keys, 128 key groups, 4 shuffle shards, one
//! watermark record to every shard), and the PUT payload units per record it costs.
//!
//! Criterion reports wall time per batch (divide by 10,000 for a record; on one thread wall time
//! bounds CPU time from above); the payload units are printed before the timings.
//!
//! `cargo bench -p shardflow-shuffle --bench shuffle`

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardflow_engine::InputOrigin;
use shardflow_shuffle::{DataRecord, KeyGroupSpace, Packed, Packer, RecordId, ShardMap, WatermarkRecord};
use shardflow_stage::SequenceNumber;

const BATCH: usize = 10_000;
const PAYLOAD: usize = 200;

struct Input {
    keys: Vec<u32>,
    sequences: Vec<SequenceNumber>,
    payloads: Vec<Vec<u8>>,
}

fn input() -> Input {
    // Sequence numbers as Kinesis makes them: 56 digits, increasing.
    let base = "495903382714902566085596925383615710959215759891";
    Input {
        keys: (0..BATCH as u32).map(|i| i.wrapping_mul(2_654_435_761) % 500).collect(),
        sequences: (0..BATCH)
            .map(|i| SequenceNumber::parse(&format!("{base}{:08}", i * 7)).expect("a sequence number"))
            .collect(),
        payloads: (0..BATCH).map(|i| vec![b'a' + (i % 26) as u8; PAYLOAD]).collect(),
    }
}

fn shuffle(map: &ShardMap, input: &Input) -> Packed {
    let mut packer = Packer::new(map);
    for i in 0..BATCH {
        let record = DataRecord {
            id: RecordId {
                stage: "revenue-keyby",
                source_shard: "shardId-000000000000",
                sequence: Cow::Borrowed(&input.sequences[i]),
                output_index: 0,
            },
            key_group: map.space().key_group(&input.keys[i]),
            timestamp: 1_704_067_200_000 + i as i64,
            origin: InputOrigin {
                source: 0x5eed_5eed_5eed_5eed,
                offset: i as u64,
                index: 0,
            },
            wm_before: 1_704_067_196_000 + i as i64,
            payload: &input.payloads[i],
        };
        packer.push_data(&record).expect("fits");
    }
    packer
        .push_watermark(&WatermarkRecord {
            stage: "revenue-keyby",
            source_stream: "cdc",
            source_shard: "shardId-000000000000",
            watermark: 1_704_067_205_000,
            closed: false,
            parents: vec![],
        })
        .expect("fits");
    packer.finish()
}

fn bench(c: &mut Criterion) {
    let map = ShardMap::even(KeyGroupSpace::new(128), 4);
    let input = input();
    let packed = shuffle(&map, &input);
    let bytes: usize = packed.records.iter().map(|r| r.billed_bytes()).sum();
    eprintln!(
        "{BATCH} records of {PAYLOAD} B over 4 shards: {} Kinesis records in {} calls, {bytes} B, \
         {} PUT payload units = {:.4} units per record ({:.1} B per record)",
        packed.records.len(),
        packed.calls().len(),
        packed.payload_units(),
        packed.payload_units() as f64 / BATCH as f64,
        bytes as f64 / BATCH as f64,
    );
    let mut group = c.benchmark_group("shuffle_upstream");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("key_group+route+encode+pack 10k x 200 B", |b| {
        b.iter(|| black_box(shuffle(&map, black_box(&input))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
