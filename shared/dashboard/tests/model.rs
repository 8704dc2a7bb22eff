//! Every derived figure and highlight on recorded EMF lines (`tests/fixtures/`, see its README),
//! each checked against the raw JSON of the lines or the run's own summary.

use std::collections::BTreeMap;

use serde_json::Value;
use shardflow_dashboard::model::RATE_WINDOW_MS;
use shardflow_dashboard::{highlights, HighlightKind, Observations, ShardSample};

const ORDER_ENRICH: &str = include_str!("fixtures/order_enrich.emf.jsonl");
const REVENUE_IDLE: &str = include_str!("fixtures/revenue_idle_shard.emf.jsonl");
/// The ERROR line a deployed `revenue-shuffled` wrote when its Postgres table was gone.
const SINK_ERROR: &str = include_str!("fixtures/revenue_shuffled_sink_error.log");

/// The recorded error line's message: the text after its level and span context, read with
/// nothing but string splitting.
fn sink_error_message() -> &'static str {
    SINK_ERROR.trim().split_once("}: ").unwrap().1
}

fn observations(text: &str) -> Observations {
    let mut o = Observations::default();
    o.add_log("fixture", text, None);
    o
}

fn raw(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn ts(v: &Value) -> i64 {
    v["_aws"]["Timestamp"].as_i64().unwrap()
}

fn end_of(text: &str) -> i64 {
    raw(text).iter().map(ts).max().unwrap()
}

fn windows(stage: &str, ms: i64) -> BTreeMap<String, i64> {
    BTreeMap::from([(stage.to_owned(), ms)])
}

#[test]
fn totals_of_records_results_late_and_dead_letters_are_the_runs_summary() {
    // `shardflow demo --events 100000 --corrupt-every 5000 --batch-size 512` printed:
    // order_enrich 99980 records in, 7732 results out, 205 late; 20 dead letters.
    let o = observations(ORDER_ENRICH);
    let end = end_of(ORDER_ENRICH);
    let views = o.overview(end, &windows("order_enrich", 120_000));
    assert_eq!(views.len(), 1);
    let v = &views[0];
    assert_eq!(v.stage, "order_enrich");
    assert_eq!(v.flow.records_in, 99_980);
    assert_eq!(v.flow.results_out, 7_732);
    assert_eq!(v.flow.late_records, 205);
    assert_eq!(v.flow.dead_letter_records, 20);
    let shards: Vec<&str> = v.shards.iter().map(|s| s.shard.as_str()).collect();
    assert_eq!(shards, ["shard-0", "shard-1", "shard-2", "shard-3"]);
    assert_eq!(v.shards.iter().map(|s| s.flow.records_in).sum::<u64>(), 99_980);
}

#[test]
fn a_shards_watermark_is_its_last_lines_time_less_its_lag_and_the_lag_runs_on_with_the_wall_clock() {
    let o = observations(ORDER_ENRICH);
    let lines = raw(ORDER_ENRICH);
    let last = lines
        .iter()
        .filter(|v| v["Shard"] == "shard-1")
        .max_by_key(|v| ts(v))
        .unwrap();
    let expected = ts(last) - last["WatermarkLag"].as_i64().unwrap();
    let now = end_of(ORDER_ENRICH) + 30_000;
    let views = o.overview(now, &windows("order_enrich", 120_000));
    let shard = views[0].shards.iter().find(|s| s.shard == "shard-1").unwrap();
    assert_eq!(shard.watermark_ms, Some(expected));
    assert_eq!(shard.watermark_lag_ms, Some(now - expected));
    // The stage's watermark is the least of its shards'.
    let least = views[0].shards.iter().filter_map(|s| s.watermark_ms).min();
    assert_eq!(views[0].watermark_ms, least);
    let holder = views[0].shards.iter().find(|s| s.watermark_ms == least).unwrap();
    assert_eq!(views[0].held_by.as_deref(), Some(holder.shard.as_str()));
}

#[test]
fn rates_are_the_last_minutes_records_per_second_and_fall_to_zero_when_batches_stop() {
    let o = observations(ORDER_ENRICH);
    let end = end_of(ORDER_ENRICH);
    let lines = raw(ORDER_ENRICH);
    let in_last_minute = |field: &str| -> f64 {
        lines
            .iter()
            .filter(|v| ts(v) > end - RATE_WINDOW_MS)
            .map(|v| v[field].as_u64().unwrap())
            .sum::<u64>() as f64
            / 60.0
    };
    let views = o.overview(end, &windows("order_enrich", 120_000));
    assert!(views[0].flow.records_in_per_sec > 0.0);
    assert!((views[0].flow.records_in_per_sec - in_last_minute("RecordsIn")).abs() < 1e-9);
    assert!((views[0].flow.results_out_per_sec - in_last_minute("ResultsOut")).abs() < 1e-9);
    let later = o.overview(end + RATE_WINDOW_MS, &windows("order_enrich", 120_000));
    assert_eq!(later[0].flow.records_in_per_sec, 0.0);
}

#[test]
fn the_time_series_spreads_every_record_over_its_buckets() {
    let o = observations(ORDER_ENRICH);
    let (from, to) = o.time_range().unwrap();
    let series = o.series("order_enrich", from, to, 30);
    assert_eq!(series.starts.len(), 30);
    let per_bucket = series.bucket_ms as f64 / 1000.0;
    let records: f64 = series.records_in_per_sec.iter().map(|r| r * per_bucket).sum();
    assert!((records - 99_980.0).abs() < 1e-6, "{records}");
    assert_eq!(series.late_records.iter().sum::<u64>(), 205);
    assert_eq!(series.dead_letter_records.iter().sum::<u64>(), 20);
    assert_eq!(series.watermarks.len(), 4);
    // Watermarks never move back.
    for points in series.watermarks.values() {
        assert!(points.windows(2).all(|w| w[1].1 >= w[0].1), "{points:?}");
    }
}

#[test]
fn state_size_and_iterator_age_come_from_the_latest_status_reading() {
    let mut o = observations(ORDER_ENRICH);
    let end = end_of(ORDER_ENRICH);
    for (at, age, bytes) in [(end - 20_000, 900, 1_000), (end - 10_000, 400, 2_500)] {
        o.samples.push(ShardSample {
            stage: "order_enrich".into(),
            shard: "shard-2".into(),
            at_ms: at,
            iterator_age_ms: Some(age),
            state_items: 7,
            state_bytes: bytes,
        });
    }
    let views = o.overview(end, &windows("order_enrich", 120_000));
    let shard = views[0].shards.iter().find(|s| s.shard == "shard-2").unwrap();
    assert_eq!(shard.iterator_age_ms, Some(400));
    assert_eq!(shard.state_bytes, Some(2_500));
    assert_eq!(views[0].state_bytes, Some(2_500));
    assert_eq!(views[0].state_items, Some(7));
}

#[test]
fn commit_latency_and_the_last_error_are_read_from_a_functions_log() {
    // Lines as a deployed stage's log holds them (LocalStack's function log: an output prefix).
    let error = SINK_ERROR.trim();
    let log = format!("[1a2b3c4d] START RequestId: 1 Version: $LATEST\n\
        [1a2b3c4d] {{\"CommitDuration\":14,\"DeadLetterRecords\":0,\"DuplicatesDropped\":0,\"DuplicatesSkipped\":0,\"LateRecords\":0,\"RecordsIn\":5,\"ResultsOut\":1,\"Shard\":\"shardId-000000000000\",\"Stage\":\"revenue\",\"StateBytesWritten\":812,\"StateItemsWritten\":3,\"WatermarkLag\":5000,\"_aws\":{{\"CloudWatchMetrics\":[],\"Timestamp\":1700000000000}}}}\n\
        {error}\n\
        [1a2b3c4d] {{\"CommitDuration\":0,\"DeadLetterRecords\":0,\"DuplicatesDropped\":0,\"DuplicatesSkipped\":2,\"LateRecords\":0,\"RecordsIn\":0,\"ResultsOut\":0,\"Shard\":\"shardId-000000000000\",\"Stage\":\"revenue\",\"StateBytesWritten\":0,\"StateItemsWritten\":0,\"WatermarkLag\":6000,\"_aws\":{{\"CloudWatchMetrics\":[],\"Timestamp\":1700000001000}}}}\n");
    let mut o = Observations::default();
    o.add_log("revenue", &log, None);
    assert_eq!(o.batches.len(), 2);
    let views = o.overview(1_700_000_002_000, &BTreeMap::new());
    let shard = &views[0].shards[0];
    // The last batch that committed, not the last batch.
    assert_eq!(shard.commit_ms, Some(14));
    assert_eq!(shard.state_bytes_written, Some(812));
    let last = views[0].last_error.as_ref().unwrap();
    assert_eq!(last.message, sink_error_message());
    assert!(last.message.contains("does not exist"), "{last:?}");
    assert_eq!(last.at_ms, 1_700_000_000_000);
    // The page shows it in the stage's row.
    let page = shardflow_dashboard::html::stage_table(&views);
    assert!(
        page.contains(&format!(
            "data-field=\"last_error\">{}<",
            shardflow_dashboard::format::html(sink_error_message())
        )),
        "{page}"
    );
    // The same message logged in tracing's JSON format (AWS_LAMBDA_LOG_FORMAT=JSON).
    let json =
        serde_json::json!({"level": "ERROR", "fields": {"message": sink_error_message()}, "target": "lambda_runtime"});
    assert_eq!(
        shardflow_dashboard::model::error_message(&json.to_string()),
        sink_error_message()
    );
}

#[test]
fn a_quiet_shard_is_highlighted_as_stalling_the_watermark_and_holding_it_back() {
    // The revenue lines of a demo run with shard-3's lines after 00:00:40 removed: the shard went
    // quiet while the others went on for another 90 s.
    let o = observations(REVENUE_IDLE);
    let end = end_of(REVENUE_IDLE);
    let views = o.overview(end, &windows("revenue", 60_000));
    assert_eq!(views[0].held_by.as_deref(), Some("shard-3"));
    let found = highlights(&o, &views, end);
    let kinds: Vec<HighlightKind> = found.iter().map(|h| h.kind).collect();
    assert!(kinds.contains(&HighlightKind::WatermarkStalled), "{found:?}");
    assert!(kinds.contains(&HighlightKind::IdleShardHoldsWatermark), "{found:?}");
    let idle = found
        .iter()
        .find(|h| h.kind == HighlightKind::IdleShardHoldsWatermark)
        .unwrap();
    assert_eq!(idle.shard.as_deref(), Some("shard-3"));
    assert!(
        idle.title.contains("shard-3") && idle.title.contains("1 min 36 s"),
        "{}",
        idle.title
    );
    assert!(idle.meaning.contains("with_idleness"), "{}", idle.meaning);
    // With a window longer than the stall, the watermark is not stalled.
    let patient = o.overview(end, &windows("revenue", 3_600_000));
    assert!(!highlights(&o, &patient, end)
        .iter()
        .any(|h| h.kind == HighlightKind::WatermarkStalled));
}

#[test]
fn a_run_where_every_shard_moves_has_no_watermark_highlight() {
    let o = observations(ORDER_ENRICH);
    let end = end_of(ORDER_ENRICH);
    let views = o.overview(end, &windows("order_enrich", 120_000));
    let found = highlights(&o, &views, end);
    assert!(
        found.iter().all(|h| h.kind == HighlightKind::DeadLettersArriving),
        "{found:?}"
    );
}

#[test]
fn dead_letters_of_the_last_five_minutes_are_highlighted_with_their_count() {
    let o = observations(ORDER_ENRICH);
    let end = end_of(ORDER_ENRICH);
    let recent: u64 = raw(ORDER_ENRICH)
        .iter()
        .filter(|v| ts(v) > end - 5 * 60_000)
        .map(|v| v["DeadLetterRecords"].as_u64().unwrap())
        .sum();
    assert!(recent > 0);
    let views = o.overview(end, &windows("order_enrich", 120_000));
    let found = highlights(&o, &views, end);
    let dead = found
        .iter()
        .find(|h| h.kind == HighlightKind::DeadLettersArriving)
        .unwrap();
    assert!(dead.title.starts_with(&format!("{recent} record(s)")), "{}", dead.title);
    assert!(dead.meaning.contains("dead-letter destination"));
    // An hour later nothing new arrived.
    let later = end + 3_600_000;
    let views = o.overview(later, &windows("order_enrich", 120_000));
    assert!(!highlights(&o, &views, later)
        .iter()
        .any(|h| h.kind == HighlightKind::DeadLettersArriving));
}

#[test]
fn an_iterator_age_rising_reading_after_reading_is_highlighted_and_a_falling_one_is_not() {
    let mut o = observations(ORDER_ENRICH);
    let end = end_of(ORDER_ENRICH);
    let sample = |shard: &str, i: i64, age: i64| ShardSample {
        stage: "order_enrich".into(),
        shard: shard.into(),
        at_ms: end - 30_000 + i * 10_000,
        iterator_age_ms: Some(age),
        state_items: 0,
        state_bytes: 0,
    };
    for (i, age) in [2_000, 9_000, 17_000, 31_000].into_iter().enumerate() {
        o.samples.push(sample("shard-0", i as i64, age));
    }
    for (i, age) in [31_000, 17_000, 9_000, 2_000].into_iter().enumerate() {
        o.samples.push(sample("shard-1", i as i64, age));
    }
    let views = o.overview(end, &windows("order_enrich", 120_000));
    let growing: Vec<_> = highlights(&o, &views, end)
        .into_iter()
        .filter(|h| h.kind == HighlightKind::IteratorAgeGrowing)
        .collect();
    assert_eq!(growing.len(), 1, "{growing:?}");
    assert_eq!(growing[0].shard.as_deref(), Some("shard-0"));
    assert!(growing[0].title.contains("9.0 s to 31.0 s"), "{}", growing[0].title);
}

#[test]
fn a_deployed_stages_commit_latency_and_bytes_are_its_last_committing_batchs() {
    let log = include_str!("fixtures/revenue_lambda.log");
    let o = observations(log);
    assert_eq!(o.batches.len(), 40);
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(&l[l.find('{').unwrap()..]).unwrap())
        .collect();
    let views = o.overview(lines.iter().map(ts).max().unwrap(), &windows("revenue", 60_000));
    assert_eq!(views[0].stage, "revenue");
    for shard in &views[0].shards {
        let last = lines
            .iter()
            .filter(|v| v["Shard"] == shard.shard.as_str() && v["StateItemsWritten"].as_u64().unwrap() > 0)
            .max_by_key(|v| ts(v))
            .unwrap();
        assert_eq!(shard.commit_ms, last["CommitDuration"].as_u64(), "{}", shard.shard);
        assert_eq!(
            shard.state_bytes_written,
            last["StateBytesWritten"].as_u64(),
            "{}",
            shard.shard
        );
    }
    let mean = views[0].shards.iter().filter_map(|s| s.commit_ms).sum::<u64>() / views[0].shards.len() as u64;
    assert_eq!(views[0].commit_ms, Some(mean));
}

#[test]
fn errors_logged_in_the_last_five_minutes_are_highlighted_with_the_latest_line() {
    let log = format!(
        "[1a2b3c4d] ERROR shardflow_lambda::stage: restore refused stage=revenue shard=shardId-000000000001\n{}",
        SINK_ERROR
    );
    let mut o = Observations::default();
    o.add_log("revenue", &log, Some(1_700_000_000_000));
    let at = |now: i64| {
        let views = o.overview(now, &BTreeMap::new());
        highlights(&o, &views, now)
            .into_iter()
            .filter(|h| h.kind == HighlightKind::ErrorsLogged)
            .collect::<Vec<_>>()
    };
    let found = at(1_700_000_060_000);
    assert_eq!(found.len(), 1);
    assert!(found[0].title.contains("2 error line(s)"), "{}", found[0].title);
    assert!(
        found[0]
            .title
            .ends_with(&format!("the latest: {}", sink_error_message())),
        "the latest line: {}",
        found[0].title
    );
    assert!(at(1_700_000_000_000 + 6 * 60_000).is_empty(), "older than five minutes");
}
