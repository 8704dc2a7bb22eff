//! What the running pipeline costs per hour: the cost model of `shardflow cost`
//! ([`shardflow_cost`]) fed with what the page has read.
//!
//! Per stage, the model's profile (the shop preset's for a stage of the shop, the defaults
//! otherwise) takes every figure the readings measure, as `shardflow cost --emf` does
//! ([`EmfSummary::apply`]): records and results per batch, dirty items and bytes per commit,
//! commit time, EMF bytes, and — where the logs have Lambda's REPORT lines — billed duration and
//! memory. The rate (records in per second), the batches per shard and second and the commits per
//! batch are the ones read over [`COST_WINDOW_MS`]; the function's memory and architecture come
//! from its configuration. The model then prices invocations and GB-seconds, DynamoDB read and
//! write units, CloudWatch logs and metrics, and the sinks the profile names (S3, SNS, SQS); each
//! stream is priced once (shard-hours, and PUT units for the records its stages read). Pure.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use shardflow_cost::emf::{EmfSummary, InvocationReport};
use shardflow_cost::prices::{Architecture, Prices, HOURS_PER_MONTH};
use shardflow_cost::{
    cost, shop, CheckpointInterval, CostError, Deployment, Platform, Service, ShopOptions, StageProfile, StreamRole,
    StreamSpec, Workload,
};
use shardflow_stage::EmfRecord;

use crate::model::{Observations, RATE_WINDOW_MS};

/// How far back the rates behind the cost look (less when the readings start later, never less
/// than [`RATE_WINDOW_MS`]).
pub const COST_WINDOW_MS: i64 = 10 * 60_000;

/// Bytes of a stream's record when nothing says (one PUT payload unit up to 25 KB anyway).
const ASSUMED_RECORD_BYTES: f64 = 1_000.0;

/// What the dashboard knows of a stage's function, for the model.
#[derive(Debug, Clone, PartialEq)]
pub struct StageFunction {
    /// The stage.
    pub stage: String,
    /// Its input stream, if known.
    pub input_stream: Option<String>,
    /// The function's memory, MB, if known.
    pub memory_mb: Option<f64>,
    /// The function's architecture, if known.
    pub architecture: Option<Architecture>,
}

/// A Kinesis stream of the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamInfo {
    /// Its name.
    pub name: String,
    /// Its open shards.
    pub shards: u32,
    /// Its retention, hours.
    pub retention_hours: u32,
}

/// Dollars per hour of one service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceCost {
    /// The service (`Lambda`, `DynamoDB`, ...).
    pub service: &'static str,
    /// Dollars per hour.
    pub usd_per_hour: f64,
    /// The usage behind it, per hour.
    pub usage: String,
}

/// What a stage costs per hour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageCost {
    /// The stage.
    pub stage: String,
    /// Per service.
    pub services: Vec<ServiceCost>,
    /// Dollars per hour, all its services.
    pub usd_per_hour: f64,
    /// Records in per second the cost is for.
    pub records_per_s: f64,
    /// Which figures were measured and which assumed.
    pub basis: Vec<String>,
}

impl StageCost {
    /// Dollars per hour of `service`.
    pub fn of(&self, service: Service) -> f64 {
        self.services
            .iter()
            .filter(|s| s.service == service.name())
            .map(|s| s.usd_per_hour)
            .sum()
    }
}

/// What a stream costs per hour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamCost {
    /// The stream.
    pub stream: String,
    /// Dollars per hour.
    pub usd_per_hour: f64,
    /// The usage behind it.
    pub usage: String,
}

/// The pipeline's cost per hour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostView {
    /// How far back the rates look, ms.
    pub window_ms: i64,
    /// Per stage.
    pub stages: Vec<StageCost>,
    /// Per stream.
    pub streams: Vec<StreamCost>,
    /// Dollars per hour, stages and streams.
    pub total_usd_per_hour: f64,
    /// The date of the price table.
    pub prices_as_of: String,
    /// The price table's region.
    pub region: String,
}

/// The figures measured over `records` (one stage's EMF lines) and `invocations`' REPORT lines.
fn summary(records: &[&EmfRecord], invocations: &[crate::model::Invocation]) -> EmfSummary {
    let mut s = EmfSummary::default();
    for r in records {
        let line = r.metrics.to_emf_line(&r.stage, &r.shard, r.timestamp_ms);
        s.add_batch(r, line.len() as f64 + shardflow_cost::shop::LOG_EVENT_OVERHEAD_BYTES);
    }
    for i in invocations {
        s.add_report(&InvocationReport {
            billed_ms: i.billed_ms,
            memory_mb: i.memory_mb,
        });
    }
    s
}

/// The model's profile of `stage` before measurements: the shop preset's for a shop stage
/// (`order_enrich` is the preset's `order-enrich`), the defaults otherwise. Its output stream is
/// dropped: every stream is priced once, as its own line.
fn base_profile(stage: &str, shuffle: bool) -> (StageProfile, &'static str) {
    let preset = shop(&ShopOptions {
        shuffle,
        ..ShopOptions::default()
    });
    let wanted = stage.replace('_', "-");
    match preset.stages.into_iter().find(|s| s.name == wanted) {
        Some(mut p) => {
            p.output = None;
            p.name = stage.to_owned();
            (p, "the shop preset")
        }
        None => (
            StageProfile {
                name: stage.to_owned(),
                ..StageProfile::default()
            },
            "the model's defaults",
        ),
    }
}

