//! The HTML pieces the demo report and the live dashboard share: the stage and shard tables,
//! the highlights, and a stage's charts.

use shardflow_cost::Service;

use crate::chart::{line_chart, ChartError, Line, YAxis};
use crate::cost::CostView;
use crate::format::{bytes, clock, duration, html, rate};
use crate::highlight::Highlight;
use crate::model::{StageSeries, StageView};

/// The page's style sheet: plain, readable, printable.
pub const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1400px; color: #222; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f5f5f5; }
.highlights { list-style: none; padding: 0; }
.highlight { border-left: 4px solid #d62728; background: #fff5f5; padding: .4rem .8rem; margin: .4rem 0; }
.highlight p { margin: .2rem 0; color: #444; }
.ok { color: #2a7; }
.charts { display: flex; flex-wrap: wrap; gap: .5rem; }
figure.chart { margin: 0; border: 1px solid #eee; }
figure.chart figcaption { font-size: .8rem; color: #555; padding: .2rem .5rem; }
.error { color: #a00; font-family: monospace; font-size: .8rem; white-space: pre-wrap; }
.colour { display: inline-block; padding: .1rem .5rem; border-radius: .3rem; color: white; }
.colour-blue { background: #1f77b4; } .colour-green { background: #2ca02c; }
"#;

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "–".to_owned(), f)
}

/// The stages as one table, a row each, with `data-stage` on the row and `data-field` on each
/// figure (for scripts and tests).
pub fn stage_table(views: &[StageView]) -> String {
    let mut out = String::from(
        "<table class=\"stages\"><thead><tr><th>stage</th><th>watermark</th><th>lag</th><th>held by</th>\
         <th>records in</th><th>in/s</th><th>results out</th><th>out/s</th><th>late</th><th>dead letters</th>\
         <th>state</th><th>commit</th><th>last error</th></tr></thead><tbody>",
    );
    for v in views {
        out.push_str(&format!(
            "<tr data-stage=\"{s}\"><td>{s}</td><td data-field=\"watermark\">{}</td><td data-field=\"lag\">{}</td>\
             <td>{}</td><td data-field=\"records_in\">{}</td><td data-field=\"records_in_per_sec\">{}</td>\
             <td data-field=\"results_out\">{}</td><td>{}</td><td data-field=\"late\">{}</td>\
             <td data-field=\"dead_letters\">{}</td><td>{}</td><td>{}</td><td class=\"error\" data-field=\"last_error\">{}</td></tr>",
            opt(v.watermark_ms, clock),
            opt(v.watermark_lag_ms, duration),
            html(v.held_by.as_deref().unwrap_or("–")),
            v.flow.records_in,
            rate(v.flow.records_in_per_sec),
            v.flow.results_out,
            rate(v.flow.results_out_per_sec),
            v.flow.late_records,
            v.flow.dead_letter_records,
            opt(v.state_bytes, bytes),
            opt(v.commit_ms, |ms| duration(ms as i64)),
            html(v.last_error.as_ref().map_or("", |e| e.message.as_str())),
            s = html(&v.stage),
        ));
    }
    out.push_str("</tbody></table>");
    out
}

/// One stage's shards as a table, a row each, with `data-shard` on the row.
pub fn shard_table(view: &StageView) -> String {
    let mut out = format!(
        "<table class=\"shards\" data-stage=\"{}\"><thead><tr><th>shard</th><th>watermark</th><th>lag</th>\
         <th>iterator age</th><th>last batch</th><th>records in</th><th>in/s</th><th>results out</th><th>late</th>\
         <th>dead letters</th><th>state items</th><th>state</th><th>last commit</th><th>commit bytes</th></tr></thead><tbody>",
        html(&view.stage)
    );
    for s in &view.shards {
        out.push_str(&format!(
            "<tr data-shard=\"{sh}\"><td>{sh}</td><td>{}</td><td>{}</td><td data-field=\"iterator_age\">{}</td><td>{}</td>\
             <td data-field=\"records_in\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            opt(s.watermark_ms, clock),
            opt(s.watermark_lag_ms, duration),
            opt(s.iterator_age_ms, duration),
            opt(s.last_batch_ms, clock),
            s.flow.records_in,
            rate(s.flow.records_in_per_sec),
            s.flow.results_out,
            s.flow.late_records,
            s.flow.dead_letter_records,
            opt(s.state_items, |n| n.to_string()),
            opt(s.state_bytes, bytes),
            opt(s.commit_ms, |ms| duration(ms as i64)),
            opt(s.state_bytes_written, bytes),
            sh = html(&s.shard),
        ));
    }
    out.push_str("</tbody></table>");
    out
}

/// The highlights as a list, or a line saying there is none.
pub fn highlight_list(highlights: &[Highlight]) -> String {
    if highlights.is_empty() {
        return "<p class=\"ok\" id=\"no-highlights\">Nothing stands out: watermarks move, no shard falls behind, no dead letters lately.</p>".to_owned();
    }
    let mut out = String::from("<ul class=\"highlights\">");
    for h in highlights {
        let kind = serde_json::to_value(h.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        out.push_str(&format!(
            "<li class=\"highlight\" data-kind=\"{}\" data-stage=\"{}\"><strong>{}</strong><p>{}</p></li>",
            html(&kind),
            html(&h.stage),
            html(&h.title),
            html(&h.meaning)
        ));
    }
    out.push_str("</ul>");
    out
}

/// A chart in a `<figure>` with `data-chart` = `kind` and a caption.
pub fn figure(kind: &str, caption: &str, svg: &str) -> String {
    format!(
        "<figure class=\"chart\" data-chart=\"{kind}\">{svg}<figcaption>{}</figcaption></figure>",
        html(caption)
    )
}

/// A stage's charts, as `<figure>`s to put in a `<div class="charts">`: throughput, watermark
/// per shard, late and dead-lettered records, and the iterator age per shard when there are
/// readings.
pub fn stage_figures(series: &StageSeries, range: (i64, i64)) -> Result<String, ChartError> {
    let bucketed = |values: Vec<f64>| -> Vec<(i64, f64)> {
        series
            .starts
            .iter()
            .map(|t| t + series.bucket_ms / 2)
            .zip(values)
            .collect()
    };
    let per_shard = |points: &std::collections::BTreeMap<String, Vec<(i64, i64)>>| -> Vec<Line> {
        points
            .iter()
            .map(|(shard, p)| Line {
                name: shard.clone(),
                points: p.iter().map(|(t, v)| (*t, *v as f64)).collect(),
            })
            .collect()
    };
    let mut out = String::new();
    let throughput = [
        Line {
            name: "records in/s".into(),
            points: bucketed(series.records_in_per_sec.clone()),
        },
        Line {
            name: "results out/s".into(),
            points: bucketed(series.results_out_per_sec.clone()),
        },
    ];
    let every = duration(series.bucket_ms);
    out.push_str(&figure(
        "throughput",
        &format!("Records in and results out per second, in buckets of {every}."),
        &line_chart(
            &format!("{}: throughput", series.stage),
            "per second",
            YAxis::Number,
            range,
            &throughput,
        )?,
    ));
    out.push_str(&figure(
        "watermark",
        "Each shard's watermark (y) as batches arrived (x): a flat line is a stalled watermark.",
        &line_chart(
            &format!("{}: watermark per shard", series.stage),
            "watermark",
            YAxis::Clock,
            range,
            &per_shard(&series.watermarks),
        )?,
    ));
    let late = [
        Line {
            name: "late".into(),
            points: bucketed(series.late_records.iter().map(|&n| n as f64).collect()),
        },
        Line {
            name: "dead letters".into(),
            points: bucketed(series.dead_letter_records.iter().map(|&n| n as f64).collect()),
        },
    ];
    out.push_str(&figure(
        "late",
        &format!("Late and dead-lettered records per {every}."),
        &line_chart(
            &format!("{}: late data and dead letters", series.stage),
            "records",
            YAxis::Number,
            range,
            &late,
        )?,
    ));
    if !series.iterator_ages.is_empty() {
        let ages: Vec<Line> = per_shard(&series.iterator_ages)
            .into_iter()
            .map(|mut l| {
                l.points.iter_mut().for_each(|p| p.1 /= 1000.0);
                l
            })
            .collect();
        out.push_str(&figure(
            "iterator_age",
            "Each shard's iterator age: how old the oldest unprocessed record is. A rising line is a growing backlog.",
            &line_chart(
                &format!("{}: iterator age", series.stage),
                "seconds",
                YAxis::Number,
                range,
                &ages,
            )?,
        ));
    }
    Ok(out)
}

/// Dollars per hour, with enough digits for small figures (a figure that rounds to zero is
/// shown as `$0.0000`, never `$-0.0000`).
fn usd(x: f64) -> String {
    let x = if x.abs() < 0.00005 { 0.0 } else { x };
    if x >= 1.0 {
        format!("${x:.2}")
    } else {
        format!("${x:.4}")
    }
}

/// The cost per hour as one table: a row per stage (its services in columns), a row per stream,
/// the total (`data-field="cost_total"`).
pub fn cost_table(view: &CostView) -> String {
    let services = [
        Service::Lambda,
        Service::DynamoDB,
        Service::S3,
        Service::SNS,
        Service::SQS,
        Service::CloudWatch,
    ];
    let mut out = format!(
        "<table class=\"cost\"><thead><tr><th>stage or stream</th><th>records in/s</th>{}<th>$ per hour</th></tr></thead><tbody>",
        services
            .iter()
            .map(|s| format!("<th>{}</th>", s.name()))
            .collect::<String>()
    );
    for s in &view.stages {
        let title = s
            .services
            .iter()
            .map(|c| format!("{}: {}", c.service, c.usage))
            .chain(s.basis.iter().cloned())
            .collect::<Vec<_>>()
            .join("\n");
        out.push_str(&format!(
            "<tr data-cost-stage=\"{st}\" title=\"{}\"><td>{st}</td><td>{}</td>{}<td data-field=\"cost\">{}</td></tr>",
            html(&title),
            rate(s.records_per_s),
            services
                .iter()
                .map(|svc| format!("<td>{}</td>", usd(s.of(*svc))))
                .collect::<String>(),
            usd(s.usd_per_hour),
            st = html(&s.stage),
        ));
    }
    for s in &view.streams {
        out.push_str(&format!(
            "<tr data-cost-stream=\"{n}\" title=\"{}\"><td>stream {n}</td><td></td>{}<td data-field=\"cost\">{}</td></tr>",
            html(&s.usage),
            "<td></td>".repeat(services.len()),
            usd(s.usd_per_hour),
            n = html(&s.stream),
        ));
    }
    out.push_str(&format!(
        "<tr class=\"total\"><th>total</th><th></th>{}<th data-field=\"cost_total\">{}</th></tr></tbody></table>\
         <p class=\"meta\">The cost model of <code>shardflow cost</code> (list prices of {} as of {}) fed with the rates \
         and per-batch figures read over the last {}; hover a row for its usage and which figures are measured.</p>",
        "<th></th>".repeat(services.len()),
        usd(view.total_usd_per_hour),
        html(&view.region),
        html(&view.prices_as_of),
        duration(view.window_ms),
    ));
    out
}
