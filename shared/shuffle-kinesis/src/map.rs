//! The shuffle stream's shard map, read from Kinesis: every shard from `ListShards` (all pages),
//! the open ones (no `EndingSequenceNumber`) kept, and the result refused unless they tile the
//! hash-key space exactly once.

use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::types::Shard;
use shardflow_shuffle::{KeyGroupSpace, RouteError, ShardMap, ShardRange};

/// Why the shuffle stream's shard map could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardMapError {
    /// `ListShards` failed (after the SDK's own retries).
    #[error("ListShards of {stream}: {message}")]
    ListShards {
        /// The shuffle stream.
        stream: String,
        /// The service's or the client's error.
        message: String,
    },
    /// A shard's `HashKeyRange` is not two decimals in `[0, 2¹²⁸)`.
    #[error("shard {shard_id} of {stream} has a malformed hash-key range {start:?}..={end:?}")]
    HashKeyRange {
        /// The shuffle stream.
        stream: String,
        /// The shard.
        shard_id: String,
        /// `StartingHashKey` as listed.
        start: String,
        /// `EndingHashKey` as listed.
        end: String,
    },
    /// The open shards do not cover every hash key exactly once (they overlap or leave a gap),
    /// or there is none: routing by them would lose or misplace key groups.
    #[error("the open shards of {stream} are not a shard map: {source}")]
    Refused {
        /// The shuffle stream.
        stream: String,
        /// What is wrong with them.
        #[source]
        source: RouteError,
    },
}

/// Reads the shard map of one shuffle stream.
#[derive(Debug, Clone)]
pub struct ShardMapReader {
    client: aws_sdk_kinesis::Client,
    stream_name: String,
    page_size: Option<i32>,
}

impl ShardMapReader {
    /// A reader of the stream `stream_name`, with `ListShards`' default page size (1,000).
    pub fn new(client: aws_sdk_kinesis::Client, stream_name: impl Into<String>) -> Self {
        ShardMapReader {
            client,
            stream_name: stream_name.into(),
            page_size: None,
        }
    }

    /// The same reader asking for at most `shards` shards per `ListShards` page (1 to 10,000).
    pub fn with_page_size(mut self, shards: i32) -> Self {
        self.page_size = Some(shards);
        self
    }

    /// The stream read.
    pub fn stream_name(&self) -> &str {
        &self.stream_name
    }

    /// Every shard of the stream, open and closed, over all `ListShards` pages.
    pub async fn list_shards(&self) -> Result<Vec<Shard>, ShardMapError> {
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            // A page after the first names the stream through its token only.
            let request = match next_token.take() {
                Some(token) => self.client.list_shards().next_token(token),
                None => self.client.list_shards().stream_name(&self.stream_name),
            };
            let page = request
                .set_max_results(self.page_size)
                .send()
                .await
                .map_err(|e| ShardMapError::ListShards {
                    stream: self.stream_name.clone(),
                    message: DisplayErrorContext(e).to_string(),
                })?;
            shards.extend_from_slice(page.shards());
            match page.next_token() {
                Some(token) if !page.shards().is_empty() => next_token = Some(token.to_owned()),
                _ => break,
            }
        }
        tracing::debug!(stream = %self.stream_name, shards = shards.len(), "listed the shuffle stream's shards");
        Ok(shards)
    }

    /// The stream's current shard map over `space`: its open shards, refused unless they tile
    /// the hash-key space ([`open_shard_map`]).
    pub async fn read(&self, space: KeyGroupSpace) -> Result<ShardMap, ShardMapError> {
        let shards = self.list_shards().await?;
        open_shard_map(&self.stream_name, space, &shards)
    }
}

/// The shard map of `stream` over `space` from its `ListShards` shards: those without an
/// `EndingSequenceNumber` (open), which must tile the hash-key space exactly once. A closed
/// parent listed as open (overlap) or a missing shard (gap) is [`ShardMapError::Refused`].
pub fn open_shard_map(stream: &str, space: KeyGroupSpace, shards: &[Shard]) -> Result<ShardMap, ShardMapError> {
    let open = shards
        .iter()
        .filter(|s| {
            s.sequence_number_range()
                .is_none_or(|r| r.ending_sequence_number().is_none())
        })
        .map(|s| shard_range(stream, s))
        .collect::<Result<Vec<_>, _>>()?;
    ShardMap::new(space, open).map_err(|source| ShardMapError::Refused {
        stream: stream.to_owned(),
        source,
    })
}

