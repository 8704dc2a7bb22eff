//! The checks at the end of a soak, once the faults stopped and the stages drained: the sinks
//! against the embedded runner on exactly the records the stream holds, the dead letters
//! against the malformed inputs, and the samples' recovery, memory and state bounds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use prost::Message as _;
use serde::Serialize;
use shardflow_e2e::shop::ResultLine;
use shardflow_shop::pipelines::{EnrichedOrder, Receipt};

use crate::monitor::Sample;
use crate::schedule::Fault;

/// A check's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What it checks.
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// The numbers behind the verdict.
    pub detail: String,
}

impl Check {
    /// A verdict.
    pub fn new(name: &str, passed: bool, detail: impl Into<String>) -> Check {
        Check {
            name: name.to_owned(),
            passed,
            detail: detail.into(),
        }
    }
}

/// The stream's records (data) against what was put: the same multiset.
pub fn stream_holds_what_was_put(stored: &[Vec<u8>], put: &[Vec<u8>]) -> Check {
    fn count(records: &[Vec<u8>]) -> BTreeMap<&[u8], i64> {
        let mut m: BTreeMap<&[u8], i64> = BTreeMap::new();
        for r in records {
            *m.entry(r.as_slice()).or_default() += 1;
        }
        m
    }
    let (s, p) = (count(stored), count(put));
    let missing: i64 = p.iter().map(|(k, n)| (n - s.get(k).copied().unwrap_or(0)).max(0)).sum();
    let extra: i64 = s.iter().map(|(k, n)| (n - p.get(k).copied().unwrap_or(0)).max(0)).sum();
    Check::new(
        "the input stream holds every record put, once",
        missing == 0 && extra == 0,
        format!(
            "{} put, {} stored, {missing} missing, {extra} extra",
            put.len(),
            stored.len()
        ),
    )
}

/// The change events among `records`, in their order: not malformed, not a watermark mover.
pub fn decoded_events(records: &[Vec<u8>], movers: &BTreeSet<Vec<u8>>) -> Vec<shardflow_schemas::ChangeEvent> {
    records
        .iter()
        .filter(|d| !movers.contains(*d))
        .filter_map(|d| shardflow_schemas::ChangeEvent::decode(d.as_slice()).ok())
        .collect()
}

/// The stored records in the order the stream took them in: each shard's records in their own
/// order, the shards interleaved by arrival time (ties to the shard read first).
///
/// This is the order to feed one engine for the deployed stages' results: a read returns the
/// shards one after another, and fed that way a shard's records would come after every later
/// record of the other shards and fall behind the allowed lateness on a run longer than it.
pub fn in_arrival_order(stored: &[shardflow_testkit::ReadRecord]) -> Vec<&shardflow_testkit::ReadRecord> {
    let mut runs: Vec<&[shardflow_testkit::ReadRecord]> = stored.chunk_by(|a, b| a.shard_id == b.shard_id).collect();
    let mut out = Vec::with_capacity(stored.len());
    while let Some(next) = runs
        .iter()
        .enumerate()
        .filter_map(|(i, run)| run.first().map(|r| (r.arrival_ms, i)))
        .min()
        .map(|(_, i)| i)
    {
        let run = &mut runs[next];
        out.push(&run[0]);
        *run = &run[1..];
    }
    out
}

