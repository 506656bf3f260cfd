//! Each browser its own device under its session: the list a settings page shows, renaming one,
//! signing one (or every other) out, and noting when one was last active without a write per
//! page view.

use std::collections::HashMap;
use std::sync::Arc;

use super::Site;
use super::account::Limited;
use crate::clock::{Millis, now_millis};
use crate::device::{self, Added, Device, Handle};
use crate::hub::SessionEvent;
use crate::lock::Mutex;
use crate::session::{DeviceId, Session, SessionId, Who, first_device};
use crate::store::StoreError;

/// Devices whose last write of activity this instance remembers, at most: past it the memory
/// starts over, and each device is written once more.
const SEEN_IN_MEMORY: usize = 100_000;

/// When this instance last wrote each device's activity: a device is written at most once per
/// touch window, however many pages it views.
#[derive(Default)]
pub(super) struct Seen(Mutex<HashMap<DeviceId, Millis>>);

impl Seen {
    /// Whether device `device` is due a write at `now`, its last being before `due_before`;
    /// if so it is counted as written now (a failed write makes it due again).
    fn due(&self, device: DeviceId, now: Millis, due_before: Millis) -> bool {
        let mut seen = self.0.lock();
        match seen.get(&device) {
            Some(&at) if at >= due_before => false,
            _ => {
                if seen.len() >= SEEN_IN_MEMORY {
                    seen.clear();
                }
                seen.insert(device, now);
                true
            }
        }
    }

    fn forget(&self, device: DeviceId) {
        self.0.lock().remove(&device);
    }
}

/// What renaming or signing out a device did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChange {
    /// Done.
    Done,
    /// The session has no device of that handle (it was signed out meanwhile, or the handle is
    /// someone else's).
    NoSuchDevice,
    /// Signing out this very browser: that is "Forget me", or "Sign out everywhere else" from
    /// another device.
    ThisDevice,
}

/// The devices of a session as its settings page lists them.
#[derive(Debug, Clone, Default)]
pub struct DeviceList {
    /// Every device, first added first; this browser's is among them. Shared with the store's
    /// cache of the lists: a page view copies none of it.
    pub devices: Arc<[Device]>,
    /// The device linked by code most recently within a day, other than this one: the page
    /// announces it.
    pub joined: Option<Device>,
}

impl Site {
    /// The devices of `session` for its settings page, with this browser among them even when
    /// it has no row yet (a session that has saved nothing).
    pub async fn devices_of(&self, session: Session) -> Result<DeviceList, StoreError> {
        let mut devices: Arc<[Device]> = if session.is_new {
            Arc::new([])
        } else {
            self.0.store.devices(session.id).await?
        };
        if !devices.iter().any(|d| d.id == session.device) {
            let now = now_millis();
            let this = Device {
                id: session.device,
                name: session.kind.name(),
                added_at: now,
                added: Added::First,
                active_at: now,
            };
            devices = devices.iter().cloned().chain([this]).collect();
        }
        let now = now_millis();
        let joined = devices
            .iter()
            .filter(|d| d.id != session.device && d.added == Added::Code)
            .filter(|d| now.saturating_sub(d.added_at) < device::ANNOUNCED_FOR)
            .max_by_key(|d| d.added_at)
            .cloned();
        Ok(DeviceList { devices, joined })
    }

    /// The device of `session` named `handle`, if the session has it.
    pub async fn device_named(
        &self,
        session: SessionId,
        handle: Handle,
    ) -> Result<Option<Device>, StoreError> {
        let devices = self.0.store.devices(session).await?;
        Ok(devices.iter().find(|d| d.handle() == handle).cloned())
    }

    /// This browser of `session` was seen: its activity is written at most once per touch
    /// window, and a session's first browser gets its row the first time. A failure is logged;
    /// the next view tries again.
    pub(super) async fn seen(&self, session: Session) {
        let Session {
            id: session,
            device,
            kind,
            ..
        } = session;
        let now = now_millis();
        if self.is_signed_out(device)
            || !self
                .0
                .seen
                .due(device, now, self.0.retention.touch_before(now))
        {
            return;
        }
        match self
            .0
            .store
            .see_device(session, device, kind.name(), now)
            .await
        {
            Ok(true) => self.0.hub.publish(session, SessionEvent::DevicesChanged),
            Ok(false) => {}
            Err(e) => {
                self.0.seen.forget(device);
                tracing::warn!(error = %e, "recording a device's activity failed");
            }
        }
    }

