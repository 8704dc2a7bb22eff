//! The model: a platform's per-batch profiles and a workload into dollars per month, itemised per
//! stage, stream and service, for each way of running it.
//!
//! # Batches
//! A stage's event source mapping invokes it per shard when a batch is full (`batch_size`
//! Kinesis records) or its batching window has passed, and only when records arrived: batches
//! per second and shard = `min(records/s, max(1 / max(window, 1 s), records/s / batch_size))`
//! (with a window under a second, Lambda still polls a shard about once a second).
//!
//! # Checkpoints
//! - **Every batch** (today's stages): each batch loads the shard's state (the checkpoint item
//!   and every live item, strongly consistent, each item rounded up to 4 KB on its own) and
//!   commits the dirty items plus the checkpoint item in `TransactWriteItems` (2 WRU per started
//!   KB), then deletes the superseded slot of each dirty item (1 WRU each).
//! - **Every N batches or seconds** (`SHARDFLOW_CHECKPOINT_INTERVAL_*`): a batch reads the
//!   checkpoint and progress items in one query, continues from memory and moves the progress
//!   item (one standard write); a commit every `k`
//!   batches writes the items dirtied since the last one. With `d` of `L` live items dirtied per
//!   batch, uniformly, `k` batches dirty `L·(1 − (1 − d/L)^k)` distinct items, so the saving on
//!   writes is `k` only when the same items are dirtied every batch and less otherwise. A shard
//!   reloads its state cold `reloads_per_shard_hour` times an hour (a new container, another
//!   container taking the shard); replaying the gap from Kinesis is free (`GetRecords`).
//! - **Lambda tumbling windows** (`TumblingWindowInSeconds`): no DynamoDB at all; Lambda passes
//!   the state between invocations and invokes each shard once more at the end of every window.
//!   Keyed stages only; the state is limited to 1 MB per shard, windows are by arrival, not event
//!   time, and there are no late or early panes: a price reference, not an equivalent.
//! - **Managed Flink**: one application for the platform, KPUs for the rate, the orchestration
//!   KPU and running storage; the shuffle happens inside it, so no shuffle streams.
//!
//! Sinks (SNS, S3, output streams) and the source stream are the same work in every column.

use serde::Serialize;

use crate::error::{at_least, within, CostError};
use crate::prices::{
    lambda_gb_seconds, message_requests, put_payload_units, rru, unit_bytes, wru_standard, wru_transactional,
    Architecture, Prices, ReadConsistency, SECONDS_PER_MONTH,
};
use crate::profile::{Platform, StageOutput, StageProfile, StreamRole};

/// Bytes of the watermark record an upstream batch sends to every shard of a shuffle stream.
const SHUFFLE_WATERMARK_BYTES: f64 = 100.0;
/// Most bytes of one Kinesis record (a shuffle frame).
const MAX_RECORD_BYTES: f64 = 1_048_576.0;
/// Messages in one SNS `PublishBatch` request.
const SNS_BATCH: f64 = 10.0;

/// How often a stage commits its state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointInterval {
    /// Every N batches (1: every batch, today's stages).
    Batches(f64),
    /// Every N seconds.
    Seconds(f64),
}

impl CheckpointInterval {
    /// Batches per checkpoint at `batches_per_s` batches a second of a shard (at least 1).
    pub fn batches_per_checkpoint(&self, batches_per_s: f64) -> f64 {
        match *self {
            CheckpointInterval::Batches(n) => n.max(1.0),
            CheckpointInterval::Seconds(s) => (s * batches_per_s).max(1.0),
        }
    }

    /// Whether every batch commits.
    pub fn every_batch(&self) -> bool {
        matches!(*self, CheckpointInterval::Batches(n) if n <= 1.0)
    }

    /// A short label: `every batch`, `every 30 s`, `every 5 batches`.
    pub fn label(&self) -> String {
        match *self {
            _ if self.every_batch() => "every batch".to_owned(),
            CheckpointInterval::Batches(n) => format!("every {n} batches"),
            CheckpointInterval::Seconds(s) => format!("every {s} s"),
        }
    }
}

