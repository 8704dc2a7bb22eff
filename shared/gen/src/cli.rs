//! `shardflow gen shop|nexmark`: run a generator into a Kinesis stream or a file, then print
//! what was written and how fast.

use std::path::PathBuf;

use anyhow::Context;
use shardflow_kinesis::{KinesisProducer, KinesisTransport, ProducerConfig};
use shardflow_shop::ShopConfig;

use crate::nexmark::{NexmarkGenConfig, DEFAULT_BASE_TIME_MS};
use crate::output::{FileFraming, GenReport, Output};
use crate::shop::ShopFormat;

/// Arguments of `shardflow gen`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenArgs {
    /// The workload.
    #[command(subcommand)]
    pub workload: Workload,
}

/// The generators.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Workload {
    /// The online shop's CDC stream (customers, orders, lines, payments, shipments).
    Shop(ShopArgs),
    /// The Nexmark model (people, auctions, bids) as JSON lines.
    Nexmark(NexmarkArgs),
}

/// Where records go: exactly one of a stream and a file.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Destination {
    /// A Kinesis stream (endpoint, region and credentials from the environment, e.g.
    /// `AWS_ENDPOINT_URL`, as for the AWS CLI).
    #[arg(long)]
    pub stream: Option<String>,
    /// A file (created or replaced).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Arguments of `shardflow gen shop`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShopArgs {
    /// Change events to generate.
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    /// Records per second of wall-clock time (0: as fast as the destination takes them).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Encoding of each change.
    #[arg(long, value_enum, default_value = "protobuf")]
    pub format: ShopFormat,
    /// Where to write.
    #[command(flatten)]
    pub to: Destination,
}

/// Arguments of `shardflow gen nexmark`.
#[derive(Debug, Clone, clap::Args)]
pub struct NexmarkArgs {
    /// Events to generate.
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    /// Records per second of wall-clock time (0: as fast as the destination takes them).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Events per second of event time (the spacing of `dateTime`s).
    #[arg(long, default_value_t = 10_000)]
    pub event_rate: u64,
    /// Bound on event-time disorder, ms (0: in order).
    #[arg(long, default_value_t = 2_000)]
    pub max_disorder_ms: u64,
    /// Event time of the first event, epoch ms.
    #[arg(long, default_value_t = DEFAULT_BASE_TIME_MS)]
    pub base_time_ms: i64,
    /// Where to write.
    #[command(flatten)]
    pub to: Destination,
}

async fn open(to: &Destination, framing: FileFraming) -> anyhow::Result<(Output, String)> {
    match (&to.stream, &to.out) {
        (Some(stream), _) => {
            let client = shardflow_kinesis::client_from_env().await;
            let producer = KinesisProducer::new(KinesisTransport::new(client, stream), ProducerConfig::default());
            Ok((Output::Stream(producer), format!("stream {stream}")))
        }
        (None, Some(path)) => {
            let output = Output::file(path, framing)
                .await
                .with_context(|| format!("creating {}", path.display()))?;
            Ok((output, path.display().to_string()))
        }
        (None, None) => anyhow::bail!("give --stream NAME or --out FILE"),
    }
}

fn print(workload: &str, target: &str, report: &GenReport) {
    let mut line = format!(
        "gen {workload}: {} records ({:.1} MB) into {target} in {:.2} s = {:.0} records/s",
        report.records,
        report.bytes as f64 / 1e6,
        report.secs,
        report.records_per_sec()
    );
    if let Some(p) = report.producer {
        line.push_str(&format!(
            " (acknowledged; {} PutRecords calls, {} records retried, {} throttled)",
            p.calls, p.retried, p.throttled
        ));
    }
    println!("{line}");
}

/// Runs `shardflow gen`.
pub fn run(args: GenArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let progress = |n: u64| {
            if n.is_multiple_of(100_000) {
                eprintln!("gen: {n} records");
            }
        };
        match args.workload {
            Workload::Shop(a) => {
                let framing = match a.format {
                    ShopFormat::Protobuf => FileFraming::LengthDelimited,
                    ShopFormat::Json => FileFraming::Lines,
                };
                let (mut output, target) = open(&a.to, framing).await?;
                let config = ShopConfig::new(a.seed, a.events, 1);
                let report = crate::shop::generate(config, a.format, a.rate, &mut output, progress).await?;
                print("shop", &target, &report);
            }
            Workload::Nexmark(a) => {
                let (mut output, target) = open(&a.to, FileFraming::Lines).await?;
                let config = NexmarkGenConfig {
                    events: a.events,
                    event_rate: a.event_rate,
                    max_disorder_ms: a.max_disorder_ms,
                    base_time_ms: a.base_time_ms,
                };
                let report = crate::nexmark::generate(config, a.rate, &mut output, progress).await?;
                print("nexmark", &target, &report);
            }
        }
        Ok(())
    })
}
