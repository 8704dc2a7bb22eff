//! The upstream cost of the shuffle hop per record, and the PUT payload units it costs:
//! - `pack`: key group, route, encode and pack a 10,000-record batch of 200-byte payloads (500
//!   keys, 128 key groups, 4 shuffle shards, one watermark record to every shard);
//! - `revenue`: the whole upstream half ([`UpstreamBatch`]: the upstream engine, encoding,
//!   routing, packing) of a revenue-like split pipeline — sum of cents per product and 1-minute
//!   window, 2,000 products, one upstream shard at 1,000 sales/s — over 10,000-record batches,
//!   with and without combiner lifting.
//!
//! Criterion reports wall time per batch (divide by 10,000 for a record; on one thread wall time
//! bounds CPU time from above); the payload units are printed before the timings.
//!
//! `cargo bench -p shardflow-shuffle --bench shuffle`

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde::de::DeserializeOwned;
use serde::Serialize;
use shardflow_engine::combine::Sum;
use shardflow_engine::{
    Engine, InputOrigin, Pipeline, ShuffleOutput, SplitPipeline, Trigger, Upstream, WatermarkStrategy, WindowedStream,
    Windowing,
};
use shardflow_shuffle::{
    BatchEnd, DataRecord, KeyGroupSpace, Packed, Packer, RecordId, ShardMap, UpstreamBatch, UpstreamShard,
    WatermarkRecord,
};
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

/// A sale: (product, event time ms, cents).
type Sale = (u32, i64, i64);
/// (product, window start, cents)
type Revenue = (u32, i64, i64);

const PRODUCTS: u32 = 2_000;

/// The shuffled values of the lifted plan.
type LiftedSale = shardflow_engine::Lifted<u32, Sale, i64>;

/// Sales per product and minute, split at the product key.
fn revenue_windows() -> WindowedStream<Sale, u32, Sale, Upstream<Sale, Sale>> {
    Pipeline::builder("revenue")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(4_000).expect("a bound"))
        .event_time(|s: &Sale| s.1)
        .key_by(|s: &Sale| s.0)
        .shuffle()
        .expect("stateless before the shuffle")
        .window(Windowing::tumbling(60_000).expect("a window"))
        .trigger(
            Trigger::at_watermark()
                .with_allowed_lateness(300_000)
                .expect("a lateness"),
        )
}

/// Revenue per product and minute, every sale shuffled.
fn revenue() -> SplitPipeline<Sale, Sale, Revenue> {
    revenue_windows()
        .aggregate(Sum::of(|s: &Sale| s.2), |p, w, _, cents| (*p, w.start, cents))
        .sink("revenue")
}

/// Revenue per product and minute, partial sums shuffled.
fn revenue_lifted() -> SplitPipeline<Sale, LiftedSale, Revenue> {
    revenue_windows()
        .aggregate_lifted(Sum::of(|s: &Sale| s.2), |p, w, _, cents| (*p, w.start, cents))
        .sink("revenue")
}

/// `batches` batches of 10,000 sales of one shard at 1,000 sales/s, a jitter of up to 2 s.
fn sales(batches: usize) -> Vec<Vec<Sale>> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move |m: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % m
    };
    (0..batches)
        .map(|b| {
            (0..BATCH)
                .map(|i| {
                    let ts = 1_704_067_200_000 + ((b * BATCH + i) as i64) - rnd(2_000) as i64;
                    (rnd(u64::from(PRODUCTS)) as u32, ts, 100 + rnd(10_000) as i64)
                })
                .collect()
        })
        .collect()
}

/// Runs the upstream half of `split` over `batch` on `engine` with sequence numbers `sequences`.
fn upstream_batch<S: Serialize + Send + 'static>(
    split: &SplitPipeline<Sale, S, Revenue>,
    engine: &mut Engine<Sale, ShuffleOutput<S>>,
    map: &ShardMap,
    batch: &[Sale],
    sequences: &[SequenceNumber],
    first_offset: u64,
) -> Packed {
    let shard = UpstreamShard {
        stage: "revenue-keyby",
        stream: "cdc",
        shard: "shardId-000000000000",
        parents: &[],
        siblings: &[],
    };
    let mut up = UpstreamBatch::begin(engine, map, shard)
        .expect("fits")
        .with_combiner(split.batch_combiner());
    for (i, (sale, sequence)) in batch.iter().zip(sequences).enumerate() {
        up.push(sequence, first_offset + i as u64, 0, *sale).expect("fits");
    }
    up.finish(BatchEnd::Open).expect("fits")
}

/// Payload units per input record of `split` over 10 batches (after the first), and the
/// packed records of one batch.
fn revenue_units<S: Serialize + DeserializeOwned + Send + 'static>(
    split: &SplitPipeline<Sale, S, Revenue>,
    map: &ShardMap,
    input: &[Vec<Sale>],
    sequences: &[SequenceNumber],
) -> (f64, usize, usize) {
    let mut engine = split.upstream.engine();
    let (mut units, mut records, mut data) = (0, 0, 0);
    for (b, batch) in input.iter().enumerate() {
        let packed = upstream_batch(split, &mut engine, map, batch, sequences, (b * BATCH) as u64);
        if b > 0 {
            units += packed.payload_units();
            records += packed.records.len();
            data += packed.data_records;
        }
    }
    let measured = (input.len() - 1) * BATCH;
    (units as f64 / measured as f64, records, data)
}

fn bench_revenue(c: &mut Criterion) {
    let map = ShardMap::even(KeyGroupSpace::new(128), 4);
    let input = sales(11);
    let base = "495903382714902566085596925383615710959215759891";
    let sequences: Vec<SequenceNumber> = (0..BATCH)
        .map(|i| SequenceNumber::parse(&format!("{base}{:08}", i * 7)).expect("a sequence number"))
        .collect();
    let plain = revenue();
    let lifted = revenue_lifted();
    assert!(lifted.is_lifted());
    for (name, (units, records, data)) in [
        ("without lifting", revenue_units(&plain, &map, &input, &sequences)),
        ("with lifting", revenue_units(&lifted, &map, &input, &sequences)),
    ] {
        eprintln!(
            "revenue, {PRODUCTS} products, 10 batches of {BATCH} sales, 4 shuffle shards, {name}: \
             {data} shuffled records in {records} Kinesis records, {units:.5} PUT payload units per input record"
        );
    }
    let mut group = c.benchmark_group("shuffle_upstream_revenue");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("upstream half, 10k sales, without lifting", |b| {
        b.iter_batched(
            || plain.upstream.engine(),
            |mut engine| black_box(upstream_batch(&plain, &mut engine, &map, &input[0], &sequences, 0)),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("upstream half, 10k sales, with lifting", |b| {
        b.iter_batched(
            || lifted.upstream.engine(),
            |mut engine| black_box(upstream_batch(&lifted, &mut engine, &map, &input[0], &sequences, 0)),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench, bench_revenue);
criterion_main!(benches);
