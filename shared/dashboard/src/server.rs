//! `shardflow dashboard`'s server: polls a deployed pipeline (its stage functions, their state
//! and streams as `shardflow status` reads them, and their logs through a [`MetricsSource`])
//! and serves one page, which refreshes itself from a JSON endpoint.
//!
//! - `GET /`: the page, rendered on the server (it reads without its script too).
//! - `GET /api/overview`: the page's content as HTML plus the figures as JSON; the page's script
//!   fetches it every few seconds and swaps the content in.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::State as AxumState;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use shardflow_lifecycle::command::Clients;
use shardflow_lifecycle::{stage_status, StatusOptions};

use shardflow_cost::prices::{us_east_1, Architecture};

use crate::colours::{cutover_html, read_cutovers, CutoverView};
use crate::cost::{live_cost, CostView, StageFunction, StreamInfo};
use crate::deployment::{discover, discover_streams, DeployedStage, DeployedStream, StreamRole};
use crate::error::DashboardError;
use crate::format::html;
use crate::highlight::{highlights, Highlight};
use crate::html::{cost_table, highlight_list, shard_table, stage_figures, stage_table, STYLE};
use crate::model::{Observations, ShardSample, StageView};
use crate::source::{CloudWatchMetrics, MetricsSource};

/// The wall clock, epoch ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What to watch and how.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// Stage functions whose name starts with this (e.g. the stack's name; empty: all).
    pub prefix: String,
    /// Each stage's window (or session gap), ms, for the stalled-watermark highlight.
    pub windows: BTreeMap<String, i64>,
    /// How often the pipeline is read, and the page refreshes.
    pub interval: Duration,
    /// How far back the charts go (and what is kept).
    pub history: Duration,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            prefix: String::new(),
            windows: BTreeMap::new(),
            interval: Duration::from_secs(5),
            history: Duration::from_secs(3600),
        }
    }
}

/// What the poller has read.
#[derive(Debug, Default)]
struct Snapshot {
    deployment: Vec<DeployedStage>,
    streams: Vec<DeployedStream>,
    cutovers: Vec<CutoverView>,
    observations: Observations,
    problems: Vec<String>,
    polls: u64,
    at_ms: i64,
    /// When CloudWatch metrics were last read.
    metrics_read_ms: Option<i64>,
}

/// The dashboard of one deployed pipeline.
pub struct Dashboard<S> {
    config: DashboardConfig,
    clients: Clients,
    source: S,
    metrics: Option<CloudWatchMetrics>,
    snapshot: RwLock<Snapshot>,
}

/// The page's content and figures, as `GET /api/overview` answers.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// When it was computed (epoch ms).
    pub at_ms: i64,
    /// Polls of the pipeline so far.
    pub polls: u64,
    /// The stage functions found.
    pub deployment: Vec<DeployedStage>,
    /// The pipeline's streams: sources, shuffle streams, outputs.
    pub streams: Vec<DeployedStream>,
    /// The blue/green cutovers the stages read.
    pub cutovers: Vec<CutoverView>,
    /// What the pipeline costs per hour.
    pub cost: Option<CostView>,
    /// Per stage figures.
    pub stages: Vec<StageView>,
    /// What points at a problem.
    pub highlights: Vec<Highlight>,
    /// What the last poll could not read.
    pub problems: Vec<String>,
    /// The page's content (`#content`).
    pub html: String,
}

