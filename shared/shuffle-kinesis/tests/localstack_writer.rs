//! The shuffle writer against the Kinesis of LocalStack (`AWS_ENDPOINT_URL`): records land on
//! the shard owning their key group in packing order, a resent batch is byte-identical, a split
//! or merge between packing and sending is noticed and followed (each record then reaches its
//! owner exactly once through `DedupState`), and failed records are retried before the next call.
//!
//! Per-record failures come from a wrapper around the real `KinesisTransport`: LocalStack's
//! `KINESIS_ERROR_PROBABILITY` fails *every* entry of a call at once (its `put_records` answers
//! all entries with `ProvisionedThroughputExceededException`) and is set for the whole instance
//! at start-up, so it can neither fail some entries of a call nor one test's calls only.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use shardflow_kinesis::{Backoff, CallError, KinesisTransport, PutRecordsTransport, RecordResult, StreamRecord};
use shardflow_shuffle::{
    DataRecord, DedupState, Frame, KeyGroupSpace, PackError, Packed, Packer, RecordId, ShardMap, ShuffleRecord,
    Verdict, WatermarkRecord,
};
use shardflow_shuffle_kinesis::{ShardMapReader, ShuffleWriter, WriteError, WriterConfig};
use shardflow_stage::SequenceNumber;

const STAGE: &str = "writer-test";
const SOURCE_SHARD: &str = "shardId-000000000007";

/// One upstream batch: (sequence number, output index, key group, payload) in input order.
struct Batch {
    records: Vec<(SequenceNumber, u32, u16, Vec<u8>)>,
}

impl Batch {
    /// `n` records spread over every key group of `space`, two outputs per input record, with
    /// payloads of `payload` bytes.
    fn new(space: KeyGroupSpace, n: usize, payload: usize) -> Self {
        let groups = usize::from(space.max_key_groups());
        let records = (0..n)
            .map(|i| {
                let seq = SequenceNumber::parse(&(1_000 + i / 2).to_string()).unwrap();
                let group = ((i * 37) % groups) as u16;
                let body = format!("{i:08}").into_bytes().repeat(payload.div_ceil(8));
                (seq, (i % 2) as u32, group, body[..payload].to_vec())
            })
            .collect();
        Batch { records }
    }

    /// Packs the batch and its watermark for `map` into Kinesis records of at most
    /// `max_record_bytes`.
    fn pack(&self, map: &ShardMap, max_record_bytes: usize) -> Result<Packed, PackError> {
        let mut packer = Packer::with_max_record_bytes(map, max_record_bytes);
        for (seq, index, group, payload) in &self.records {
            packer.push_data(&DataRecord {
                id: RecordId {
                    stage: STAGE,
                    source_shard: SOURCE_SHARD,
                    sequence: Cow::Borrowed(seq),
                    output_index: *index,
                },
                key_group: *group,
                timestamp: 1_704_067_200_000,
                payload,
            })?;
        }
        packer.push_watermark(&WatermarkRecord {
            stage: STAGE,
            source_stream: "cdc",
            source_shard: SOURCE_SHARD,
            watermark: 1_704_067_200_000,
            closed: false,
            parents: vec![],
        })?;
        Ok(packer.finish())
    }

    fn ids(&self) -> Vec<(String, u32)> {
        self.records
            .iter()
            .map(|(seq, index, ..)| (seq.as_str().to_owned(), *index))
            .collect()
    }
}

fn fast() -> WriterConfig {
    WriterConfig {
        backoff: Backoff {
            base: Duration::from_millis(20),
            max: Duration::from_millis(500),
            max_attempts: 30,
        },
        max_repacks: 4,
    }
}

/// Every record of the stream, per shard in stored order.
async fn read_back(client: &aws_sdk_kinesis::Client, stream: &str, records: u64) -> BTreeMap<String, Vec<Vec<u8>>> {
    let read = shardflow_testkit::read_stream(client, stream, records as usize, Duration::from_secs(60)).await;
    assert_eq!(read.len() as u64, records, "exactly the records stored");
    let mut by_shard: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for r in read {
        by_shard.entry(r.shard_id).or_default().push(r.data);
    }
    by_shard
}

/// The data records of the frames, as (sequence, output index, key group).
fn data_ids(frames: &[Vec<u8>]) -> Vec<(String, u32, u16)> {
    let mut out = Vec::new();
    for frame in frames {
        for record in Frame::parse(frame).unwrap().records() {
            if let ShuffleRecord::Data(d) = record.unwrap() {
                out.push((d.id.sequence.as_str().to_owned(), d.id.output_index, d.key_group));
            }
        }
    }
    out
}

