//! The sessions "forget me" ended, and the devices signed out, refused from then on.

use crate::lock::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::clock::Millis;
use crate::session::{DeviceId, SessionId};
use std::hash::Hash;

/// How many forgotten ids are kept in memory, at most (about 40 bytes each). The database keeps
/// them all and is what refuses a write under a forgotten id; this set only spares a browser
/// with an old cookie the empty page of a dead session. Past it, the oldest half is dropped
/// from memory (a write under one of those is still refused, and brings it back).
pub const IN_MEMORY: usize = 100_000;

/// Session ids deleted by "forget me". Their cookies still carry a valid signature, so they are
/// refused here until the cookie would have expired anyway
/// ([`COOKIE_MAX_AGE`](crate::session::COOKIE_MAX_AGE)): such a request gets a fresh session,
/// and the old id is never re-issued. Bounded: see [`IN_MEMORY`].
pub struct Forgotten<K = SessionId> {
    ids: RwLock<HashMap<K, Millis>>,
    /// True while `ids` is empty: the usual case costs one atomic load per request.
    none: AtomicBool,
}

impl<K> Default for Forgotten<K> {
    fn default() -> Forgotten<K> {
        Forgotten {
            ids: RwLock::default(),
            none: AtomicBool::new(true),
        }
    }
}

/// The same, for devices signed out: their sessions go on, their own cookies are refused.
pub type SignedOut = Forgotten<DeviceId>;

impl<K: Copy + Eq + Hash> Forgotten<K> {
    /// True when `id` was forgotten.
    pub fn contains(&self, id: K) -> bool {
        !self.none.load(Ordering::Acquire) && self.ids.read().contains_key(&id)
    }

    /// Remembers that `id` was forgotten at `at`.
    pub fn insert(&self, id: K, at: Millis) {
        let mut ids = self.ids.write();
        if ids.len() >= IN_MEMORY && !ids.contains_key(&id) {
            let mut times: Vec<Millis> = ids.values().copied().collect();
            let middle = times.len() / 2;
            let (_, median, _) = times.select_nth_unstable(middle);
            let median = *median;
            ids.retain(|_, at| *at > median);
        }
        ids.insert(id, at);
        self.none.store(false, Ordering::Release);
    }

    /// How many ids are held in memory.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.ids.read().len()
    }

    /// Stops remembering ids forgotten before `before`.
    pub fn forget_before(&self, before: Millis) {
        let mut ids = self.ids.write();
        ids.retain(|_, at| *at >= before);
        self.none.store(ids.is_empty(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_stays_within_its_bound_keeping_the_newest() {
        let forgotten = Forgotten::default();
        let newest = SessionId::generate();
        for at in 0..(IN_MEMORY as Millis + 10) {
            forgotten.insert(SessionId::generate(), at);
        }
        forgotten.insert(newest, Millis::MAX);
        assert!(forgotten.len() <= IN_MEMORY, "{}", forgotten.len());
        assert!(forgotten.len() >= IN_MEMORY / 2 - 1);
        assert!(forgotten.contains(newest));
    }
}
