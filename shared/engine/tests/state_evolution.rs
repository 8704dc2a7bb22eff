//! State evolution: every checkpoint stores the schema (version, type and shape) of each
//! operator's state; a restore migrates state of an older version through the operator's migration and
//! refuses, naming the operator, a state type it cannot read.

mod common;

use common::*;
use serde::{Deserialize, Serialize};
use shardflow_engine::checkpoint::CheckpointImage;
use shardflow_engine::combine::{from_fns, migrate_from, Combiner};
use shardflow_engine::schema::{from_version, NoMigration, StateSchema};
use shardflow_engine::{
    Engine, IntervalJoinSide, KeyedProcessFunction, Pipeline, PipelineError, ProcessContext, RestoreOptions,
    RestoreOutcome, StateError, TimeDomain, Timestamp, Windowing,
};

/// Version 2 of the window's accumulator: version 1 was the count alone.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Totals {
    count: u64,
    sum: i64,
}

/// `(key, window start, count, sum)` per key and window of 20 ms, aggregated by `combiner`,
/// whose operator is `totals`.
fn totals<C: Combiner<Ev, Out = (u64, i64)>>(combiner: C) -> Pipeline<Ev, (u32, i64, u64, i64)> {
    Pipeline::builder("totals")
        .watermarks(ooo(0))
        .max_key_groups(8)
        .event_time(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key)
        .window(Windowing::tumbling(20).unwrap())
        .aggregate(combiner, |k, w, _, (n, s)| (*k, w.start, n, s))
        .uid("totals")
        .unwrap()
        .sink("out")
}

fn count_only() -> impl Combiner<Ev, Out = (u64, i64)> {
    from_fns(
        || 0u64,
        |n: &mut u64, _: &Ev| *n += 1,
        |n: &mut u64, m: u64| *n += m,
        |n: &u64| (*n, 0),
    )
}

fn count_and_sum() -> impl Combiner<Ev, Out = (u64, i64), Acc = Totals> {
    from_fns(
        || Totals { count: 0, sum: 0 },
        |t: &mut Totals, e: &Ev| {
            t.count += 1;
            t.sum += e.v;
        },
        |t: &mut Totals, o: Totals| {
            t.count += o.count;
            t.sum += o.sum;
        },
        |t: &Totals| (t.count, t.sum),
    )
}

/// The image of `p` after keys 1 and 2 each saw two records of the window [0, 20).
fn image_of(p: &Pipeline<Ev, (u32, i64, u64, i64)>) -> CheckpointImage {
    let mut e = p.engine();
    let s = e.partition("s0");
    for (i, x) in [ev(1, 1, 10), ev(2, 2, 20), ev(1, 3, 30), ev(2, 4, 40)]
        .into_iter()
        .enumerate()
    {
        e.process(s, i as u64, 0, x);
    }
    CheckpointImage::new(e.snapshot().unwrap())
}

/// Feeds key 1 a record at 5 of value 7 and finishes: every window's result, sorted.
fn finish_after_one_more(mut e: Engine<Ev, (u32, i64, u64, i64)>) -> Vec<(u32, i64, u64, i64)> {
    let s = e.partition("s0");
    e.process(s, 10, 0, ev(1, 5, 7));
    e.finish();
    let mut out = values(&e.drain_output());
    out.sort();
    out
}

#[test]
fn a_field_added_with_a_migration_restores_and_the_next_snapshot_stores_the_new_type() {
    let image = image_of(&totals(count_only()));
    let migrated = || totals(migrate_from(count_and_sum(), 1, |count: u64| Totals { count, sum: 0 }));
    assert_eq!(migrated().stateful_operators()[0].schema().version, 2);
    let (mut engine, report) = Engine::restore_with(&migrated(), &image, RestoreOptions::strict()).unwrap();
    assert_eq!(
        report.operators[0].outcome,
        RestoreOutcome::Migrated {
            from: "totals".into(),
            version: 1
        }
    );
    assert_eq!(report.migrated(), ["totals"]);
    assert!(!report.is_plain());
    // The whole state is rewritten in the new type, then restores as stored.
    let rewritten = engine.snapshot().unwrap();
    assert!(rewritten.full, "a migrated state is rewritten whole");
    let (restored, report) =
        Engine::restore_with(&migrated(), &CheckpointImage::new(rewritten), RestoreOptions::strict()).unwrap();
    assert!(report.is_plain(), "{report:?}");
    assert_eq!(
        finish_after_one_more(restored),
        vec![(1, 0, 3, 7), (2, 0, 2, 0)],
        "the counts carried over; the sums start with the migration"
    );
}

