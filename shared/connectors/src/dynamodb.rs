//! Results upserted into a DynamoDB table, one item per key and window holding its latest pane.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use shardflow_engine::Output;
use shardflow_stage::{ResultSink, SinkError};
use tracing::{debug, info_span, Instrument};

use crate::error::{sdk_error, sink_error};

/// The item's partition key attribute (a string: the result's key).
pub const PARTITION_KEY_ATTRIBUTE: &str = "pk";
/// The item's sort key attribute (a string: the result's window, see [`SortKey`]).
pub const SORT_KEY_ATTRIBUTE: &str = "sk";
/// The attribute holding the id of the result that wrote the item (32 hex digits).
pub const ITEM_RESULT_ID_ATTRIBUTE: &str = "shardflow_result_id";
/// The attribute holding the pane index of the result that wrote the item (0 without a window).
pub const PANE_INDEX_ATTRIBUTE: &str = "shardflow_pane_index";
/// The attribute holding the pane's timing (`early`, `on_time`, `late`), for window results.
pub const PANE_TIMING_ATTRIBUTE: &str = "shardflow_pane_timing";
/// The attribute holding the window's first ms, for window results.
pub const WINDOW_START_ATTRIBUTE: &str = "shardflow_window_start_ms";
/// The attribute holding the first ms after the window, for window results.
pub const WINDOW_END_ATTRIBUTE: &str = "shardflow_window_end_ms";
/// DynamoDB's limit on an item's size: 400 KB (attribute names and values).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// The sort key of a result without a window.
const NO_WINDOW: &str = "-";

/// A result's partition key: a function of its value.
pub type ItemKeyFn<Out> = Arc<dyn Fn(&Out) -> String + Send + Sync>;

/// Which window a result's item stands for: its sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// The whole window, `{start}-{end}` (ms, zero-padded to 16 digits so that items sort by
    /// time): one item per key and window. Right for fixed windows.
    #[default]
    Window,
    /// The window's start only, zero-padded to 16 digits: a session that grows at its end keeps
    /// one item (a merged session keeps counting its panes, so its later panes replace the
    /// earlier ones); a session that grows at its start begins a new item.
    WindowStart,
}

/// Where and how a [`DynamoDbSink`] writes.
pub struct DynamoDbSinkConfig<Out> {
    /// The sink's name in errors and spans.
    pub name: String,
    /// The table: partition key [`PARTITION_KEY_ATTRIBUTE`] and sort key [`SORT_KEY_ATTRIBUTE`],
    /// both strings ([`create_upsert_table`] makes one).
    pub table: String,
    /// The partition key of a result.
    pub key: ItemKeyFn<Out>,
    /// The sort key of a window result.
    pub sort_key: SortKey,
    /// Items written at the same time.
    pub concurrency: usize,
}

impl<Out> DynamoDbSinkConfig<Out> {
    /// Writing to `table`, the partition key of a result being `key(value)`, one item per key and
    /// window, 8 items at a time.
    pub fn new(table: impl Into<String>, key: impl Fn(&Out) -> String + Send + Sync + 'static) -> Self {
        DynamoDbSinkConfig {
            name: "dynamodb".to_owned(),
            table: table.into(),
            key: Arc::new(key),
            sort_key: SortKey::Window,
            concurrency: 8,
        }
    }

    /// The same configuration with the sort key `sort_key`.
    pub fn sort_key(mut self, sort_key: SortKey) -> Self {
        self.sort_key = sort_key;
        self
    }

    /// The same configuration named `name` in errors and spans.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The sort key of `output` (see [`SortKey`]; `-` for a result without a window).
    pub fn sort_key_of(&self, output: &Output<Out>) -> String {
        match (self.sort_key, output.pane) {
            (_, None) => NO_WINDOW.to_owned(),
            (SortKey::Window, Some((w, _))) => format!("{:016}-{:016}", w.start, w.end),
            (SortKey::WindowStart, Some((w, _))) => format!("{:016}", w.start),
        }
    }
}

