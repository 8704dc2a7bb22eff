//! `shardflow nexmark`: runs a Nexmark query over a JSON-lines file of the bench generator and
//! writes its results as CSV; prints events in, results out, late records, events/s and peak RSS.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::queries::Query;
use crate::run::{run_query, RunReport};

/// Which query to run: one of the Nexmark queries, or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryArg {
    /// Pass-through of every bid.
    Q0,
    /// Auctions with the most bids per hopping window.
    Q5,
    /// Highest bids per tumbling window.
    Q7,
    /// Persons who opened an auction in the window they registered.
    Q8,
    /// Bid count and price sum per auction and tumbling window.
    Agg,
    /// Every query, one after the other (needs `--output-dir`).
    All,
}

/// Arguments of `shardflow nexmark`.
#[derive(Debug, Args)]
pub struct NexmarkArgs {
    /// The query to run.
    #[arg(long, value_enum)]
    pub query: QueryArg,
    /// JSON-lines input, as written by `nexmark_gen.py`.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the CSV results (default: standard output).
    #[arg(long, conflicts_with = "output_dir")]
    pub output: Option<PathBuf>,
    /// With `--query all`: a directory to write `<query>.csv` files into.
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
}

/// Runs `shardflow nexmark`.
pub fn run(args: NexmarkArgs) -> anyhow::Result<()> {
    let queries: Vec<Query> = match args.query {
        QueryArg::All => Query::ALL.to_vec(),
        QueryArg::Q0 => vec![Query::Q0],
        QueryArg::Q5 => vec![Query::Q5],
        QueryArg::Q7 => vec![Query::Q7],
        QueryArg::Q8 => vec![Query::Q8],
        QueryArg::Agg => vec![Query::Agg],
    };
    if queries.len() > 1 && args.output_dir.is_none() {
        anyhow::bail!("--query all writes one file per query: give --output-dir DIR");
    }
    if let Some(dir) = &args.output_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    for query in queries {
        let output = match (&args.output_dir, &args.output) {
            (Some(dir), _) => Some(dir.join(format!("{query}.csv"))),
            (None, output) => output.clone(),
        };
        run_one(query, &args.input, output.as_deref())?;
    }
    Ok(())
}

fn run_one(query: Query, input: &Path, output: Option<&Path>) -> anyhow::Result<()> {
    let file = File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let writer: Box<dyn Write> = match output {
        Some(path) => Box::new(File::create(path).with_context(|| format!("creating {}", path.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let writer = BufWriter::with_capacity(1 << 16, writer);

    let mut progress = DelayedProgress::new(size, query);
    let cpu_before = thread_cpu_seconds();
    let report = run_query(query, file, writer, &mut |bytes| progress.update(bytes))
        .with_context(|| format!("running {query} over {}", input.display()))?;
    let cpu = thread_cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    progress.finish();
    print_summary(query, output, &report, cpu);
    Ok(())
}

/// CPU time the calling thread has run, in seconds (`/proc/thread-self/schedstat`), where Linux
/// provides it. On a shared machine it says more about the engine's speed than wall time.
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

fn print_summary(query: Query, output: Option<&Path>, r: &RunReport, cpu_seconds: Option<f64>) {
    let peak = shardflow_local::peak_rss_bytes()
        .map(|b| format!("{:.1} MB", b as f64 / 1e6))
        .unwrap_or_else(|| "unknown".to_owned());
    let dest = output.map_or_else(|| "stdout".to_owned(), |p| p.display().to_string());
    let cpu = match cpu_seconds.filter(|s| *s > 0.0) {
        Some(s) => format!(", CPU {s:.2} s ({:.0} events per CPU-second)", r.events_in as f64 / s),
        None => String::new(),
    };
    eprintln!(
        "nexmark {query}: events in {}, results out {} ({dest}), late records {}, malformed lines {}, \
         {:.2} s, {:.0} events/s, {:.0} MB/s{cpu}, peak RSS {peak}",
        r.events_in,
        r.results_out,
        r.late_records,
        r.malformed_lines,
        r.elapsed.as_secs_f64(),
        r.events_per_second(),
        r.bytes_in as f64 / 1e6 / r.elapsed.as_secs_f64().max(1e-9),
    );
    if r.malformed_lines > 0 {
        eprintln!(
            "nexmark {query}: {} malformed line(s) skipped; the first {}:",
            r.malformed_lines,
            r.first_errors.len()
        );
        for e in &r.first_errors {
            eprintln!("  {e}");
        }
    }
}

/// A progress bar on stderr that appears only once a run has taken more than a second, and only
/// on a terminal. It counts from the start (hidden), so its rate and ETA are right when it shows.
struct DelayedProgress {
    bar: ProgressBar,
    started: Instant,
    shown: bool,
}

impl DelayedProgress {
    fn new(size: u64, query: Query) -> Self {
        let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::hidden());
        if let Ok(style) =
            ProgressStyle::with_template("{msg} [{wide_bar}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(format!("nexmark {query}"));
        DelayedProgress {
            bar,
            started: Instant::now(),
            // Shown only on a terminal; never shown is the same as shown already.
            shown: !std::io::stderr().is_terminal(),
        }
    }

    fn update(&mut self, bytes: u64) {
        self.bar.set_position(bytes);
        if !self.shown && self.started.elapsed() > Duration::from_secs(1) {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.shown = true;
        }
    }

    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}
