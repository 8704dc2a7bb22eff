//! The `shardflow` command line.

use clap::{Parser, Subcommand};

/// Event-time streaming pipelines on AWS Lambda and Kinesis, runnable embedded.
#[derive(Debug, Parser)]
#[command(name = "shardflow", version, about)]
struct Cli {
    /// Log filter (tracing's env-filter syntax), e.g. `info` or `shardflow_engine=debug`.
    #[arg(long, global = true, env = "SHARDFLOW_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the seed platform's pipelines on a generated online-shop CDC stream (embedded, no cloud).
    Demo(shardflow_shop::demo::DemoArgs),
    /// Run a Nexmark query over a JSON-lines file of the bench generator.
    Nexmark(shardflow_nexmark::cli::NexmarkArgs),
    // its description is the cdc crate's (`shardflow_cdc::cli::ABOUT`), next to `--format`
    Cdc(shardflow_cdc::cli::CdcArgs),
    /// Generate a workload (the online shop's CDC stream, Nexmark) into a Kinesis stream or a file.
    Gen(shardflow_gen::cli::GenArgs),
    /// Replay a stream's archive (written by the `archive` stage to S3) through the shop's
    /// pipelines as a bounded stream, with the live stages' code path.
    Replay(shardflow_lifecycle::replay::command::ReplayArgs),
    /// Blue/green: make a colour the live writer from a cut on (results of windows starting at
    /// or after it).
    Switch(shardflow_bluegreen::commands::SwitchArgs),
    /// Blue/green: make the colour live before the last switch live again.
    Rollback(shardflow_bluegreen::commands::RollbackArgs),
    /// Blue/green: compare a colour's shadow revenue with the live revenue over closed windows.
    Validate(shardflow_bluegreen::commands::ValidateArgs),
    /// Savepoints of a Lambda stage's state: create one in S3, restore one into a (new) stage,
    /// check that one restores into a pipeline of this build.
    Savepoint(shardflow_lifecycle::command::savepoint::SavepointArgs),
    /// Per shard of a Lambda stage: checkpointed position, watermark and lag, state, dead letters.
    Status(shardflow_lifecycle::command::status::StatusArgs),
    /// What a platform costs a month on AWS (per stage, stream and service) from measured
    /// per-batch counts, beside Managed Flink and Lambda tumbling windows; prices from a dated
    /// table in the repository, never fetched.
    Cost(shardflow_cost::command::CostArgs),
    /// An application's CloudFormation template from its description (a JSON file, or a
    /// function binary of the application run with `--describe`): functions, least-privilege
    /// roles, streams, state, sinks' resources, dead-letter queues and alarms.
    Synth(shardflow_synth::command::SynthArgs),
    /// A live web page of a deployed pipeline: stages, streams and shards, watermarks and lag,
    /// iterator age, rates, late data and dead letters, state, commits, errors, the last hour
    /// charted, and highlights of what needs a look.
    Dashboard(shardflow_dashboard::command::DashboardArgs),
    /// A pipeline project of your own: a Cargo workspace with a pipeline in four steps, its
    /// function, a golden test on the embedded runner and a README; it builds and passes as is.
    New(shardflow_project::scaffold::NewArgs),
    /// Build a project's functions, synthesize its template and deploy it to LocalStack or AWS;
    /// prints the stack's outputs and how to feed it.
    Deploy(shardflow_project::deploy::DeployArgs),
    /// Delete the stack `deploy` made (its buckets emptied first).
    Destroy(shardflow_project::deploy::DestroyArgs),
    /// Put JSON lines onto a stream (default: the deployed project's input stream).
    Put(shardflow_project::put::PutArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log)?)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Demo(args) => shardflow_shop::demo::run(args),
        Command::Nexmark(args) => shardflow_nexmark::cli::run(args),
        Command::Cdc(args) => shardflow_cdc::cli::run(args),
        Command::Gen(args) => shardflow_gen::cli::run(args),
        Command::Replay(args) => {
            shardflow_lifecycle::replay::command::run(args, &shardflow_shop_stages::replay_targets())
        }
        Command::Switch(args) => shardflow_bluegreen::commands::switch(args),
        Command::Rollback(args) => shardflow_bluegreen::commands::rollback(args),
        Command::Validate(args) => shardflow_bluegreen::commands::validate(args),
        Command::Savepoint(args) => {
            shardflow_lifecycle::command::savepoint::run(args, shardflow_shop_stages::check_targets())
        }
        Command::Status(args) => shardflow_lifecycle::command::status::run(args),
        Command::Cost(args) => Ok(shardflow_cost::command::run(args)?),
        Command::Synth(args) => Ok(shardflow_synth::command::run(args)?),
        Command::Dashboard(args) => shardflow_dashboard::command::run(args, dashboard_windows()),
        Command::New(args) => Ok(shardflow_project::scaffold::run(args)?),
        Command::Deploy(args) => Ok(shardflow_project::deploy::run(args)?),
        Command::Destroy(args) => Ok(shardflow_project::deploy::destroy(args)?),
        Command::Put(args) => Ok(shardflow_project::put::run(args)?),
    }
}

/// The windows of the shop's stages by pipeline (`order_enrich`) and by deployed stage name: the
/// pipeline's (`order-enrich`) and the two halves of its split deployment (`order-enrich-keyby`,
/// `order-enrich-shuffled`; every keyed shop pipeline but receipts runs over a shuffle).
fn dashboard_windows() -> std::collections::BTreeMap<String, i64> {
    let mut windows = shardflow_shop::pipelines::windows();
    let deployed: Vec<(String, i64)> = windows
        .iter()
        .flat_map(|(pipeline, window)| {
            let stage = pipeline.replace('_', "-");
            [
                (format!("{stage}-keyby"), *window),
                (format!("{stage}-shuffled"), *window),
                (stage, *window),
            ]
        })
        .collect();
    windows.extend(deployed);
    windows
}
