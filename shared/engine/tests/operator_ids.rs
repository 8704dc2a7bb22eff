//! Operator ids and explicit restores: an operator's state follows its id, not its position, so a
//! pipeline can change around it; state the pipeline has no operator for is refused unless
//! dropping it is allowed, and every restore says what happened to each operator's state.

mod common;

use common::*;
use shardflow_engine::checkpoint::{Checkpoint, CheckpointImage};
use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::{
    Engine, Output, Pipeline, PipelineError, RestoreOptions, RestoreOutcome, StateError, Stream, Windowing,
};

/// `(key, window start, count, sum)`
type Totals = (u32, i64, u64, i64);

fn source(name: &str) -> Stream<Ev, Ev> {
    Pipeline::builder(name)
        .watermarks(ooo(5))
        .max_key_groups(16)
        .event_time(|e: &Ev| e.ts)
}

fn totals(s: Stream<Ev, Ev>) -> Stream<Ev, Totals> {
    s.key_by(|e: &Ev| e.key)
        .window(Windowing::tumbling(20).unwrap())
        .aggregate((Count, Sum::of(|e: &Ev| e.v)), |k, w, _p, (n, s)| (*k, w.start, n, s))
}

/// Repeats dropped, then totals per key and window; with `extra_steps`, a filter (that drops
/// key 99) and a map before them.
fn revenue(extra_steps: bool) -> Pipeline<Ev, Totals> {
    let s = source("revenue");
    let s = if extra_steps {
        s.filter(|e| e.key != 99).map(|e| e)
    } else {
        s
    };
    totals(s.deduplicate(|e| (e.key, e.ts), 1_000)).sink("out")
}

/// Keys 0..4 with repeats and disorder; key 99 only after `SPLIT`.
fn input() -> Vec<Ev> {
    (0..200i64)
        .map(|i| {
            let key = if i >= SPLIT as i64 && i % 9 == 0 {
                99
            } else {
                (i % 4) as u32
            };
            ev(key, i - (i % 5) * 2 - (i % 3), i)
        })
        .collect()
}

const SPLIT: usize = 90;

fn feed<Out: Send + 'static>(e: &mut Engine<Ev, Out>, input: &[Ev], from: usize, to: usize) {
    let s = e.partition("s0");
    for (i, x) in input.iter().enumerate().take(to).skip(from) {
        e.process(s, i as u64, 0, x.clone());
    }
}

/// The outputs of `p` after `SPLIT` records in an uninterrupted run.
fn uninterrupted(p: &Pipeline<Ev, Totals>) -> Vec<Output<Totals>> {
    let mut e = p.engine();
    feed(&mut e, &input(), 0, SPLIT);
    e.drain_output();
    feed(&mut e, &input(), SPLIT, input().len());
    e.finish();
    e.drain_output()
}

/// The image of `p` after `SPLIT` records.
fn image_of<Out: Send + 'static>(p: &Pipeline<Ev, Out>) -> CheckpointImage {
    let mut e = p.engine();
    feed(&mut e, &input(), 0, SPLIT);
    CheckpointImage::new(e.snapshot().unwrap())
}

fn ids<In: Send + 'static, Out: Send + 'static>(p: &Pipeline<In, Out>) -> Vec<&str> {
    p.stateful_operators().iter().map(|o| o.id()).collect()
}

#[test]
fn default_ids_count_operators_of_the_same_kind_and_ignore_stateless_steps() {
    assert_eq!(ids(&revenue(false)), ["deduplicate-0", "window_aggregate-0"]);
    assert_eq!(ids(&revenue(true)), ids(&revenue(false)));
    let two_windows = totals(source("two").flat_map(|e| vec![e.clone(), e]))
        .map(|t| ev(t.0, t.1, t.3))
        .deduplicate(|e| (e.key, e.ts), 10);
    let two_windows = totals(two_windows).sink("out");
    assert_eq!(
        ids(&two_windows),
        ["window_aggregate-0", "deduplicate-0", "window_aggregate-1"]
    );
}

#[test]
fn adding_and_removing_a_stateless_operator_before_a_window_keeps_its_state_across_a_restore() {
    for (before, after) in [(false, true), (true, false)] {
        let image = image_of(&revenue(before));
        let changed = revenue(after);
        let (mut restored, report) = Engine::restore_with(&changed, &image, RestoreOptions::strict()).unwrap();
        assert_eq!(report.restored(), ["deduplicate-0", "window_aggregate-0"]);
        assert!(report.is_complete());
        feed(&mut restored, &input(), SPLIT, input().len());
        restored.finish();
        let expected = uninterrupted(&changed);
        assert!(expected.len() > 10);
        assert_eq!(
            restored.drain_output(),
            expected,
            "extra steps before: {before}, after: {after}"
        );
    }
}

