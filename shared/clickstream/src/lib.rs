//! # shardflow-clickstream
//!
//! The second example application (not the shop): clickstream sessionization, declared with
//! `shardflow-app`. Page views arrive as JSON on the stream `page-views`; the stage `sessions`
//! keys them by user, groups them in session windows closed after 30 minutes without a view,
//! fires an early pane every [`EARLY_EVERY_VIEWS`] views of a session (and on time when the
//! session closes, 1 minute of out-of-orderness allowed), and writes each session's latest pane
//! to DynamoDB (one item per user and session start) and every pane to S3.
//!
//! | sink | kind | variable |
//! |---|---|---|
//! | `sessions-table` | DynamoDB upsert, key `user_id`, sort key the session's start | `SHARDFLOW_SINK_SESSIONS_TABLE_TABLE` |
//! | `sessions-archive` | S3, one object per pane under `sessions/` | `SHARDFLOW_SINK_SESSIONS_ARCHIVE_BUCKET` |
#![warn(missing_docs)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shardflow_app::{App, Sink, SortKey, Source, StageDef};
use shardflow_engine::combine::{Count, Max, Min};
use shardflow_engine::{Firing, Pipeline, Trigger, WatermarkStrategy, Windowing};

/// The application's name (the prefix of its resources).
pub const APP: &str = "clickstream";
/// The stage that sessionizes page views.
pub const SESSIONS_STAGE: &str = "sessions";
/// The input stream's logical name.
pub const PAGE_VIEWS_STREAM: &str = "page-views";
/// A session closes after this long without a view of its user: 30 minutes.
pub const SESSION_GAP_MS: i64 = 30 * 60 * 1000;
/// An early pane fires after this many views of a session since its last pane.
pub const EARLY_EVERY_VIEWS: u32 = 3;
/// How far out of order page views may arrive: 1 minute.
pub const OUT_OF_ORDERNESS_MS: i64 = 60 * 1000;

/// One page view, as the site's collector puts it on the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageView {
    /// The visitor.
    pub user_id: String,
    /// The page's path.
    pub page: String,
    /// When it was viewed (ms since the epoch).
    pub ts_ms: i64,
}

/// A user's session so far (early panes) or closed (on time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The visitor.
    pub user_id: String,
    /// The session window's start: its first view.
    pub session_start_ms: i64,
    /// The session window's end: its last view plus the gap.
    pub session_end_ms: i64,
    /// Views in the session.
    pub views: u64,
    /// The first view's time.
    pub first_view_ms: i64,
    /// The last view's time.
    pub last_view_ms: i64,
}

/// The sessionization pipeline: page views keyed by user, 30-minute session windows, an early
/// pane every [`EARLY_EVERY_VIEWS`] views, accumulating.
pub fn sessions_pipeline() -> Pipeline<PageView, Session> {
    Pipeline::builder("sessions")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(OUT_OF_ORDERNESS_MS).expect("a non-negative bound"))
        .event_time(|v: &PageView| v.ts_ms)
        .key_by(|v| v.user_id.clone())
        .window(Windowing::session(SESSION_GAP_MS).expect("a positive gap"))
        .trigger(
            Trigger::at_watermark()
                .with_early_firings(Firing::every_elements(EARLY_EVERY_VIEWS))
                .accumulating(),
        )
        .aggregate(
            (Count, Min::of(|v: &PageView| v.ts_ms), Max::of(|v: &PageView| v.ts_ms)),
            |user, window, _pane, (views, first, last)| Session {
                user_id: user.clone(),
                session_start_ms: window.start,
                session_end_ms: window.end,
                views,
                first_view_ms: first.unwrap_or(window.start),
                last_view_ms: last.unwrap_or(window.start),
            },
        )
        .sink("sessions")
}

/// The latest pane of every session in `results` (the embedded runner's `sessions.jsonl`: one
/// result line per pane), by user and session start — what the DynamoDB sink keeps.
pub fn latest_sessions(results: &str) -> Result<BTreeMap<(String, i64), Session>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Line {
        pane: Pane,
        value: Session,
    }
    #[derive(Deserialize)]
    struct Pane {
        index: u32,
    }
    let mut latest: BTreeMap<(String, i64), (u32, Session)> = BTreeMap::new();
    for line in results.lines().filter(|l| !l.trim().is_empty()) {
        let line: Line = serde_json::from_str(line)?;
        let key = (line.value.user_id.clone(), line.value.session_start_ms);
        if latest.get(&key).is_none_or(|(index, _)| *index < line.pane.index) {
            latest.insert(key, (line.pane.index, line.value));
        }
    }
    Ok(latest.into_iter().map(|(k, (_, v))| (k, v)).collect())
}

/// The `sessions` stage: page views in, sessions to DynamoDB and S3.
pub fn sessions_stage() -> StageDef<PageView, Session> {
    StageDef::new(SESSIONS_STAGE)
        .source(Source::json(PAGE_VIEWS_STREAM))
        .pipeline(sessions_pipeline())
        .sink(Sink::dynamodb(
            "sessions-table",
            |s: &Session| s.user_id.clone(),
            SortKey::WindowStart,
        ))
        .sink(Sink::s3("sessions-archive", "sessions"))
}

/// The application.
pub fn app() -> App {
    App::new(APP).stage(sessions_stage())
}