/// Why a result cannot become an item. Each is a property of the result, so writing it again
/// fails again: the emit fails before writing anything, and the error says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DynamoDbItemError {
    /// The value does not serialize (serde failed).
    #[error("the result {id} does not serialize: {reason}")]
    Serialize {
        /// The result's id.
        id: String,
        /// serde's message.
        reason: String,
    },
    /// The value is not a struct or map: its fields become the item's attributes.
    #[error("the result {id} serializes to {kind}, not to an object whose fields become attributes")]
    NotAnObject {
        /// The result's id.
        id: String,
        /// What it serialized to.
        kind: &'static str,
    },
    /// A field of the value has the name of an attribute the sink writes itself.
    #[error("the result {id} has a field {field:?}, an attribute the sink writes itself: rename the field")]
    AttributeClash {
        /// The result's id.
        id: String,
        /// The field.
        field: String,
    },
    /// The item would exceed DynamoDB's 400 KB limit.
    #[error("the item of result {id} (key {key:?}) is {bytes} bytes, over DynamoDB's limit of {MAX_ITEM_BYTES}: keep large values in S3")]
    TooLarge {
        /// The result's id.
        id: String,
        /// Its partition key.
        key: String,
        /// The item's size as DynamoDB counts it.
        bytes: usize,
    },
    /// The partition key is empty (DynamoDB refuses empty key strings).
    #[error("the result {id} has an empty partition key")]
    EmptyKey {
        /// The result's id.
        id: String,
    },
}

/// One result as an item: its attributes, partition key and pane index.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamoDbItem {
    /// Every attribute, keys and provenance included.
    pub attributes: HashMap<String, AttributeValue>,
    /// The partition key.
    pub key: String,
    /// The sort key.
    pub sort_key: String,
    /// The pane index (0 without a window).
    pub pane_index: u32,
    /// The item's size as DynamoDB counts it.
    pub bytes: usize,
}

/// Upserts each result as one item: the value's fields as attributes (numbers as `N`, strings as
/// `S`, booleans, nulls, lists `L` and nested objects `M`), plus the keys and the provenance
/// attributes (result id, pane index and timing, window). Every write is a `PutItem` with the
/// condition
///
/// ```text
/// attribute_not_exists(pk) OR shardflow_pane_index < :pane
/// ```
///
/// Idempotence contract: an item changes only for a strictly later pane of its key and window, so
/// writing a result again (a redelivered batch) changes nothing, a redelivered *earlier* pane
/// after a later one changes nothing, and the table ends with each window's latest pane whatever
/// the order of deliveries (a failed condition is that case, not an error). Within one emit only
/// the latest pane of each item is written. Every result is checked first ([`DynamoDbSink::item`]):
/// one that cannot be an item fails the emit before anything is written. Results without a window
/// all have pane index 0, so the first one written for a key stays: key such results by
/// something unique to the result.
pub struct DynamoDbSink<Out> {
    client: aws_sdk_dynamodb::Client,
    config: DynamoDbSinkConfig<Out>,
}

impl<Out> DynamoDbSink<Out> {
    /// A sink writing with `client` as `config` says.
    pub fn new(client: aws_sdk_dynamodb::Client, config: DynamoDbSinkConfig<Out>) -> Self {
        DynamoDbSink { client, config }
    }

    /// The sink's configuration.
    pub fn config(&self) -> &DynamoDbSinkConfig<Out> {
        &self.config
    }
}

