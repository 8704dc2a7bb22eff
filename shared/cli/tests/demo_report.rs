//! `shardflow demo --report FILE.html` as a person uses it: the file opens in a real browser
//! (Debian's headless chromium, see `scripts/chromium`) without a server or network, shows the
//! run's summary with the numbers the command printed, and draws its charts. A screenshot is
//! saved under `<target>/screenshots/demo-report.png`.

use std::process::Command;

use shardflow_testkit::browser::{dump_dom, screenshot, screenshot_dir};

/// The text between `start` (after it) and the next `end`, from `from` on.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let at = text.find(start)? + start.len();
    let len = text[at..].find(end)?;
    Some(&text[at..at + len])
}

/// A pipeline's row of the printed summary: records in, results out, late.
fn printed_row(stdout: &str, pipeline: &str) -> [u64; 3] {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(pipeline))
        .unwrap_or_else(|| panic!("no {pipeline} row in:\n{stdout}"));
    let n: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(3)
        .map(|w| w.parse().unwrap())
        .collect();
    [n[0], n[1], n[2]]
}

/// A pipeline's row of the report's summary table, as the browser rendered it.
fn rendered_row(dom: &str, pipeline: &str) -> [u64; 3] {
    let row = between(dom, &format!("<tr data-pipeline=\"{pipeline}\">"), "</tr>")
        .unwrap_or_else(|| panic!("no {pipeline} row in the rendered summary"));
    let field = |name: &str| -> u64 {
        between(row, &format!("data-field=\"{name}\">"), "<")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {row}"))
    };
    [field("records_in"), field("results_out"), field("late")]
}

#[test]
fn the_demo_report_opens_in_a_browser_with_the_runs_numbers_and_its_charts() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_shardflow"))
        .args(["demo", "--events", "30000", "--corrupt-every", "2000", "--out"])
        .arg(dir.path().join("out"))
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("report in"), "{stdout}");

    // Self-contained: no script, style sheet or image is fetched from anywhere.
    let html = std::fs::read_to_string(&report).unwrap();
    for fetch in ["<script", "<link", "<img", "src=", "url("] {
        assert!(!html.contains(fetch), "the report fetches something: {fetch}");
    }

    let url = format!("file://{}", report.display());
    let dom = dump_dom(&url, 1_000);
    for pipeline in ["revenue", "receipts", "order_enrich"] {
        assert_eq!(
            rendered_row(&dom, pipeline),
            printed_row(&stdout, pipeline),
            "{pipeline}"
        );
    }
    let dead_letters: u64 = between(&stdout, "dead letters: ", " ").unwrap().trim().parse().unwrap();
    assert!(dead_letters > 0, "{stdout}");
    let rendered: u64 = between(&dom, "<span id=\"dead-letters\">", "<")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(rendered, dead_letters);
    // The dead letters are pointed out.
    assert!(
        dom.contains("data-kind=\"dead_letters_arriving\""),
        "no dead-letter highlight"
    );

    // Per pipeline: throughput, watermark per shard, late data and dead letters, results per
    // window, each an inline SVG with lines drawn.
    for pipeline in ["revenue", "receipts", "order_enrich"] {
        let section = between(
            &dom,
            &format!("<section class=\"stage\" data-stage=\"{pipeline}\">"),
            "</section>",
        )
        .unwrap_or_else(|| panic!("no section of {pipeline}"));
        for chart in ["throughput", "watermark", "late", "results_per_window"] {
            let figure = between(section, &format!("data-chart=\"{chart}\">"), "</figure>")
                .unwrap_or_else(|| panic!("{pipeline}: no {chart} chart"));
            assert!(
                figure.contains("<svg") && figure.contains("<polyline"),
                "{pipeline}: {chart} draws nothing"
            );
        }
        for shard in ["shard-0", "shard-1", "shard-2", "shard-3"] {
            assert!(
                section.contains(&format!("data-shard=\"{shard}\"")),
                "{pipeline}: no {shard}"
            );
        }
    }

    let exe = std::env::current_exe().unwrap();
    let shot = screenshot_dir(&exe).join("demo-report.png");
    screenshot(&url, &shot, (1400, 2400), 1_000);
    eprintln!("screenshot: {}", shot.display());
}
