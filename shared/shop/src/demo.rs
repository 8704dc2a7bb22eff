//! `shardflow demo`.

use clap::Args;

/// Arguments of `shardflow demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {}

/// Runs `shardflow demo`.
pub fn run(_args: DemoArgs) -> anyhow::Result<()> {
    anyhow::bail!("shardflow demo is not implemented yet")
}
