//! Shared by the stage tests: the purchase input, the revenue pipeline, Kinesis events as Lambda
//! sends them, and the expected results of an uninterrupted run.
#![allow(dead_code)]

pub mod shuffle;
pub mod streams;

use base64::Engine as _;
use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::{Pipeline, Trigger, WatermarkStrategy, Windowing};
use shardflow_lambda::{Stage, StageConfig};
use shardflow_stage::{JsonDecoder, ShardBatch};
use shardflow_stage::{MemoryDeadLetters, MemoryResultSink};

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct Purchase {
    pub product: u32,
    pub cents: i64,
    pub ts_ms: i64,
}

pub type Row = (u32, i64, u64, i64);

pub fn revenue(panic_on: Option<u32>) -> Pipeline<Purchase, Row> {
    Pipeline::builder("revenue")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
        .event_time(|p: &Purchase| p.ts_ms)
        .map(move |p: Purchase| {
            assert!(Some(p.product) != panic_on, "cannot price product {}", p.product);
            p
        })
        .key_by(|p| p.product)
        .window(Windowing::tumbling(10_000).unwrap())
        .trigger(Trigger::at_watermark())
        .aggregate((Count, Sum::of(|p: &Purchase| p.cents)), |k, w, _, (n, c)| {
            (*k, w.start, n, c)
        })
        .sink("revenue")
}

pub type TestStage = Stage<Purchase, Row, JsonDecoder<Purchase>, MemoryResultSink<Row>, MemoryDeadLetters>;

pub async fn stage(name: &str, panic_on: Option<u32>) -> TestStage {
    let (client, table) = shardflow_testkit::state_table(name).await;
    Stage::new(
        "revenue",
        revenue(panic_on),
        JsonDecoder::new(),
        MemoryResultSink::new(),
        MemoryDeadLetters::default(),
        client,
        &table,
        StageConfig::default(),
    )
    .unwrap()
}

/// Purchase `i`: product `i % 3`, one per second.
pub fn purchase(i: u64) -> Vec<u8> {
    serde_json::to_vec(&Purchase {
        product: (i % 3) as u32,
        cents: 100 + i as i64,
        ts_ms: 1_700_000_000_000 + (i as i64) * 1_000,
    })
    .unwrap()
}

/// A Kinesis event of `shard` with the given (index, payload) records, as Lambda sends it.
pub fn event(shard: &str, records: &[(u64, Vec<u8>)]) -> ShardBatch {
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|(i, data)| {
            let seq = format!("4965{i:020}");
            serde_json::json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": format!("p{i}"),
                    "sequenceNumber": seq,
                    "data": base64::engine::general_purpose::STANDARD.encode(data),
                    "approximateArrivalTimestamp": 1_700_000_000.5 + *i as f64,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{shard}:{seq}"),
                "eventName": "aws:kinesis:record",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:000000000000:stream/purchases",
            })
        })
        .collect();
    ShardBatch::from_value(serde_json::json!({ "Records": records })).unwrap()
}

