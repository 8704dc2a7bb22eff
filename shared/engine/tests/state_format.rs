//! The state format: dirty tracking (an incremental checkpoint writes only the key groups that
//! changed), full snapshots, checkpoints of this release kept as binary fixtures that every later
//! release must still restore, and refusal of a checkpoint of another pipeline.
//!
//! Regenerate the fixtures of the current format version (only when it is bumped on purpose; the
//! fixtures of older versions are never rewritten, their names say their version):
//! `SHARDFLOW_WRITE_FIXTURES=1 cargo test -p shardflow-engine --test state_format`

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use common::*;
use shardflow_engine::checkpoint::{Checkpoint, CheckpointImage, FORMAT_VERSION};
use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::state::key_group;
use shardflow_engine::{
    Engine, Firing, IntervalJoinSide, Output, Pipeline, RestoreOptions, RestoreOutcome, StateError, Trigger, Windowing,
};

const GROUPS: u16 = 128;

/// Count and sum per key in one long window (state stays until the end).
fn long_window(name: &str, key_groups: u16) -> Pipeline<Ev, (u32, u64, i64)> {
    Pipeline::builder(name)
        .watermarks(ooo(0))
        .max_key_groups(key_groups)
        .event_time(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key)
        .window(Windowing::tumbling(1_000_000).unwrap())
        .aggregate((Count, Sum::of(|e: &Ev| e.v)), |k, _w, _p, (n, s)| (*k, n, s))
        .sink("out")
}

fn groups_written(cp: &Checkpoint) -> BTreeSet<u16> {
    cp.operators
        .iter()
        .flat_map(|o| o.key_groups.iter().map(|g| g.key_group))
        .collect()
}

fn groups_of(keys: impl IntoIterator<Item = u32>) -> BTreeSet<u16> {
    keys.into_iter().map(|k| key_group(&k, GROUPS)).collect()
}

fn key_group_bytes(cp: &Checkpoint) -> usize {
    cp.operators
        .iter()
        .flat_map(|o| o.key_groups.iter().map(|g| g.bytes.len()))
        .sum()
}

#[test]
fn dirty_bytes_equal_the_key_group_bytes_of_the_next_incremental_checkpoint_across_batches_and_restores() {
    let mut e = long_window("dirty-bytes", GROUPS).engine();
    let s = e.partition("s0");
    assert_eq!(e.dirty_bytes(), 0, "a fresh engine");
    let mut off = 0;
    // Several "batches" between checkpoints, asked after each (as an interval commit does).
    let mut asked = Vec::new();
    for batch in 0..4u32 {
        for key in (batch * 100)..(batch * 100 + 150) {
            e.process(s, off, 0, ev(key, 10, 1));
            off += 1;
        }
        asked.push(e.dirty_bytes());
    }
    assert!(
        asked.windows(2).all(|w| w[0] < w[1]),
        "grows with the dirty state: {asked:?}"
    );
    let first = e.snapshot().unwrap();
    assert_eq!(*asked.last().unwrap(), key_group_bytes(&first));
    assert_eq!(e.dirty_bytes(), 0, "a checkpoint cleans every group");

    // A restored engine: nothing dirty, then only the touched groups.
    let image = CheckpointImage::new(first);
    let mut r = Engine::restore(&long_window("dirty-bytes", GROUPS), &image).unwrap();
    assert_eq!(r.dirty_bytes(), 0, "a restored engine");
    let s = r.partition("s0");
    for key in [3u32, 77, 150] {
        r.process(s, off, 0, ev(key, 20, 1));
        off += 1;
    }
    let dirty = r.dirty_bytes();
    let second = r.snapshot().unwrap();
    assert!(dirty > 0);
    assert_eq!(dirty, key_group_bytes(&second));
}

