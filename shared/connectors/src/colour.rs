//! Blue/green: which deployment colour writes which results to the live outputs.
//!
//! # Protocol
//! Two copies of a stage (blue and green, each with its own state) read the same stream and
//! compute the same results with the same ids. One DynamoDB item per deployment, the
//! **cutover** (`pk = deployment#{name}`, `sk = cutover`), says who owns which results: a list
//! of segments `(from_ms, colour)`, the first starting at the beginning of time. A result's
//! *position* is its window's start (for a window result) or its timestamp; its owner is the
//! colour of the last segment starting at or before it. Every emit of a stage reads the item
//! (strongly consistent) and writes the results its colour owns to the live sink and the others
//! to its shadow sink ([`ColourGate`]).
//!
//! A switch appends a segment `(cut, colour)` with a conditional write on the item's version, so
//! concurrent switches cannot both win. The cut must lie beyond every result position either
//! colour has emitted: then every window — all its panes, early, on-time and late — has one owner
//! before and after the switch, so no result is written live twice (by both colours) or never
//! (by neither), whatever the two copies' progress. `shardflow switch` takes the cut from the
//! wall clock plus a margin and checks it against both colours' watermarks. A rollback is a
//! switch back, with a later cut.
//!
//! Without a control table a gate writes everything live (a single-colour deployment).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use shardflow_engine::Output;
use shardflow_stage::{ResultSink, SinkError};
use thiserror::Error;

/// A deployment colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Colour {
    /// The first copy.
    Blue,
    /// The second copy.
    Green,
}

impl Colour {
    /// `blue` or `green`.
    pub fn as_str(self) -> &'static str {
        match self {
            Colour::Blue => "blue",
            Colour::Green => "green",
        }
    }

    /// The other colour.
    pub fn other(self) -> Colour {
        match self {
            Colour::Blue => Colour::Green,
            Colour::Green => Colour::Blue,
        }
    }
}

impl std::str::FromStr for Colour {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "blue" => Ok(Colour::Blue),
            "green" => Ok(Colour::Green),
            other => Err(format!("a colour is blue or green, not {other:?}")),
        }
    }
}

/// One segment of a cutover: results at or after `from_ms` belong to `colour` (until the next
/// segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The first result position of the segment (ms since the epoch; `i64::MIN` for the first).
    pub from_ms: i64,
    /// Its owner.
    pub colour: Colour,
}

/// Who owns which results (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cutover {
    /// Segments in increasing `from_ms`; the first starts at `i64::MIN`.
    pub segments: Vec<Segment>,
    /// The item's version (0: no item yet).
    pub version: u64,
}

impl Default for Cutover {
    /// Blue owns everything.
    fn default() -> Self {
        Cutover {
            segments: vec![Segment {
                from_ms: i64::MIN,
                colour: Colour::Blue,
            }],
            version: 0,
        }
    }
}

impl Cutover {
    /// The owner of results at `position`.
    pub fn owner(&self, position: i64) -> Colour {
        self.segments
            .iter()
            .rev()
            .find(|s| s.from_ms <= position)
            .or(self.segments.first())
            .map_or(Colour::Blue, |s| s.colour)
    }

    /// The colour that owns results from the last cut on (the live writer of new results).
    pub fn live(&self) -> Colour {
        self.segments.last().map_or(Colour::Blue, |s| s.colour)
    }

    /// The cutover with `colour` owning results from `cut_ms` on, or why not.
    pub fn switched(&self, colour: Colour, cut_ms: i64) -> Result<Cutover, ColourError> {
        if self.live() == colour {
            return Err(ColourError::AlreadyLive(colour));
        }
        let last = self.segments.last().map_or(i64::MIN, |s| s.from_ms);
        if cut_ms <= last {
            return Err(ColourError::CutNotAfterLast { cut_ms, last_ms: last });
        }
        let mut next = self.clone();
        next.segments.push(Segment {
            from_ms: cut_ms,
            colour,
        });
        next.version += 1;
        Ok(next)
    }
}

/// The position of a result: its window's start, or its timestamp.
pub fn position<Out>(output: &Output<Out>) -> i64 {
    output.pane.map_or(output.timestamp, |(w, _)| w.start)
}

