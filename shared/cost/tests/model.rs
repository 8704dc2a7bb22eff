//! The model against hand-computed figures: batch rates, DynamoDB units per batch and per
//! checkpoint, Managed Flink's KPUs, Lambda tumbling windows' invocations, Kinesis in every
//! column, and the comparisons the shop preset prints.

use shardflow_cost::model::{dynamodb_per_batch, Traffic};
use shardflow_cost::prices::{lambda_gb_seconds, us_east_1, Architecture, SECONDS_PER_MONTH};
use shardflow_cost::{
    cost, flink_kpus, shop, CheckpointInterval, CostError, Deployment, Report, Service, ShopOptions, StageProfile,
    StateProfile, Workload,
};

const EVERY_BATCH: Deployment = Deployment::Shardflow(CheckpointInterval::Batches(1.0));
const EVERY_30_S: Deployment = Deployment::Shardflow(CheckpointInterval::Seconds(30.0));
const ALL: [Deployment; 4] = [
    EVERY_BATCH,
    EVERY_30_S,
    Deployment::ManagedFlink,
    Deployment::LambdaTumbling,
];

fn workload(events_per_s: f64) -> Workload {
    Workload {
        events_per_s,
        batch_size: 500.0,
        batching_window_s: 1.0,
        architecture: Architecture::Arm64,
        reloads_per_shard_hour: 4.0,
        tumbling_window_s: 60.0,
        flink_events_per_kpu: 10_000.0,
    }
}

fn shop_report(options: &ShopOptions, w: &Workload) -> Report {
    cost(&shop(options), w, &us_east_1(), &ALL).unwrap()
}

