//! Helpers of the command-line tests.

use std::process::Output;

/// The standard output of a run that must have succeeded (else both outputs in the panic).
pub fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
