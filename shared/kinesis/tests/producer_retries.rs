//! The producer against an injected transport that fails records at random: exactly the failed
//! records are retried, each partition key's records are stored in send order, `flush` returns
//! only when everything is stored, and the buffer bounds what `send` accepts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shardflow_kinesis::{
    Backoff, CallError, InvalidRecord, KinesisProducer, ProducerConfig, ProducerError, PutRecordsTransport,
    RecordResult, StreamRecord,
};
use tokio::sync::Semaphore;

/// Stores records in the order of a simulated stream; fails each with the given probability
/// (throttled), sometimes fails whole calls, and takes a random time per call.
#[derive(Clone)]
struct FlakyStream {
    stored: Arc<Mutex<Vec<StreamRecord>>>,
    rng: Arc<Mutex<SmallRng>>,
    record_failure: f64,
    call_failure: f64,
    calls: Arc<Mutex<Vec<usize>>>,
}

impl FlakyStream {
    fn new(seed: u64, record_failure: f64, call_failure: f64) -> Self {
        FlakyStream {
            stored: Arc::default(),
            rng: Arc::new(Mutex::new(SmallRng::seed_from_u64(seed))),
            record_failure,
            call_failure,
            calls: Arc::default(),
        }
    }
}

impl PutRecordsTransport for FlakyStream {
    async fn put_records(&self, records: &[StreamRecord]) -> Result<Vec<RecordResult>, CallError> {
        self.calls.lock().unwrap().push(records.len());
        let (delay, whole_call_fails, fails): (u64, bool, Vec<bool>) = {
            let mut rng = self.rng.lock().unwrap();
            (
                rng.random_range(0..3),
                rng.random_bool(self.call_failure),
                records.iter().map(|_| rng.random_bool(self.record_failure)).collect(),
            )
        };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        if whole_call_fails {
            return Err(CallError::Retryable("ServiceUnavailable".into()));
        }
        let mut stored = self.stored.lock().unwrap();
        Ok(records
            .iter()
            .zip(fails)
            .map(|(r, fail)| {
                if fail {
                    RecordResult::Failed {
                        code: "ProvisionedThroughputExceededException".into(),
                        message: "Rate exceeded for shard".into(),
                    }
                } else {
                    stored.push(r.clone());
                    RecordResult::Stored {
                        shard_id: "shardId-000000000000".into(),
                        sequence_number: stored.len().to_string(),
                    }
                }
            })
            .collect())
    }
}

fn fast_backoff() -> Backoff {
    Backoff {
        base: Duration::from_millis(1),
        max: Duration::from_millis(20),
        max_attempts: 100,
    }
}

