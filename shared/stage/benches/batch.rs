//! The per-batch cost of a Lambda stage without I/O: a 10,000-record Kinesis batch decoded from
//! JSON, processed by the revenue pipeline, and its commit prepared (incremental snapshot and
//! encoding). `restore` adds rebuilding the engine from the committed image, as a cold
//! invocation does.
//!
//! After the timings (wall clock) it reports the CPU time per batch, from the process's user and
//! system time over many batches (`/proc/self/stat`; Linux only), which a busy machine does not
//! inflate, and what the commit would write.
//!
//! `cargo bench -p shardflow-stage --bench batch`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::{CheckpointImage, Engine, Firing, Pipeline, Trigger, WatermarkStrategy, Windowing};
use shardflow_stage::{process_batch, InputRecord, JsonDecoder, SequenceNumber, ShardBatch};

#[derive(Debug, Clone, serde::Deserialize)]
struct Purchase {
    product: u32,
    cents: i64,
    ts_ms: i64,
}

type Row = (u32, i64, u64, i64);

fn revenue() -> Pipeline<Purchase, Row> {
    Pipeline::builder("revenue")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(5_000).unwrap())
        .event_time(|p: &Purchase| p.ts_ms)
        .key_by(|p| p.product)
        .window(Windowing::tumbling(60_000).unwrap())
        .trigger(
            Trigger::at_watermark()
                .with_early_firings(Firing::every_processing_ms(10_000))
                .with_allowed_lateness(300_000)
                .unwrap()
                .accumulating(),
        )
        .aggregate((Count, Sum::of(|p: &Purchase| p.cents)), |k, w, _, (n, c)| {
            (*k, w.start, n, c)
        })
        .sink("revenue")
}

/// Batch `n` of 10,000 purchases of 2,000 products, 100 per second of event time.
fn batch(n: u64) -> ShardBatch {
    let records = (0..10_000u64)
        .map(|j| {
            let i = n * 10_000 + j;
            let ts = 1_700_000_000_000 + (i as i64) * 10;
            let data = format!(
                r#"{{"order_id":{i},"product":{},"cents":{},"currency":"EUR","ts_ms":{ts}}}"#,
                (i * 7919) % 2_000,
                100 + i % 5_000
            );
            InputRecord {
                sequence: SequenceNumber::parse(&format!("4965{i:040}")).unwrap(),
                partition_key: format!("order-{i}"),
                arrival_ms: ts + 200,
                data: data.into_bytes(),
            }
        })
        .collect();
    ShardBatch {
        stream: "purchases".into(),
        shard_id: "shardId-000000000000".into(),
        records,
    }
}

fn bench(c: &mut Criterion) {
    let pipeline = revenue();
    let decoder = JsonDecoder::<Purchase>::new();
    // Warm state: the stage has already seen 5 batches.
    let mut warm = pipeline.engine();
    for n in 0..5 {
        let _ = process_batch(&mut warm, "revenue", &batch(n), &decoder, None, None);
    }
    let image = CheckpointImage::new(warm.snapshot_full().unwrap());
    let next = batch(5);
    let mut group = c.benchmark_group("stage_batch_10k");
    group.throughput(Throughput::Elements(10_000));
    group.sample_size(20);
    group.bench_function("decode_process_prepare_commit", |b| {
        b.iter_batched(
            || Engine::restore(&pipeline, &image).unwrap(),
            |mut engine| {
                let out = process_batch(&mut engine, "revenue", &next, &decoder, None, None);
                let cp = engine.snapshot().unwrap();
                (out.outputs.len(), cp.encode().unwrap().len())
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("restore_decode_process_prepare_commit", |b| {
        b.iter(|| {
            let mut engine = Engine::restore(&pipeline, &image).unwrap();
            let out = process_batch(&mut engine, "revenue", &next, &decoder, None, None);
            let cp = engine.snapshot().unwrap();
            (out.outputs.len(), cp.encode().unwrap().len())
        })
    });
    group.finish();
    let mut engine = Engine::restore(&pipeline, &image).unwrap();
    let _ = process_batch(&mut engine, "revenue", &next, &decoder, None, None);
    let cp = engine.snapshot().unwrap();
    eprintln!(
        "commit of one 10k batch: {} key groups written, {} bytes of state",
        cp.key_groups_written(),
        cp.size_hint()
    );
}

/// User plus system CPU time of this process, ms (`None` where `/proc/self/stat` is missing).
fn process_cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name: state is field 3, utime 14 and stime 15 (clock ticks of
    // 1/100 s, USER_HZ).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 * 10.0)
}

/// CPU ms per batch of `f` over `n` runs.
fn cpu_per_run(n: u32, mut f: impl FnMut()) -> Option<f64> {
    let start = process_cpu_ms()?;
    for _ in 0..n {
        f();
    }
    Some((process_cpu_ms()? - start) / f64::from(n))
}

fn cpu_time() {
    let pipeline = revenue();
    let decoder = JsonDecoder::<Purchase>::new();
    let mut warm = pipeline.engine();
    for n in 0..5 {
        let _ = process_batch(&mut warm, "revenue", &batch(n), &decoder, None, None);
    }
    let image = CheckpointImage::new(warm.snapshot_full().unwrap());
    let next = batch(5);
    let runs = 300;
    let restore = cpu_per_run(runs, || {
        std::hint::black_box(Engine::restore(&pipeline, &image).unwrap());
    });
    let all = cpu_per_run(runs, || {
        let mut engine = Engine::restore(&pipeline, &image).unwrap();
        let out = process_batch(&mut engine, "revenue", &next, &decoder, None, None);
        let cp = engine.snapshot().unwrap();
        std::hint::black_box((out.outputs.len(), cp.encode().unwrap().len()));
    });
    if let (Some(restore), Some(all)) = (restore, all) {
        eprintln!(
            "CPU per 10k batch over {runs} runs: restore {restore:.2} ms, decode+process+prepare commit {:.2} ms \
             (with restore {all:.2} ms)",
            all - restore
        );
    }
}

fn bench_and_cpu_time(c: &mut Criterion) {
    bench(c);
    cpu_time();
}

criterion_group!(benches, bench_and_cpu_time);
criterion_main!(benches);