/// The delivered receipts (message bodies) against the embedded runner's. The topic is a
/// standard one, which cannot deduplicate (see shardflow-connectors' `SnsSink`): a receipt
/// republished after a crash between publish and commit arrives again with the same id and
/// value, and the consumer drops it by id. So: every expected id delivered, nothing else, each
/// repeat identical to the first. Returns the check and the repeats dropped.
pub fn receipts_match(bodies: &[String], expected: &[ResultLine<Receipt>]) -> (Check, usize) {
    let mut got: BTreeMap<String, Receipt> = BTreeMap::new();
    let (mut duplicates, mut conflicting, mut unreadable) = (0usize, 0usize, 0usize);
    for b in bodies {
        match serde_json::from_str::<shardflow_connectors::ResultMessage<Receipt>>(b) {
            Ok(m) => match got.get(&m.id) {
                Some(first) if *first == m.value => duplicates += 1,
                Some(_) => conflicting += 1,
                None => {
                    got.insert(m.id, m.value);
                }
            },
            Err(_) => unreadable += 1,
        }
    }
    let want: BTreeMap<String, Receipt> = expected.iter().map(|l| (l.id.clone(), l.value.clone())).collect();
    let missing = want.keys().filter(|k| !got.contains_key(*k)).count();
    let extra = got.keys().filter(|k| !want.contains_key(*k)).count();
    let differing = want
        .iter()
        .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
        .count();
    let passed = conflicting == 0 && unreadable == 0 && missing == 0 && extra == 0 && differing == 0;
    (
        Check::new(
            "receipts (SNS, deduplicated by result id) equal the embedded runner's",
            passed,
            format!(
                "{} expected, {} delivered: {missing} lost, {duplicates} identical repeats dropped by id, \
                 {conflicting} repeats with another value, {extra} unexpected, {differing} with other values, \
                 {unreadable} unreadable",
                want.len(),
                bodies.len()
            ),
        ),
        duplicates,
    )
}

/// The enriched orders one sink (`sink` names it) delivered, as (result id, value), against the
/// embedded runner's `want`: every one of `want` delivered with its value, none unexpected, no id
/// with two values. Only orders `comparable` holds for are judged, on both sides: order-enrich
/// allows no lateness, so a session near a row behind the one-engine watermark depends on how the
/// shards interleaved ([`shardflow_e2e::shop::depends_on_interleaving`]); `want` holds the
/// comparable ones only. Identical repeats by id fail unless `repeats_allowed` (a Kinesis output is
/// at least once; its readers deduplicate by id). Returns the check and the identical repeats.
pub fn enriched_orders_match(
    sink: &str,
    delivered: &[(String, EnrichedOrder)],
    want: &BTreeMap<String, EnrichedOrder>,
    comparable: impl Fn(&EnrichedOrder) -> bool,
    repeats_allowed: bool,
) -> (Check, usize) {
    let mut got: BTreeMap<&str, &EnrichedOrder> = BTreeMap::new();
    let (mut repeats, mut conflicting, mut skipped) = (0usize, 0usize, 0usize);
    for (id, value) in delivered {
        if !comparable(value) {
            skipped += 1;
            continue;
        }
        match got.get(id.as_str()) {
            Some(first) if *first == value => repeats += 1,
            Some(_) => conflicting += 1,
            None => {
                got.insert(id, value);
            }
        }
    }
    let mut wrong = Vec::new();
    for (id, v) in want {
        match got.get(id.as_str()) {
            None => wrong.push(format!("{id} missing")),
            Some(g) if *g != v => wrong.push(format!("{id} = {g:?}, expected {v:?}")),
            Some(_) => {}
        }
    }
    let missing = want.keys().filter(|k| !got.contains_key(k.as_str())).count();
    let differing = wrong.len() - missing;
    let extra: Vec<String> = got
        .keys()
        .filter(|k| !want.contains_key(**k))
        .map(|k| format!("{k} unexpected"))
        .collect();
    let passed = wrong.is_empty() && extra.is_empty() && conflicting == 0 && (repeats_allowed || repeats == 0);
    wrong.extend(extra.iter().cloned());
    (
        Check::new(
            &format!("enriched orders ({sink}) equal the embedded runner's"),
            passed && !want.is_empty(),
            format!(
                "{} compared, {} delivered: {missing} missing, {differing} differing, {} unexpected, \
                 {repeats} identical repeats{}, {conflicting} repeats with another value, {skipped} near a row \
                 behind the watermark not compared{}",
                want.len(),
                delivered.len(),
                extra.len(),
                if repeats_allowed { " dropped by id" } else { "" },
                listed(&wrong)
            ),
        ),
        repeats,
    )
}

