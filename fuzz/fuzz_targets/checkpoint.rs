//! Checkpoint bytes as a state store returns them (possibly corrupt): `Checkpoint::decode`, then
//! `CheckpointImage::new` (or `apply` onto the committed base), then `Engine::restore` into the
//! pipelines of the engine's fixtures (same names and key-group counts, so that restores get past
//! the pipeline check). Restore returns an error on corrupt state; an engine it does return then
//! processes records and finishes without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use shardflow_engine::checkpoint::{Checkpoint, CheckpointImage};
use shardflow_engine::combine::{Count, Sum};
use shardflow_engine::{Engine, Firing, IntervalJoinSide, Pipeline, Trigger, WatermarkStrategy, Windowing};

/// The input type of the engine's fixtures (`shared/engine/tests/common`), field for field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ev {
    key: u32,
    ts: i64,
    v: i64,
    side: u8,
}

const WINDOW_BASE: &[u8] = include_bytes!("../../shared/engine/tests/fixtures/window_aggregate_v1.base.sfck");

fn ooo(ms: i64) -> WatermarkStrategy {
    WatermarkStrategy::bounded_out_of_orderness(ms).expect("a constant, non-negative bound")
}

/// `fixture_windows` of `shared/engine/tests/state_format.rs`.
fn windows() -> Pipeline<Ev, (u32, u64, i64)> {
    Pipeline::builder("fixture-windows")
        .watermarks(ooo(5).with_idleness(1_000).expect("a constant timeout"))
        .max_key_groups(16)
        .event_time(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key)
        .window(Windowing::tumbling(20).expect("a constant size"))
        .trigger(
            Trigger::at_watermark()
                .with_early_firings(Firing::every_processing_ms(50))
                .with_allowed_lateness(30)
                .expect("a constant lateness")
                .accumulating(),
        )
        .aggregate((Count, Sum::of(|e: &Ev| e.v)), |k, _w, _p, (n, s)| (*k, n, s))
        .sink("out")
}

/// `fixture_interval_join` of `shared/engine/tests/state_format.rs`.
fn interval_join() -> Pipeline<Ev, (u32, i64, i64)> {
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

/// Restores `image` into `pipeline`; if that succeeds, the engine must go on working.
fn restore_and_run<Out: Send + 'static>(pipeline: &Pipeline<Ev, Out>, image: &CheckpointImage) {
    let Ok(mut engine) = Engine::restore(pipeline, image) else {
        return;
    };
    let parts = [engine.partition("a"), engine.partition("b")];
    for i in 0..40i64 {
        let e = Ev {
            key: (i % 5) as u32,
            ts: 100 + i - (i % 7) * 3,
            v: i,
            side: (i % 2) as u8,
        };
        engine.process(parts[(i % 2) as usize], 1_000 + i as u64, 1_000 + i * 7, e);
    }
    engine.advance_processing_time(10_000);
    let _ = engine.snapshot();
    engine.finish();
    let _ = engine.drain_output();
    let _ = engine.drain_late();
}

fuzz_target!(|data: &[u8]| {
    let Ok(checkpoint) = Checkpoint::decode(data) else {
        return;
    };
    let _ = checkpoint.encode();
    // As a base.
    let image = CheckpointImage::new(checkpoint.clone());
    restore_and_run(&windows(), &image);
    restore_and_run(&interval_join(), &image);
    // As an increment onto the committed base of the window fixture.
    if let Ok(base) = Checkpoint::decode(WINDOW_BASE) {
        let mut image = CheckpointImage::new(base);
        if image.apply(checkpoint).is_ok() {
            restore_and_run(&windows(), &image);
        }
    }
});