/// The cost per hour at `now_ms` of the stages in `functions` and the `streams`, from what
/// `observations` hold, at `prices`.
pub fn live_cost(
    observations: &Observations,
    functions: &[StageFunction],
    streams: &[StreamInfo],
    now_ms: i64,
    prices: &Prices,
) -> Result<CostView, CostError> {
    let first_seen = observations.time_range().map(|(first, _)| first);
    let window_ms = first_seen.map_or(COST_WINDOW_MS, |first| {
        (now_ms - first).clamp(RATE_WINDOW_MS, COST_WINDOW_MS)
    });
    let from = now_ms - window_ms;
    let known: BTreeMap<&str, &StreamInfo> = streams.iter().map(|s| (s.name.as_str(), s)).collect();
    let shuffle = functions.iter().any(|f| f.stage.ends_with("keyby"));
    let mut stage_costs = Vec::new();
    let mut stream_costs: BTreeMap<String, StreamCost> = BTreeMap::new();
    for f in functions {
        let records: Vec<&EmfRecord> = observations
            .stage_batches(&f.stage)
            .into_iter()
            .filter(|b| b.timestamp_ms >= from && b.timestamp_ms <= now_ms)
            .collect();
        let invocations: Vec<_> = observations
            .invocations
            .get(&f.stage)
            .map(|all| {
                all.iter()
                    .filter(|i| i.at_ms >= from && i.at_ms <= now_ms)
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        let measured = summary(&records, &invocations);
        let (mut profile, origin) = base_profile(&f.stage, shuffle);
        let mut basis = vec![format!("{}: per-batch figures not measured are {origin}'s", f.stage)];
        if let Some(memory) = f.memory_mb {
            profile.memory_mb = memory;
        }
        let mut model_basis = Vec::new();
        if measured.batches > 0 {
            measured.apply(&mut profile, "the dashboard's readings", &mut model_basis);
        }
        basis.extend(model_basis.into_iter().map(|b| b.figure));
        let stream_name = f.input_stream.clone().unwrap_or_else(|| format!("{} input", f.stage));
        let seen_shards: BTreeSet<&str> = records.iter().map(|r| r.shard.as_str()).collect();
        let stream = match known.get(stream_name.as_str()) {
            Some(s) => StreamSpec {
                name: s.name.clone(),
                shards: s.shards.max(1),
                retention_hours: s.retention_hours.clamp(24, 168),
                record_bytes: ASSUMED_RECORD_BYTES,
                role: StreamRole::Source,
            },
            None => StreamSpec {
                name: stream_name.clone(),
                shards: u32::try_from(seen_shards.len().max(1)).unwrap_or(u32::MAX),
                retention_hours: 24,
                record_bytes: ASSUMED_RECORD_BYTES,
                role: StreamRole::Source,
            },
        };
        profile.input_stream = stream.name.clone();
        let seconds = window_ms as f64 / 1000.0;
        let records_per_s = measured.records_in as f64 / seconds;
        let batches_per_s_shard = measured.batches as f64 / seconds / f64::from(stream.shards);
        let workload = Workload {
            events_per_s: records_per_s,
            // The model's batches per shard and second are min(records/s, max(1 / window,
            // records/s / batch size)): with the largest batch size, a window of one over the
            // measured batch rate gives that rate back.
            batch_size: 10_000.0,
            batching_window_s: if batches_per_s_shard > 0.0 {
                (1.0 / batches_per_s_shard).min(300.0)
            } else {
                1.0
            },
            architecture: f.architecture.unwrap_or(Architecture::Arm64),
            reloads_per_shard_hour: 4.0,
            tumbling_window_s: 60.0,
            flink_events_per_kpu: 10_000.0,
        };
        let batches_per_commit = if measured.commits > 0 {
            measured.batches as f64 / measured.commits as f64
        } else {
            1.0
        };
        let platform = Platform {
            name: f.stage.clone(),
            streams: vec![stream.clone()],
            stages: vec![profile],
            basis: Vec::new(),
        };
        let report = cost(
            &platform,
            &workload,
            prices,
            &[Deployment::Shardflow(CheckpointInterval::Batches(batches_per_commit))],
        )?;
        let column = &report.columns[0];
        let services: Vec<ServiceCost> = column
            .lines
            .iter()
            .filter(|l| l.item == f.stage)
            .map(|l| ServiceCost {
                service: l.service.name(),
                usd_per_hour: l.usd_month / HOURS_PER_MONTH,
                usage: l.usage.clone(),
            })
            .collect();
        for line in column.lines.iter().filter(|l| l.item != f.stage) {
            stream_costs.entry(stream.name.clone()).or_insert_with(|| StreamCost {
                stream: stream.name.clone(),
                usd_per_hour: line.usd_month / HOURS_PER_MONTH,
                usage: line.usage.clone(),
            });
        }
        stage_costs.push(StageCost {
            stage: f.stage.clone(),
            usd_per_hour: services.iter().map(|s| s.usd_per_hour).sum(),
            services,
            records_per_s,
            basis,
        });
    }
    // Streams no stage reads (outputs, a shuffle stream before its stage runs): their shards.
    for s in streams {
        stream_costs.entry(s.name.clone()).or_insert_with(|| StreamCost {
            stream: s.name.clone(),
            usd_per_hour: prices.kinesis_shards_month(f64::from(s.shards), s.retention_hours) / HOURS_PER_MONTH,
            usage: format!(
                "{} shards ({} h retention); no stage reads it here",
                s.shards, s.retention_hours
            ),
        });
    }
    let streams: Vec<StreamCost> = stream_costs.into_values().collect();
    let total =
        stage_costs.iter().map(|s| s.usd_per_hour).sum::<f64>() + streams.iter().map(|s| s.usd_per_hour).sum::<f64>();
    Ok(CostView {
        window_ms,
        stages: stage_costs,
        streams,
        total_usd_per_hour: total,
        prices_as_of: prices.as_of.clone(),
        region: prices.region.clone(),
    })
}