/// Why reading or switching the cutover failed.
#[derive(Debug, Error)]
pub enum ColourError {
    /// DynamoDB refused or failed.
    #[error("DynamoDB {operation} on {table}: {message}")]
    DynamoDb {
        /// The call.
        operation: &'static str,
        /// The control table.
        table: String,
        /// The SDK's error.
        message: String,
    },
    /// The item does not hold a cutover.
    #[error("the cutover item of {deployment} is malformed: {reason}")]
    Malformed {
        /// The deployment.
        deployment: String,
        /// What is wrong.
        reason: String,
    },
    /// The colour already owns new results.
    #[error("{} is already live", .0.as_str())]
    AlreadyLive(Colour),
    /// A cut must come after the previous one.
    #[error("the cut {cut_ms} is not after the last cut {last_ms}")]
    CutNotAfterLast {
        /// The cut asked for.
        cut_ms: i64,
        /// The last cut.
        last_ms: i64,
    },
    /// Another switch won (the item changed since it was read).
    #[error("the cutover of {0} changed concurrently; read it again")]
    Conflict(String),
}

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

/// A stage's sink in a blue/green deployment: results its colour owns go to `live`, the others
/// to `shadow` (see the module documentation). Idempotent because both sinks are.
pub struct ColourGate<L, S> {
    live: L,
    blue_green: Option<BlueGreen<S>>,
}

/// What a gated stage needs besides its live sink: its colour, the cutover, its shadow sink.
struct BlueGreen<S> {
    colour: Colour,
    control: ColourControl,
    shadow: S,
}

impl<L, S> ColourGate<L, S> {
    /// A single-colour deployment: everything goes to `live`.
    pub fn single(live: L) -> Self {
        ColourGate { live, blue_green: None }
    }

    /// The gate of a stage of `colour`: what `control`'s cutover gives it goes to `live`, the rest
    /// to `shadow`.
    pub fn gated(colour: Colour, control: ColourControl, live: L, shadow: S) -> Self {
        ColourGate {
            live,
            blue_green: Some(BlueGreen {
                colour,
                control,
                shadow,
            }),
        }
    }

    /// The live sink.
    pub fn live(&self) -> &L {
        &self.live
    }

    /// The shadow sink (none for a single-colour deployment).
    pub fn shadow(&self) -> Option<&S> {
        self.blue_green.as_ref().map(|b| &b.shadow)
    }
}

impl<Out, L, S> ResultSink<Out> for ColourGate<L, S>
where
    Out: Clone + Send + Sync,
    L: ResultSink<Out>,
    S: ResultSink<Out>,
{
    async fn emit(&self, outputs: &[Output<Out>]) -> Result<(), SinkError> {
        let Some(bg) = &self.blue_green else {
            return self.live.emit(outputs).await;
        };
        let cutover = bg.control.load().await.map_err(|e| SinkError {
            sink: "colour-gate".to_owned(),
            message: e.to_string(),
        })?;
        let (mine, others): (Vec<Output<Out>>, Vec<Output<Out>>) = outputs
            .iter()
            .cloned()
            .partition(|o| cutover.owner(position(o)) == bg.colour);
        if !mine.is_empty() {
            self.live.emit(&mine).await?;
        }
        if !others.is_empty() {
            bg.shadow.emit(&others).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_follow_the_segments_and_switches_only_go_forward() {
        let start = Cutover::default();
        assert_eq!(start.owner(i64::MIN), Colour::Blue);
        assert_eq!(start.live(), Colour::Blue);
        let green = start.switched(Colour::Green, 1_000).unwrap();
        assert_eq!(
            (green.owner(999), green.owner(1_000), green.live()),
            (Colour::Blue, Colour::Green, Colour::Green)
        );
        assert_eq!(green.version, 1);
        assert!(matches!(
            green.switched(Colour::Green, 2_000),
            Err(ColourError::AlreadyLive(Colour::Green))
        ));
        assert!(matches!(
            green.switched(Colour::Blue, 1_000),
            Err(ColourError::CutNotAfterLast { .. })
        ));
        let back = green.switched(Colour::Blue, 5_000).unwrap();
        assert_eq!(
            (back.owner(999), back.owner(4_999), back.owner(5_000)),
            (Colour::Blue, Colour::Green, Colour::Blue)
        );
    }
}
