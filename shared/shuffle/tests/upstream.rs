//! The upstream half's sending protocol, record by record: a new partition announces itself
//! before its data, a batch ends with a watermark record when the watermark advanced or the
//! partition ended, a retried batch re-sends the same bytes, lifted batches keep ids in order.

use shardflow_engine::combine::Count;
use shardflow_engine::{
    Engine, Lifted, Pipeline, ShuffleOutput, SplitPipeline, WatermarkStrategy, Windowing, MIN_TIMESTAMP,
};
use shardflow_shuffle::{
    BatchEnd, Frame, KeyGroupSpace, Packed, ShardMap, ShuffleRecord, ShuffleWatermark, Source, UpstreamBatch,
    UpstreamShard, WatermarkRecord,
};
use shardflow_stage::SequenceNumber;

/// (key, event time)
type Ev = (u32, i64);

fn counts() -> SplitPipeline<Ev, Lifted<u32, Ev, u64>, (u32, u64)> {
    Pipeline::builder("counts")
        .max_key_groups(8)
        .watermarks(WatermarkStrategy::bounded_out_of_orderness(0).unwrap())
        .event_time(|r: &Ev| r.1)
        .key_by(|r| r.0)
        .shuffle()
        .unwrap()
        .window(Windowing::tumbling(10).unwrap())
        .aggregate_lifted(Count, |k, _w, _p, n| (*k, n))
        .sink("counts")
}

const SHARD: UpstreamShard<'static> = UpstreamShard {
    stage: "up",
    stream: "input",
    shard: "shardId-000000000000",
    parents: &[],
    siblings: &[],
};

fn batch(
    split: &SplitPipeline<Ev, Lifted<u32, Ev, u64>, (u32, u64)>,
    engine: &mut Engine<Ev, ShuffleOutput<Lifted<u32, Ev, u64>>>,
    map: &ShardMap,
    records: &[(u64, Ev)],
    end: BatchEnd,
    lift: bool,
) -> Packed {
    let combiner = if lift { split.batch_combiner() } else { None };
    let mut b = UpstreamBatch::begin(engine, map, SHARD)
        .unwrap()
        .with_combiner(combiner);
    for (offset, r) in records {
        let sequence = SequenceNumber::parse(&offset.to_string()).unwrap();
        b.push(&sequence, *offset, 0, *r).unwrap();
    }
    b.finish(end).unwrap()
}

/// Per shard, the records as (kind, watermark or (sequence, index), closed).
fn records(packed: &Packed, shards: usize) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new(); shards];
    for r in &packed.records {
        for rec in Frame::parse(&r.data).unwrap().records() {
            out[r.shard_index].push(match rec.unwrap() {
                ShuffleRecord::Data(d) => format!("data {}.{}", d.id.sequence, d.id.output_index),
                ShuffleRecord::Watermark(w) => format!("wm {} closed={}", w.watermark, w.closed),
            });
        }
    }
    out
}

#[test]
fn a_new_partition_is_announced_to_every_shard_and_a_batch_ends_with_its_watermark_when_it_advanced() {
    let split = counts();
    let map = ShardMap::even(KeyGroupSpace::new(8), 2);
    let mut engine = split.upstream.engine();
    let first = batch(
        &split,
        &mut engine,
        &map,
        &[(0, (1, 5)), (1, (2, 7))],
        BatchEnd::Open,
        false,
    );
    let per_shard = records(&first, 2);
    for shard in &per_shard {
        assert_eq!(
            shard.first().map(String::as_str),
            Some(&*format!("wm {MIN_TIMESTAMP} closed=false"))
        );
        assert_eq!(shard.last().map(String::as_str), Some("wm 7 closed=false"));
    }
    assert_eq!(per_shard.iter().flatten().filter(|r| r.starts_with("data")).count(), 2);
    // Nothing new: no watermark record.
    let quiet = batch(&split, &mut engine, &map, &[(2, (1, 3))], BatchEnd::Open, false);
    assert!(records(&quiet, 2).iter().flatten().all(|r| r.starts_with("data")));
    // The end of the partition: a closed record to every shard.
    let last = batch(&split, &mut engine, &map, &[], BatchEnd::Closed, false);
    assert_eq!(records(&last, 2), vec![vec!["wm 7 closed=true".to_owned()]; 2]);
}

#[test]
fn a_retried_batch_re_sends_byte_identical_records_lifted_or_not() {
    let split = counts();
    let map = ShardMap::even(KeyGroupSpace::new(8), 3);
    let input: Vec<(u64, Ev)> = (0..40).map(|i| (i, ((i % 5) as u32, (i as i64 * 7) % 60))).collect();
    for lift in [false, true] {
        let once = batch(&split, &mut split.upstream.engine(), &map, &input, BatchEnd::Open, lift);
        let again = batch(&split, &mut split.upstream.engine(), &map, &input, BatchEnd::Open, lift);
        assert_eq!(once, again, "lift {lift}");
    }
}

