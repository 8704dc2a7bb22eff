//! The cutover item of a deployment in its DynamoDB control table: read, and switched
//! conditionally on its version.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::cutover::{Colour, ColourError, Cutover};

/// The cutover item of one deployment in a control table (string keys `pk`, `sk`, as the state
/// table's).
#[derive(Debug, Clone)]
pub struct ColourControl {
    client: aws_sdk_dynamodb::Client,
    table: String,
    deployment: String,
}

impl ColourControl {
    /// The cutover of `deployment` in `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: &str, deployment: &str) -> Self {
        ColourControl {
            client,
            table: table.to_owned(),
            deployment: deployment.to_owned(),
        }
    }

    fn key(&self) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (
                "pk".to_owned(),
                AttributeValue::S(format!("deployment#{}", self.deployment)),
            ),
            ("sk".to_owned(), AttributeValue::S("cutover".to_owned())),
        ])
    }

    fn dynamodb_error(&self, operation: &'static str, e: impl std::fmt::Display) -> ColourError {
        ColourError::DynamoDb {
            operation,
            table: self.table.clone(),
            message: e.to_string(),
        }
    }

    /// The current cutover (blue owns everything while no switch happened).
    pub async fn load(&self) -> Result<Cutover, ColourError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.dynamodb_error("GetItem", aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
        let Some(item) = out.item() else {
            return Ok(Cutover::default());
        };
        let malformed = |reason: String| ColourError::Malformed {
            deployment: self.deployment.clone(),
            reason,
        };
        let json = item
            .get("cutover")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| malformed("no cutover attribute".into()))?;
        let cutover: Cutover = serde_json::from_str(json).map_err(|e| malformed(e.to_string()))?;
        if cutover.segments.is_empty() {
            return Err(malformed("no segment".into()));
        }
        Ok(cutover)
    }

    /// Makes `colour` own results from `cut_ms` on, if the cutover is still `current`.
    pub async fn switch(&self, current: &Cutover, colour: Colour, cut_ms: i64) -> Result<Cutover, ColourError> {
        let next = current.switched(colour, cut_ms)?;
        let json = serde_json::to_string(&next).map_err(|e| self.dynamodb_error("PutItem", e))?;
        let mut item = self.key();
        item.insert("cutover".to_owned(), AttributeValue::S(json));
        item.insert("ver".to_owned(), AttributeValue::N(next.version.to_string()));
        item.insert("live".to_owned(), AttributeValue::S(colour.as_str().to_owned()));
        let request = self.client.put_item().table_name(&self.table).set_item(Some(item));
        let request = if current.version == 0 {
            request.condition_expression("attribute_not_exists(pk)")
        } else {
            request
                .condition_expression("ver = :v")
                .expression_attribute_values(":v", AttributeValue::N(current.version.to_string()))
        };
        match request.send().await {
            Ok(_) => Ok(next),
            Err(e) => {
                let conditional = e
                    .as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception());
                if conditional {
                    Err(ColourError::Conflict(self.deployment.clone()))
                } else {
                    Err(self.dynamodb_error("PutItem", aws_sdk_dynamodb::error::DisplayErrorContext(e)))
                }
            }
        }
    }
}
