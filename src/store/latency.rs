//! How long the store's writes take, kept by the store itself: one histogram of atomic buckets,
//! observed once per write a request waits for (a save, a page's change, a touch, "forget me", a
//! post) in the [`Store`](super::Store) facade, whichever backend ran it and whether it
//! succeeded or failed, and read by `/metrics` at a scrape. Background writes (pruning, the
//! health check) are not in it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: a commit takes well under a millisecond on a quiet
/// disk, and up to `--busy-timeout` (5 s) when another process holds the lock.
pub const WRITE_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0,
];

/// Write durations. Observing is two relaxed adds, never a lock.
#[derive(Debug, Default)]
pub struct WriteTimes {
    /// Observations per bucket (not cumulative); the last is above every bound.
    counts: [AtomicU64; WRITE_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

/// What [`WriteTimes`] held at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WriteTimesSnapshot {
    /// Observations per bucket (not cumulative), the bucket of [`WRITE_BUCKETS`] of the same
    /// index; the last is above every bound.
    pub counts: [u64; WRITE_BUCKETS.len() + 1],
    /// The sum of every observation, in seconds.
    pub sum_seconds: f64,
}

impl WriteTimes {
    /// Records one write that took `elapsed`.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = WRITE_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(WRITE_BUCKETS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> WriteTimesSnapshot {
        WriteTimesSnapshot {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}
