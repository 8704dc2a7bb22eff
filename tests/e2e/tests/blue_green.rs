//! Blue/green on LocalStack with the real stage binaries, green running *new code*: blue runs on a
//! two-shard CDC stream; its stateful one-stage stage (receipts) is savepointed (mappings paused,
//! then resumed); before anything else is deployed, `shardflow savepoint check` gates the change: the
//! next release of receipts (`receipts_next`: a filter before the window, the window's
//! accumulator with a field added and a migration from blue's, a column added to each receipt)
//! passes against blue's receipts savepoint with its window reported migrated, and the same change
//! without the migration is refused (non-zero exit). Green is deployed beside blue without
//! consuming, its receipts function running `receipts-next` (`SHARDFLOW_FUNCTION_CODE`), with a
//! shuffle stream of its own for each split pipeline, its mappings to start `AT_TIMESTAMP` where
//! the savepoints say, restored from them, and enabled. Revenue's pair is savepointed in the order
//! the hop needs — `revenue-keyby` with its mappings left disabled, `revenue-shuffled` once it has
//! consumed blue's shuffle stream (its dedup marks and upstream watermarks in the savepoint), then
//! `revenue-keyby`'s mappings on again — gated by `savepoint check`, and restored with
//! `revenue-shuffled` put onto green's own shuffle stream; order-enrich's pair the same way.
//! Green catches up and `validate`
//! finds no difference between green's shadow revenue and the live revenue from the minute open
//! at the savepoint on (its first part reached green only through the savepoint); the live
//! output is switched to green, more data flows, it is rolled back to blue, the rest flows. The
//! live outputs hold every
//! result exactly once: the revenue table equals the embedded runner's results on the same
//! stream, and the live topic carries each receipt once, equal on every field of `receipts` to
//! the embedded runner's, the live enriched-orders stream holds each of the embedded runner's
//! enriched orders once; the receipts of green's segment carry the new column (they are the
//! embedded `receipts_next`'s), blue's do not. The input has no late change and is put in order
//! (one call at a time), so that no result depends on how the two CDC shards interleave.
//!
//! The protocol itself is also proven in-process by `shared/connectors/tests/blue_green.rs`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use prost::Message as _;
use shardflow_bluegreen::{Colour, ColourControl};
use shardflow_connectors::ResultMessage;
use shardflow_e2e::shop::*;
use shardflow_e2e::{aws, deploy, deploy_with_code, repo_root, require_function_zips, shardflow_dir, StackGuard};
use shardflow_gen::shop::{encode, ShopFormat};
use shardflow_lifecycle::{
    create_savepoint, restore_savepoint, EventSourceBarrier, MappingState, RestoreOptions, S3Location,
    SavepointManifest, SavepointOptions, ShuffleTarget,
};
use shardflow_schemas::ChangeEvent;
use shardflow_shop::pipelines::ReceiptNext;

/// The code green's receipts stage runs: the next release of the receipts pipeline.
const GREEN_RECEIPTS_CODE: &str = "receipts-next";
/// The receipts window's id, the same in both releases.
const RECEIPTS_WINDOW: &str = "window_aggregate-0";

/// The first minute boundary after every event time of `events`: beyond every result position
/// (window start, windows of one minute) either colour has emitted having seen them.
fn cut_after(events: &[ChangeEvent]) -> i64 {
    let max = events.iter().map(ChangeEvent::event_time).max().unwrap_or(0);
    (max / 60_000 + 1) * 60_000
}

fn encoded(events: &[ChangeEvent]) -> Vec<(String, Vec<u8>)> {
    events
        .iter()
        .map(|e| encode(e, ShopFormat::Protobuf).expect("encode"))
        .collect()
}

/// Savepoints `stage` of blue with its mappings paused (and resumed after).
async fn savepoint(blue: &Outputs, stage: &str, function: &str) -> (S3Location, SavepointManifest) {
    savepoint_leaving(blue, stage, function, false).await
}

