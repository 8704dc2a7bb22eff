//! `shardflow savepoint create|restore|check`: a stage's state to S3 and back (see
//! `shardflow-lifecycle` for the layout and the consistency barrier), and a dry-run restore of a
//! pipeline of this build against a savepoint.

use std::time::Duration;

use crate::{
    check_savepoint, check_stage, create_savepoint, restore_savepoint, CheckOptions, CheckTarget, EventSourceBarrier,
    LiveStage, RestoreExpectations, RestoreOptions, S3Location, SavepointOptions, ShuffleTarget,
};
use anyhow::Context;

use super::clients::{runtime, Clients};

/// Arguments of `shardflow savepoint`.
#[derive(Debug, clap::Args)]
pub struct SavepointArgs {
    #[command(subcommand)]
    action: SavepointAction,
}

#[derive(Debug, clap::Subcommand)]
enum SavepointAction {
    /// Write a consistent snapshot of a stage's state (every shard's checkpoint and key groups)
    /// to S3, with a manifest.
    Create(CreateArgs),
    /// Seed a (new) stage's state from a savepoint.
    Restore(RestoreArgs),
    /// Dry-run a restore of one of this build's pipelines from a savepoint: per operator,
    /// restored (from which id), starts empty or dropped; the format, pipeline and key-group
    /// checks. Exits non-zero if the restore would fail or lose state silently.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// The savepoint, `s3://bucket/prefix`.
    #[arg(long, required_unless_present = "stage", conflicts_with = "stage")]
    savepoint: Option<String>,
    /// Instead of a savepoint: a live stage's committed checkpoints, by its name in the state
    /// table (with --table).
    #[arg(long, requires = "table")]
    stage: Option<String>,
    /// The live stage's state table.
    #[arg(long, requires = "stage")]
    table: Option<String>,
    /// The live stage's spill bucket (if it spilled large key groups).
    #[arg(long, requires = "stage")]
    bucket: Option<String>,
    /// The pipeline of this build to check against, by the name of its stage (e.g. `receipts`,
    /// `revenue`, `order-enrich`).
    #[arg(long)]
    pipeline: String,
    /// Dropped state (of operators the pipeline no longer has) does not fail the check.
    #[arg(long)]
    allow_dropped_state: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct CreateArgs {
    /// The stage (its name in the state table).
    #[arg(long)]
    stage: String,
    /// The state table.
    #[arg(long)]
    table: String,
    /// The bucket to write the savepoint to.
    #[arg(long)]
    bucket: String,
    /// The key prefix (default `savepoints/{stage}/{epoch ms}`); must not hold a savepoint yet.
    #[arg(long)]
    prefix: Option<String>,
    /// The stage's function: its Kinesis event source mappings are disabled during the read and
    /// enabled again afterwards, so the savepoint is one cut of the whole stage.
    #[arg(long)]
    function: Option<String>,
    /// Leave the mappings disabled (the stage is being replaced by the restored one).
    #[arg(long, requires = "function")]
    leave_disabled: bool,
    /// With --function: seconds without any checkpoint change before the read starts.
    #[arg(long, default_value_t = 10)]
    quiet_secs: u64,
    /// With --function: give up if the checkpoints keep changing this long.
    #[arg(long, default_value_t = 960)]
    quiet_timeout_secs: u64,
    /// Reads of a shard that committed during its read before giving up.
    #[arg(long, default_value_t = 5)]
    max_attempts: u32,
    /// A version label of the pipeline's code, recorded in the manifest.
    #[arg(long)]
    pipeline_version: Option<String>,
    /// Print the manifest as JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct RestoreArgs {
    /// The savepoint, `s3://bucket/prefix`.
    #[arg(long)]
    savepoint: String,
    /// The stage to seed.
    #[arg(long)]
    stage: String,
    /// Its state table.
    #[arg(long)]
    table: String,
    /// The spill bucket of the stage (needed if a key group is over the inline limit).
    #[arg(long)]
    bucket: Option<String>,
    /// Refuse a savepoint of another pipeline.
    #[arg(long)]
    expect_pipeline: Option<String>,
    /// Refuse a savepoint of another pipeline version label.
    #[arg(long)]
    expect_pipeline_version: Option<String>,
    /// Refuse a savepoint of another key-group count.
    #[arg(long)]
    expect_key_groups: Option<u16>,
    /// Delete the stage's existing state first instead of refusing.
    #[arg(long)]
    force: bool,
    /// The pipeline of this build the stage will run, by the name of its stage (as `check`
    /// takes it): every shard is dry-run restored into it first, and state of operators it does
    /// not have refuses the restore.
    #[arg(long)]
    pipeline: Option<String>,
    /// With --pipeline: leave out the state of operators the pipeline does not have instead of
    /// refusing.
    #[arg(long, requires = "pipeline")]
    allow_dropped_state: bool,
    /// For a shuffle's downstream stage (e.g. revenue-shuffled) that will read another shuffle
    /// stream than the saved stage did (a blue/green copy's own): the new stream's name or ARN.
    /// Each shard is restored under the open shard owning the same key groups, without its
    /// position; refused unless the shard layouts match.
    #[arg(long)]
    shuffle_stream: Option<String>,
}

/// Runs `shardflow savepoint`; `check` and `restore --pipeline` take their pipeline from
/// `targets`.
pub fn run(args: SavepointArgs, targets: Vec<CheckTarget>) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let clients = Clients::from_env().await;
        match args.action {
            SavepointAction::Create(a) => create(&clients, a).await,
            SavepointAction::Restore(a) => restore(&clients, a, targets).await,
            SavepointAction::Check(a) => check(&clients, a, targets).await,
        }
    })
}