/// The accumulator of the build before: `Totals` with the count alone.
mod before {
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct Totals {
        pub count: u64,
    }
}

fn count_in_struct() -> impl Combiner<Ev, Out = (u64, i64), Acc = before::Totals> {
    from_fns(
        || before::Totals { count: 0 },
        |t: &mut before::Totals, _: &Ev| t.count += 1,
        |t: &mut before::Totals, o: before::Totals| t.count += o.count,
        |t: &before::Totals| (t.count, 0),
    )
}

/// `image` as the build before would have written it had its `Totals` lived at the path of this
/// build's (a field added to the same struct): the stored type name is this build's.
fn as_if_at_the_same_path(image: &CheckpointImage) -> CheckpointImage {
    let mut checkpoint = image.to_checkpoint();
    let entry = checkpoint
        .operators
        .iter_mut()
        .find(|o| o.operator == "@schema/totals")
        .expect("a schema entry");
    let mut schema: StateSchema = postcard::from_bytes(&entry.meta).unwrap();
    assert_eq!(schema.shape.as_deref(), Some("Totals{count:u64}"));
    schema.type_name = std::any::type_name::<Totals>().to_owned();
    entry.meta = postcard::to_allocvec(&schema).unwrap();
    CheckpointImage::new(checkpoint)
}