/// The archive's (shard, sequence number) pairs against the stream's: each stored record once.
pub fn archive_matches(archived: &[(String, String)], repeated: usize, stored: &[(String, String)]) -> Check {
    let a: BTreeSet<&(String, String)> = archived.iter().collect();
    let s: BTreeSet<&(String, String)> = stored.iter().collect();
    let missing = s.difference(&a).count();
    let extra = a.difference(&s).count();
    Check::new(
        "the archive (S3) holds every stored record once",
        repeated == 0 && missing == 0 && extra == 0 && archived.len() == stored.len(),
        format!(
            "{} stored, {} archived: {missing} lost, {repeated} repeated, {extra} unexpected",
            stored.len(),
            archived.len()
        ),
    )
}

/// The revenue table (product, currency, window start) -> (cents, orders), and each row's pane
/// timing, against the embedded runner's final totals: every window there, closed (no row left
/// at an early pane), with the same totals, and no other row.
pub fn revenue_matches(
    rows: &BTreeMap<(i64, String, i64), (i64, u64)>,
    panes: &BTreeMap<(i64, String, i64), String>,
    expected: &BTreeMap<(i64, String, i64), (i64, u64)>,
) -> Check {
    let missing = expected.keys().filter(|k| !rows.contains_key(*k)).count();
    let extra = rows.keys().filter(|k| !expected.contains_key(*k)).count();
    let differing = expected
        .iter()
        .filter(|(k, v)| rows.get(*k).is_some_and(|got| got != *v))
        .count();
    let open = panes.values().filter(|p| p.as_str() == "early").count();
    let mut wrong = Vec::new();
    for (k, v) in expected {
        match rows.get(k) {
            None => wrong.push(format!("{k:?} missing (expected {v:?})")),
            Some(got) if got != v => wrong.push(format!("{k:?} = {got:?}, expected {v:?}")),
            Some(_) => {}
        }
    }
    wrong.extend(
        rows.iter()
            .filter(|(k, _)| !expected.contains_key(*k))
            .map(|(k, v)| format!("{k:?} = {v:?} unexpected")),
    );
    Check::new(
        "revenue (Postgres, through the shuffle) equals the embedded runner's final totals",
        missing == 0 && extra == 0 && differing == 0 && open == 0 && !expected.is_empty(),
        format!(
            "{} windows expected, {} rows: {missing} missing, {differing} differing, {extra} unexpected, \
             {open} still at an early pane{}",
            expected.len(),
            rows.len(),
            listed(&wrong)
        ),
    )
}

/// The first few of `items`, for a failing check's detail (empty when there are none).
fn listed(items: &[String]) -> String {
    const SHOWN: usize = 8;
    if items.is_empty() {
        return String::new();
    }
    let more = items.len().saturating_sub(SHOWN);
    let tail = if more > 0 {
        format!("; {more} more")
    } else {
        String::new()
    };
    format!(" — {}{tail}", items[..items.len().min(SHOWN)].join("; "))
}

