//! Length-delimited Protobuf files (each message preceded by its length as a varint, as
//! `prost::Message::encode_length_delimited` and Java's `writeDelimitedTo` write them), one
//! partition per file.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use super::{partition_name, Input, InputError, Item};

/// Records longer than this are refused as corrupt framing (Kinesis' own limit is 1 MiB).
pub const MAX_RECORD_BYTES: u64 = 16 << 20;

struct PartitionFile {
    name: String,
    path: PathBuf,
    /// `None` once the end is reached or the framing is broken beyond repair.
    reader: Option<BufReader<File>>,
}

/// Length-delimited Protobuf messages of type `In`.
///
/// A message that does not decode is a malformed record (the run goes on with the next one);
/// broken framing (a truncated length or message, an absurd length) is reported as one
/// malformed record and ends the partition, since the next record's start is unknown.
pub struct ProtobufFiles<In> {
    files: Vec<PartitionFile>,
    buf: Vec<u8>,
    _in: PhantomData<fn() -> In>,
}

enum Raw {
    End,
    Record,
    BrokenFraming(String),
}

impl<In> ProtobufFiles<In> {
    /// Opens the files; each is a partition named after the file (without extension).
    pub fn open(paths: &[impl AsRef<Path>]) -> Result<Self, InputError> {
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let path = path.as_ref().to_path_buf();
            let file = File::open(&path).map_err(|source| InputError {
                path: path.clone(),
                source,
            })?;
            files.push(PartitionFile {
                name: partition_name(&path),
                path,
                reader: Some(BufReader::with_capacity(1 << 16, file)),
            });
        }
        Ok(ProtobufFiles {
            files,
            buf: Vec::new(),
            _in: PhantomData,
        })
    }

    fn read_raw(&mut self, p: usize) -> Result<Raw, InputError> {
        let Some(file) = self.files.get_mut(p) else {
            return Ok(Raw::End);
        };
        let Some(reader) = file.reader.as_mut() else {
            return Ok(Raw::End);
        };
        let io_err = |source| InputError {
            path: file.path.clone(),
            source,
        };
        let len = match read_varint(reader).map_err(io_err)? {
            Varint::Eof => {
                file.reader = None;
                return Ok(Raw::End);
            }
            Varint::Truncated => {
                file.reader = None;
                return Ok(Raw::BrokenFraming("truncated length prefix at end of file".into()));
            }
            Varint::Value(v) => v,
        };
        if len > MAX_RECORD_BYTES {
            file.reader = None;
            return Ok(Raw::BrokenFraming(format!(
                "length prefix {len} exceeds {MAX_RECORD_BYTES} bytes: broken framing, rest of partition skipped"
            )));
        }
        self.buf.clear();
        let got = reader
            .take(len)
            .read_to_end(&mut self.buf)
            .map_err(|source| InputError {
                path: file.path.clone(),
                source,
            })?;
        if (got as u64) < len {
            file.reader = None;
            return Ok(Raw::BrokenFraming(format!(
                "truncated record: {got} of {len} bytes at end of file"
            )));
        }
        Ok(Raw::Record)
    }
}

enum Varint {
    Eof,
    Truncated,
    Value(u64),
}

fn read_varint(reader: &mut impl BufRead) -> std::io::Result<Varint> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let mut byte = [0u8; 1];
        if reader.read(&mut byte)? == 0 {
            return Ok(if i == 0 { Varint::Eof } else { Varint::Truncated });
        }
        value |= u64::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            return Ok(Varint::Value(value));
        }
    }
    Ok(Varint::Value(u64::MAX))
}

impl<In: prost::Message + Default> Input<In> for ProtobufFiles<In> {
    fn partitions(&self) -> Vec<String> {
        self.files.iter().map(|f| f.name.clone()).collect()
    }

    fn next(&mut self, p: usize) -> Result<Option<Item<In>>, InputError> {
        Ok(match self.read_raw(p)? {
            Raw::End => None,
            Raw::BrokenFraming(reason) => Some(Item::Malformed {
                reason,
                raw: std::mem::take(&mut self.buf),
            }),
            Raw::Record => Some(match In::decode(self.buf.as_slice()) {
                Ok(v) => Item::Value(v),
                Err(e) => Item::Malformed {
                    reason: format!("invalid Protobuf: {e}"),
                    raw: self.buf.clone(),
                },
            }),
        })
    }

    fn skip(&mut self, p: usize, n: u64) -> Result<u64, InputError> {
        let mut skipped = 0;
        while skipped < n {
            match self.read_raw(p)? {
                Raw::End => break,
                Raw::Record | Raw::BrokenFraming(_) => skipped += 1,
            }
        }
        Ok(skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Msg {
        #[prost(int64, tag = "1")]
        n: i64,
    }

    #[test]
    fn reads_records_reports_bad_ones_and_stops_at_broken_framing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shard-0.pb");
        let mut bytes = Vec::new();
        prost::Message::encode_length_delimited(&Msg { n: 1 }, &mut bytes).unwrap();
        bytes.extend_from_slice(&[2, 0x08, 0x80]); // a truncated varint inside the message
        prost::Message::encode_length_delimited(&Msg { n: 3 }, &mut bytes).unwrap();
        bytes.extend_from_slice(&[50, 0x08]); // claims 50 bytes, has 1
        std::fs::write(&path, bytes).unwrap();

        let mut input = ProtobufFiles::<Msg>::open(&[&path]).unwrap();
        assert_eq!(input.partitions(), vec!["shard-0"]);
        assert_eq!(input.next(0).unwrap(), Some(Item::Value(Msg { n: 1 })));
        assert!(
            matches!(input.next(0).unwrap(), Some(Item::Malformed { reason, .. }) if reason.contains("invalid Protobuf"))
        );
        assert_eq!(input.next(0).unwrap(), Some(Item::Value(Msg { n: 3 })));
        assert!(
            matches!(input.next(0).unwrap(), Some(Item::Malformed { reason, .. }) if reason.contains("truncated record"))
        );
        assert_eq!(input.next(0).unwrap(), None);

        let mut again = ProtobufFiles::<Msg>::open(&[&path]).unwrap();
        assert_eq!(again.skip(0, 2).unwrap(), 2);
        assert_eq!(again.next(0).unwrap(), Some(Item::Value(Msg { n: 3 })));
        assert_eq!(again.skip(0, 10).unwrap(), 1);
    }
}
