//! How fast one browser, one client address, or everyone together may do something: a token
//! bucket per key (a session, an address), refilled evenly over a window.

use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::address::limit_key;
use crate::limit::{Buckets, RateLimit};
use crate::lock::Mutex;
use crate::session::SessionId;

/// Whose allowance ran out, for the sentence a refusal says it in: a person behind a shared
/// network learns it was the network, not their browser, that was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whose {
    /// One browser's (its session's) own allowance.
    Browser,
    /// One client address's (an IPv6 client's /64), shared by every browser behind it.
    Network,
    /// One for everyone together (the chat room's).
    Everyone,
}

/// What a limiter's key counts as: a client address as [`limit_key`] counts it (an IPv6
/// client by its /64), every other key as itself. Every limit per address goes through this one
/// rule, so none of them can count an IPv6 client address by address.
pub trait LimitKey: Hash + Eq + Copy {
    /// Whose allowance a bucket of this key is.
    const WHOSE: Whose;

    /// The key the bucket is kept under.
    fn limit_key(self) -> Self {
        self
    }
}

impl LimitKey for IpAddr {
    const WHOSE: Whose = Whose::Network;

    fn limit_key(self) -> IpAddr {
        limit_key(self)
    }
}

impl LimitKey for SessionId {
    const WHOSE: Whose = Whose::Browser;
}

impl LimitKey for () {
    const WHOSE: Whose = Whose::Everyone;
}

/// A token bucket per key (by default a session): `burst` tokens, refilled evenly over
/// `window`. Idle buckets are forgotten a few per call ([`Buckets`]), never by a scan.
pub struct RateLimiter<K = SessionId> {
    buckets: Mutex<Buckets<K>>,
}

impl<K: LimitKey> RateLimiter<K> {
    /// A limiter with every bucket full.
    pub fn new(limit: RateLimit) -> RateLimiter<K> {
        RateLimiter {
            buckets: Mutex::new(Buckets::new(limit)),
        }
    }

    /// The limit this limiter enforces.
    pub fn limit(&self) -> RateLimit {
        self.buckets.lock().limit()
    }

    /// Takes one token for `id` at `now`, or says how long until one is available.
    pub fn try_acquire(&self, id: K, now: Instant) -> Result<(), Duration> {
        self.buckets.lock().take(id.limit_key(), now)
    }

    /// Takes one token for `id` now, or says how long until one is available and whose
    /// allowance it is.
    pub fn take(&self, id: K) -> Result<(), (Duration, Whose)> {
        self.try_acquire(id, Instant::now())
            .map_err(|wait| (wait, K::WHOSE))
    }

    /// Gives back what `try_acquire` took, for a message that turned out to be a resend.
    pub fn refund(&self, id: K) {
        self.buckets.lock().give_back(id.limit_key());
    }
}

/// Takes a token from `first` for `a` and from `second` for `b`, or none: when the second is
/// refused the first is given back. When refused, how long to wait and whose allowance ran out.
pub fn acquire_both<A, B>(
    first: &RateLimiter<A>,
    a: A,
    second: &RateLimiter<B>,
    b: B,
) -> Result<(), (Duration, Whose)>
where
    A: LimitKey,
    B: LimitKey,
{
    let now = Instant::now();
    first.try_acquire(a, now).map_err(|wait| (wait, A::WHOSE))?;
    second
        .try_acquire(b, now)
        .map_err(|wait| (wait, B::WHOSE))
        .inspect_err(|_| first.refund(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_allows_a_burst_then_refills_over_the_window() {
        let limit = RateLimit {
            burst: 5,
            window: Duration::from_secs(10),
        };
        let limiter: RateLimiter = RateLimiter::new(limit);
        let id = SessionId::generate();
        let start = Instant::now();
        for _ in 0..5 {
            limiter.try_acquire(id, start).unwrap();
        }
        let wait = limiter.try_acquire(id, start).unwrap_err();
        assert!(
            wait <= Duration::from_secs(2) && wait > Duration::from_millis(1900),
            "{wait:?}"
        );
        // Another session is not affected.
        limiter.try_acquire(SessionId::generate(), start).unwrap();
        // Two seconds later one message's worth has come back.
        limiter
            .try_acquire(id, start + Duration::from_secs(2))
            .unwrap();
        assert!(
            limiter
                .try_acquire(id, start + Duration::from_secs(2))
                .is_err()
        );
    }

    #[test]
    fn the_addresses_of_one_ipv6_64_share_one_allowance_and_ipv4_ones_do_not() {
        let limiter: RateLimiter<IpAddr> = RateLimiter::new(RateLimit {
            burst: 2,
            window: Duration::from_secs(60),
        });
        let now = Instant::now();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        limiter.try_acquire(ip("2001:db8:1:2::1"), now).unwrap();
        limiter
            .try_acquire(ip("2001:db8:1:2:ffff::9"), now)
            .unwrap();
        assert!(limiter.try_acquire(ip("2001:db8:1:2::3"), now).is_err());
        limiter.try_acquire(ip("2001:db8:1:3::1"), now).unwrap();
        limiter.try_acquire(ip("192.0.2.1"), now).unwrap();
        limiter.try_acquire(ip("192.0.2.1"), now).unwrap();
        limiter.try_acquire(ip("192.0.2.2"), now).unwrap();
    }

    #[test]
    fn a_refund_gives_a_message_back() {
        let limiter: RateLimiter = RateLimiter::new(RateLimit {
            burst: 1,
            window: Duration::from_secs(60),
        });
        let id = SessionId::generate();
        let now = Instant::now();
        limiter.try_acquire(id, now).unwrap();
        limiter.refund(id);
        limiter.try_acquire(id, now).unwrap();
    }
}