#[test]
fn an_incremental_checkpoint_writes_exactly_the_key_groups_of_the_touched_keys() {
    let mut e = long_window("dirty", GROUPS).engine();
    let s = e.partition("s0");
    let mut off = 0;
    for key in 0..500u32 {
        e.process(s, off, 0, ev(key, 10, 1));
        off += 1;
    }
    let first = e.snapshot().unwrap();
    assert_eq!(
        groups_written(&first),
        groups_of(0..500),
        "a fresh engine's first checkpoint"
    );

    let touched = [3u32, 77, 150, 151, 400];
    for key in touched {
        e.process(s, off, 0, ev(key, 20, 1));
        off += 1;
    }
    let second = e.snapshot().unwrap();
    assert!(second.key_groups_written() <= touched.len());
    assert_eq!(groups_written(&second), groups_of(touched));
    assert!(!second.full);

    let third = e.snapshot().unwrap();
    assert_eq!(
        third.key_groups_written(),
        0,
        "nothing changed since the last checkpoint"
    );
    assert!(third.epoch > second.epoch && second.epoch > first.epoch);
}

#[test]
fn a_full_snapshot_writes_every_non_empty_key_group_and_only_those() {
    let mut e = long_window("full", GROUPS).engine();
    let s = e.partition("s0");
    for key in 0..40u32 {
        e.process(s, u64::from(key), 0, ev(key, 10, 1));
    }
    e.snapshot().unwrap();
    let full = e.snapshot_full().unwrap();
    assert!(full.full);
    let expected = groups_of(0..40);
    assert!(expected.len() < usize::from(GROUPS), "some groups are empty");
    assert_eq!(groups_written(&full), expected);
    assert!(full
        .operators
        .iter()
        .flat_map(|o| &o.key_groups)
        .all(|g| !g.bytes.is_empty()));
}

#[test]
fn state_emptied_by_the_watermark_is_written_as_deletes_and_then_no_more() {
    let mut e = long_window("deletes", GROUPS).engine();
    let s = e.partition("s0");
    for key in 0..10u32 {
        e.process(s, u64::from(key), 0, ev(key, 10, 1));
    }
    e.snapshot().unwrap();
    e.process(s, 10, 0, ev(1_000, 2_000_000, 1)); // fires and drops the first window
    assert_eq!(e.drain_output().len(), 10);
    let delta = e.snapshot().unwrap();
    let deleted: BTreeSet<u16> = delta
        .operators
        .iter()
        .flat_map(|o| o.key_groups.iter().filter(|g| g.bytes.is_empty()).map(|g| g.key_group))
        .collect();
    let kept = groups_of([1_000]);
    assert_eq!(deleted, &groups_of(0..10) - &kept, "emptied groups are deleted");
    let full = e.snapshot_full().unwrap();
    assert_eq!(groups_written(&full), kept, "only the new window's key is left");
}

#[test]
fn a_checkpoint_of_another_pipeline_or_key_group_count_is_refused() {
    let mut e = long_window("orders", GROUPS).engine();
    let s = e.partition("s0");
    e.process(s, 0, 0, ev(1, 10, 1));
    let image = CheckpointImage::new(e.snapshot().unwrap());
    assert!(Engine::restore(&long_window("orders", GROUPS), &image).is_ok());
    assert!(matches!(
        Engine::restore(&long_window("payments", GROUPS), &image),
        Err(StateError::Mismatch(_))
    ));
    assert!(matches!(
        Engine::restore(&long_window("orders", 256), &image),
        Err(StateError::Mismatch(_))
    ));
    // an increment of another pipeline cannot be applied to the image either
    let mut other = long_window("payments", GROUPS).engine();
    let p = other.partition("s0");
    other.process(p, 0, 0, ev(1, 10, 1));
    other.snapshot().unwrap();
    let mut image = image;
    assert!(matches!(
        image.apply(other.snapshot().unwrap()),
        Err(StateError::Mismatch(_))
    ));
}

