//! Memory measurement of the running process.

/// The process's peak resident set size (`VmHWM`) in bytes, where `/proc` provides it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_rss_is_read_on_linux() {
        let before = super::peak_rss_bytes().expect("VmHWM on Linux");
        let big = vec![1u8; 64 << 20];
        std::hint::black_box(&big);
        let after = super::peak_rss_bytes().expect("VmHWM on Linux");
        assert!(after >= before + (32 << 20), "{before} -> {after}");
    }
}
