//! CPU per request of a rate limit's map of buckets as it grows: a steady stream of new keys
//! (fresh sessions, or addresses) each taking one token, so that N keys are inside one window,
//! at N = 10,000 and 100,000. Measures `livesession::limit::Buckets` (idle keys forgotten two per
//! call) and, for comparison, a copy of the sweep it replaced (a scan of the whole map on every
//! call once it holds more than 10,000 keys).
//!
//! ```text
//! cargo run --release --example limit_map
//! ```

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use livesession::limit::{Buckets, RateLimit, TokenBucket};

const LIMIT: RateLimit = RateLimit {
    burst: 5,
    window: Duration::from_secs(10),
};

/// The map as it was: forget every idle bucket, by a scan, on each call past 10,000 keys.
struct Swept(HashMap<u64, TokenBucket>);

impl Swept {
    fn take(&mut self, key: u64, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(LIMIT.burst);
        if self.0.len() > 10_000 {
            self.0
                .retain(|_, b| now.duration_since(b.last_used()) < LIMIT.window);
        }
        self.0
            .entry(key)
            .or_insert_with(|| TokenBucket::full(burst, now))
            .take(burst, burst / LIMIT.window.as_secs_f64(), now)
    }
}

/// Nanoseconds per call of `take` over `calls` calls, after `keys` keys have filled one window.
fn per_call(keys: u64, calls: u64, mut take: impl FnMut(u64, Instant)) -> f64 {
    let start = Instant::now();
    let step = LIMIT.window / u32::try_from(keys).unwrap();
    let at = |n: u64| start + step * u32::try_from(n).unwrap();
    for key in 0..keys {
        take(key, at(key));
    }
    let clock = Instant::now();
    for key in keys..keys + calls {
        take(key, at(key));
    }
    clock.elapsed().as_nanos() as f64 / calls as f64
}

fn main() {
    println!("| keys in one window | Buckets ns/call | former sweep ns/call |");
    println!("| ---: | ---: | ---: |");
    for keys in [10_000u64, 100_000] {
        let mut buckets = Buckets::new(LIMIT);
        let new = per_call(keys, 1_000_000, |key, now| {
            black_box(buckets.take(key, now)).ok();
        });
        let mut swept = Swept(HashMap::new());
        let old = per_call(keys, 2_000, |key, now| {
            black_box(swept.take(key, now)).ok();
        });
        println!(
            "| {keys} | {new:.0} (map {}) | {old:.0} (map {}) |",
            buckets.len(),
            swept.0.len()
        );
    }
}
