//! Atomic file writes: a temporary file in the same directory, renamed over the target.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// The prefix of temporary files; such files are leftovers of a crash and are ignored.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// Writes `bytes` to `path` atomically: readers see the old content or the new, never a part.
/// With `fsync`, the data and the rename are durable when this returns.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8], fsync: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!("{TEMP_PREFIX}{name}"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        if fsync {
            f.sync_all()?;
        }
    }
    fs::rename(&tmp, path)?;
    if fsync {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