fn shard_range(stream: &str, shard: &Shard) -> Result<ShardRange, ShardMapError> {
    let (start, end) = shard
        .hash_key_range()
        .map_or(("", ""), |r| (r.starting_hash_key(), r.ending_hash_key()));
    match (start.parse::<u128>(), end.parse::<u128>()) {
        (Ok(s), Ok(e)) => Ok(ShardRange::new(shard.shard_id(), s..=e)),
        _ => Err(ShardMapError::HashKeyRange {
            stream: stream.to_owned(),
            shard_id: shard.shard_id().to_owned(),
            start: start.to_owned(),
            end: end.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_kinesis::types::{HashKeyRange, SequenceNumberRange};

    use super::*;

    fn shard(id: &str, start: u128, end: u128, closed: bool) -> Shard {
        Shard::builder()
            .shard_id(id)
            .hash_key_range(
                HashKeyRange::builder()
                    .starting_hash_key(start.to_string())
                    .ending_hash_key(end.to_string())
                    .build()
                    .unwrap(),
            )
            .sequence_number_range(
                SequenceNumberRange::builder()
                    .starting_sequence_number("1")
                    .set_ending_sequence_number(closed.then(|| "2".to_owned()))
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    const HALF: u128 = 1 << 127;

    #[test]
    fn closed_shards_are_left_out_and_the_open_ones_make_the_map() {
        let space = KeyGroupSpace::new(8);
        let shards = [
            shard("parent", 0, u128::MAX, true),
            shard("lo", 0, HALF - 1, false),
            shard("hi", HALF, u128::MAX, false),
        ];
        let map = open_shard_map("s", space, &shards).unwrap();
        let ids: Vec<&str> = map.shards().iter().map(|s| s.shard_id.as_str()).collect();
        assert_eq!(ids, ["lo", "hi"]);
        assert_eq!(map.groups_of("hi"), Some(4..8));
    }

    #[test]
    fn open_shards_that_overlap_are_refused() {
        let space = KeyGroupSpace::new(8);
        // A parent whose ending sequence number is missing, listed with its children.
        let shards = [
            shard("parent", 0, u128::MAX, false),
            shard("lo", 0, HALF - 1, false),
            shard("hi", HALF, u128::MAX, false),
        ];
        assert_eq!(
            open_shard_map("s", space, &shards),
            Err(ShardMapError::Refused {
                stream: "s".into(),
                source: RouteError::NotATiling { at: 0 }
            })
        );
    }

    #[test]
    fn open_shards_that_leave_a_gap_are_refused() {
        let space = KeyGroupSpace::new(8);
        let shards = [shard("lo", 0, HALF - 1, false), shard("hi", HALF, u128::MAX, true)];
        let err = open_shard_map("s", space, &shards).unwrap_err();
        assert_eq!(
            err,
            ShardMapError::Refused {
                stream: "s".into(),
                source: RouteError::NotATiling { at: HALF }
            }
        );
        assert!(err.to_string().contains("gap or overlap"), "{err}");
        assert_eq!(
            open_shard_map("s", space, &[shard("a", 0, 5, true)]),
            Err(ShardMapError::Refused {
                stream: "s".into(),
                source: RouteError::NoShards
            })
        );
    }

    #[test]
    fn a_hash_key_range_that_is_not_a_pair_of_128_bit_decimals_is_refused() {
        let space = KeyGroupSpace::new(8);
        let mut bad = shard("a", 0, u128::MAX, false);
        bad.hash_key_range = Some(
            HashKeyRange::builder()
                .starting_hash_key("0")
                .ending_hash_key("340282366920938463463374607431768211456")
                .build()
                .unwrap(),
        );
        assert!(matches!(
            open_shard_map("s", space, &[bad]),
            Err(ShardMapError::HashKeyRange { shard_id, .. }) if shard_id == "a"
        ));
    }
}
