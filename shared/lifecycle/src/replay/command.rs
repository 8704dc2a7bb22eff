//! `shardflow replay`: a stream's archive replayed locally through a catalogue of pipelines, or
//! into a deployed stage function.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;
use shardflow_archive::{ArchiveReader, ArchivedRecord};
use shardflow_connectors::ResultMessage;
use shardflow_engine::Pipeline;
use shardflow_stage::{DeadLetter, RecordDecoder};

use super::invoke::{invoke_replay, InvokeReplayOptions};
use super::local::{replay, shard_batches};

/// Replays archived records through one pipeline in batches of the given size, writes its results
/// under the output directory and returns its dead letters.
type ReplayFn = Box<dyn Fn(&[ArchivedRecord], usize, &Path) -> anyhow::Result<Vec<DeadLetter>>>;

/// A pipeline `shardflow replay` can run locally: its stage's name and how to replay archived
/// records through it (results to `<sink>.jsonl` as the sinks' JSON messages).
pub struct ReplayTarget {
    stage: String,
    run: ReplayFn,
}

impl ReplayTarget {
    /// `pipeline`, decoding records with `decoder`, as stage `stage` runs it (its result ids
    /// depend on the stage's name).
    pub fn new<In, Out, D>(stage: &str, pipeline: Pipeline<In, Out>, decoder: D) -> Self
    where
        In: Send + 'static,
        Out: Serialize + Send + 'static,
        D: RecordDecoder<In> + 'static,
    {
        let name = stage.to_owned();
        let run = move |records: &[ArchivedRecord], batch_size: usize, out: &Path| {
            let outcome = replay(&pipeline, &decoder, &name, records, batch_size)?;
            let path = out.join(format!("{}.jsonl", pipeline.sink_name()));
            write_lines(&path, outcome.outputs.iter().map(ResultMessage::of))?;
            eprintln!(
                "replay: {name}: {} results -> {}",
                outcome.outputs.len(),
                path.display()
            );
            Ok(outcome.dead_letters)
        };
        ReplayTarget {
            stage: stage.to_owned(),
            run: Box::new(run),
        }
    }

    /// The stage's name.
    pub fn stage(&self) -> &str {
        &self.stage
    }
}

/// Arguments of `shardflow replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The archive's bucket.
    #[arg(long)]
    pub bucket: String,
    /// The archive's key prefix.
    #[arg(long, default_value = "archive")]
    pub prefix: String,
    /// The archived stream to replay (its name).
    #[arg(long)]
    pub stream: String,
    /// First UTC day to replay (YYYY-MM-DD, inclusive).
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// Last UTC day to replay (YYYY-MM-DD, inclusive).
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// The pipeline to run locally, by its stage's name, or `all`.
    #[arg(long, default_value = "all")]
    pub pipeline: String,
    /// Records per batch (as the live stage's event source mapping delivers them).
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Output directory: `<sink>.jsonl` (results as the sinks' JSON messages) and
    /// `dead_letters.jsonl`.
    #[arg(long, default_value = "./out/replay")]
    pub out: PathBuf,
    /// Replay into this deployed stage function (name or ARN) instead of locally: each shard's
    /// records as Kinesis events, shards in parallel, batches in order; the function's own sinks
    /// write the results. Use a deployment that consumes no live stream (mappings disabled).
    #[arg(long, conflicts_with = "pipeline")]
    pub function: Option<String>,
    /// The archived stream's ARN as the events name it (default: the stream's ARN looked up by
    /// its name).
    #[arg(long, requires = "function")]
    pub stream_arn: Option<String>,
    /// Shards replayed into the function at once.
    #[arg(long, default_value_t = 4, requires = "function")]
    pub concurrency: usize,
    /// End each shard's input after its last record, so that the function fires every window
    /// still open, as a local replay does.
    #[arg(long, requires = "function")]
    pub finish: bool,
}

/// Runs `shardflow replay` over `targets` (reads S3 with the AWS SDK's configuration from the
/// environment).
pub fn run(args: ReplayArgs, targets: &[ReplayTarget]) -> anyhow::Result<()> {
    let chosen: Vec<&ReplayTarget> = targets
        .iter()
        .filter(|t| args.pipeline == "all" || t.stage == args.pipeline)
        .collect();
    if chosen.is_empty() && args.function.is_none() {
        let names: Vec<&str> = targets.iter().map(ReplayTarget::stage).collect();
        bail!(
            "no pipeline {:?} to replay; choose one of {names:?} or all",
            args.pipeline
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (records, repeated) = runtime.block_on(async {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let reader = ArchiveReader::new(aws_sdk_s3::Client::new(&sdk), &args.bucket, &args.prefix);
        let dates = args.from.as_deref().zip(args.to.as_deref());
        reader.read_stream(Some(&args.stream), dates).await
    })?;
    if repeated > 0 {
        tracing::warn!(repeated, "positions archived more than once were read once");
    }
    if let Some(function) = &args.function {
        return runtime.block_on(invoke(&args, function, &records));
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    eprintln!("replay: {} archived records of stream {}", records.len(), args.stream);
    let mut letters = Vec::new();
    for target in chosen {
        letters.extend((target.run)(&records, args.batch_size, &args.out)?);
    }
    let path = args.out.join("dead_letters.jsonl");
    write_lines(&path, letters.iter())?;
    eprintln!("replay: {} dead letters -> {}", letters.len(), path.display());
    Ok(())
}

async fn invoke(args: &ReplayArgs, function: &str, records: &[ArchivedRecord]) -> anyhow::Result<()> {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let event_source_arn = match &args.stream_arn {
        Some(arn) => arn.clone(),
        None => aws_sdk_kinesis::Client::new(&sdk)
            .describe_stream_summary()
            .stream_name(&args.stream)
            .send()
            .await
            .with_context(|| format!("looking up the ARN of stream {} (or pass --stream-arn)", args.stream))?
            .stream_description_summary()
            .map(|d| d.stream_arn().to_owned())
            .context("DescribeStreamSummary returned no description")?,
    };
    let region = sdk
        .region()
        .map(ToString::to_string)
        .unwrap_or_else(|| "us-east-1".into());
    let mut options = InvokeReplayOptions::new(function, &event_source_arn, &region);
    options.batch_size = args.batch_size;
    options.concurrency = args.concurrency;
    options.finish = args.finish;
    let shards = shard_batches(records)?;
    eprintln!(
        "replay: {} archived records of {} shard(s) into function {function}",
        records.len(),
        shards.len()
    );
    let bar = indicatif::ProgressBar::new(records.len() as u64);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("replay [{bar:40}] {human_pos}/{human_len} records, eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let progress = |n: usize| bar.inc(n as u64);
    let report = invoke_replay(&aws_sdk_lambda::Client::new(&sdk), shards, &options, &progress).await;
    bar.finish_and_clear();
    let report = report?;
    eprintln!(
        "replay: {} invocations ({} retried), {} records{}",
        report.invocations,
        report.retries,
        report.records,
        if args.finish { ", every shard's input ended" } else { "" }
    );
    Ok(())
}

fn write_lines<T: Serialize>(path: &Path, lines: impl Iterator<Item = T>) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::new(file);
    for line in lines {
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush().with_context(|| format!("writing {}", path.display()))
}