fn line(report: &Report, deployment: Deployment, item: &str, service: Service) -> Option<f64> {
    let column = report.column(deployment).unwrap();
    let found: Vec<f64> = column
        .lines
        .iter()
        .filter(|l| l.item == item && l.service == service)
        .map(|l| l.usd_month)
        .collect();
    (!found.is_empty()).then(|| found.iter().sum())
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn at_per_batch_commits_the_shop_platform_costs_more_than_managed_flink() {
    let report = shop_report(&ShopOptions::default(), &workload(1_000.0));
    let lambda = report.column(EVERY_BATCH).unwrap();
    let flink = report.column(Deployment::ManagedFlink).unwrap();
    assert!(lambda.total_usd_month > flink.total_usd_month);
    // Flink's own part is the smallest application: 1 KPU + 1 orchestration KPU and its storage.
    assert!(close(flink.processing_usd_month, 2.0 * 730.0 * 0.11 + 50.0 * 0.10));
    assert!(lambda.processing_usd_month > 5.0 * flink.processing_usd_month);
    // The sinks and the source stream are the same work in every column.
    let common = |c: &shardflow_cost::Column| c.total_usd_month - c.processing_usd_month;
    assert!(close(common(lambda), common(flink)));
}

fn keyed(live: f64, dirty: f64) -> StageProfile {
    StageProfile {
        name: "keyed".into(),
        input_stream: "in".into(),
        state: StateProfile {
            live_items: live,
            state_bytes: live * 225.0,
            dirty_items_per_batch: dirty,
            checkpoint_item_bytes: 3_072.0,
        },
        ..StageProfile::default()
    }
}

const ONE_BATCH_A_SECOND: Traffic = Traffic {
    shards: 4.0,
    batches_per_s_shard: 1.0,
    records_per_batch: 250.0,
    results_per_batch: 0.0,
};

#[test]
fn commit_writes_fall_by_the_ratio_of_batches_to_checkpoints_when_every_live_group_is_dirty_every_batch() {
    let stage = keyed(125.0, 125.0);
    let every = dynamodb_per_batch(&stage, &ONE_BATCH_A_SECOND, CheckpointInterval::Batches(1.0), 0.0);
    let thirty = dynamodb_per_batch(&stage, &ONE_BATCH_A_SECOND, CheckpointInterval::Seconds(30.0), 0.0);
    // Per batch: checkpoint item (3 KB: 6 WRU in a transaction) + 125 items × (2 WRU + 1 WRU delete).
    assert_eq!(every.wru, 6.0 + 125.0 * 3.0);
    // Reads: the checkpoint item (1 RRU) and 125 items of 225 B (1 RRU each, strongly consistent).
    assert_eq!(every.rru, 126.0);
    assert_eq!(thirty.batches_per_commit, 30.0);
    // Every batch at an interval also moves the progress item: one standard write.
    assert!(close(every.wru / (thirty.wru - 1.0), 30.0));
    // Between checkpoints a warm batch reads the checkpoint and progress items in one query.
    assert_eq!(thirty.rru, 1.0);
}

#[test]
fn with_a_30_s_interval_the_dynamodb_line_falls_by_the_commits_saved_less_the_growth_of_the_dirty_set() {
    let w = workload(1_000.0);
    let report = shop_report(&ShopOptions::default(), &w);
    let p = us_east_1();
    let batches = 4.0 * SECONDS_PER_MONTH; // 4 shards, 1 batch a second each
    let storage = p.dynamodb_storage(4.0 * (27.5 * 1_024.0 + 125.0 * 100.0 + 3_072.0) / (1u64 << 30) as f64);
    // Every batch: 126 RRU; 6 + 20 × 3 = 66 WRU.
    let every = batches * (126.0 * 0.125 + 66.0 * 0.625) / 1e6 + storage;
    assert!(close(
        line(&report, EVERY_BATCH, "revenue", Service::DynamoDB).unwrap(),
        every
    ));
    // Every 30 s: 30 batches dirty 125 · (1 − (1 − 20/125)^30) distinct groups; a batch reads the
    // checkpoint item, and 4 of the 3,600 batches of a shard-hour reload all 126 RRU.
    let dirty = 125.0 * (1.0 - (1.0f64 - 20.0 / 125.0).powi(30));
    let reload = 4.0 / 3_600.0;
    let rru = (1.0 - reload) * 1.0 + reload * 126.0;
    let wru = (6.0 + dirty * 3.0) / 30.0 + 1.0; // + the progress item, every batch
    let thirty = batches * (rru * 0.125 + wru * 0.625) / 1e6 + storage;
    let got = line(&report, EVERY_30_S, "revenue", Service::DynamoDB).unwrap();
    assert!(close(got, thirty), "{got} vs {thirty}");
    // Commits fall 30×, but a commit then writes ~124 groups instead of 20 and every batch moves
    // the progress item: the write saving is 66 / ((6 + 3 · 124.3) / 30 + 1) ≈ 4.7×, not 30×.
    let write_saving = 66.0 / wru;
    assert!(write_saving > 4.5 && write_saving < 5.0, "{write_saving}");
}

#[test]
fn managed_flink_rounds_kpus_up_to_the_rate_and_adds_one_for_orchestration() {
    assert_eq!(flink_kpus(0.0, 10_000.0), 1.0);
    assert_eq!(flink_kpus(1_000.0, 10_000.0), 1.0);
    assert_eq!(flink_kpus(10_000.0, 10_000.0), 1.0);
    assert_eq!(flink_kpus(10_001.0, 10_000.0), 2.0);
    assert_eq!(flink_kpus(25_000.0, 10_000.0), 3.0);
    let report = shop_report(&ShopOptions::default(), &workload(10_001.0));
    let app = line(
        &report,
        Deployment::ManagedFlink,
        "Flink application",
        Service::ManagedFlink,
    )
    .unwrap();
    assert!(close(app, 3.0 * 730.0 * 0.11 + 2.0 * 50.0 * 0.10));
    assert_eq!(report.flink_kpus, 2.0);
}

#[test]
fn lambda_tumbling_windows_invoke_each_shard_once_more_per_window_and_use_no_dynamodb() {
    let report = shop_report(&ShopOptions::default(), &workload(1_000.0));
    let p = us_east_1();
    // receipts: 4 shards × (1 batch a second + 1 window end a minute), 60 − 15 − 20 = 25 ms each.
    let invocations = 4.0 * SECONDS_PER_MONTH * (1.0 + 1.0 / 60.0);
    let expected = p.lambda(
        lambda_gb_seconds(invocations, 25.0, 256.0),
        invocations,
        Architecture::Arm64,
    );
    let got = line(&report, Deployment::LambdaTumbling, "receipts", Service::Lambda).unwrap();
    assert!(close(got, expected), "{got} vs {expected}");
    // archive keeps no windows: one invocation per batch.
    let archive = 4.0 * SECONDS_PER_MONTH;
    let expected = p.lambda(lambda_gb_seconds(archive, 25.0, 256.0), archive, Architecture::Arm64);
    assert!(close(
        line(&report, Deployment::LambdaTumbling, "archive", Service::Lambda).unwrap(),
        expected
    ));
    let column = report.column(Deployment::LambdaTumbling).unwrap();
    assert!(column.lines.iter().all(|l| l.service != Service::DynamoDB));
}

#[test]
fn batches_follow_the_batching_window_until_the_batch_size_fills_first() {
    let options = ShopOptions::default();
    let traffic = |rate: f64| shop_report(&options, &workload(rate)).traffic[0].1;
    let t = traffic(1_000.0);
    assert_eq!((t.batches_per_s_shard, t.records_per_batch), (1.0, 250.0));
    let t = traffic(8_000.0); // 2,000 a second a shard: batches of 500 fill in 0.25 s
    assert_eq!((t.batches_per_s_shard, t.records_per_batch), (4.0, 500.0));
    let t = traffic(2.0); // half a record a second a shard: no empty invocations
    assert_eq!((t.batches_per_s_shard, t.records_per_batch), (0.5, 1.0));
}

#[test]
fn kinesis_is_in_every_column_and_shuffle_streams_only_where_lambda_shuffles() {
    let options = ShopOptions {
        shuffle: true,
        ..ShopOptions::default()
    };
    let report = shop_report(&options, &workload(1_000.0));
    let p = us_east_1();
    let source = p.kinesis_shards_month(4.0, 168) + p.kinesis_put_units(1_000.0 * SECONDS_PER_MONTH);
    // An upstream batch of 250 records sends each of 4 shuffle shards one frame of
    // 250 × 280 / 4 + 100 B = 17.6 KB: 1 PUT payload unit.
    let shuffle = p.kinesis_shards_month(4.0, 24) + p.kinesis_put_units(4.0 * 4.0 * SECONDS_PER_MONTH);
    for d in ALL {
        assert!(close(
            line(&report, d, "stream changes", Service::Kinesis).unwrap(),
            source
        ));
        let got = line(&report, d, "stream revenue-shuffle", Service::Kinesis);
        match d {
            Deployment::ManagedFlink => assert_eq!(got, None),
            _ => assert!(close(got.unwrap(), shuffle), "{d:?}: {got:?} vs {shuffle}"),
        }
    }
    // The keyed stage downstream batches the frames by its window: one batch a second a shard.
    let revenue = report.traffic.iter().find(|(s, _)| s == "revenue").unwrap().1;
    assert_eq!((revenue.batches_per_s_shard, revenue.records_per_batch), (1.0, 250.0));
}

#[test]
fn a_shuffle_stream_of_fewer_shards_costs_fewer_shard_hours_and_packs_bigger_frames() {
    let options = ShopOptions {
        shuffle: true,
        shuffle_shards: 1,
        ..ShopOptions::default()
    };
    let report = shop_report(&options, &workload(1_000.0));
    let p = us_east_1();
    // 4 upstream shards each send the one shuffle shard one frame a second of
    // 250 × 280 + 100 B = 70.1 KB: 3 PUT payload units.
    let shuffle = p.kinesis_shards_month(1.0, 24) + p.kinesis_put_units(4.0 * 3.0 * SECONDS_PER_MONTH);
    let got = line(&report, EVERY_30_S, "stream revenue-shuffle", Service::Kinesis);
    assert!(close(got.unwrap(), shuffle), "{got:?} vs {shuffle}");
    // the CDC stream keeps its 4 shards
    let source = p.kinesis_shards_month(4.0, 168) + p.kinesis_put_units(1_000.0 * SECONDS_PER_MONTH);
    let got = line(&report, EVERY_30_S, "stream changes", Service::Kinesis);
    assert!(close(got.unwrap(), source), "{got:?} vs {source}");
}

#[test]
fn a_profile_file_replaces_only_the_fields_it_names_and_rejects_unknown_ones() {
    let mut platform = shop(&ShopOptions::default());
    let profile = serde_json::json!({"stages": [
        {"name": "revenue", "state": {"dirty_items_per_batch": 5.0}, "duration_ms_per_batch": 80.0},
        {"name": "fraud", "input_stream": "changes", "results_per_record": 0.01, "keyed": true}
    ]});
    platform.apply_profile(&profile, "profile.json").unwrap();
    let revenue = platform.stages.iter().find(|s| s.name == "revenue").unwrap();
    assert_eq!(revenue.state.dirty_items_per_batch, 5.0);
    assert_eq!(revenue.state.live_items, 125.0);
    assert_eq!(revenue.duration_ms_per_batch, 80.0);
    assert!(platform.stages.iter().any(|s| s.name == "fraud" && s.keyed));

    let typo = serde_json::json!({"stages": [{"name": "revenue", "dirty_item": 5.0}]});
    let err = platform.apply_profile(&typo, "typo.json").unwrap_err();
    assert!(err.to_string().contains("dirty_item"), "{err}");
}

#[test]
fn out_of_range_figures_are_errors_that_name_them() {
    let platform = shop(&ShopOptions::default());
    let mut w = workload(f64::NAN);
    let err = cost(&platform, &w, &us_east_1(), &ALL).unwrap_err();
    assert!(
        matches!(err, CostError::OutOfRange { ref what, .. } if what == "--rate"),
        "{err}"
    );
    w = workload(1_000.0);
    w.batch_size = 0.0;
    assert!(cost(&platform, &w, &us_east_1(), &ALL).is_err());
    let mut broken = shop(&ShopOptions::default());
    broken.stages[1].input_stream = "nowhere".into();
    let err = cost(&broken, &workload(1_000.0), &us_east_1(), &ALL).unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
}

#[test]
fn order_enrich_s3_costs_one_put_per_shard_and_minute_whatever_the_rate() {
    let puts_cost = |rate: f64| {
        let report = shop_report(&ShopOptions::default(), &workload(rate));
        line(&report, EVERY_30_S, "order-enrich", Service::S3).unwrap()
    };
    let (slow, fast) = (puts_cost(100.0), puts_cost(1_000.0));
    // 4 shards × 60 objects an hour × a month of hours, at $0.005 per 1,000 PUTs, plus the bytes
    // (written and stored: they grow with the rate, the PUTs do not).
    let puts = 4.0 * 60.0 * SECONDS_PER_MONTH / 3_600.0;
    assert!(slow >= puts * 0.005 / 1_000.0, "{slow}");
    assert!(
        fast < 10.0,
        "one object per result would cost ~$1,075 at 1,000 events/s: {fast}"
    );
    assert!(
        fast < 5.0 * slow,
        "ten times the rate, far less than ten times the cost: {slow} → {fast}"
    );
}

#[test]
fn emf_metrics_count_per_stage_not_per_shard() {
    for shards in [1, 4, 8] {
        let options = ShopOptions {
            shards,
            ..ShopOptions::default()
        };
        let report = shop_report(&options, &workload(1_000.0));
        let column = report.column(EVERY_30_S).unwrap();
        let usage = column
            .lines
            .iter()
            .find(|l| l.item == "revenue" && l.service == Service::CloudWatch)
            .map(|l| l.usage.clone())
            .unwrap();
        assert!(usage.ends_with(", 12 custom metrics"), "{shards} shards: {usage}");
    }
}
