//! The cost per hour on recorded metrics: the EMF lines of a `revenue` function deployed on
//! LocalStack (`tests/fixtures/revenue_lambda.log`: 40 batches over 110.9 s on 2 shards, 4,303
//! records, every batch committing 1,972 items and 159,190 bytes in all), each figure checked
//! against the price formulas written out here.

use shardflow_cost::prices::{us_east_1, Architecture, HOURS_PER_MONTH};
use shardflow_cost::Service;
use shardflow_dashboard::cost::{live_cost, CostView, StageFunction, StreamInfo};
use shardflow_dashboard::html::cost_table;
use shardflow_dashboard::Observations;

const REVENUE: &str = include_str!("fixtures/revenue_lambda.log");
/// The fixture's first and last batch.
const FIRST_MS: i64 = 1_796_612_278_559;
const LAST_MS: i64 = 1_796_612_389_461;

fn revenue() -> StageFunction {
    StageFunction {
        stage: "revenue".to_owned(),
        input_stream: Some("changes".to_owned()),
        memory_mb: Some(256.0),
        architecture: Some(Architecture::X86_64),
    }
}

fn changes() -> StreamInfo {
    StreamInfo {
        name: "changes".to_owned(),
        shards: 2,
        retention_hours: 168,
    }
}

fn cost_of(o: &Observations) -> CostView {
    live_cost(o, &[revenue()], &[changes()], LAST_MS, &us_east_1()).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 + 1e-6 * b.abs()
}

#[test]
fn a_deployed_stages_cost_per_hour_is_its_measured_batches_priced_by_the_model() {
    let mut o = Observations::default();
    o.add_log("revenue", REVENUE, None);
    let view = cost_of(&o);
    let p = us_east_1();
    let seconds = (LAST_MS - FIRST_MS) as f64 / 1000.0;
    assert_eq!(view.window_ms, LAST_MS - FIRST_MS, "the rates span the readings");
    let batches_per_hour = 40.0 * 3600.0 / seconds;
    let stage = &view.stages[0];
    assert!(close(stage.records_per_s, 4_303.0 / seconds));

    // Lambda: an invocation per batch; no REPORT lines on LocalStack, so the preset's 60 ms for a
    // keyed shop stage, at the function's 256 MB on x86_64.
    let gb_s = batches_per_hour * 0.060 * 256.0 / 1024.0;
    let lambda = gb_s * p.lambda_gb_second_x86_64 + batches_per_hour / 1e6 * p.lambda_per_million_requests;
    assert!(
        close(stage.of(Service::Lambda), lambda),
        "{} vs {lambda}",
        stage.of(Service::Lambda)
    );

    // DynamoDB, every batch committing: a load reads the checkpoint item (3 KB: 1 RRU) and the
    // preset's 125 live items (82 B each, measured: 1 RRU each); a commit writes the checkpoint
    // item transactionally (2 × 3 WRU) and the measured 1972/40 − 1 dirty items (2 WRU in the
    // transaction, 1 to delete the old slot).
    let dirty = 1_972.0 / 40.0 - 1.0;
    let rru = 1.0 + 125.0;
    let wru = 6.0 + dirty * 3.0;
    let item_bytes = 159_190.0 / (1_972.0 - 40.0);
    let stored_gb = 2.0 * (item_bytes * 125.0 + 125.0 * 100.0 + 3_072.0) / (1024.0f64.powi(3));
    let dynamodb = batches_per_hour * (rru / 1e6 * p.dynamodb_per_million_rru + wru / 1e6 * p.dynamodb_per_million_wru)
        + stored_gb * p.dynamodb_storage_gb_month / HOURS_PER_MONTH;
    assert!(
        close(stage.of(Service::DynamoDB), dynamodb),
        "{} vs {dynamodb}",
        stage.of(Service::DynamoDB)
    );
    assert!(
        stage.basis.iter().any(|b| b.contains("dirty items")),
        "{:?}",
        stage.basis
    );

    // The stream: 2 shards with extended retention, a PUT payload unit per record read.
    let stream = &view.streams[0];
    let kinesis = 2.0 * (p.kinesis_shard_hour + p.kinesis_extended_retention_shard_hour)
        + 4_303.0 / seconds * 3600.0 / 1e6 * p.kinesis_per_million_put_units;
    assert_eq!(stream.stream, "changes");
    assert!(
        close(stream.usd_per_hour, kinesis),
        "{} vs {kinesis}",
        stream.usd_per_hour
    );

    let sum: f64 = stage.services.iter().map(|s| s.usd_per_hour).sum();
    assert!(close(stage.usd_per_hour, sum));
    assert!(close(view.total_usd_per_hour, stage.usd_per_hour + stream.usd_per_hour));
    let table = cost_table(&view);
    assert!(table.contains("data-cost-stage=\"revenue\""));
    assert!(table.contains("data-cost-stream=\"changes\""));
    assert!(table.contains(&format!("data-field=\"cost_total\">${:.4}<", view.total_usd_per_hour)));
}

