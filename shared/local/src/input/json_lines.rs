//! JSON-lines files, one partition per file.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::{partition_name, Input, InputError, Item};

/// One JSON value per line; blank lines are ignored (they are not records and have no offset).
pub struct JsonLinesFiles<In> {
    files: Vec<(String, PathBuf, BufReader<File>)>,
    line: Vec<u8>,
    _in: PhantomData<fn() -> In>,
}

impl<In> JsonLinesFiles<In> {
    /// Opens the files; each is a partition named after the file (without extension).
    pub fn open(paths: &[impl AsRef<Path>]) -> Result<Self, InputError> {
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let path = path.as_ref().to_path_buf();
            let file = File::open(&path).map_err(|source| InputError {
                path: path.clone(),
                source,
            })?;
            files.push((partition_name(&path), path, BufReader::with_capacity(1 << 16, file)));
        }
        Ok(JsonLinesFiles {
            files,
            line: Vec::new(),
            _in: PhantomData,
        })
    }

    /// Reads the next non-blank line of partition `p` into `self.line`; false at the end.
    fn read_line(&mut self, p: usize) -> Result<bool, InputError> {
        let Some((_, path, reader)) = self.files.get_mut(p) else {
            return Ok(false);
        };
        loop {
            self.line.clear();
            let n = reader.read_until(b'\n', &mut self.line).map_err(|source| InputError {
                path: path.clone(),
                source,
            })?;
            if n == 0 {
                return Ok(false);
            }
            if !self.line.iter().all(u8::is_ascii_whitespace) {
                while self.line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    self.line.pop();
                }
                return Ok(true);
            }
        }
    }
}

impl<In: DeserializeOwned> Input<In> for JsonLinesFiles<In> {
    fn partitions(&self) -> Vec<String> {
        self.files.iter().map(|(n, _, _)| n.clone()).collect()
    }

    fn next(&mut self, p: usize) -> Result<Option<Item<In>>, InputError> {
        if !self.read_line(p)? {
            return Ok(None);
        }
        Ok(Some(match serde_json::from_slice::<In>(&self.line) {
            Ok(v) => Item::Value(v),
            Err(e) => Item::Malformed {
                reason: format!("invalid JSON: {e}"),
                raw: self.line.clone(),
            },
        }))
    }

    fn skip(&mut self, p: usize, n: u64) -> Result<u64, InputError> {
        let mut skipped = 0;
        while skipped < n && self.read_line(p)? {
            skipped += 1;
        }
        Ok(skipped)
    }
}
