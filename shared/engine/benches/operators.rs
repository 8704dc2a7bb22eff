//! Operator throughput: tumbling count+sum, sliding, session, 2-way window join, interval join,
//! each over 1M records and 10k keys; and snapshot+encode of an engine holding 100k keys.
//!
//! `cargo bench -p shardflow-engine --bench operators -- --quick`
//! (throughput is reported in elements/s; the checkpoint sizes are printed once.)

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde::{Deserialize, Serialize};
use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::{join, IntervalJoinSide, Pipeline, Trigger, WatermarkStrategy, Window, Windowing};

const RECORDS: usize = 1_000_000;
const KEYS: u32 = 10_000;
const SHARDS: usize = 4;

/// A bid-like record.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Rec {
    key: u32,
    side: u8,
    ts: i64,
    v: i64,
}

/// 1M records, 10 per ms of event time (100 s in all), keys spread by a xorshift generator,
/// up to 1.2 s of disorder, round-robin over 4 shards.
fn input() -> Vec<(usize, Rec)> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..RECORDS)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let rec = Rec {
                key: (x % u64::from(KEYS)) as u32,
                side: (x >> 32) as u8 & 1,
                ts: 1_704_067_200_000 + (i / 10) as i64 - ((x >> 40) % 1_200) as i64,
                v: ((x >> 20) % 1_000) as i64,
            };
            (i % SHARDS, rec)
        })
        .collect()
}

fn watermarks() -> WatermarkStrategy {
    WatermarkStrategy::bounded_out_of_orderness(4_000).unwrap()
}

/// Runs `pipeline` over `input` like a runner does (drains every 10k records); returns the
/// number of results.
fn run<Out: Send + 'static>(pipeline: &Pipeline<Rec, Out>, input: &[(usize, Rec)]) -> usize {
    let mut e = pipeline.engine();
    let shards: Vec<_> = (0..SHARDS).map(|s| e.partition(&format!("shard-{s}"))).collect();
    let mut results = 0;
    for (i, (s, r)) in input.iter().enumerate() {
        e.process(shards[*s], (i / SHARDS) as u64, r.ts, *r);
        if i % 10_000 == 0 {
            results += black_box(e.drain_output()).len();
        }
    }
    e.finish();
    results + black_box(e.drain_output()).len()
}

fn count_sum(windowing: Windowing) -> Pipeline<Rec, (u32, i64, u64, i64)> {
    Pipeline::builder("bench")
        .watermarks(watermarks())
        .event_time(|r: &Rec| r.ts)
        .key_by(|r: &Rec| r.key)
        .window(windowing)
        .trigger(Trigger::at_watermark())
        .aggregate((Count, Sum::of(|r: &Rec| r.v)), |k, w, _p, (n, s)| (*k, w.start, n, s))
        .sink("out")
}

fn window_join() -> Pipeline<Rec, (u32, i64, i64)> {
    Pipeline::builder("bench-join")
        .watermarks(watermarks())
        .event_time(|r: &Rec| r.ts)
        .key_by(|r: &Rec| r.key)
        .window(Windowing::tumbling(10_000).unwrap())
        .join(
            2,
            |r: &Rec| usize::from(r.side),
            |k: &u32, _w: &Window, lists: &[Vec<Rec>]| {
                join::inner(lists)
                    .into_iter()
                    .map(|row| (*k, row[0].v, row[1].v))
                    .collect()
            },
        )
        .sink("out")
}

fn interval_join() -> Pipeline<Rec, (u32, i64, i64)> {
    Pipeline::builder("bench-interval")
        .watermarks(watermarks())
        .event_time(|r: &Rec| r.ts)
        .key_by(|r: &Rec| r.key)
        .interval_join(
            |r: &Rec| {
                if r.side == 0 {
                    IntervalJoinSide::Left
                } else {
                    IntervalJoinSide::Right
                }
            },
            -1_000,
            1_000,
            |k, l, r| (*k, l.v, r.v),
        )
        .sink("out")
}

