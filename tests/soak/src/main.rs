//! `shardflow-soak`: the chaos soak of the deployed shop platform (issue 16), run by
//! `tests/soak/run --minutes N --rate R [--seed S]`.
//!
//! It deploys `infra/template.yaml` to the running LocalStack with a multi-shard CDC stream,
//! puts the shop generator's changes (and a few malformed records) into it at a steady rate
//! while a seeded schedule injects faults (see [`schedule`]), waits for the stages to drain,
//! checks every sink against the embedded runner on exactly the records the stream holds, and
//! writes a report (JSON, markdown, a PNG plot). It exits non-zero when a check fails.

mod cdc;
mod checks;
mod faults;
mod monitor;
mod platform;
mod procs;
mod proxy;
mod report;
mod schedule;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::Parser;
use shardflow_gen::shop::{encode, ShopFormat};
use shardflow_kinesis::{KinesisProducer, KinesisTransport, ProducerConfig, StreamRecord};
use shardflow_shop::pipelines::EnrichedOrder;
use shardflow_shop::{ShopConfig, ShopGenerator};

use crate::checks::Check;
use crate::faults::Injected;
use crate::monitor::Monitor;
use crate::schedule::{Fault, FaultKind, ScheduleConfig};

/// The soak's settings.
#[derive(Debug, Parser)]
#[command(about = "Chaos soak of the shop platform on LocalStack (needs localstack/up and functions/package --all)")]
struct Args {
    /// Minutes of feed (faults run within it; the drain and checks come after).
    #[arg(long, default_value_t = 3.0)]
    minutes: f64,
    /// Change events put per second.
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// The seed of the generator and of the fault schedule.
    #[arg(long, default_value_t = 16)]
    seed: u64,
    /// Shards of the input stream at the start.
    #[arg(long, default_value_t = 2)]
    shards: u32,
    /// The functions' timeout (s); the timeout fault holds their calls past it.
    #[arg(long, default_value_t = 10)]
    function_timeout: u32,
    /// Malformed records put among the changes.
    #[arg(long, default_value_t = 3)]
    malformed: usize,
    /// Orders per second of event time in the generated shop.
    #[arg(long, default_value_t = 1.0)]
    orders_per_sec: f64,
    /// The longest wait for the stages to drain after the feed (s).
    #[arg(long, default_value_t = 300)]
    drain_timeout: u64,
    /// After the last fault, the iterator age must be back to normal within this (s).
    #[arg(long, default_value_t = 120)]
    recovery_limit: u64,
    /// A check known to fail (a substring of its name, repeatable): reported as a known
    /// failure, without failing the command.
    #[arg(long)]
    known_failure: Vec<String>,
    /// The share of the feed's time, at its end, whose changes go through Postgres CDC: the
    /// shop's workload committed to the soak's Postgres and put into the stream by `shardflow
    /// cdc`, which is killed and started again halfway (0: no CDC phase).
    #[arg(long, default_value_t = 0.2)]
    cdc_share: f64,
    /// Where the report goes.
    #[arg(long, default_value = "target/soak")]
    out: PathBuf,
}

/// Faults of the issue that this soak does not inject, and why.
const NOT_INJECTED: [&str; 2] = [
    "LocalStack restarted: persistence (PERSISTENCE=1) is a LocalStack Pro feature since LocalStack 1.0, and the \
     Community edition this project runs offline (localstack/lib.sh) loses every stream, table and function on a \
     restart: there is no state for the platform to survive it with",
    "Kinesis faults reach the soak's producer and the key-by stages' writes to the shuffle streams only: the event \
     source mappings poll inside LocalStack, not through the proxy",
];

/// The data directory of the soak's own Postgres (`tests/soak/postgres`, started by
/// `tests/soak/run`), from `SHARDFLOW_SOAK_POSTGRES_DIR`.
fn soak_postgres(root: &std::path::Path) -> anyhow::Result<faults::SoakPostgres> {
    let dir = std::env::var("SHARDFLOW_SOAK_POSTGRES_DIR")
        .context("SHARDFLOW_SOAK_POSTGRES_DIR is not set: run the soak with tests/soak/run")?;
    Ok(faults::SoakPostgres {
        script: root.join("tests/soak/postgres"),
        dir: PathBuf::from(dir),
    })
}

