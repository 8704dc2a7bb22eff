//! `shardflow cost`: the shop platform (or a profile of your own) in dollars per month and per
//! million events, commit per batch vs at an interval vs Managed Flink vs Lambda tumbling windows.

use std::io::Write;
use std::path::PathBuf;

use crate::emf::EmfSummary;
use crate::error::{at_least, CostError};
use crate::model::{cost, CheckpointInterval, Deployment, Report, Workload};
use crate::prices::{us_east_1, Architecture, Prices};
use crate::profile::{Basis, BasisKind, Platform};
use crate::render::render_table;
use crate::shop::{shop, ShopOptions};

/// A platform the command knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// The seed platform's shop: archive, receipts, revenue, order-enrich.
    Shop,
}

/// Arguments of `shardflow cost`.
#[derive(Debug, Clone, clap::Args)]
pub struct CostArgs {
    /// The platform.
    #[arg(long, value_enum, default_value = "shop")]
    pub preset: Preset,
    /// Events per second into the platform's source stream.
    #[arg(long, default_value_t = 1_000.0)]
    pub rate: f64,
    /// Shards of the source stream (and of each shuffle stream unless --shuffle-shards).
    #[arg(long, default_value_t = 4)]
    pub shards: u32,
    /// The event source mappings' batch size.
    #[arg(long, default_value_t = 500)]
    pub batch_size: u32,
    /// The event source mappings' batching window, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub batching_window_s: f64,
    /// Commit state every N seconds (issue 19's interval; costed beside commits every batch).
    #[arg(long, value_name = "SECS", conflicts_with = "checkpoint_interval_batches")]
    pub checkpoint_interval_s: Option<f64>,
    /// Commit state every N batches (1: every batch, today's stages).
    #[arg(long, value_name = "N")]
    pub checkpoint_interval_batches: Option<u32>,
    /// Give revenue and order-enrich shuffle streams with upstream key-by stages (issue 13).
    #[arg(long)]
    pub shuffle: bool,
    /// Shards of each shuffle stream (with --shuffle; default: --shards).
    #[arg(long, value_name = "N", requires = "shuffle")]
    pub shuffle_shards: Option<u32>,
    /// The functions' architecture.
    #[arg(long, value_enum, default_value = "arm64")]
    pub architecture: Architecture,
    /// Every function's memory, MB.
    #[arg(long, default_value_t = 256)]
    pub memory_mb: u32,
    /// Retention of the source stream, hours (24 to 168; the template's is 168).
    #[arg(long, default_value_t = 168)]
    pub retention_hours: u32,
    /// Lambda's tumbling window for the comparison column, seconds.
    #[arg(long, default_value_t = 60.0)]
    pub tumbling_window_s: f64,
    /// Input events per second one Managed Flink KPU runs the whole platform at.
    #[arg(long, default_value_t = 10_000.0)]
    pub flink_events_per_kpu: f64,
    /// With a checkpoint interval: cold reloads of a shard's state per hour.
    #[arg(long, default_value_t = 4.0)]
    pub reloads_per_shard_hour: f64,
    /// A JSON profile `{"stages": [{"name": ..., <StageProfile fields>}]}` of measured counts;
    /// it replaces the preset's figures of the stages it names.
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// A stage's log (EMF lines, one JSON object a line, and REPORT lines) to average its
    /// per-batch counts from; repeatable.
    #[arg(long, value_name = "STAGE=FILE")]
    pub emf: Vec<String>,
    /// A JSON price table to use instead of the built-in one (`--print-prices` shows its shape).
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
    /// Print the price table as JSON and exit.
    #[arg(long)]
    pub print_prices: bool,
    /// Print the report as one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
}