#[test]
fn a_restored_engine_uses_the_watermark_strategy_of_the_pipeline_it_is_restored_into() {
    let strict = |ms| {
        Pipeline::builder("wm")
            .watermarks(ooo(ms))
            .event_time(|e: &Ev| e.ts)
            .map(|e| e.v)
            .sink("out")
    };
    let mut e = strict(100).engine();
    let s = e.partition("s0");
    e.process(s, 0, 0, ev(1, 1_000, 1));
    assert_eq!(e.watermark(), 900);
    let image = CheckpointImage::new(e.snapshot().unwrap());
    // redeployed with a tighter bound: the strategy is code, not state (as in Flink)
    let mut restored = Engine::restore(&strict(10), &image).unwrap();
    assert_eq!(restored.watermark(), 900, "the watermark itself is state and is kept");
    let s = restored.partition("s0");
    restored.process(s, 1, 0, ev(1, 1_001, 1));
    assert_eq!(restored.watermark(), 991);
}

#[test]
fn bytes_that_are_not_a_checkpoint_are_refused_with_an_error() {
    assert!(matches!(Checkpoint::decode(b""), Err(StateError::NotACheckpoint(_))));
    assert!(matches!(
        Checkpoint::decode(b"{\"json\": 1}"),
        Err(StateError::NotACheckpoint(_))
    ));
    let mut e = long_window("garbage", GROUPS).engine();
    let s = e.partition("s0");
    e.process(s, 0, 0, ev(1, 10, 1));
    let bytes = e.snapshot().unwrap().encode().unwrap();
    for cut in [6, bytes.len() / 2, bytes.len() - 1] {
        assert!(Checkpoint::decode(&bytes[..cut]).is_err(), "truncated at {cut}");
    }
    let mut newer = bytes.clone();
    newer[4..6].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    assert!(matches!(
        Checkpoint::decode(&newer),
        Err(StateError::UnsupportedVersion { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Fixtures: checkpoints of format version 1 (positional operator ids), restored by every later
// release; the one of `fixture_operators` was written by the last release of version 1.

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Writes the fixture when `SHARDFLOW_WRITE_FIXTURES` is set and it is of the current format
/// version (`name` holds `_v{FORMAT_VERSION}.`); reads it.
fn fixture(name: &str, written_now: &[u8]) -> Vec<u8> {
    let path = fixture_path(name);
    if std::env::var_os("SHARDFLOW_WRITE_FIXTURES").is_some() && name.contains(&format!("_v{FORMAT_VERSION}.")) {
        std::fs::write(&path, written_now).unwrap();
    }
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; generate it with SHARDFLOW_WRITE_FIXTURES=1 cargo test -p shardflow-engine --test state_format",
            path.display()
        )
    })
}

/// Tumbling windows with early panes by processing time, allowed lateness and accumulating
/// panes: slots with pending deadlines, fired on-time panes and late state all end up in the
/// fixture.
fn fixture_windows() -> Pipeline<Ev, (u32, u64, i64)> {
    Pipeline::builder("fixture-windows")
        .watermarks(ooo(5).with_idleness(1_000).unwrap())
        .max_key_groups(16)
        .event_time(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key)
        .window(Windowing::tumbling(20).unwrap())
        .trigger(
            Trigger::at_watermark()
                .with_early_firings(Firing::every_processing_ms(50))
                .with_allowed_lateness(30)
                .unwrap()
                .accumulating(),
        )
        .aggregate((Count, Sum::of(|e: &Ev| e.v)), |k, _w, _p, (n, s)| (*k, n, s))
        .sink("out")
}

type Pair = (u32, i64, i64);

fn fixture_interval_join() -> Pipeline<Ev, Pair> {
    Pipeline::builder("fixture-interval-join")
        .watermarks(ooo(20))
        .max_key_groups(16)
        .event_time(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key)
        .interval_join(
            |e: &Ev| {
                if e.side == 0 {
                    IntervalJoinSide::Left
                } else {
                    IntervalJoinSide::Right
                }
            },
            -10,
            10,
            |k, l, r| (*k, l.v, r.v),
        )
        .sink("out")
}

/// `(partition, arrival, event)`: two partitions, five keys, disorder, late data.
fn fixture_input() -> Vec<(usize, i64, Ev)> {
    (0..120i64)
        .map(|i| {
            let ts = i - (i % 7) * 3;
            let e = ev_side((i % 5) as u32, ts, i, (i % 2) as u8);
            ((i % 3 % 2) as usize, i * 7, e)
        })
        .collect()
}

fn feed<Out: Send + 'static>(e: &mut Engine<Ev, Out>, input: &[(usize, i64, Ev)], from: usize, to: usize) {
    let parts = [e.partition("a"), e.partition("b")];
    for (i, (p, arrival, x)) in input.iter().enumerate().take(to).skip(from) {
        e.process(parts[*p], i as u64, *arrival, x.clone());
    }
}

/// The outputs of an uninterrupted run after `from` records (those before are drained away).
fn expected_after<Out: Send + 'static>(
    p: &Pipeline<Ev, Out>,
    input: &[(usize, i64, Ev)],
    from: usize,
) -> Vec<Output<Out>> {
    let mut e = p.engine();
    feed(&mut e, input, 0, from);
    e.drain_output();
    feed(&mut e, input, from, input.len());
    e.finish();
    e.drain_output()
}