/// The rate and the knobs of the deployment the model costs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workload {
    /// Events put into the platform's source stream per second.
    pub events_per_s: f64,
    /// The event source mappings' batch size (Kinesis records).
    pub batch_size: f64,
    /// The event source mappings' batching window, seconds.
    pub batching_window_s: f64,
    /// The functions' architecture.
    pub architecture: Architecture,
    /// Cold reloads of a shard's state per hour between checkpoints (warm state, issue 19).
    pub reloads_per_shard_hour: f64,
    /// The Lambda tumbling window, seconds.
    pub tumbling_window_s: f64,
    /// Input events per second one Managed Flink KPU runs the whole platform at.
    pub flink_events_per_kpu: f64,
}

impl Workload {
    /// Checks every figure is in range.
    pub fn validate(&self) -> Result<(), CostError> {
        at_least("--rate", self.events_per_s, 0.0, "a finite number ≥ 0")?;
        within("--batch-size", self.batch_size, 1.0, 10_000.0, "1 to 10,000")?;
        within("--batching-window-s", self.batching_window_s, 0.0, 300.0, "0 to 300")?;
        at_least(
            "--reloads-per-shard-hour",
            self.reloads_per_shard_hour,
            0.0,
            "a finite number ≥ 0",
        )?;
        within("--tumbling-window-s", self.tumbling_window_s, 1.0, 900.0, "1 to 900")?;
        at_least("--flink-events-per-kpu", self.flink_events_per_kpu, 1.0, "at least 1")?;
        Ok(())
    }
}

/// A way of running the platform: one column of the table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Deployment {
    /// shardflow's Lambda stages, committing state as the interval says.
    Shardflow(CheckpointInterval),
    /// The same stages on Lambda's built-in tumbling windows, without DynamoDB.
    LambdaTumbling,
    /// One Amazon Managed Service for Apache Flink application.
    ManagedFlink,
}

impl Deployment {
    /// The column's heading.
    pub fn label(&self, workload: &Workload) -> String {
        match self {
            Deployment::Shardflow(interval) if interval.every_batch() => "commit every batch".to_owned(),
            Deployment::Shardflow(interval) => format!("commit {}", interval.label()),
            Deployment::LambdaTumbling => format!("Lambda tumbling {} s", workload.tumbling_window_s),
            Deployment::ManagedFlink => "Managed Flink".to_owned(),
        }
    }
}

/// A billed service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Service {
    /// AWS Lambda.
    Lambda,
    /// Amazon DynamoDB.
    DynamoDB,
    /// Amazon Kinesis Data Streams.
    Kinesis,
    /// Amazon S3.
    S3,
    /// Amazon SNS.
    SNS,
    /// Amazon SQS.
    SQS,
    /// Amazon CloudWatch (logs and EMF metrics).
    CloudWatch,
    /// Amazon Managed Service for Apache Flink.
    ManagedFlink,
}

impl Service {
    /// Every service, in the table's order.
    pub const ALL: [Service; 8] = [
        Service::Lambda,
        Service::DynamoDB,
        Service::Kinesis,
        Service::S3,
        Service::SNS,
        Service::SQS,
        Service::CloudWatch,
        Service::ManagedFlink,
    ];

    /// Its name in the table.
    pub fn name(&self) -> &'static str {
        match self {
            Service::Lambda => "Lambda",
            Service::DynamoDB => "DynamoDB",
            Service::Kinesis => "Kinesis",
            Service::S3 => "S3",
            Service::SNS => "SNS",
            Service::SQS => "SQS",
            Service::CloudWatch => "CloudWatch",
            Service::ManagedFlink => "Managed Flink",
        }
    }
}

/// One item of a column: what a stage, stream or application costs of one service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    /// The stage, the stream (`stream NAME`) or the application.
    pub item: String,
    /// The service.
    pub service: Service,
    /// Dollars per month.
    pub usd_month: f64,
    /// The usage behind it, per month.
    pub usage: String,
    /// Whether it is the same work in every column (sinks, the source and output streams).
    pub common: bool,
}

/// One column: a deployment's lines and totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Column {
    /// How the platform runs.
    pub deployment: Deployment,
    /// The heading.
    pub label: String,
    /// Its items.
    pub lines: Vec<Line>,
    /// Dollars per month per service, in [`Service::ALL`]'s order.
    pub by_service: Vec<(Service, f64)>,
    /// Dollars per month.
    pub total_usd_month: f64,
    /// Dollars per month of the lines that differ between columns (processing, state,
    /// shuffle streams, logs and metrics): the total less the same work in every column.
    pub processing_usd_month: f64,
    /// Dollars per million events.
    pub usd_per_million_events: f64,
}