impl<Out: Serialize> DynamoDbSink<Out> {
    /// The item of `output`, or why it cannot be one.
    pub fn item(&self, output: &Output<Out>) -> Result<DynamoDbItem, DynamoDbItemError> {
        let id = output.id.to_hex();
        let value = serde_json::to_value(&output.value).map_err(|e| DynamoDbItemError::Serialize {
            id: id.clone(),
            reason: e.to_string(),
        })?;
        let serde_json::Value::Object(fields) = value else {
            return Err(DynamoDbItemError::NotAnObject {
                id,
                kind: json_kind(&value),
            });
        };
        let key = (self.config.key)(&output.value);
        if key.is_empty() {
            return Err(DynamoDbItemError::EmptyKey { id });
        }
        let sort_key = self.config.sort_key_of(output);
        let pane_index = output.pane.map(|(_, p)| p.index).unwrap_or(0);
        let mut attributes = HashMap::with_capacity(fields.len() + 7);
        for (field, v) in fields {
            if is_reserved(&field) {
                return Err(DynamoDbItemError::AttributeClash { id, field });
            }
            attributes.insert(field, attribute(v));
        }
        attributes.insert(PARTITION_KEY_ATTRIBUTE.to_owned(), AttributeValue::S(key.clone()));
        attributes.insert(SORT_KEY_ATTRIBUTE.to_owned(), AttributeValue::S(sort_key.clone()));
        attributes.insert(ITEM_RESULT_ID_ATTRIBUTE.to_owned(), AttributeValue::S(id.clone()));
        attributes.insert(
            PANE_INDEX_ATTRIBUTE.to_owned(),
            AttributeValue::N(pane_index.to_string()),
        );
        if let Some((window, pane)) = output.pane {
            attributes.insert(
                PANE_TIMING_ATTRIBUTE.to_owned(),
                AttributeValue::S(pane.timing.as_str().to_owned()),
            );
            attributes.insert(
                WINDOW_START_ATTRIBUTE.to_owned(),
                AttributeValue::N(window.start.to_string()),
            );
            attributes.insert(
                WINDOW_END_ATTRIBUTE.to_owned(),
                AttributeValue::N(window.end.to_string()),
            );
        }
        let bytes = item_size(&attributes);
        if bytes > MAX_ITEM_BYTES {
            return Err(DynamoDbItemError::TooLarge { id, key, bytes });
        }
        Ok(DynamoDbItem {
            attributes,
            key,
            sort_key,
            pane_index,
            bytes,
        })
    }

    /// Writes `item` unless the table holds the same or a later pane of it.
    async fn put_if_later(&self, item: DynamoDbItem) -> Result<(), SinkError> {
        let name = &self.config.name;
        let result = self
            .client
            .put_item()
            .table_name(&self.config.table)
            .set_item(Some(item.attributes))
            .condition_expression("attribute_not_exists(#pk) OR #pane < :pane")
            .expression_attribute_names("#pk", PARTITION_KEY_ATTRIBUTE)
            .expression_attribute_names("#pane", PANE_INDEX_ATTRIBUTE)
            .expression_attribute_values(":pane", AttributeValue::N(item.pane_index.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                debug!(sink = %name, key = %item.key, sort_key = %item.sort_key, pane = item.pane_index,
                    "the item holds the same or a later pane");
                Ok(())
            }
            Err(e) => Err(sdk_error(
                name,
                &format!("PutItem {} ({}, {})", self.config.table, item.key, item.sort_key),
                e,
            )),
        }
    }
}

impl<Out: Serialize + Send + Sync> ResultSink<Out> for DynamoDbSink<Out> {
    async fn emit(&self, outputs: &[Output<Out>]) -> Result<(), SinkError> {
        let name = &self.config.name;
        let span = info_span!("dynamodb_emit", sink = %name, table = %self.config.table, results = outputs.len());
        // Every result is checked before anything is written; only the latest pane of each item
        // in this emit needs writing.
        let mut latest: BTreeMap<(String, String), DynamoDbItem> = BTreeMap::new();
        for output in outputs {
            let item = self.item(output).map_err(|e| sink_error(name, "building an item", e))?;
            match latest.entry((item.key.clone(), item.sort_key.clone())) {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(item);
                }
                std::collections::btree_map::Entry::Occupied(mut o) => {
                    if item.pane_index > o.get().pane_index {
                        o.insert(item);
                    }
                }
            }
        }
        // Collected first: a lazy `map` here makes the future not provably `Send`
        // (rust-lang/rust#102211).
        let puts: Vec<_> = latest.into_values().map(|item| self.put_if_later(item)).collect();
        futures_util::stream::iter(puts)
            .buffer_unordered(self.config.concurrency.max(1))
            .try_collect::<Vec<()>>()
            .instrument(span)
            .await?;
        Ok(())
    }
}