#[test]
fn a_window_checkpoint_chain_of_format_version_1_restores() {
    let input = fixture_input();
    let (base_at, delta_at) = (50, 80);
    let p = fixture_windows();
    let mut e = p.engine();
    feed(&mut e, &input, 0, base_at);
    let base_now = e.snapshot_full().unwrap().encode().unwrap();
    feed(&mut e, &input, base_at, delta_at);
    let delta_now = e.snapshot().unwrap().encode().unwrap();

    let base = fixture("window_aggregate_v1.base.sfck", &base_now);
    let delta = fixture("window_aggregate_v1.delta.sfck", &delta_now);
    assert_eq!(&base[..4], b"SFCK");
    assert_eq!(
        u16::from_le_bytes([base[4], base[5]]),
        1,
        "the fixture is of format version 1"
    );
    let base = Checkpoint::decode(&base).unwrap();
    assert!(
        base.key_groups_written() >= 4,
        "the fixture holds state of several keys"
    );
    let mut image = CheckpointImage::new(base);
    image.apply(Checkpoint::decode(&delta).unwrap()).unwrap();
    let mut restored = Engine::restore(&fixture_windows(), &image).unwrap();
    assert!(restored.partitions().iter().any(|x| x.max_timestamp > 0));
    feed(&mut restored, &input, delta_at, input.len());
    restored.finish();
    let got = restored.drain_output();
    let expected = expected_after(&p, &input, delta_at);
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
}

#[test]
fn an_interval_join_checkpoint_of_format_version_1_restores() {
    let input = fixture_input();
    let at = 60;
    let p = fixture_interval_join();
    let mut e = p.engine();
    feed(&mut e, &input, 0, at);
    let now = e.snapshot().unwrap().encode().unwrap();
    let bytes = fixture("interval_join_v1.sfck", &now);
    let checkpoint = Checkpoint::decode(&bytes).unwrap();
    assert!(
        checkpoint.key_groups_written() >= 4,
        "the fixture holds buffered records of several keys"
    );
    let image = CheckpointImage::new(checkpoint);
    let mut restored = Engine::restore(&fixture_interval_join(), &image).unwrap();
    feed(&mut restored, &input, at, input.len());
    restored.finish();
    let got = restored.drain_output();
    let expected = expected_after(&p, &input, at);
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
    assert_eq!(restored.metrics(), {
        let mut e = p.engine();
        feed(&mut e, &input, 0, input.len());
        e.finish();
        e.metrics()
    });
}

/// `(key, window start, count, sum)`
type Totals = (u32, i64, u64, i64);

/// Three stateful operators behind stateless steps, as the release before stable operator ids
/// numbered them by position: `1-deduplicate`, `9-window_aggregate`, `10-window_aggregate` (two
/// windows whose positions sort differently as text and as numbers).
fn fixture_operators() -> Pipeline<Ev, Totals> {
    fixture_operators_named(None)
}