/// What one batch rate means for a stage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Traffic {
    /// Shards of its input stream.
    pub shards: f64,
    /// Batches per second of one shard.
    pub batches_per_s_shard: f64,
    /// Logical records per batch.
    pub records_per_batch: f64,
    /// Results per batch.
    pub results_per_batch: f64,
}

impl Traffic {
    /// Batches per month over all shards.
    pub fn batches_month(&self) -> f64 {
        self.batches_per_s_shard * self.shards * SECONDS_PER_MONTH
    }
}

/// DynamoDB units of a stage per batch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DynamoDbPerBatch {
    /// Read units.
    pub rru: f64,
    /// Write units.
    pub wru: f64,
    /// Batches per commit.
    pub batches_per_commit: f64,
    /// Items a commit writes besides the checkpoint item.
    pub items_per_commit: f64,
}

/// Bytes of a shard's progress item (sequence number, container id, versions, counters).
pub const PROGRESS_ITEM_BYTES: f64 = 200.0;

/// DynamoDB read and write units per batch of `stage` committing at `interval`.
pub fn dynamodb_per_batch(
    stage: &StageProfile,
    traffic: &Traffic,
    interval: CheckpointInterval,
    reloads_per_shard_hour: f64,
) -> DynamoDbPerBatch {
    let state = &stage.state;
    let live = state.live_items;
    let item_bytes = if live > 0.0 { state.state_bytes / live } else { 0.0 };
    let derived_load =
        rru(state.checkpoint_item_bytes, ReadConsistency::Strong) + live * rru(item_bytes, ReadConsistency::Strong);
    let derived_commit = |dirty: f64| {
        wru_transactional(state.checkpoint_item_bytes)
            + dirty * (wru_transactional(item_bytes) + wru_standard(item_bytes))
    };
    let k = interval.batches_per_checkpoint(traffic.batches_per_s_shard);
    let dirty = if live > 0.0 {
        state.dirty_items_per_batch.min(live)
    } else {
        state.dirty_items_per_batch
    };
    let items_per_commit = if k <= 1.0 || live <= 0.0 {
        dirty
    } else {
        live * (1.0 - (1.0 - dirty / live).powf(k))
    };
    let (load, warm, commit) = match &stage.dynamodb_units {
        Some(units) => (units.load_rru, units.warm_check_rru, units.commit_wru),
        None => (
            derived_load,
            rru(state.checkpoint_item_bytes, ReadConsistency::Strong),
            derived_commit(items_per_commit),
        ),
    };
    if k <= 1.0 {
        return DynamoDbPerBatch {
            rru: load,
            wru: commit,
            batches_per_commit: 1.0,
            items_per_commit,
        };
    }
    // Every batch at an interval moves the shard's progress item (one standard write), and the
    // warm check reads it with the checkpoint item in one query.
    let progress = wru_standard(PROGRESS_ITEM_BYTES);
    let warm = match &stage.dynamodb_units {
        Some(_) => warm,
        None => rru(
            state.checkpoint_item_bytes + PROGRESS_ITEM_BYTES,
            ReadConsistency::Strong,
        ),
    };
    let reload = reload_fraction(traffic, reloads_per_shard_hour);
    DynamoDbPerBatch {
        rru: (1.0 - reload) * warm + reload * load,
        wru: commit / k + progress,
        batches_per_commit: k,
        items_per_commit,
    }
}

/// The share of a shard's batches that reload state cold.
fn reload_fraction(traffic: &Traffic, reloads_per_shard_hour: f64) -> f64 {
    if traffic.batches_per_s_shard <= 0.0 {
        return 0.0;
    }
    (reloads_per_shard_hour / 3_600.0 / traffic.batches_per_s_shard).min(1.0)
}

/// The dollars of one platform on `deployments`, itemised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The platform.
    pub platform: String,
    /// The workload.
    pub workload: Workload,
    /// The prices' region.
    pub region: String,
    /// The date the prices were taken as of.
    pub prices_as_of: String,
    /// Per stage: its input shards, batches and records per batch (the same in every column).
    pub traffic: Vec<(String, Traffic)>,
    /// Managed Flink's application KPUs (the orchestration KPU not included).
    pub flink_kpus: f64,
    /// The columns.
    pub columns: Vec<Column>,
    /// What the figures rest on.
    pub basis: Vec<crate::profile::Basis>,
    /// What the model leaves out.
    pub not_modelled: Vec<String>,
}

