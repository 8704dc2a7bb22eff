//! The CloudWatch-metrics source against LocalStack's CloudWatch: the metrics of a deployed
//! stage's recorded EMF lines (`tests/fixtures/revenue_lambda.log`), put as CloudWatch would
//! extract them on AWS (namespace `shardflow`, dimension `Stage`, one value per batch and metric
//! at the line's time), read back through [`CloudWatchMetrics`] give the periods' sums, maxima
//! and means, and the same stage figures as the lines themselves. With the same lines in the
//! function's log group in CloudWatch Logs, the stage's totals are the metrics' and its shard
//! rows the log lines' (the metrics have the stage as their only dimension).

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use shardflow_dashboard::model::ALL_SHARDS;
use shardflow_dashboard::source::{log_group, CloudWatchLogs, CloudWatchMetrics, MetricsSource};
use shardflow_dashboard::Observations;
use shardflow_stage::{EmfRecord, EMF_DIMENSION, EMF_METRICS, EMF_NAMESPACE};

const REVENUE: &str = include_str!("fixtures/revenue_lambda.log");
const PERIOD_MS: i64 = 60_000;

async fn sdk(service: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(shardflow_testkit::endpoint(service))
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await
}

async fn cloudwatch() -> aws_sdk_cloudwatch::Client {
    aws_sdk_cloudwatch::Client::new(&sdk("CLOUDWATCH").await)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Writes `records`' EMF lines, each at its time, to `function`'s log group, as Lambda writes
/// the function's output.
async fn put_as_logged(client: &aws_sdk_cloudwatchlogs::Client, function: &str, records: &[EmfRecord]) {
    use aws_sdk_cloudwatchlogs::types::InputLogEvent;
    let group = log_group(function);
    client
        .create_log_group()
        .log_group_name(&group)
        .send()
        .await
        .expect("CreateLogGroup");
    client
        .create_log_stream()
        .log_group_name(&group)
        .log_stream_name("2026/01/01/[$LATEST]0")
        .send()
        .await
        .expect("CreateLogStream");
    let mut sorted: Vec<&EmfRecord> = records.iter().collect();
    sorted.sort_by_key(|r| r.timestamp_ms);
    let events: Vec<InputLogEvent> = sorted
        .iter()
        .map(|r| {
            InputLogEvent::builder()
                .timestamp(r.timestamp_ms)
                .message(r.metrics.to_emf_line(&r.stage, &r.shard, r.timestamp_ms))
                .build()
                .expect("a log event")
        })
        .collect();
    client
        .put_log_events()
        .log_group_name(&group)
        .log_stream_name("2026/01/01/[$LATEST]0")
        .set_log_events(Some(events))
        .send()
        .await
        .expect("PutLogEvents");
}

/// The recorded lines of stage `stage`, moved so that the first lies at `start_ms`.
fn recorded(stage: &str, start_ms: i64) -> Vec<EmfRecord> {
    let mut records: Vec<EmfRecord> = REVENUE.lines().filter_map(EmfRecord::parse_line).collect();
    let first = records.iter().map(|r| r.timestamp_ms).min().unwrap();
    for r in &mut records {
        r.stage = stage.to_owned();
        r.timestamp_ms += start_ms - first;
    }
    records
}

/// What CloudWatch extracts from `records`' EMF lines: every metric of each line on the stage.
async fn put_as_extracted(client: &aws_sdk_cloudwatch::Client, records: &[EmfRecord]) {
    let mut data = Vec::new();
    for r in records {
        for ((name, unit), value) in EMF_METRICS.iter().zip(r.metrics.values()) {
            data.push(
                MetricDatum::builder()
                    .metric_name(*name)
                    .dimensions(Dimension::builder().name(EMF_DIMENSION).value(&r.stage).build())
                    .timestamp(DateTime::from_millis(r.timestamp_ms))
                    .value(value as f64)
                    .unit(StandardUnit::from(*unit))
                    .build(),
            );
        }
    }
    for chunk in data.chunks(500) {
        client
            .put_metric_data()
            .namespace(EMF_NAMESPACE)
            .set_metric_data(Some(chunk.to_vec()))
            .send()
            .await
            .expect("PutMetricData");
    }
}

#[tokio::test]
async fn the_metrics_cloudwatch_extracts_read_back_give_each_periods_batches_sums_maxima_and_means() {
    let client = cloudwatch().await;
    let stage = shardflow_testkit::unique_name("dash-cw");
    let now = now_ms();
    // Four minutes back, at a period's start: the 111 s of lines fill two whole periods.
    let start = now - now.rem_euclid(PERIOD_MS) - 4 * PERIOD_MS;
    let records = recorded(&stage, start);
    put_as_extracted(&client, &records).await;

    let source = CloudWatchMetrics::new(client);
    let periods = source
        .periods(&stage, start - PERIOD_MS, now)
        .await
        .expect("GetMetricData");

    // Expected: the lines grouped by period.
    let mut expected: BTreeMap<i64, Vec<&EmfRecord>> = BTreeMap::new();
    for r in &records {
        expected
            .entry(r.timestamp_ms - r.timestamp_ms.rem_euclid(PERIOD_MS))
            .or_default()
            .push(r);
    }
    assert_eq!(
        periods.iter().map(|p| p.start_ms).collect::<Vec<_>>(),
        expected.keys().copied().collect::<Vec<_>>()
    );
    for p in &periods {
        let lines = &expected[&p.start_ms];
        let sum = |f: fn(&EmfRecord) -> u64| lines.iter().map(|r| f(r)).sum::<u64>();
        assert_eq!(p.batches, lines.len() as u64);
        assert_eq!(p.metrics.records_in, sum(|r| r.metrics.records_in));
        assert_eq!(p.metrics.state_items_written, sum(|r| r.metrics.state_items_written));
        assert_eq!(p.metrics.state_bytes_written, sum(|r| r.metrics.state_bytes_written));
        let max_lag = lines.iter().map(|r| r.metrics.watermark_lag_ms).max().unwrap();
        assert_eq!(
            p.metrics.watermark_lag_ms, max_lag,
            "the maximum lag: the least watermark"
        );
        let mean_commit = sum(|r| r.metrics.commit_ms) as f64 / lines.len() as f64;
        assert_eq!(
            p.metrics.commit_ms,
            mean_commit.round() as u64,
            "the mean commit duration"
        );
    }

    // The stage's figures from the periods equal those from the lines, read once or re-read.
    let from_logs = Observations {
        batches: records.clone(),
        ..Observations::default()
    };
    let mut from_metrics = Observations::default();
    from_metrics.replace_periods(&stage, &periods);
    from_metrics.replace_periods(&stage, &periods);
    let at = start + 5 * PERIOD_MS;
    let logs = &from_logs.overview(at, &BTreeMap::new())[0];
    let metrics = &from_metrics.overview(at, &BTreeMap::new())[0];
    assert_eq!(metrics.flow.records_in, logs.flow.records_in);
    assert_eq!(metrics.flow.records_in, 4_303);
    assert_eq!(metrics.flow.results_out, logs.flow.results_out);
    assert_eq!(metrics.flow.late_records, logs.flow.late_records);
    assert_eq!(metrics.flow.dead_letter_records, logs.flow.dead_letter_records);
    assert_eq!(metrics.shards.len(), 1);
    assert_eq!(metrics.shards[0].shard, ALL_SHARDS);
    assert_eq!(metrics.shards[0].batches, records.len() as u64);
    // The watermark: the latest period's least, known to within a period (its batches are
    // placed evenly over it).
    let (from_periods, from_lines) = (metrics.watermark_ms.unwrap(), logs.watermark_ms.unwrap());
    assert!(
        (from_periods - from_lines).abs() <= PERIOD_MS,
        "{from_periods} from the periods, {from_lines} from the lines"
    );
}

#[tokio::test]
async fn with_cloudwatch_metrics_the_stage_totals_are_the_metrics_and_the_shard_rows_come_from_the_log_lines() {
    let metrics_client = cloudwatch().await;
    let logs_client = aws_sdk_cloudwatchlogs::Client::new(&sdk("CLOUDWATCHLOGS").await);
    let stage = shardflow_testkit::unique_name("dash-cwl");
    let function = format!("{stage}-fn");
    let now = now_ms();
    let start = now - now.rem_euclid(PERIOD_MS) - 4 * PERIOD_MS;
    let records = recorded(&stage, start);
    put_as_extracted(&metrics_client, &records).await;
    put_as_logged(&logs_client, &function, &records).await;

    // As the dashboard reads them: the metrics over the whole range, the log from the second
    // period on (what a reader started later, or a log with a shorter retention, holds).
    let periods = CloudWatchMetrics::new(metrics_client)
        .periods(&stage, start - PERIOD_MS, now)
        .await
        .expect("GetMetricData");
    let since = start + PERIOD_MS;
    let lines = CloudWatchLogs::new(logs_client)
        .lines(&function, since)
        .await
        .expect("FilterLogEvents");
    let mut o = Observations::default();
    for line in &lines {
        o.add_log_line(&stage, &line.text, Some(line.at_ms));
    }
    o.replace_periods(&stage, &periods);
    let read: Vec<&EmfRecord> = records.iter().filter(|r| r.timestamp_ms >= since).collect();
    assert_eq!(lines.len(), read.len(), "the log lines from the second period on");
    assert!(read.len() < records.len());

    let view = &o.overview(start + 5 * PERIOD_MS, &BTreeMap::new())[0];
    // The stage's totals: every line's, as the metrics hold them.
    assert_eq!(view.flow.records_in, 4_303);
    assert_eq!(
        view.flow.records_in,
        records.iter().map(|r| r.metrics.records_in).sum::<u64>()
    );
    // Its shards: the real shard ids of the log lines, each with the figures of its lines read.
    let mut shards: Vec<&str> = read.iter().map(|r| r.shard.as_str()).collect();
    shards.sort_unstable();
    shards.dedup();
    assert_eq!(view.shards.iter().map(|s| s.shard.as_str()).collect::<Vec<_>>(), shards);
    assert!(!shards.contains(&ALL_SHARDS));
    for shard in &view.shards {
        let of_shard: Vec<&&EmfRecord> = read.iter().filter(|r| r.shard == shard.shard).collect();
        assert_eq!(shard.batches, of_shard.len() as u64, "{}", shard.shard);
        assert_eq!(
            shard.flow.records_in,
            of_shard.iter().map(|r| r.metrics.records_in).sum::<u64>(),
            "{}",
            shard.shard
        );
        let latest = of_shard.iter().filter_map(|r| r.watermark_ms()).max();
        assert_eq!(shard.watermark_ms, latest, "{}", shard.shard);
    }
    assert!(view.shards.iter().map(|s| s.flow.records_in).sum::<u64>() < view.flow.records_in);
}