/// [`fixture_operators`], the last window with uid `last` if given.
fn fixture_operators_named(last: Option<&str>) -> Pipeline<Ev, Totals> {
    let mut s = Pipeline::builder("fixture-operators")
        .watermarks(ooo(5))
        .max_key_groups(16)
        .event_time(|e: &Ev| e.ts)
        .filter(|e| e.v % 11 != 0)
        .deduplicate(|e| (e.key, e.ts.div_euclid(4)), 100);
    for _ in 0..7 {
        s = s.map(|e| e);
    }
    let s = s
        .key_by(|e: &Ev| e.key)
        .window(Windowing::tumbling(10).unwrap())
        .aggregate((Count, Sum::of(|e: &Ev| e.v)), |k, w, _p, (n, s)| (*k, w.start, n, s))
        .key_by(|t: &Totals| t.0)
        .window(Windowing::tumbling(40).unwrap())
        .aggregate((Count, Sum::of(|t: &Totals| t.3)), |k, w, _p, (n, s)| {
            (*k, w.start, n, s)
        });
    let s = match last {
        Some(uid) => s.uid(uid).unwrap(),
        None => s,
    };
    s.sink("out")
}

/// The records `fixture_operators` pipelines have seen when their fixtures were taken.
const OPERATORS_AT: usize = 70;

/// Fixture `name` of format `version`: the full checkpoint of `p` after `OPERATORS_AT` records
/// (written when `SHARDFLOW_WRITE_FIXTURES` says so, see [`fixture`]); checks its version and
/// that its operators are `ids`.
fn operators_fixture(p: &Pipeline<Ev, Totals>, name: &str, version: u16, ids: &[&str]) -> CheckpointImage {
    let mut e = p.engine();
    feed(&mut e, &fixture_input(), 0, OPERATORS_AT);
    let bytes = fixture(name, &e.snapshot_full().unwrap().encode().unwrap());
    assert_eq!(
        u16::from_le_bytes([bytes[4], bytes[5]]),
        version,
        "the format version of {name}"
    );
    let checkpoint = Checkpoint::decode(&bytes).unwrap();
    let stored: Vec<&str> = checkpoint.operators.iter().map(|o| o.operator.as_str()).collect();
    assert_eq!(stored, ids);
    assert!(
        checkpoint.operators.iter().all(|o| !o.key_groups.is_empty()),
        "every operator holds state"
    );
    CheckpointImage::new(checkpoint)
}

/// Feeds `restored` the rest of the fixture input: its results and metrics are those of an
/// uninterrupted run of `p`.
fn continues_as_uninterrupted(p: &Pipeline<Ev, Totals>, mut restored: Engine<Ev, Totals>) {
    let input = fixture_input();
    feed(&mut restored, &input, OPERATORS_AT, input.len());
    restored.finish();
    let expected = expected_after(p, &input, OPERATORS_AT);
    assert!(expected.len() > 5);
    assert_eq!(restored.drain_output(), expected);
    let mut uninterrupted = p.engine();
    feed(&mut uninterrupted, &input, 0, input.len());
    uninterrupted.finish();
    assert!(
        uninterrupted.metrics().duplicates_dropped > 0,
        "the input repeats some ids"
    );
    assert_eq!(restored.metrics(), uninterrupted.metrics());
}

