//! The store's devices: each browser of a session, and the devices signed out, on whichever
//! backend it has.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Backend, Store, StoreError};
use crate::clock::Millis;
use crate::device::{Added, Device};
use crate::lock::Mutex;
use crate::session::{DeviceId, SessionId, Who};

/// Device lists kept in memory, at most.
const CACHED_LISTS: usize = 100_000;

/// The device lists of recent settings pages, on a database only this process writes (SQLite):
/// a settings page view then costs no query for them. Every write of a session's devices drops
/// its list after the commit; a list read while a write was under way is not kept (the epoch
/// moved), so the cache never holds a list the database no longer has.
pub(super) struct DeviceCache {
    lists: Mutex<HashMap<SessionId, Arc<[Device]>>>,
    epoch: AtomicU64,
    enabled: bool,
}

impl DeviceCache {
    pub(super) fn new(enabled: bool) -> DeviceCache {
        DeviceCache {
            lists: Mutex::default(),
            epoch: AtomicU64::new(0),
            enabled,
        }
    }

    /// After a write of these sessions' devices committed.
    pub(super) fn remove(&self, sessions: impl IntoIterator<Item = SessionId>) {
        if !self.enabled {
            return;
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let mut lists = self.lists.lock();
        for session in sessions {
            lists.remove(&session);
        }
    }
}

/// What [`Store::add_device`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddedDevice {
    /// The device is the session's now.
    Added,
    /// The session has its most devices already: nothing was added.
    Full,
}

/// What [`Store::ended`] found of the cookies it was asked about: the devices among them that
/// were signed out, and the sessions that were forgotten, each with when.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ended {
    /// Signed out devices, and when each was.
    pub devices: Vec<(DeviceId, Millis)>,
    /// Forgotten sessions, and when each was.
    pub sessions: Vec<(SessionId, Millis)>,
}

impl Store {
    /// True when other instances may write this database too (PostgreSQL): what this process
    /// remembers of it can then lag behind their commits by as long as a notification takes.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Which of the cookies `asked` (sessions and their devices) were ended in the database: a
    /// device signed out, a session forgotten, on whichever instance. The same round trip reads
    /// each session's settings row, kept for its request's page to take once
    /// ([`Store::load_checked`]): the check costs a page view no query of its own. On a store
    /// only this process writes (SQLite) it asks nothing and finds nothing: every sign-out and
    /// every "forget me" was made here, and this process's memory of them is exact.
    pub async fn ended(&self, asked: &[Who]) -> Result<Ended, StoreError> {
        let Backend::Postgres(p) = &self.backend else {
            return Ok(Ended::default());
        };
        // No row older than this read may be left for a page to take, even when its fill is
        // dropped below.
        self.checked.discard(asked.iter().map(|who| who.session));
        let ticket = self.checked.ticket();
        let (ended, rows) = p.ended(asked).await?;
        for (session, row) in rows {
            // Dropped when any write came meanwhile: the page then reads the row itself.
            self.checked.fill(session, row, ticket);
        }
        Ok(ended)
    }

    /// The devices of `session`, first added first.
    pub async fn devices(&self, session: SessionId) -> Result<Arc<[Device]>, StoreError> {
        let cache = &self.devices;
        if cache.enabled
            && let Some(list) = cache.lists.lock().get(&session)
        {
            return Ok(Arc::clone(list));
        }
        let epoch = cache.epoch.load(Ordering::Acquire);
        let list: Arc<[Device]> = on_backend!(self, s => s.devices(session).await)?.into();
        if cache.enabled {
            let mut lists = cache.lists.lock();
            if cache.epoch.load(Ordering::Acquire) == epoch {
                if lists.len() >= CACHED_LISTS {
                    lists.clear();
                }
                lists.insert(session, Arc::clone(&list));
            }
        }
        Ok(list)
    }

    /// Device `device` of `session` was seen at `now`: its activity time moves on, and a device
    /// without a row (the browser that saves a session's first settings) gets one, named
    /// `name`, as the session's first. A device whose name is still empty (one that came with
    /// the devices' migration) gets `name` too. Returns false, writing nothing, when the device
    /// was signed out.
    pub async fn see_device(
        &self,
        session: SessionId,
        device: DeviceId,
        name: String,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let seen = self
            .timed(async { on_backend!(self, s => s.see_device(session, device, name, now).await) })
            .await;
        self.devices.remove([session]);
        seen
    }

    /// Adds device `device`, named `name`, to `session` as one linked by code, unless the
    /// session has `max` devices already.
    pub async fn add_device(
        &self,
        session: SessionId,
        device: DeviceId,
        name: String,
        now: Millis,
        max: usize,
    ) -> Result<AddedDevice, StoreError> {
        let added = self
            .timed(async {
                on_backend!(self, s => s.add_device(session, device, name, now, max).await)
            })
            .await;
        self.devices.remove([session]);
        added
    }

    /// Renames device `device` of `session`; false when it has no such device.
    pub async fn rename_device(
        &self,
        session: SessionId,
        device: DeviceId,
        name: String,
    ) -> Result<bool, StoreError> {
        let renamed = self
            .timed(async { on_backend!(self, s => s.rename_device(session, device, name).await) })
            .await;
        self.devices.remove([session]);
        renamed
    }

    /// Signs `devices` of `session` out at `now`, in one transaction: their rows are deleted and
    /// their ids remembered, so their cookies are refused from then on (on every instance: each
    /// is announced).
    pub async fn sign_out_devices(
        &self,
        session: SessionId,
        devices: Vec<DeviceId>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let signed_out = self
            .timed(async {
                on_backend!(self, s => s.sign_out_devices(session, devices, now).await)
            })
            .await;
        self.devices.remove([session]);
        signed_out
    }

    /// Gives device `old` of `session` the new id `new` (keeping how and when it was added), or
    /// makes `new` the session's first device, named `name`, when `old` has no row. The old id
    /// is left to be signed out.
    pub async fn move_device(
        &self,
        session: SessionId,
        old: DeviceId,
        new: DeviceId,
        name: String,
        now: Millis,
    ) -> Result<(), StoreError> {
        let moved = self
            .timed(async {
                on_backend!(self, s => s.move_device(session, old, new, name, now).await)
            })
            .await;
        self.devices.remove([session]);
        moved
    }

    /// The `limit` most recently signed out devices, with when each was.
    pub async fn signed_out(&self, limit: usize) -> Result<Vec<(DeviceId, Millis)>, StoreError> {
        on_backend!(self, s => s.signed_out(limit).await)
    }

    /// Signs out up to `limit` devices not seen since `cutoff` (as [`Store::sign_out_devices`]
    /// does), stalest first, and returns them with their sessions.
    pub async fn prune_devices_batch(
        &self,
        cutoff: Millis,
        limit: usize,
        now: Millis,
    ) -> Result<Vec<(SessionId, DeviceId)>, StoreError> {
        let pruned = on_backend!(self, s => s.prune_devices_batch(cutoff, limit, now).await)?;
        self.devices
            .remove(pruned.iter().map(|(session, _)| *session));
        Ok(pruned)
    }

    /// Stops remembering devices signed out before `before` (their cookies have expired).
    pub async fn prune_signed_out(&self, before: Millis) -> Result<usize, StoreError> {
        on_backend!(self, s => s.prune_signed_out(before).await)
    }
}

/// A device row's columns, as both backends read them.
pub(super) fn device_row(
    id: DeviceId,
    name: String,
    added_at: Millis,
    added_by: &str,
    active_at: Millis,
) -> Device {
    Device {
        id,
        name,
        added_at,
        added: Added::parse(added_by),
        active_at,
    }
}
