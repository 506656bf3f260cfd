//! "Use on another device": a one-time code carries a session to another browser.
//!
//! The session that makes a code is the one the other browser joins: that browser becomes a new
//! device of it, with a device id of its own (never a copy of the other browser's cookie), so
//! both are one session, in sync as two tabs are, and either can sign the other out. Nothing
//! changes until the other browser confirms (a link preview that only fetches the page does
//! nothing); the confirm spends the code atomically, and that browser's own session is forgotten
//! as "forget me" forgets one. A session has at most `--max-devices`.
//!
//! Guessing is hopeless by the numbers: a code has 59 random bits (see `crate::link`), lives
//! `--link-ttl` (10 minutes), and lookups are limited to [`ATTEMPTS_PER_ADDRESS`] per address and
//! [`ATTEMPTS_IN_ALL`] for the whole server per 10 minutes. With as many as 10,000 codes alive
//! at once, one guess finds one with a chance of 10,000 / 2^59.45 = 1.4e-14; the global limit
//! allows 144,000 guesses a day, so a whole year of guessing at the limit finds one with a
//! chance below 1 in 1,000,000 (7.2e-7).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::account::Ending;
use super::limits::{RateLimiter, acquire_both};
use super::{Limited, Site};
use crate::clock::{Millis, now_millis};
use crate::hub::SessionEvent;
use crate::limit::RateLimit;
use crate::link::{LinkCode as Code, Unusable};
use crate::lock::Mutex;
use crate::metrics::{Limit, metrics};
use crate::session::{DeviceId, Session, SessionId, Who};
use crate::settings::Settings;
use crate::store::{AddedDevice, CodeState, StoreError};

/// Codes one browser may make per 10 minutes.
pub const CODES_PER_SESSION: RateLimit = RateLimit {
    burst: 5,
    window: Duration::from_secs(600),
};

/// Codes one client address may make per 10 minutes, over all its browsers.
pub const CODES_PER_ADDRESS: RateLimit = RateLimit {
    burst: 20,
    window: Duration::from_secs(600),
};

/// Codes one client address may look up or use per 10 minutes, right or wrong.
pub const ATTEMPTS_PER_ADDRESS: RateLimit = RateLimit {
    burst: 20,
    window: Duration::from_secs(600),
};

/// Codes the whole server may look up or use per 10 minutes.
pub const ATTEMPTS_IN_ALL: RateLimit = RateLimit {
    burst: 1_000,
    window: Duration::from_secs(600),
};

/// The buckets of the limits above, and the live codes this instance made (for the settings
/// page, which shows a live code without a query).
pub(super) struct Linking {
    /// How long a code lives (`--link-ttl`).
    pub ttl: Duration,
    made_per_session: RateLimiter<SessionId>,
    made_per_address: RateLimiter<IpAddr>,
    tried_per_address: RateLimiter<IpAddr>,
    tried_in_all: RateLimiter<()>,
    live: Mutex<HashMap<SessionId, Millis>>,
    /// How many entries `live` has: the read path (every settings page view) skips the lock
    /// when there are none.
    live_count: AtomicUsize,
}

impl Linking {
    /// Full buckets; codes live `ttl`.
    pub fn new(ttl: Duration) -> Linking {
        Linking {
            ttl,
            made_per_session: RateLimiter::new(CODES_PER_SESSION),
            made_per_address: RateLimiter::new(CODES_PER_ADDRESS),
            tried_per_address: RateLimiter::new(ATTEMPTS_PER_ADDRESS),
            tried_in_all: RateLimiter::new(ATTEMPTS_IN_ALL),
            live: Mutex::default(),
            live_count: AtomicUsize::new(0),
        }
    }

    /// When `session`'s live code (made here, or heard of) expires; `None` for most, without
    /// taking the lock while no code is live.
    pub fn expires(&self, session: SessionId) -> Option<Millis> {
        if self.live_count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut live = self.live.lock();
        let found = match live.get(&session) {
            Some(&at) if at > now_millis() => Some(at),
            Some(_) => {
                live.remove(&session);
                None
            }
            None => None,
        };
        self.live_count.store(live.len(), Ordering::Relaxed);
        found
    }

    /// Records that `session`'s code now expires at `expires_at`, or that it has none live:
    /// made, used or cancelled here, or on another instance.
    pub fn record(&self, session: SessionId, expires_at: Option<Millis>) {
        let mut live = self.live.lock();
        match expires_at {
            Some(at) => {
                let now = now_millis();
                live.retain(|_, at| *at > now);
                live.insert(session, at);
            }
            None => {
                live.remove(&session);
            }
        }
        self.live_count.store(live.len(), Ordering::Relaxed);
    }

    /// Takes a lookup from the address's and the server's allowance.
    fn attempt(&self, from: IpAddr) -> Result<(), Limited> {
        acquire_both(&self.tried_per_address, from, &self.tried_in_all, ()).map_err(too_fast)
    }
}

/// A refusal by one of the limits above, counted.
fn too_fast(wait: Duration) -> Limited {
    metrics().rate_limited(Limit::Link);
    Limited::TooFast(wait)
}

/// What a code turned out to be, for the browser that typed it.
#[derive(Debug)]
pub enum Found<T> {
    /// It is live: what it carries.
    Live(T),
    /// It is not, and why.
    Not(Unusable),
}

