//! Debian's headless chromium for the browser tests: the rendered DOM of a page and a
//! screenshot of it. Installed by `scripts/chromium` (which `scripts/test` runs); a test that
//! finds no chromium fails with a message naming that script, it is never skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The chromium binary (`$SHARDFLOW_CHROMIUM`, else `chromium` on the PATH); panics naming
/// `scripts/chromium` when there is none.
pub fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("SHARDFLOW_CHROMIUM") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").map(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("chromium"))
            .find(|p| p.is_file())
    });
    match found.flatten() {
        Some(path) => path,
        None => panic!("no chromium on the PATH: run scripts/chromium (it installs Debian's chromium) and test again"),
    }
}

fn headless(extra: &[&str], url: &str) -> std::process::Output {
    let profile = std::env::temp_dir().join(format!("shardflow-chromium-{}", std::process::id()));
    let output = Command::new(chromium())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("running chromium (see scripts/chromium): {e}"));
    assert!(
        output.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The DOM of `url` as chromium renders it after `budget_ms` of virtual time (scripts run,
/// timers fire).
pub fn dump_dom(url: &str, budget_ms: u64) -> String {
    let budget = format!("--virtual-time-budget={budget_ms}");
    String::from_utf8_lossy(&headless(&[&budget, "--dump-dom"], url).stdout).into_owned()
}

/// Saves a `width`×`height` screenshot of `url` to `file` (PNG) after `budget_ms` of virtual
/// time, and checks that it was written.
pub fn screenshot(url: &str, file: &Path, (width, height): (u32, u32), budget_ms: u64) {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    let budget = format!("--virtual-time-budget={budget_ms}");
    let size = format!("--window-size={width},{height}");
    let shot = format!("--screenshot={}", file.display());
    headless(&[&budget, &size, &shot], url);
    let len = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    assert!(len > 1000, "no screenshot in {} ({len} bytes)", file.display());
}

/// Where a test's screenshots go: `<target dir>/screenshots/` (the target directory of the
/// test binary at `exe`, e.g. `std::env::current_exe()`).
pub fn screenshot_dir(exe: &Path) -> PathBuf {
    // <target>/<profile>/deps/<test binary>
    let target = exe.ancestors().nth(3).unwrap_or_else(|| Path::new("."));
    target.join("screenshots")
}
