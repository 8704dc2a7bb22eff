//! State evolution: every checkpoint stores the schema (version, type and shape) of each
//! operator's state; a restore migrates state of an older version through the operator's migration and
//! refuses, naming the operator, a state type it cannot read.

mod common;

use common::*;
use serde::{Deserialize, Serialize};
use shardflow_engine::checkpoint::CheckpointImage;
use shardflow_engine::combine::{from_fns, migrate_from, Combiner};
use shardflow_engine::schema::StateSchema;
use shardflow_engine::{
    Engine, KeyedProcessFunction, Pipeline, PipelineError, ProcessContext, RestoreOptions, RestoreOutcome, StateError,
    TimeDomain, Timestamp, Windowing,
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
