//! The downstream half on bad input and its checkpointed state: undecodable frames, records and
//! values become dead letters with their bytes and the reason; a watermark record of an unknown
//! source is ignored; the encoding of `DownstreamState` is pinned by a golden fixture.

use std::borrow::Cow;
use std::path::PathBuf;

use shardflow_engine::combine::Count;
use shardflow_engine::{InputOrigin, Pipeline, SplitPipeline, Windowing, MIN_TIMESTAMP};
use shardflow_shuffle::downstream::{late_dead_letters, process_batch};
use shardflow_shuffle::{
    DataRecord, DownstreamState, Encode, FrameWriter, RecordId, ShuffleRecord, ShuffleShard, Source, WatermarkRecord,
};
use shardflow_stage::{DeadLetter, DeadLetterKind, InputRecord, SequenceNumber};

fn counts() -> SplitPipeline<(u32, i64), (u32, i64), (u32, u64)> {
    Pipeline::builder("counts")
        .max_key_groups(8)
        .event_time(|r: &(u32, i64)| r.1)
        .key_by(|r| r.0)
        .shuffle()
        .unwrap()
        .window(Windowing::tumbling(10).unwrap())
        .aggregate(Count, |k, _w, _p, n| (*k, n))
        .sink("counts")
}

fn watermark(stage: &str, shard: &str, watermark: i64) -> Vec<u8> {
    let mut w = FrameWriter::new();
    w.push(&ShuffleRecord::Watermark(WatermarkRecord {
        stage,
        source_stream: "input",
        source_shard: shard,
        watermark,
        closed: false,
        parents: vec![],
    }));
    w.finish()
}

fn data(sequence: &SequenceNumber, payload: &[u8], ts: i64) -> ShuffleRecord<'static> {
    let record = DataRecord {
        id: RecordId {
            stage: "up",
            source_shard: "shardId-000000000000",
            sequence: Cow::Owned(sequence.clone()),
            output_index: 0,
        },
        key_group: 0,
        timestamp: ts,
        origin: InputOrigin {
            source: 1,
            offset: 0,
            index: 0,
        },
        wm_before: MIN_TIMESTAMP,
        payload: Box::leak(payload.to_vec().into_boxed_slice()),
    };
    ShuffleRecord::Data(record)
}

fn kinesis(n: u64, data: Vec<u8>) -> InputRecord {
    InputRecord {
        sequence: SequenceNumber::parse(&n.to_string()).unwrap(),
        partition_key: "shardId-000000000000".into(),
        arrival_ms: 0,
        data,
    }
}

const SHARD: ShuffleShard<'static> = ShuffleShard {
    stage: "down",
    stream: "shuffle",
    shard_id: "shardId-000000000000",
};

#[test]
fn undecodable_frames_records_and_values_are_dead_lettered_with_their_bytes_and_the_rest_goes_on() {
    let split = counts();
    let mut engine = split.downstream.engine();
    let mut state = DownstreamState::new(0..8, [Source::new("up", "input")], None).unwrap();
    let seq = |n: u64| SequenceNumber::parse(&n.to_string()).unwrap();
    let good = postcard::to_allocvec(&(7u32, 3i64)).unwrap();
    let mut frame = FrameWriter::new();
    frame.push(&data(&seq(1), &good, 3));
    frame.push_encoded(&[0x09, 1, 2]); // an unknown record kind
    frame.push(&data(&seq(2), &[0xFF], 4)); // a value that is not a (u32, i64)
    frame.push(&data(&seq(3), &good, 5));
    let mut skewed = watermark("up", "shardId-000000000000", 0);
    skewed[4] = 2; // frame version 2: written by a newer upstream
    let records = [
        kinesis(1, watermark("up", "shardId-000000000000", MIN_TIMESTAMP)),
        kinesis(2, b"{\"not\":\"a frame\"}".to_vec()),
        kinesis(3, skewed.clone()),
        kinesis(4, frame.finish()),
    ];
    let report = process_batch(&mut engine, &mut state, SHARD, &records);
    assert_eq!(report.processed, 2, "the good values of the frame are processed");
    let letters: Vec<(String, Option<Vec<u8>>)> = report
        .dead_letters
        .iter()
        .map(|d| (d.reason.clone(), d.data()))
        .collect();
    assert_eq!(letters.len(), 4, "{letters:?}");
    assert_eq!(
        letters[0],
        (
            "not a shuffle frame (no magic)".into(),
            Some(b"{\"not\":\"a frame\"}".to_vec())
        )
    );
    assert_eq!(
        letters[1],
        (
            "shuffle frame version 2, this stage reads version 1".into(),
            Some(skewed)
        )
    );
    assert_eq!(
        letters[2],
        ("unknown shuffled record kind 0x09".into(), Some(vec![0x09, 1, 2]))
    );
    assert!(
        letters[3].0.starts_with("shuffled value does not decode"),
        "{}",
        letters[3].0
    );
    assert!(report
        .dead_letters
        .iter()
        .all(|d| d.kind == DeadLetterKind::Undecodable && d.stage == "down" && d.shard_id == "shardId-000000000000"));
    engine.finish();
    assert_eq!(
        engine.drain_output().into_iter().map(|o| o.value).collect::<Vec<_>>(),
        [(7, 2)]
    );
}

