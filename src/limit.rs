//! A token bucket: `burst` tokens, refilled evenly at `per_second`. The chat's per-session limit
//! and the live sockets' message limit are both made of these, and [`Buckets`] keeps one per key
//! (a session, an address) and forgets the idle ones a few at a time.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A rate limit: at most `burst` in any `window`, per key (a session, an address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// How many at once.
    pub burst: u32,
    /// Over how long the bucket refills.
    pub window: Duration,
}

/// One bucket. Cheap: two floats and an instant.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens at `now`.
    pub fn full(burst: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: burst,
            at: now,
        }
    }

    /// Takes one token at `now`, or says how long until one is there.
    pub fn take(&mut self, burst: f64, per_second: f64, now: Instant) -> Result<(), Duration> {
        let refilled = self.tokens + now.duration_since(self.at).as_secs_f64() * per_second;
        self.tokens = refilled.min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / per_second))
        }
    }

    /// Gives one token back (at most up to `burst`).
    pub fn give_back(&mut self, burst: f64) {
        self.tokens = (self.tokens + 1.0).min(burst);
    }

    /// When the bucket was last used.
    pub fn last_used(&self) -> Instant {
        self.at
    }
}

/// How many keys each [`Buckets::take`] looks at to forget idle ones.
pub const EXPIRE_PER_TAKE: usize = 2;

/// A token bucket per key, all with one [`RateLimit`]. A bucket idle for a whole window is full
/// again, so it is forgotten: each [`take`](Buckets::take) looks at the [`EXPIRE_PER_TAKE`]
/// oldest keys of a queue that holds every key once, forgets those idle a window and moves the
/// others to the back. The work per call is the same at 10 and at 1,000,000 keys (no scan of the
/// map), and since a call adds at most one key and looks at two, an idle key is forgotten within
/// about half as many calls as there are keys.
#[derive(Debug)]
pub struct Buckets<K> {
    limit: RateLimit,
    buckets: HashMap<K, TokenBucket>,
    /// Every key of `buckets`, once, the longest unexamined first.
    queue: VecDeque<K>,
}

impl<K: Hash + Eq + Copy> Buckets<K> {
    /// Every bucket full.
    pub fn new(limit: RateLimit) -> Buckets<K> {
        Buckets {
            limit,
            buckets: HashMap::new(),
            queue: VecDeque::new(),
        }
    }

    /// The limit of every bucket.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    fn burst(&self) -> f64 {
        f64::from(self.limit.burst)
    }

    /// Takes one token for `key` at `now`, or says how long until one is there.
    pub fn take(&mut self, key: K, now: Instant) -> Result<(), Duration> {
        self.expire(now);
        let burst = self.burst();
        let per_second = burst / self.limit.window.as_secs_f64();
        let bucket = match self.buckets.entry(key) {
            Entry::Occupied(bucket) => bucket.into_mut(),
            Entry::Vacant(place) => {
                self.queue.push_back(key);
                place.insert(TokenBucket::full(burst, now))
            }
        };
        bucket.take(burst, per_second, now)
    }

    /// Gives `key` back the token a [`take`](Buckets::take) took.
    pub fn give_back(&mut self, key: K) {
        let burst = self.burst();
        if let Some(bucket) = self.buckets.get_mut(&key) {
            bucket.give_back(burst);
        }
    }

    /// How many keys have a bucket.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// True when no key has a bucket.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Looks at the [`EXPIRE_PER_TAKE`] longest unexamined keys: forgets each one idle for a
    /// window (its bucket is full again), sends the others to the back of the queue.
    fn expire(&mut self, now: Instant) {
        let window = self.limit.window;
        for _ in 0..EXPIRE_PER_TAKE.min(self.queue.len()) {
            let Some(key) = self.queue.pop_front() else {
                return;
            };
            let idle = self
                .buckets
                .get(&key)
                .is_none_or(|bucket| now.saturating_duration_since(bucket.last_used()) >= window);
            if idle {
                self.buckets.remove(&key);
            } else {
                self.queue.push_back(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_SECONDS: RateLimit = RateLimit {
        burst: 2,
        window: Duration::from_secs(10),
    };

    #[test]
    fn idle_buckets_are_forgotten_a_few_per_take_without_a_scan() {
        let mut buckets = Buckets::new(TEN_SECONDS);
        let start = Instant::now();
        for key in 0..100_000u32 {
            buckets.take(key, start).unwrap();
        }
        // Nothing is idle yet: every key looked at goes back in the queue.
        assert_eq!(buckets.len(), 100_000);
        assert_eq!(buckets.queue.len(), 100_000);
        // A window later, each take forgets two idle keys (and adds one, its own).
        let later = start + TEN_SECONDS.window;
        for n in 0..1_000u32 {
            buckets.take(1_000_000 + n, later).unwrap();
        }
        assert_eq!(buckets.len(), 100_000 - 2_000 + 1_000);
        // One key taking again and again empties the queue of the idle ones in 50,000 takes.
        for _ in 0..60_000 {
            let _ = buckets.take(u32::MAX, later + Duration::from_secs(1));
        }
        assert!(buckets.len() <= 1_000 + 1, "{}", buckets.len());
        assert_eq!(buckets.len(), buckets.queue.len());
    }

    #[test]
    fn a_bucket_in_use_is_never_forgotten_so_its_limit_holds() {
        let mut buckets = Buckets::new(TEN_SECONDS);
        let start = Instant::now();
        buckets.take(0u32, start).unwrap();
        buckets.take(0, start).unwrap();
        assert!(buckets.take(0, start).is_err());
        // Many other keys come and go; key 0 keeps being refused every second: its bucket,
        // looked at many times, is kept (a forgotten one would be full again).
        for second in 1..4u64 {
            let now = start + Duration::from_millis(second * 100);
            for n in 0..1_000u32 {
                let _ = buckets.take(second as u32 * 10_000 + n, now);
            }
            assert!(buckets.take(0, now).is_err(), "forgotten at {second}");
        }
        // Idle for a window: forgotten, and full again when it comes back, as if kept.
        let later = start + Duration::from_secs(11);
        for n in 0..10_000u32 {
            let _ = buckets.take(100_000 + n, later);
        }
        assert!(!buckets.buckets.contains_key(&0));
        buckets.take(0, later).unwrap();
        buckets.take(0, later).unwrap();
    }

    #[test]
    fn a_bucket_allows_its_burst_then_one_token_per_interval() {
        let start = Instant::now();
        let mut bucket = TokenBucket::full(3.0, start);
        for _ in 0..3 {
            bucket.take(3.0, 1.0, start).unwrap();
        }
        let wait = bucket.take(3.0, 1.0, start).unwrap_err();
        assert!(wait > Duration::from_millis(990) && wait <= Duration::from_secs(1));
        bucket
            .take(3.0, 1.0, start + Duration::from_secs(1))
            .unwrap();
        assert!(
            bucket
                .take(3.0, 1.0, start + Duration::from_secs(1))
                .is_err()
        );
    }
}