#[test]
fn result_ids_do_not_depend_on_the_stateless_steps_before_the_operator() {
    let (a, b) = (uninterrupted(&revenue(false)), uninterrupted(&revenue(true)));
    let unfiltered: Vec<_> = a.into_iter().filter(|o| o.value.0 != 99).collect();
    assert_eq!(b, unfiltered);
}

fn named(uid: &str) -> Pipeline<Ev, Totals> {
    totals(source("revenue")).uid(uid).unwrap().sink("out")
}

#[test]
fn renaming_a_uid_is_refused_with_a_message_naming_both_ids() {
    let image = image_of(&named("revenue-window"));
    assert!(Engine::restore(&named("revenue-window"), &image).is_ok());
    let err = Engine::restore(&named("revenue-totals"), &image).err().unwrap();
    let StateError::UnmatchedState {
        unmatched,
        starts_empty,
    } = &err
    else {
        panic!("not refused as unmatched state: {err}");
    };
    assert_eq!(
        (unmatched.as_slice(), starts_empty.as_slice()),
        (&["revenue-window".to_owned()][..], &["revenue-totals".to_owned()][..])
    );
    let message = err.to_string();
    assert!(
        message.contains("\"revenue-window\"") && message.contains("\"revenue-totals\""),
        "{message}"
    );
    // Giving an operator with a default id a uid is a rename too.
    let defaults = image_of(&totals(source("revenue")).sink("out"));
    let err = Engine::restore(&named("revenue-window"), &defaults)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("\"window_aggregate-0\"") && err.contains("\"revenue-window\""),
        "{err}"
    );
}

#[test]
fn a_duplicate_uid_is_refused_by_the_builder() {
    let twice = totals(source("p").filter(|_| true))
        .uid("totals")
        .unwrap()
        .map(|t| ev(t.0, t.1, t.3));
    let err = totals(twice).uid("totals").err();
    assert_eq!(err, Some(PipelineError::DuplicateOperatorId { id: "totals".into() }));
    assert!(err.unwrap().to_string().contains("\"totals\""));
    // nor can a uid take the default id another operator has
    let first = totals(source("p")).map(|t| ev(t.0, t.1, t.3));
    assert_eq!(
        totals(first).uid("window_aggregate-0").err(),
        Some(PipelineError::DuplicateOperatorId {
            id: "window_aggregate-0".into()
        })
    );
}

#[test]
fn a_uid_that_names_no_stateful_operator_or_would_clash_later_is_refused() {
    assert!(matches!(
        source("p").map(|e| e).uid("m"),
        Err(PipelineError::UidOnStatelessStep { step: "map", .. })
    ));
    assert!(matches!(
        source("p").uid("start"),
        Err(PipelineError::UidOnStatelessStep { .. })
    ));
    assert!(matches!(
        totals(source("p")).uid("a").unwrap().uid("b"),
        Err(PipelineError::UidAlreadySet { .. })
    ));
    for uid in ["", "3-window_aggregate", "window_aggregate-1", "deduplicate-0"] {
        assert!(
            matches!(totals(source("p")).uid(uid), Err(PipelineError::InvalidUid { .. })),
            "{uid:?}"
        );
    }
    // its own default id is fine, and so is an earlier one that is free
    assert!(totals(source("p")).uid("window_aggregate-0").is_ok());
    let first = totals(source("p")).uid("minute").unwrap().map(|t| ev(t.0, t.1, t.3));
    assert!(totals(first).uid("window_aggregate-0").is_ok());
}

#[test]
fn a_uid_after_a_join_names_its_window_operator() {
    let joined = source("p")
        .key_by(|e: &Ev| e.key)
        .window(Windowing::tumbling(10).unwrap())
        .join(
            2,
            |e: &Ev| usize::from(e.side),
            |k, _w, lists| vec![(*k, lists[0].len(), lists[1].len())],
        )
        .uid("pairs")
        .unwrap()
        .sink("out");
    assert_eq!(ids(&joined), ["pairs"]);
    assert_eq!(joined.stateful_operators()[0].kind(), "window_aggregate");
}

#[test]
fn an_operator_added_before_one_of_its_kind_leaves_it_its_state_when_it_takes_its_old_default_id() {
    let image = image_of(&totals(source("revenue")).sink("out"));
    let minutes = totals(source("revenue"))
        .uid("minutes")
        .unwrap()
        .map(|t| ev(t.0, t.1, t.3));
    let changed = totals(minutes).uid("window_aggregate-0").unwrap().sink("out");
    let (_, report) = Engine::restore_with(&changed, &image, RestoreOptions::strict()).unwrap();
    assert_eq!(report.restored(), ["window_aggregate-0"]);
    assert_eq!(report.starts_empty(), ["minutes"]);
}

