//! `shardflow gen shop|nexmark`: run a generator into a Kinesis stream or a file, then print
//! what was written and how fast.

use std::path::PathBuf;

use anyhow::Context;
use shardflow_kinesis::{KinesisProducer, KinesisTransport, ProducerConfig};
use shardflow_shop::ShopConfig;

use crate::nexmark::NexmarkGenConfig;
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

/// Where the shop's changes go: exactly one of a stream, a file and a database.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct ShopDestination {
    /// A Kinesis stream (endpoint, region and credentials from the environment, e.g.
    /// `AWS_ENDPOINT_URL`, as for the AWS CLI).
    #[arg(long)]
    pub stream: Option<String>,
    /// A file (created or replaced).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A Postgres database (URL or `key=value` form): each generated transaction is executed
    /// there, in commit order, against the shop's tables (`shared/shop/sql/schema.sql`), for
    /// `shardflow cdc --format shop` to capture.
    #[arg(long)]
    pub database_url: Option<String>,
}

/// Arguments of `shardflow gen shop`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShopArgs {
    /// Change events to generate (with --database-url: whole transactions up to at least this many).
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    /// Records (changes) per second of wall-clock time (0: as fast as the destination takes them).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Event time of the first change: epoch ms (`1704067200000`) or RFC 3339
    /// (`2024-01-01T00:00:00Z`); a fixed start (with the same seed) gives the same stream
    /// [default: the current time].
    #[arg(long, value_name = "TIME", value_parser = parse_start)]
    pub start: Option<i64>,
    /// Orders per second of event time, which sets how much event time the changes span
    /// (3,000 changes: about 30 s at the default 20, 5 min at 1, 10 min at 0.5).
    #[arg(long, default_value_t = 20.0, value_parser = parse_orders_per_sec)]
    pub orders_per_sec: f64,
    /// Encoding of each change (stream and file).
    #[arg(long, value_enum, default_value = "protobuf")]
    pub format: ShopFormat,
    /// With --database-url: the Postgres schema of the shop's tables (created if missing).
    #[arg(long, default_value = "public")]
    pub db_schema: String,
    /// With --database-url: create the shop's tables first (`shared/shop/sql/schema.sql`).
    #[arg(long)]
    pub create_tables: bool,
    /// Where to write.
    #[command(flatten)]
    pub to: ShopDestination,
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
    /// Event time of the first event: epoch ms (`1704067200000`, the bench's start) or RFC 3339
    /// (`2024-01-01T00:00:00Z`) [default: the current time].
    #[arg(long, alias = "base-time-ms", value_name = "TIME", value_parser = parse_start)]
    pub start: Option<i64>,
    /// Where to write.
    #[command(flatten)]
    pub to: Destination,
}

/// Parses a start of event time: epoch milliseconds or an RFC 3339 time.
pub fn parse_start(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{e}: give epoch milliseconds (1704067200000) or RFC 3339 (2024-01-01T00:00:00Z)"))
}

fn parse_orders_per_sec(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err("give a positive number of orders per second".to_owned()),
    }
}

/// The current time, epoch ms: where event time starts unless `--start` says otherwise.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl ShopArgs {
    /// The generator's configuration: the shop's defaults with this seed, start and order rate
    /// (a start of `None` is resolved to the current time here).
    pub fn config(&self) -> ShopConfig {
        let mut config = ShopConfig::new(self.seed, self.events, 1);
        config.start_ms = self.start.unwrap_or_else(now_ms);
        config.orders_per_sec = self.orders_per_sec;
        config
    }
}

impl NexmarkArgs {
    /// The generator's configuration (a start of `None` is resolved to the current time here).
    pub fn config(&self) -> NexmarkGenConfig {
        NexmarkGenConfig {
            events: self.events,
            event_rate: self.event_rate,
            max_disorder_ms: self.max_disorder_ms,
            base_time_ms: self.start.unwrap_or_else(now_ms),
        }
    }
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

async fn load_into_postgres(a: ShopArgs) -> anyhow::Result<()> {
    let url = a.to.database_url.as_deref().unwrap_or_default();
    let (mut client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to Postgres")?;
    let connection = tokio::spawn(connection);
    crate::postgres::prepare_schema(&client, &a.db_schema, a.create_tables).await?;
    let mut reported = 0;
    let report = crate::postgres::load_shop(&mut client, a.config(), a.rate, |n| {
        if n >= reported + 100_000 {
            reported = n;
            eprintln!("gen: {n} changes");
        }
    })
    .await?;
    drop(client);
    let _ = connection.await;
    println!(
        "gen shop: {} changes in {} transactions into Postgres schema {} in {:.2} s = {:.0} changes/s (committed)",
        report.changes,
        report.transactions,
        a.db_schema,
        report.secs,
        report.changes_per_sec()
    );
    Ok(())
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
            Workload::Shop(a) if a.to.database_url.is_some() => load_into_postgres(a).await?,
            Workload::Shop(a) => {
                let framing = match a.format {
                    ShopFormat::Protobuf => FileFraming::LengthDelimited,
                    ShopFormat::Json => FileFraming::Lines,
                };
                let to = Destination {
                    stream: a.to.stream.clone(),
                    out: a.to.out.clone(),
                };
                let (mut output, target) = open(&to, framing).await?;
                let report = crate::shop::generate(a.config(), a.format, a.rate, &mut output, progress).await?;
                print("shop", &target, &report);
            }
            Workload::Nexmark(a) => {
                let (mut output, target) = open(&a.to, FileFraming::Lines).await?;
                let report = crate::nexmark::generate(a.config(), a.rate, &mut output, progress).await?;
                print("nexmark", &target, &report);
            }
        }
        Ok(())
    })
}
