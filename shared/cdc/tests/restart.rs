//! A reader that dies before its sink acknowledged a batch loses nothing: a restarted reader
//! re-delivers every unconfirmed change and nothing that was confirmed.

mod common;

use std::collections::BTreeSet;

use common::{int_col, poll_until, Fixture};
use shardflow_cdc::{CdcReader, ChangeEvent, ChangeSink, ChangeSinkError, Lsn, MemoryChangeSink, SnapshotMode};

/// Accepts events but fails to acknowledge them, like a process killed before the sink's ack.
#[derive(Default)]
struct CrashBeforeAckSink {
    received: Vec<ChangeEvent>,
}

impl ChangeSink for CrashBeforeAckSink {
    async fn send(&mut self, events: &[ChangeEvent]) -> Result<(), ChangeSinkError> {
        self.received.extend_from_slice(events);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ChangeSinkError> {
        Err(ChangeSinkError::Rejected("crashed before acknowledging".into()))
    }
}

fn ids(events: &[ChangeEvent]) -> BTreeSet<i64> {
    events.iter().filter_map(|e| int_col(e, "id")).collect()
}

#[tokio::test(flavor = "current_thread")]
async fn reader_dropped_before_ack_loses_no_change_and_repeats_nothing_confirmed() {
    let fx = Fixture::new("restart").await;
    let s = &fx.schema;
    fx.sql(&format!("CREATE TABLE {s}.item (id int PRIMARY KEY, v int)"))
        .await;
    let mut config = fx.config(&["item"]);
    config.snapshot = SnapshotMode::Never;
    // Small batches: 12 messages = 4 single-row transactions (Begin, Insert, Commit).
    config.batch_changes = 12;
    let mut first = CdcReader::connect(&common::database_url(), config.clone())
        .await
        .unwrap();
    for id in 1..=40 {
        fx.sql(&format!("INSERT INTO {s}.item VALUES ({id}, {id})")).await;
    }

    // First batch delivered and confirmed.
    let mut acked = MemoryChangeSink::default();
    let outcome = first.poll(&mut acked).await.unwrap();
    assert!(outcome.more, "the batch limit should have cut the backlog");
    assert_eq!(acked.events.len(), 4);
    let confirmed = first.confirmed();
    assert_eq!(fx.slot_confirmed().await, confirmed.0);

    // Second batch reaches the sink but is never acknowledged: the reader fails and is dropped.
    let mut crashing = CrashBeforeAckSink::default();
    let err = first.poll(&mut crashing).await.unwrap_err();
    assert!(err.to_string().contains("crashed before acknowledging"), "{err}");
    assert!(!crashing.received.is_empty());
    assert_eq!(
        fx.slot_confirmed().await,
        confirmed.0,
        "an unacknowledged batch must not be confirmed"
    );
    drop(first);

    // A new reader on the same slot picks up after the last confirmed position.
    config.batch_changes = 1_000;
    let mut second = CdcReader::connect(&common::database_url(), config).await.unwrap();
    let mut resumed = MemoryChangeSink::default();
    poll_until(&mut second, &mut resumed, |s| ids(&s.events).len() >= 36).await;

    let all: BTreeSet<i64> = ids(&acked.events).union(&ids(&resumed.events)).copied().collect();
    assert_eq!(all, (1..=40).collect::<BTreeSet<i64>>(), "every change is delivered");
    assert!(
        ids(&acked.events).is_disjoint(&ids(&resumed.events)),
        "confirmed changes repeated"
    );
    assert!(
        resumed.events.iter().all(|e| e.source.commit_lsn >= confirmed),
        "a change before the confirmed LSN repeated"
    );
    // The unacknowledged changes come again (at-least-once), in the same order.
    let redelivered: Vec<Lsn> = resumed
        .events
        .iter()
        .take(crashing.received.len())
        .map(|e| e.source.lsn)
        .collect();
    let lost: Vec<Lsn> = crashing.received.iter().map(|e| e.source.lsn).collect();
    assert_eq!(redelivered, lost);
    assert_eq!(
        resumed.events.len(),
        36,
        "each remaining change exactly once after the restart"
    );
    drop(second);
    fx.cleanup().await;
}
