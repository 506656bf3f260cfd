//! The disk guard (`--min-free-disk`): while the data dir's file system has less free space than
//! that, settings of new browsers are not saved (their first save would be a new row), while
//! browsers that saved before still save as always; `/healthz` says so, and the log has one line
//! a minute about it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::lock::Mutex;

/// How long one look at the free space holds.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How often the guard says in the log that it holds new sessions back.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// Watches the free space of one directory's file system.
pub struct DiskGuard {
    dir: PathBuf,
    min_free: u64,
    low: AtomicBool,
    /// When the free space was last read, and when the guard last logged.
    times: Mutex<(Option<Instant>, Option<Instant>)>,
}

impl DiskGuard {
    /// A guard over `dir`'s file system; `min_free` 0 turns it off.
    pub fn new(dir: PathBuf, min_free: u64) -> DiskGuard {
        DiskGuard {
            dir,
            min_free,
            low: AtomicBool::new(false),
            times: Mutex::new((None, None)),
        }
    }

    /// True when free space is under the minimum (read at most once per [`CHECK_EVERY`]).
    pub fn is_low(&self) -> bool {
        if self.min_free == 0 {
            return false;
        }
        let now = Instant::now();
        let mut times = self.times.lock();
        if times
            .0
            .is_some_and(|at| now.duration_since(at) < CHECK_EVERY)
        {
            return self.low.load(Ordering::Relaxed);
        }
        times.0 = Some(now);
        let free = match rustix::fs::statvfs(&self.dir) {
            Ok(stat) => stat.f_bavail.saturating_mul(stat.f_frsize),
            // Cannot tell: the database will say when it is really full.
            Err(_) => u64::MAX,
        };
        let low = free < self.min_free;
        self.low.store(low, Ordering::Relaxed);
        if low && times.1.is_none_or(|at| now.duration_since(at) >= LOG_EVERY) {
            times.1 = Some(now);
            tracing::warn!(
                free_bytes = free,
                min_free_bytes = self.min_free,
                "free disk space is under --min-free-disk: settings of new browsers are not \
                 saved (browsers that saved before still are); logged at most once a minute"
            );
        }
        low
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_is_low_only_under_its_minimum_and_off_at_zero() {
        let dir = std::env::temp_dir();
        assert!(!DiskGuard::new(dir.clone(), 0).is_low());
        assert!(!DiskGuard::new(dir.clone(), 1).is_low());
        assert!(DiskGuard::new(dir, u64::MAX).is_low());
    }
}
