//! The shop workload generator: deterministic, keyed to shards, ordered per row, late enough.

use std::collections::HashMap;

use shardflow_local::{Input, Item};
use shardflow_schemas::{ChangeEvent, Op, OrderStatus};
use shardflow_shop::generator::{shard_of, ShopConfig, ShopGenerator};

fn events(seed: u64, n: u64) -> Vec<(u32, ChangeEvent)> {
    let mut g = ShopGenerator::new(ShopConfig::new(seed, n, 4));
    std::iter::from_fn(|| g.next_event()).collect()
}

#[test]
fn the_same_seed_gives_the_same_stream_and_another_seed_another() {
    let a = events(7, 5_000);
    assert_eq!(a.len(), 5_000, "exactly the requested number of events");
    assert_eq!(a, events(7, 5_000));
    assert_ne!(a, events(8, 5_000));
}

#[test]
fn changes_are_routed_by_partition_key_and_each_rows_changes_stay_in_order() {
    let evs = events(1, 20_000);
    let mut last_lsn: HashMap<String, u64> = HashMap::new();
    let mut last_arrival = i64::MIN;
    for (shard, e) in &evs {
        let key = e.partition_key().expect("every change has a row image");
        assert_eq!(*shard, shard_of(&key, 4), "{key}");
        let lsn = e.source.as_ref().map(|s| s.lsn).unwrap_or_default();
        if let Some(prev) = last_lsn.insert(key.clone(), lsn) {
            assert!(lsn > prev, "{key}: lsn {lsn} after {prev}");
        }
        assert!(e.ts_ms >= last_arrival, "emitted in arrival order");
        last_arrival = e.ts_ms;
        assert!(e.ts_ms >= e.event_time(), "a change arrives after its commit");
    }
    let per_shard = (0..4)
        .map(|s| evs.iter().filter(|(x, _)| *x == s).count())
        .collect::<Vec<_>>();
    assert!(
        per_shard.iter().all(|n| *n > 3_000),
        "spread over the shards: {per_shard:?}"
    );
}

#[test]
fn the_stream_has_whole_lifecycles_out_of_order_and_late_changes() {
    // Long enough (about 11 minutes of simulated time) for 400-600 s delays to show up.
    let evs = events(3, 150_000);
    let count = |f: &dyn Fn(&ChangeEvent) -> bool| evs.iter().filter(|(_, e)| f(e)).count();
    let snapshot = count(&|e| e.op() == Op::Read) as u64;
    let customers = ShopConfig::new(3, 150_000, 4).initial_customers;
    // A few snapshot reads are delayed beyond the end of a short stream, like any change.
    assert!(
        snapshot <= customers && snapshot >= customers * 99 / 100,
        "{snapshot} of {customers}"
    );
    let completed = count(&|e| e.after_order().is_some_and(|o| o.status() == OrderStatus::Completed));
    let cancelled = count(&|e| e.after_order().is_some_and(|o| o.status() == OrderStatus::Cancelled));
    let created = count(&|e| e.op() == Op::Create && e.after_order().is_some());
    assert!(
        completed > created / 2,
        "most orders complete: {completed} of {created}"
    );
    assert!(
        cancelled > 0 && cancelled < created / 10,
        "a few are cancelled: {cancelled}"
    );
    let delay = |e: &ChangeEvent| e.ts_ms - e.event_time();
    assert!(
        count(&|e| delay(e) > 400_000) > 10,
        "some changes later than the allowed lateness"
    );
    assert!(
        count(&|e| (70_000..=250_000).contains(&delay(e))) > 50,
        "some late within it"
    );
    assert!(
        count(&|e| delay(e) <= 2_000) as f64 > 0.98 * evs.len() as f64,
        "most within the jitter"
    );
}

#[test]
fn as_an_input_each_shard_yields_its_events_in_order() {
    let evs = events(5, 3_000);
    let mut g = ShopGenerator::new(ShopConfig::new(5, 3_000, 4));
    assert_eq!(g.partitions(), vec!["shard-0", "shard-1", "shard-2", "shard-3"]);
    for shard in [2usize, 0, 3, 1] {
        let mut got = Vec::new();
        while let Some(Item::Value(e)) = g.next(shard).unwrap() {
            got.push(e);
        }
        let want: Vec<_> = evs
            .iter()
            .filter(|(s, _)| *s as usize == shard)
            .map(|(_, e)| e.clone())
            .collect();
        assert_eq!(got, want, "shard {shard}");
    }
}

#[test]
fn commit_order_mode_yields_the_streams_changes_as_whole_transactions() {
    // The workload of `events(3, 5_000)`, run further (the margin covers its arrival delays).
    let mut config = ShopConfig::new(3, 5_000, 4);
    config.events = 8_000;
    let mut g = ShopGenerator::in_commit_order(config);
    assert!(g.next_event().is_none(), "no arrival-order events in commit-order mode");
    let txs: Vec<Vec<ChangeEvent>> = std::iter::from_fn(|| g.next_transaction()).collect();
    let n: usize = txs.iter().map(Vec::len).sum();
    assert!(
        (8_000..8_010).contains(&n),
        "whole transactions up to the requested count: {n}"
    );
    assert!(
        txs.iter().any(|tx| tx.len() >= 4),
        "checkouts are multi-row transactions"
    );

    let (mut last_tx, mut last_lsn, mut last_commit) = (0, 0, i64::MIN);
    let mut by_lsn = HashMap::new();
    for tx in &txs {
        let src = |e: &ChangeEvent| e.source.clone().unwrap_or_default();
        let first = src(&tx[0]);
        assert!(first.tx_id > last_tx && first.ts_ms >= last_commit, "commit order");
        (last_tx, last_commit) = (first.tx_id, first.ts_ms);
        for e in tx {
            let s = src(e);
            assert_eq!((s.tx_id, s.ts_ms), (first.tx_id, first.ts_ms), "one transaction");
            assert!(s.lsn > last_lsn);
            last_lsn = s.lsn;
            shardflow_shop::sql::statement(e).unwrap_or_else(|err| panic!("{e:?}: {err}"));
            by_lsn.insert(s.lsn, e.clone());
        }
    }
    // The arrival-order stream of the same seed holds the same changes (ts_ms aside).
    for (_, mut e) in events(3, 5_000) {
        let lsn = e.source.as_ref().map(|s| s.lsn).unwrap_or_default();
        let mut c = by_lsn.get(&lsn).cloned().unwrap_or_else(|| panic!("lsn {lsn} missing"));
        (e.ts_ms, c.ts_ms) = (0, 0);
        assert_eq!(e, c);
    }
}