impl Report {
    /// The column of `deployment`, if costed.
    pub fn column(&self, deployment: Deployment) -> Option<&Column> {
        self.columns.iter().find(|c| c.deployment == deployment)
    }
}

/// Managed Flink application KPUs for `events_per_s` at `events_per_kpu` (at least 1; the
/// orchestration KPU comes on top).
pub fn flink_kpus(events_per_s: f64, events_per_kpu: f64) -> f64 {
    (events_per_s / events_per_kpu).ceil().max(1.0)
}

/// Costs `platform` under `workload` at `prices`, one column per deployment.
pub fn cost(
    platform: &Platform,
    workload: &Workload,
    prices: &Prices,
    deployments: &[Deployment],
) -> Result<Report, CostError> {
    workload.validate()?;
    platform.validate()?;
    let traffic = traffic(platform, workload)?;
    let events_month = workload.events_per_s * SECONDS_PER_MONTH;
    let columns = deployments
        .iter()
        .map(|d| {
            let lines = column_lines(platform, workload, prices, &traffic, *d);
            let by_service = Service::ALL
                .iter()
                .map(|s| (*s, lines.iter().filter(|l| l.service == *s).map(|l| l.usd_month).sum()))
                .collect::<Vec<(Service, f64)>>();
            let total: f64 = lines.iter().map(|l| l.usd_month).sum();
            let processing = lines.iter().filter(|l| !l.common).map(|l| l.usd_month).sum();
            Column {
                deployment: *d,
                label: d.label(workload),
                lines,
                by_service,
                total_usd_month: total,
                processing_usd_month: processing,
                usd_per_million_events: if events_month > 0.0 {
                    total / (events_month / 1e6)
                } else {
                    0.0
                },
            }
        })
        .collect();
    Ok(Report {
        platform: platform.name.clone(),
        workload: workload.clone(),
        region: prices.region.clone(),
        prices_as_of: prices.as_of.clone(),
        traffic: platform
            .stages
            .iter()
            .zip(&traffic)
            .map(|(s, t)| (s.name.clone(), t.traffic))
            .collect(),
        flink_kpus: flink_kpus(workload.events_per_s, workload.flink_events_per_kpu),
        columns,
        basis: platform.basis.clone(),
        not_modelled: not_modelled(),
    })
}

