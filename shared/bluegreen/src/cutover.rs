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

use serde::{Deserialize, Serialize};
use shardflow_engine::Output;
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
