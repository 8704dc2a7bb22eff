//! The `receipts` stage: completed purchases to one SNS message each.

use serde::Serialize;
use shardflow_bluegreen::{blue_green, ColourGate};
use shardflow_connectors::{DeadLetterDestination, SnsSink, SnsSinkConfig};
use shardflow_engine::Pipeline;
use shardflow_lambda::{
    IntervalLimits, PartitionKeying, Stage, StageEnv, StageError, SNS_FIFO_DEDUPLICATION_WINDOW_MS,
};
use shardflow_schemas::ChangeEvent;
use shardflow_shop::pipelines::{Receipt, ReceiptNext};
use shardflow_stage::required_var;

use crate::{ShopDecoder, StageSetupError};

/// The topic receipts are published to.
pub const TOPIC_ARN_ENV: &str = "SHARDFLOW_TOPIC_ARN";
/// The topic the receipts this colour does not own are published to (required with a control
/// table).
pub const SHADOW_TOPIC_ARN_ENV: &str = "SHARDFLOW_SHADOW_TOPIC_ARN";

/// The `receipts` stage as deployed.
pub type ReceiptsStage = ReceiptsStageOf<Receipt>;

/// The `receipts` stage running the next release of its pipeline
/// ([`shardflow_shop::pipelines::receipts_next`]), publishing [`ReceiptNext`]s; deployed over
/// `receipts` from its savepoint (the function `receipts-next`, `SHARDFLOW_FUNCTION_CODE` of
/// `localstack/deploy`).
pub type ReceiptsNextStage = ReceiptsStageOf<ReceiptNext>;

/// A receipts stage publishing receipts of type `R`.
pub type ReceiptsStageOf<R> =
    Stage<ChangeEvent, R, ShopDecoder, ColourGate<SnsSink<R>, SnsSink<R>>, DeadLetterDestination>;

/// The `receipts` stage of this function's environment. On a FIFO topic a receipt's message group
/// is its customer, so one customer's receipts stay in order, and the stage refuses a checkpoint
/// interval that, with a minute for retries, outlasts SNS FIFO's 5-minute deduplication window
/// ([`shardflow_lambda::CheckpointInterval::check`]): a result re-emitted after a crash must
/// still be recognised as a repeat.
pub async fn receipts() -> Result<ReceiptsStage, StageSetupError> {
    receipts_stage(shardflow_shop::pipelines::receipts(), |r| r.customer_id).await
}

/// [`receipts()`] with the next release of the pipeline
/// ([`shardflow_shop::pipelines::receipts_next`]): the same environment, topics and checks; its
/// state is `receipts`' (same stage, same pipeline name), migrated on restore.
pub async fn receipts_next() -> Result<ReceiptsNextStage, StageSetupError> {
    receipts_stage(shardflow_shop::pipelines::receipts_next(), |r| r.customer_id).await
}

/// The receipts stage running `pipeline`, with `customer` naming a receipt's customer (its
/// message group on a FIFO topic).
async fn receipts_stage<R>(
    pipeline: Pipeline<ChangeEvent, R>,
    customer: fn(&R) -> i64,
) -> Result<ReceiptsStageOf<R>, StageSetupError>
where
    R: Serialize + Clone + Send + Sync + 'static,
{
    let env = StageEnv::load().await?;
    let topic = required_var(TOPIC_ARN_ENV)?;
    let topic_arn = topic.clone();
    let sns = |topic: String| {
        SnsSink::new(
            aws_sdk_sns::Client::new(&env.sdk),
            SnsSinkConfig::<R>::new(topic).message_group(move |o| format!("customer-{}", customer(&o.value))),
        )
    };
    let sink = match blue_green(&env.sdk)? {
        Some((colour, control)) => {
            ColourGate::gated(colour, control, sns(topic), sns(required_var(SHADOW_TOPIC_ARN_ENV)?))
        }
        None => ColourGate::single(sns(topic)),
    };
    let dead_letters = DeadLetterDestination::from_env(&env.sdk)?;
    let stage = env.stage(pipeline, ShopDecoder::new(), sink, dead_letters, keying())?;
    if !SnsSinkConfig::<R>::new(topic_arn).is_fifo() {
        return Ok(stage);
    }
    let limits = IntervalLimits::from_env()
        .map_err(StageError::Unsupported)?
        .with_dedup_window(SNS_FIFO_DEDUPLICATION_WINDOW_MS);
    Ok(stage.check_interval(&limits)?)
}

/// The pipeline keys by order id, and an order's changes have the partition key `orders:<id>`:
/// after a split each child finds its own orders.
fn keying() -> PartitionKeying {
    PartitionKeying::Derived(std::sync::Arc::new(|key: &[u8]| {
        postcard::from_bytes::<i64>(key).ok().map(|id| format!("orders:{id}"))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_key_maps_to_its_changes_partition_key() {
        let key = postcard::to_allocvec(&42_i64).unwrap();
        assert_eq!(keying().partition_key_of(&key).as_deref(), Some("orders:42"));
    }
}
