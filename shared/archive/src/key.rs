//! Object keys of the archive.

use crate::record::ArchivedRecord;

/// What an archive object's key says: where its records came from and when they arrived.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// The stream.
    pub stream: String,
    /// The UTC date of arrival, `YYYY-MM-DD`.
    pub date: String,
    /// The UTC hour of arrival, `HH`.
    pub hour: String,
    /// The shard.
    pub shard_id: String,
    /// The sequence number of the object's first record.
    pub first_sequence: String,
}

impl ObjectKey {
    /// The key of the object that starts with `record`.
    pub fn starting_at(record: &ArchivedRecord) -> Self {
        let (date, hour) = date_hour(record.arrival_ms);
        ObjectKey {
            stream: record.stream.clone(),
            date,
            hour,
            shard_id: record.shard_id.clone(),
            first_sequence: record.sequence_number.clone(),
        }
    }

    /// Whether `record` belongs in the same object as the records before it under this key (same
    /// stream, shard and hour of arrival).
    pub fn holds(&self, record: &ArchivedRecord) -> bool {
        let (date, hour) = date_hour(record.arrival_ms);
        self.stream == record.stream && self.shard_id == record.shard_id && self.date == date && self.hour == hour
    }

    /// The object key under `prefix` (no trailing `/`; empty for none).
    pub fn to_key(&self, prefix: &str) -> String {
        let path = format!(
            "{}/{}/{}/{}-{}.ndjson.gz",
            self.stream, self.date, self.hour, self.shard_id, self.first_sequence
        );
        if prefix.is_empty() {
            path
        } else {
            format!("{prefix}/{path}")
        }
    }

    /// Parses a key written by [`ObjectKey::to_key`] under `prefix`; `None` for any other key.
    pub fn parse(prefix: &str, key: &str) -> Option<Self> {
        let rest = if prefix.is_empty() {
            key
        } else {
            key.strip_prefix(prefix)?.strip_prefix('/')?
        };
        let mut parts = rest.split('/');
        let (stream, date, hour, file) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let (shard_id, first_sequence) = file.strip_suffix(".ndjson.gz")?.rsplit_once('-')?;
        Some(ObjectKey {
            stream: stream.to_owned(),
            date: date.to_owned(),
            hour: hour.to_owned(),
            shard_id: shard_id.to_owned(),
            first_sequence: first_sequence.to_owned(),
        })
    }
}

/// The object key of the object starting with `record`, under `prefix`.
pub fn object_key(prefix: &str, record: &ArchivedRecord) -> String {
    ObjectKey::starting_at(record).to_key(prefix)
}

/// UTC date and hour of an epoch-millisecond time (`undated`/`00` outside chrono's range).
fn date_hour(ms: i64) -> (String, String) {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => (t.format("%Y-%m-%d").to_string(), t.format("%H").to_string()),
        None => ("undated".to_owned(), "00".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(arrival_ms: i64, sequence: &str) -> ArchivedRecord {
        ArchivedRecord {
            stream: "orders".into(),
            shard_id: "shardId-000000000001".into(),
            sequence_number: sequence.into(),
            partition_key: "k".into(),
            arrival_ms,
            data: vec![1, 2],
        }
    }

    #[test]
    fn keys_are_partitioned_by_stream_date_and_hour_and_parse_back() {
        // 2026-11-27T10:59:59.999Z and one millisecond later
        let before = record(1_795_777_199_999, "4960");
        let after = record(1_795_777_200_000, "4961");
        let key = ObjectKey::starting_at(&before);
        assert_eq!(
            key.to_key("archive"),
            "archive/orders/2026-11-27/10/shardId-000000000001-4960.ndjson.gz"
        );
        assert!(key.holds(&before));
        assert!(!key.holds(&after));
        assert_eq!(ObjectKey::parse("archive", &key.to_key("archive")), Some(key.clone()));
        assert_eq!(ObjectKey::parse("", &key.to_key("")), Some(key));
        assert_eq!(ObjectKey::parse("archive", "archive/orders/x.json"), None);
        assert_eq!(
            ObjectKey::parse("other", "archive/orders/2026-11-26/10/s-1.ndjson.gz"),
            None
        );
    }
}