/// The target named `name`, or an error listing the known ones.
fn find_target(targets: Vec<CheckTarget>, name: &str) -> anyhow::Result<CheckTarget> {
    let known: Vec<String> = targets.iter().map(|t| t.name().to_owned()).collect();
    targets
        .into_iter()
        .find(|t| t.name() == name)
        .ok_or_else(|| anyhow::anyhow!("unknown pipeline {name:?}; this build has {known:?}"))
}

async fn check(clients: &Clients, a: CheckArgs, targets: Vec<CheckTarget>) -> anyhow::Result<()> {
    let target = find_target(targets, &a.pipeline)?;
    let options = CheckOptions {
        allow_dropped_state: a.allow_dropped_state,
        ..CheckOptions::default()
    };
    let report = match (&a.savepoint, &a.stage, &a.table) {
        (Some(savepoint), _, _) => check_savepoint(&clients.s3, &S3Location::parse(savepoint)?, &target, options)
            .await
            .with_context(|| format!("check of {savepoint} against {}", a.pipeline))?,
        (None, Some(stage), Some(table)) => {
            let live = LiveStage {
                stage: stage.clone(),
                table: table.clone(),
                spill_bucket: a.bucket.clone(),
            };
            check_stage(&clients.dynamodb, &clients.s3, &live, &target, options)
                .await
                .with_context(|| format!("check of stage {stage} against {}", a.pipeline))?
        }
        _ => anyhow::bail!("give --savepoint, or --stage and --table"),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(report.ensure_passed()?)
}

async fn create(clients: &Clients, a: CreateArgs) -> anyhow::Result<()> {
    let prefix = a.prefix.clone().unwrap_or_else(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("savepoints/{}/{ms}", a.stage)
    });
    let mut options = SavepointOptions::new(&a.stage, &a.table, S3Location::new(&a.bucket, &prefix));
    options.pipeline_version = a.pipeline_version;
    options.barrier = a
        .function
        .as_deref()
        .map(|f| EventSourceBarrier::new(clients.lambda.clone(), f));
    options.leave_disabled = a.leave_disabled;
    options.quiet_period = Duration::from_secs(a.quiet_secs);
    options.quiet_timeout = Duration::from_secs(a.quiet_timeout_secs);
    options.max_attempts = a.max_attempts;
    let report = create_savepoint(&clients.dynamodb, &clients.s3, &options)
        .await
        .with_context(|| format!("savepoint of stage {:?}", a.stage))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report.manifest)?);
        return Ok(());
    }
    let m = &report.manifest;
    println!(
        "savepoint {}: stage {} (pipeline {}, {} key groups), {} shard(s), {} key group(s), {} state bytes, \
         {} bytes written, {} in {:.2} s",
        report.location,
        m.stage,
        m.pipeline,
        m.max_key_groups,
        m.shards.len(),
        m.shards.iter().map(|s| s.key_groups).sum::<usize>(),
        m.state_bytes(),
        report.bytes_written,
        if m.consistency.single_cut {
            "one cut of the whole stage"
        } else {
            "each shard at its own batch boundary"
        },
        report.elapsed.as_secs_f64()
    );
    for s in &m.shards {
        println!(
            "  {}  ver {}  sequence {}",
            s.shard,
            s.version,
            s.sequence_number.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

async fn restore(clients: &Clients, a: RestoreArgs, targets: Vec<CheckTarget>) -> anyhow::Result<()> {
    let mut options = RestoreOptions::new(S3Location::parse(&a.savepoint)?, &a.stage, &a.table);
    options.spill_bucket = a.bucket;
    options.force = a.force;
    options.shuffle_target = a
        .shuffle_stream
        .as_deref()
        .map(|stream| ShuffleTarget::new(clients.kinesis.clone(), stream));
    if let Some(name) = &a.pipeline {
        options.pipeline = Some(std::sync::Arc::new(find_target(targets, name)?));
        options.allow_dropped_state = a.allow_dropped_state;
    }
    options.expect = RestoreExpectations {
        pipeline: a.expect_pipeline,
        pipeline_version: a.expect_pipeline_version,
        max_key_groups: a.expect_key_groups,
    };
    let report = restore_savepoint(&clients.dynamodb, &clients.s3, &options)
        .await
        .with_context(|| format!("restore of {} into stage {:?}", a.savepoint, a.stage))?;
    println!(
        "stage {} in table {} seeded from {} (stage {}, pipeline {}): {} shard(s), {} item(s), {} state bytes, \
         {} spilled, {} old item(s) deleted, in {:.2} s",
        a.stage,
        a.table,
        a.savepoint,
        report.manifest.stage,
        report.manifest.pipeline,
        report.manifest.shards.len(),
        report.items_written,
        report.bytes_written,
        report.objects_written,
        report.items_deleted,
        report.elapsed.as_secs_f64()
    );
    if options.shuffle_target.is_some() {
        println!(
            "start its event source mapping at TRIM_HORIZON of the new shuffle stream: it holds only what the \
             restored upstream stage sends"
        );
        return Ok(());
    }
    match report.manifest.resume_at_ms() {
        Some(ms) => println!(
            "start its event source mappings AT_TIMESTAMP {} (template: StartingPosition=AT_TIMESTAMP \
             StartingPositionTimestamp={}), or at TRIM_HORIZON: records the savepoint covers are skipped by \
             sequence number",
            chrono::DateTime::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |t| t.to_rfc3339()),
            ms / 1000
        ),
        None => println!(
            "start its event source mappings at TRIM_HORIZON (the savepoint does not record its shards' arrival \
             times): records the savepoint covers are skipped by sequence number"
        ),
    }
    Ok(())
}