/// The dead letters against the malformed inputs: each malformed record once per decoding stage
/// as `undecodable`, with its bytes; besides, at most `late_allowed[stage]` letters of kind `late`
/// from `stage` (the rows the embedded runner's one watermark passed, which a stage allowing no
/// lateness may judge late deployed), and nothing else.
pub fn dead_letters_match(
    letters: &[shardflow_stage::DeadLetter],
    malformed: &[Vec<u8>],
    decoding_stages: &[String],
    late_allowed: &BTreeMap<String, usize>,
) -> Check {
    let mut want: BTreeMap<(String, Vec<u8>), usize> = BTreeMap::new();
    for stage in decoding_stages {
        for m in malformed {
            *want.entry((stage.clone(), m.clone())).or_default() += 1;
        }
    }
    let mut got: BTreeMap<(String, Vec<u8>), usize> = BTreeMap::new();
    let mut late: BTreeMap<String, usize> = BTreeMap::new();
    let mut others = Vec::new();
    for l in letters {
        match l.kind {
            shardflow_stage::DeadLetterKind::Undecodable => {
                *got.entry((l.stage.clone(), l.data().unwrap_or_default())).or_default() += 1;
            }
            shardflow_stage::DeadLetterKind::Late if late_allowed.contains_key(&l.stage) => {
                *late.entry(l.stage.clone()).or_default() += 1;
            }
            _ => others.push(format!(
                "{:?} from {} ({} {} #{}): {}",
                l.kind, l.stage, l.stream, l.shard_id, l.sequence_number, l.reason
            )),
        }
    }
    let too_late: Vec<String> = late
        .iter()
        .filter(|(stage, n)| **n > late_allowed.get(*stage).copied().unwrap_or(0))
        .map(|(stage, n)| format!("{n} late from {stage}, at most {} allowed", late_allowed[stage]))
        .collect();
    others.extend(too_late.iter().cloned());
    let expected: usize = want.values().sum();
    Check::new(
        "dead letters are exactly the malformed inputs",
        got == want && others.is_empty(),
        format!(
            "{expected} expected ({} malformed x stages {decoding_stages:?}), {} undecodable letters, \
             late {late:?} (allowed {late_allowed:?}), {} of another kind{}",
            malformed.len(),
            got.values().sum::<usize>(),
            others.len() - too_late.len(),
            listed(&others)
        ),
    )
}

/// The level of iterator age taken as normal: twice the largest seen before the first fault,
/// at least `floor`.
pub fn normal_iterator_age(samples: &[Sample], first_fault_ms: u64, floor: Duration) -> i64 {
    let floor = i64::try_from(floor.as_millis()).unwrap_or(i64::MAX);
    let before = samples
        .iter()
        .filter(|s| s.t_ms < first_fault_ms)
        .flat_map(|s| s.iterator_age_ms.values().copied())
        .max()
        .unwrap_or(0);
    (2 * before).max(floor)
}

/// The largest iterator age over the stages at `sample`.
pub fn max_age(sample: &Sample) -> i64 {
    sample.iterator_age_ms.values().copied().max().unwrap_or(0)
}

/// Per fault: ms from its end until every stage's iterator age is at or below `normal` again
/// (`None`: not within the samples).
pub fn recovery_times(faults: &[Fault], samples: &[Sample], normal: i64) -> Vec<Option<u64>> {
    faults
        .iter()
        .map(|f| {
            let end = u64::try_from(f.end().as_millis()).unwrap_or(u64::MAX);
            samples
                .iter()
                .find(|s| s.t_ms >= end && max_age(s) <= normal)
                .map(|s| s.t_ms - end)
        })
        .collect()
}

/// Memory is flat: per function, the largest resident set of the last quarter of the feed is
/// at most `1.5 x` that of its second quarter plus 32 MiB (the first quarter is warm-up).
pub fn memory_flat(samples: &[Sample], feed_ms: u64) -> Check {
    let peak = |from: u64, to: u64| {
        let mut m: BTreeMap<String, u64> = BTreeMap::new();
        for s in samples.iter().filter(|s| s.t_ms >= from && s.t_ms < to) {
            for (f, rss) in &s.rss_bytes {
                let e = m.entry(f.clone()).or_default();
                *e = (*e).max(*rss);
            }
        }
        m
    };
    let early = peak(feed_ms / 4, feed_ms / 2);
    let late = peak(feed_ms * 3 / 4, feed_ms);
    let mut passed = !early.is_empty();
    let mut parts = Vec::new();
    for (f, l) in &late {
        let e = early.get(f).copied().unwrap_or(0);
        passed &= *l <= e + e / 2 + (32 << 20);
        parts.push(format!("{f}: {} MiB -> {} MiB", e >> 20, l >> 20));
    }
    Check::new(
        "function memory is flat (peak RSS, 2nd vs 4th quarter of the feed)",
        passed,
        if parts.is_empty() {
            "no function process sampled".to_owned()
        } else {
            parts.join("; ")
        },
    )
}

