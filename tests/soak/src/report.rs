//! The soak's report: `report.json` (everything), `report.md` (the tables) and `soak.svg` /
//! `soak.png` (throughput and iterator age over time, faults marked).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;
use serde::Serialize;

use crate::checks::Check;
use crate::faults::Injected;
use crate::monitor::Sample;

/// Everything a soak found.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The command's settings.
    pub settings: BTreeMap<String, String>,
    /// Records put: change events, malformed records, watermark movers.
    pub events_in: u64,
    /// Malformed records put on purpose.
    pub malformed_in: u64,
    /// The faults carried out, in order, with the ms each took to recover (iterator age back to
    /// normal), if it did within the run.
    pub faults: Vec<(Injected, Option<u64>)>,
    /// Faults by kind.
    pub faults_by_kind: BTreeMap<String, u64>,
    /// The proxy's requests by service and outcome.
    pub proxy: BTreeMap<String, u64>,
    /// Function processes seen over the run (one per execution environment started: the first
    /// of each function, and one per restart after a kill, timeout or failed invocation).
    pub function_processes_started: u64,
    /// Receipts delivered more than once (0 when exactly once holds).
    pub duplicates_delivered: usize,
    /// Enriched orders streamed more than once (identical; readers drop them by id).
    pub enriched_repeats: usize,
    /// Dead letters received.
    pub dead_letters: usize,
    /// The iterator age taken as normal (ms).
    pub normal_iterator_age_ms: i64,
    /// The largest iterator age seen (ms).
    pub max_iterator_age_ms: i64,
    /// From the end of the feed until every stage had committed every record (ms).
    pub drain_ms: Option<u64>,
    /// The stages that ran, and those paused with why.
    pub stages: Vec<String>,
    /// Paused stages and why.
    pub paused: Vec<String>,
    /// Faults of the issue the soak does not inject yet, and why.
    pub not_injected: Vec<String>,
    /// The checks.
    pub checks: Vec<Check>,
    /// The samples.
    pub samples: Vec<Sample>,
    /// Wall-clock seconds of the whole command (deploy to report).
    pub wall_seconds: u64,
}

impl Report {
    /// The markdown summary.
    pub fn markdown(&self) -> String {
        let mut md = String::from("# shardflow chaos soak\n\n");
        let settings: Vec<String> = self.settings.iter().map(|(k, v)| format!("{k} {v}")).collect();
        md += &format!(
            "Settings: {}. Wall time {} s.\n\n",
            settings.join(", "),
            self.wall_seconds
        );
        md += "| measure | value |\n| --- | --- |\n";
        let rows = [
            (
                "records in (events + malformed + watermark movers)",
                self.events_in.to_string(),
            ),
            ("malformed records in", self.malformed_in.to_string()),
            (
                "faults injected",
                self.faults_by_kind
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            (
                "injected errors seen by clients (retried)",
                self.proxy
                    .iter()
                    .filter(|(k, _)| !k.ends_with("forwarded"))
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            (
                "function processes started",
                self.function_processes_started.to_string(),
            ),
            (
                "receipt repeats dropped by id (standard SNS topic)",
                self.duplicates_delivered.to_string(),
            ),
            (
                "enriched-order repeats dropped by id (Kinesis output)",
                self.enriched_repeats.to_string(),
            ),
            ("dead letters", self.dead_letters.to_string()),
            (
                "normal / max iterator age",
                format!(
                    "{:.1} s / {:.1} s",
                    self.normal_iterator_age_ms as f64 / 1000.0,
                    self.max_iterator_age_ms as f64 / 1000.0
                ),
            ),
            (
                "drain after the feed",
                self.drain_ms
                    .map_or("did not drain".to_owned(), |ms| format!("{:.1} s", ms as f64 / 1000.0)),
            ),
        ];
        for (k, v) in rows {
            md += &format!("| {k} | {v} |\n");
        }
        md += "\n| fault | at | lasted | recovered after | what it did |\n| --- | --- | --- | --- | --- |\n";
        for (f, recovery) in &self.faults {
            md += &format!(
                "| {} | {:.0} s | {:.0} s | {} | {} |\n",
                f.fault.kind.name(),
                f.started_ms as f64 / 1000.0,
                f.fault.duration.as_secs_f64(),
                recovery.map_or("not within the run".to_owned(), |ms| format!(
                    "{:.1} s",
                    ms as f64 / 1000.0
                )),
                f.detail.replace('|', "/")
            );
        }
        md += "\n| check | verdict | detail |\n| --- | --- | --- |\n";
        for c in &self.checks {
            md += &format!(
                "| {} | {} | {} |\n",
                c.name,
                if c.passed { "pass" } else { "FAIL" },
                c.detail.replace('|', "/")
            );
        }
        md += &format!("\nStages run and checked: {}.\n", self.stages.join(", "));
        for p in &self.paused {
            md += &format!("\nPaused: {p}\n");
        }
        for n in &self.not_injected {
            md += &format!("\nNot injected: {n}\n");
        }
        md
    }

    /// Writes `report.json`, `report.md`, `soak.svg` and, with chromium, `soak.png` into `dir`;
    /// returns the PNG's path if one was written.
    pub fn write(&self, dir: &Path) -> anyhow::Result<Option<std::path::PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(self)?)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        let svg = dir.join("soak.svg");
        std::fs::write(&svg, self.plot()?)?;
        Ok(png(&svg, &dir.join("soak.png")))
    }

