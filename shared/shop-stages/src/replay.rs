//! `shardflow replay`: the archive of a stream (written by the `archive` stage) as a bounded
//! stream through the same pipeline code, and the same per-batch code path, as the live stages.
//!
//! Each archived shard runs in its own engine, as it does in its Lambda stage: its records, in
//! sequence order and with their archived arrival times, go through
//! [`shardflow_stage::process_batch`] — the decoder, the engine partition named after the
//! stream and shard, dead letters for undecodable and late records — so results carry the same
//! deterministic ids as the live stage's. At the end of each shard the input ends (Beam's bounded
//! semantics): the watermark goes to the end of time and every window fires, which the live
//! stage does only when later data moves its watermark. A replay is therefore the live stream's
//! results for every window the live stage closed, plus the windows still open at the archive's
//! end.
//!
//! Processing-time early panes depend on when records arrived, which the archive keeps, and on
//! how batches fell, which it does not; their number can differ from the live stage's. Every
//! on-time, late and element-count pane, and every window's final value, is the same.
//!
//! The archive does not keep the stream's shard lineage: after a reshard of the live stream,
//! each child shard replays on an engine of its own rather than one that adopted its parents'
//! state, so a window a key had open across the split or merge can differ from the live one.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;
use shardflow_archive::{ArchiveReader, ArchivedRecord};
use shardflow_connectors::ResultMessage;
use shardflow_engine::{Output, Pipeline};
use shardflow_shop::pipelines;
use shardflow_stage::{process_batch, DeadLetter, InputRecord, RecordDecoder, SequenceNumber, ShardBatch};
use thiserror::Error;

use crate::ShopDecoder;

/// Why a replay stopped.
#[derive(Debug, Error)]
pub enum ReplayError {
    /// An archived record's sequence number is not one.
    #[error("shard {shard}: archived sequence number {sequence:?} is invalid: {reason}")]
    Sequence {
        /// The shard.
        shard: String,
        /// The value found.
        sequence: String,
        /// Why it is invalid.
        reason: String,
    },
    /// User code panicked on a record (the live stage would retry it, then dead-letter it as
    /// poison; a replay stops so that the cause can be fixed first).
    #[error("shard {shard}: user code failed on sequence number {sequence}: {message}")]
    UserCode {
        /// The shard.
        shard: String,
        /// The record.
        sequence: String,
        /// The panic's message.
        message: String,
    },
}

/// What a replay of one pipeline produced.
#[derive(Debug)]
pub struct ReplayOutcome<Out> {
    /// Every result, shard after shard, in the order the engines produced them.
    pub outputs: Vec<Output<Out>>,
    /// Undecodable and late records.
    pub dead_letters: Vec<DeadLetter>,
    /// Records read from the archive.
    pub records: usize,
}

/// Replays `records` (ordered by stream, shard and sequence number, as
/// [`ArchiveReader::read_stream`] returns them) through `pipeline` as stage `stage` would, in
/// batches of `batch_size` records.
pub fn replay<In: Send + 'static, Out: Send + 'static>(
    pipeline: &Pipeline<In, Out>,
    decoder: &dyn RecordDecoder<In>,
    stage: &str,
    records: &[ArchivedRecord],
    batch_size: usize,
) -> Result<ReplayOutcome<Out>, ReplayError> {
    let mut outcome = ReplayOutcome {
        outputs: Vec::new(),
        dead_letters: Vec::new(),
        records: records.len(),
    };
    for shard in records.chunk_by(|a, b| a.stream == b.stream && a.shard_id == b.shard_id) {
        let mut engine = pipeline.engine();
        for chunk in shard.chunks(batch_size.max(1)) {
            let batch = shard_batch(chunk)?;
            let done = process_batch(&mut engine, stage, &batch, decoder, None, None);
            if let Some((at, message)) = done.panicked_at {
                return Err(ReplayError::UserCode {
                    shard: batch.shard_id.clone(),
                    sequence: batch.records[at].sequence.to_string(),
                    message,
                });
            }
            outcome.outputs.extend(done.outputs);
            outcome.dead_letters.extend(done.dead_letters);
        }
        engine.finish();
        outcome.outputs.extend(engine.drain_output());
    }
    Ok(outcome)
}