/// Waits until `stream` is active (again, after a reshard).
pub async fn wait_active(kinesis: &aws_sdk_kinesis::Client, stream: &str) {
    for _ in 0..300 {
        let summary = kinesis
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .unwrap();
        if summary
            .stream_description_summary()
            .is_some_and(|s| s.stream_status() == &aws_sdk_kinesis::types::StreamStatus::Active)
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("stream {stream} did not become active");
}

pub fn purchases(range: std::ops::Range<u64>) -> Vec<(u64, Vec<u8>)> {
    range.map(|i| (i, purchase(i))).collect()
}

/// What one engine computes from the input, for comparison (windows closed by the stream so far).
pub fn expected(indexes: impl Iterator<Item = u64>) -> Vec<Row> {
    let p = revenue(None);
    let mut e = p.engine();
    let part = e.partition("x");
    for i in indexes {
        e.process(part, i, 0, serde_json::from_slice(&purchase(i)).unwrap());
    }
    let mut v: Vec<Row> = e.drain_output().into_iter().map(|o| o.value).collect();
    v.sort();
    v
}

/// Every result the containers wrote, one per id; panics if two writes of an id differ.
pub fn distinct_results(containers: &[&TestStage]) -> Vec<Row> {
    let mut by_id: std::collections::BTreeMap<shardflow_engine::ResultId, Row> = std::collections::BTreeMap::new();
    for c in containers {
        for o in c.sink().writes() {
            if let Some(before) = by_id.insert(o.id, o.value) {
                assert_eq!(before, o.value, "two writes of result {:?} differ", o.id);
            }
        }
    }
    let mut rows: Vec<Row> = by_id.into_values().collect();
    rows.sort();
    rows
}

pub fn results(stage: &TestStage) -> Vec<Row> {
    let mut v: Vec<Row> = stage.sink().distinct().into_iter().map(|o| o.value).collect();
    v.sort();
    v
}

/// Crash injection shared by the crash tests: a seeded die decides at every crash point, and the
/// crashes are counted by kind of point (step numbers left out, e.g. `Commit(AfterSpillObject)`).
pub mod crash {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use shardflow_lambda::{CrashPoint, Stage, StageCrashHook, StageError};
    use shardflow_stage::{InputRecord, RecordDecoder, ShardBatch};
    use shardflow_state_dynamodb::StoreError;

    /// The kind of a crash point: its name without step numbers.
    pub fn kind(point: CrashPoint) -> String {
        let name: String = format!("{point:?}").chars().filter(|c| !c.is_ascii_digit()).collect();
        name.replace("()", "")
    }

    /// A seeded die shared by the crash hook and the Lambda simulation, and the crashes so far.
    #[derive(Clone)]
    pub struct Dice {
        pub rng: Arc<Mutex<SmallRng>>,
        pub crashes: Arc<Mutex<BTreeMap<String, usize>>>,
    }

    impl Dice {
        pub fn new(seed: u64) -> Self {
            Dice {
                rng: Arc::new(Mutex::new(SmallRng::seed_from_u64(seed))),
                crashes: Arc::default(),
            }
        }

        /// A hook that crashes at `point` with probability `p(point)`.
        pub fn hook(&self, p: fn(CrashPoint) -> f64) -> StageCrashHook {
            let dice = self.clone();
            Arc::new(move |point| {
                let crash = dice.rng.lock().unwrap().random_bool(p(point));
                if crash {
                    *dice.crashes.lock().unwrap().entry(kind(point)).or_default() += 1;
                }
                crash
            })
        }

        pub fn range(&self, r: std::ops::Range<usize>) -> usize {
            self.rng.lock().unwrap().random_range(r)
        }

        pub fn chance(&self, p: f64) -> bool {
            self.rng.lock().unwrap().random_bool(p)
        }

        pub fn total(&self) -> usize {
            self.crashes.lock().unwrap().values().sum()
        }
    }

    /// One shard as Lambda feeds it: batches from the position after the last acknowledged one
    /// (now and then from an older one: a redelivery), each retried until it is acknowledged.
    pub struct LambdaShard {
        pub stream: String,
        pub shard: String,
        pub records: Vec<InputRecord>,
        /// Records acknowledged so far.
        pub position: usize,
    }

    impl LambdaShard {
        pub fn done(&self) -> bool {
            self.position >= self.records.len()
        }

        /// Records `range` as a batch.
        pub fn batch(&self, range: std::ops::Range<usize>) -> ShardBatch {
            ShardBatch {
                stream: self.stream.clone(),
                shard_id: self.shard.clone(),
                records: self.records[range].to_vec(),
            }
        }

        /// One invocation with a batch of at most `max_batch` records. Only injected crashes may
        /// fail it: any other error (a dangling spill pointer, a checksum mismatch, a conflict in
        /// this sequential run) fails the test.
        pub async fn invoke<In, Out, D, S, L>(
            &mut self,
            stage: &Stage<In, Out, D, S, L>,
            dice: &Dice,
            max_batch: usize,
            context: &str,
        ) where
            In: Send + 'static,
            Out: Send + 'static,
            D: RecordDecoder<In>,
            S: shardflow_stage::ResultSink<Out>,
            L: shardflow_stage::DeadLetterSink,
        {
            let start = if dice.chance(0.1) {
                self.position.saturating_sub(dice.range(0..30))
            } else {
                self.position
            };
            let end = (start + dice.range(1..max_batch + 1)).min(self.records.len());
            match stage.handle(self.batch(start..end)).await {
                Ok(r) => {
                    assert!(r.batch_item_failures.is_empty(), "{context}: {r:?}");
                    self.position = self.position.max(end);
                }
                Err(StageError::InjectedCrash(_)) | Err(StageError::Store(StoreError::InjectedCrash(_))) => {}
                Err(e) => panic!("{context}: {} {start}..{end}: unexpected error {e}", self.shard),
            }
        }
    }
}

/// Purchases keyed by customer, the key being the record's partition key: the pipeline of the
/// resharding and split crash tests.
pub mod by_customer {
    use shardflow_engine::combine::{Count, Sum};
    use shardflow_engine::{Pipeline, Trigger, WatermarkStrategy, Windowing};

    #[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
    pub struct Purchase {
        pub customer: String,
        pub cents: i64,
        pub ts_ms: i64,
    }

    pub type Row = (String, i64, u64, i64);

    /// Revenue per customer in 10-second windows; the key is the record's partition key.
    pub fn revenue() -> Pipeline<Purchase, Row> {
        Pipeline::builder("revenue-by-customer")
            .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
            .max_key_groups(16)
            .event_time(|p: &Purchase| p.ts_ms)
            .key_by(|p| p.customer.clone())
            .window(Windowing::tumbling(10_000).unwrap())
            .trigger(Trigger::at_watermark())
            .aggregate((Count, Sum::of(|p: &Purchase| p.cents)), |k, w, _, (n, c)| {
                (k.clone(), w.start, n, c)
            })
            .sink("revenue")
    }
}