#[test]
fn lifted_partials_are_sent_before_the_watermark_passes_their_window_with_ids_in_sending_order() {
    let split = counts();
    let map = ShardMap::even(KeyGroupSpace::new(8), 1);
    let mut engine = split.upstream.engine();
    // Key 1 in [0, 10) three times, then at 12 (a partial of [10, 20) starts), then at 2: its
    // partition's watermark (12) has passed [0, 10), whose partial goes first, and the value is
    // sent raw (it may be late); the partial of [10, 20) goes at the end of the batch.
    let input = [(0, (1, 1)), (1, (1, 2)), (2, (1, 3)), (3, (1, 12)), (4, (1, 2))];
    let packed = batch(&split, &mut engine, &map, &input, BatchEnd::Open, true);
    let mut kinds = Vec::new();
    for r in &packed.records {
        for rec in Frame::parse(&r.data).unwrap().records() {
            if let ShuffleRecord::Data(d) = rec.unwrap() {
                let value: Lifted<u32, Ev, u64> = postcard::from_bytes(d.payload).unwrap();
                let kind = match value {
                    Lifted::Raw(_) => "raw".to_owned(),
                    Lifted::Partial { count, window, .. } => format!("partial {}x{}", count, window.start),
                };
                kinds.push((d.id.sequence.to_string(), d.id.output_index, kind));
            }
        }
    }
    assert_eq!(
        kinds,
        [
            ("4".to_owned(), 0, "partial 3x0".to_owned()),
            ("4".to_owned(), 1, "raw".to_owned()),
            ("4".to_owned(), 2, "partial 1x10".to_owned()),
        ]
    );
}

#[test]
fn a_split_childs_first_batch_announces_its_sibling_so_the_downstream_waits_for_both_children() {
    let split = counts();
    let map = ShardMap::even(KeyGroupSpace::new(8), 1);
    // the parent ran to its end at watermark 7; the child starts from its state
    let mut parent = split.upstream.engine();
    let parent_shard = UpstreamShard {
        shard: "shardId-000000000000",
        ..SHARD
    };
    let mut b = UpstreamBatch::begin(&mut parent, &map, parent_shard).unwrap();
    for (offset, r) in [(0, (1, 5)), (1, (2, 7))] {
        b.push(&SequenceNumber::parse(&offset.to_string()).unwrap(), offset, 0, r)
            .unwrap();
    }
    let from_parent = b.finish(BatchEnd::Open).unwrap();
    let image = shardflow_engine::CheckpointImage::new(parent.snapshot_full().unwrap());
    let mut child = Engine::adopt(&split.upstream, &[image], &|_| true).unwrap();
    let child_shard = UpstreamShard {
        shard: "shardId-000000000001",
        parents: &["shardId-000000000000"],
        siblings: &["shardId-000000000002"],
        ..SHARD
    };
    let mut b = UpstreamBatch::begin(&mut child, &map, child_shard).unwrap();
    b.push(&SequenceNumber::parse("10").unwrap(), 10, 0, (1, 50)).unwrap();
    let from_child = b.finish(BatchEnd::Open).unwrap();
    let announced = watermark_records(&from_child);
    assert_eq!(
        announced[..2],
        [
            (
                "shardId-000000000001".to_owned(),
                announced[0].1,
                vec!["shardId-000000000000".to_owned()]
            ),
            (
                "shardId-000000000002".to_owned(),
                announced[0].1,
                vec!["shardId-000000000000".to_owned()]
            ),
        ],
        "the child and its sibling are announced first, at the child's starting watermark"
    );

    // downstream: another upstream shard far ahead; the parent retired by the child; the child
    // ahead of the parent — the sibling, not heard from itself, still holds the watermark
    let mut input = ShuffleWatermark::new([Source::new("up", "input")], None).unwrap();
    let other = WatermarkRecord {
        stage: "up",
        source_stream: "input",
        source_shard: "shardId-000000000009",
        watermark: 100,
        closed: false,
        parents: vec![],
    };
    let observe_all = |input: &mut ShuffleWatermark, packed: &Packed| {
        for r in &packed.records {
            for rec in Frame::parse(&r.data).unwrap().records() {
                if let ShuffleRecord::Watermark(w) = rec.unwrap() {
                    input.observe(&w, 0);
                }
            }
        }
    };
    observe_all(&mut input, &from_parent);
    input.observe(&other, 0);
    assert_eq!(input.current(), 7);
    observe_all(&mut input, &from_child);
    assert_eq!(
        input.current(),
        7,
        "held where the parent left it until the sibling reports"
    );
    let sibling = WatermarkRecord {
        source_shard: "shardId-000000000002",
        watermark: 30,
        parents: vec!["shardId-000000000000"],
        ..other.clone()
    };
    input.observe(&sibling, 0);
    assert_eq!(
        input.current(),
        30,
        "then the minimum over both children and the other shard"
    );
    // a later batch of the child announces nobody
    let mut b = UpstreamBatch::begin(&mut child, &map, child_shard).unwrap();
    b.push(&SequenceNumber::parse("11").unwrap(), 11, 0, (1, 60)).unwrap();
    let later = b.finish(BatchEnd::Open).unwrap();
    assert!(watermark_records(&later)
        .iter()
        .all(|(shard, ..)| shard == "shardId-000000000001"));
}

/// The watermark records of `packed`'s first Kinesis record: (shard, watermark, parents).
fn watermark_records(packed: &Packed) -> Vec<(String, i64, Vec<String>)> {
    Frame::parse(&packed.records[0].data)
        .unwrap()
        .records()
        .filter_map(|rec| match rec.unwrap() {
            ShuffleRecord::Watermark(w) => Some((
                w.source_shard.to_owned(),
                w.watermark,
                w.parents.iter().map(|p| (*p).to_owned()).collect(),
            )),
            ShuffleRecord::Data(_) => None,
        })
        .collect()
}
