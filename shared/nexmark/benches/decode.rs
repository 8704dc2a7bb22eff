//! Decoding throughput of the JSON-lines Nexmark input, per projection: every string kept, the
//! numbers only (agg, q5, q7), and q0's (a bid's `extra`), the last also through the general
//! (serde) decoder alone. The batch mixes event kinds in the generator's proportions (1 person :
//! 3 auctions : 46 bids) with lines of the generator's shape and sizes.
//!
//! `cargo bench -p shardflow-nexmark --bench decode`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardflow_nexmark::queries::q0::Q0Text;
use shardflow_nexmark::{decode_event, decode_event_general, AllText, NumbersOnly, Projection};

fn letters(n: usize, seed: usize) -> String {
    (0..n)
        .map(|i| char::from(b'a' + ((i * 7 + seed * 13) % 26) as u8))
        .collect()
}

/// 50 lines: a person, three auctions, 46 bids.
fn batch() -> Vec<Vec<u8>> {
    let t = 1_704_067_200_000_i64;
    let mut lines = vec![format!(
        r#"{{"event_type":0,"person":{{"id":1000,"name":"Vicky Shultz","emailAddress":"rzjgtl@sz.com","creditCard":"0176 4000 3617 1655","city":"San Francisco","state":"OR","dateTime":{t},"extra":"{}"}},"auction":null,"bid":null}}"#,
        letters(130, 1)
    )];
    for a in 0..3 {
        lines.push(format!(
            r#"{{"event_type":1,"person":null,"auction":{{"id":{},"itemName":"{}","description":"{}","initialBid":9326,"reserve":234159,"dateTime":{},"expires":{},"seller":1000,"category":12,"extra":"{}"}},"bid":null}}"#,
            1000 + a,
            letters(12, a),
            letters(60, a + 1),
            t + 95 + a as i64,
            t + 398 + a as i64,
            letters(380, a + 2)
        ));
    }
    for b in 0..46 {
        lines.push(format!(
            r#"{{"event_type":2,"person":null,"auction":null,"bid":{{"auction":{},"bidder":{},"price":{},"channel":"Google","url":"https://www.nexmark.com/{}/{}/item.htm?query=1","dateTime":{},"extra":"{}"}}}}"#,
            1000 + b % 7,
            1001 + b % 11,
            2514 + b * 331,
            letters(4, b),
            letters(5, b + 1),
            t + 100 + b as i64,
            letters(60, b + 2)
        ));
    }
    lines.into_iter().map(String::into_bytes).collect()
}

/// Decodes every line; returns how many decoded.
fn decode_all<P: Projection>(lines: &[Vec<u8>]) -> usize {
    lines
        .iter()
        .enumerate()
        .filter(|(i, line)| decode_event::<P>(*i as u64 + 1, line).is_ok())
        .count()
}

fn decode(c: &mut Criterion) {
    let lines = batch();
    assert_eq!(
        decode_all::<AllText>(&lines),
        lines.len(),
        "every line of the batch decodes"
    );
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_with_input(BenchmarkId::new("all_text", bytes), &lines, |b, l| {
        b.iter(|| decode_all::<AllText>(l))
    });
    group.bench_with_input(BenchmarkId::new("numbers_only", bytes), &lines, |b, l| {
        b.iter(|| decode_all::<NumbersOnly>(l))
    });
    group.bench_with_input(BenchmarkId::new("q0_text", bytes), &lines, |b, l| {
        b.iter(|| decode_all::<Q0Text>(l))
    });
    // The same lines through the general (serde) decoder only, without the fast path.
    group.bench_with_input(BenchmarkId::new("q0_text_general", bytes), &lines, |b, l| {
        b.iter(|| {
            l.iter()
                .enumerate()
                .filter(|(i, line)| decode_event_general::<Q0Text>(*i as u64 + 1, line).is_ok())
                .count()
        })
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
