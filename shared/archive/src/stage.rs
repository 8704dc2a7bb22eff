//! The `archive` stage as deployed: any stream to S3, configured from the function's environment.

use crate::{archive_pipeline, ArchiveDecoder, ArchiveSink, ArchiveSinkConfig, ArchivedRecord};
use shardflow_connectors::DeadLetterDestination;
use shardflow_lambda::{PartitionKeying, Stage, StageEnv, StageSetupError};
use shardflow_stage::{optional_var, required_var};

/// The archive's bucket.
pub const ARCHIVE_BUCKET_ENV: &str = "SHARDFLOW_ARCHIVE_BUCKET";
/// The archive's key prefix (default `archive`).
pub const ARCHIVE_PREFIX_ENV: &str = "SHARDFLOW_ARCHIVE_PREFIX";

/// The `archive` stage as deployed.
pub type ArchiveStage = Stage<ArchivedRecord, ArchivedRecord, ArchiveDecoder, ArchiveSink, DeadLetterDestination>;

/// The `archive` stage of this function's environment. It is stateless (its checkpoint is its
/// position), so it is exact on any number of shards and through splits and merges.
pub async fn stage() -> Result<ArchiveStage, StageSetupError> {
    let env = StageEnv::load().await?;
    let bucket = required_var(ARCHIVE_BUCKET_ENV)?;
    let prefix = optional_var(ARCHIVE_PREFIX_ENV).unwrap_or_else(|| "archive".to_owned());
    let sink = ArchiveSink::new(
        aws_sdk_s3::Client::new(&env.sdk),
        ArchiveSinkConfig::new(bucket, prefix),
    );
    let dead_letters = DeadLetterDestination::from_env(&env.sdk)?;
    Ok(env.stage(
        archive_pipeline(),
        ArchiveDecoder,
        sink,
        dead_letters,
        PartitionKeying::KeyIsPartitionKey,
    )?)
}
