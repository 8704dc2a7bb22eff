//! `shardflow dashboard` against the shop stack deployed on LocalStack, seen in a real browser
//! (Debian's headless chromium, see `scripts/chromium`): the page lists the stage functions with
//! their streams and colour, each stage's shards, and its records-in count grows as generated
//! changes flow through the stages; the page's script refreshes it from the JSON endpoint. It
//! shows the cost per hour of every stage, the blue/green cutover of the stack's control table
//! (the live colour and the cut, after a switch written as `shardflow switch` writes it), dead
//! letters arriving (a malformed change) and a sink failing (the revenue table dropped under
//! `revenue-shuffled`) as highlights with their stage, and that stage's last error.
//! Screenshots are saved under `<target>/screenshots/dashboard-*.png`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shardflow_bluegreen::{Colour, ColourControl};
use shardflow_dashboard::format::clock;
use shardflow_dashboard::server::{start, Dashboard, DashboardConfig, Overview};
use shardflow_dashboard::source::CloudWatchLogs;
use shardflow_dashboard::HighlightKind;
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

/// Reads the stack until the dashboard's own figures satisfy `check`, which says what it
/// waits for when they do not.
async fn wait_until<S, T>(dashboard: &Dashboard<S>, mut check: impl FnMut(&Overview) -> Result<T, String>) -> T
where
    S: shardflow_dashboard::source::MetricsSource + 'static,
{
    let started = Instant::now();
    loop {
        dashboard.poll().await.expect("a read of the stack");
        let overview = dashboard.overview().expect("overview");
        match check(&overview) {
            Ok(found) => return found,
            Err(waiting) => assert!(
                started.elapsed() < DEADLINE,
                "after {DEADLINE:?}: {waiting}; problems: {:?}",
                overview.problems
            ),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Reads the stack until the dashboard's own figures show `stage` with more than `than`
/// records in.
async fn wait_for_records<S: shardflow_dashboard::source::MetricsSource + 'static>(
    dashboard: &Dashboard<S>,
    stage: &str,
    than: u64,
) -> u64 {
    wait_until(dashboard, |overview| {
        let n = overview
            .stages
            .iter()
            .find(|s| s.stage == stage)
            .map_or(0, |s| s.flow.records_in);
        if n > than {
            Ok(n)
        } else {
            Err(format!("{stage} still shows {n} records in"))
        }
    })
    .await
}

/// The dollar figure of the page's cost total (`data-field="cost_total"`).
fn cost_total(dom: &str) -> f64 {
    between(dom, "data-field=\"cost_total\">$", "<")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no cost total on the page"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_stages_and_shards_and_its_numbers_move_as_data_flows() {
    require_function_zips(&FUNCTIONS);
    let stack = shardflow_testkit::unique_name("dash");
    // The blue/green control table (one DynamoDB table): the stages read their cutover there.
    let control_stack = format!("{stack}-control");
    let control_table = deploy(&control_stack, "infra/control.yaml", &[])["ControlTableName"].clone();
    let _control_guard = StackGuard(control_stack.clone());
    let revenue_table = stack.replace('-', "_");
    let outputs = deploy(
        &stack,
        "infra/template.yaml",
        &[
            ("Architecture", "x86_64"),
            ("DatabaseUrl", &shardflow_testkit::postgres_url()),
            ("RevenueTable", &revenue_table),
            ("ControlTable", &control_table),
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
    for function in [
        "receipts",
        "revenue-keyby",
        "revenue-shuffled",
        "order-enrich-keyby",
        "order-enrich-shuffled",
    ] {
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
    // Blue/green: the control table holds no switch yet, blue owns every result.
    let cutover = between(&before, "<div class=\"cutover\" data-deployment=\"shop\">", "</div>")
        .expect("the cutover of the stack's control table");
    assert!(
        cutover.contains("<span data-field=\"live\"><span class=\"colour colour-blue\">"),
        "{cutover}"
    );
    assert!(cutover.contains("none yet"), "{cutover}");
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
    // The cost per hour: a positive total, a row for every deployed stage.
    assert!(cost_total(&during) > 0.0, "cost total {}", cost_total(&during));
    let deployed = dashboard.overview().expect("overview").deployment;
    for d in &deployed {
        assert!(
            during.contains(&format!("<tr data-cost-stage=\"{}\"", d.stage)),
            "no cost row for stage {}",
            d.stage
        );
    }
    shot(&url, "dashboard-during.png").await;

    // Problems: the revenue table is dropped under revenue-shuffled (its sink fails on the next
    // window it writes), and a malformed change is put after the rest.
    shardflow_testkit::postgres()
        .await
        .batch_execute(&format!("DROP TABLE IF EXISTS {revenue_table}"))
        .await
        .expect("drop the revenue table");
    let mut rest = tail.to_vec();
    rest.push(("poison".to_owned(), b"not a shop change".to_vec()));
    put_records(&changes, rest).await;
    let more = wait_for_records(&dashboard, "revenue-keyby", shown).await;
    let dead_letters = wait_until(&dashboard, |o| {
        o.highlights
            .iter()
            .find(|h| h.kind == HighlightKind::DeadLettersArriving && h.stage == "revenue-keyby")
            .map(|h| h.title.clone())
            .ok_or_else(|| format!("no dead-letter highlight for revenue-keyby: {:?}", o.highlights))
    })
    .await;
    let failure = wait_until(&dashboard, |o| {
        o.stages
            .iter()
            .find(|s| s.stage == "revenue-shuffled")
            .and_then(|s| s.last_error.as_ref())
            .map(|e| e.message.clone())
            .ok_or_else(|| "no error logged by revenue-shuffled".to_owned())
    })
    .await;
    assert!(failure.contains(&revenue_table), "the error names the table: {failure}");

    // A switch to green, written as `shardflow switch` writes it: the page shows the live colour
    // and the cut after its next read.
    let control = ColourControl::new(shardflow_testkit::dynamodb(), &control_table, "shop");
    let current = control.load().await.expect("the cutover");
    let cut = events.iter().map(|e| e.event_time()).max().expect("events") + 60_000;
    control
        .switch(&current, Colour::Green, cut)
        .await
        .expect("switch to green");
    dashboard.poll().await.expect("a read of the stack");

    let after = render(&url, 3_000).await;
    assert!(records_in(&after, "revenue-keyby") >= more && more > shown);
    let cutover = between(&after, "<div class=\"cutover\" data-deployment=\"shop\">", "</div>")
        .expect("the cutover of the stack's control table");
    assert!(
        cutover.contains("<span data-field=\"live\"><span class=\"colour colour-green\">"),
        "the live colour after the switch: {cutover}"
    );
    assert!(
        cutover.contains(&format!("<span data-field=\"cut\">{}</span>", clock(cut))),
        "the cut after the switch: {cutover}"
    );
    assert!(
        after.contains("<li class=\"highlight\" data-kind=\"dead_letters_arriving\" data-stage=\"revenue-keyby\">"),
        "no dead-letter highlight on the page ({dead_letters})"
    );
    assert!(
        after.contains("<li class=\"highlight\" data-kind=\"errors_logged\" data-stage=\"revenue-shuffled\">"),
        "no error highlight on the page"
    );
    let shown_error = between(&after, "<tr data-stage=\"revenue-shuffled\">", "</tr>")
        .and_then(|row| between(row, "data-field=\"last_error\">", "<"))
        .expect("revenue-shuffled's last error cell");
    // The browser's serialized DOM escapes `&`, `<` and `>` in text, not quotes.
    let escaped = failure.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    assert_eq!(shown_error, escaped, "the last error shown");
    assert!(failure.contains("does not exist"), "the sink's error: {failure}");
    shot(&url, "dashboard-after.png").await;
}