    /// Renames the device of `session` named `handle` to `name` (already checked).
    pub async fn rename_device(
        &self,
        session: SessionId,
        handle: Handle,
        name: String,
    ) -> Result<DeviceChange, StoreError> {
        let Some(device) = self.device_named(session, handle).await? else {
            return Ok(DeviceChange::NoSuchDevice);
        };
        if !self.0.store.rename_device(session, device.id, name).await? {
            return Ok(DeviceChange::NoSuchDevice);
        }
        self.0.hub.publish(session, SessionEvent::DevicesChanged);
        Ok(DeviceChange::Done)
    }

    /// Signs out the device named `handle` of `session`, from another of its devices: its
    /// cookie is refused from now on, on every instance, and its open pages reload into a new
    /// session. The session and its other devices go on.
    pub async fn sign_out_device(
        &self,
        session: Session,
        handle: Handle,
    ) -> Result<DeviceChange, StoreError> {
        if Handle::of(session.device) == handle {
            return Ok(DeviceChange::ThisDevice);
        }
        let Some(device) = self.device_named(session.id, handle).await? else {
            return Ok(DeviceChange::NoSuchDevice);
        };
        self.sign_out(session.id, vec![device.id]).await?;
        tracing::info!("a device was signed out by another device of its session");
        Ok(DeviceChange::Done)
    }

    /// "Sign out everywhere else": every other device of `session` is signed out, and so is any
    /// copy of this browser's own cookie (it gets a new device id, returned for its cookie).
    /// The session's data stays where it is. Each browser may ask [`SIGN_OUT_LIMIT`] times.
    ///
    /// [`SIGN_OUT_LIMIT`]: super::SIGN_OUT_LIMIT
    pub async fn sign_out_elsewhere(&self, session: Session) -> Result<Who, Limited> {
        self.0
            .sign_out_limit
            .take(session.id)
            .map_err(Limited::counted(crate::metrics::Limit::SignOut))?;
        let mine = session.device;
        let new = DeviceId::generate();
        let mut others: Vec<DeviceId> = self
            .0
            .store
            .devices(session.id)
            .await?
            .iter()
            .map(|d| d.id)
            .filter(|id| *id != mine)
            .collect();
        // A browser that joined before devices had ids of their own holds its session's first
        // device; so does any copy of its cookie.
        let first = first_device(session.id);
        if first != mine && !others.contains(&first) {
            others.push(first);
        }
        let now = now_millis();
        self.0
            .store
            .move_device(session.id, mine, new, session.kind.name(), now)
            .await?;
        others.push(mine);
        self.sign_out(session.id, others).await?;
        tracing::info!("a browser signed out every other device of its session");
        Ok(Who {
            session: session.id,
            device: new,
        })
    }

    /// Signs `devices` of `session` out: the database first, then this instance refuses them,
    /// then their pages are told.
    async fn sign_out(&self, session: SessionId, devices: Vec<DeviceId>) -> Result<(), StoreError> {
        let now = now_millis();
        self.0
            .store
            .sign_out_devices(session, devices.clone(), now)
            .await?;
        for &device in &devices {
            self.refuse_device(device, now);
        }
        for device in devices {
            self.0.hub.publish(session, SessionEvent::SignedOut(device));
        }
        self.0.hub.publish(session, SessionEvent::DevicesChanged);
        Ok(())
    }

    /// Device `device` of `session` was signed out at `at` (on another instance): refused from
    /// now on, and its pages reload.
    pub(super) fn signed_out_at(&self, session: SessionId, device: DeviceId, at: Millis) {
        self.refuse_device(device, at);
        self.0.hub.publish(session, SessionEvent::SignedOut(device));
        self.0.hub.publish(session, SessionEvent::DevicesChanged);
    }

    /// Devices of `pruned` were signed out at `at` for being idle past `--stale-after` (just
    /// committed): refused from now on, and their pages reload.
    pub fn devices_pruned(&self, pruned: &[(SessionId, DeviceId)], at: Millis) {
        for &(session, device) in pruned {
            self.signed_out_at(session, device, at);
        }
    }

    /// From now on this instance refuses device `device`'s cookie. (A page that missed the
    /// event, its subscription having lagged, finds it so when it reads again.)
    pub(super) fn refuse_device(&self, device: DeviceId, at: Millis) {
        self.0.signed_out.insert(device, at);
        self.0.seen.forget(device);
    }

    /// True when device `device` was signed out (here or on another instance): its cookie is
    /// refused, and never issued again.
    pub fn is_signed_out(&self, device: DeviceId) -> bool {
        self.0.signed_out.contains(device)
    }
}