/// Savepoints `stage` of blue with its mappings paused, and left disabled if `leave_disabled`.
async fn savepoint_leaving(
    blue: &Outputs,
    stage: &str,
    function: &str,
    leave_disabled: bool,
) -> (S3Location, SavepointManifest) {
    let location = S3Location::new(&blue.get("StateBucketName"), &format!("savepoints/{stage}"));
    let mut options = SavepointOptions::new(stage, &blue.get("StateTableName"), location.clone());
    options.barrier = Some(EventSourceBarrier::new(shardflow_testkit::lambda(), function));
    options.leave_disabled = leave_disabled;
    options.quiet_period = Duration::from_secs(3);
    let saved = create_savepoint(&shardflow_testkit::dynamodb(), &shardflow_testkit::s3(), &options)
        .await
        .expect("savepoint");
    assert!(
        !saved.manifest.shards.is_empty(),
        "the savepoint of {stage} holds its shard"
    );
    (location, saved.manifest)
}

/// A split pipeline's two deployed stages: their stage names and the stack outputs naming their
/// functions and the shuffle stream between them.
struct Pair {
    upstream: &'static str,
    upstream_function: &'static str,
    downstream: &'static str,
    downstream_function: &'static str,
    shuffle_stream: &'static str,
}

/// Revenue's pair.
const REVENUE_PAIR: Pair = Pair {
    upstream: "revenue-keyby",
    upstream_function: "RevenueKeyByFunctionName",
    downstream: "revenue-shuffled",
    downstream_function: "RevenueShuffledFunctionName",
    shuffle_stream: "RevenueShuffleStreamName",
};

/// order-enrich's pair.
const ORDER_ENRICH_PAIR: Pair = Pair {
    upstream: "order-enrich-keyby",
    upstream_function: "OrderEnrichKeyByFunctionName",
    downstream: "order-enrich-shuffled",
    downstream_function: "OrderEnrichShuffledFunctionName",
    shuffle_stream: "EnrichShuffleStreamName",
};

