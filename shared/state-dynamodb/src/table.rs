//! The state table's schema.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TimeToLiveSpecification,
    TimeToLiveStatus,
};
use aws_sdk_dynamodb::Client;

use crate::error::StoreError;

/// Creates the state table (`pk` hash key, `sk` range key, both strings, on-demand billing) if it
/// does not exist, and enables TTL on [`crate::TTL_ATTRIBUTE`] (`expires_at`). The infrastructure
/// templates declare the same schema and TTL specification.
pub async fn create_state_table(client: &Client, table: &str) -> Result<(), StoreError> {
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(|e| StoreError::dynamodb("CreateTable", e))
    };
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| StoreError::dynamodb("CreateTable", e))
    };
    let result = client
        .create_table()
        .table_name(table)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("sk")?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match result {
        Ok(_) => {}
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => return Err(StoreError::dynamodb("CreateTable", e)),
    }
    enable_ttl(client, table).await
}

/// Enables TTL on `expires_at` unless it is enabled (or being enabled) already.
async fn enable_ttl(client: &Client, table: &str) -> Result<(), StoreError> {
    let described = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| StoreError::dynamodb("DescribeTimeToLive", e))?;
    if let Some(d) = described.time_to_live_description() {
        if matches!(
            d.time_to_live_status(),
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
        ) && d.attribute_name() == Some(crate::TTL_ATTRIBUTE)
        {
            return Ok(());
        }
    }
    let spec = TimeToLiveSpecification::builder()
        .attribute_name(crate::TTL_ATTRIBUTE)
        .enabled(true)
        .build()
        .map_err(|e| StoreError::dynamodb("UpdateTimeToLive", e))?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(spec)
        .send()
        .await
        .map_err(|e| StoreError::dynamodb("UpdateTimeToLive", e))?;
    Ok(())
}
