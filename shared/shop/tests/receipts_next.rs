//! `receipts_next`, the next release of `receipts`: on the same input it publishes the same
//! receipts with one column more, `receipts`' state restores into it through the accumulator's
//! migration, and the same change without the migration is refused.

use shardflow_engine::checkpoint::CheckpointImage;
use shardflow_engine::{Engine, Output, RestoreOptions, RestoreOutcome, StateError};
use shardflow_schemas::{ChangeEvent, Op, OrderStatus};
use shardflow_shop::pipelines::{receipts, receipts_next, receipts_next_without_migration, Receipt, ReceiptNext};
use shardflow_shop::{ShopConfig, ShopGenerator};

/// The window's default id, the same in both releases (the added filter is stateless).
const WINDOW: &str = "window_aggregate-0";

/// 4,000 generated shop changes (one shard, arrival order), some late or too late.
fn input() -> Vec<ChangeEvent> {
    let mut config = ShopConfig::new(14, 4_000, 1);
    config.orders_per_sec = 1.0;
    let mut generator = ShopGenerator::new(config);
    std::iter::from_fn(|| generator.next_event().map(|(_, e)| e)).collect()
}

/// Feeds `events` as offsets `from..` of one shard.
fn feed<Out: Send + 'static>(engine: &mut Engine<ChangeEvent, Out>, events: &[ChangeEvent], from: usize) {
    let shard = engine.partition("shard-0");
    for (i, e) in events.iter().enumerate() {
        let offset = (from + i) as u64;
        engine.process(shard, offset, offset as i64, e.clone());
    }
}

/// Everything `engine` emits for `events`, to the end of input.
fn run<Out: Send + 'static>(
    mut engine: Engine<ChangeEvent, Out>,
    events: &[ChangeEvent],
    from: usize,
) -> Vec<Output<Out>> {
    feed(&mut engine, events, from);
    engine.finish();
    engine.drain_output()
}

/// (result id, the fields `receipts` publishes) of each receipt.
fn old_fields(outputs: &[Output<ReceiptNext>]) -> Vec<(String, Receipt)> {
    outputs.iter().map(|o| (o.id.to_hex(), o.value.receipt())).collect()
}

fn of_receipts(outputs: &[Output<Receipt>]) -> Vec<(String, Receipt)> {
    outputs.iter().map(|o| (o.id.to_hex(), o.value.clone())).collect()
}

/// The input cut in two, with a redelivery of the first part's last completion at the start of
/// the second (a duplicate only the restored window state recognises).
fn split_with_redelivery(events: &[ChangeEvent]) -> (Vec<ChangeEvent>, Vec<ChangeEvent>) {
    let (first, second) = events.split_at(events.len() / 2);
    let last_completion = first
        .iter()
        .rev()
        .find(|e| e.op() == Op::Update && e.after_order().is_some_and(|o| o.status() == OrderStatus::Completed))
        .expect("the first part completes an order")
        .clone();
    let mut second = second.to_vec();
    second.insert(0, last_completion);
    (first.to_vec(), second)
}

#[test]
fn receipts_next_publishes_the_receipts_of_receipts_with_the_status_they_completed_from() {
    let events = input();
    let old = run(receipts().engine(), &events, 0);
    let new = run(receipts_next().engine(), &events, 0);
    assert!(old.len() > 50, "the input completes many purchases: {}", old.len());
    assert_eq!(
        old_fields(&new),
        of_receipts(&old),
        "same ids, same receipts, in the same order"
    );
    let from: std::collections::BTreeSet<Option<&str>> =
        new.iter().map(|o| o.value.completed_from.as_deref()).collect();
    assert_eq!(
        from,
        [Some("shipped")].into_iter().collect(),
        "every generated order completes from shipped"
    );
}

#[test]
fn an_image_of_receipts_restores_into_receipts_next_migrated_and_recognises_its_duplicates() {
    let (first, second) = split_with_redelivery(&input());
    let mut blue = receipts().engine();
    feed(&mut blue, &first, 0);
    let before_cut = blue.drain_output();
    assert!(!before_cut.is_empty(), "the first part completes purchases");
    let image = CheckpointImage::new(blue.snapshot().expect("a snapshot of receipts"));
    let blue_rest = run(blue, &second, first.len());

    let (green, report) = Engine::restore_with(&receipts_next(), &image, RestoreOptions::strict())
        .expect("receipts' state restores into receipts_next");
    assert_eq!(report.operators.len(), 1, "{report:?}");
    assert_eq!(report.operators[0].id, WINDOW);
    assert_eq!(
        report.operators[0].outcome,
        RestoreOutcome::Migrated {
            from: WINDOW.into(),
            version: 1
        }
    );
    let green_rest = run(green, &second, first.len());
    assert!(!blue_rest.is_empty(), "the second part completes purchases");
    assert_eq!(
        old_fields(&green_rest),
        of_receipts(&blue_rest),
        "after the restore green publishes what blue would have, and not the redelivered completion again"
    );
    assert!(green_rest.iter().all(|o| o.value.completed_from.is_some()));
    let started_empty = run(receipts_next().engine(), &second, first.len());
    assert!(
        started_empty.len() > green_rest.len(),
        "without blue's state green would publish the redelivered completion again"
    );
}

#[test]
fn receipts_next_without_its_migration_refuses_an_image_of_receipts_naming_the_window() {
    let events = input();
    let mut blue = receipts().engine();
    feed(&mut blue, &events[..events.len() / 2], 0);
    let image = CheckpointImage::new(blue.snapshot().expect("a snapshot of receipts"));
    let err = Engine::restore_with(&receipts_next_without_migration(), &image, RestoreOptions::strict())
        .err()
        .expect("the unmigrated change is refused");
    match &err {
        StateError::IncompatibleState { operators } => {
            assert_eq!(operators.len(), 1, "{err}");
            assert!(operators[0].contains(WINDOW), "{err}");
        }
        other => panic!("not an incompatible-state refusal: {other}"),
    }
}
