//! Time series as inline SVG line charts, drawn with plotters: nothing to load, no script.

use plotters::prelude::*;

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("drawing chart {title:?}: {message}")]
pub struct ChartError {
    /// The chart's title.
    pub title: String,
    /// What plotters said.
    pub message: String,
}

/// One line of a chart: a name for the legend and (epoch ms, value) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The legend's name.
    pub name: String,
    /// (time, value) points, in time order.
    pub points: Vec<(i64, f64)>,
}

/// How the y axis' values read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YAxis {
    /// Plain numbers.
    Number,
    /// Epoch ms, shown as a UTC time of day.
    Clock,
}

/// Chart size in pixels.
pub const SIZE: (u32, u32) = (640, 260);

const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn time_of_day(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |d| d.format("%H:%M:%S").to_string())
}

fn number(v: f64) -> String {
    if v.abs() >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.fract() == 0.0 || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// `lines` over time as an SVG document (a `<svg>` element to inline in HTML). An empty chart
/// (no point at all) still draws its axes over the range `x`.
pub fn line_chart(
    title: &str,
    y_label: &str,
    y_axis: YAxis,
    x: (i64, i64),
    lines: &[Line],
) -> Result<String, ChartError> {
    let fail = |e: &dyn std::fmt::Display| ChartError {
        title: title.to_owned(),
        message: e.to_string(),
    };
    let values = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if y_axis == YAxis::Number {
        lo = lo.min(0.0);
    }
    if (hi - lo).abs() < f64::EPSILON {
        hi = lo + 1.0;
    }
    let pad = (hi - lo) * 0.05;
    let (x0, x1) = (x.0, x.1.max(x.0 + 1));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(26)
            .y_label_area_size(if y_axis == YAxis::Clock { 64 } else { 52 })
            .build_cartesian_2d(
                x0..x1,
                (lo - if y_axis == YAxis::Number { 0.0 } else { pad })..(hi + pad),
            )
            .map_err(|e| fail(&e))?;
        let y_format = |v: &f64| match y_axis {
            YAxis::Number => number(*v),
            YAxis::Clock => time_of_day(*v as i64),
        };
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(5)
            .x_label_formatter(&|t| time_of_day(*t))
            .y_label_formatter(&y_format)
            .y_desc(y_label)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| fail(&e))?;
        for (i, line) in lines.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(line.points.iter().copied(), colour.stroke_width(2)))
                .map_err(|e| fail(&e))?
                .label(line.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2)));
        }
        if lines.len() > 1 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(RGBColor(200, 200, 200))
                .draw()
                .map_err(|e| fail(&e))?;
        }
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_an_svg_with_its_title_and_one_path_per_line() {
        let lines = vec![
            Line {
                name: "shard-a".into(),
                points: vec![(0, 1.0), (60_000, 5.0)],
            },
            Line {
                name: "shard-b".into(),
                points: vec![(0, 2.0), (60_000, 3.0)],
            },
        ];
        let svg = line_chart("records in", "per s", YAxis::Number, (0, 60_000), &lines).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("records in") && svg.contains("shard-a") && svg.contains("shard-b"));
        assert!(svg.matches("<polyline").count() >= 2, "{svg}");
    }

    #[test]
    fn an_empty_chart_still_draws_its_axes() {
        let svg = line_chart("nothing yet", "per s", YAxis::Clock, (0, 0), &[]).unwrap();
        assert!(svg.contains("nothing yet") && svg.contains("00:00:00"), "{svg}");
    }
}
