//! A function's zip: one executable file named `bootstrap`, what OS-only Lambda runtimes
//! (`provided.al2023`) run. The same bytes as `functions/package` makes for the same binary:
//! deflated, mode 0755, dated 1980-01-01 (so a rebuild of the same binary is the same zip).

use std::io::Write;
use std::path::Path;

use flate2::write::DeflateEncoder;
use flate2::{Compression, Crc};

use crate::error::ProjectError;

const NAME: &[u8] = b"bootstrap";
/// 1980-01-01 in MS-DOS date form; time 00:00.
const DOS_DATE: u16 = 1 << 5 | 1;
const DEFLATE: u16 = 8;
const VERSION: u16 = 20;
/// A regular file, rwxr-xr-x, in the upper half of the external attributes (Unix).
const UNIX_MODE: u32 = 0o100_755 << 16;

/// Writes `binary` into the zip `zip` as `bootstrap`. Refuses files of 4 GiB or more (no ZIP64).
pub fn bootstrap_zip(binary: &Path, zip: &Path) -> Result<(), ProjectError> {
    let data = std::fs::read(binary).map_err(ProjectError::io(binary))?;
    let bytes = zip_bytes(&data)
        .ok_or_else(|| ProjectError::Deployment(format!("{} is too large for a Lambda zip", binary.display())))?;
    if let Some(dir) = zip.parent() {
        std::fs::create_dir_all(dir).map_err(ProjectError::io(dir))?;
    }
    std::fs::write(zip, bytes).map_err(ProjectError::io(zip))
}

/// The zip of `data` as `bootstrap`; `None` when a size does not fit 32 bits.
fn zip_bytes(data: &[u8]) -> Option<Vec<u8>> {
    let mut crc = Crc::new();
    crc.update(data);
    let mut deflate = DeflateEncoder::new(Vec::with_capacity(data.len() / 2), Compression::new(6));
    deflate.write_all(data).ok()?;
    let compressed = deflate.finish().ok()?;
    let (crc, packed, plain) = (
        crc.sum(),
        u32::try_from(compressed.len()).ok()?,
        u32::try_from(data.len()).ok()?,
    );
    let mut out = Vec::with_capacity(compressed.len() + 200);
    let u16le = |out: &mut Vec<u8>, v: u16| out.extend_from_slice(&v.to_le_bytes());
    let u32le = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_le_bytes());
    // local file header
    u32le(&mut out, 0x0403_4b50);
    for v in [VERSION, 0, DEFLATE, 0, DOS_DATE] {
        u16le(&mut out, v);
    }
    for v in [crc, packed, plain] {
        u32le(&mut out, v);
    }
    u16le(&mut out, NAME.len() as u16);
    u16le(&mut out, 0);
    out.extend_from_slice(NAME);
    out.extend_from_slice(&compressed);
    // central directory
    let directory = u32::try_from(out.len()).ok()?;
    u32le(&mut out, 0x0201_4b50);
    for v in [3 << 8 | VERSION, VERSION, 0, DEFLATE, 0, DOS_DATE] {
        u16le(&mut out, v);
    }
    for v in [crc, packed, plain] {
        u32le(&mut out, v);
    }
    for v in [NAME.len() as u16, 0, 0, 0, 0] {
        u16le(&mut out, v);
    }
    u32le(&mut out, UNIX_MODE);
    u32le(&mut out, 0);
    out.extend_from_slice(NAME);
    let directory_len = u32::try_from(out.len()).ok()? - directory;
    // end of central directory
    u32le(&mut out, 0x0605_4b50);
    for v in [0, 0, 1, 1] {
        u16le(&mut out, v);
    }
    u32le(&mut out, directory_len);
    u32le(&mut out, directory);
    u16le(&mut out, 0);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn the_zip_holds_the_binary_as_an_executable_bootstrap_that_python_reads_back() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let binary = dir.path().join("fn");
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        std::fs::write(&binary, &data).expect("write");
        let zip = dir.path().join("fn.zip");
        bootstrap_zip(&binary, &zip).expect("zip");
        let check = r#"
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
[info] = z.infolist()
assert info.filename == "bootstrap", info.filename
assert info.external_attr >> 16 == 0o100755, oct(info.external_attr >> 16)
assert info.date_time == (1980, 1, 1, 0, 0, 0)
assert z.read("bootstrap") == open(sys.argv[2], "rb").read()
"#;
        let output = Command::new("python3")
            .args(["-c", check])
            .arg(&zip)
            .arg(&binary)
            .output()
            .expect("python3");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(
            std::fs::metadata(&zip).expect("zip").len() < data.len() as u64 / 2,
            "deflated"
        );
    }
}