/// What the model leaves out, for the reader of its table.
fn not_modelled() -> Vec<String> {
    [
        "free tiers, savings plans, reserved capacity and volume tiers",
        "the revenue stage's Postgres (RDS) and its Secrets Manager secret: the same in every column",
        "KMS requests of the encrypted streams and topic; data transfer (all in one region)",
        "what SNS subscribers and readers of the outputs pay; SNS deliveries to SQS are free",
        "S3 storage beyond one month of what is written (outputs accumulate)",
        "CloudWatch alarms and Managed Flink's logs; durable application backups of Managed Flink",
        "retries and bisected batches beyond invocations_per_batch",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// A stage's traffic and the Kinesis records it writes per month.
struct StageTraffic {
    traffic: Traffic,
    put_units_out_month: f64,
}

fn traffic(platform: &Platform, workload: &Workload) -> Result<Vec<StageTraffic>, CostError> {
    // Kinesis records per second on each stream, filled in as writers are met.
    let mut records_per_s: Vec<f64> = platform
        .streams
        .iter()
        .map(|s| match s.role {
            StreamRole::Source => workload.events_per_s,
            _ => 0.0,
        })
        .collect();
    let index = |stage: &StageProfile, name: &str| {
        platform
            .streams
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| CostError::UnknownStream {
                stage: stage.name.clone(),
                stream: name.to_owned(),
            })
    };
    let mut out = Vec::with_capacity(platform.stages.len());
    for stage in &platform.stages {
        let input = index(stage, &stage.input_stream)?;
        let shards = f64::from(platform.streams[input].shards);
        let kinesis_per_shard = records_per_s[input] / shards;
        let window = workload.batching_window_s.max(1.0);
        let batches_per_s_shard = kinesis_per_shard.min((1.0 / window).max(kinesis_per_shard / workload.batch_size));
        let records_per_batch = if batches_per_s_shard > 0.0 {
            workload.events_per_s * stage.records_per_event / shards / batches_per_s_shard
        } else {
            0.0
        };
        let traffic = Traffic {
            shards,
            batches_per_s_shard,
            records_per_batch,
            results_per_batch: records_per_batch * stage.results_per_record,
        };
        let batches_per_s = batches_per_s_shard * shards;
        let (kinesis_records_out_per_s, put_units_out_per_s) = match &stage.output {
            None => (0.0, 0.0),
            Some(StageOutput::Records { .. }) => {
                let results = traffic.results_per_batch * batches_per_s;
                (results, results * put_payload_units(stage.result_bytes))
            }
            Some(StageOutput::Shuffle {
                stream,
                bytes_per_record,
            }) => {
                let target = f64::from(platform.streams[index(stage, stream)?].shards);
                let per_shard = records_per_batch * bytes_per_record / target + SHUFFLE_WATERMARK_BYTES;
                let frames = (per_shard / MAX_RECORD_BYTES).ceil().max(1.0);
                (
                    batches_per_s * target * frames,
                    batches_per_s * target * put_payload_units(per_shard).max(frames),
                )
            }
        };
        if let Some(stream) = stage.output_stream() {
            records_per_s[index(stage, stream)?] += kinesis_records_out_per_s;
        }
        out.push(StageTraffic {
            traffic,
            put_units_out_month: put_units_out_per_s * SECONDS_PER_MONTH,
        });
    }
    Ok(out)
}

fn millions(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.2}G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn column_lines(
    platform: &Platform,
    workload: &Workload,
    prices: &Prices,
    traffic: &[StageTraffic],
    deployment: Deployment,
) -> Vec<Line> {
    let mut lines = Vec::new();
    // `common`: the same work in every column (sinks, the streams every column needs).
    let mut push = |item: &str, service: Service, usd_month: f64, usage: String, common: bool| {
        lines.push(Line {
            item: item.to_owned(),
            service,
            usd_month,
            usage,
            common,
        })
    };
    let flink = deployment == Deployment::ManagedFlink;
    for (stage, t) in platform.stages.iter().zip(traffic) {
        let tr = &t.traffic;
        let batches = tr.batches_month();
        let shuffle_upstream = matches!(stage.output, Some(StageOutput::Shuffle { .. }));
        if !flink {
            // Lambda: invocations and duration.
            let base_ms = (stage.duration_ms_per_batch - stage.load_ms - stage.commit_ms).max(1.0);
            let (invocations, billed_ms, dynamo) = match deployment {
                Deployment::Shardflow(interval) => {
                    let d = dynamodb_per_batch(stage, tr, interval, workload.reloads_per_shard_hour);
                    let ms = if d.batches_per_commit <= 1.0 {
                        stage.duration_ms_per_batch
                    } else {
                        let reload = reload_fraction(tr, workload.reloads_per_shard_hour);
                        base_ms
                            + (1.0 - reload) * stage.warm_check_ms
                            + reload * stage.load_ms
                            + stage.commit_ms / d.batches_per_commit
                    };
                    (batches * stage.invocations_per_batch, ms, Some(d))
                }
                _ => {
                    let windows = if stage.keyed {
                        tr.shards * SECONDS_PER_MONTH / workload.tumbling_window_s
                    } else {
                        0.0
                    };
                    (batches * stage.invocations_per_batch + windows, base_ms, None)
                }
            };
            let gb_s = lambda_gb_seconds(invocations, billed_ms, stage.memory_mb);
            push(
                &stage.name,
                Service::Lambda,
                prices.lambda(gb_s, invocations, workload.architecture),
                format!(
                    "{} invocations, {billed_ms:.0} ms at {} MB: {} GB-s",
                    millions(invocations),
                    stage.memory_mb,
                    millions(gb_s)
                ),
                false,
            );
            if let Some(d) = dynamo {
                let rru = d.rru * batches;
                let wru = d.wru * batches;
                let stored_gb = tr.shards
                    * (stage.state.state_bytes + stage.state.live_items * 100.0 + stage.state.checkpoint_item_bytes)
                    / unit_bytes::GB;
                push(
                    &stage.name,
                    Service::DynamoDB,
                    prices.dynamodb(rru, wru) + prices.dynamodb_storage(stored_gb),
                    format!(
                        "{} RRU, {} WRU ({:.1} items per commit, a commit per {:.1} batches)",
                        millions(rru),
                        millions(wru),
                        d.items_per_commit + 1.0,
                        d.batches_per_commit
                    ),
                    false,
                );
            }
            // CloudWatch: Lambda's own log lines; shardflow's stages add their EMF line and metrics.
            let emf = matches!(deployment, Deployment::Shardflow(_));
            let log_bytes = invocations * stage.platform_log_bytes_per_invocation
                + if emf { batches * stage.emf_bytes_per_batch } else { 0.0 };
            let metrics = if emf { stage.emf_metrics } else { 0.0 };
            push(
                &stage.name,
                Service::CloudWatch,
                prices.cloudwatch(log_bytes / unit_bytes::GB, metrics),
                format!(
                    "{:.1} GB of logs, {metrics:.0} custom metrics",
                    log_bytes / unit_bytes::GB
                ),
                false,
            );
            if stage.sqs_requests_per_batch > 0.0 {
                let requests = stage.sqs_requests_per_batch * batches;
                push(
                    &stage.name,
                    Service::SQS,
                    prices.sqs(requests),
                    format!("{} requests", millions(requests)),
                    false,
                );
            }
        } else if shuffle_upstream {
            // Managed Flink shuffles inside the application.
            continue;
        }
        // Sinks: the same work in every column.
        let results = tr.results_per_batch * batches;
        let bucket_objects = stage.s3_bucket_objects_per_shard_hour * tr.shards * SECONDS_PER_MONTH / 3_600.0;
        let puts = stage.s3_puts_per_batch * batches + stage.s3_puts_per_result * results + bucket_objects;
        let gets = stage.s3_gets_per_batch * batches;
        if puts + gets > 0.0 {
            let records = tr.records_per_batch * batches;
            let results_written = stage.s3_puts_per_result + if bucket_objects > 0.0 { 1.0 } else { 0.0 };
            let gb = (stage.s3_put_bytes_per_record * records + results_written * results * stage.result_bytes)
                / unit_bytes::GB;
            push(
                &stage.name,
                Service::S3,
                prices.s3(puts, gets, gb),
                format!("{} PUT, {} GET, {gb:.0} GB written", millions(puts), millions(gets)),
                true,
            );
        }
        let messages = tr.results_per_batch * stage.sns_messages_per_result;
        if messages > 0.0 {
            let per_batch = (messages / SNS_BATCH)
                .ceil()
                .max(message_requests(messages * stage.result_bytes));
            let requests = per_batch * batches;
            push(
                &stage.name,
                Service::SNS,
                prices.sns(requests),
                format!(
                    "{} PublishBatch requests of {:.1} messages",
                    millions(requests),
                    messages / per_batch
                ),
                true,
            );
        }
    }
    // Streams.
    for stream in &platform.streams {
        if flink && stream.role == StreamRole::Shuffle {
            continue;
        }
        let units: f64 = match stream.role {
            StreamRole::Source => workload.events_per_s * SECONDS_PER_MONTH * put_payload_units(stream.record_bytes),
            _ => platform
                .stages
                .iter()
                .zip(traffic)
                .filter(|(s, _)| s.output_stream() == Some(stream.name.as_str()))
                .map(|(_, t)| t.put_units_out_month)
                .sum(),
        };
        let shards = f64::from(stream.shards);
        push(
            &format!("stream {}", stream.name),
            Service::Kinesis,
            prices.kinesis_shards_month(shards, stream.retention_hours) + prices.kinesis_put_units(units),
            format!(
                "{} shards × 730 h ({} h retention), {} PUT payload units",
                stream.shards,
                stream.retention_hours,
                millions(units)
            ),
            stream.role != StreamRole::Shuffle,
        );
    }
    if flink {
        let kpus = flink_kpus(workload.events_per_s, workload.flink_events_per_kpu);
        push(
            "Flink application",
            Service::ManagedFlink,
            prices.flink_month(kpus),
            format!(
                "{kpus} KPU + {} orchestration KPU × 730 h, {} GB running storage",
                prices.flink_orchestration_kpus,
                kpus * prices.flink_storage_gb_per_kpu
            ),
            false,
        );
    }
    lines
}
