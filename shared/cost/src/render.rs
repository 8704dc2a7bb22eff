//! The report as a text table.

use std::fmt::Write;

use crate::model::{Report, Service};
use crate::profile::BasisKind;

/// `1234.5` as `1,234.50`.
pub fn dollars(x: f64) -> String {
    let cents = (x * 100.0).round();
    let whole = (cents / 100.0).trunc().abs() as u64;
    let frac = (cents.abs() % 100.0) as u64;
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if cents < 0.0 { "-" } else { "" };
    format!("{sign}{grouped}.{frac:02}")
}

/// The report as the table `shardflow cost` prints.
pub fn render_table(report: &Report) -> String {
    let w = &report.workload;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "shardflow cost: {} platform at {} events/s, batch size {}, batching window {} s, {}",
        report.platform,
        w.events_per_s,
        w.batch_size,
        w.batching_window_s,
        w.architecture.name()
    );
    let _ = writeln!(
        out,
        "prices: {} list prices as of {}, written into the repository, never fetched: check them \
         before relying on a figure (month = 730 h)",
        report.region, report.prices_as_of
    );
    let _ = writeln!(out, "traffic (the same in every column):");
    for (stage, t) in &report.traffic {
        let _ = writeln!(
            out,
            "  {stage:<20} {} shards × {:.2} batches/s of {:.1} records, {:.2} results per batch",
            t.shards, t.batches_per_s_shard, t.records_per_batch, t.results_per_batch
        );
    }
    let _ = writeln!(out);

    // Rows in order of first appearance over the columns.
    let mut rows: Vec<(String, Service)> = Vec::new();
    for column in &report.columns {
        for line in &column.lines {
            let key = (line.item.clone(), line.service);
            if !rows.contains(&key) {
                rows.push(key);
            }
        }
    }
    let label_width = rows
        .iter()
        .map(|(item, service)| item.len() + 1 + service.name().len())
        .chain(["  the rest (processing)".len()])
        .max()
        .unwrap_or(0)
        + 2;
    let widths: Vec<usize> = report.columns.iter().map(|c| c.label.len().max(10)).collect();
    let header = |out: &mut String, first: &str| {
        let _ = write!(out, "{first:<label_width$}");
        for (c, width) in report.columns.iter().zip(&widths) {
            let _ = write!(out, "  {:>width$}", c.label);
        }
        let _ = writeln!(out);
    };
    let row = |out: &mut String, label: &str, values: Vec<Option<f64>>| {
        let _ = write!(out, "{label:<label_width$}");
        for (value, width) in values.iter().zip(&widths) {
            let text = value.map(dollars).unwrap_or_else(|| "-".to_owned());
            let _ = write!(out, "  {text:>width$}");
        }
        let _ = writeln!(out);
    };
    header(&mut out, "$ per month");
    for (item, service) in &rows {
        let values = report
            .columns
            .iter()
            .map(|c| {
                let found: Vec<f64> = c
                    .lines
                    .iter()
                    .filter(|l| &l.item == item && l.service == *service)
                    .map(|l| l.usd_month)
                    .collect();
                (!found.is_empty()).then(|| found.iter().sum())
            })
            .collect();
        row(&mut out, &format!("{item} {}", service.name()), values);
    }
    let _ = writeln!(out);
    header(&mut out, "by service");
    for service in Service::ALL {
        let values: Vec<Option<f64>> = report
            .columns
            .iter()
            .map(|c| c.by_service.iter().find(|(s, _)| *s == service).map(|(_, v)| *v))
            .collect();
        if values.iter().flatten().any(|v| *v > 0.0) {
            row(&mut out, service.name(), values);
        }
    }
    row(
        &mut out,
        "total $ per month",
        report.columns.iter().map(|c| Some(c.total_usd_month)).collect(),
    );
    row(
        &mut out,
        "  same in every column",
        report
            .columns
            .iter()
            .map(|c| Some(c.total_usd_month - c.processing_usd_month))
            .collect(),
    );
    row(
        &mut out,
        "  the rest (processing)",
        report.columns.iter().map(|c| Some(c.processing_usd_month)).collect(),
    );
    row(
        &mut out,
        "$ per million events",
        report.columns.iter().map(|c| Some(c.usd_per_million_events)).collect(),
    );
    let _ = writeln!(out);
    for (kind, heading) in [
        (BasisKind::Measured, "measured"),
        (BasisKind::FromCode, "from the code and template"),
        (BasisKind::Configured, "configured"),
        (BasisKind::Assumed, "assumed"),
    ] {
        let of_kind: Vec<_> = report.basis.iter().filter(|b| b.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{heading}:");
        for b in of_kind {
            let _ = writeln!(out, "  - {} [{}]", b.figure, b.source);
        }
    }
    let _ = writeln!(out, "not modelled: {}.", report.not_modelled.join("; "));
    out
}

#[cfg(test)]
mod tests {
    use super::dollars;

    #[test]
    fn dollars_have_thousands_separators_and_two_decimals() {
        assert_eq!(dollars(0.0), "0.00");
        assert_eq!(dollars(1_234.567), "1,234.57");
        assert_eq!(dollars(1_000_000.0), "1,000,000.00");
        assert_eq!(dollars(999.999), "1,000.00");
    }
}