/// Blue's `pair` saved in the order the hop needs (`docs/shuffle-and-checkpoints.md`, "The order
/// of the two savepoints"): the upstream with its mappings left disabled; once the downstream has
/// committed everything blue's shuffle stream holds, the downstream; then the upstream's mappings
/// on again. Returns both savepoints, upstream first.
async fn savepoint_pair(blue: &Outputs, pair: &Pair) -> [(&'static str, (S3Location, SavepointManifest)); 2] {
    let upstream_function = blue.get(pair.upstream_function);
    let upstream = savepoint_leaving(blue, pair.upstream, &upstream_function, true).await;
    // the tick keeps sending heartbeats: at or past what the stream held once the upstream stopped
    let sent = shardflow_testkit::read_stream_once(&shardflow_testkit::kinesis(), &blue.get(pair.shuffle_stream)).await;
    committed_through(pair.downstream, &blue.get("StateTableName"), &sent, Instant::now()).await;
    let downstream = savepoint(blue, pair.downstream, &blue.get(pair.downstream_function)).await;
    let barrier = EventSourceBarrier::new(shardflow_testkit::lambda(), &upstream_function);
    let mappings: Vec<MappingState> = barrier
        .kinesis_mappings()
        .await
        .expect("the upstream's mappings")
        .into_iter()
        .filter(|m| upstream.1.consistency.paused_mappings.contains(&m.uuid))
        .map(|m| MappingState { was_enabled: true, ..m })
        .collect();
    assert!(!mappings.is_empty(), "the upstream's savepoint paused its mappings");
    barrier
        .resume(&mappings)
        .await
        .expect("enable the upstream's mappings again");
    [(pair.upstream, upstream), (pair.downstream, downstream)]
}

/// Seeds green's `stage` from a savepoint of pipeline `pipeline`, dry-run restored first into
/// `code`, the pipeline green's stage runs (by its name in `savepoint check`'s catalogue); a
/// shuffle's downstream stage goes onto green's shuffle stream `shuffle_stream`.
async fn restore(
    green: &Outputs,
    stage: &str,
    pipeline: &str,
    code: &str,
    location: S3Location,
    shuffle_stream: Option<String>,
) {
    let mut restore = RestoreOptions::new(location, stage, &green.get("StateTableName"));
    restore.spill_bucket = Some(green.get("StateBucketName"));
    restore.expect.pipeline = Some(pipeline.to_owned());
    restore.shuffle_target = shuffle_stream.map(|s| ShuffleTarget::new(shardflow_testkit::kinesis(), &s));
    restore.pipeline = shardflow_shop_stages::check_targets()
        .into_iter()
        .find(|t| t.name() == code)
        .map(std::sync::Arc::new);
    assert!(restore.pipeline.is_some(), "{code} is in the catalogue");
    restore_savepoint(&shardflow_testkit::dynamodb(), &shardflow_testkit::s3(), &restore)
        .await
        .expect("restore");
}

/// `shardflow savepoint check --savepoint {savepoint} --pipeline {pipeline} --json`: whether it
/// exited zero, its JSON report and its error output.
fn savepoint_check(savepoint: &S3Location, pipeline: &str) -> (bool, serde_json::Value, String) {
    let output = std::process::Command::new(shardflow_dir().join("shardflow"))
        .args(["savepoint", "check", "--savepoint", &savepoint.to_string()])
        .args(["--pipeline", pipeline, "--json"])
        .output()
        .expect("run shardflow savepoint check");
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "savepoint check --pipeline {pipeline} printed no JSON report ({e}): {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (
        output.status.success(),
        report,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The gate before green is deployed: the code green will run, checked against blue's
/// savepoint, passes (receipts' window migrated), and the same change to receipts without its
/// migration is refused. (Once savepoints carry the shuffle stages' state, order-enrich's and
/// revenue's pairs are savepointed and checked here too: `order-enrich-keyby` and
/// `order-enrich-shuffled` are in the check's catalogue.)
fn check_green_code(receipts: &S3Location) {
    let (passed, report, stderr) = savepoint_check(receipts, GREEN_RECEIPTS_CODE);
    assert!(
        passed,
        "receipts-next restores blue's receipts savepoint: {report:#} {stderr}"
    );
    let window = report["operators"]
        .as_array()
        .and_then(|ops| ops.iter().find(|o| o["id"] == RECEIPTS_WINDOW))
        .unwrap_or_else(|| panic!("the report lists the receipts window: {report:#}"));
    assert_eq!(window["outcome"], "migrated", "{report:#}");
    assert_eq!(window["from"], RECEIPTS_WINDOW, "{report:#}");
    assert_eq!(window["version"], 1, "{report:#}");
    eprintln!("gate: receipts-next against blue's receipts savepoint: {window}");

    let (passed, report, stderr) = savepoint_check(receipts, "receipts-next-unmigrated");
    assert!(!passed, "the change without its migration is refused: {report:#}");
    assert_eq!(report["passed"], false, "{report:#}");
    let reasons: Vec<&str> = report["problems"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["reason"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        !reasons.is_empty()
            && reasons
                .iter()
                .all(|r| r.contains("incompatible state") && r.contains(RECEIPTS_WINDOW)),
        "every shard refuses the window's state as incompatible: {report:#}"
    );
    assert!(stderr.contains("incompatible state"), "and says so: {stderr}");
    eprintln!("gate: receipts-next-unmigrated refused: {reasons:?}");
}

/// Asserts that green's receipts function runs the zip of `code` (Lambda's code hash is the
/// base64 SHA-256 of the zip).
fn assert_runs_code(function: &str, code: &str) {
    let deployed = aws(&[
        "lambda",
        "get-function-configuration",
        "--function-name",
        function,
        "--query",
        "CodeSha256",
        "--output",
        "text",
    ]);
    let zip = repo_root().join("out/lambda").join(format!("{code}.zip"));
    let script = "import base64, hashlib, sys; \
                  print(base64.b64encode(hashlib.sha256(open(sys.argv[1], 'rb').read()).digest()).decode())";
    let hashed = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&zip)
        .output()
        .expect("hash the zip with python3");
    assert_eq!(
        deployed.trim(),
        String::from_utf8_lossy(&hashed.stdout).trim(),
        "{function} runs {}",
        zip.display()
    );
}

/// The live receipts of `bodies` split by the colour that owned their position: green's are the
/// embedded `receipts_next`'s (the new column included), blue's lack the column. Returns how many
/// green published.
fn assert_receipt_columns_by_colour(
    bodies: &[String],
    cutover: &shardflow_bluegreen::Cutover,
    next: &BTreeMap<String, ReceiptNext>,
) -> usize {
    let mut green = 0;
    for body in bodies {
        let message: ResultMessage<serde_json::Value> =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("a receipt: {e}: {body}"));
        // as `shardflow_bluegreen::position`: the window's start, else the timestamp
        let position = message.window_start_ms.unwrap_or(message.timestamp_ms);
        match cutover.owner(position) {
            Colour::Green => {
                green += 1;
                let value: ReceiptNext = serde_json::from_value(message.value.clone())
                    .unwrap_or_else(|e| panic!("green publishes receipts_next's receipts ({e}): {body}"));
                assert_eq!(
                    Some(&value),
                    next.get(&message.id),
                    "green's receipt is the embedded receipts_next's"
                );
                assert!(value.completed_from.is_some(), "{body}");
            }
            Colour::Blue => assert!(
                message.value.get("completed_from").is_none(),
                "blue runs receipts, without the new column: {body}"
            ),
        }
    }
    green
}

struct Outputs(std::collections::HashMap<String, String>);

impl Outputs {
    fn get(&self, k: &str) -> String {
        self.0.get(k).cloned().unwrap_or_else(|| panic!("stack output {k}"))
    }
}

async fn live_revenue_eventually(table: &str, want: &BTreeMap<(i64, String, i64), (i64, u64)>, started: Instant) {
    loop {
        let rows = revenue_rows(table).await;
        if &rows == want {
            return;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the live revenue did not become the expected one ({} of {} windows)",
            rows.len(),
            want.len()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoint_green_validate_switch_and_rollback_keep_every_result_once() {
    require_function_zips(&FUNCTIONS);
    require_function_zips(&[GREEN_RECEIPTS_CODE]);
    // slow enough in event time that the savepoint's part and the catch-up part each span
    // several one-minute windows (the catch-up check compares windows closed after the savepoint)
    let events = generate_on_time_at(EVENTS, 0.2);
    let parts = [
        &events[..1200],
        &events[1200..2000],
        &events[2000..2600],
        &events[2600..],
    ];
    let name = shardflow_testkit::unique_name("bg");
    let table = name.replace('-', "_");
    let db = shardflow_testkit::postgres_url();

    let control_stack = format!("{name}-control");
    let control_table = deploy(&control_stack, "infra/control.yaml", &[])["ControlTableName"].clone();
    let _control_guard = StackGuard(control_stack.clone());
    let common = |colour: &'static str| {
        vec![
            ("Architecture", "x86_64".to_owned()),
            ("DatabaseUrl", db.clone()),
            ("RevenueTable", table.clone()),
            ("ControlTable", control_table.clone()),
            ("Colour", colour.to_owned()),
            ("ChangesShardCount", "2".to_owned()),
        ]
    };
    let as_refs = |v: &[(&'static str, String)]| v.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();
    // short colour suffixes: "{stack}-order-enrich-shuffled" must stay within Lambda's 64
    // characters
    let blue_stack = format!("{name}-b");
    let blue_params = as_refs(&common("blue"));
    let blue_params: Vec<(&str, &str)> = blue_params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let blue = Outputs(deploy(&blue_stack, "infra/template.yaml", &blue_params));
    let _blue_guard = StackGuard(blue_stack.clone());
    let receipts_queue = subscribe_queue(&blue.get("ReceiptsTopicArn")).await;
    let stream = blue.get("ChangesStreamName");

    // blue consumes the first part; receipts is savepointed while it runs, then each pair in its
    // order.
    let registrations = register_every_shard(&stream, &blue.get("StateTableName"), &events, &UPSTREAM_STAGES).await;
    put_records_in_order(&stream, encoded(parts[0])).await;
    let stages = [("receipts", "ReceiptsFunctionName")];
    // (a savepoint of a stage that has not committed yet would have nothing to save)
    let blue_table = blue.get("StateTableName");
    let since = Instant::now();
    for (stage, _) in stages {
        caught_up(stage, &blue_table, &stream, registrations.len() + parts[0].len(), since).await;
    }
    for pair in [&REVENUE_PAIR, &ORDER_ENRICH_PAIR] {
        caught_up(
            pair.upstream,
            &blue_table,
            &stream,
            registrations.len() + parts[0].len(),
            since,
        )
        .await;
    }
    let mut savepoints = Vec::new();
    for (stage, function) in stages {
        savepoints.push((stage, savepoint(&blue, stage, &blue.get(function)).await));
    }
    for pair in [&REVENUE_PAIR, &ORDER_ENRICH_PAIR] {
        savepoints.extend(savepoint_pair(&blue, pair).await);
    }
    // the gate, before anything of green is deployed: its code against blue's savepoints
    let location = |stage: &str| {
        savepoints
            .iter()
            .find(|(s, _)| *s == stage)
            .map(|(_, (location, _))| location.clone())
            .expect("a savepoint of the stage")
    };
    let gate = location("receipts");
    tokio::task::spawn_blocking(move || check_green_code(&gate))
        .await
        .expect("the gate passes");
    for stage in [
        "revenue-keyby",
        "revenue-shuffled",
        "order-enrich-keyby",
        "order-enrich-shuffled",
    ] {
        let saved = location(stage);
        let (passed, report, stderr) = tokio::task::spawn_blocking(move || savepoint_check(&saved, stage))
            .await
            .expect("savepoint check ran");
        assert!(passed, "{stage} restores blue's {stage} savepoint: {report:#} {stderr}");
    }
    // green is deployed beside blue without consuming; its mappings will start AT_TIMESTAMP a
    // margin before the savepoints (a mapping cannot start at a sequence number), and its stages
    // skip by sequence number what the savepoints cover
    // (the CDC stream's stages only: a shuffled stage's positions are on blue's shuffle stream)
    let resume_at_ms = savepoints
        .iter()
        .filter(|(stage, _)| ![REVENUE_PAIR.downstream, ORDER_ENRICH_PAIR.downstream].contains(stage))
        .map(|(_, (_, manifest))| {
            manifest
                .resume_at_ms()
                .expect("the savepoint knows its shards' arrival times")
        })
        .min()
        .expect("savepoints");
    let green_stack = format!("{name}-g");
    let mut green_params = as_refs(&common("green"));
    green_params.push(("PrimaryStack", blue_stack.clone()));
    green_params.push(("EventSourceMappingsEnabled", "false".to_owned()));
    green_params.push(("StartingPosition", "AT_TIMESTAMP".to_owned()));
    green_params.push(("StartingPositionTimestamp", (resume_at_ms / 1000).to_string()));
    let green_params: Vec<(&str, &str)> = green_params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let green = Outputs(deploy_with_code(
        &green_stack,
        "infra/template.yaml",
        &green_params,
        &[("receipts", GREEN_RECEIPTS_CODE)],
    ));
    let _green_guard = StackGuard(green_stack.clone());
    assert_runs_code(&green.get("ReceiptsFunctionName"), GREEN_RECEIPTS_CODE);
    for (stage, (location, _)) in savepoints {
        let (pipeline, shuffle) = match stage {
            "receipts" => ("receipts", None),
            "revenue-keyby" => ("revenue", None),
            "revenue-shuffled" => ("revenue", Some(green.get(REVENUE_PAIR.shuffle_stream))),
            "order-enrich-keyby" => ("order_enrich", None),
            _ => ("order_enrich", Some(green.get(ORDER_ENRICH_PAIR.shuffle_stream))),
        };
        let code = if stage == "receipts" {
            GREEN_RECEIPTS_CODE
        } else {
            stage
        };
        restore(&green, stage, pipeline, code, location, shuffle).await;
    }

    for function in [
        "RevenueKeyByFunctionName",
        "RevenueShuffledFunctionName",
        "ReceiptsFunctionName",
        "OrderEnrichKeyByFunctionName",
        "OrderEnrichShuffledFunctionName",
        "ArchiveFunctionName",
    ] {
        let barrier = EventSourceBarrier::new(shardflow_testkit::lambda(), &green.get(function));
        let mappings: Vec<MappingState> = barrier
            .kinesis_mappings()
            .await
            .expect("green's mappings")
            .into_iter()
            .map(|m| MappingState { was_enabled: true, ..m })
            .collect();
        barrier.resume(&mappings).await.expect("enable green's mapping");
    }

    // green catches up on the second part; its shadow revenue equals the live one
    put_records_in_order(&stream, encoded(parts[1])).await;
    let started = Instant::now();
    let seen: Vec<ChangeEvent> = [parts[0], parts[1]].concat();
    let closed_before = seen.iter().map(ChangeEvent::event_time).max().unwrap_or(0) - 5_000;
    // windows blue closed before the savepoint are in the live table only: compare the later
    // ones, from the minute open at the savepoint (its first part came to green in the savepoint)
    let from = cut_after(parts[0]) - 60_000;
    let shadow = shardflow_bluegreen::shadow_table(&table, Colour::Green);
    loop {
        let (live, green_rows) = (revenue_rows(&table).await, revenue_rows(&shadow).await);
        let closed = |rows: &BTreeMap<(i64, String, i64), (i64, u64)>| -> BTreeMap<_, _> {
            rows.iter()
                .filter(|((_, _, start), _)| *start >= from && start + 60_000 <= closed_before)
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        };
        if !closed(&live).is_empty() && closed(&live) == closed(&green_rows) {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "green did not catch up with blue");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let validate = shardflow_bluegreen::commands::ValidateArgs {
        database_url: db.clone(),
        table: table.clone(),
        key_columns: ["product_id", "currency", "window_start_ms"].map(String::from).to_vec(),
        value_columns: ["revenue_cents", "order_count"].map(String::from).to_vec(),
        colour: Colour::Green,
        from_ms: from,
        closed_before_ms: closed_before,
    };
    tokio::task::spawn_blocking(move || shardflow_bluegreen::commands::validate(validate))
        .await
        .expect("validate ran")
        .expect("validate finds no difference");

    // switch to green, keep writing, roll back to blue, write the rest
    let control = ColourControl::new(shardflow_testkit::dynamodb(), &control_table, "shop");
    let current = control.load().await.expect("cutover");
    control
        .switch(&current, Colour::Green, cut_after(&seen))
        .await
        .expect("switch");
    put_records_in_order(&stream, encoded(parts[2])).await;
    let seen: Vec<ChangeEvent> = [parts[0], parts[1], parts[2]].concat();
    let current = control.load().await.expect("cutover");
    let back = control
        .switch(&current, Colour::Blue, cut_after(&seen))
        .await
        .expect("rollback");
    assert_eq!(back.segments.len(), 3);
    put_records_in_order(&stream, encoded(parts[3])).await;
    // the mover on every shard once the rest is stored
    let movers = movers_for_every_shard(&stream, &events).await;
    let put = registrations.len() + events.len() + movers.len();
    put_records_in_order(&stream, movers).await;

    // what one run computes on the changes in the generated order, which each shard keeps
    let stored = shardflow_testkit::read_stream(&shardflow_testkit::kinesis(), &stream, put, DEADLINE).await;
    assert_eq!(stored.len(), put, "the stream holds every change put");
    for r in &stored {
        ChangeEvent::decode(r.data.as_slice()).expect("a change");
    }
    let first = events.iter().map(ChangeEvent::event_time).min().unwrap_or(0);
    let mut in_order = vec![customer_touch(&events, first - 60_000)];
    in_order.extend(events.iter().cloned());
    in_order.push(watermark_mover(&events));
    let expected = embedded(&in_order).await;
    let started = Instant::now();
    live_revenue_eventually(&table, &expected.revenue, started).await;
    let bodies = assert_receipts_once(
        &receipts_queue,
        &expected.receipts,
        "the live receipts across the colours",
        started,
    )
    .await;
    let next = embedded_receipts_next(&in_order)
        .await
        .into_iter()
        .map(|l| (l.id, l.value))
        .collect();
    // the live enriched orders: each of the embedded runner's once (each colour's pair wrote the
    // sessions its colour owned live)
    let want_enriched = by_id(expected.enriched.iter().map(|l| (l.id.clone(), l.value.clone())));
    assert_enriched_streamed_once(
        &blue.get("EnrichedOrdersStreamName"),
        &want_enriched,
        "the live enriched orders (the embedded runner's)",
    )
    .await;
    let cutover = control.load().await.expect("cutover");
    let green_receipts = assert_receipt_columns_by_colour(&bodies, &cutover, &next);
    assert!(
        green_receipts > 0,
        "green owned some receipts between the switch and the rollback"
    );
    eprintln!(
        "{} live receipts, {green_receipts} of them published by green with the new column",
        bodies.len()
    );

    let client = shardflow_testkit::postgres().await;
    for t in [
        table.clone(),
        shadow,
        shardflow_bluegreen::shadow_table(&table, Colour::Blue),
    ] {
        let _ = client.batch_execute(&format!("DROP TABLE IF EXISTS {t}")).await;
    }
}