/// Creates a table for a [`DynamoDbSink`] (on-demand capacity, string keys [`PARTITION_KEY_ATTRIBUTE`]
/// and [`SORT_KEY_ATTRIBUTE`]) and waits until it is active. For tests and local runs; deployed
/// tables come from the infrastructure template.
pub async fn create_upsert_table(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), SinkError> {
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(|e| sink_error("dynamodb", "describing the table's key", e))
    };
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| sink_error("dynamodb", "describing the table's key", e))
    };
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(PARTITION_KEY_ATTRIBUTE, KeyType::Hash)?)
        .key_schema(key(SORT_KEY_ATTRIBUTE, KeyType::Range)?)
        .attribute_definitions(attribute(PARTITION_KEY_ATTRIBUTE)?)
        .attribute_definitions(attribute(SORT_KEY_ATTRIBUTE)?)
        .send()
        .await
        .map_err(|e| sdk_error("dynamodb", &format!("CreateTable {table}"), e))?;
    client
        .wait_until_table_exists()
        .table_name(table)
        .wait(std::time::Duration::from_secs(60))
        .await
        .map_err(|e| sink_error("dynamodb", &format!("waiting for table {table}"), e))?;
    Ok(())
}

/// The value a [`DynamoDbSink`] wrote as `item`, read back with serde: the item's attributes as
/// a JSON object (numbers, strings, booleans, nulls, lists and maps as the sink writes them;
/// sets as lists, binaries as arrays of bytes), the keys and provenance attributes among them
/// (which `T` ignores unless it names them).
pub fn item_value<T: serde::de::DeserializeOwned>(
    item: &HashMap<String, AttributeValue>,
) -> Result<T, serde_json::Error> {
    let object = item.iter().map(|(k, v)| (k.clone(), json_of(v))).collect();
    serde_json::from_value(serde_json::Value::Object(object))
}

/// A DynamoDB attribute value as JSON (the inverse of [`attribute`]).
fn json_of(value: &AttributeValue) -> serde_json::Value {
    use serde_json::Value;
    let number = |n: &str| serde_json::from_str::<Value>(n).unwrap_or_else(|_| Value::String(n.to_owned()));
    match value {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => number(n),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::L(items) => Value::Array(items.iter().map(json_of).collect()),
        AttributeValue::M(fields) => Value::Object(fields.iter().map(|(k, v)| (k.clone(), json_of(v))).collect()),
        AttributeValue::Ss(items) => Value::Array(items.iter().cloned().map(Value::String).collect()),
        AttributeValue::Ns(items) => Value::Array(items.iter().map(|n| number(n)).collect()),
        AttributeValue::B(b) => Value::Array(b.as_ref().iter().map(|x| Value::from(*x)).collect()),
        _ => Value::Null,
    }
}

