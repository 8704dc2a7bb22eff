//! The producer's send queue (pure): records in the order they were sent, grouped into
//! `PutRecords` calls so that a partition key's records can never overtake each other.
//!
//! # The ordering rule
//!
//! `PutRecords` is not atomic: any record of a call may fail while the others are stored. If two
//! records of one key were in flight together and the first failed, its retry would land after
//! the second. So the queue keeps **at most one record per partition key in flight** (in one
//! call, or waiting for its retry), and always sends a key's oldest record first. A retried record
//! goes back to its place in the queue, ahead of every later record of its key, which stay
//! blocked until it is stored. Calls still carry up to 500 records, of 500 different keys.
//!
//! The price: one key's records go at one per round trip. Keys such as `table:primary key` (one
//! row) rarely have many records at once; a caller that needs no order can use spread-out keys.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::time::Instant;

use crate::batch::{PutRecordsLimits, StreamRecord};

/// A record in the queue or in flight, with what the producer keeps about it.
#[derive(Debug)]
pub struct Queued<T> {
    /// Position in send order (0, 1, 2, ...).
    pub seq: u64,
    /// The record.
    pub record: StreamRecord,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not to be sent before this time (a retry's backoff).
    pub not_before: Option<Instant>,
    /// Held until the record is stored or dropped (the producer's buffer permit).
    pub ticket: T,
}

/// What [`SendQueue::next_call`] found.
#[derive(Debug)]
pub enum NextCall<T> {
    /// Records to send now in one call, in send order, each of a different key.
    Call(Vec<Queued<T>>),
    /// Nothing can go now, but a record's backoff ends at this time.
    WaitUntil(Instant),
    /// Nothing can go until a call in flight completes (or nothing is queued).
    Idle,
}

/// Records not yet stored: queued (in send order) or in flight.
#[derive(Debug)]
pub struct SendQueue<T> {
    limits: PutRecordsLimits,
    scan_window: usize,
    queue: VecDeque<Queued<T>>,
    in_flight_keys: HashSet<String>,
    outstanding: BTreeSet<u64>,
    next_seq: u64,
}

impl<T> SendQueue<T> {
    /// An empty queue forming calls within `limits`; each call considers at most `scan_window`
    /// queued records (bounding the work per call when many records wait behind busy keys).
    pub fn new(limits: PutRecordsLimits, scan_window: usize) -> Self {
        SendQueue {
            limits,
            scan_window: scan_window.max(1),
            queue: VecDeque::new(),
            in_flight_keys: HashSet::new(),
            outstanding: BTreeSet::new(),
            next_seq: 0,
        }
    }

    /// Appends a record (already checked against the limits); returns its sequence number.
    pub fn push(&mut self, record: StreamRecord, ticket: T) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.outstanding.insert(seq);
        self.queue.push_back(Queued {
            seq,
            record,
            attempts: 0,
            not_before: None,
            ticket,
        });
        seq
    }

    /// The sequence number of the last record pushed, if any.
    pub fn last_seq(&self) -> Option<u64> {
        self.next_seq.checked_sub(1)
    }

    /// Whether every record up to and including `seq` is stored.
    pub fn stored_through(&self, seq: u64) -> bool {
        self.outstanding.first().is_none_or(|first| *first > seq)
    }

    /// Records not yet stored (queued or in flight).
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Takes the next call: the oldest sendable record of each key not in flight, in send order,
    /// within the call limits.
    pub fn next_call(&mut self, now: Instant) -> NextCall<T> {
        let mut call: Vec<Queued<T>> = Vec::new();
        let mut call_bytes = 0usize;
        let mut kept: Vec<Queued<T>> = Vec::new();
        let mut skipped_keys: HashSet<String> = HashSet::new();
        let mut wake: Option<Instant> = None;
        let mut scanned = 0usize;
        while scanned < self.scan_window && call.len() < self.limits.max_records {
            let Some(entry) = self.queue.pop_front() else {
                break;
            };
            scanned += 1;
            let key = &entry.record.partition_key;
            if skipped_keys.contains(key) || self.in_flight_keys.contains(key) {
                kept.push(entry);
                continue;
            }
            if let Some(t) = entry.not_before.filter(|t| *t > now) {
                wake = Some(wake.map_or(t, |w| w.min(t)));
                skipped_keys.insert(key.clone());
                kept.push(entry);
                continue;
            }
            let bytes = entry.record.billed_bytes();
            if call_bytes + bytes > self.limits.max_call_bytes {
                kept.push(entry);
                break;
            }
            call_bytes += bytes;
            self.in_flight_keys.insert(key.clone());
            call.push(entry);
        }
        for entry in kept.into_iter().rev() {
            self.queue.push_front(entry);
        }
        match (call.is_empty(), wake) {
            (false, _) => NextCall::Call(call),
            (true, Some(t)) => NextCall::WaitUntil(t),
            (true, None) => NextCall::Idle,
        }
    }

    /// Marks an in-flight record stored (its ticket is dropped).
    pub fn stored(&mut self, entry: Queued<T>) {
        self.in_flight_keys.remove(&entry.record.partition_key);
        self.outstanding.remove(&entry.seq);
    }

    /// Puts a failed in-flight record back at its place in send order, to be sent again at
    /// `not_before` or later; later records of its key wait for it.
    pub fn retry_later(&mut self, mut entry: Queued<T>, not_before: Instant) {
        self.in_flight_keys.remove(&entry.record.partition_key);
        entry.attempts += 1;
        entry.not_before = Some(not_before);
        let at = self.queue.partition_point(|q| q.seq < entry.seq);
        self.queue.insert(at, entry);
    }

