//! The clickstream application on the embedded runner over the sample page views: the sessions
//! equal the golden file, and the golden file holds what sessionization means.
//!
//! Regenerate after an intended change: `SHARDFLOW_UPDATE_GOLDEN=1 cargo test -p shardflow-clickstream --test golden`.

use std::path::{Path, PathBuf};

use shardflow_clickstream::{app, Session, SESSIONS_STAGE, SESSION_GAP_MS};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

#[derive(Debug, serde::Deserialize)]
struct Line {
    pane: Pane,
    value: Session,
}

#[derive(Debug, serde::Deserialize)]
struct Pane {
    timing: String,
}

async fn run() -> (tempfile::TempDir, String) {
    let out = tempfile::tempdir().expect("a temporary directory");
    let inputs = [data("shard-a.jsonl"), data("shard-b.jsonl")];
    let summary = app()
        .run_local(SESSIONS_STAGE, &inputs, out.path())
        .await
        .expect("the embedded run");
    assert_eq!(summary.dead_letters, 1, "the malformed record is dead-lettered");
    let sessions = std::fs::read_to_string(out.path().join("sessions.jsonl")).expect("sessions.jsonl");
    (out, sessions)
}

#[tokio::test]
async fn the_sessions_of_the_sample_equal_the_golden_file() {
    let (_out, sessions) = run().await;
    let golden = data("sessions.golden.jsonl");
    if std::env::var_os("SHARDFLOW_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &sessions).expect("write the golden file");
    }
    let expected = std::fs::read_to_string(&golden).expect("the golden file");
    assert_eq!(sessions, expected, "sessions differ from {}", golden.display());
}

#[tokio::test]
async fn a_thirty_minute_silence_splits_a_session_and_early_panes_precede_the_on_time_one() {
    let (_out, sessions) = run().await;
    let lines: Vec<Line> = sessions
        .lines()
        .map(|l| serde_json::from_str(l).expect("a session line"))
        .collect();
    let closed = |user: &str| -> Vec<&Session> {
        lines
            .iter()
            .filter(|l| l.value.user_id == user && l.pane.timing == "on_time")
            .map(|l| &l.value)
            .collect()
    };
    let alice = closed("alice");
    assert_eq!(alice.iter().map(|s| s.views).collect::<Vec<_>>(), [7, 2], "{alice:?}");
    assert_eq!(alice[0].session_end_ms - alice[0].last_view_ms, SESSION_GAP_MS);
    let bob = closed("bob");
    assert_eq!(
        bob.iter().map(|s| s.views).collect::<Vec<_>>(),
        [4],
        "25-minute gaps stay one session"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.value.user_id == "alice" && l.pane.timing == "early" && l.value.views == 3),
        "an early pane after 3 views"
    );
}