impl<S: MetricsSource + 'static> Dashboard<S> {
    /// A dashboard reading through `clients` and `source`; nothing is read until
    /// [`Dashboard::poll`].
    pub fn new(config: DashboardConfig, clients: Clients, source: S) -> Self {
        Dashboard {
            config,
            clients,
            source,
            metrics: None,
            snapshot: RwLock::new(Snapshot::default()),
        }
    }

    /// Takes the stages' totals, rates, charts and cost from CloudWatch metrics (as on AWS);
    /// the per-shard rows (which the metrics, on the `Stage` dimension only, cannot give),
    /// errors and Lambda's REPORT lines still come from the logs' lines.
    pub fn with_cloudwatch_metrics(mut self, metrics: CloudWatchMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The periods of every stage's CloudWatch metrics to read now, if metrics come from
    /// CloudWatch and a period has passed since the last read: the whole history the first
    /// time, the last three periods (still growing as late lines are extracted) after.
    async fn read_metrics(
        &self,
        deployment: &[DeployedStage],
        now: i64,
        last_read: Option<i64>,
        problems: &mut Vec<String>,
    ) -> Option<Vec<(String, Vec<crate::model::StagePeriod>)>> {
        let metrics = self.metrics.as_ref()?;
        let period_ms = i64::from(CloudWatchMetrics::PERIOD_S) * 1000;
        if last_read.is_some_and(|t| now - t < period_ms) {
            return None;
        }
        let from = match last_read {
            None => now - self.history_ms(),
            Some(_) => now - 3 * period_ms,
        };
        let mut read = Vec::new();
        let mut stages: Vec<&str> = deployment.iter().map(|d| d.stage.as_str()).collect();
        stages.sort_unstable();
        stages.dedup();
        for stage in stages {
            match metrics.periods(stage, from, now).await {
                Ok(periods) => read.push((stage.to_owned(), periods)),
                Err(e) => problems.push(format!("CloudWatch metrics of {stage}: {e}")),
            }
        }
        Some(read)
    }

    fn history_ms(&self) -> i64 {
        i64::try_from(self.config.history.as_millis()).unwrap_or(i64::MAX)
    }

    /// Reads the pipeline once: its stage functions, each one's new log lines and its shards'
    /// status. What cannot be read is kept as a problem to show, not an error.
    pub async fn poll(&self) -> Result<(), DashboardError> {
        let deployment = discover(&self.clients.lambda, &self.config.prefix).await?;
        let now = now_ms();
        let mut lines = Vec::new();
        let mut samples = Vec::new();
        let mut problems = Vec::new();
        let streams = match discover_streams(&self.clients.kinesis, &self.config.prefix, &deployment).await {
            Ok(streams) => streams,
            Err(e) => {
                problems.push(format!("streams: {e}"));
                Vec::new()
            }
        };
        let (cutovers, cutover_problems) = read_cutovers(&self.clients.dynamodb, &deployment).await;
        problems.extend(cutover_problems);
        let last_read = self
            .snapshot
            .read()
            .map_err(|_| DashboardError::Poisoned)?
            .metrics_read_ms;
        let periods = self.read_metrics(&deployment, now, last_read, &mut problems).await;
        for stage in &deployment {
            match self.source.lines(&stage.function, now - self.history_ms()).await {
                Ok(new) => lines.extend(new.into_iter().map(|l| (stage.stage.clone(), l))),
                Err(e) => problems.push(format!("logs of {}: {e}", stage.function)),
            }
            let mut options = StatusOptions::new(&stage.stage, &stage.table);
            options.stream = stage.stream.clone();
            match stage_status(
                &self.clients.dynamodb,
                &self.clients.s3,
                Some(&self.clients.kinesis),
                None,
                &options,
            )
            .await
            {
                Ok(status) => samples.extend(status.shards.into_iter().map(|s| ShardSample {
                    stage: stage.stage.clone(),
                    shard: s.shard,
                    at_ms: status.at_ms,
                    iterator_age_ms: s.iterator_age_ms,
                    state_items: s.state_items as u64,
                    state_bytes: s.state_bytes,
                })),
                Err(e) => problems.push(format!("status of {}: {e}", stage.stage)),
            }
        }
        for p in &problems {
            tracing::warn!("{p}");
        }
        let mut snapshot = self.snapshot.write().map_err(|_| DashboardError::Poisoned)?;
        // With CloudWatch metrics too, the EMF lines give the shard rows (the metrics have the
        // stage only); the stage's totals are then the metrics' (see `model`).
        for (stage, line) in lines {
            snapshot.observations.add_log_line(&stage, &line.text, Some(line.at_ms));
        }
        if let Some(periods) = periods {
            for (stage, periods) in periods {
                snapshot.observations.replace_periods(&stage, &periods);
            }
            snapshot.metrics_read_ms = Some(now);
        }
        snapshot.observations.samples.extend(samples);
        snapshot.observations.retain_since(now - self.history_ms());
        snapshot.deployment = deployment;
        snapshot.streams = streams;
        snapshot.cutovers = cutovers;
        snapshot.problems = problems;
        snapshot.polls += 1;
        snapshot.at_ms = now;
        Ok(())
    }

    /// The figures and the page's content now.
    pub fn overview(&self) -> Result<Overview, DashboardError> {
        let snapshot = self.snapshot.read().map_err(|_| DashboardError::Poisoned)?;
        let now = now_ms();
        let stages = snapshot.observations.overview(now, &self.config.windows);
        let found = highlights(&snapshot.observations, &stages, now);
        let cost = cost_of(&snapshot, now);
        let html = content(
            &snapshot,
            &stages,
            &found,
            cost.as_ref(),
            (now - self.history_ms(), now),
        )?;
        Ok(Overview {
            at_ms: now,
            polls: snapshot.polls,
            deployment: snapshot.deployment.clone(),
            streams: snapshot.streams.clone(),
            cutovers: snapshot.cutovers.clone(),
            cost,
            stages,
            highlights: found,
            problems: snapshot.problems.clone(),
            html,
        })
    }

    /// The whole page.
    pub fn page(&self) -> Result<String, DashboardError> {
        let overview = self.overview()?;
        let interval = self.config.interval.as_millis();
        Ok(format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>shardflow dashboard</title>\
             <style>{STYLE}</style></head><body data-refreshes=\"0\"><h1>shardflow dashboard</h1>\
             <p class=\"meta\">stage functions {}· refreshes every {:.0} s · <span id=\"updated\">read at {}</span></p>\
             <div id=\"content\">{}</div><script>{}</script></body></html>\n",
            if self.config.prefix.is_empty() {
                String::new()
            } else {
                format!("starting with <code>{}</code> ", html(&self.config.prefix))
            },
            self.config.interval.as_secs_f64(),
            crate::format::clock(overview.at_ms),
            overview.html,
            SCRIPT.replace("INTERVAL_MS", &interval.to_string()),
        ))
    }
}

