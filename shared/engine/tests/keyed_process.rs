//! The keyed process function: per-key state and event/processing-time timers, restored exactly
//! from checkpoints.

use shardflow_engine::{
    Checkpoint, CheckpointImage, Engine, KeyedProcessFunction, Pipeline, ProcessContext, ResultId, TimeDomain,
    Timestamp, WatermarkStrategy,
};

type Click = (String, i64); // (user, ts)
type Report = (String, u64, Timestamp); // (user, clicks, timer time)
type Cx<'a> = ProcessContext<'a, (u64, Timestamp), Report>;

/// Counts a user's clicks and reports the count after 10 s of event time without a click
/// (a per-key inactivity timeout: the classic KeyedProcessFunction).
struct InactivityCount;

impl KeyedProcessFunction<String, Click, (u64, Timestamp), Report> for InactivityCount {
    fn process(&self, _key: &String, click: Click, cx: &mut Cx<'_>) {
        let (count, last) = cx.state().take().unwrap_or((0, i64::MIN));
        if last != i64::MIN {
            cx.delete_timer(TimeDomain::EventTime, last + 10_000);
        }
        let last = last.max(click.1);
        *cx.state() = Some((count + 1, last));
        cx.register_timer(TimeDomain::EventTime, last + 10_000);
    }

    fn on_timer(&self, key: &String, time: Timestamp, _domain: TimeDomain, cx: &mut Cx<'_>) {
        if let Some((count, _)) = cx.state().take() {
            cx.emit((key.clone(), count, time));
        }
    }
}

fn pipeline() -> Pipeline<Click, Report> {
    Pipeline::builder("inactivity")
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
        .event_time(|c: &Click| c.1)
        .key_by(|c: &Click| c.0.clone())
        .process(InactivityCount)
        .sink("reports")
}

fn clicks() -> Vec<Click> {
    [
        ("ann", 0),
        ("bob", 500),
        ("ann", 1_000),
        ("ann", 2_000),
        ("bob", 2_500),
        ("zed", 20_000),
        ("ann", 30_000),
        ("ann", 31_000),
        ("bob", 31_500),
        ("zed", 50_000),
        ("ann", 55_000),
    ]
    .into_iter()
    .map(|(u, t)| (u.to_string(), t))
    .collect()
}

fn report(u: &str, n: u64, t: Timestamp) -> Report {
    (u.to_string(), n, t)
}

fn feed(e: &mut Engine<Click, Report>, input: &[Click], from: usize) -> Vec<(ResultId, Report)> {
    let part = e.partition("clicks");
    for (i, c) in input.iter().enumerate() {
        e.process(part, (from + i) as u64, 0, c.clone());
    }
    e.drain_output().into_iter().map(|o| (o.id, o.value)).collect()
}

fn finish(mut e: Engine<Click, Report>) -> Vec<(ResultId, Report)> {
    e.finish();
    e.drain_output().into_iter().map(|o| (o.id, o.value)).collect()
}

#[test]
fn per_key_inactivity_timers_fire_in_time_order_when_the_watermark_passes() {
    let p = pipeline();
    let mut e = p.engine();
    let mut out = feed(&mut e, &clicks(), 0);
    out.extend(finish(e));
    let values: Vec<Report> = out.into_iter().map(|(_, v)| v).collect();
    assert_eq!(
        values,
        vec![
            report("ann", 3, 12_000),
            report("bob", 2, 12_500),
            report("zed", 1, 30_000),
            report("ann", 2, 41_000),
            report("bob", 1, 41_500),
            report("zed", 1, 60_000),
            report("ann", 1, 65_000),
        ]
    );
}

#[test]
fn state_and_timers_restore_exactly_from_an_incremental_chain_at_every_record() {
    let p = pipeline();
    let input = clicks();
    let uninterrupted = {
        let mut e = p.engine();
        let mut out = feed(&mut e, &input, 0);
        out.extend(finish(e));
        out
    };
    // One record at a time: snapshot, encode, decode, fold into the image, restore, continue.
    let mut e = p.engine();
    let mut image: Option<CheckpointImage> = None;
    let mut out = Vec::new();
    for (i, c) in input.iter().enumerate() {
        out.extend(feed(&mut e, std::slice::from_ref(c), i));
        let cp = Checkpoint::decode(&e.snapshot().unwrap().encode().unwrap()).unwrap();
        match &mut image {
            Some(img) => img.apply(cp).unwrap(),
            None => image = Some(CheckpointImage::new(cp)),
        }
        e = Engine::restore(&p, image.as_ref().unwrap()).unwrap();
    }
    out.extend(finish(e));
    assert_eq!(out, uninterrupted);
}

