//! A test that cannot run here, for want of a browser, a database server or root: it says so on
//! the terminal and passes, except under `CI=true`, where it fails instead of passing silently.

use std::io::Write;

/// Reports that `what` (say, "browser test foo") is skipped because of `why`, and returns `None`
/// for the caller to hand back in place of what it could not set up. Under `CI=true` it panics.
pub fn skip<T>(what: &str, why: &str) -> Option<T> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} cannot run, and CI=true requires it to: {why}");
    }
    // Written straight to the terminal: the test harness hides a passing test's output.
    let _ = writeln!(std::io::stderr(), "SKIPPED {what}: {why}");
    None
}