#[test]
fn a_field_added_to_a_same_named_accumulator_without_a_migration_is_refused_naming_the_operator_and_the_fix() {
    let image = as_if_at_the_same_path(&image_of(&totals(count_in_struct())));
    let err = Engine::restore_with(&totals(count_and_sum()), &image, RestoreOptions::strict())
        .err()
        .expect("refused: the stored accumulators have no sum");
    assert!(matches!(err, StateError::IncompatibleState { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("\"totals\""), "names the operator: {message}");
    assert!(
        message.contains("Totals{count:u64}") && message.contains("Totals{count:u64,sum:i64}"),
        "shows both shapes: {message}"
    );
    assert!(message.contains("migrate_from"), "names the fix: {message}");

    // With the migration, the counts carry over.
    let migrated = totals(migrate_from(count_and_sum(), 1, |t: before::Totals| Totals {
        count: t.count,
        sum: 0,
    }));
    let (engine, report) = Engine::restore_with(&migrated, &image, RestoreOptions::strict()).unwrap();
    assert_eq!(report.migrated(), ["totals"]);
    assert_eq!(finish_after_one_more(engine), vec![(1, 0, 3, 7), (2, 0, 2, 0)]);
}

#[test]
fn a_migration_reads_state_written_before_schemas_as_version_1() {
    let mut checkpoint = image_of(&totals(count_only())).to_checkpoint();
    checkpoint.operators.retain(|o| !o.operator.starts_with("@schema/"));
    let image = CheckpointImage::new(checkpoint);
    // Without a migration the unversioned state restores as version 1 of the current type.
    assert!(
        Engine::restore_with(&totals(count_only()), &image, RestoreOptions::strict())
            .unwrap()
            .1
            .is_plain()
    );
    let migrated = totals(migrate_from(count_and_sum(), 1, |count: u64| Totals { count, sum: -1 }));
    let (engine, report) = Engine::restore_with(&migrated, &image, RestoreOptions::strict()).unwrap();
    assert_eq!(report.migrated(), ["totals"]);
    assert_eq!(finish_after_one_more(engine), vec![(1, 0, 3, 6), (2, 0, 2, -1)]);
}

#[test]
fn a_changed_state_type_without_a_migration_is_refused_naming_the_operator_and_both_types() {
    let image = image_of(&totals(count_only()));
    let err = Engine::restore_with(
        &totals(count_and_sum()),
        &image,
        RestoreOptions::allowing_dropped_state(),
    )
    .err()
    .expect("refused, even when dropped state is allowed");
    assert!(matches!(err, StateError::IncompatibleState { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("\"totals\""), "{message}");
    assert!(message.contains("u64") && message.contains("Totals"), "{message}");
    assert!(message.contains("migrat"), "{message}");
}

#[test]
fn state_of_a_newer_build_or_an_older_version_without_a_migration_is_refused() {
    let v2 = totals(migrate_from(count_and_sum(), 1, |count: u64| Totals { count, sum: 0 }));
    let newer = image_of(&v2);
    let err = Engine::restore(&totals(count_and_sum()), &newer).err().unwrap();
    assert!(err.to_string().contains("newer build"), "{err}");
    // A version 3 that migrates only from version 2 cannot read version 1.
    let older = image_of(&totals(count_only()));
    let v3 = totals(migrate_from(count_and_sum(), 2, |t: Totals| t));
    let err = Engine::restore(&v3, &older).err().unwrap();
    assert!(err.to_string().contains("no migration"), "{err}");
}

/// Keeps the last value seen per key, as `S`.
struct Last<S>(fn(&Ev) -> S);

impl<S: Serialize + serde::de::DeserializeOwned + Send + 'static> KeyedProcessFunction<u32, Ev, S, u32> for Last<S> {
    fn process(&self, key: &u32, value: Ev, cx: &mut ProcessContext<'_, S, u32>) {
        *cx.state() = Some((self.0)(&value));
        cx.emit(*key);
    }

    fn on_timer(&self, _: &u32, _: Timestamp, _: TimeDomain, _: &mut ProcessContext<'_, S, u32>) {}
}

fn last<S: Serialize + serde::de::DeserializeOwned + Send + 'static>(f: fn(&Ev) -> S) -> Pipeline<Ev, u32> {
    Pipeline::builder("last")
        .event_time(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key)
        .process(Last(f))
        .sink("out")
}

#[test]
fn a_keyed_process_function_whose_state_type_changed_is_refused() {
    let mut e = last(|e| e.v).engine();
    let s = e.partition("s0");
    e.process(s, 0, 0, ev(1, 1, 5));
    let image = CheckpointImage::new(e.snapshot().unwrap());
    assert!(Engine::restore(&last(|e| e.v), &image).is_ok());
    let err = Engine::restore(&last(|e| e.v.to_string()), &image).err().unwrap();
    assert!(err.to_string().contains("\"keyed_process-0\""), "{err}");
}

#[test]
fn a_uid_cannot_take_the_prefix_of_schema_entries() {
    let refused = Pipeline::builder("p")
        .event_time(|e: &Ev| e.ts)
        .deduplicate(|e| e.key, 10)
        .uid("@schema/x");
    assert!(matches!(refused, Err(PipelineError::InvalidUid { .. })));
}

// ---------------------------------------------------------------------------------------------
// Migrations of keyed process state, interval join buffers and deduplicate ids
// (`schema::from_version`).

/// Version 2 of `Last`'s state: version 1 was the value alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Seen {
    value: i64,
    at: Timestamp,
}

/// Keeps the last value per key and a timer at 100; emits the previous state on each record
/// and `-1` at the timer.
struct Remember;

impl KeyedProcessFunction<u32, Ev, Seen, (u32, Option<Seen>)> for Remember {
    fn process(&self, key: &u32, value: Ev, cx: &mut ProcessContext<'_, Seen, (u32, Option<Seen>)>) {
        let before = cx.state().replace(Seen {
            value: value.v,
            at: value.ts,
        });
        cx.emit((*key, before));
    }

    fn on_timer(&self, key: &u32, _: Timestamp, _: TimeDomain, cx: &mut ProcessContext<'_, Seen, (u32, Option<Seen>)>) {
        cx.emit((*key, None));
    }
}

#[test]
fn a_keyed_process_functions_state_migrates_and_its_timers_are_kept() {
    struct Timed;
    impl KeyedProcessFunction<u32, Ev, i64, u32> for Timed {
        fn process(&self, key: &u32, value: Ev, cx: &mut ProcessContext<'_, i64, u32>) {
            *cx.state() = Some(value.v);
            cx.register_timer(TimeDomain::EventTime, 100);
            cx.emit(*key);
        }
        fn on_timer(&self, _: &u32, _: Timestamp, _: TimeDomain, _: &mut ProcessContext<'_, i64, u32>) {}
    }
    let v1 = Pipeline::builder("last")
        .event_time(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key)
        .process(Timed)
        .sink("out");
    let mut e = v1.engine();
    let s = e.partition("s0");
    e.process(s, 0, 0, ev(1, 1, 5));
    e.process(s, 1, 0, ev(2, 2, 6));
    let image = CheckpointImage::new(e.snapshot().unwrap());

    let v2 = |migrating: bool| {
        let keyed = Pipeline::builder("last")
            .event_time(|e: &Ev| e.ts)
            .key_by(|e: &Ev| e.key);
        let s = if migrating {
            keyed.process_migrating(Remember, from_version(1, |value: i64| Seen { value, at: -1 }))
        } else {
            keyed.process(Remember)
        };
        s.sink("out")
    };
    let err = Engine::restore(&v2(false), &image).err().expect("refused");
    let message = err.to_string();
    assert!(
        message.contains("\"keyed_process-0\"") && message.contains("from_version"),
        "{message}"
    );

    let (mut restored, report) = Engine::restore_with(&v2(true), &image, RestoreOptions::strict()).unwrap();
    assert_eq!(report.migrated(), ["keyed_process-0"]);
    restored.process(s, 2, 0, ev(1, 3, 7));
    restored.finish();
    let out = values(&restored.drain_output());
    assert_eq!(
        out,
        [
            (1, Some(Seen { value: 5, at: -1 })),
            // The timers registered by version 1 fire: one per key.
            (1, None),
            (2, None),
        ]
    );
}

/// An impression or click of version 1 of the input.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ClickV1 {
    user: u32,
    ts: Timestamp,
    is_click: bool,
}

/// Version 2: a nullable column added at the source.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Click {
    user: u32,
    ts: Timestamp,
    is_click: bool,
    campaign: Option<String>,
}

fn click_join<In: Clone + Serialize + serde::de::DeserializeOwned + Send + Sync + 'static>(
    ts: fn(&In) -> Timestamp,
    user: fn(&In) -> u32,
    is_click: fn(&In) -> bool,
    migration: impl shardflow_engine::schema::StateMigration<In>,
) -> Pipeline<In, (u32, Timestamp, Timestamp)> {
    Pipeline::builder("clicks")
        .watermarks(ooo(0))
        .event_time(ts)
        .key_by(user)
        .interval_join_migrating(
            move |r| {
                if is_click(r) {
                    IntervalJoinSide::Right
                } else {
                    IntervalJoinSide::Left
                }
            },
            0,
            50,
            move |u, l, r| (*u, ts(l), ts(r)),
            migration,
        )
        .sink("joined")
}