#[test]
fn dropped_state_is_refused_unless_allowed_and_then_reported() {
    let image = image_of(&revenue(false));
    let without_deduplicate = totals(source("revenue")).sink("out");
    let err = Engine::restore(&without_deduplicate, &image).err().unwrap();
    assert!(
        matches!(&err, StateError::UnmatchedState { unmatched, starts_empty }
            if unmatched == &["deduplicate-0"] && starts_empty.is_empty()),
        "{err}"
    );
    let (mut engine, report) =
        Engine::restore_with(&without_deduplicate, &image, RestoreOptions::allowing_dropped_state()).unwrap();
    assert_eq!(report.restored(), ["window_aggregate-0"]);
    assert_eq!(report.dropped(), ["deduplicate-0"]);
    assert!(!report.is_complete());
    // The store forgets the dropped state: the next checkpoint is full and lists only the
    // pipeline's operators, so a later restore needs no permission.
    let next = engine.snapshot().unwrap();
    assert!(next.full);
    let mut image = image;
    image.apply(next).unwrap();
    let (_, report) = Engine::restore_with(&without_deduplicate, &image, RestoreOptions::strict()).unwrap();
    assert!(report.is_complete(), "{report:?}");
    // The adoption of a parent shard's state follows the same rule.
    assert!(matches!(
        Engine::adopt(&without_deduplicate, &[image_of(&revenue(false))], &|_| true),
        Err(StateError::UnmatchedState { .. })
    ));
    let (_, reports) = Engine::adopt_with(
        &without_deduplicate,
        &[image_of(&revenue(false))],
        &|_| true,
        RestoreOptions::allowing_dropped_state(),
    )
    .unwrap();
    assert_eq!(reports[0].dropped(), ["deduplicate-0"]);
}

#[test]
fn a_new_stateful_operator_starts_empty_and_is_reported() {
    let image = image_of(&totals(source("revenue")).sink("out"));
    let with_deduplicate = revenue(false);
    let (mut engine, report) = Engine::restore_with(&with_deduplicate, &image, RestoreOptions::strict()).unwrap();
    assert_eq!(report.restored(), ["window_aggregate-0"]);
    assert_eq!(report.starts_empty(), ["deduplicate-0"]);
    assert_eq!(report.operators[0].outcome, RestoreOutcome::StartsEmpty);
    assert!(!report.is_complete());
    assert!(
        !engine.snapshot().unwrap().full,
        "nothing moved: incremental checkpoints go on"
    );
    let s = engine.partition("s0");
    engine.process(s, 1_000, 0, ev(1, 500, 1));
    engine.process(s, 1_001, 0, ev(1, 500, 1));
    assert_eq!(
        engine.metrics().duplicates_dropped,
        1,
        "the new operator works from empty state"
    );
}

#[test]
fn a_snapshot_taken_after_an_image_was_restored_under_other_ids_is_full() {
    // An image of format version 1: the positional ids of `revenue(true)` (filter, map, then
    // deduplicate at 2 and the window at 3).
    let mut checkpoint = image_of(&revenue(true)).to_checkpoint();
    // Format version 1 had no state schemas (see shardflow_engine::schema).
    checkpoint.operators.retain(|o| !o.operator.starts_with("@schema/"));
    for (op, old) in checkpoint
        .operators
        .iter_mut()
        .zip(["2-deduplicate", "3-window_aggregate"])
    {
        op.operator = old.into();
    }
    let image = CheckpointImage::new(Checkpoint {
        full: false,
        ..checkpoint
    });
    let (mut engine, report) = Engine::restore_with(&revenue(false), &image, RestoreOptions::strict()).unwrap();
    assert_eq!(
        report.operators[1].outcome,
        RestoreOutcome::Restored {
            from: "3-window_aggregate".into()
        }
    );
    let first = engine.snapshot().unwrap();
    assert!(first.full);
    let stored: Vec<&str> = first.operators.iter().map(|o| o.operator.as_str()).collect();
    assert_eq!(
        stored,
        [
            "deduplicate-0",
            "window_aggregate-0",
            "@schema/deduplicate-0",
            "@schema/window_aggregate-0"
        ]
    );
    assert!(!engine.snapshot().unwrap().full, "only the first");
    // A store that keeps operators a full checkpoint does not list holds both: the positional
    // entries are stale and superseded by the entries under the default ids.
    let mut both = image.to_checkpoint();
    both.operators.extend(first.operators.clone());
    let (_, report) =
        Engine::restore_with(&revenue(false), &CheckpointImage::new(both), RestoreOptions::strict()).unwrap();
    assert_eq!(report.restored(), ["deduplicate-0", "window_aggregate-0"]);
    assert_eq!(
        report.operators[3].outcome,
        RestoreOutcome::Superseded {
            by: "window_aggregate-0".into()
        }
    );
    assert!(report.is_complete());
}
