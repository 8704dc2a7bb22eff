//! The dated price table (us-east-1) and the unit formulas each service bills by.
//!
//! Every price is a public list price of us-east-1, without free tiers, volume discounts, savings
//! plans or reserved capacity, as of [`PRICES_AS_OF`]. They were written down from the services'
//! public pricing pages as last known on that date, not fetched: **check them against the pricing
//! pages before relying on a figure**. `shardflow cost --prices FILE` takes a JSON table of the
//! same shape (`shardflow cost --print-prices` prints this one) to cost with other prices.

use serde::{Deserialize, Serialize};

/// The date the table below was taken as of (ISO 8601).
pub const PRICES_AS_OF: &str = "2026-12-05";

/// The region the table is for.
pub const PRICES_REGION: &str = "us-east-1";

/// Hours in a billing month, as AWS's pricing examples count them.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// Seconds in a billing month ([`HOURS_PER_MONTH`] × 3,600).
pub const SECONDS_PER_MONTH: f64 = HOURS_PER_MONTH * 3_600.0;

/// Bytes in the units the services bill by.
pub mod unit_bytes {
    /// A DynamoDB write request unit covers up to 1 KB of item.
    pub const WRITE_UNIT: f64 = 1_024.0;
    /// A DynamoDB read request unit covers up to 4 KB of item (strongly consistent).
    pub const READ_UNIT: f64 = 4_096.0;
    /// A Kinesis PUT payload unit is 25 KB of record (data plus partition key).
    pub const PUT_PAYLOAD_UNIT: f64 = 25.0 * 1_024.0;
    /// SNS and SQS bill each 64 KB chunk of a request's payload as one request.
    pub const MESSAGE_CHUNK: f64 = 64.0 * 1_024.0;
    /// A gigabyte as the storage and ingestion prices count it.
    pub const GB: f64 = 1_024.0 * 1_024.0 * 1_024.0;
}

/// List prices of one region, in US dollars.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prices {
    /// The region the prices are for.
    pub region: String,
    /// The date the prices were taken as of.
    pub as_of: String,
    /// Lambda, per GB-second of duration on arm64 (Graviton).
    pub lambda_gb_second_arm64: f64,
    /// Lambda, per GB-second of duration on x86_64.
    pub lambda_gb_second_x86_64: f64,
    /// Lambda, per million requests (invocations).
    pub lambda_per_million_requests: f64,
    /// DynamoDB on-demand, per million write request units.
    pub dynamodb_per_million_wru: f64,
    /// DynamoDB on-demand, per million read request units.
    pub dynamodb_per_million_rru: f64,
    /// DynamoDB storage (Standard table class), per GB-month.
    pub dynamodb_storage_gb_month: f64,
    /// Kinesis Data Streams provisioned, per shard-hour.
    pub kinesis_shard_hour: f64,
    /// Kinesis Data Streams provisioned, per million PUT payload units (25 KB).
    pub kinesis_per_million_put_units: f64,
    /// Kinesis Data Streams provisioned, extended retention (24 h to 7 days), per shard-hour.
    pub kinesis_extended_retention_shard_hour: f64,
    /// Kinesis Data Streams on-demand, per stream-hour.
    pub kinesis_on_demand_stream_hour: f64,
    /// Kinesis Data Streams on-demand, per GB written.
    pub kinesis_on_demand_ingest_gb: f64,
    /// Kinesis Data Streams on-demand, per GB read.
    pub kinesis_on_demand_retrieval_gb: f64,
    /// Kinesis enhanced fan-out, per consumer-shard-hour.
    pub kinesis_efo_consumer_shard_hour: f64,
    /// Kinesis enhanced fan-out, per GB read.
    pub kinesis_efo_retrieval_gb: f64,
    /// S3 Standard, per 1,000 PUT, COPY, POST or LIST requests.
    pub s3_per_thousand_put: f64,
    /// S3 Standard, per 1,000 GET (and other read) requests.
    pub s3_per_thousand_get: f64,
    /// S3 Standard storage, per GB-month (first 50 TB).
    pub s3_storage_gb_month: f64,
    /// SNS standard topic, per million publish requests (each 64 KB chunk is one request).
    pub sns_per_million_publishes: f64,
    /// SQS standard queue, per million requests (each 64 KB chunk is one request).
    pub sqs_per_million_requests: f64,
    /// CloudWatch Logs, per GB ingested (standard log class; EMF lines are logs).
    pub cloudwatch_logs_ingest_gb: f64,
    /// CloudWatch, per custom metric per month (first 10,000; EMF metrics are custom metrics).
    pub cloudwatch_custom_metric_month: f64,
    /// Amazon Managed Service for Apache Flink, per KPU-hour (1 vCPU, 4 GB).
    pub flink_kpu_hour: f64,
    /// Managed Flink: the extra KPUs every application is charged for orchestration.
    pub flink_orchestration_kpus: f64,
    /// Managed Flink running application storage, per GB-month.
    pub flink_running_storage_gb_month: f64,
    /// Managed Flink running application storage that comes with each KPU, GB.
    pub flink_storage_gb_per_kpu: f64,
}

