//! Client addresses as the limits per address count them: the address itself for IPv4, its /64
//! for IPv6 (one host is usually given a whole /64, so counting single addresses would limit
//! nothing), and a [`Tally`] of what each address holds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::lock::Mutex;

/// What a limit per address counts `ip` as.
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// How many of something (connections, live sockets) each address holds.
#[derive(Debug, Default, Clone)]
pub struct Tally(Arc<Mutex<HashMap<IpAddr, usize>>>);

impl Tally {
    /// One more for `ip` (counted by [`limit_key`]), unless it holds `max` already; the count
    /// goes down when the returned [`Held`] is dropped.
    pub fn take(&self, ip: IpAddr, max: usize) -> Option<Held> {
        let key = limit_key(ip);
        let mut counts = self.0.lock();
        let held = counts.entry(key).or_insert(0);
        if *held >= max {
            if *held == 0 {
                counts.remove(&key);
            }
            return None;
        }
        *held += 1;
        Some(Held {
            key,
            tally: self.clone(),
        })
    }

    /// How many `ip` holds now.
    pub fn held_by(&self, ip: IpAddr) -> usize {
        let counts = self.0.lock();
        counts.get(&limit_key(ip)).copied().unwrap_or(0)
    }
}

/// One thing an address holds; counted out when dropped.
#[derive(Debug)]
pub struct Held {
    key: IpAddr,
    tally: Tally,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut counts = self.tally.0.lock();
        if let Some(held) = counts.get_mut(&self.key) {
            *held -= 1;
            if *held == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_addresses_are_counted_by_their_64() {
        assert_eq!(
            limit_key(ip("2001:db8:1:2:aaaa::1")),
            limit_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            limit_key(ip("2001:db8:1:2::1")),
            limit_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(limit_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(limit_key(ip("192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn an_address_holds_at_most_max_and_gets_its_place_back_on_drop() {
        let tally = Tally::default();
        let a = ip("192.0.2.1");
        let first = tally.take(a, 2).unwrap();
        let _second = tally.take(a, 2).unwrap();
        assert!(tally.take(a, 2).is_none());
        assert!(tally.take(ip("192.0.2.2"), 2).is_some(), "another address");
        drop(first);
        assert_eq!(tally.held_by(a), 1);
        assert!(tally.take(a, 2).is_some());
        assert!(tally.take(a, 0).is_none());
    }

    #[test]
    fn an_address_that_holds_nothing_leaves_no_entry() {
        let tally = Tally::default();
        drop(tally.take(ip("192.0.2.1"), 1));
        assert!(tally.take(ip("192.0.2.9"), 0).is_none());
        assert!(tally.0.lock().is_empty());
    }
}