#[test]
fn a_key_without_state_or_timers_leaves_nothing_in_state() {
    let p = pipeline();
    let mut e = p.engine();
    feed(&mut e, &clicks(), 0);
    assert!(e.snapshot_full().unwrap().key_groups_written() > 0);
    e.finish();
    assert_eq!(
        e.drain_output().len(),
        2,
        "the timers of zed (60 s) and ann (65 s) fire at the end"
    );
    assert_eq!(
        e.snapshot_full().unwrap().key_groups_written(),
        0,
        "every key cleared its state"
    );
}

/// Emits "ping" one second of processing time after a key's first record.
struct Ping;

impl KeyedProcessFunction<String, Click, bool, String> for Ping {
    fn process(&self, key: &String, _click: Click, cx: &mut ProcessContext<'_, bool, String>) {
        if cx.state().is_none() {
            *cx.state() = Some(true);
            let at = cx.processing_time() + 1_000;
            cx.register_timer(TimeDomain::ProcessingTime, at);
        }
        let _ = key;
    }

    fn on_timer(&self, key: &String, time: Timestamp, domain: TimeDomain, cx: &mut ProcessContext<'_, bool, String>) {
        assert_eq!(domain, TimeDomain::ProcessingTime);
        cx.emit(format!("ping {key} at {time}"));
    }
}

#[test]
fn processing_time_timers_fire_when_processing_time_advances() {
    let p: Pipeline<Click, String> = Pipeline::builder("ping")
        .event_time(|c: &Click| c.1)
        .key_by(|c: &Click| c.0.clone())
        .process(Ping)
        .sink("pings");
    let mut e = p.engine();
    let part = e.partition("clicks");
    e.process(part, 0, 10_000, ("ann".into(), 1));
    e.process(part, 1, 10_400, ("bob".into(), 2));
    e.process(part, 2, 10_900, ("ann".into(), 3));
    assert!(e.drain_output().is_empty(), "no processing time has passed a timer yet");
    e.advance_processing_time(11_000);
    let got: Vec<String> = e.drain_output().into_iter().map(|o| o.value).collect();
    assert_eq!(got, vec!["ping ann at 11000".to_string()]);
    e.advance_processing_time(11_500);
    let got: Vec<String> = e.drain_output().into_iter().map(|o| o.value).collect();
    assert_eq!(got, vec!["ping bob at 11400".to_string()]);
}

#[test]
fn results_of_timers_and_records_have_deterministic_distinct_ids() {
    let p = pipeline();
    let run = || {
        let mut e = p.engine();
        let mut out = feed(&mut e, &clicks(), 0);
        out.extend(finish(e));
        out.into_iter().map(|(id, _)| id).collect::<Vec<_>>()
    };
    let a = run();
    assert_eq!(a, run());
    let distinct: std::collections::BTreeSet<_> = a.iter().collect();
    assert_eq!(distinct.len(), a.len());
}

#[test]
fn a_child_shard_adopts_its_parents_state_and_timers_keeping_only_its_keys() {
    let p = pipeline();
    let image_of = |clicks: &[Click]| {
        let mut e = p.engine();
        feed(&mut e, clicks, 0);
        CheckpointImage::new(Checkpoint::decode(&e.snapshot_full().unwrap().encode().unwrap()).unwrap())
    };
    // Two parents (a merge): ann and bob on one, zed on the other, sessions still open.
    let left = image_of(&[("ann".into(), 1_000), ("bob".into(), 1_500), ("ann".into(), 2_000)]);
    let right = image_of(&[("zed".into(), 3_000)]);
    let mut merged = Engine::adopt(&p, &[left.clone(), right], &|_| true).unwrap();
    merged.finish();
    let mut got: Vec<Report> = merged.drain_output().into_iter().map(|o| o.value).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            report("ann", 2, 12_000),
            report("bob", 1, 11_500),
            report("zed", 1, 13_000)
        ]
    );
    // A split: this child keeps only ann (the key's postcard encoding decides).
    let ann = postcard_of("ann");
    let mut child = Engine::adopt(&p, &[left], &move |k: &[u8]| k == ann.as_slice()).unwrap();
    child.finish();
    let got: Vec<Report> = child.drain_output().into_iter().map(|o| o.value).collect();
    assert_eq!(got, vec![report("ann", 2, 12_000)]);
}

/// The postcard encoding of a string key (length prefix, then the bytes).
fn postcard_of(s: &str) -> Vec<u8> {
    let mut v = vec![s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}
