//! `shardflow dashboard` against the shop stack deployed on LocalStack, seen in a real browser
//! (Debian's headless chromium, see `scripts/chromium`): the page lists the stage functions with
//! their streams and colour, each stage's shards, and its records-in count grows as generated
//! changes flow through the stages; the page's script refreshes it from the JSON endpoint.
//! Screenshots are saved under `<target>/screenshots/dashboard-*.png`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shardflow_dashboard::server::{start, Dashboard, DashboardConfig};
use shardflow_dashboard::source::CloudWatchLogs;
use shardflow_e2e::shop::*;
use shardflow_e2e::{deploy, require_function_zips, StackGuard};
use shardflow_gen::shop::{encode, ShopFormat};
use shardflow_lifecycle::command::Clients;
use shardflow_testkit::browser::{dump_dom, screenshot, screenshot_dir};

/// The text between `start` (after it) and the next `end`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let at = text.find(start)? + start.len();
    let len = text[at..].find(end)?;
    Some(&text[at..at + len])
}

/// The records-in count of `stage` in the page's stage table (0 before its first batch).
fn records_in(dom: &str, stage: &str) -> u64 {
    between(dom, &format!("<tr data-stage=\"{stage}\">"), "</tr>")
        .and_then(|row| between(row, "data-field=\"records_in\">", "<"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The page as the browser renders it after its script ran for `budget_ms` of virtual time.
async fn render(url: &str, budget_ms: u64) -> String {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || dump_dom(&url, budget_ms))
        .await
        .expect("chromium")
}

async fn shot(url: &str, name: &str) {
    let url = url.to_owned();
    let file = screenshot_dir(&std::env::current_exe().expect("test binary")).join(name);
    tokio::task::spawn_blocking(move || screenshot(&url, &file, (1400, 2200), 3_000))
        .await
        .expect("chromium");
}

/// Reads the stack until the dashboard's own figures show `stage` with more than `than`
/// records in.
async fn wait_for_records<S: shardflow_dashboard::source::MetricsSource + 'static>(
    dashboard: &Dashboard<S>,
    stage: &str,
    than: u64,
) -> u64 {
    let started = Instant::now();
    loop {
        dashboard.poll().await.expect("a read of the stack");
        let overview = dashboard.overview().expect("overview");
        let n = overview
            .stages
            .iter()
            .find(|s| s.stage == stage)
            .map_or(0, |s| s.flow.records_in);
        if n > than {
            return n;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{stage} still shows {n} records in after {DEADLINE:?}; problems: {:?}",
            overview.problems
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_stages_and_shards_and_its_numbers_move_as_data_flows() {
    require_function_zips(&FUNCTIONS);
    let stack = shardflow_testkit::unique_name("dash");
    let outputs = deploy(
        &stack,
        "infra/template.yaml",
        &[
            ("Architecture", "x86_64"),
            ("DatabaseUrl", &shardflow_testkit::postgres_url()),
            ("RevenueTable", &stack.replace('-', "_")),
            ("FunctionTimeout", "30"),
            ("ChangesShardCount", "2"),
        ],
    );
    let _guard = StackGuard(stack.clone());
    let changes = outputs
        .get("ChangesStreamName")
        .cloned()
        .expect("stack output ChangesStreamName");

    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let config = DashboardConfig {
        prefix: stack.clone(),
        windows: shardflow_shop::pipelines::windows(),
        interval: Duration::from_secs(2),
        ..DashboardConfig::default()
    };
    let logs = CloudWatchLogs::new(aws_sdk_cloudwatchlogs::Client::new(&aws));
    let dashboard = Arc::new(Dashboard::new(config, Clients::from_env().await, logs));
    let addr = start(dashboard.clone(), "127.0.0.1:0".parse().expect("an address"))
        .await
        .expect("the dashboard starts");
    let url = format!("http://{addr}/");

    // Before any data: the stage functions, their stream and colour, and the stream's shards.
    dashboard.poll().await.expect("a first read of the stack");
    let before = render(&url, 1_000).await;
    for function in ["receipts", "revenue-keyby", "revenue-shuffled", "order-enrich"] {
        assert!(
            before.contains(&format!("data-function=\"{stack}-{function}\"")),
            "{function} missing from the page"
        );
    }
    assert!(before.contains(&changes), "the input stream is not shown");
    assert!(before.contains("colour-blue"), "the colour is not shown");
    let revenue = between(
        &before,
        "<section class=\"stage\" data-stage=\"revenue-keyby\">",
        "</section>",
    )
    .expect("a section of the revenue-keyby stage");
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        assert!(revenue.contains(&format!("data-shard=\"{shard}\"")), "{shard} missing");
    }
    let first = records_in(&before, "revenue-keyby");
    shot(&url, "dashboard-before.png").await;

    // Data flows: the count grows, on a fresh load and through the page's own refresh.
    let events = generate_events(1_500);
    let records: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| encode(e, ShopFormat::Protobuf).expect("encode a change"))
        .collect();
    let (head, tail) = records.split_at(records.len() / 2);
    put_records(&changes, head.to_vec()).await;
    let seen = wait_for_records(&dashboard, "revenue-keyby", first).await;
    let during = render(&url, 5_000).await;
    let shown = records_in(&during, "revenue-keyby");
    assert!(
        shown > first && shown >= seen,
        "records in: {first} before, {shown} shown, {seen} read"
    );
    let refreshes: u32 = between(&during, "data-refreshes=\"", "\"")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(refreshes >= 1, "the page did not refresh itself");
    assert!(during.contains("data-chart=\"throughput\""), "no throughput chart");
    shot(&url, "dashboard-during.png").await;

    put_records(&changes, tail.to_vec()).await;
    let more = wait_for_records(&dashboard, "revenue-keyby", shown).await;
    let after = render(&url, 1_000).await;
    assert!(records_in(&after, "revenue-keyby") >= more && more > shown);
    shot(&url, "dashboard-after.png").await;
}
