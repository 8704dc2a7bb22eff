//! The producer's own cost, without a network: records sent through [`KinesisProducer`] into
//! in-memory implementations of its transport trait, until `flush` acknowledges all of them.
//!
//! * `discard`: the transport stores every record at once (batching, per-key ordering, the
//!   buffer and acknowledgement only);
//! * `sdk_entries`: the transport also builds the SDK's `PutRecordsRequestEntry` per record, as
//!   `KinesisTransport` does before its HTTP call.
//!
//! Workloads: 200-byte records under 100 000 distinct keys (CDC of many rows), and under 16 keys
//! (a few hot rows: the producer keeps one record per key in flight, so each call carries at most
//! 16 records).
//!
//! `cargo bench -p shardflow-kinesis --bench producer`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardflow_kinesis::{
    request_entries, CallError, KinesisProducer, ProducerConfig, PutRecordsTransport, RecordResult, StreamRecord,
};

/// Stores every record at once.
#[derive(Clone, Default)]
struct Discard {
    stored: Arc<AtomicU64>,
    build_entries: bool,
}

impl PutRecordsTransport for Discard {
    async fn put_records(&self, records: &[StreamRecord]) -> Result<Vec<RecordResult>, CallError> {
        if self.build_entries {
            std::hint::black_box(request_entries(records)?);
        }
        self.stored.fetch_add(records.len() as u64, Ordering::Relaxed);
        let stored = RecordResult::Stored {
            shard_id: "shardId-000000000000".into(),
            sequence_number: "1".into(),
        };
        Ok(vec![stored; records.len()])
    }
}

fn records(n: usize, keys: usize) -> Vec<StreamRecord> {
    (0..n)
        .map(|i| StreamRecord::new(format!("public.orders|{}", i % keys), vec![(i % 251) as u8; 200]))
        .collect()
}

/// Sends `records` and waits for the acknowledgement, on `runtime`; returns the elapsed time.
fn run(runtime: &tokio::runtime::Runtime, records: &[StreamRecord], build_entries: bool) -> Duration {
    let records = records.to_vec();
    runtime.block_on(async move {
        let transport = Discard {
            build_entries,
            ..Discard::default()
        };
        let stored = Arc::clone(&transport.stored);
        let producer = KinesisProducer::new(transport, ProducerConfig::default());
        let n = records.len() as u64;
        let started = Instant::now();
        for record in records {
            producer.send(record).await.expect("an accepted record");
        }
        producer.flush().await.expect("everything stored");
        let elapsed = started.elapsed();
        assert_eq!(stored.load(Ordering::Relaxed), n);
        elapsed
    })
}

fn producer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("producer");
    group.sample_size(10);
    for (name, n, keys) in [("distinct_keys", 100_000, 100_000), ("16_hot_keys", 20_000, 16)] {
        let input = records(n, keys);
        group.throughput(Throughput::Elements(n as u64));
        for (transport, build) in [("discard", false), ("sdk_entries", true)] {
            group.bench_function(format!("{name}/{transport}"), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| run(&runtime, &input, build)).sum())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, producer);
criterion_main!(benches);