/// The state table does not grow without bound: its items at the end are at most twice those
/// at the middle of the feed plus 100 (the input's keys grow at a steady rate, expired windows
/// and completed orders are deleted).
pub fn state_bounded(samples: &[Sample], feed_ms: u64) -> Check {
    let at = |t: u64| samples.iter().find(|s| s.t_ms >= t).map(|s| s.table_items);
    let (middle, end) = (at(feed_ms / 2), samples.last().map(|s| s.table_items));
    let passed = match (middle, end) {
        (Some(m), Some(e)) => e <= 2 * m + 100,
        _ => false,
    };
    let peak = samples.iter().map(|s| s.table_items).max().unwrap_or(0);
    Check::new(
        "the state table does not grow without bound",
        passed,
        format!("items at mid-feed {middle:?}, peak {peak}, at the end {end:?}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_ms: u64, age: i64) -> Sample {
        let mut s = Sample {
            t_ms,
            ..Sample::default()
        };
        s.iterator_age_ms.insert("receipts".into(), age);
        s
    }

    #[test]
    fn decoded_events_keep_the_given_order_and_leave_out_movers_and_malformed_records() {
        let at = |ts| shardflow_e2e::shop::customer_touch(&[], ts);
        let (early, late, mover) = (at(1_000), at(2_000), at(9_000));
        let records = vec![
            late.encode_to_vec(),
            b"\xff not protobuf".to_vec(),
            mover.encode_to_vec(),
            early.encode_to_vec(),
        ];
        let movers = BTreeSet::from([mover.encode_to_vec()]);
        let times: Vec<i64> = decoded_events(&records, &movers)
            .iter()
            .map(shardflow_schemas::ChangeEvent::event_time)
            .collect();
        assert_eq!(times, vec![2_000, 1_000]);
    }

    #[test]
    fn arrival_order_keeps_each_shards_order_and_interleaves_the_shards_by_arrival() {
        let record = |shard: &str, seq: &str, arrival_ms| shardflow_testkit::ReadRecord {
            shard_id: shard.into(),
            sequence_number: seq.into(),
            partition_key: "k".into(),
            data: Vec::new(),
            arrival_ms,
        };
        // shard a's third record arrived "before" its second (a clock step): its order wins
        let stored = vec![
            record("a", "1", 10),
            record("a", "2", 30),
            record("a", "3", 25),
            record("b", "1", 20),
            record("b", "2", 40),
        ];
        let order: Vec<(&str, &str)> = in_arrival_order(&stored)
            .iter()
            .map(|r| (r.shard_id.as_str(), r.sequence_number.as_str()))
            .collect();
        assert_eq!(order, vec![("a", "1"), ("b", "1"), ("a", "2"), ("a", "3"), ("b", "2")]);
    }

    #[test]
    fn a_lost_or_repeated_record_fails_the_stream_check() {
        let put = vec![b"a".to_vec(), b"b".to_vec(), b"b".to_vec()];
        assert!(stream_holds_what_was_put(&[b"b".to_vec(), b"a".to_vec(), b"b".to_vec()], &put).passed);
        assert!(!stream_holds_what_was_put(&[b"a".to_vec(), b"b".to_vec()], &put).passed);
        let four = [put.clone(), vec![b"a".to_vec()]].concat();
        assert!(!stream_holds_what_was_put(&four, &put).passed);
    }

    #[test]
    fn recovery_is_the_time_from_a_faults_end_to_the_first_normal_sample() {
        let fault = Fault {
            kind: crate::schedule::FaultKind::SnsOutage,
            at: Duration::from_secs(10),
            duration: Duration::from_secs(5),
            probability: 1.0,
            target: 0,
        };
        let samples = vec![
            sample(0, 100),
            sample(14_000, 9_000),
            sample(16_000, 7_000),
            sample(19_000, 150),
        ];
        let normal = normal_iterator_age(&samples, 10_000, Duration::from_millis(50));
        assert_eq!(normal, 200);
        assert_eq!(
            recovery_times(std::slice::from_ref(&fault), &samples, normal),
            vec![Some(4_000)]
        );
        assert_eq!(recovery_times(&[fault], &samples[..3], normal), vec![None]);
    }

    #[test]
    fn a_dead_letter_of_another_kind_or_a_missing_one_fails_the_dead_letter_check() {
        let letter = |kind, data: &[u8]| shardflow_stage::DeadLetter {
            kind,
            stage: "receipts".into(),
            stream: "s".into(),
            shard_id: "shard-0".into(),
            sequence_number: "1".into(),
            partition_key: "k".into(),
            arrival_ms: 0,
            reason: "r".into(),
            data_base64: base64_of(data),
        };
        let stages = vec!["receipts".to_owned()];
        let malformed = vec![b"x1".to_vec(), b"x2".to_vec()];
        let both = vec![
            letter(shardflow_stage::DeadLetterKind::Undecodable, b"x1"),
            letter(shardflow_stage::DeadLetterKind::Undecodable, b"x2"),
        ];
        let none = BTreeMap::new();
        assert!(dead_letters_match(&both, &malformed, &stages, &none).passed);
        assert!(!dead_letters_match(&both[..1], &malformed, &stages, &none).passed);
        let mut late = both.clone();
        late.push(letter(shardflow_stage::DeadLetterKind::Late, b"y"));
        let check = dead_letters_match(&late, &malformed, &stages, &none);
        assert!(!check.passed);
        assert!(check.detail.contains("Late from receipts"), "{}", check.detail);
        // a late letter is allowed from a stage with an allowance, up to it
        let one = BTreeMap::from([("receipts".to_owned(), 1)]);
        assert!(dead_letters_match(&late, &malformed, &stages, &one).passed);
        late.push(letter(shardflow_stage::DeadLetterKind::Late, b"z"));
        assert!(!dead_letters_match(&late, &malformed, &stages, &one).passed);
    }

    fn order(customer_id: i64, session_start_ms: i64) -> EnrichedOrder {
        EnrichedOrder {
            order_id: customer_id * 10,
            order_status: "completed".into(),
            total_cents: 100,
            currency: "EUR".into(),
            line_count: 1,
            ordered_at_ms: session_start_ms,
            customer_id,
            customer_name: "n".into(),
            customer_email: "e".into(),
            customer_country: "c".into(),
            payment_id: 1,
            payment_status: "captured".into(),
            payment_method: "card".into(),
            shipment_id: 1,
            shipment_status: "delivered".into(),
            carrier: "x".into(),
            tracking_number: "t".into(),
            session_start_ms,
            session_end_ms: session_start_ms + 1_000,
        }
    }

    #[test]
    fn enriched_orders_must_be_the_embedded_runners_each_with_its_value() {
        let want = BTreeMap::from([("a".to_owned(), order(1, 0)), ("b".to_owned(), order(2, 0))]);
        let all = |_: &EnrichedOrder| true;
        let exact = vec![("a".to_owned(), order(1, 0)), ("b".to_owned(), order(2, 0))];
        assert!(enriched_orders_match("s", &exact, &want, all, false).0.passed);
        // lost, another value, an unexpected one
        assert!(!enriched_orders_match("s", &exact[..1], &want, all, false).0.passed);
        let other = vec![exact[0].clone(), ("b".to_owned(), order(2, 5))];
        assert!(!enriched_orders_match("s", &other, &want, all, false).0.passed);
        let mut extra = exact.clone();
        extra.push(("c".to_owned(), order(3, 0)));
        assert!(!enriched_orders_match("s", &extra, &want, all, false).0.passed);
        // an identical repeat passes only where repeats are allowed, and is counted
        let mut repeated = exact.clone();
        repeated.push(exact[1].clone());
        assert!(!enriched_orders_match("s", &repeated, &want, all, false).0.passed);
        let (check, repeats) = enriched_orders_match("s", &repeated, &want, all, true);
        assert!(check.passed && repeats == 1, "{}", check.detail);
        // orders that are not comparable are not judged
        let not_customer_3 = |o: &EnrichedOrder| o.customer_id != 3;
        assert!(
            enriched_orders_match("s", &extra, &want, not_customer_3, false)
                .0
                .passed
        );
    }

    fn base64_of(data: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(data)
    }
}
