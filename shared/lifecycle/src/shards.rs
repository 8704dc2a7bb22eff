//! A stage's items in the state table: which shards have a checkpoint, at which `ver`.
//!
//! The table has no index by stage, so these read it with a strongly consistent `Scan` filtered
//! on the key (`pk` begins with `{stage}#`): every page of the table is read, only the stage's
//! items are returned. That costs read capacity in proportion to the table, which is fine for
//! operator commands; it also finds closed parent shards, which `ListShards` may no longer list.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};
use aws_sdk_dynamodb::Client;

use crate::error::LifecycleError;

/// `BatchWriteItem` takes at most 25 requests.
const MAX_BATCH_WRITE: usize = 25;

/// A shard's checkpoint item, as the scan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The shard id.
    pub shard: String,
    /// Its `ver`.
    pub version: u64,
    /// Its committed sequence number.
    pub sequence_number: Option<String>,
}

/// Refuses stage names that would make the key prefix ambiguous.
pub(crate) fn check_stage_name(stage: &str) -> Result<(), LifecycleError> {
    if stage.is_empty() || stage.contains('#') {
        return Err(LifecycleError::Invalid(format!(
            "stage name {stage:?} must be non-empty and without '#'"
        )));
    }
    Ok(())
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

pub(crate) fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

/// Every item of `stage` in `table` (`pk` begins with `{stage}#`), with the attributes of
/// `projection`, and, if `checkpoints_only`, only checkpoint items.
async fn scan_stage(
    client: &Client,
    table: &str,
    stage: &str,
    projection: &str,
    checkpoints_only: bool,
) -> Result<Vec<HashMap<String, AttributeValue>>, LifecycleError> {
    check_stage_name(stage)?;
    let mut items = Vec::new();
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    let filter = if checkpoints_only {
        "begins_with(pk, :prefix) AND sk = :checkpoint"
    } else {
        "begins_with(pk, :prefix)"
    };
    loop {
        let mut scan = client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .filter_expression(filter)
            .projection_expression(projection)
            .expression_attribute_values(":prefix", AttributeValue::S(format!("{stage}#")))
            .set_exclusive_start_key(start.take());
        if checkpoints_only {
            scan = scan.expression_attribute_values(":checkpoint", AttributeValue::S("checkpoint".into()));
        }
        let out = scan
            .send()
            .await
            .map_err(|e| LifecycleError::aws("DynamoDB", "Scan", e))?;
        items.extend(out.items.unwrap_or_default());
        match out.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok(items),
        }
    }
}

/// The checkpoint items of every shard of `stage`, sorted by shard id.
pub async fn stage_checkpoints(
    client: &Client,
    table: &str,
    stage: &str,
) -> Result<Vec<StoredCheckpoint>, LifecycleError> {
    let prefix = format!("{stage}#shard#");
    let mut shards: Vec<StoredCheckpoint> = scan_stage(client, table, stage, "pk, ver, sequence_number", true)
        .await?
        .into_iter()
        .filter_map(|item| {
            let shard = text(&item, "pk")?.strip_prefix(&prefix)?.to_owned();
            Some(StoredCheckpoint {
                shard,
                version: number(&item, "ver").unwrap_or(0),
                sequence_number: text(&item, "sequence_number"),
            })
        })
        .collect();
    shards.sort_by(|a, b| a.shard.cmp(&b.shard));
    Ok(shards)
}

/// How many items (checkpoints and slots) `stage` has in `table`.
pub async fn stage_has_state(client: &Client, table: &str, stage: &str) -> Result<usize, LifecycleError> {
    Ok(scan_stage(client, table, stage, "pk", false).await?.len())
}

/// The `ver` of `shard`'s checkpoint item (0 when it has none), read strongly consistent.
pub(crate) async fn checkpoint_version(
    client: &Client,
    table: &str,
    stage: &str,
    shard: &str,
) -> Result<u64, LifecycleError> {
    let out = client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(format!("{stage}#shard#{shard}")))
        .key("sk", AttributeValue::S("checkpoint".into()))
        .projection_expression("ver")
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| LifecycleError::aws("DynamoDB", "GetItem", e))?;
    Ok(out.item.as_ref().and_then(|i| number(i, "ver")).unwrap_or(0))
}

/// Deletes every item of `stage` (and, best effort, the S3 objects its slot items point to).
/// Returns the number of items deleted.
pub(crate) async fn delete_stage(
    client: &Client,
    s3: &aws_sdk_s3::Client,
    table: &str,
    stage: &str,
) -> Result<usize, LifecycleError> {
    let items = scan_stage(client, table, stage, "pk, sk, s3_bucket, s3_key", false).await?;
    for item in &items {
        if let (Some(bucket), Some(key)) = (text(item, "s3_bucket"), text(item, "s3_key")) {
            if let Err(e) = s3.delete_object().bucket(&bucket).key(&key).send().await {
                tracing::warn!(%bucket, %key, error = %LifecycleError::aws("S3", "DeleteObject", e),
                    "state object of the overwritten stage not deleted (the lifecycle rule expires it)");
            }
        }
    }
    let mut requests: Vec<WriteRequest> = Vec::with_capacity(items.len());
    for item in &items {
        let key: HashMap<String, AttributeValue> = item
            .iter()
            .filter(|(k, _)| k.as_str() == "pk" || k.as_str() == "sk")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let delete = DeleteRequest::builder()
            .set_key(Some(key))
            .build()
            .map_err(|e| LifecycleError::aws("DynamoDB", "BatchWriteItem", e))?;
        requests.push(WriteRequest::builder().delete_request(delete).build());
    }
    let deleted = requests.len();
    while !requests.is_empty() {
        let chunk: Vec<WriteRequest> = requests.drain(..requests.len().min(MAX_BATCH_WRITE)).collect();
        let out = client
            .batch_write_item()
            .request_items(table, chunk)
            .send()
            .await
            .map_err(|e| LifecycleError::aws("DynamoDB", "BatchWriteItem", e))?;
        if let Some(unprocessed) = out.unprocessed_items.and_then(|mut u| u.remove(table)) {
            if !unprocessed.is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                requests.extend(unprocessed);
            }
        }
    }
    Ok(deleted)
}