async fn wait_active(client: &aws_sdk_kinesis::Client, stream: &str) {
    for _ in 0..300 {
        let summary = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .unwrap();
        let status = summary.stream_description_summary().map(|s| s.stream_status().clone());
        if status == Some(aws_sdk_kinesis::types::StreamStatus::Active) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{stream} did not become active again");
}

/// The packed records' frames per shard id, in packing order.
fn packed_by_shard(packed: &Packed) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut by_shard: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for r in &packed.records {
        by_shard.entry(r.shard_id.clone()).or_default().push(r.data.clone());
    }
    by_shard
}

#[tokio::test(flavor = "current_thread")]
async fn every_record_lands_on_the_shard_owning_its_key_group_in_the_packers_order() {
    let (client, stream) = shardflow_testkit::kinesis_stream("shuffle-route", 4).await;
    let space = KeyGroupSpace::new(128);
    let batch = Batch::new(space, 3_000, 120);
    let mut writer = ShuffleWriter::new(client.clone(), &stream, fast());
    // Small Kinesis records, so that every shard gets many and the batch takes many calls.
    let packed = batch.pack(writer.shard_map(space).await.unwrap(), 8 << 10).unwrap();
    let map = writer.shard_map(space).await.unwrap().clone();
    assert_eq!(map.shards().len(), 4);
    assert!(packed.calls().len() > 10, "{} calls", packed.calls().len());

    let stats = writer
        .send(space, packed.clone(), |m| batch.pack(m, 8 << 10))
        .await
        .unwrap();
    assert_eq!(stats.records, packed.records.len() as u64);
    assert_eq!(stats.calls, packed.calls().len() as u64);
    assert_eq!(stats.payload_units, packed.payload_units());
    assert_eq!((stats.data_records, stats.retries, stats.repacks), (3_000, 0, 0));

    let stored = read_back(&client, &stream, stats.records).await;
    assert_eq!(
        stored,
        packed_by_shard(&packed),
        "each shard holds its frames in packing order"
    );
    let mut seen = 0;
    for (shard, frames) in &stored {
        let owned = map.groups_of(shard).unwrap();
        for (_, _, group) in data_ids(frames) {
            assert!(owned.contains(&group), "group {group} on {shard}, which owns {owned:?}");
            seen += 1;
        }
    }
    assert_eq!(seen, 3_000);
    shardflow_testkit::delete_stream(&client, &stream).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_resent_batch_stores_byte_identical_records() {
    let (client, stream) = shardflow_testkit::kinesis_stream("shuffle-resend", 4).await;
    let space = KeyGroupSpace::new(128);
    let batch = Batch::new(space, 2_000, 50);
    let mut writer = ShuffleWriter::new(client.clone(), &stream, fast());
    let first = writer.write(space, |m| batch.pack(m, 8 << 10)).await.unwrap();
    // A retried upstream batch, by a writer of another container.
    let mut other = ShuffleWriter::new(client.clone(), &stream, fast());
    let second = other.write(space, |m| batch.pack(m, 8 << 10)).await.unwrap();
    assert_eq!(first, second);

    let stored = read_back(&client, &stream, first.records + second.records).await;
    assert_eq!(stored.len(), 4);
    for (shard, frames) in stored {
        let (a, b) = frames.split_at(frames.len() / 2);
        assert_eq!(a, b, "{shard}: the resend repeats the first send byte for byte");
    }
    shardflow_testkit::delete_stream(&client, &stream).await;
}

/// Reads every shard in lineage order (a child after its parents, adopting their dedup states)
/// and returns, per data record id, the shards where the downstream judged it new.
async fn deliver_through_dedup(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    space: KeyGroupSpace,
    records: u64,
) -> HashMap<(String, u32), Vec<String>> {
    let stored = read_back(client, stream, records).await;
    let shards = ShardMapReader::new(client.clone(), stream).list_shards().await.unwrap();
    let mut states: HashMap<String, DedupState> = HashMap::new();
    let mut delivered: HashMap<(String, u32), Vec<String>> = HashMap::new();
    // Shard ids grow with creation: parents come before their children.
    let mut shards = shards.to_vec();
    shards.sort_by(|a, b| a.shard_id().cmp(b.shard_id()));
    for shard in shards {
        let range = shard.hash_key_range().unwrap();
        let owned =
            space.groups_in(&(range.starting_hash_key().parse().unwrap()..=range.ending_hash_key().parse().unwrap()));
        let parents: Vec<&DedupState> = [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
            .into_iter()
            .flatten()
            .filter_map(|p| states.get(p))
            .collect();
        let mut state = if parents.is_empty() {
            DedupState::new(owned)
        } else {
            DedupState::adopt(parents, owned)
        };
        for frame in stored.get(shard.shard_id()).into_iter().flatten() {
            for record in Frame::parse(frame).unwrap().records() {
                if let ShuffleRecord::Data(d) = record.unwrap() {
                    if state.check(&d) == Verdict::New {
                        assert!(state.owned().contains(&d.key_group));
                        delivered
                            .entry((d.id.sequence.as_str().to_owned(), d.id.output_index))
                            .or_default()
                            .push(shard.shard_id().to_owned());
                    }
                }
            }
        }
        states.insert(shard.shard_id().to_owned(), state);
    }
    delivered
}

/// Asserts that every record of `batch` was delivered exactly once, on the shard owning its key
/// group: in the `new` map, or in the `old` one for a shard that has closed since.
fn assert_exactly_once_on_owner(
    batch: &Batch,
    delivered: &HashMap<(String, u32), Vec<String>>,
    old: &ShardMap,
    new: &ShardMap,
) {
    assert_eq!(delivered.len(), batch.records.len(), "every record delivered");
    for ((seq, index), (_, _, group, _)) in batch.ids().into_iter().zip(&batch.records) {
        let shards = &delivered[&(seq.clone(), index)];
        assert_eq!(shards.len(), 1, "{seq}/{index} delivered on {shards:?}");
        let map = if new.groups_of(&shards[0]).is_some() { new } else { old };
        assert_eq!(shards[0], map.owner_of_group(*group).unwrap().shard_id, "{seq}/{index}");
    }
}

/// A split of the shard at an index of a map (at its split point), or a merge of it with the
/// next one.
#[derive(Debug, Clone, Copy)]
enum Reshard {
    Split(usize),
    Merge(usize),
}

async fn reshard(client: &aws_sdk_kinesis::Client, stream: &str, map: &ShardMap, how: Reshard) {
    let shard = |i: usize| map.shards()[i].shard_id.clone();
    match how {
        Reshard::Split(i) => {
            let at = map.split_point(&shard(i)).unwrap().to_string();
            let split = client.split_shard().stream_name(stream).shard_to_split(shard(i));
            split.new_starting_hash_key(at).send().await.unwrap();
        }
        Reshard::Merge(i) => {
            let merge = client.merge_shards().stream_name(stream).shard_to_merge(shard(i));
            merge.adjacent_shard_to_merge(shard(i + 1)).send().await.unwrap();
        }
    }
    wait_active(client, stream).await;
}

/// Packs a batch for a 4-shard stream, reshards it `how`, sends the batch through `transport`
/// (made for the client, the stream and the map packed for) and checks that the writer re-packed
/// once for a map of `open_after` shards and that each record reached its owner exactly once.
async fn packed_then_resharded_then_sent<T, M>(prefix: &str, how: Option<Reshard>, open_after: usize, transport: M)
where
    T: PutRecordsTransport,
    M: FnOnce(aws_sdk_kinesis::Client, String, ShardMap) -> T,
{
    let (client, stream) = shardflow_testkit::kinesis_stream(prefix, 4).await;
    let space = KeyGroupSpace::new(128);
    let batch = Batch::new(space, 2_000, 100);
    let maps = ShardMapReader::new(client.clone(), &stream);
    let old = maps.read(space).await.unwrap();
    let packed = batch.pack(&old, 32 << 10).unwrap();
    assert!(packed.calls().len() > 1);
    if let Some(how) = how {
        reshard(&client, &stream, &old, how).await;
    }
    let transport = transport(client.clone(), stream.clone(), old.clone());
    let mut writer = ShuffleWriter::with_transport(maps, transport, fast());
    let stats = writer.send(space, packed, |m| batch.pack(m, 32 << 10)).await.unwrap();
    assert_eq!(stats.repacks, 1);
    let new = writer.shard_map(space).await.unwrap().clone();
    assert_eq!(new.shards().len(), open_after);
    // The map read one shard per ListShards page is the same, closed parents left out.
    let paged = ShardMapReader::new(client.clone(), &stream).with_page_size(1);
    assert_eq!(paged.read(space).await.unwrap(), new);

    let delivered = deliver_through_dedup(&client, &stream, space, stats.records).await;
    assert_exactly_once_on_owner(&batch, &delivered, &old, &new);
    shardflow_testkit::delete_stream(&client, &stream).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_split_between_packing_and_sending_is_noticed_and_the_repacked_batch_reaches_each_owner_exactly_once() {
    let real = |client, stream: String, _| KinesisTransport::new(client, stream);
    packed_then_resharded_then_sent("shuffle-split", Some(Reshard::Split(1)), 5, real).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_merge_between_packing_and_sending_is_noticed_and_the_repacked_batch_reaches_each_owner_exactly_once() {
    let real = |client, stream: String, _| KinesisTransport::new(client, stream);
    packed_then_resharded_then_sent("shuffle-merge", Some(Reshard::Merge(1)), 3, real).await;
}

/// The real transport, which splits the stream's second shard right after its first call.
struct SplitAfterFirstCall {
    inner: KinesisTransport,
    client: aws_sdk_kinesis::Client,
    stream: String,
    map: ShardMap,
    split: Mutex<bool>,
}

impl PutRecordsTransport for SplitAfterFirstCall {
    async fn put_records(&self, records: &[StreamRecord]) -> Result<Vec<RecordResult>, CallError> {
        let results = self.inner.put_records(records).await?;
        let first = !std::mem::replace(&mut *self.split.lock().unwrap(), true);
        if first {
            reshard(&self.client, &self.stream, &self.map, Reshard::Split(1)).await;
        }
        Ok(results)
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_split_after_the_first_call_is_noticed_and_parent_and_children_deliver_each_record_exactly_once() {
    let splitting = |client: aws_sdk_kinesis::Client, stream: String, map| SplitAfterFirstCall {
        inner: KinesisTransport::new(client.clone(), &stream),
        client,
        stream,
        map,
        split: Mutex::new(false),
    };
    packed_then_resharded_then_sent("shuffle-split-mid", None, 5, splitting).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_reshard_beyond_the_re_pack_bound_is_a_typed_error() {
    let (client, stream) = shardflow_testkit::kinesis_stream("shuffle-bound", 2).await;
    let space = KeyGroupSpace::new(16);
    let batch = Batch::new(space, 100, 10);
    let config = WriterConfig {
        max_repacks: 0,
        ..fast()
    };
    let mut writer = ShuffleWriter::new(client.clone(), &stream, config);
    let old = writer.shard_map(space).await.unwrap().clone();
    let shard = old.shards()[0].shard_id.clone();
    reshard(&client, &stream, &old, Reshard::Split(0)).await;
    let err = writer.write(space, |m| batch.pack(m, 1 << 20)).await.unwrap_err();
    assert!(
        matches!(&err, WriteError::TooManyReshards { repacks: 0, expected, .. } if *expected == shard),
        "{err}"
    );
    shardflow_testkit::delete_stream(&client, &stream).await;
}

/// The real transport, except that the first attempt of every other record fails as throttled
/// (without reaching the stream).
struct FirstAttemptFails {
    inner: KinesisTransport,
    seen: Mutex<HashSet<Vec<u8>>>,
}

impl PutRecordsTransport for FirstAttemptFails {
    async fn put_records(&self, records: &[StreamRecord]) -> Result<Vec<RecordResult>, CallError> {
        let fail: Vec<bool> = {
            let mut seen = self.seen.lock().unwrap();
            records
                .iter()
                .enumerate()
                .map(|(i, r)| seen.insert(r.data.clone()) && i % 2 == 0)
                .collect()
        };
        let forward: Vec<StreamRecord> = records
            .iter()
            .zip(&fail)
            .filter(|(_, f)| !**f)
            .map(|(r, _)| r.clone())
            .collect();
        let mut stored = if forward.is_empty() {
            Vec::new()
        } else {
            self.inner.put_records(&forward).await?
        }
        .into_iter();
        Ok(fail
            .into_iter()
            .map(|f| match f {
                true => RecordResult::Failed {
                    code: "ProvisionedThroughputExceededException".into(),
                    message: "Rate exceeded for shard (injected)".into(),
                },
                false => stored.next().expect("one result per forwarded record"),
            })
            .collect())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn failed_records_are_retried_before_the_next_call_so_each_shard_keeps_the_packers_order() {
    let (client, stream) = shardflow_testkit::kinesis_stream("shuffle-retry", 4).await;
    let space = KeyGroupSpace::new(128);
    let batch = Batch::new(space, 2_000, 100);
    let transport = FirstAttemptFails {
        inner: KinesisTransport::new(client.clone(), &stream),
        seen: Mutex::default(),
    };
    let mut writer = ShuffleWriter::with_transport(ShardMapReader::new(client.clone(), &stream), transport, fast());
    let packed = batch.pack(writer.shard_map(space).await.unwrap(), 16 << 10).unwrap();
    let stats = writer
        .send(space, packed.clone(), |m| batch.pack(m, 16 << 10))
        .await
        .unwrap();
    assert!(stats.retries >= packed.calls().len() as u64, "{stats:?}");
    assert_eq!(stats.records, packed.records.len() as u64);
    assert_eq!(
        stats.calls,
        2 * packed.calls().len() as u64,
        "each call once more for its failed records"
    );

    let stored = read_back(&client, &stream, stats.records).await;
    assert_eq!(stored, packed_by_shard(&packed), "nothing lost, repeated or reordered");
    shardflow_testkit::delete_stream(&client, &stream).await;
}
