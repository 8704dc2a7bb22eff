//! `shardflow demo`: the seed platform's pipelines on a generated online-shop CDC stream.
//!
//! 1. Generates the stream ([`crate::generator`]) as length-delimited Protobuf files, one per
//!    shard, under `<out>/input/` (every `--corrupt-every`-th record damaged, to show dead
//!    letters).
//! 2. Runs `revenue`, `receipts` and `order_enrich` over the shards with the local runner
//!    (`revenue` and `order_enrich` as two stages over an in-memory shuffle with
//!    `--shuffle-shards N`):
//!    arrival time is the envelope's `ts_ms`, checkpoints go to `<out>/state/` every
//!    `--checkpoint-every` records, results to `<out>/revenue.jsonl`, `receipts.jsonl`,
//!    `enriched_orders.jsonl`, late records to `late.jsonl`, undecodable ones to
//!    `dead_letters.jsonl`.
//! 3. Prints a summary.
//! 4. With `--report FILE.html`, also writes every batch's metrics as the EMF lines a Lambda
//!    stage prints (`<out>/metrics.jsonl`) and a self-contained HTML report of the run
//!    ([`shardflow_dashboard::report`]).
//!
//! An interrupted run (`--stop-after K`, or a crash) resumes from `<out>/state/` when started
//! again with the same arguments; a finished run, or state of other arguments, is replaced.

use std::cell::RefCell;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shardflow_dashboard::report::{results_per_window, PipelineTotals, RunReport};
use shardflow_dashboard::Observations;
use shardflow_local::{Arrival, BatchReport, LocalRunner, ProtobufFiles, RunManifest, RunSummary};
use shardflow_schemas::ChangeEvent;
use shardflow_stage::BatchMetrics;

use crate::generator::{write_shard_files, ShopConfig};
use crate::pipelines::{order_enrich, order_enrich_split, receipts, revenue, revenue_split, windows};

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
    /// Run `revenue` and `order_enrich` each as two stages joined by an in-memory shuffle stream
    /// of this many shards (the upstream half on the stream's shards, the keyed half on the
    /// shuffle's); 0 runs each in one engine. Their results are the same but for revenue's early
    /// panes, which fire on each stage's processing time.
    #[arg(long, default_value_t = 0)]
    pub shuffle_shards: u16,
    /// Also write a self-contained HTML report of the run (throughput, watermarks per shard,
    /// late data and dead letters, results per window) to FILE, and every batch's EMF metrics
    /// line to `<out>/metrics.jsonl`.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
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
    /// Every batch's metrics as EMF lines (with `--report`).
    pub metrics_lines: Vec<String>,
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
    if let Some(path) = &args.report {
        write_report(&args, &report, path)?;
        println!("report in {}", path.display());
    }
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
    let input_id = format!(
        "{} corrupt_every={} shuffle_shards={}",
        config.id(),
        args.corrupt_every,
        args.shuffle_shards
    );
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
    let runner = LocalRunner::new(&args.out);
    let runner = if args.shuffle_shards > 0 {
        runner
            .shuffle_shards(args.shuffle_shards)
            .split_job(revenue_split())
            .job(receipts())
            .split_job(order_enrich_split())
    } else {
        runner.job(revenue()).job(receipts()).job(order_enrich())
    };
    let mut runner = runner
        .arrival(Arrival::Field(Arc::new(|e: &ChangeEvent| e.ts_ms)))
        .checkpoints(&state_dir, args.checkpoint_every)
        .batch_size(args.batch_size)
        .input_id(input_id)
        .allow_dropped_state(args.allow_dropped_state)
        .on_progress(move |p| progress.set_position(p.records));
    if let Some(k) = args.stop_after {
        runner = runner.stop_after(k);
    }
    let metrics_lines = Rc::new(RefCell::new(Vec::new()));
    if args.report.is_some() {
        let lines = metrics_lines.clone();
        runner = runner.on_batch(move |b| lines.borrow_mut().push(emf_line(b)));
    }
    let run = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("starting the async runtime")?
        .block_on(runner.run(&mut input))?;
    bar.finish_and_clear();
    let metrics_lines = metrics_lines.take();
    Ok(DemoReport {
        run,
        generate_secs,
        input_files: files,
        metrics_lines,
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

/// The EMF line a Lambda stage would print for the batch `b` (stage = pipeline, shard =
/// partition, time = the run's clock, i.e. arrival time).
fn emf_line(b: &BatchReport) -> String {
    let lag = b
        .partition_watermark
        .map_or(0, |w| u64::try_from(b.clock.saturating_sub(w)).unwrap_or(0));
    BatchMetrics {
        records_in: b.records_in,
        duplicates_dropped: b.duplicates_dropped,
        late_records: b.late_records,
        dead_letter_records: b.dead_letters,
        results_out: b.results_out,
        watermark_lag_ms: lag,
        ..Default::default()
    }
    .to_emf_line(&b.pipeline, &b.partition, b.clock)
}

/// Writes `<out>/metrics.jsonl` and the HTML report of the run to `path`.
fn write_report(args: &DemoArgs, report: &DemoReport, path: &Path) -> anyhow::Result<()> {
    let mut text = report.metrics_lines.join("\n");
    text.push('\n');
    let metrics = args.out.join("metrics.jsonl");
    std::fs::write(&metrics, &text).with_context(|| format!("writing {}", metrics.display()))?;
    let mut observations = Observations::default();
    observations.add_log("demo", &text, None);
    let windows = windows();
    let pipelines = report
        .run
        .pipelines
        .iter()
        .map(|p| {
            let results =
                std::fs::read_to_string(&p.output).with_context(|| format!("reading {}", p.output.display()))?;
            Ok(PipelineTotals {
                pipeline: p.pipeline.clone(),
                records_in: p.records_in,
                results_out: p.results_out,
                late_records: p.late_records,
                results_per_window: results_per_window(&results),
                window_ms: windows
                    .get(&p.pipeline)
                    .copied()
                    .unwrap_or(shardflow_dashboard::model::DEFAULT_WINDOW_MS),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let run = RunReport {
        title: "shardflow demo".into(),
        description: format!(
            "{} events over {} shards (seed {}), damaged every {}th; the seed platform's pipelines on the embedded runner.",
            args.events, args.shards, args.seed, args.corrupt_every
        ),
        events_in: report.run.records_read,
        dead_letters: report.run.dead_letters,
        checkpoints: report.run.checkpoints,
        elapsed_secs: report.run.elapsed.as_secs_f64(),
        pipelines,
        observations,
    };
    let html = run.render()?;
    std::fs::write(path, html).with_context(|| format!("writing the report {}", path.display()))?;
    Ok(())
}
