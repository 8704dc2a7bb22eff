//! Sampling the platform while it runs: every stage's iterator age and live state (the
//! operator's `shardflow status` view, shardflow-lifecycle), the functions' resident memory
//! (their host processes), the state table's size, and the receipts delivered so far.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::platform::StageFunction;
use crate::procs::function_processes;

/// One sample.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sample {
    /// Since the start of the feed (ms).
    pub t_ms: u64,
    /// Records put so far.
    pub put: u64,
    /// Receipts delivered so far (the queue subscribed to the topic).
    pub receipts: u64,
    /// Per stage: the largest iterator age over its shards (ms; the age of the oldest record not
    /// yet checkpointed, 0 when caught up).
    pub iterator_age_ms: BTreeMap<String, i64>,
    /// Per stage: key groups holding state.
    pub state_items: BTreeMap<String, u64>,
    /// Per stage: bytes of state.
    pub state_bytes: BTreeMap<String, u64>,
    /// Items in the whole state table (counted every tenth sample; the others repeat it).
    pub table_items: u64,
    /// Per function: resident memory of its processes (bytes, the largest process).
    pub rss_bytes: BTreeMap<String, u64>,
    /// Per function: processes running.
    pub processes: BTreeMap<String, u64>,
}

/// What the monitor reads.
#[derive(Debug, Clone)]
pub struct Watched {
    /// The running stages.
    pub stages: Vec<StageFunction>,
    /// The state table.
    pub table: String,
    /// The receipts queue.
    pub receipts_queue: String,
    /// The localstack/ directory of the LocalStack.
    pub localstack_home: PathBuf,
}

/// The monitor's shared results.
#[derive(Debug, Default)]
pub struct Monitor {
    /// The samples.
    pub samples: Mutex<Vec<Sample>>,
    /// The receipt messages delivered (bodies).
    pub receipts: Mutex<Vec<String>>,
    /// Records put so far (the feed counts them).
    pub put: AtomicU64,
    /// Set to stop.
    pub stop: AtomicBool,
    /// Every function process seen (pids).
    pub pids: Mutex<std::collections::BTreeSet<u32>>,
}

impl Monitor {
    /// A copy of the samples.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Samples every `every` until `monitor.stop` is set.
pub async fn run(monitor: Arc<Monitor>, watched: Watched, started: Instant, every: Duration) {
    let dynamodb = shardflow_testkit::dynamodb();
    let s3 = shardflow_testkit::s3();
    let kinesis = shardflow_testkit::kinesis();
    let sqs = shardflow_testkit::sqs();
    let functions: Vec<String> = watched.stages.iter().map(|s| s.function.clone()).collect();
    // Per stage, the closed shards it read to their end: not read again (every split and merge
    // adds shards, and reading them all each sample loaded the emulator more as the run went on).
    let mut drained: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut samples = 0u64;
    let mut table_items_seen = 0;
    while !monitor.stop.load(Ordering::Relaxed) {
        let tick = Instant::now();
        let mut sample = Sample {
            t_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            put: monitor.put.load(Ordering::Relaxed),
            ..Sample::default()
        };
        for stage in &watched.stages {
            let mut options = shardflow_lifecycle::StatusOptions::new(&stage.stage, &watched.table);
            options.stream = Some(stage.stream.clone());
            options.skip_shards = drained.get(&stage.stage).cloned().unwrap_or_default();
            match shardflow_lifecycle::stage_status(&dynamodb, &s3, Some(&kinesis), None, &options).await {
                Ok(status) => {
                    drained
                        .entry(stage.stage.clone())
                        .or_default()
                        .extend(status.shards.iter().filter(|s| s.is_drained()).map(|s| s.shard.clone()));
                    let age = status
                        .shards
                        .iter()
                        .filter_map(|s| s.iterator_age_ms)
                        .max()
                        .unwrap_or(0);
                    sample.iterator_age_ms.insert(stage.stage.clone(), age);
                    sample.state_items.insert(
                        stage.stage.clone(),
                        status.shards.iter().map(|s| s.state_items as u64).sum(),
                    );
                    sample
                        .state_bytes
                        .insert(stage.stage.clone(), status.shards.iter().map(|s| s.state_bytes).sum());
                }
                Err(e) => tracing::warn!(stage = stage.stage, "status: {e}"),
            }
        }
        // a COUNT scan of the whole state table: every tenth sample
        if samples.is_multiple_of(10) {
            table_items_seen = table_items(&dynamodb, &watched.table).await;
        }
        samples += 1;
        sample.table_items = table_items_seen;
        for p in function_processes(&watched.localstack_home, &functions) {
            monitor
                .pids
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(p.pid);
            let rss = sample.rss_bytes.entry(p.function.clone()).or_default();
            *rss = (*rss).max(p.rss_bytes);
            *sample.processes.entry(p.function).or_default() += 1;
        }
        let mut got = Vec::new();
        shardflow_e2e::shop::drain_queue(&sqs, &watched.receipts_queue, &mut got).await;
        {
            let mut receipts = monitor.receipts.lock().unwrap_or_else(PoisonError::into_inner);
            receipts.extend(got);
            sample.receipts = receipts.len() as u64;
        }
        monitor
            .samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sample);
        tokio::time::sleep(every.saturating_sub(tick.elapsed())).await;
    }
}

/// Items in `table` (a `COUNT` scan; 0 when it fails).
pub async fn table_items(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> u64 {
    let mut total = 0u64;
    let mut start = None;
    loop {
        let page = dynamodb
            .scan()
            .table_name(table)
            .select(aws_sdk_dynamodb::types::Select::Count)
            .set_exclusive_start_key(start.take())
            .send()
            .await;
        let Ok(page) = page else { return total };
        total += u64::try_from(page.count()).unwrap_or(0);
        match page.last_evaluated_key() {
            Some(key) if !key.is_empty() => start = Some(key.clone()),
            _ => return total,
        }
    }
}
