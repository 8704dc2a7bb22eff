//! `shardflow nexmark`.

use clap::Args;

/// Arguments of `shardflow nexmark`.
#[derive(Debug, Args)]
pub struct NexmarkArgs {}

/// Runs `shardflow nexmark`.
pub fn run(_args: NexmarkArgs) -> anyhow::Result<()> {
    anyhow::bail!("shardflow nexmark is not implemented yet")
}
