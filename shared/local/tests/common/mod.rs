//! Inputs and helpers shared by the runner's tests.
#![allow(dead_code)]

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ev {
    pub key: u32,
    pub ts: i64,
    pub amount: i64,
}

/// 4 shards of `n` pseudo-random events over `keys` keys: jitter of up to 1.5 s, and one in
/// `late_one_in` 5-25 s late (within or beyond an allowed lateness of 5 s).
pub fn shards(n: usize, late_one_in: u64, keys: u64) -> Vec<Vec<Ev>> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move |m: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % m
    };
    let mut out = vec![Vec::new(); 4];
    for i in 0..n {
        let base = i as i64 * 25;
        let late = rnd(late_one_in) == 0;
        let ts = base - rnd(1_500) as i64 - if late { 5_000 + rnd(20_000) as i64 } else { 0 };
        out[i % 4].push(Ev {
            key: rnd(keys) as u32,
            ts,
            amount: rnd(100) as i64,
        });
    }
    out
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}