fn operators(c: &mut Criterion) {
    let input = input();
    let mut g = c.benchmark_group("operators");
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.warm_up_time(Duration::from_secs(1));

    let tumbling = count_sum(Windowing::tumbling(10_000).unwrap());
    g.bench_function(BenchmarkId::new("tumbling_count_sum", "1M_10k_keys"), |b| {
        b.iter(|| run(&tumbling, &input))
    });
    let sliding = count_sum(Windowing::sliding(10_000, 2_000).unwrap());
    g.bench_function(BenchmarkId::new("sliding_10s_2s_count_sum", "1M_10k_keys"), |b| {
        b.iter(|| run(&sliding, &input))
    });
    let session = count_sum(Windowing::session(1_000).unwrap());
    g.bench_function(BenchmarkId::new("session_1s_count_sum", "1M_10k_keys"), |b| {
        b.iter(|| run(&session, &input))
    });
    let wj = window_join();
    g.bench_function(BenchmarkId::new("window_join_2way", "1M_10k_keys"), |b| {
        b.iter(|| run(&wj, &input))
    });
    let ij = interval_join();
    g.bench_function(BenchmarkId::new("interval_join_pm1s", "1M_10k_keys"), |b| {
        b.iter(|| run(&ij, &input))
    });
    g.finish();
}

/// An engine holding count+sum window state for `keys` keys (one open window each).
fn engine_with_keys(keys: u32) -> shardflow_engine::Engine<Rec, (u32, i64, u64, i64)> {
    let p = count_sum(Windowing::tumbling(3_600_000).unwrap());
    let mut e = p.engine();
    let s = e.partition("shard-0");
    for k in 0..keys {
        e.process(
            s,
            u64::from(k),
            0,
            Rec {
                key: k,
                side: 0,
                ts: 1_704_067_200_000 + i64::from(k % 1_000),
                v: i64::from(k),
            },
        );
    }
    e
}

fn checkpoints(c: &mut Criterion) {
    const KEYS_IN_STATE: u32 = 100_000;
    let mut e = engine_with_keys(KEYS_IN_STATE);
    let full = e.snapshot_full().unwrap().encode().unwrap();
    eprintln!(
        "checkpoint size: full snapshot of {KEYS_IN_STATE} keys (count+sum, one tumbling window each) = {} bytes, {:.1} bytes/key",
        full.len(),
        full.len() as f64 / f64::from(KEYS_IN_STATE)
    );
    // incremental checkpoints after touching a few keys: the cost is per dirty key group (128)
    let s = e.partition("shard-0");
    e.snapshot().unwrap();
    let mut offset = 1_000_000;
    for touched in [1u32, 10, 100, 1_000] {
        for k in 0..touched {
            let key = k.wrapping_mul(7_919) % KEYS_IN_STATE;
            let rec = Rec {
                key,
                side: 0,
                ts: 1_704_067_200_500,
                v: 1,
            };
            e.process(s, offset, 0, rec);
            offset += 1;
        }
        let delta = e.snapshot().unwrap();
        eprintln!(
            "checkpoint size: incremental after touching {touched} keys = {} bytes in {} of 128 key groups",
            delta.encode().unwrap().len(),
            delta.key_groups_written()
        );
    }

    let mut g = c.benchmark_group("checkpoint");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(u64::from(KEYS_IN_STATE)));
    g.bench_function(BenchmarkId::new("snapshot_full_encode", "100k_keys"), |b| {
        b.iter(|| black_box(e.snapshot_full().unwrap().encode().unwrap()).len())
    });
    g.throughput(Throughput::Bytes(full.len() as u64));
    g.bench_function(BenchmarkId::new("snapshot_full_encode_bytes", "100k_keys"), |b| {
        b.iter(|| black_box(e.snapshot_full().unwrap().encode().unwrap()).len())
    });
    g.finish();
}

criterion_group!(benches, operators, checkpoints);
criterion_main!(benches);