    /// Drops every queued record and forgets those in flight (after a fatal error).
    pub fn clear(&mut self) {
        self.queue.clear();
        self.in_flight_keys.clear();
        self.outstanding.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn rec(key: &str, len: usize) -> StreamRecord {
        StreamRecord::new(key, vec![0; len])
    }

    fn call(q: &mut SendQueue<()>, now: Instant) -> Vec<Queued<()>> {
        match q.next_call(now) {
            NextCall::Call(c) => c,
            other => panic!("expected a call, got {other:?}"),
        }
    }

    fn keys(c: &[Queued<()>]) -> Vec<&str> {
        c.iter().map(|e| e.record.partition_key.as_str()).collect()
    }

    #[test]
    fn calls_hold_at_most_500_records() {
        let mut q = SendQueue::new(PutRecordsLimits::default(), 10_000);
        for i in 0..1201 {
            q.push(rec(&i.to_string(), 10), ());
        }
        let now = Instant::now();
        let sizes: Vec<usize> = (0..3).map(|_| call(&mut q, now).len()).collect();
        assert_eq!(sizes, vec![500, 500, 201]);
        assert!(matches!(q.next_call(now), NextCall::Idle));
    }

    #[test]
    fn calls_stay_within_five_megabytes() {
        let mut q = SendQueue::new(PutRecordsLimits::default(), 10_000);
        for i in 0..6 {
            q.push(rec(&i.to_string(), (1 << 20) - 1), ());
        }
        let now = Instant::now();
        assert_eq!(call(&mut q, now).len(), 5);
        assert_eq!(call(&mut q, now).len(), 1);
    }

    #[test]
    fn a_key_has_one_record_in_flight_and_its_next_waits_for_the_ack() {
        let mut q = SendQueue::new(PutRecordsLimits::default(), 10_000);
        for k in ["a", "b", "a", "c", "a"] {
            q.push(rec(k, 1), ());
        }
        let now = Instant::now();
        let first = call(&mut q, now);
        assert_eq!(keys(&first), vec!["a", "b", "c"]);
        assert!(matches!(q.next_call(now), NextCall::Idle), "a is in flight");
        let mut first = first.into_iter();
        let a0 = first.next().unwrap();
        q.stored(a0);
        let second = call(&mut q, now);
        assert_eq!((keys(&second), second[0].seq), (vec!["a"], 2));
    }

    #[test]
    fn a_retried_record_goes_before_later_records_of_its_key_after_its_backoff() {
        let mut q = SendQueue::new(PutRecordsLimits::default(), 10_000);
        q.push(rec("a", 1), ());
        q.push(rec("b", 1), ());
        q.push(rec("a", 1), ());
        let now = Instant::now();
        let mut first = call(&mut q, now).into_iter();
        let (a0, b0) = (first.next().unwrap(), first.next().unwrap());
        q.stored(b0);
        let later = now + Duration::from_millis(100);
        q.retry_later(a0, later);
        match q.next_call(now) {
            NextCall::WaitUntil(t) => assert_eq!(t, later),
            other => panic!("a's retry must wait for its backoff and block a's next record: {other:?}"),
        }
        let retry = call(&mut q, later);
        assert_eq!((keys(&retry), retry[0].seq, retry[0].attempts), (vec!["a"], 0, 1));
        assert!(!q.stored_through(0));
        q.stored(retry.into_iter().next().unwrap());
        assert!(q.stored_through(1));
        assert!(!q.stored_through(2));
    }

    proptest! {
        /// Whatever fails and whenever, every record is stored exactly once and each key's
        /// records are stored in send order.
        #[test]
        fn random_failures_never_reorder_a_key(seed in any::<u64>(), n in 1usize..400, keys in 1usize..20) {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
            let limits = PutRecordsLimits { max_records: 7, ..PutRecordsLimits::default() };
            let mut q = SendQueue::new(limits, 50);
            let mut sent: HashMap<String, Vec<u64>> = HashMap::new();
            for _ in 0..n {
                let key = format!("k{}", rng.random_range(0..keys));
                let seq = q.push(rec(&key, 1), ());
                sent.entry(key).or_default().push(seq);
            }
            let mut landed: HashMap<String, Vec<u64>> = HashMap::new();
            let mut now = Instant::now();
            let mut in_flight: Vec<Vec<Queued<()>>> = Vec::new();
            let mut steps = 0;
            while q.outstanding() > 0 {
                steps += 1;
                prop_assert!(steps < 100_000);
                if in_flight.len() < 3 {
                    match q.next_call(now) {
                        NextCall::Call(c) => { in_flight.push(c); continue; }
                        NextCall::WaitUntil(t) if in_flight.is_empty() => { now = t; continue; }
                        _ => {}
                    }
                }
                // Complete a random call in flight, failing each record with probability 1/3.
                let i = rng.random_range(0..in_flight.len());
                for entry in in_flight.swap_remove(i) {
                    if rng.random_bool(1.0 / 3.0) {
                        q.retry_later(entry, now + Duration::from_millis(rng.random_range(0..5)));
                    } else {
                        landed.entry(entry.record.partition_key.clone()).or_default().push(entry.seq);
                        q.stored(entry);
                    }
                }
            }
            prop_assert_eq!(landed, sent);
        }
    }
}