/// The record's payload: its key and its number among that key's records.
fn record(key: usize, n: usize) -> StreamRecord {
    StreamRecord::new(format!("key-{key}"), format!("{key}:{n}").into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_records_are_retried_without_reordering_any_key_and_flush_waits_for_all() {
    let stream = FlakyStream::new(7, 0.3, 0.05);
    let config = ProducerConfig {
        backoff: fast_backoff(),
        calls_in_flight: 4,
        ..ProducerConfig::default()
    };
    let producer = KinesisProducer::new(stream.clone(), config);
    let mut rng = SmallRng::seed_from_u64(1);
    let mut per_key = vec![0usize; 50];
    let total = 5_000;
    for _ in 0..total {
        let key = rng.random_range(0..per_key.len());
        producer.send(record(key, per_key[key])).await.unwrap();
        per_key[key] += 1;
    }
    producer.flush().await.unwrap();

    let stored = stream.stored.lock().unwrap().clone();
    assert_eq!(stored.len(), total, "every record stored exactly once after flush");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &stored {
        let text = String::from_utf8(r.data.clone()).unwrap();
        let n: usize = text.split(':').nth(1).unwrap().parse().unwrap();
        let next = seen.entry(r.partition_key.clone()).or_default();
        assert_eq!(n, *next, "{} stored out of order", r.partition_key);
        *next += 1;
    }
    let stats = producer.stats();
    assert_eq!(stats.stored, total as u64);
    assert!(stats.throttled > 0 && stats.retried >= stats.throttled, "{stats:?}");
    assert!(stream.calls.lock().unwrap().iter().all(|n| *n <= 500));
}

#[tokio::test(flavor = "current_thread")]
async fn a_record_over_one_megabyte_is_refused_and_the_producer_stays_usable() {
    let stream = FlakyStream::new(1, 0.0, 0.0);
    let producer = KinesisProducer::new(stream.clone(), ProducerConfig::default());
    let err = producer
        .send(StreamRecord::new("big", vec![0; 1 << 20]))
        .await
        .unwrap_err();
    assert!(matches!(err, ProducerError::Invalid(InvalidRecord::TooLarge { bytes, .. }) if bytes == (1 << 20) + 3));
    assert!(err.to_string().contains("over the 1048576-byte record limit"), "{err}");
    producer.send(record(1, 0)).await.unwrap();
    producer.flush().await.unwrap();
    assert_eq!(stream.stored.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_permanent_failure_stops_the_producer_and_fails_flush() {
    struct Denied;
    impl PutRecordsTransport for Denied {
        async fn put_records(&self, records: &[StreamRecord]) -> Result<Vec<RecordResult>, CallError> {
            Ok(records
                .iter()
                .map(|_| RecordResult::Failed {
                    code: "AccessDeniedException".into(),
                    message: "no".into(),
                })
                .collect())
        }
    }
    let producer = KinesisProducer::new(Denied, ProducerConfig::default());
    producer.send(record(1, 0)).await.unwrap();
    let err = producer.flush().await.unwrap_err();
    assert!(
        matches!(&err, ProducerError::Rejected { code, .. } if code == "AccessDeniedException"),
        "{err}"
    );
    assert_eq!(producer.send(record(1, 1)).await.unwrap_err(), err);
}

#[tokio::test(flavor = "current_thread")]
async fn records_out_of_retries_stop_the_producer() {
    let stream = FlakyStream::new(3, 1.0, 0.0);
    let config = ProducerConfig {
        backoff: Backoff {
            max_attempts: 3,
            ..fast_backoff()
        },
        ..ProducerConfig::default()
    };
    let producer = KinesisProducer::new(stream, config);
    producer.send(record(1, 0)).await.unwrap();
    let err = producer.flush().await.unwrap_err();
    assert!(
        matches!(err, ProducerError::RetriesExhausted { attempts: 4, .. }),
        "{err}"
    );
}

/// Holds every call until released.
struct Gate(Arc<Semaphore>);

impl PutRecordsTransport for Gate {
    async fn put_records(&self, records: &[StreamRecord]) -> Result<Vec<RecordResult>, CallError> {
        let _pass = self.0.acquire().await.map_err(|e| CallError::Fatal(e.to_string()))?;
        Ok(records
            .iter()
            .map(|_| RecordResult::Stored {
                shard_id: "shardId-000000000000".into(),
                sequence_number: "1".into(),
            })
            .collect())
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn send_waits_while_the_buffer_is_full_and_resumes_when_records_are_stored() {
    let gate = Arc::new(Semaphore::new(0));
    let config = ProducerConfig {
        buffer_bytes: 0, // raised to its minimum: two maximal records
        ..ProducerConfig::default()
    };
    let producer = KinesisProducer::new(Gate(Arc::clone(&gate)), config);
    let budget = producer.config().buffer_bytes;
    let big = |i: usize| StreamRecord::new(format!("k{i}"), vec![0; 900 * 1024]);
    producer.send(big(0)).await.unwrap();
    producer.send(big(1)).await.unwrap();
    assert!(budget < 3 * 900 * 1024);
    let third = tokio::time::timeout(Duration::from_secs(60), producer.send(big(2))).await;
    assert!(third.is_err(), "a third record must wait for buffer space");
    gate.add_permits(100);
    tokio::time::timeout(Duration::from_secs(60), producer.send(big(2)))
        .await
        .expect("space frees up once calls are stored")
        .unwrap();
    producer.flush().await.unwrap();
    assert_eq!(producer.stats().stored, 3);
}
