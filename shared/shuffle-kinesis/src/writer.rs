//! The shuffle writer: sends one upstream batch's [`Packed`] output by the sending protocol of
//! [`shardflow_shuffle::pack`].
//!
//! # Protocol, as this writer runs it
//! 1. The calls of [`Packed::calls`] go one at a time, in order. A call's records that failed
//!    with a retryable code (or all of them, if the whole call failed transiently) are sent
//!    again after a backoff with full jitter ([`Backoff`]); call `k + 1` starts only once every
//!    record of call `k` is stored. So every shard receives the batch's frames in packing order.
//! 2. Each stored record's `ShardId` is compared with [`PackedRecord::shard_id`]. A difference
//!    means the shuffle stream was split or merged since the map was read: the writer stops
//!    sending, reads the map again (waiting, with backoff, until `ListShards` no longer routes
//!    the record's hash key to the shard it was packed for), re-packs the **whole** batch through
//!    the caller's packing closure and sends it from its first call. What was already stored is
//!    sent again; the downstream drops it (high-water marks, key groups it does not own).
//! 3. At most [`WriterConfig::max_repacks`] re-packs per batch; then
//!    [`WriteError::TooManyReshards`].
//! 4. [`ShuffleWriter::send`] returns only when every record is stored on the shard it was
//!    packed for: the caller may then commit its upstream position.
//!
//! [`PackedRecord::shard_id`]: shardflow_shuffle::PackedRecord::shard_id

use std::time::SystemTime;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shardflow_kinesis::batch::{check_record, PutRecordsLimits};
use shardflow_kinesis::{
    is_retryable, Backoff, CallError, InvalidRecord, KinesisTransport, PutRecordsTransport, RecordResult, StreamRecord,
};
use shardflow_shuffle::{payload_units, KeyGroupSpace, PackError, Packed, ShardMap};

use crate::map::{ShardMapError, ShardMapReader};

/// How the writer retries and how many reshards it follows within one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterConfig {
    /// Backoff of failed records, of failed calls, and of re-reading a map that `ListShards` has
    /// not updated yet; `max_attempts` bounds each of these.
    pub backoff: Backoff,
    /// Re-packs of one batch after reshards before [`WriteError::TooManyReshards`].
    pub max_repacks: u32,
}

impl Default for WriterConfig {
    /// [`Backoff::default`] (50 ms doubling to 5 s, 30 retries) and 4 re-packs.
    fn default() -> Self {
        WriterConfig {
            backoff: Backoff::default(),
            max_repacks: 4,
        }
    }
}

