//! `shardflow demo`: the seed platform's pipelines on a generated online-shop CDC stream.
//!
//! 1. Generates the stream ([`crate::generator`]) as length-delimited Protobuf files, one per
//!    shard, under `<out>/input/` (every `--corrupt-every`-th record damaged, to show dead
//!    letters).
//! 2. Runs `revenue`, `receipts` and `order_enrich` over the shards with the local runner:
//!    arrival time is the envelope's `ts_ms`, checkpoints go to `<out>/state/` every
//!    `--checkpoint-every` records, results to `<out>/revenue.jsonl`, `receipts.jsonl`,
//!    `enriched_orders.jsonl`, late records to `late.jsonl`, undecodable ones to
//!    `dead_letters.jsonl`.
//! 3. Prints a summary.
//!
//! An interrupted run (`--stop-after K`, or a crash) resumes from `<out>/state/` when started
//! again with the same arguments; a finished run, or state of other arguments, is replaced.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shardflow_local::{Arrival, LocalRunner, ProtobufFiles, RunManifest, RunSummary};
use shardflow_schemas::ChangeEvent;

use crate::generator::{write_shard_files, ShopConfig};
use crate::pipelines::{order_enrich, receipts, revenue};

/// Arguments of `shardflow demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Number of change events to generate.
    #[arg(long, default_value_t = 300_000)]
    pub events: u64,
    /// Number of shards (partitions) of the stream.
    #[arg(long, default_value_t = 4)]
    pub shards: u32,
    /// Output directory.
    #[arg(long, default_value = "./out")]
    pub out: PathBuf,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Take a checkpoint every this many records (0: only at the end).
    #[arg(long, default_value_t = 50_000)]
    pub checkpoint_every: u64,
    /// Damage every N-th generated record, so that dead letters show (0: none).
    #[arg(long, default_value_t = 25_000)]
    pub corrupt_every: u64,
    /// Records read from a shard before the next shard's turn.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Stop after this many records without a final checkpoint, as a crash would; run again to
    /// resume.
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Ignore any previous state in `<out>/state/` and start from the beginning.
    #[arg(long)]
    pub fresh: bool,
    /// On resume, drop checkpointed state of operators this build's pipelines no longer have
    /// instead of refusing to resume (see `shardflow_local::LocalRunner::allow_dropped_state`).
    #[arg(long)]
    pub allow_dropped_state: bool,
}

/// What the demo did.
#[derive(Debug)]
pub struct DemoReport {
    /// The runner's summary.
    pub run: RunSummary,
    /// Time spent generating the input files.
    pub generate_secs: f64,
    /// The input files.
    pub input_files: Vec<PathBuf>,
}

/// Runs `shardflow demo` and prints its summary.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let report = execute(&args, std::io::stderr().is_terminal())?;
    let run = &report.run;
    println!(
        "shardflow demo: {} events over {} shards (seed {}), generated in {:.2} s",
        args.events, args.shards, args.seed, report.generate_secs
    );
    println!("{run}");
    println!(
        "late events: {}",
        run.pipelines.iter().map(|p| p.late_records).sum::<u64>()
    );
    println!("outputs in {}", args.out.display());
    if run.interrupted {
        println!("stopped early: run the same command again to resume from the last checkpoint");
    }
    Ok(())
}

fn progress_bar(len: u64, what: &str, visible: bool) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if !visible {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template("{prefix:>10} [{bar:40}] {human_pos}/{human_len} events, eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what.to_owned());
    bar
}

/// Runs the demo (see the module documentation); progress bars on stderr if `show_progress`.
pub fn execute(args: &DemoArgs, show_progress: bool) -> anyhow::Result<DemoReport> {
    anyhow::ensure!(args.events > 0, "--events must be positive");
    anyhow::ensure!(args.shards > 0, "--shards must be positive");
    let config = ShopConfig::new(args.seed, args.events, args.shards);
    let corrupt_every = (args.corrupt_every > 0).then_some(args.corrupt_every);
    let input_id = format!("{} corrupt_every={}", config.id(), args.corrupt_every);
    let state_dir = args.out.join("state");
    prepare_state(&state_dir, &input_id, args.fresh)?;

    let started = Instant::now();
    let bar = progress_bar(args.events, "generate", show_progress);
    let input_dir = args.out.join("input");
    let files = write_shard_files(&config, &input_dir, corrupt_every, |n| bar.set_position(n))
        .with_context(|| format!("writing the generated stream to {}", input_dir.display()))?;
    bar.finish_and_clear();
    let generate_secs = started.elapsed().as_secs_f64();

    let mut input = ProtobufFiles::<ChangeEvent>::open(&files)?;
    let bar = progress_bar(args.events, "pipelines", show_progress);
    let progress = bar.clone();
    let mut runner = LocalRunner::new(&args.out)
        .job(revenue())
        .job(receipts())
        .job(order_enrich())
        .arrival(Arrival::Field(Arc::new(|e: &ChangeEvent| e.ts_ms)))
        .checkpoints(&state_dir, args.checkpoint_every)
        .batch_size(args.batch_size)
        .input_id(input_id)
        .allow_dropped_state(args.allow_dropped_state)
        .on_progress(move |p| progress.set_position(p.records));
    if let Some(k) = args.stop_after {
        runner = runner.stop_after(k);
    }
    let run = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("starting the async runtime")?
        .block_on(runner.run(&mut input))?;
    bar.finish_and_clear();
    Ok(DemoReport {
        run,
        generate_secs,
        input_files: files,
    })
}

/// Keeps `state_dir` if it holds an unfinished run of the same input (to resume it), and
/// removes it otherwise.
fn prepare_state(state_dir: &Path, input_id: &str, fresh: bool) -> anyhow::Result<()> {
    let manifest = match RunManifest::read(state_dir) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("unreadable state in {}: {e}; starting fresh", state_dir.display());
            None
        }
    };
    let resumable = manifest.is_some_and(|m| !m.finished && m.input_id == input_id);
    if (fresh || !resumable) && state_dir.exists() {
        std::fs::remove_dir_all(state_dir).with_context(|| format!("removing {}", state_dir.display()))?;
    }
    Ok(())
}