fn read_json(path: &PathBuf) -> Result<serde_json::Value, CostError> {
    let text = std::fs::read_to_string(path).map_err(|source| CostError::Read {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| CostError::Json {
        path: path.clone(),
        source,
    })
}

/// The prices `args` name.
pub fn prices(args: &CostArgs) -> Result<Prices, CostError> {
    match &args.prices {
        None => Ok(us_east_1()),
        Some(path) => serde_json::from_value(read_json(path)?).map_err(|source| CostError::Json {
            path: path.clone(),
            source,
        }),
    }
}

/// The platform `args` describe: the preset, then the profile file, then the EMF logs.
pub fn platform(args: &CostArgs) -> Result<Platform, CostError> {
    at_least("--shards", f64::from(args.shards), 1.0, "at least 1")?;
    let shuffle_shards = args.shuffle_shards.unwrap_or(args.shards);
    at_least("--shuffle-shards", f64::from(shuffle_shards), 1.0, "at least 1")?;
    at_least("--memory-mb", f64::from(args.memory_mb), 128.0, "at least 128")?;
    let mut platform = match args.preset {
        Preset::Shop => shop(&ShopOptions {
            shards: args.shards,
            shuffle: args.shuffle,
            shuffle_shards,
            memory_mb: f64::from(args.memory_mb),
            source_retention_hours: args.retention_hours,
        }),
    };
    if let Some(path) = &args.profile {
        platform.apply_profile(&read_json(path)?, &path.display().to_string())?;
    }
    for spec in &args.emf {
        let (stage, file) = spec
            .split_once('=')
            .filter(|(s, f)| !s.is_empty() && !f.is_empty())
            .ok_or_else(|| CostError::EmfArgument(spec.clone()))?;
        let path = PathBuf::from(file);
        let summary = EmfSummary::read(&path, Some(stage))?;
        let mut basis: Vec<Basis> = Vec::new();
        summary.apply(platform.stage_mut(stage)?, file, &mut basis);
        platform.basis.extend(basis);
    }
    Ok(platform)
}

/// The workload and the columns `args` ask for.
pub fn workload(args: &CostArgs) -> Result<(Workload, Vec<Deployment>), CostError> {
    let workload = Workload {
        events_per_s: args.rate,
        batch_size: f64::from(args.batch_size),
        batching_window_s: args.batching_window_s,
        architecture: args.architecture,
        reloads_per_shard_hour: args.reloads_per_shard_hour,
        tumbling_window_s: args.tumbling_window_s,
        flink_events_per_kpu: args.flink_events_per_kpu,
    };
    let interval = match (args.checkpoint_interval_s, args.checkpoint_interval_batches) {
        (Some(s), _) => Some(CheckpointInterval::Seconds(at_least(
            "--checkpoint-interval-s",
            s,
            f64::MIN_POSITIVE,
            "a number > 0",
        )?)),
        (None, Some(n)) => Some(CheckpointInterval::Batches(at_least(
            "--checkpoint-interval-batches",
            f64::from(n),
            1.0,
            "at least 1",
        )?)),
        (None, None) => None,
    };
    let mut deployments = vec![Deployment::Shardflow(CheckpointInterval::Batches(1.0))];
    if let Some(interval) = interval.filter(|i| !i.every_batch()) {
        deployments.push(Deployment::Shardflow(interval));
    }
    deployments.push(Deployment::ManagedFlink);
    deployments.push(Deployment::LambdaTumbling);
    Ok((workload, deployments))
}

/// The report `args` ask for.
pub fn report(args: &CostArgs) -> Result<Report, CostError> {
    let prices = prices(args)?;
    let mut platform = platform(args)?;
    let (workload, deployments) = workload(args)?;
    platform.basis.push(Basis::new(
        BasisKind::Configured,
        format!(
            "{} events/s, {} shards{}, checkpoint {}",
            args.rate,
            args.shards,
            if args.shuffle {
                format!(
                    ", shuffle streams of {} shards",
                    args.shuffle_shards.unwrap_or(args.shards)
                )
            } else {
                String::new()
            },
            deployments
                .iter()
                .filter_map(|d| match d {
                    Deployment::Shardflow(i) => Some(i.label()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(" and ")
        ),
        "the command line",
    ));
    cost(&platform, &workload, &prices, &deployments)
}

/// Runs `shardflow cost`.
pub fn run(args: CostArgs) -> Result<(), CostError> {
    let mut out = std::io::stdout().lock();
    if args.print_prices {
        writeln!(out, "{}", serde_json::to_string_pretty(&prices(&args)?)?)?;
        return Ok(());
    }
    let report = report(&args)?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        write!(out, "{}", render_table(&report))?;
    }
    out.flush()?;
    Ok(())
}