/// The socket address of `AWS_ENDPOINT_URL`.
fn upstream() -> anyhow::Result<SocketAddr> {
    let url = std::env::var("AWS_ENDPOINT_URL").context("AWS_ENDPOINT_URL is not set: source localstack/env")?;
    let host_port = url.trim_start_matches("http://").trim_end_matches('/').to_owned();
    host_port
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("no address for {url}"))
}

/// A Kinesis client through the proxy at `url`.
fn kinesis_via(url: &str) -> aws_sdk_kinesis::Client {
    let config = shardflow_testkit::kinesis()
        .config()
        .to_builder()
        .endpoint_url(url)
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

/// The changes, the records to put (partition key, data) and the malformed records among them.
type Input = (
    Vec<shardflow_schemas::ChangeEvent>,
    Vec<(String, Vec<u8>)>,
    Vec<Vec<u8>>,
);

/// The generated changes (no late change: results do not depend on the sharding) with
/// `malformed` malformed records at seeded places; returns the records and the malformed ones.
fn input(args: &Args, events: u64) -> Input {
    use rand::{Rng, SeedableRng};
    let mut config = ShopConfig::new(args.seed, events, 1);
    config.orders_per_sec = args.orders_per_sec;
    config.late_fraction = 0.0;
    config.too_late_fraction = 0.0;
    let mut generator = ShopGenerator::new(config);
    let changes: Vec<shardflow_schemas::ChangeEvent> =
        std::iter::from_fn(|| generator.next_event().map(|(_, e)| e)).collect();
    let mut records: Vec<(String, Vec<u8>)> = changes
        .iter()
        .filter_map(|e| encode(e, ShopFormat::Protobuf).ok())
        .collect();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(args.seed ^ 0x5eed);
    let mut malformed = Vec::new();
    for i in 0..args.malformed {
        let data = [shardflow_e2e::shop::MALFORMED, format!(" #{i}").as_bytes()].concat();
        let at = rng.random_range(records.len() / 10..=records.len().max(1) * 9 / 10);
        records.insert(at.min(records.len()), (format!("malformed-{i}"), data.clone()));
        malformed.push(data);
    }
    (changes, records, malformed)
}

/// One watermark mover per open shard (each shard runs its own engine), three hours past the
/// generated changes and the CDC phase's commits (whose event times are wall-clock times).
async fn movers(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    changes: &[shardflow_schemas::ChangeEvent],
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let generated = changes
        .iter()
        .map(shardflow_schemas::ChangeEvent::event_time)
        .max()
        .unwrap_or(0);
    let now_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
    let mover = shardflow_e2e::shop::customer_touch(changes, generated.max(now_ms) + 3 * 60 * 60_000);
    let mover = encode(&mover, ShopFormat::Protobuf)?.1;
    let listed = kinesis.list_shards().stream_name(stream).send().await?;
    let mut out = Vec::new();
    for s in listed.shards() {
        if s.sequence_number_range()
            .is_some_and(|r| r.ending_sequence_number().is_some())
        {
            continue;
        }
        let range = s.hash_key_range().context("a shard without a hash key range")?;
        let (low, high): (u128, u128) = (range.starting_hash_key().parse()?, range.ending_hash_key().parse()?);
        let key = (0..)
            .map(|i| format!("watermark-{i}"))
            .find(|k| (low..=high).contains(&shardflow_lambda::hash_key(k)))
            .context("a partition key in the shard's range")?;
        out.push((key, mover.clone()));
    }
    Ok(out)
}

/// What the CDC phase did.
struct CdcPhase {
    /// The reader, still running (stop it once the stream holds every change).
    reader: cdc::CdcReader,
    /// The changes committed to Postgres, in commit order.
    committed: Vec<shardflow_schemas::ChangeEvent>,
    /// The reader's kill, as placed.
    fault: Fault,
    /// The kill, as carried out.
    injected: Injected,
}

/// The CDC phase (`crate::cdc`): for `length`, the shop's workload committed to the soak's
/// Postgres at `args.rate` changes a second while `shardflow cdc` puts it into `stream`; the
/// reader is killed halfway and started again after 5 s.
async fn cdc_phase(
    args: &Args,
    stream: &str,
    length: Duration,
    started: Instant,
    monitor: &Monitor,
    put_before: u64,
) -> anyhow::Result<CdcPhase> {
    let url = std::env::var("SHARDFLOW_TEST_DATABASE_URL")
        .context("SHARDFLOW_TEST_DATABASE_URL is not set: run the soak with tests/soak/run")?;
    let mut client = cdc::prepare(&url).await?;
    std::fs::create_dir_all(&args.out)?;
    let log = args.out.join("cdc-reader.log");
    let reader = cdc::CdcReader::start(&cdc::shardflow_command()?, &url, stream, &log).await?;
    let config = cdc::workload(args.seed, (length.as_secs_f64() * f64::from(args.rate)) as u64);
    let committed = cdc::committed_changes(&config);
    tracing::info!(changes = committed.len(), "the CDC phase starts");
    let fault = Fault {
        kind: FaultKind::KillCdcReader,
        at: started.elapsed() + length / 2,
        duration: Duration::from_secs(5),
        probability: 1.0,
        target: 0,
    };
    let load = shardflow_gen::postgres::load_shop(&mut client, config, f64::from(args.rate), |n| {
        monitor.put.store(put_before + n, Ordering::Relaxed);
    });
    let kill = async {
        tokio::time::sleep(length / 2).await;
        let started_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Injected::logged(&fault, started_ms, reader.kill_and_restart(fault.duration).await)
    };
    let (loaded, injected) = tokio::join!(load, kill);
    let loaded = loaded.context("the CDC workload")?;
    anyhow::ensure!(
        loaded.changes == committed.len() as u64,
        "the CDC workload committed {} changes, its generator has {}",
        loaded.changes,
        committed.len()
    );
    Ok(CdcPhase {
        reader,
        committed,
        fault,
        injected,
    })
}

/// Waits (up to `deadline`) until `stream` holds every change of the CDC phase: the reader puts
/// a change some time after its commit, and the watermark movers must come after the last one
/// (behind a mover a change is late downstream, where the embedded runner, fed no mover, keeps
/// it). At the deadline it goes on, and the CDC check reports what is missing.
async fn cdc_caught_up(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    generated: &BTreeSet<&[u8]>,
    committed: &[shardflow_schemas::ChangeEvent],
    deadline: Duration,
) {
    let started = Instant::now();
    loop {
        let stored = shardflow_testkit::read_stream_once(kinesis, stream).await;
        let from_cdc: Vec<&[u8]> = stored
            .iter()
            .map(|r| r.data.as_slice())
            .filter(|d| !generated.contains(d))
            .collect();
        let (check, _) = cdc::changes_arrived(&from_cdc, committed);
        if check.passed {
            tracing::info!(
                waited_ms = started.elapsed().as_millis(),
                "the stream holds every CDC change"
            );
            return;
        }
        if started.elapsed() > deadline {
            tracing::warn!("the CDC reader did not catch up within {deadline:?}: {}", check.detail);
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Waits until every stage committed the last stored record of every shard; the ms it took, or
/// `None` at the deadline.
async fn drain(
    stages: &[String],
    table: &str,
    stored: &[shardflow_testkit::ReadRecord],
    deadline: Duration,
) -> Option<u64> {
    let started = Instant::now();
    let mut last: BTreeMap<&str, &str> = BTreeMap::new();
    for r in stored {
        last.insert(&r.shard_id, &r.sequence_number);
    }
    let dynamodb = shardflow_testkit::dynamodb();
    while started.elapsed() < deadline {
        let mut behind = 0;
        for stage in stages {
            let committed: BTreeMap<String, Option<String>> =
                match shardflow_lifecycle::stage_checkpoints(&dynamodb, table, stage).await {
                    Ok(c) => c.into_iter().map(|c| (c.shard, c.sequence_number)).collect(),
                    Err(_) => BTreeMap::new(),
                };
            behind += last
                .iter()
                .filter(|(shard, seq)| committed.get(**shard).cloned().flatten().as_deref() != Some(**seq))
                .count();
        }
        if behind == 0 {
            return Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    None
}

/// Waits (up to `deadline`) for the enriched-orders stream and the output bucket's
/// `enriched-orders/` to hold the embedded runner's enriched orders (`expected`), but for the
/// sessions near a row in `dependent` (see [`checks::enriched_orders_match`]); the checks on
/// what they hold then, and the stream's identical repeats.
async fn enriched_settled(
    platform: &platform::Platform,
    expected: &[shardflow_e2e::shop::ResultLine<EnrichedOrder>],
    dependent: &BTreeMap<i64, Vec<i64>>,
    deadline: Duration,
) -> anyhow::Result<(Vec<Check>, usize)> {
    let comparable = |o: &EnrichedOrder| !shardflow_e2e::shop::depends_on_interleaving(o, dependent);
    let want: BTreeMap<String, EnrichedOrder> = expected
        .iter()
        .filter(|l| comparable(&l.value))
        .map(|l| (l.id.clone(), l.value.clone()))
        .collect();
    let stream = platform.output("EnrichedOrdersStreamName")?;
    let bucket = platform.output("OutputBucketName")?;
    let kinesis = shardflow_testkit::kinesis();
    let started = Instant::now();
    loop {
        let streamed: Vec<(String, EnrichedOrder)> = shardflow_testkit::read_stream_once(&kinesis, &stream)
            .await
            .iter()
            .filter_map(|r| {
                serde_json::from_slice::<shardflow_connectors::KinesisEnvelope<EnrichedOrder>>(&r.data).ok()
            })
            .map(|e| (e.id, e.value))
            .collect();
        let stored: Vec<(String, EnrichedOrder)> =
            shardflow_e2e::shop::s3_results::<EnrichedOrder>(&bucket, "enriched-orders/")
                .await
                .into_iter()
                .map(|m| (m.id, m.value))
                .collect();
        let (in_stream, repeats) = checks::enriched_orders_match("Kinesis stream", &streamed, &want, comparable, true);
        let (in_s3, _) = checks::enriched_orders_match("S3", &stored, &want, comparable, false);
        if (in_stream.passed && in_s3.passed) || started.elapsed() > deadline {
            tracing::info!(
                passed = in_stream.passed,
                "enriched orders streamed: {}",
                in_stream.detail
            );
            tracing::info!(passed = in_s3.passed, "enriched orders in S3: {}", in_s3.detail);
            return Ok((vec![in_stream, in_s3], repeats));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// Waits (up to `deadline`) for the revenue table to hold the embedded runner's final totals
/// with every window closed; the check on what it holds then.
async fn revenue_settled(
    platform: &platform::Platform,
    expected: &BTreeMap<(i64, String, i64), (i64, u64)>,
    deadline: Duration,
) -> Check {
    let started = Instant::now();
    loop {
        let rows = shardflow_e2e::shop::revenue_rows(&platform.revenue_table).await;
        let panes = shardflow_e2e::shop::revenue_panes(&platform.revenue_table).await;
        let check = checks::revenue_matches(&rows, &panes, expected);
        if check.passed || started.elapsed() > deadline {
            tracing::info!(passed = check.passed, "revenue: {}", check.detail);
            return check;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("shardflow_soak=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let wall = Instant::now();
    // tests/soak/run starts in the checkout whose LocalStack runs (the binary may have been built
    // in another one); the build's checkout otherwise
    let root = std::env::current_dir()
        .ok()
        .filter(|d| d.join("localstack/up").is_file())
        .unwrap_or_else(shardflow_e2e::repo_root);
    let localstack_home = std::fs::canonicalize(root.join("localstack"))?;
    shardflow_e2e::require_function_zips(&platform::CHECKED_STAGES);
    let postgres = soak_postgres(&root)?;

    let proxy = proxy::FaultProxy::start(upstream()?, args.seed).await?;
    let stack = shardflow_testkit::unique_name("soak");
    tracing::info!(stack, proxy = proxy.url(), "deploying");
    let platform = platform::deploy(&stack, args.shards, args.function_timeout, &proxy.url()).await?;
    let _guard = shardflow_e2e::StackGuard(stack.clone());
    let stream = platform.output("ChangesStreamName")?;
    let table = platform.output("StateTableName")?;
    let receipts_queue = shardflow_e2e::shop::subscribe_queue(&platform.output("ReceiptsTopicArn")?).await;

    // the generator's own feed with the scheduled faults, then the CDC phase
    let whole_feed = Duration::from_secs_f64(args.minutes * 60.0);
    let cdc_feed = whole_feed.mul_f64(args.cdc_share.clamp(0.0, 0.9));
    let feed = whole_feed - cdc_feed;
    let total_events = (feed.as_secs_f64() * f64::from(args.rate)) as u64;
    let (changes, records, malformed) = input(&args, total_events);
    let mut faults = schedule::schedule(&ScheduleConfig {
        seed: args.seed,
        feed,
        warmup: Duration::from_secs(20).min(feed / 6),
        cooldown: Duration::from_secs(30).min(feed / 6),
        max_window: Duration::from_secs(20),
        min_slot: Duration::from_secs(40),
    });
    let targets = faults::Targets {
        proxy: proxy.clone(),
        localstack_home: localstack_home.clone(),
        functions: platform.running_functions(),
        function_timeout: Duration::from_secs(u64::from(args.function_timeout)),
        stream: stream.clone(),
        shuffle_stream: platform.output("RevenueShuffleStreamName")?,
        postgres,
        kinesis: shardflow_testkit::kinesis(),
    };

    let monitor = Arc::new(Monitor::default());
    let started = Instant::now();
    // on a thread of its own: the status future is not `Send` (a higher-ranked lifetime in
    // shardflow-lifecycle's buffered stream), so it cannot be a task of this runtime
    let watched = monitor::Watched {
        stages: platform.running.clone(),
        table: table.clone(),
        receipts_queue: receipts_queue.clone(),
        localstack_home: localstack_home.clone(),
    };
    let shared = Arc::clone(&monitor);
    let watcher = std::thread::spawn(move || -> anyhow::Result<()> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(monitor::run(shared, watched, started, Duration::from_secs(3)));
        Ok(())
    });

    // the feed: `rate` records a second (a call at a time, so each key's records keep their
    // order), through the proxy; the faults as they come due
    let producer = KinesisProducer::new(
        KinesisTransport::new(kinesis_via(&proxy.url()), &stream),
        ProducerConfig {
            calls_in_flight: 1,
            ..ProducerConfig::default()
        },
    );
    let mut sent = 0usize;
    let mut next_fault = 0usize;
    let mut injecting = Vec::new();
    let per_ms = records.len() as f64 / feed.as_millis().max(1) as f64;
    while sent < records.len() {
        let elapsed = started.elapsed();
        while next_fault < faults.len() && faults[next_fault].at <= elapsed {
            let fault = faults[next_fault].clone();
            let targets = targets.clone();
            let at = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
            injecting.push(tokio::spawn(async move { faults::inject(&fault, &targets, at).await }));
            next_fault += 1;
        }
        let due = ((elapsed.as_millis() as f64 * per_ms) as usize).min(records.len());
        for (key, data) in &records[sent..due.max(sent)] {
            producer.send(StreamRecord::new(key.clone(), data.clone())).await?;
        }
        if due > sent {
            producer.flush().await?;
            sent = due;
            monitor.put.store(sent as u64, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut injected = Vec::new();
    for handle in injecting {
        injected.push(handle.await?);
    }
    tracing::info!(records = sent, faults = injected.len(), "the generator's feed is done");
    let cdc = if cdc_feed.is_zero() {
        None
    } else {
        let phase = cdc_phase(&args, &stream, cdc_feed, started, &monitor, sent as u64).await?;
        faults.push(phase.fault.clone());
        injected.push(phase.injected.clone());
        Some(phase)
    };
    let committed: &[shardflow_schemas::ChangeEvent] = cdc.as_ref().map_or(&[], |c| c.committed.as_slice());
    let feed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let direct = shardflow_testkit::kinesis();
    if cdc.is_some() {
        let generated: BTreeSet<&[u8]> = records.iter().map(|(_, d)| d.as_slice()).collect();
        cdc_caught_up(
            &direct,
            &stream,
            &generated,
            committed,
            Duration::from_secs(args.drain_timeout),
        )
        .await;
    }
    tracing::info!("feed done; putting the watermark movers");

    let movers = movers(&direct, &stream, &changes).await?;
    shardflow_e2e::shop::put_records_in_order(&stream, movers.clone()).await;
    let mut put: Vec<Vec<u8>> = records.iter().map(|(_, d)| d.clone()).collect();
    put.extend(movers.iter().map(|(_, d)| d.clone()));
    monitor
        .put
        .store((put.len() + committed.len()) as u64, Ordering::Relaxed);
    let stored =
        shardflow_testkit::read_stream(&direct, &stream, put.len() + committed.len(), Duration::from_secs(120)).await;
    if let Some(phase) = &cdc {
        phase.reader.stop();
    }
    let readers: Vec<String> = platform
        .running
        .iter()
        .filter(|s| s.stream == stream)
        .map(|s| s.stage.clone())
        .collect();
    let drain_ms = drain(&readers, &table, &stored, Duration::from_secs(args.drain_timeout)).await;
    tracing::info!(?drain_ms, "drained");
    // a few more samples at rest
    tokio::time::sleep(Duration::from_secs(10)).await;
    monitor.stop.store(true, Ordering::Relaxed);
    watcher
        .join()
        .map_err(|_| anyhow::anyhow!("the monitor thread panicked"))??;
    let samples = monitor.samples();

    // the checks
    let mut results: Vec<Check> = Vec::new();
    // the generator's records (and the movers) are the ones put; the others came from CDC
    let put_set: BTreeSet<&[u8]> = put.iter().map(Vec::as_slice).collect();
    let (from_producer, from_cdc): (Vec<&[u8]>, Vec<&[u8]>) = stored
        .iter()
        .map(|r| r.data.as_slice())
        .partition(|d| put_set.contains(d));
    let from_producer: Vec<Vec<u8>> = from_producer.into_iter().map(<[u8]>::to_vec).collect();
    results.push(checks::stream_holds_what_was_put(&from_producer, &put));
    let mut cdc_repeats = 0;
    if cdc.is_some() {
        let (check, repeats) = cdc::changes_arrived(&from_cdc, committed);
        results.push(check);
        cdc_repeats = repeats;
    }
    let mover_set: BTreeSet<Vec<u8>> = movers.iter().map(|(_, d)| d.clone()).collect();
    let arrived: Vec<Vec<u8>> = checks::in_arrival_order(&stored)
        .into_iter()
        .map(|r| r.data.clone())
        .collect();
    let decoded = checks::decoded_events(&arrived, &mover_set);
    let expected = shardflow_e2e::shop::embedded(&decoded).await;
    let sqs = shardflow_testkit::sqs();
    let mut bodies = monitor.receipts.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let receipts_deadline = Instant::now() + Duration::from_secs(60);
    while bodies.len() < expected.receipts.len() && Instant::now() < receipts_deadline {
        shardflow_e2e::shop::drain_queue(&sqs, &receipts_queue, &mut bodies).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    shardflow_e2e::shop::drain_queue(&sqs, &receipts_queue, &mut bodies).await;
    let (receipts_check, duplicates) = checks::receipts_match(&bodies, &expected.receipts);
    results.push(receipts_check);
    results.push(revenue_settled(&platform, &expected.revenue, Duration::from_secs(args.drain_timeout)).await);
    let dependent = shardflow_e2e::shop::interleaving_dependent(&decoded);
    let (enriched_checks, enriched_repeats) = enriched_settled(
        &platform,
        &expected.enriched,
        &dependent,
        Duration::from_secs(args.drain_timeout),
    )
    .await?;
    results.extend(enriched_checks);
    let archive = shardflow_archive::ArchiveReader::new(
        shardflow_testkit::s3(),
        platform.output("ArchiveBucketName")?,
        "archive",
    );
    let (archived, repeated) = archive.read_stream(Some(&stream), None).await?;
    let archived: Vec<(String, String)> = archived.into_iter().map(|r| (r.shard_id, r.sequence_number)).collect();
    let stored_ids: Vec<(String, String)> = stored
        .iter()
        .map(|r| (r.shard_id.clone(), r.sequence_number.clone()))
        .collect();
    results.push(checks::archive_matches(&archived, repeated, &stored_ids));
    let mut letters = Vec::new();
    shardflow_e2e::shop::drain_queue(&sqs, &platform.output("DeadLetterQueueUrl")?, &mut letters).await;
    let dead_letters: Vec<shardflow_stage::DeadLetter> =
        letters.iter().filter_map(|b| serde_json::from_str(b).ok()).collect();
    // the stages that decode the input (archive stores bytes; revenue-shuffled reads the shuffle)
    let decoding: Vec<String> = readers.iter().filter(|s| s.as_str() != "archive").cloned().collect();
    // order-enrich allows no lateness: a row the embedded runner's one watermark had passed may be
    // late deployed too (or joined: such sessions are not compared)
    let behind: usize = dependent.values().map(Vec::len).sum();
    let late_allowed = BTreeMap::from([("order-enrich-shuffled".to_owned(), behind)]);
    results.push(checks::dead_letters_match(
        &dead_letters,
        &malformed,
        &decoding,
        &late_allowed,
    ));
    let mut failed_batches = Vec::new();
    shardflow_e2e::shop::drain_queue(&sqs, &platform.output("FailedBatchesQueueUrl")?, &mut failed_batches).await;
    results.push(Check::new(
        "Lambda skipped no batch (FailedBatches queue empty)",
        failed_batches.is_empty(),
        format!("{} messages", failed_batches.len()),
    ));
    let first_fault_ms = faults
        .first()
        .map_or(feed_ms, |f| u64::try_from(f.at.as_millis()).unwrap_or(u64::MAX));
    let normal = checks::normal_iterator_age(&samples, first_fault_ms, Duration::from_secs(10));
    let recoveries = checks::recovery_times(&faults, &samples, normal);
    let last_recovery = recoveries.last().copied().flatten();
    let limit_ms = args.recovery_limit * 1000;
    results.push(Check::new(
        &format!(
            "iterator age back to normal (<= {:.1} s) within {} s of the last fault",
            normal as f64 / 1000.0,
            args.recovery_limit
        ),
        last_recovery.is_some_and(|ms| ms <= limit_ms),
        format!(
            "after the last fault: {}",
            last_recovery.map_or("never within the run".to_owned(), |ms| format!(
                "{:.1} s",
                ms as f64 / 1000.0
            ))
        ),
    ));
    results.push(checks::memory_flat(&samples, feed_ms));
    results.push(checks::state_bounded(&samples, feed_ms));
    results.push(Check::new(
        "every scheduled fault was carried out",
        injected.iter().all(|i| i.done),
        injected
            .iter()
            .filter(|i| !i.done)
            .map(|i| format!("{}: {}", i.fault.kind.name(), i.detail))
            .collect::<Vec<_>>()
            .join("; "),
    ));

    let mut faults_by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for i in &injected {
        *faults_by_kind.entry(i.fault.kind.name().to_owned()).or_default() += 1;
    }
    let report = report::Report {
        settings: BTreeMap::from([
            ("minutes".to_owned(), args.minutes.to_string()),
            ("rate".to_owned(), format!("{}/s", args.rate)),
            ("seed".to_owned(), args.seed.to_string()),
            ("stack".to_owned(), platform.stack.clone()),
            ("shards".to_owned(), args.shards.to_string()),
            ("shuffle shards".to_owned(), platform::SHUFFLE_SHARDS.to_string()),
            ("function timeout".to_owned(), format!("{} s", args.function_timeout)),
            (
                "through CDC".to_owned(),
                format!(
                    "the last {:.0} s: {} changes committed, {cdc_repeats} repeated by the reader",
                    cdc_feed.as_secs_f64(),
                    committed.len()
                ),
            ),
        ]),
        events_in: (put.len() + committed.len()) as u64,
        malformed_in: malformed.len() as u64,
        faults: injected.into_iter().zip(recoveries).collect(),
        faults_by_kind,
        proxy: proxy
            .counts()
            .into_iter()
            .map(|((service, what), n)| (format!("{service} {what}"), n))
            .collect(),
        function_processes_started: monitor.pids.lock().unwrap_or_else(PoisonError::into_inner).len() as u64,
        duplicates_delivered: duplicates,
        enriched_repeats,
        dead_letters: dead_letters.len(),
        normal_iterator_age_ms: normal,
        max_iterator_age_ms: samples.iter().map(checks::max_age).max().unwrap_or(0),
        drain_ms,
        stages: platform
            .running
            .iter()
            .map(|s| format!("{} ({})", s.stage, s.function))
            .collect(),
        paused: platform
            .paused
            .iter()
            .map(|(s, why)| format!("{} ({}): {why}", s.stage, s.function))
            .collect(),
        not_injected: NOT_INJECTED.iter().map(|s| (*s).to_owned()).collect(),
        checks: results,
        samples,
        wall_seconds: wall.elapsed().as_secs(),
    };
    let png = report.write(&args.out)?;
    println!("{}", report.markdown());
    println!(
        "report: {} (plot: {})",
        args.out.join("report.md").display(),
        png.map_or("no PNG: chromium missing, run scripts/chromium".to_owned(), |p| p
            .display()
            .to_string())
    );
    let known = |c: &Check| args.known_failure.iter().any(|k| c.name.contains(k.as_str()));
    let failed: Vec<&Check> = report.checks.iter().filter(|c| !c.passed).collect();
    for c in failed.iter().filter(|c| known(c)) {
        println!("known failure (--known-failure): {}: {}", c.name, c.detail);
    }
    let unexpected = failed.iter().filter(|c| !known(c)).count();
    println!(
        "soak: {} passed, {unexpected} failed",
        report.checks.len() - failed.len()
    );
    if unexpected > 0 {
        bail!("the soak failed {unexpected} check(s)");
    }
    Ok(())
}