/// A code's state in the store, as the browser that typed it learns it.
fn found(state: CodeState) -> Found<SessionId> {
    match state {
        CodeState::Active { session, .. } => Found::Live(session),
        CodeState::Unknown => Found::Not(Unusable::Unknown),
        CodeState::Expired => Found::Not(Unusable::Expired),
        CodeState::Spent => Found::Not(Unusable::Spent),
        CodeState::Cancelled => Found::Not(Unusable::Cancelled),
    }
}

impl Site {
    /// When `session`'s live code (made here, or heard of) expires, for its settings pages;
    /// `None` for most, without taking a lock while no code is live.
    pub fn link_expires(&self, session: SessionId) -> Option<Millis> {
        self.0.linking.expires(session)
    }

    /// Makes a code for `session` (asked `from` an address); the code and when it expires.
    pub async fn make_link(
        &self,
        session: SessionId,
        from: IpAddr,
    ) -> Result<(Code, Millis), Limited> {
        let linking = &self.0.linking;
        acquire_both(
            &linking.made_per_session,
            session,
            &linking.made_per_address,
            from,
        )
        .map_err(too_fast)?;
        let code = Code::generate();
        let now = now_millis();
        let ttl = Millis::try_from(linking.ttl.as_millis()).unwrap_or(Millis::MAX / 2);
        let expires_at = now.saturating_add(ttl);
        self.0
            .store
            .create_link(session, code.hash(), now, expires_at)
            .await?;
        linking.record(session, Some(expires_at));
        self.0.hub.publish(session, SessionEvent::LinkChanged);
        Ok((code, expires_at))
    }

    /// Whether `code` is `session`'s own, and live (to show it on its settings page again).
    pub async fn owns_live_link(
        &self,
        session: SessionId,
        code: &Code,
    ) -> Result<bool, StoreError> {
        let state = self.0.store.link_state(code.hash(), now_millis()).await?;
        Ok(matches!(state, CodeState::Active { session: owner, .. } if owner == session))
    }

    /// Cancels `session`'s live code.
    pub async fn cancel_link(&self, session: SessionId) -> Result<(), StoreError> {
        self.0.store.cancel_links(session, now_millis()).await?;
        self.0.linking.record(session, None);
        self.0.hub.publish(session, SessionEvent::LinkChanged);
        Ok(())
    }

    /// What `code` (typed `from` an address) stands for, changing nothing: the settings of the
    /// session it carries and when the code was made, for the page that asks whether to join it.
    pub async fn look_up_link(
        &self,
        code: Option<&Code>,
        from: IpAddr,
    ) -> Result<Found<(Settings, Millis)>, Limited> {
        self.0.linking.attempt(from)?;
        let Some(code) = code else {
            return Ok(Found::Not(Unusable::Unknown));
        };
        let state = self.0.store.link_state(code.hash(), now_millis()).await?;
        let ttl = Millis::try_from(self.0.linking.ttl.as_millis()).unwrap_or(Millis::MAX / 2);
        match (found(state), state) {
            (Found::Live(theirs), CodeState::Active { expires_at, .. }) => {
                let stored = self.0.store.load(theirs).await?.unwrap_or_default();
                Ok(Found::Live((
                    stored.settings,
                    expires_at.saturating_sub(ttl),
                )))
            }
            (Found::Not(why), _) => Ok(Found::Not(why)),
            (Found::Live(_), _) => Ok(Found::Not(Unusable::Unknown)),
        }
    }

    /// Spends `code` for the browser of session `mine` (asking `from` an address): on success
    /// that browser becomes a new device of the code's session (returned, for its cookie), its
    /// own session is forgotten (its other tabs reload), and the session's other devices are
    /// told. Of two browsers racing for one code, one wins; a session at `--max-devices` is
    /// refused before its code is spent.
    pub async fn use_link(
        &self,
        code: Option<&Code>,
        mine: Session,
        from: IpAddr,
    ) -> Result<Found<Who>, Limited> {
        self.0.linking.attempt(from)?;
        let Some(code) = code else {
            return Ok(Found::Not(Unusable::Unknown));
        };
        let now = now_millis();
        if let CodeState::Active { session, .. } = self.0.store.link_state(code.hash(), now).await?
            && self.0.store.devices(session).await?.len() >= self.0.max_devices
        {
            return Ok(Found::Not(Unusable::TooManyDevices));
        }
        let session = match found(self.0.store.spend_link(code.hash(), now).await?) {
            Found::Live(session) => session,
            Found::Not(why) => return Ok(Found::Not(why)),
        };
        self.0.linking.record(session, None);
        // The pages that show the code now show it was used.
        self.0.hub.publish(session, SessionEvent::LinkChanged);
        let device = DeviceId::generate();
        let added = self
            .0
            .store
            .add_device(session, device, mine.kind.name(), now, self.0.max_devices)
            .await?;
        if added == AddedDevice::Full {
            return Ok(Found::Not(Unusable::TooManyDevices));
        }
        self.0.hub.publish(session, SessionEvent::Joined(device));
        self.0.hub.publish(session, SessionEvent::DevicesChanged);
        if session != mine.id {
            self.end(mine.id, Ending::Forget).await?;
        }
        tracing::info!("a browser joined a session with a one-time code, as a new device");
        Ok(Found::Live(Who { session, device }))
    }
}