/// Whether the sink writes an attribute of this name itself.
fn is_reserved(field: &str) -> bool {
    field == PARTITION_KEY_ATTRIBUTE || field == SORT_KEY_ATTRIBUTE || field.starts_with("shardflow_")
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A JSON value as a DynamoDB attribute value.
fn attribute(value: serde_json::Value) -> AttributeValue {
    match value {
        serde_json::Value::Null => AttributeValue::Null(true),
        serde_json::Value::Bool(b) => AttributeValue::Bool(b),
        serde_json::Value::Number(n) => AttributeValue::N(n.to_string()),
        serde_json::Value::String(s) => AttributeValue::S(s),
        serde_json::Value::Array(items) => AttributeValue::L(items.into_iter().map(attribute).collect()),
        serde_json::Value::Object(fields) => {
            AttributeValue::M(fields.into_iter().map(|(k, v)| (k, attribute(v))).collect())
        }
    }
}

/// An item's size as DynamoDB counts it: per attribute its name's UTF-8 bytes plus its value's
/// size ([`value_size`]).
fn item_size(attributes: &HashMap<String, AttributeValue>) -> usize {
    attributes.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

/// A value's size: strings and binaries by their bytes, numbers by their digits (an upper bound
/// of DynamoDB's about one byte per two digits plus one), booleans and nulls 1, and lists and maps
/// 3 bytes plus 1 per element plus their elements (and a map's names).
fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::L(items) => 3 + items.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::M(fields) => 3 + fields.iter().map(|(k, v)| 1 + k.len() + value_size(v)).sum::<usize>(),
        AttributeValue::Ss(items) | AttributeValue::Ns(items) => items.iter().map(String::len).sum(),
        AttributeValue::Bs(items) => items.iter().map(|b| b.as_ref().len()).sum(),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use shardflow_engine::{PaneInfo, PaneTiming, ResultId, Window};

    use super::*;

    #[derive(Serialize)]
    struct Session {
        user: String,
        views: u64,
        pages: Vec<String>,
    }

    fn sink() -> DynamoDbSink<Session> {
        let sdk = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .build();
        DynamoDbSink::new(
            aws_sdk_dynamodb::Client::from_conf(sdk),
            DynamoDbSinkConfig::new("t", |s: &Session| s.user.clone()),
        )
    }

    fn output(user: &str, pages: Vec<String>) -> Output<Session> {
        Output {
            id: ResultId(7),
            timestamp: 119_999,
            pane: Some((
                Window::new(60_000, 120_000),
                PaneInfo {
                    timing: PaneTiming::Early,
                    index: 3,
                },
            )),
            value: Session {
                user: user.to_owned(),
                views: pages.len() as u64,
                pages,
            },
        }
    }

    #[test]
    fn an_item_holds_the_fields_the_keys_and_the_provenance() {
        let item = sink().item(&output("u1", vec!["/a".into()])).expect("an item");
        let a = &item.attributes;
        assert_eq!(a["pk"], AttributeValue::S("u1".into()));
        assert_eq!(a["sk"], AttributeValue::S("0000000000060000-0000000000120000".into()));
        assert_eq!(a["views"], AttributeValue::N("1".into()));
        assert_eq!(a["pages"], AttributeValue::L(vec![AttributeValue::S("/a".into())]));
        assert_eq!(a[PANE_INDEX_ATTRIBUTE], AttributeValue::N("3".into()));
        assert_eq!(a[PANE_TIMING_ATTRIBUTE], AttributeValue::S("early".into()));
        assert_eq!(a[ITEM_RESULT_ID_ATTRIBUTE], AttributeValue::S(ResultId(7).to_hex()));
        assert_eq!(a[WINDOW_END_ATTRIBUTE], AttributeValue::N("120000".into()));
        assert_eq!(item.pane_index, 3);
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Read {
        user: String,
        views: u64,
        pages: Vec<String>,
        shardflow_pane_index: u32,
    }

    #[test]
    fn an_item_reads_back_as_the_value_it_was_written_from() {
        let item = sink()
            .item(&output("u1", vec!["/a".into(), "/b".into()]))
            .expect("an item");
        let read: Read = item_value(&item.attributes).expect("the value");
        assert_eq!(
            read,
            Read {
                user: "u1".into(),
                views: 2,
                pages: vec!["/a".into(), "/b".into()],
                shardflow_pane_index: 3,
            }
        );
    }

    #[test]
    fn an_item_over_400_kb_and_an_empty_key_are_typed_errors() {
        let big = output("u1", vec!["x".repeat(1024); 401]);
        match sink().item(&big) {
            Err(DynamoDbItemError::TooLarge { bytes, key, .. }) => {
                assert!(bytes > MAX_ITEM_BYTES, "{bytes}");
                assert_eq!(key, "u1");
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert!(matches!(
            sink().item(&output("", vec![])),
            Err(DynamoDbItemError::EmptyKey { .. })
        ));
    }

    #[test]
    fn the_window_start_sort_key_ignores_the_end() {
        let config = DynamoDbSinkConfig::new("t", |s: &Session| s.user.clone()).sort_key(SortKey::WindowStart);
        assert_eq!(config.sort_key_of(&output("u", vec![])), "0000000000060000");
        let stateless = Output {
            pane: None,
            ..output("u", vec![])
        };
        assert_eq!(config.sort_key_of(&stateless), "-");
    }
}