#[test]
fn twice_the_batches_in_the_same_time_cost_twice_the_invocations_and_records() {
    let mut once = Observations::default();
    once.add_log("revenue", REVENUE, None);
    let mut twice = once.clone();
    twice.add_log("revenue", REVENUE, None);
    let (a, b) = (cost_of(&once), cost_of(&twice));
    let lambda = |v: &CostView| v.stages[0].of(Service::Lambda);
    assert!(close(lambda(&b), 2.0 * lambda(&a)), "{} vs {}", lambda(&b), lambda(&a));
    let shard_hours = 2.0 * (us_east_1().kinesis_shard_hour + us_east_1().kinesis_extended_retention_shard_hour);
    let puts = |v: &CostView| v.streams[0].usd_per_hour - shard_hours;
    assert!(close(puts(&b), 2.0 * puts(&a)));
    assert!(b.total_usd_per_hour > a.total_usd_per_hour);
}

#[test]
fn lambdas_report_lines_give_the_billed_duration_and_memory_when_the_logs_have_them() {
    // CloudWatch Logs keeps Lambda's REPORT line of every invocation (LocalStack's files do not).
    let mut o = Observations::default();
    for (i, line) in REVENUE.lines().enumerate() {
        o.add_log_line("revenue", line, None);
        let report = format!(
            "REPORT RequestId: {i}\tDuration: 118.20 ms\tBilled Duration: 120 ms\tMemory Size: 512 MB\tMax Memory Used: 40 MB"
        );
        o.add_log_line("revenue", &report, None);
    }
    assert_eq!(o.invocations["revenue"].len(), 40);
    let view = cost_of(&o);
    let p = us_east_1();
    let batches_per_hour = 40.0 * 3600.0 / ((LAST_MS - FIRST_MS) as f64 / 1000.0);
    let gb_s = batches_per_hour * 0.120 * 512.0 / 1024.0;
    let lambda = gb_s * p.lambda_gb_second_x86_64 + batches_per_hour / 1e6 * p.lambda_per_million_requests;
    assert!(close(view.stages[0].of(Service::Lambda), lambda));
}

#[test]
fn a_stream_no_stage_reads_costs_its_shard_hours_and_a_stage_without_batches_only_its_metrics_and_stored_state() {
    let quiet = StageFunction {
        stage: "receipts".to_owned(),
        ..revenue()
    };
    let shuffle = StreamInfo {
        name: "revenue-shuffle".to_owned(),
        shards: 4,
        retention_hours: 24,
    };
    let view = live_cost(
        &Observations::default(),
        &[quiet],
        &[changes(), shuffle],
        LAST_MS,
        &us_east_1(),
    )
    .unwrap();
    let p = us_east_1();
    let stage = &view.stages[0];
    assert_eq!(stage.of(Service::Lambda), 0.0);
    // No reads or writes; only the preset's stored state (receipts: 125 items of 27.5 KiB in
    // all, 100 B of overhead each, and the checkpoint item, on each of the 2 shards).
    let stored_gb = 2.0 * (27.5 * 1024.0 + 125.0 * 100.0 + 3_072.0) / 1024.0f64.powi(3);
    assert!(close(
        stage.of(Service::DynamoDB),
        stored_gb * p.dynamodb_storage_gb_month / HOURS_PER_MONTH
    ));
    // The EMF metrics are billed per metric and month whether batches come or not.
    assert!(close(
        stage.of(Service::CloudWatch),
        12.0 * p.cloudwatch_custom_metric_month / HOURS_PER_MONTH
    ));
    let shuffle = view.streams.iter().find(|s| s.stream == "revenue-shuffle").unwrap();
    assert!(close(shuffle.usd_per_hour, 4.0 * p.kinesis_shard_hour));
}
