//! `shardflow status`: per shard of a stage, its checkpoint, watermark, lag and state.

use std::io::Write;
use std::time::Duration;

use crate::{render_table, stage_status, StatusOptions};

use super::clients::{runtime, Clients};

/// Arguments of `shardflow status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The stage (its name in the state table).
    #[arg(long)]
    stage: String,
    /// The state table.
    #[arg(long)]
    table: String,
    /// The stage's input stream: adds how far behind each shard is.
    #[arg(long)]
    stream: Option<String>,
    /// The stage's dead-letter queue (SQS URL): adds its depth.
    #[arg(long)]
    dlq_url: Option<String>,
    /// One JSON document (per refresh, one per line) instead of the table.
    #[arg(long)]
    json: bool,
    /// Refresh every SECS seconds until interrupted.
    #[arg(long, value_name = "SECS")]
    watch: Option<u64>,
}

/// Runs `shardflow status`.
pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let clients = Clients::from_env().await;
        let mut options = StatusOptions::new(&args.stage, &args.table);
        options.stream = args.stream.clone();
        options.dlq_url = args.dlq_url.clone();
        loop {
            let status = stage_status(
                &clients.dynamodb,
                &clients.s3,
                Some(&clients.kinesis),
                Some(&clients.sqs),
                &options,
            )
            .await?;
            let mut out = std::io::stdout().lock();
            if args.json {
                writeln!(out, "{}", serde_json::to_string(&status)?)?;
            } else {
                if args.watch.is_some() {
                    // Clear the screen and go home, like watch(1).
                    write!(out, "\x1b[2J\x1b[H")?;
                }
                write!(out, "{}", render_table(&status))?;
            }
            out.flush()?;
            drop(out);
            match args.watch {
                Some(secs) => tokio::time::sleep(Duration::from_secs(secs.max(1))).await,
                None => return Ok(()),
            }
        }
    })
}
