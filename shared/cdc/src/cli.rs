//! `shardflow cdc`: the long-running reader process, with progress and lag on stderr.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::encode::Format;
use crate::kinesis_sink::KinesisSink;
use crate::reader::CdcReader;
use crate::setup::{CdcConfig, ReplicaIdentityPolicy, SnapshotMode};
use crate::sink::{ChangeSink, FileSink};
use crate::table::TableName;

/// What `shardflow cdc` does, as its help and the command list say it.
pub const ABOUT: &str = "Stream the changes of Postgres tables (logical decoding) to a file or a Kinesis stream: \
Protobuf events (shardflow.cdc.v1.ChangeEvent) by default (--format protobuf | json | shop)";

/// Arguments of `shardflow cdc`; [`ABOUT`] is its description.
#[derive(Debug, Clone, clap::Args)]
#[command(about = ABOUT, long_about = None)]
pub struct CdcArgs {
    /// Postgres connection string (URL or `key=value` form), e.g.
    /// `host=127.0.0.1 port=5432 user=postgres dbname=test`.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Logical replication slot (plugin pgoutput).
    #[arg(long, default_value = "shardflow")]
    pub slot: String,
    /// Publication listing the tables.
    #[arg(long, default_value = "shardflow")]
    pub publication: String,
    /// Tables to capture, comma-separated (`orders` or `shop.orders`).
    #[arg(long, value_delimiter = ',', required = true)]
    pub tables: Vec<TableName>,
    /// Where change events go: a file (appended to) or `-` for stdout; JSON one per line, the
    /// Protobuf formats length-delimited.
    #[arg(long, default_value = "-", conflicts_with = "stream")]
    pub out: String,
    /// Put change events into this Kinesis stream instead (one record per event, partition key
    /// `schema.table|primary key`, or `table:primary key` for `--format shop`); the endpoint,
    /// region and credentials come from the environment (`AWS_ENDPOINT_URL`, `AWS_REGION`, ...),
    /// as for the AWS CLI.
    #[arg(long)]
    pub stream: Option<String>,
    /// Encoding of each change: the generic Protobuf envelope `shardflow.cdc.v1.ChangeEvent`,
    /// Debezium JSON, or the shop's typed envelope `shardflow.shop.v1.ChangeEvent` (shop tables only).
    #[arg(long, value_enum, default_value = "protobuf")]
    pub format: Format,
    /// Create the replication slot if it does not exist.
    #[arg(long)]
    pub create_slot: bool,
    /// Create the publication if it does not exist, and add missing tables to it.
    #[arg(long)]
    pub create_publication: bool,
    /// What to do about tables whose replica identity is not FULL.
    #[arg(long, value_enum, default_value = "warn")]
    pub replica_identity: ReplicaIdentityPolicy,
    /// When to emit existing rows as `op = r` events (in primary-key chunks between watermarks,
    /// interleaved with the stream).
    #[arg(long, value_enum, default_value = "initial")]
    pub snapshot: SnapshotMode,
    /// Rows per snapshot chunk.
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_chunk_rows: usize,
    /// The table the snapshot's watermarks and progress go to (created if missing and added to
    /// the publication; one row per slot and table).
    #[arg(long, default_value = "public.shardflow_cdc_signal")]
    pub signal_table: TableName,
    /// Changes per peek of the slot (whole transactions are always read).
    #[arg(long, default_value_t = 10_000)]
    pub batch_changes: i32,
    /// How long to wait before polling again when the slot had nothing.
    #[arg(long, default_value_t = 200)]
    pub poll_interval_ms: u64,
    /// Stop after at least this many change events (snapshot rows included) were acknowledged.
    #[arg(long)]
    pub max_changes: Option<u64>,
    /// Stop after this many seconds without a change.
    #[arg(long)]
    pub until_idle: Option<f64>,
    /// Seconds between progress lines on stderr (0: none).
    #[arg(long, default_value_t = 2.0)]
    pub progress_secs: f64,
}

/// Runs the reader until a stop condition (`--max-changes`, `--until-idle`) or an error.
pub fn run(args: CdcArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime
        .block_on(async move {
            if let Some(stream) = &args.stream {
                let client = shardflow_kinesis::client_from_env().await;
                let transport = shardflow_kinesis::KinesisTransport::new(client, stream);
                let producer = shardflow_kinesis::KinesisProducer::new(transport, Default::default());
                let sink = KinesisSink::new(producer, args.format);
                run_with_sink(&args, sink).await
            } else if args.out == "-" {
                run_with_sink(&args, FileSink::stdout(args.format)).await
            } else {
                let sink = FileSink::append_to_file(&PathBuf::from(&args.out), args.format)
                    .await
                    .with_context(|| format!("opening {}", args.out))?;
                run_with_sink(&args, sink).await
            }
        })
        .map(|_summary| ())
}