/// us-east-1 list prices as of [`PRICES_AS_OF`].
pub fn us_east_1() -> Prices {
    Prices {
        region: PRICES_REGION.to_owned(),
        as_of: PRICES_AS_OF.to_owned(),
        // aws.amazon.com/lambda/pricing: arm64, first 7.5 billion GB-s a month.
        lambda_gb_second_arm64: 0.000_013_333_4,
        // aws.amazon.com/lambda/pricing: x86_64, first 6 billion GB-s a month.
        lambda_gb_second_x86_64: 0.000_016_666_7,
        // aws.amazon.com/lambda/pricing: $0.20 per 1M requests (both architectures).
        lambda_per_million_requests: 0.20,
        // aws.amazon.com/dynamodb/pricing/on-demand: $0.625 per million WRU (halved on 2024-11-01).
        dynamodb_per_million_wru: 0.625,
        // aws.amazon.com/dynamodb/pricing/on-demand: $0.125 per million RRU (halved on 2024-11-01).
        dynamodb_per_million_rru: 0.125,
        // aws.amazon.com/dynamodb/pricing/on-demand: Standard table class, after the first 25 GB.
        dynamodb_storage_gb_month: 0.25,
        // aws.amazon.com/kinesis/data-streams/pricing: provisioned, per shard-hour.
        kinesis_shard_hour: 0.015,
        // aws.amazon.com/kinesis/data-streams/pricing: provisioned, per 1M PUT payload units.
        kinesis_per_million_put_units: 0.014,
        // aws.amazon.com/kinesis/data-streams/pricing: extended retention (up to 7 days).
        kinesis_extended_retention_shard_hour: 0.02,
        // aws.amazon.com/kinesis/data-streams/pricing: on-demand, per stream-hour.
        kinesis_on_demand_stream_hour: 0.04,
        // aws.amazon.com/kinesis/data-streams/pricing: on-demand, per GB of data in.
        kinesis_on_demand_ingest_gb: 0.08,
        // aws.amazon.com/kinesis/data-streams/pricing: on-demand, per GB of data out.
        kinesis_on_demand_retrieval_gb: 0.04,
        // aws.amazon.com/kinesis/data-streams/pricing: enhanced fan-out consumer-shard-hour.
        kinesis_efo_consumer_shard_hour: 0.015,
        // aws.amazon.com/kinesis/data-streams/pricing: enhanced fan-out data retrieval per GB.
        kinesis_efo_retrieval_gb: 0.013,
        // aws.amazon.com/s3/pricing: S3 Standard PUT, COPY, POST, LIST per 1,000 requests.
        s3_per_thousand_put: 0.005,
        // aws.amazon.com/s3/pricing: S3 Standard GET, SELECT and other reads per 1,000 requests.
        s3_per_thousand_get: 0.000_4,
        // aws.amazon.com/s3/pricing: S3 Standard, first 50 TB per month.
        s3_storage_gb_month: 0.023,
        // aws.amazon.com/sns/pricing: standard topics, first 1M free then $0.50 per 1M requests.
        sns_per_million_publishes: 0.50,
        // aws.amazon.com/sqs/pricing: standard queues, $0.40 per 1M requests (first 100B).
        sqs_per_million_requests: 0.40,
        // aws.amazon.com/cloudwatch/pricing: logs ingestion, standard class, per GB.
        cloudwatch_logs_ingest_gb: 0.50,
        // aws.amazon.com/cloudwatch/pricing: custom metrics, first 10,000, per metric-month.
        cloudwatch_custom_metric_month: 0.30,
        // aws.amazon.com/managed-service-apache-flink/pricing: per KPU-hour.
        flink_kpu_hour: 0.11,
        // docs.aws.amazon.com/managed-flink/latest/java/how-pricing.html: one extra KPU per app.
        flink_orchestration_kpus: 1.0,
        // aws.amazon.com/managed-service-apache-flink/pricing: running storage per GB-month.
        flink_running_storage_gb_month: 0.10,
        // aws.amazon.com/managed-service-apache-flink/pricing: 50 GB of running storage per KPU.
        flink_storage_gb_per_kpu: 50.0,
    }
}