#[test]
fn a_checkpoint_of_format_version_1_with_positional_operator_ids_restores_into_the_default_ids() {
    let p = fixture_operators();
    let image = operators_fixture(
        &p,
        "operators_v1.sfck",
        1,
        &["1-deduplicate", "9-window_aggregate", "10-window_aggregate"],
    );
    // Read under the default ids: the positional ids of a kind in the order of their positions.
    let (restored, report) = Engine::restore_with(&p, &image, RestoreOptions::strict()).unwrap();
    let read: Vec<(&str, &RestoreOutcome)> = report.operators.iter().map(|o| (o.id.as_str(), &o.outcome)).collect();
    let from = |id: &str| RestoreOutcome::Restored { from: id.to_owned() };
    assert_eq!(
        read,
        [
            ("deduplicate-0", &from("1-deduplicate")),
            ("window_aggregate-0", &from("9-window_aggregate")),
            ("window_aggregate-1", &from("10-window_aggregate")),
        ]
    );
    // The first checkpoint rewrites the state whole under the new ids.
    let mut again = Engine::restore(&p, &image).unwrap();
    let rewritten = again.snapshot().unwrap();
    assert!(rewritten.full);
    let ids: Vec<&str> = rewritten.operators.iter().map(|o| o.operator.as_str()).collect();
    assert_eq!(
        ids,
        [
            "deduplicate-0",
            "window_aggregate-0",
            "window_aggregate-1",
            "@schema/deduplicate-0",
            "@schema/window_aggregate-0",
            "@schema/window_aggregate-1"
        ],
        "and the schemas of their state, which a format version 1 image did not have"
    );
    continues_as_uninterrupted(&p, restored);
}

#[test]
fn a_checkpoint_of_format_version_2_with_default_ids_and_a_uid_restores() {
    let p = fixture_operators_named(Some("totals-40"));
    let image = operators_fixture(
        &p,
        "operators_v2.sfck",
        2,
        &["deduplicate-0", "window_aggregate-0", "totals-40"],
    );
    let (mut restored, report) = Engine::restore_with(&p, &image, RestoreOptions::strict()).unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert!(!restored.snapshot().unwrap().full, "nothing moved");
    continues_as_uninterrupted(&p, restored);
}

/// The full checkpoint of `fixture_operators_named(Some("totals-40"))` after `OPERATORS_AT`
/// records as written by the last release whose schema entries held only a version and a type
/// name (no shape, see `shardflow_engine::schema`). Never rewritten: its name holds no
/// `_v{FORMAT_VERSION}.`.
const SCHEMA_NAMES_FIXTURE: &str = "operators_v2_schema_names.sfck";

#[test]
fn a_checkpoint_whose_schema_entries_have_no_shape_restores_as_stored() {
    let p = fixture_operators_named(Some("totals-40"));
    let bytes = std::fs::read(fixture_path(SCHEMA_NAMES_FIXTURE)).unwrap();
    let checkpoint = Checkpoint::decode(&bytes).unwrap();
    let stored: Vec<&str> = checkpoint.operators.iter().map(|o| o.operator.as_str()).collect();
    assert_eq!(
        stored,
        [
            "deduplicate-0",
            "window_aggregate-0",
            "totals-40",
            "@schema/deduplicate-0",
            "@schema/window_aggregate-0",
            "@schema/totals-40"
        ]
    );
    let image = CheckpointImage::new(checkpoint);
    let (mut restored, report) = Engine::restore_with(&p, &image, RestoreOptions::strict()).unwrap();
    assert!(report.is_plain(), "{report:?}");
    assert!(!restored.snapshot().unwrap().full, "nothing moved");
    continues_as_uninterrupted(&p, restored);
}

// ---------------------------------------------------------------------------------------------
// Corrupt state: a state store may hand back damaged bytes; decoding, folding and restoring them
// returns an error (or an engine that keeps working), never a panic. `fuzz/` runs the same
// property longer under cargo-fuzz (target `checkpoint`).

fn committed_fixtures() -> Vec<Vec<u8>> {
    [
        "window_aggregate_v1.base.sfck",
        "window_aggregate_v1.delta.sfck",
        "interval_join_v1.sfck",
    ]
    .into_iter()
    .map(|name| std::fs::read(fixture_path(name)).unwrap())
    .collect()
}