/// What a run of the reader did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunSummary {
    /// Snapshot rows emitted.
    pub snapshot_rows: u64,
    /// Streamed change events acknowledged by the sink.
    pub changes: u64,
    /// Seconds from the first streamed change to the last acknowledgement.
    pub stream_secs: f64,
}

/// Runs the reader into `sink` (the loop behind [`run`]); prints progress and a summary to stderr.
pub async fn run_with_sink<S: ChangeSink>(args: &CdcArgs, mut sink: S) -> anyhow::Result<RunSummary> {
    let mut config = CdcConfig::new(&args.slot, &args.publication, args.tables.clone());
    config.create_slot = args.create_slot;
    config.create_publication = args.create_publication;
    config.replica_identity = args.replica_identity;
    config.snapshot = args.snapshot;
    config.batch_changes = args.batch_changes;
    config.snapshot_chunk_rows = args.snapshot_chunk_rows;
    config.signal_table = args.signal_table.clone();
    let mut reader = CdcReader::connect(&args.database_url, config).await?;
    for warning in &reader.prepared().warnings {
        eprintln!("cdc: warning: {warning}");
    }
    let mut snapshotting = reader.snapshot_in_progress();
    if snapshotting {
        let tables: Vec<String> = reader
            .prepared()
            .snapshot_tables
            .iter()
            .map(|t| t.to_string())
            .collect();
        eprintln!(
            "cdc: snapshot of {} (op = r, interleaved with the stream)",
            tables.join(", ")
        );
    }

    let mut snapshot_rows = 0u64;
    let mut changes = 0u64;
    let mut first_change: Option<Instant> = None;
    let mut last_ack = Instant::now();
    let mut last_change = Instant::now();
    let mut last_report = Instant::now();
    let mut changes_at_report = 0u64;
    let progress = (args.progress_secs > 0.0).then(|| Duration::from_secs_f64(args.progress_secs));
    loop {
        if args.max_changes.is_some_and(|max| snapshot_rows + changes >= max) {
            break;
        }
        let started = Instant::now();
        let outcome = reader.poll(&mut sink).await?;
        snapshot_rows += outcome.snapshot_rows as u64;
        let streamed = outcome.events - outcome.snapshot_rows;
        if streamed > 0 {
            first_change.get_or_insert(started);
            changes += streamed as u64;
        }
        if outcome.events > 0 {
            last_change = Instant::now();
            last_ack = last_change;
        }
        if snapshotting && !reader.snapshot_in_progress() {
            snapshotting = false;
            let stats = reader.snapshot_stats();
            eprintln!(
                "cdc: snapshot done: {} rows in {} chunks ({} rows left to the stream: changed while read)",
                stats.rows, stats.chunks, stats.dropped
            );
        }
        if progress.is_some_and(|every| last_report.elapsed() >= every) {
            let secs = last_report.elapsed().as_secs_f64();
            let lag = reader.lag_bytes().await?;
            eprintln!(
                "cdc: {changes} changes ({:.0}/s), {snapshot_rows} snapshot rows, confirmed {}, lag {lag} bytes",
                (changes - changes_at_report) as f64 / secs,
                reader.confirmed()
            );
            last_report = Instant::now();
            changes_at_report = changes;
        }
        if args
            .until_idle
            .is_some_and(|idle| !reader.snapshot_in_progress() && last_change.elapsed().as_secs_f64() >= idle)
        {
            break;
        }
        if !outcome.more {
            tokio::time::sleep(Duration::from_millis(args.poll_interval_ms)).await;
        }
    }
    let stream_secs = first_change.map_or(0.0, |t| last_ack.duration_since(t).as_secs_f64());
    let rate = if stream_secs > 0.0 {
        changes as f64 / stream_secs
    } else {
        0.0
    };
    eprintln!(
        "cdc: done: {snapshot_rows} snapshot rows, {changes} changes in {stream_secs:.3}s ({rate:.0} changes/s \
         from peek to sink acknowledgement), confirmed {}, lag {} bytes",
        reader.confirmed(),
        reader.lag_bytes().await?
    );
    Ok(RunSummary {
        snapshot_rows,
        changes,
        stream_secs,
    })
}
