//! The self-contained HTML report of an embedded run (`shardflow demo --report FILE.html`):
//! the run's summary, the highlights at its end, and per pipeline its throughput over time,
//! watermark progress per shard, late data and dead letters, and results per window. Charts are
//! inline SVG; the file needs no server, no script and no network.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::chart::{line_chart, ChartError, Line, YAxis};
use crate::format::{clock, html};
use crate::highlight::highlights;
use crate::html::{figure, highlight_list, shard_table, stage_figures, stage_table, STYLE};
use crate::model::Observations;

/// Buckets of the report's time series.
pub const BUCKETS: usize = 60;

/// One pipeline's line of the run's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineTotals {
    /// The pipeline.
    pub pipeline: String,
    /// Records it processed.
    pub records_in: u64,
    /// Results it emitted.
    pub results_out: u64,
    /// Records it routed to the late output.
    pub late_records: u64,
    /// Its results per window start (from its results file).
    pub results_per_window: BTreeMap<i64, u64>,
    /// Its window (or session gap), ms.
    pub window_ms: i64,
}

/// What the report shows of a run.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// The heading, e.g. `shardflow demo`.
    pub title: String,
    /// A sentence of what ran (events, shards, seed).
    pub description: String,
    /// Records read.
    pub events_in: u64,
    /// Records that could not be decoded.
    pub dead_letters: u64,
    /// Checkpoints taken.
    pub checkpoints: u64,
    /// Wall-clock seconds the run took.
    pub elapsed_secs: f64,
    /// Per pipeline, its totals.
    pub pipelines: Vec<PipelineTotals>,
    /// The EMF lines of the run's batches (and any error lines).
    pub observations: Observations,
}

/// Results per window start in a results file's JSON lines (lines without a window, such as a
/// global window's or a stateless pipeline's, are not counted).
pub fn results_per_window(text: &str) -> BTreeMap<i64, u64> {
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let start = serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|v| v.get("window")?.get("start")?.as_i64());
        if let Some(start) = start {
            *counts.entry(start).or_insert(0) += 1;
        }
    }
    counts
}

impl RunReport {
    /// The report as one HTML document.
    pub fn render(&self) -> Result<String, ChartError> {
        let (from, to) = self.observations.time_range().unwrap_or((0, 0));
        let windows: BTreeMap<String, i64> = self
            .pipelines
            .iter()
            .map(|p| (p.pipeline.clone(), p.window_ms))
            .collect();
        let views = self.observations.overview(to, &windows);
        let found = highlights(&self.observations, &views, to);
        let mut body = format!(
            "<h1>{}</h1><p class=\"meta\">{}</p>",
            html(&self.title),
            html(&self.description)
        );
        body.push_str(&format!(
            "<table id=\"summary\"><thead><tr><th>pipeline</th><th>records in</th><th>results out</th><th>late</th></tr></thead><tbody>{}</tbody></table>\
             <p class=\"meta\">events in: <span id=\"events-in\">{}</span> · dead letters: <span id=\"dead-letters\">{}</span> · \
             checkpoints: {} · time: {:.2} s · arrival times {} to {} (UTC), the stream's own clock</p>",
            self.pipelines
                .iter()
                .map(|p| format!(
                    "<tr data-pipeline=\"{n}\"><td>{n}</td><td data-field=\"records_in\">{}</td><td data-field=\"results_out\">{}</td><td data-field=\"late\">{}</td></tr>",
                    p.records_in,
                    p.results_out,
                    p.late_records,
                    n = html(&p.pipeline)
                ))
                .collect::<String>(),
            self.events_in,
            self.dead_letters,
            self.checkpoints,
            self.elapsed_secs,
            clock(from),
            clock(to),
        ));
        body.push_str("<h2>Highlights at the end of the run</h2>");
        body.push_str(&highlight_list(&found));
        body.push_str("<h2>Stages</h2>");
        body.push_str(&stage_table(&views));
        for view in &views {
            body.push_str(&format!(
                "<section class=\"stage\" data-stage=\"{s}\"><h2>{s}</h2>",
                s = html(&view.stage)
            ));
            let series = self.observations.series(&view.stage, from, to, BUCKETS);
            body.push_str("<div class=\"charts\">");
            body.push_str(&stage_figures(&series, (from, to))?);
            if let Some(p) = self.pipelines.iter().find(|p| p.pipeline == view.stage) {
                body.push_str(&results_chart(p)?);
            }
            body.push_str("</div>");
            body.push_str(&shard_table(view));
            body.push_str("</section>");
        }
        Ok(format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>\n",
            html(&self.title)
        ))
    }
}

fn results_chart(p: &PipelineTotals) -> Result<String, ChartError> {
    let points: Vec<(i64, f64)> = p.results_per_window.iter().map(|(t, n)| (*t, *n as f64)).collect();
    let range = (points.first().map_or(0, |p| p.0), points.last().map_or(0, |p| p.0));
    let svg = line_chart(
        &format!("{}: results per window", p.pipeline),
        "results",
        YAxis::Number,
        range,
        &[Line {
            name: "results".into(),
            points,
        }],
    )?;
    Ok(figure(
        "results_per_window",
        &format!(
            "Results per window start ({} windows; early, on-time and late panes all count).",
            p.results_per_window.len()
        ),
        &svg,
    ))
}