/// Restores `image` into both fixture pipelines; an engine that restores then runs the rest of
/// the fixture input to the end. Returns whether either restore succeeded.
fn restore_and_run(image: &CheckpointImage) -> bool {
    let input = fixture_input();
    let mut restored = false;
    if let Ok(mut e) = Engine::restore(&fixture_windows(), image) {
        feed(&mut e, &input, 60, input.len());
        e.advance_processing_time(100_000);
        e.finish();
        e.drain_output();
        restored = true;
    }
    if let Ok(mut e) = Engine::restore(&fixture_interval_join(), image) {
        feed(&mut e, &input, 60, input.len());
        e.finish();
        e.drain_output();
        restored = true;
    }
    restored
}

fn overwrite(bytes: &mut Vec<u8>, edits: &[(usize, u8)], keep: usize) {
    for &(at, b) in edits {
        if !bytes.is_empty() {
            let at = at % bytes.len();
            bytes[at] = b;
        }
    }
    bytes.truncate(keep);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

    #[test]
    fn arbitrary_bytes_after_the_header_are_refused_or_restored_never_a_panic(
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
    ) {
        let mut bytes = b"SFCK".to_vec();
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&body);
        if let Ok(cp) = Checkpoint::decode(&bytes) {
            restore_and_run(&CheckpointImage::new(cp));
        }
    }

    #[test]
    fn damaged_checkpoint_bytes_are_refused_or_restored_never_a_panic(
        which in 0usize..3,
        edits in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..4),
        keep in proptest::prelude::any::<usize>(),
    ) {
        let original = &committed_fixtures()[which];
        let mut bytes = original.clone();
        overwrite(&mut bytes, &edits, 6 + keep % original.len());
        let decoded = Checkpoint::decode(&bytes);
        if &bytes == original {
            proptest::prop_assert!(decoded.is_ok(), "an undamaged fixture decodes");
        }
        if let Ok(cp) = decoded {
            restore_and_run(&CheckpointImage::new(cp));
        }
    }

    /// The envelope decodes but a key group's, an operator's or the engine's own state is damaged:
    /// this reaches the operators' restore code.
    #[test]
    fn damaged_state_inside_a_well_formed_checkpoint_is_refused_never_a_panic(
        which in 0usize..3,
        target in proptest::prelude::any::<usize>(),
        edits in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..4),
        keep in proptest::prelude::any::<usize>(),
    ) {
        let mut cp = Checkpoint::decode(&committed_fixtures()[which]).unwrap();
        let mut blobs: Vec<&mut Vec<u8>> = vec![&mut cp.engine];
        for op in &mut cp.operators {
            blobs.push(&mut op.meta);
            blobs.extend(op.key_groups.iter_mut().map(|g| &mut g.bytes));
        }
        let count = blobs.len();
        let blob = &mut blobs[target % count];
        let len = blob.len();
        overwrite(blob, &edits, keep % (len + 1));
        let untouched = edits.is_empty() && keep % (len + 1) == len;
        let restored = restore_and_run(&CheckpointImage::new(cp));
        if untouched && which != 1 {
            proptest::prop_assert!(restored, "an undamaged base checkpoint restores");
        }
    }
}

#[test]
fn metrics_and_watermarks_are_read_from_a_checkpoint_without_the_pipeline() {
    let mut e = long_window("metrics", GROUPS).engine();
    let (a, b) = (e.partition("s0"), e.partition("s1"));
    for (off, key) in (0..40u32).enumerate() {
        let part = if key % 2 == 0 { a } else { b };
        e.process(
            part,
            off as u64,
            5_000 + i64::from(key),
            ev(key, 1_000 + i64::from(key), 1),
        );
    }
    e.advance_processing_time(9_000);
    let image = CheckpointImage::new(e.snapshot_full().unwrap());
    let (metrics, partitions) = shardflow_engine::EngineMetrics::of_checkpoint(&image).unwrap();
    assert_eq!(metrics, e.metrics());
    assert_eq!(partitions, e.partitions());
    assert!(metrics.watermark > 1_000 && metrics.records_in == 40);
    let mut bad = image.to_checkpoint();
    bad.engine = vec![0xff; 3];
    assert!(shardflow_engine::EngineMetrics::of_checkpoint(&CheckpointImage::new(bad)).is_err());
}