    /// The SVG plot: records per second (in and receipts out) above, iterator age per stage
    /// below; each fault a shaded span (or a line) labelled with its kind.
    pub fn plot(&self) -> anyhow::Result<String> {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (1200, 700)).into_drawing_area();
            root.fill(&WHITE)?;
            let (top, bottom) = root.split_vertically(350);
            let end_s = self.samples.last().map_or(1.0, |s| s.t_ms as f64 / 1000.0).max(1.0);
            let rate = |pick: fn(&Sample) -> u64| -> Vec<(f64, f64)> {
                self.samples
                    .windows(2)
                    .map(|w| {
                        let dt = (w[1].t_ms.saturating_sub(w[0].t_ms)).max(1) as f64 / 1000.0;
                        (
                            w[1].t_ms as f64 / 1000.0,
                            pick(&w[1]).saturating_sub(pick(&w[0])) as f64 / dt,
                        )
                    })
                    .collect()
            };
            let put = rate(|s| s.put);
            let out = rate(|s| s.receipts);
            let top_max = put.iter().chain(&out).map(|p| p.1).fold(1.0, f64::max) * 1.15;
            let mut chart = ChartBuilder::on(&top)
                .caption("throughput (records/s)", ("sans-serif", 20))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(0.0..end_s, 0.0..top_max)?;
            chart.configure_mesh().x_desc("seconds").draw()?;
            self.mark_faults(&mut chart, top_max)?;
            chart
                .draw_series(LineSeries::new(put, &BLUE))?
                .label("records put")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
            chart
                .draw_series(LineSeries::new(out, &GREEN))?
                .label("receipts delivered")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;

            let stages: Vec<String> = self
                .samples
                .iter()
                .flat_map(|s| s.iterator_age_ms.keys().cloned())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let age_max = (self.max_iterator_age_ms as f64 / 1000.0).max(1.0) * 1.15;
            let mut chart = ChartBuilder::on(&bottom)
                .caption("iterator age (s)", ("sans-serif", 20))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(0.0..end_s, 0.0..age_max)?;
            chart.configure_mesh().x_desc("seconds").draw()?;
            self.mark_faults(&mut chart, age_max)?;
            for (i, stage) in stages.iter().enumerate() {
                let color = Palette99::pick(i + 3).to_rgba();
                let points: Vec<(f64, f64)> = self
                    .samples
                    .iter()
                    .filter_map(|s| {
                        s.iterator_age_ms
                            .get(stage)
                            .map(|a| (s.t_ms as f64 / 1000.0, *a as f64 / 1000.0))
                    })
                    .collect();
                chart
                    .draw_series(LineSeries::new(points, color))?
                    .label(stage.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
            root.present()?;
        }
        Ok(svg)
    }

    fn mark_faults<DB: DrawingBackend>(
        &self,
        chart: &mut ChartContext<
            '_,
            DB,
            Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
        >,
        y_max: f64,
    ) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        for (f, _) in &self.faults {
            let start = f.started_ms as f64 / 1000.0;
            let end = start + f.fault.duration.as_secs_f64().max(0.5);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(start, 0.0), (end, y_max)],
                    RED.mix(0.15).filled(),
                )))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            chart
                .draw_series(std::iter::once(Text::new(
                    f.fault.kind.name().to_owned(),
                    (start, y_max * 0.97),
                    ("sans-serif", 11).into_font().color(&RED),
                )))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(())
    }
}

/// Renders `svg` to `png` with headless chromium (scripts/chromium installs it; the browser
/// tests' helper of shardflow-testkit); `None` when there is no chromium or it failed (its
/// message is on stderr).
fn png(svg: &Path, png: &Path) -> Option<std::path::PathBuf> {
    let svg = std::fs::canonicalize(svg).ok()?;
    let url = format!("file://{}", svg.display());
    std::panic::catch_unwind(|| shardflow_testkit::browser::screenshot(&url, png, (1200, 700), 500)).ok()?;
    Some(png.to_path_buf())
}