/// The CPU architecture of a Lambda function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// Graviton (the template's default).
    Arm64,
    /// x86_64.
    #[value(name = "x86_64")]
    X86_64,
}

impl Architecture {
    /// Its name as Lambda spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Architecture::Arm64 => "arm64",
            Architecture::X86_64 => "x86_64",
        }
    }
}

/// How DynamoDB reads are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Strongly consistent: one RRU per 4 KB (what the state store uses).
    Strong,
    /// Eventually consistent: half an RRU per 4 KB.
    Eventual,
}

/// Write units of one standard (non-transactional) write or delete of an item of `bytes`: one
/// per started KB, at least one.
pub fn wru_standard(bytes: f64) -> f64 {
    (bytes / unit_bytes::WRITE_UNIT).ceil().max(1.0)
}

/// Write units of one write of an item of `bytes` inside `TransactWriteItems`: two per started KB.
pub fn wru_transactional(bytes: f64) -> f64 {
    2.0 * wru_standard(bytes)
}

/// Read units of one read of an item of `bytes`: one per started 4 KB strongly consistent, half
/// of that eventually consistent. (`BatchGetItem` rounds each item up on its own.)
pub fn rru(bytes: f64, consistency: ReadConsistency) -> f64 {
    let strong = (bytes / unit_bytes::READ_UNIT).ceil().max(1.0);
    match consistency {
        ReadConsistency::Strong => strong,
        ReadConsistency::Eventual => strong / 2.0,
    }
}

/// PUT payload units of one Kinesis record of `bytes` (data plus partition key): one per started
/// 25 KB, at least one.
pub fn put_payload_units(bytes: f64) -> f64 {
    (bytes / unit_bytes::PUT_PAYLOAD_UNIT).ceil().max(1.0)
}

/// Billed SNS or SQS requests of one request carrying `bytes` of payload: one per started 64 KB.
pub fn message_requests(bytes: f64) -> f64 {
    (bytes / unit_bytes::MESSAGE_CHUNK).ceil().max(1.0)
}

/// GB-seconds of `invocations` invocations of `billed_ms` each at `memory_mb`.
pub fn lambda_gb_seconds(invocations: f64, billed_ms: f64, memory_mb: f64) -> f64 {
    invocations * billed_ms / 1_000.0 * memory_mb / 1_024.0
}

impl Prices {
    /// Lambda duration and requests.
    pub fn lambda(&self, gb_seconds: f64, requests: f64, arch: Architecture) -> f64 {
        let per_gb_s = match arch {
            Architecture::Arm64 => self.lambda_gb_second_arm64,
            Architecture::X86_64 => self.lambda_gb_second_x86_64,
        };
        gb_seconds * per_gb_s + requests / 1e6 * self.lambda_per_million_requests
    }

    /// DynamoDB on-demand reads and writes.
    pub fn dynamodb(&self, rru: f64, wru: f64) -> f64 {
        rru / 1e6 * self.dynamodb_per_million_rru + wru / 1e6 * self.dynamodb_per_million_wru
    }

    /// DynamoDB storage of `gb` held for a month.
    pub fn dynamodb_storage(&self, gb: f64) -> f64 {
        gb * self.dynamodb_storage_gb_month
    }

    /// A provisioned stream of `shards` shards for a month, with `retention_hours` of retention.
    pub fn kinesis_shards_month(&self, shards: f64, retention_hours: u32) -> f64 {
        let extended = if retention_hours > 24 {
            self.kinesis_extended_retention_shard_hour
        } else {
            0.0
        };
        shards * HOURS_PER_MONTH * (self.kinesis_shard_hour + extended)
    }

    /// Kinesis PUT payload units.
    pub fn kinesis_put_units(&self, units: f64) -> f64 {
        units / 1e6 * self.kinesis_per_million_put_units
    }

    /// S3 requests (`puts` of the PUT class, `gets` of the GET class) and `gb` stored a month.
    pub fn s3(&self, puts: f64, gets: f64, gb: f64) -> f64 {
        puts / 1e3 * self.s3_per_thousand_put + gets / 1e3 * self.s3_per_thousand_get + gb * self.s3_storage_gb_month
    }

    /// SNS publish requests (billed 64 KB chunks).
    pub fn sns(&self, requests: f64) -> f64 {
        requests / 1e6 * self.sns_per_million_publishes
    }

    /// SQS requests (billed 64 KB chunks).
    pub fn sqs(&self, requests: f64) -> f64 {
        requests / 1e6 * self.sqs_per_million_requests
    }

