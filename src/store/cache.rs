//! A read cache of settings rows, so a page view of a known session usually needs no database
//! round trip at all.
//!
//! It can never serve a value older than an acknowledged write. Every write removes the rows it
//! touched from the cache after its commit and before its caller is answered, and bumps an epoch.
//! A reader that missed fills the cache only if no write removed anything between the moment it
//! started reading the database and the moment it fills: otherwise it might be putting back what a
//! write just replaced. Removal (rather than writing the new value in) is order-independent, so
//! two writes answered in either order leave no stale row behind.
//!
//! A cache lives in one process: with several instances on one database, each must hear the
//! others' writes (or run without it).

use crate::lock::Mutex;
use std::collections::HashMap;

use super::StoredSettings;
use crate::session::SessionId;

/// What the cache knows of a session: its row, or that it has none.
pub(super) type Entry = Option<StoredSettings>;

pub(super) struct Cache {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Default)]
struct Inner {
    rows: HashMap<SessionId, Entry>,
    /// Bumped by every removal.
    epoch: u64,
}

/// A reader's ticket: the epoch when it started reading the database.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket(u64);

impl Cache {
    pub(super) fn new(capacity: usize) -> Cache {
        Cache {
            inner: Mutex::new(Inner::default()),
            capacity,
        }
    }

    /// A cache that keeps nothing: every read goes to the database.
    pub(super) fn disabled() -> Cache {
        Cache::new(0)
    }

    /// The cached entry, or a ticket to fill it with after reading the database.
    pub(super) fn get(&self, id: SessionId) -> Result<Entry, Ticket> {
        let inner = self.inner.lock();
        match inner.rows.get(&id) {
            Some(entry) => Ok(entry.clone()),
            None => Err(Ticket(inner.epoch)),
        }
    }

    /// Remembers what the database said, unless a write may have changed it since `ticket`.
    pub(super) fn fill(&self, id: SessionId, entry: Entry, ticket: Ticket) {
        let mut inner = self.inner.lock();
        if inner.epoch != ticket.0 || self.capacity == 0 {
            return;
        }
        if inner.rows.len() >= self.capacity {
            // Full: forget an arbitrary eighth. Cheap, and good enough for a cache of rows
            // that are each one lookup away.
            let drop_every = 8;
            let mut n = 0usize;
            inner.rows.retain(|_, _| {
                n += 1;
                !n.is_multiple_of(drop_every)
            });
        }
        inner.rows.insert(id, entry);
    }

    /// A ticket for a read of the database that starts now.
    pub(super) fn ticket(&self) -> Ticket {
        Ticket(self.inner.lock().epoch)
    }

    /// Takes the entry of `id` out, if there is one: for a cache whose entries are each read
    /// once (`Store::load_checked`).
    pub(super) fn take(&self, id: SessionId) -> Option<Entry> {
        self.inner.lock().rows.remove(&id)
    }

    /// Drops the entries of `ids` without counting it as a write: before a read that will fill
    /// them again, so none older than that read is left when its fill is dropped.
    pub(super) fn discard(&self, ids: impl IntoIterator<Item = SessionId>) {
        let mut inner = self.inner.lock();
        for id in ids {
            inner.rows.remove(&id);
        }
    }

    /// Forgets `ids`: called after a write that changed them is committed, before it is answered.
    pub(super) fn remove(&self, ids: impl IntoIterator<Item = SessionId>) {
        let mut inner = self.inner.lock();
        inner.epoch += 1;
        for id in ids {
            inner.rows.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fill_that_raced_a_write_is_dropped() {
        let cache = Cache::new(10);
        let id = SessionId::generate();
        let ticket = cache.get(id).unwrap_err();
        // A write commits and removes the id while the reader is reading the old row.
        cache.remove([id]);
        cache.fill(id, None, ticket);
        assert!(cache.get(id).is_err(), "a stale read was cached");
    }

    #[test]
    fn a_quiet_fill_is_served_until_a_write() {
        let cache = Cache::new(10);
        let id = SessionId::generate();
        let ticket = cache.get(id).unwrap_err();
        cache.fill(id, Some(StoredSettings::default()), ticket);
        assert_eq!(cache.get(id).unwrap(), Some(StoredSettings::default()));
        cache.remove([id]);
        assert!(cache.get(id).is_err());
    }

    #[test]
    fn a_checked_row_is_taken_once_and_a_discard_leaves_fills_alone() {
        let cache = Cache::new(10);
        let (id, other) = (SessionId::generate(), SessionId::generate());
        cache.discard([id]);
        let ticket = cache.ticket();
        // Discarding another id is not a write: the fill still lands.
        cache.discard([other]);
        cache.fill(id, Some(StoredSettings::default()), ticket);
        assert_eq!(cache.take(id), Some(Some(StoredSettings::default())));
        assert_eq!(cache.take(id), None, "taken once");
        let ticket = cache.ticket();
        cache.remove([other]);
        cache.fill(id, None, ticket);
        assert_eq!(
            cache.take(id),
            None,
            "a write came between the read and the fill"
        );
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let cache = Cache::new(100);
        for _ in 0..1000 {
            let id = SessionId::generate();
            let ticket = cache.get(id).unwrap_err();
            cache.fill(id, None, ticket);
        }
        assert!(cache.inner.lock().rows.len() <= 100);
    }
}