#[test]
fn a_watermark_record_of_an_unknown_source_is_ignored_and_moves_nothing() {
    let split = counts();
    let mut engine = split.downstream.engine();
    let mut state = DownstreamState::new(0..8, [Source::new("up", "input")], None).unwrap();
    let records = [
        kinesis(1, watermark("up", "shardId-000000000000", 5)),
        kinesis(2, watermark("elsewhere", "shardId-000000000001", 1_000)),
    ];
    let report = process_batch(&mut engine, &mut state, SHARD, &records);
    assert_eq!((report.ignored_watermarks, report.dead_letters.len()), (1, 0));
    assert_eq!((engine.watermark(), state.watermark.current()), (5, 5));
    assert_eq!(state.watermark.upstream_shards().count(), 1);
}

#[test]
fn a_late_value_is_dead_lettered_with_the_shuffled_record_that_carried_it() {
    let split = counts();
    let mut engine = split.downstream.engine();
    let mut state = DownstreamState::new(0..8, [Source::new("up", "input")], None).unwrap();
    let seq = |n: u64| SequenceNumber::parse(&n.to_string()).unwrap();
    let value = postcard::to_allocvec(&(7u32, 3i64)).unwrap();
    let (on_time, late) = (data(&seq(1), &value, 25), data(&seq(2), &value, 3));
    let mut frame = FrameWriter::new();
    frame.push(&on_time);
    frame.push(&late);
    let records = [
        kinesis(1, watermark("up", "shardId-000000000000", 20)),
        kinesis(2, frame.finish()),
    ];
    let report = process_batch(&mut engine, &mut state, SHARD, &records);
    assert_eq!((report.processed, report.dead_letters.len()), (2, 0));
    let refused = engine.drain_late();
    assert_eq!(refused.len(), 1, "the value at 3 is behind the watermark 20");
    let letters = late_dead_letters(&engine, SHARD, &records, &refused);
    assert!(letters.without_record.is_empty());
    let [letter] = letters.letters.as_slice() else {
        panic!("one letter: {letters:?}")
    };
    let mut expected = Vec::new();
    late.encode(&mut expected);
    assert_eq!(
        letter.data(),
        Some(expected),
        "the late record's own bytes, not its frame's"
    );
    assert_eq!(
        (letter.kind, letter.sequence_number.as_str(), letter.reason.clone()),
        (DeadLetterKind::Late, "2", DeadLetter::late_reason(&refused[0]))
    );
    // A late value the batch did not carry (e.g. of another batch) is reported, not invented.
    let elsewhere = late_dead_letters(&engine, SHARD, &records[..1], &refused);
    assert_eq!((elsewhere.letters.len(), elsewhere.without_record), (0, refused));
}

/// A state with marks of two upstream shards on two segments, a retired upstream shard and an
/// idleness timeout: what a merged shuffle shard checkpoints.
fn fixture_state() -> DownstreamState {
    let seq = |n: u64| SequenceNumber::parse(&n.to_string()).unwrap();
    let sources = [Source::new("up", "input")];
    let mut a = DownstreamState::new(0..4, sources.clone(), Some(60_000)).unwrap();
    let mut b = DownstreamState::new(4..8, sources, Some(60_000)).unwrap();
    for (state, group, shard, n) in [(&mut a, 1, "s0", 17), (&mut b, 5, "s1", 4_711)] {
        let w = WatermarkRecord {
            stage: "up",
            source_stream: "input",
            source_shard: shard,
            watermark: 1_000 + n,
            closed: false,
            parents: vec!["s9"],
        };
        state.dedup.retire_parents(&w);
        state.watermark.observe(&w, 7);
        let sequence = seq(n as u64);
        let ShuffleRecord::Data(mut d) = data(&sequence, b"", 0) else {
            unreachable!()
        };
        d.key_group = group;
        d.id.source_shard = shard;
        state.dedup.check(&d);
    }
    DownstreamState::adopt([&a, &b], 0..8, Some(60_000)).unwrap()
}

#[test]
fn the_checkpointed_downstream_state_keeps_its_encoding() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/downstream_state_v1.postcard");
    let state = fixture_state();
    let bytes = state.encode().unwrap();
    if std::env::var_os("SHARDFLOW_WRITE_FIXTURES").is_some() {
        std::fs::write(&path, &bytes).unwrap();
    }
    let fixture = std::fs::read(&path).expect("the fixture (SHARDFLOW_WRITE_FIXTURES=1 writes it)");
    assert_eq!(
        bytes, fixture,
        "the encoding of DownstreamState changed: checkpoints would not restore"
    );
    let decoded = DownstreamState::decode(&fixture).unwrap();
    assert_eq!(decoded, state);
    assert_eq!(decoded.dedup.segments(), [0..4, 4..8]);
    assert_eq!(decoded.dedup.marks(), 2);
    // Each parent's watermark reached its engine: the child starts at the larger.
    assert_eq!(decoded.watermark.current(), 5_711);
    assert_eq!(
        decoded.watermark.upstream_shards().filter(|s| s.2).count(),
        1,
        "s9 retired"
    );
}