/// Why a batch was not (completely) written. The batch may be partly stored: the caller must not
/// commit its upstream position, and a retry of the batch re-sends it (byte-identical records
/// for an unchanged map), which the downstream deduplicates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The shard map could not be read, or was refused.
    #[error(transparent)]
    ShardMap(#[from] ShardMapError),
    /// A packed record cannot be put (over the size limit, a bad partition or hash key): not
    /// made by [`shardflow_shuffle::Packer`].
    #[error("a packed shuffle record cannot be put: {0}")]
    Invalid(#[from] InvalidRecord),
    /// Re-packing the batch for a new map failed.
    #[error("re-packing the batch for the new shard map: {0}")]
    Pack(#[from] PackError),
    /// A record failed with a code that retrying cannot fix.
    #[error("a shuffle record for {shard_id} was rejected: {code}: {message}")]
    Rejected {
        /// The shard it was packed for.
        shard_id: String,
        /// The error code.
        code: String,
        /// The service's message.
        message: String,
    },
    /// A record still failed after [`Backoff::max_attempts`] retries.
    #[error("a shuffle record for {shard_id} still failed after {attempts} attempts: {last_error}")]
    RetriesExhausted {
        /// The shard it was packed for.
        shard_id: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last_error: String,
    },
    /// A whole call failed in a way retrying cannot fix (no such stream, access denied, ...).
    #[error("PutRecords failed: {0}")]
    Call(String),
    /// The service answered with another number of results than records sent.
    #[error("PutRecords returned {got} results for {sent} records")]
    ResultCountMismatch {
        /// Records sent.
        sent: usize,
        /// Results received.
        got: usize,
    },
    /// The stream was resharded again after [`WriterConfig::max_repacks`] re-packs.
    #[error("the shuffle stream was resharded during {repacks} re-packs of one batch; last: a record for {expected} was stored on {stored}")]
    TooManyReshards {
        /// Re-packs made.
        repacks: u32,
        /// The shard the last misrouted record was packed for.
        expected: String,
        /// The shard that stored it.
        stored: String,
    },
    /// A record was stored on another shard than packed for, but `ListShards` kept routing its
    /// hash key to the packing shard for [`Backoff::max_attempts`] reads.
    #[error("a record for {expected} was stored on {stored}, but ListShards still routes its hash key to {expected}")]
    StaleShardMap {
        /// The shard the record was packed for.
        expected: String,
        /// The shard that stored it.
        stored: String,
    },
}

/// What writing one batch took, for the stage's metrics. Stored records and payload units count
/// every record stored, those of rounds abandoned after a reshard included (they were billed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Kinesis records stored.
    pub records: u64,
    /// Shuffled data records in the batch (as last packed).
    pub data_records: u64,
    /// `PutRecords` calls made, retries included.
    pub calls: u64,
    /// PUT payload units (25 KB each) of the records stored.
    pub payload_units: u64,
    /// Records sent again after a failure of the record or of its whole call.
    pub retries: u64,
    /// Times the whole batch was re-packed after a reshard.
    pub repacks: u32,
}

/// A record stored on another shard than the one it was packed for.
#[derive(Debug)]
struct Misrouted {
    expected: String,
    stored: String,
    hash_key: u128,
}

/// Writes packed upstream batches into one shuffle stream (see the module documentation). It
/// caches the shard map between batches; a reshard is noticed when a record lands on another
/// shard, and the map is re-read then.
#[derive(Debug)]
pub struct ShuffleWriter<T = KinesisTransport> {
    maps: ShardMapReader,
    transport: T,
    config: WriterConfig,
    map: Option<ShardMap>,
    rng: SmallRng,
}

impl ShuffleWriter<KinesisTransport> {
    /// A writer into the stream `stream_name` through `client`.
    pub fn new(client: aws_sdk_kinesis::Client, stream_name: impl Into<String>, config: WriterConfig) -> Self {
        let maps = ShardMapReader::new(client.clone(), stream_name);
        let transport = KinesisTransport::new(client, maps.stream_name());
        Self::with_transport(maps, transport, config)
    }
}

impl<T: PutRecordsTransport> ShuffleWriter<T> {
    /// A writer reading the map with `maps` and putting through `transport` (which must write
    /// into the same stream).
    pub fn with_transport(maps: ShardMapReader, transport: T, config: WriterConfig) -> Self {
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        ShuffleWriter {
            maps,
            transport,
            config,
            map: None,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// The shuffle stream written.
    pub fn stream_name(&self) -> &str {
        self.maps.stream_name()
    }

    /// The shard map to pack the next batch for: the cached one if it is over `space`, else read
    /// from `ListShards`.
    pub async fn shard_map(&mut self, space: KeyGroupSpace) -> Result<&ShardMap, WriteError> {
        match &mut self.map {
            Some(map) if map.space() == space => {}
            slot => *slot = Some(self.maps.read(space).await?),
        }
        Ok(self.map.as_ref().expect("the map was just set"))
    }

    /// Reads the shard map again from `ListShards` (and caches it).
    pub async fn refresh_shard_map(&mut self, space: KeyGroupSpace) -> Result<&ShardMap, WriteError> {
        Ok(self.map.insert(self.maps.read(space).await?))
    }

    /// Packs a batch for the current shard map with `pack` and sends it ([`ShuffleWriter::send`]).
    pub async fn write<F>(&mut self, space: KeyGroupSpace, mut pack: F) -> Result<WriteStats, WriteError>
    where
        F: FnMut(&ShardMap) -> Result<Packed, PackError>,
    {
        let packed = pack(self.shard_map(space).await?)?;
        self.send(space, packed, pack).await
    }

    /// Sends `packed` (packed for a map of `space`) by the protocol of the module documentation;
    /// after a reshard, re-packs the whole batch with `repack` for the map read again. Returns
    /// once every record is stored on the shard it was packed for.
    pub async fn send<F>(
        &mut self,
        space: KeyGroupSpace,
        packed: Packed,
        mut repack: F,
    ) -> Result<WriteStats, WriteError>
    where
        F: FnMut(&ShardMap) -> Result<Packed, PackError>,
    {
        let mut stats = WriteStats::default();
        let mut packed = packed;
        loop {
            stats.data_records = packed.data_records as u64;
            let Some(misrouted) = self.send_calls(packed, &mut stats).await? else {
                return Ok(stats);
            };
            if stats.repacks >= self.config.max_repacks {
                return Err(WriteError::TooManyReshards {
                    repacks: stats.repacks,
                    expected: misrouted.expected,
                    stored: misrouted.stored,
                });
            }
            stats.repacks += 1;
            tracing::info!(
                stream = %self.stream_name(),
                expected = %misrouted.expected,
                stored = %misrouted.stored,
                repack = stats.repacks,
                "the shuffle stream was resharded: re-reading its map and re-packing the batch"
            );
            let map = self.reread_after_reshard(space, &misrouted).await?;
            packed = repack(map)?;
        }
    }

    /// Sends every call of `packed` in order; stops at the first call that stored a record on
    /// another shard than packed for, and returns it.
    async fn send_calls(&mut self, packed: Packed, stats: &mut WriteStats) -> Result<Option<Misrouted>, WriteError> {
        let calls = packed.calls();
        let limits = PutRecordsLimits::default();
        let mut expected = Vec::with_capacity(packed.records.len());
        let mut records = Vec::with_capacity(packed.records.len());
        for r in packed.records {
            let record = StreamRecord {
                partition_key: r.partition_key,
                data: r.data,
                explicit_hash_key: Some(r.explicit_hash_key),
            };
            check_record(&record, &limits)?;
            let hash_key = record.explicit_hash_key.as_deref().and_then(|k| k.parse::<u128>().ok());
            expected.push((r.shard_id, hash_key.expect("checked: a decimal below 2^128")));
            records.push(record);
        }
        for call in calls {
            if let Some(misrouted) = self.send_call(&records[call.clone()], &expected[call], stats).await? {
                return Ok(Some(misrouted));
            }
        }
        Ok(None)
    }

    /// Sends one call until every record is stored (retrying failed ones), or returns the first
    /// record stored on another shard than `expected`.
    async fn send_call(
        &mut self,
        records: &[StreamRecord],
        expected: &[(String, u128)],
        stats: &mut WriteStats,
    ) -> Result<Option<Misrouted>, WriteError> {
        let mut pending: Vec<usize> = (0..records.len()).collect();
        let mut attempt = 0u32;
        loop {
            let subset: Vec<StreamRecord>;
            let batch = if pending.len() == records.len() {
                records
            } else {
                subset = pending.iter().map(|&i| records[i].clone()).collect();
                &subset
            };
            stats.calls += 1;
            let (failed, last_error) = match self.transport.put_records(batch).await {
                Err(CallError::Fatal(message)) => return Err(WriteError::Call(message)),
                Err(CallError::Retryable(message)) => (pending, message),
                Ok(results) => {
                    if results.len() != pending.len() {
                        return Err(WriteError::ResultCountMismatch {
                            sent: pending.len(),
                            got: results.len(),
                        });
                    }
                    let mut failed = Vec::new();
                    let mut last_error = String::new();
                    let mut misrouted = None;
                    for (i, result) in pending.into_iter().zip(results) {
                        let (want, hash_key) = &expected[i];
                        match result {
                            RecordResult::Stored { shard_id, .. } => {
                                stats.records += 1;
                                stats.payload_units += payload_units(records[i].billed_bytes());
                                if shard_id != *want && misrouted.is_none() {
                                    misrouted = Some(Misrouted {
                                        expected: want.clone(),
                                        stored: shard_id,
                                        hash_key: *hash_key,
                                    });
                                }
                            }
                            RecordResult::Failed { code, message } if is_retryable(&code) => {
                                failed.push(i);
                                last_error = format!("{code}: {message}");
                            }
                            RecordResult::Failed { code, message } => {
                                return Err(WriteError::Rejected {
                                    shard_id: want.clone(),
                                    code,
                                    message,
                                })
                            }
                        }
                    }
                    if misrouted.is_some() {
                        return Ok(misrouted);
                    }
                    (failed, last_error)
                }
            };
            if failed.is_empty() {
                return Ok(None);
            }
            let Some(delay) = self.config.backoff.delay(attempt, self.rng.random()) else {
                return Err(WriteError::RetriesExhausted {
                    shard_id: expected[failed[0]].0.clone(),
                    attempts: attempt + 1,
                    last_error,
                });
            };
            attempt += 1;
            stats.retries += failed.len() as u64;
            tracing::debug!(stream = %self.stream_name(), records = failed.len(), attempt, ?delay, error = %last_error, "retrying shuffle records");
            tokio::time::sleep(delay).await;
            pending = failed;
        }
    }

    /// Reads the map until it no longer routes `misrouted`'s hash key to the shard it was packed
    /// for (`ListShards` may lag behind a reshard), with backoff between reads.
    async fn reread_after_reshard(
        &mut self,
        space: KeyGroupSpace,
        misrouted: &Misrouted,
    ) -> Result<&ShardMap, WriteError> {
        let mut attempt = 0u32;
        loop {
            let map = self.maps.read(space).await?;
            if map.owner_of_hash_key(misrouted.hash_key).shard_id != misrouted.expected {
                return Ok(self.map.insert(map));
            }
            let Some(delay) = self.config.backoff.delay(attempt, self.rng.random()) else {
                return Err(WriteError::StaleShardMap {
                    expected: misrouted.expected.clone(),
                    stored: misrouted.stored.clone(),
                });
            };
            attempt += 1;
            tracing::debug!(stream = %self.stream_name(), ?delay, "ListShards does not show the reshard yet");
            tokio::time::sleep(delay).await;
        }
    }
}
