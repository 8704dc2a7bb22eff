//! The progress display of the long steps: a spinner with the step and its elapsed time on a
//! terminal, one line per step otherwise (logs, CI); the outcome and duration when it ends.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Runs `f` as the step `what`, showing it on standard error while it runs and its outcome
/// and duration when it ends.
pub fn step<T, E>(what: &str, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    let started = Instant::now();
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
            bar.set_style(style);
        }
        bar.set_message(what.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        Some(bar)
    } else {
        eprintln!("==> {what} ...");
        None
    };
    let result = f();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let outcome = if result.is_ok() { "done" } else { "FAILED" };
    eprintln!("{outcome}: {what} ({:.1} s)", started.elapsed().as_secs_f64());
    result
}