/// The page's script: fetch the overview every interval and swap the content in; count the
/// refreshes on `<body data-refreshes>`.
const SCRIPT: &str = r#"
let refreshes = 0;
async function refresh() {
  const updated = document.getElementById('updated');
  try {
    const response = await fetch('api/overview', { cache: 'no-store' });
    if (!response.ok) throw new Error('HTTP ' + response.status);
    const overview = await response.json();
    document.getElementById('content').innerHTML = overview.html;
    refreshes += 1;
    document.body.dataset.refreshes = String(refreshes);
    updated.textContent = 'updated ' + new Date(overview.at_ms).toISOString().slice(0, 19).replace('T', ' ') + ' UTC';
  } catch (e) {
    updated.textContent = 'refresh failed: ' + e.message;
  }
}
setInterval(refresh, INTERVAL_MS);
"#;

/// The cost per hour of what `snapshot` read at `now`, with us-east-1's list prices; `None`
/// (and a warning) if the model refuses the figures.
fn cost_of(snapshot: &Snapshot, now: i64) -> Option<CostView> {
    let functions: Vec<StageFunction> = snapshot
        .deployment
        .iter()
        .map(|d| StageFunction {
            stage: d.stage.clone(),
            input_stream: d.stream.clone(),
            memory_mb: d.memory_mb.map(f64::from),
            architecture: match d.architecture.as_deref() {
                Some("x86_64") => Some(Architecture::X86_64),
                Some("arm64") => Some(Architecture::Arm64),
                _ => None,
            },
        })
        .collect();
    let streams: Vec<StreamInfo> = snapshot
        .streams
        .iter()
        .map(|s| StreamInfo {
            name: s.name.clone(),
            shards: s.shards,
            retention_hours: s.retention_hours,
        })
        .collect();
    match live_cost(&snapshot.observations, &functions, &streams, now, &us_east_1()) {
        Ok(view) => Some(view),
        Err(e) => {
            tracing::warn!("costing the pipeline: {e}");
            None
        }
    }
}

/// The stage functions as a small graph: input stream → function (stage) → streams it writes,
/// with colour and mapping.
fn deployment_list(deployment: &[DeployedStage], streams: &[DeployedStream]) -> String {
    if deployment.is_empty() {
        return "<p id=\"no-stages\">No stage function found yet.</p>".to_owned();
    }
    let mut out = String::from("<table class=\"deployment\"><thead><tr><th>input stream</th><th></th><th>function</th><th>stage</th><th></th><th>writes</th><th>state table</th><th>mapping</th><th>colour</th></tr></thead><tbody>");
    for d in deployment {
        let colour = d.colour.as_deref().map_or_else(String::new, |c| {
            format!("<span class=\"colour colour-{c}\">{c}</span>", c = html(c))
        });
        let writes: Vec<&str> = streams
            .iter()
            .filter(|s| s.written_by.contains(&d.function))
            .map(|s| s.name.as_str())
            .collect();
        out.push_str(&format!(
            "<tr data-function=\"{f}\"><td>{}</td><td>→</td><td>{f}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{colour}</td></tr>",
            html(d.stream.as_deref().unwrap_or("–")),
            html(&d.stage),
            if writes.is_empty() { "" } else { "→" },
            html(&writes.join(", ")),
            html(&d.table),
            html(d.mapping_state.as_deref().unwrap_or("–")),
            f = html(&d.function),
        ));
    }
    out.push_str("</tbody></table>");
    out
}