/// The batch of archived records of one shard.
fn shard_batch(records: &[ArchivedRecord]) -> Result<ShardBatch, ReplayError> {
    let first = &records[0];
    let records = records
        .iter()
        .map(|r| {
            let sequence = SequenceNumber::parse(&r.sequence_number).map_err(|e| ReplayError::Sequence {
                shard: r.shard_id.clone(),
                sequence: r.sequence_number.clone(),
                reason: e.to_string(),
            })?;
            Ok(InputRecord {
                sequence,
                partition_key: r.partition_key.clone(),
                arrival_ms: r.arrival_ms,
                data: r.data.clone(),
            })
        })
        .collect::<Result<Vec<_>, ReplayError>>()?;
    Ok(ShardBatch {
        stream: first.stream.clone(),
        shard_id: first.shard_id.clone(),
        records,
    })
}

/// The shop's pipelines a replay can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShopPipeline {
    /// `receipts` (stage `receipts`).
    Receipts,
    /// `revenue` (stage `revenue`).
    Revenue,
    /// `order_enrich` (stage `order-enrich`).
    OrderEnrich,
    /// All three.
    All,
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
    /// The pipeline to run.
    #[arg(long, value_enum, default_value = "all")]
    pub pipeline: ShopPipeline,
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

/// Runs `shardflow replay` (reads S3 with the AWS SDK's configuration from the environment).
pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let records = runtime.block_on(async {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let reader = ArchiveReader::new(aws_sdk_s3::Client::new(&sdk), &args.bucket, &args.prefix);
        let dates = args.from.as_deref().zip(args.to.as_deref());
        reader.read_stream(Some(&args.stream), dates).await
    })?;
    let (records, repeated) = records;
    if repeated > 0 {
        tracing::warn!(repeated, "positions archived more than once were read once");
    }
    if let Some(function) = &args.function {
        return runtime.block_on(invoke(&args, function, &records));
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut letters = Vec::new();
    let wanted = |p: ShopPipeline| args.pipeline == p || args.pipeline == ShopPipeline::All;
    eprintln!("replay: {} archived records of stream {}", records.len(), args.stream);
    if wanted(ShopPipeline::Receipts) {
        letters.extend(run_one(&args, &records, pipelines::receipts(), "receipts")?);
    }
    if wanted(ShopPipeline::Revenue) {
        letters.extend(run_one(&args, &records, pipelines::revenue(), "revenue")?);
    }
    if wanted(ShopPipeline::OrderEnrich) {
        letters.extend(run_one(&args, &records, pipelines::order_enrich(), "order-enrich")?);
    }
    let path = args.out.join("dead_letters.jsonl");
    write_lines(&path, letters.iter())?;
    eprintln!("replay: {} dead letters -> {}", letters.len(), path.display());
    Ok(())
}

/// Every shard's archived records as one batch per shard.
pub fn shard_batches(records: &[ArchivedRecord]) -> Result<Vec<ShardBatch>, ReplayError> {
    records
        .chunk_by(|a, b| a.stream == b.stream && a.shard_id == b.shard_id)
        .map(shard_batch)
        .collect()
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
    let mut options = shardflow_lifecycle::InvokeReplayOptions::new(function, &event_source_arn, &region);
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
    let report =
        shardflow_lifecycle::invoke_replay(&aws_sdk_lambda::Client::new(&sdk), shards, &options, &progress).await;
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

fn run_one<Out: Serialize + Send + 'static>(
    args: &ReplayArgs,
    records: &[ArchivedRecord],
    pipeline: Pipeline<shardflow_schemas::ChangeEvent, Out>,
    stage: &str,
) -> anyhow::Result<Vec<DeadLetter>> {
    let outcome = replay(&pipeline, &ShopDecoder::new(), stage, records, args.batch_size)?;
    let path = args.out.join(format!("{}.jsonl", pipeline.sink_name()));
    write_lines(&path, outcome.outputs.iter().map(ResultMessage::of))?;
    eprintln!(
        "replay: {stage}: {} results -> {}",
        outcome.outputs.len(),
        path.display()
    );
    Ok(outcome.dead_letters)
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
