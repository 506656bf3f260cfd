//! A token bucket: `burst` tokens, refilled evenly at `per_second`. The chat's per-session limit
//! and the live sockets' message limit are both made of these.

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

#[cfg(test)]
mod tests {
    use super::*;

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