#[test]
fn an_interval_joins_buffered_values_migrate_to_a_record_type_with_a_column_added() {
    let v1 = click_join(|c: &ClickV1| c.ts, |c| c.user, |c| c.is_click, NoMigration);
    let mut e = v1.engine();
    let s = e.partition("s0");
    e.process(
        s,
        0,
        0,
        ClickV1 {
            user: 1,
            ts: 10,
            is_click: false,
        },
    );
    let image = CheckpointImage::new(e.snapshot().unwrap());

    let unmigrated = click_join(|c: &Click| c.ts, |c| c.user, |c| c.is_click, NoMigration);
    let err = Engine::restore(&unmigrated, &image).err().expect("refused");
    assert!(err.to_string().contains("\"interval_join-0\""), "{err}");

    let migrated = click_join(
        |c: &Click| c.ts,
        |c| c.user,
        |c| c.is_click,
        from_version(1, |c: ClickV1| Click {
            user: c.user,
            ts: c.ts,
            is_click: c.is_click,
            campaign: None,
        }),
    );
    let (mut restored, report) = Engine::restore_with(&migrated, &image, RestoreOptions::strict()).unwrap();
    assert_eq!(report.migrated(), ["interval_join-0"]);
    restored.process(
        s,
        1,
        0,
        Click {
            user: 1,
            ts: 30,
            is_click: true,
            campaign: Some("winter".into()),
        },
    );
    assert_eq!(
        values(&restored.drain_output()),
        [(1, 10, 30)],
        "the buffered impression joined"
    );
}

fn dedup<I: shardflow_engine::state::StateKey>(
    id: fn(&Ev) -> I,
    migration: impl shardflow_engine::schema::StateMigration<I>,
) -> Pipeline<Ev, Ev> {
    Pipeline::builder("dedup")
        .watermarks(ooo(0))
        .max_key_groups(32)
        .event_time(|e: &Ev| e.ts)
        .deduplicate_migrating(id, 1_000, migration)
        .sink("once")
}