    /// CloudWatch: `log_gb` of logs ingested and `metrics` custom metrics kept for the month.
    pub fn cloudwatch(&self, log_gb: f64, metrics: f64) -> f64 {
        log_gb * self.cloudwatch_logs_ingest_gb + metrics * self.cloudwatch_custom_metric_month
    }

    /// A Managed Flink application of `kpus` KPUs (orchestration added) running for a month,
    /// with the running storage of its KPUs.
    pub fn flink_month(&self, kpus: f64) -> f64 {
        (kpus + self.flink_orchestration_kpus) * HOURS_PER_MONTH * self.flink_kpu_hour
            + kpus * self.flink_storage_gb_per_kpu * self.flink_running_storage_gb_month
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn a_million_transactional_writes_of_1_kb_are_2_million_wru_and_cost_1_dollar_25() {
        let p = us_east_1();
        let wru = 1e6 * wru_transactional(1_024.0);
        assert_eq!(wru, 2e6);
        assert!(close(p.dynamodb(0.0, wru), 1.25));
    }

    #[test]
    fn a_transactional_write_of_1_kb_and_one_byte_is_4_wru_and_a_standard_one_2() {
        assert_eq!(wru_transactional(1_025.0), 4.0);
        assert_eq!(wru_standard(1_025.0), 2.0);
        assert_eq!(wru_standard(10.0), 1.0);
    }

    #[test]
    fn a_million_strongly_consistent_reads_of_4_kb_cost_12_5_cents_and_eventual_half() {
        let p = us_east_1();
        assert!(close(
            p.dynamodb(1e6 * rru(4_096.0, ReadConsistency::Strong), 0.0),
            0.125
        ));
        assert!(close(
            p.dynamodb(1e6 * rru(4_096.0, ReadConsistency::Eventual), 0.0),
            0.0625
        ));
        // 4 KB and one byte is two units.
        assert_eq!(rru(4_097.0, ReadConsistency::Strong), 2.0);
    }

    #[test]
    fn a_shard_for_a_month_is_10_dollars_95_and_with_7_day_retention_25_dollars_55() {
        let p = us_east_1();
        assert!(close(p.kinesis_shards_month(1.0, 24), 10.95));
        assert!(close(p.kinesis_shards_month(1.0, 168), 25.55));
    }

    #[test]
    fn a_million_records_of_30_kb_are_2_million_put_units_and_cost_2_8_cents() {
        let p = us_east_1();
        let units = 1e6 * put_payload_units(30.0 * 1_024.0);
        assert_eq!(units, 2e6);
        assert!(close(p.kinesis_put_units(units), 0.028));
        assert_eq!(put_payload_units(200.0), 1.0);
    }

    #[test]
    fn a_million_lambda_invocations_of_100_ms_at_1_gb_cost_1_dollar_53_on_arm64() {
        let p = us_east_1();
        let gb_s = lambda_gb_seconds(1e6, 100.0, 1_024.0);
        assert!(close(gb_s, 100_000.0));
        assert!(close(p.lambda(gb_s, 1e6, Architecture::Arm64), 1.333_34 + 0.20));
        assert!(close(p.lambda(gb_s, 1e6, Architecture::X86_64), 1.666_67 + 0.20));
    }

    #[test]
    fn a_million_sns_publishes_of_100_kb_are_2_million_requests_and_cost_a_dollar() {
        let p = us_east_1();
        let requests = 1e6 * message_requests(100.0 * 1_024.0);
        assert_eq!(requests, 2e6);
        assert!(close(p.sns(requests), 1.0));
        assert!(close(p.sqs(1e6 * message_requests(1_000.0)), 0.40));
    }

    #[test]
    fn s3_requests_and_storage_are_priced_per_thousand_and_per_gb_month() {
        let p = us_east_1();
        assert!(close(p.s3(1e6, 0.0, 0.0), 5.0));
        assert!(close(p.s3(0.0, 1e6, 0.0), 0.40));
        assert!(close(p.s3(0.0, 0.0, 100.0), 2.30));
    }

    #[test]
    fn the_smallest_flink_application_is_2_kpu_for_160_dollars_60_plus_5_dollars_of_storage() {
        let p = us_east_1();
        assert!(close(p.flink_month(1.0), 160.60 + 5.0));
        assert!(close(p.flink_month(3.0), 4.0 * 730.0 * 0.11 + 15.0));
    }

    #[test]
    fn cloudwatch_bills_log_gigabytes_and_custom_metrics() {
        let p = us_east_1();
        assert!(close(p.cloudwatch(2.0, 10.0), 1.0 + 3.0));
    }

    #[test]
    fn the_price_table_round_trips_through_json() {
        let p = us_east_1();
        let back: Prices = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