/// The streams, a row each with `data-stream` and `data-role` (source, shuffle, output).
fn stream_list(streams: &[DeployedStream]) -> String {
    if streams.is_empty() {
        return "<p id=\"no-streams\">No stream found.</p>".to_owned();
    }
    let mut out = String::from("<table class=\"streams\"><thead><tr><th>stream</th><th>role</th><th>shards</th><th>retention</th><th>written by</th><th>read by</th></tr></thead><tbody>");
    for s in streams {
        let role = match s.role {
            StreamRole::Source => "source",
            StreamRole::Shuffle => "shuffle",
            StreamRole::Output => "output",
        };
        out.push_str(&format!(
            "<tr data-stream=\"{n}\" data-role=\"{role}\"><td>{n}</td><td>{role}</td><td data-field=\"shards\">{}</td><td>{} h</td><td>{}</td><td>{}</td></tr>",
            s.shards,
            s.retention_hours,
            html(&s.written_by.join(", ")),
            html(&s.read_by.join(", ")),
            n = html(&s.name),
        ));
    }
    out.push_str("</tbody></table>");
    out
}

/// Buckets of the live charts (one a minute over the last hour).
const BUCKETS: usize = 60;

fn content(
    snapshot: &Snapshot,
    stages: &[StageView],
    found: &[Highlight],
    cost: Option<&CostView>,
    range: (i64, i64),
) -> Result<String, DashboardError> {
    let mut out = String::from("<h2>Pipeline</h2>");
    out.push_str(&deployment_list(&snapshot.deployment, &snapshot.streams));
    out.push_str("<h3>Streams</h3>");
    out.push_str(&stream_list(&snapshot.streams));
    for p in &snapshot.problems {
        out.push_str(&format!("<p class=\"error\">{}</p>", html(p)));
    }
    out.push_str("<h2>Highlights</h2>");
    out.push_str(&highlight_list(found));
    out.push_str("<h2>Stages</h2>");
    out.push_str(&stage_table(stages));
    out.push_str("<h2 id=\"blue-green\">Blue/green</h2>");
    out.push_str(&cutover_html(&snapshot.cutovers));
    out.push_str("<h2 id=\"cost\">Cost per hour</h2>");
    match cost {
        Some(view) => out.push_str(&cost_table(view)),
        None => out.push_str("<p class=\"error\">The cost model refused the figures read (see the log).</p>"),
    }
    for view in stages {
        out.push_str(&format!(
            "<section class=\"stage\" data-stage=\"{s}\"><h2>{s}</h2>",
            s = html(&view.stage)
        ));
        out.push_str(&shard_table(view));
        let series = snapshot.observations.series(&view.stage, range.0, range.1, BUCKETS);
        out.push_str("<div class=\"charts\">");
        out.push_str(&stage_figures(&series, range)?);
        out.push_str("</div></section>");
    }
    Ok(out)
}

/// An error as a 500 answer.
struct Failure(DashboardError);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.0.to_string()).into_response()
    }
}

async fn page<S: MetricsSource + 'static>(AxumState(d): AxumState<Arc<Dashboard<S>>>) -> Result<Html<String>, Failure> {
    d.page().map(Html).map_err(Failure)
}

async fn overview<S: MetricsSource + 'static>(
    AxumState(d): AxumState<Arc<Dashboard<S>>>,
) -> Result<impl IntoResponse, Failure> {
    let o = d.overview().map_err(Failure)?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(o)))
}

/// The dashboard's routes.
pub fn router<S: MetricsSource + 'static>(dashboard: Arc<Dashboard<S>>) -> Router {
    Router::new()
        .route("/", get(page::<S>))
        .route("/api/overview", get(overview::<S>))
        .with_state(dashboard)
}

/// Polls the pipeline every interval, forever (a failed poll is logged and tried again). Run
/// it on the task that serves (`block_on`, `select!`): reading the status borrows across
/// awaits in a way `tokio::spawn` cannot prove `Send`.
pub async fn poll_forever<S: MetricsSource + 'static>(dashboard: Arc<Dashboard<S>>) {
    loop {
        if let Err(e) = dashboard.poll().await {
            tracing::warn!("reading the pipeline: {e}");
        }
        tokio::time::sleep(dashboard.config.interval).await;
    }
}

/// Binds `addr` and serves the page on a task of the current tokio runtime; returns the
/// address bound (port 0 picks a free one). Nothing is read until someone polls
/// ([`Dashboard::poll`], [`poll_forever`]).
pub async fn start<S: MetricsSource + 'static>(
    dashboard: Arc<Dashboard<S>>,
    addr: SocketAddr,
) -> Result<SocketAddr, DashboardError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(DashboardError::Serve)?;
    let bound = listener.local_addr().map_err(DashboardError::Serve)?;
    let app = router(dashboard);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("the dashboard stopped serving: {e}");
        }
    });
    Ok(bound)
}
