//! The functions' host processes. LocalStack's host executor (localstack/extension) runs each
//! execution environment's `bootstrap` as a process of this machine, with the function's
//! environment (`AWS_LAMBDA_FUNCTION_NAME`; a clean one, without the LocalStack's own marker)
//! from the code LocalStack unpacked under its localstack/.state/: that is how the soak finds
//! them, to sample their memory and to `kill -9` them.

use std::path::Path;

/// A running function process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionProcess {
    /// Its pid.
    pub pid: u32,
    /// Its function's name.
    pub function: String,
    /// Its resident set size (bytes).
    pub rss_bytes: u64,
}

/// The value of `name` in a NUL-separated environment block.
fn env_value<'a>(environ: &'a [u8], name: &str) -> Option<&'a str> {
    environ.split(|b| *b == 0).find_map(|entry| {
        let entry = std::str::from_utf8(entry).ok()?;
        entry.strip_prefix(name)?.strip_prefix('=')
    })
}

/// `VmRSS` of a `/proc/PID/status` text, in bytes.
fn rss_of(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The `bootstrap` processes under `localstack_home` (the localstack/ directory of the
/// LocalStack that runs them) whose function name is in `functions`.
pub fn function_processes(localstack_home: &Path, functions: &[String]) -> Vec<FunctionProcess> {
    let home = localstack_home.to_string_lossy();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let dir = entry.path();
        let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let program = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        if !program.ends_with(b"/bootstrap") || !program.starts_with(home.as_bytes()) {
            continue;
        }
        let Ok(environ) = std::fs::read(dir.join("environ")) else {
            continue;
        };
        let Some(function) = env_value(&environ, "AWS_LAMBDA_FUNCTION_NAME") else {
            continue;
        };
        if !functions.iter().any(|f| f == function) {
            continue;
        }
        let rss_bytes = std::fs::read_to_string(dir.join("status"))
            .ok()
            .and_then(|s| rss_of(&s))
            .unwrap_or(0);
        found.push(FunctionProcess {
            pid,
            function: function.to_owned(),
            rss_bytes,
        });
    }
    found.sort_by_key(|p| p.pid);
    found
}

/// Sends SIGKILL to `pid`; whether it was delivered.
pub fn kill_9(pid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_values_and_rss_are_read_from_proc_formats() {
        let environ = b"PATH=/bin\0AWS_LAMBDA_FUNCTION_NAME=s-receipts\0EMPTY=\0";
        assert_eq!(env_value(environ, "AWS_LAMBDA_FUNCTION_NAME"), Some("s-receipts"));
        assert_eq!(env_value(environ, "EMPTY"), Some(""));
        assert_eq!(env_value(environ, "AWS_LAMBDA"), None);
        assert_eq!(rss_of("Name:\tbootstrap\nVmRSS:\t   12345 kB\n"), Some(12345 * 1024));
        assert_eq!(rss_of("Name:\tbootstrap\n"), None);
    }

    #[test]
    fn a_process_of_another_program_is_not_a_function_process() {
        // this test's own process is no bootstrap of any LocalStack
        let me = function_processes(Path::new("/nonexistent"), &["x".to_owned()]);
        assert!(me.is_empty());
    }
}