#[test]
fn deduplicate_ids_migrate_to_another_type_and_move_to_their_new_key_groups() {
    let mut e = dedup(|e| u64::from(e.key), NoMigration).engine();
    let s = e.partition("s0");
    for (i, key) in (0..40).enumerate() {
        e.process(s, i as u64, 0, ev(key, 10, 0));
    }
    assert_eq!(e.drain_output().len(), 40);
    let image = CheckpointImage::new(e.snapshot().unwrap());

    let err = Engine::restore(&dedup(|e| e.key.to_string(), NoMigration), &image)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("\"deduplicate-0\""), "{err}");

    let migrated = dedup(|e| e.key.to_string(), from_version(1, |id: u64| id.to_string()));
    let (mut restored, report) = Engine::restore_with(&migrated, &image, RestoreOptions::strict()).unwrap();
    assert_eq!(report.migrated(), ["deduplicate-0"]);
    for (i, key) in (0..41).enumerate() {
        restored.process(s, 100 + i as u64, 0, ev(key, 10, 0));
    }
    let passed: Vec<u32> = restored.drain_output().iter().map(|o| o.value.key).collect();
    assert_eq!(
        passed,
        [40],
        "every repeat of a migrated id is dropped, wherever its group moved"
    );
    assert_eq!(restored.metrics().duplicates_dropped, 40);
}

// ---------------------------------------------------------------------------------------------
// Rollback: a newer build's image restored into the build before it.

/// `totals(count_only())` behind a `deduplicate` with uid `once`: a newer build that added an
/// operator.
fn with_dedup() -> Pipeline<Ev, (u32, i64, u64, i64)> {
    Pipeline::builder("totals")
        .watermarks(ooo(0))
        .max_key_groups(8)
        .event_time(|e: &Ev| e.ts)
        .deduplicate(|e: &Ev| (e.key, e.ts), 100)
        .uid("once")
        .unwrap()
        .key_by(|e: &Ev| e.key)
        .window(Windowing::tumbling(20).unwrap())
        .aggregate(count_only(), |k, w, _, (n, s)| (*k, w.start, n, s))
        .uid("totals")
        .unwrap()
        .sink("out")
}

#[test]
fn rolling_back_accepts_what_the_older_build_does_not_know_of_schemas_and_refuses_incompatible_state() {
    let older = || totals(count_only());

    // The newer build added an operator: its state (not its schema entry) is what is refused,
    // and allowing dropped state drops it with its schema entry.
    let newer_image = image_of(&with_dedup());
    match Engine::restore(&older(), &newer_image).err().expect("refused") {
        StateError::UnmatchedState { unmatched, .. } => assert_eq!(unmatched, ["once"]),
        other => panic!("{other}"),
    }
    let (rolled_back, report) =
        Engine::restore_with(&older(), &newer_image, RestoreOptions::allowing_dropped_state()).unwrap();
    assert_eq!(report.dropped(), ["once"]);
    assert_eq!(report.restored(), ["totals"]);
    assert_eq!(finish_after_one_more(rolled_back), vec![(1, 0, 3, 0), (2, 0, 2, 0)]);

    // A schema entry with fields appended after the ones this build knows restores as stored.
    let mut extended = image_of(&older()).to_checkpoint();
    let entry = extended
        .operators
        .iter_mut()
        .find(|o| o.operator == "@schema/totals")
        .unwrap();
    entry.meta.extend_from_slice(&[1, 4, b'n', b'e', b'x', b't']);
    let (_, report) = Engine::restore_with(
        &older(),
        &CheckpointImage::new(extended.clone()),
        RestoreOptions::strict(),
    )
    .expect("a newer entry with a field appended");
    assert!(report.is_plain(), "{report:?}");

    // A schema entry this build cannot read is refused, not taken for state before schemas.
    extended
        .operators
        .iter_mut()
        .find(|o| o.operator == "@schema/totals")
        .unwrap()
        .meta = vec![0xff; 3];
    let err = Engine::restore(&older(), &CheckpointImage::new(extended))
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("\"totals\"") && err.to_string().contains("cannot be read"),
        "{err}"
    );

    // State the newer build migrated to version 2 is refused, naming the operator.
    let migrated = image_of(&totals(migrate_from(count_and_sum(), 1, |count: u64| Totals {
        count,
        sum: 0,
    })));
    let err = Engine::restore_with(&older(), &migrated, RestoreOptions::allowing_dropped_state())
        .err()
        .expect("refused even when dropping is allowed");
    assert!(matches!(err, StateError::IncompatibleState { .. }));
    assert!(
        err.to_string().contains("\"totals\"") && err.to_string().contains("newer build"),
        "{err}"
    );
}
