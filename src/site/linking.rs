//! "Use on another device": a one-time code carries a session to another browser.
//!
//! The session that makes a code is the one the other browser joins: that browser becomes a new
//! device of it, with a device id of its own (never a copy of the other browser's cookie), so
//! both are one session, in sync as two tabs are, and either can sign the other out. Nothing
//! changes until the other browser confirms (a link preview that only fetches the page does
//! nothing); the confirm spends the code atomically, and that browser's own session is forgotten
//! as "forget me" forgets one. A session has at most `--max-devices`.
//!
//! Guessing is hopeless by the numbers, and no stranger can spend anyone else's allowance. A
//! code has 59 random bits (see `crate::link`) and lives `--link-ttl` (10 minutes). Each client
//! address (an IPv6 client by its /64) may look up [`ATTEMPTS_PER_ADDRESS`] codes per 10
//! minutes, right or wrong; there is no budget for the whole server, so a flood of wrong guesses
//! from many addresses refuses nobody else's correct code. A wrong guess names no code (59 bits
//! leave nothing to be near), so the limit per code counts what can be counted: a live code may
//! be looked at or used [`LOOKS_PER_CODE`] times, then it dies, so a code that was seen by
//! others (over a shoulder, in a screenshot) cannot be tried at leisure.
//!
//! With as many as 10,000 codes alive at once, one guess finds one with a chance of
//! 10,000 / 2^59.45 = 1.4e-14. Each address gets 2,880 guesses a day; an attacker with 100,000
//! addresses (or /64s) guessing at the limit all year makes 1.05e11 guesses and finds one code
//! with a chance of 1 in 680 (1.5e-3), and one with 1,000 addresses a chance of 1.5e-5.
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
use crate::metrics::Limit;
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

/// Times one live code may be looked at or used (on one instance) before it is cancelled.
pub const LOOKS_PER_CODE: u32 = 10;

/// The buckets of the limits above, and the live codes this instance made (for the settings
/// page, which shows a live code without a query).
pub(super) struct Linking {
    /// How long a code lives (`--link-ttl`).
    pub ttl: Duration,
    made_per_session: RateLimiter<SessionId>,
    made_per_address: RateLimiter<IpAddr>,
    tried_per_address: RateLimiter<IpAddr>,
    looks: Mutex<Looks>,
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
            looks: Mutex::default(),
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

    /// Replaces everything recorded by `live`, every live code the database has: after this
    /// instance missed notices (its listening connection dropped), what it remembered may be
    /// wrong both ways.
    pub fn record_all(&self, live: Vec<(SessionId, Millis)>) {
        let mut remembered = self.live.lock();
        *remembered = live.into_iter().collect();
        self.live_count.store(remembered.len(), Ordering::Relaxed);
    }

    /// Records `now` in place of `was` for `session`'s code, unless something else was recorded
    /// meanwhile (a notice heard while the database was asked is newer than its answer).
    fn correct(&self, session: SessionId, was: Millis, now: Option<Millis>) {
        let mut live = self.live.lock();
        if live.get(&session) == Some(&was) {
            match now {
                Some(at) => live.insert(session, at),
                None => live.remove(&session),
            };
        }
        self.live_count.store(live.len(), Ordering::Relaxed);
    }

    /// Takes a lookup from the address's allowance.
    fn attempt(&self, from: IpAddr) -> Result<(), Limited> {
        self.tried_per_address
            .take(from)
            .map_err(Limited::counted(Limit::Link))
    }
}

/// How many times each live code was looked at here: [`LOOKS_PER_CODE`] at most. Entries of
/// expired codes are swept when the map has doubled since the last sweep, so the cost per look
/// stays constant however many codes there are.
#[derive(Default)]
struct Looks {
    counts: HashMap<String, (u32, Millis)>,
    swept_at_len: usize,
}

impl Looks {
    /// Counts one look at the live code `hash` (expiring at `expires_at`); whether it may
    /// still be used.
    fn look(&mut self, hash: &str, expires_at: Millis) -> bool {
        if self.counts.len() > (2 * self.swept_at_len).max(64) {
            let now = now_millis();
            self.counts.retain(|_, (_, at)| *at > now);
            self.swept_at_len = self.counts.len();
        }
        let (count, _) = self
            .counts
            .entry(hash.to_owned())
            .or_insert((0, expires_at));
        *count += 1;
        *count <= LOOKS_PER_CODE
    }
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
    /// When `session`'s live code (made here, or heard of) expires, as this instance remembers
    /// it; `None` for most, without taking a lock while no code is live. What a page shows goes
    /// by [`Site::live_link`].
    pub fn link_expires(&self, session: SessionId) -> Option<Millis> {
        self.0.linking.expires(session)
    }

    /// When `session`'s live code expires, for a settings page about to show it (static or
    /// live). Without a code in memory the answer is `None`, without a query: the usual case.
    /// With one, on a database other instances share, the database is asked too: the code may
    /// have been used or cancelled on another instance a moment ago, before its notice came, and
    /// a page must not offer a spent code beside the device it added. The answer corrects
    /// memory. (A code made on another instance is shown by the page its maker is sent to, which
    /// reads it from the database: [`Site::owns_live_link`].)
    pub async fn live_link(&self, session: SessionId) -> Result<Option<Millis>, StoreError> {
        let Some(remembered) = self.0.linking.expires(session) else {
            return Ok(None);
        };
        if !self.0.store.is_shared() {
            return Ok(Some(remembered));
        }
        let live = self.0.store.active_link(session, now_millis()).await?;
        if live != Some(remembered) {
            self.0.linking.correct(session, remembered, live);
        }
        Ok(live)
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
        .map_err(Limited::counted(Limit::Link))?;
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

    /// When `code` expires, if it is `session`'s own and live (to show it on its settings page
    /// again). Read from the database, so a code made on another instance a moment ago is shown
    /// too; this instance remembers it from then on, as if it had heard its notice.
    pub async fn owns_live_link(
        &self,
        session: SessionId,
        code: &Code,
    ) -> Result<Option<Millis>, StoreError> {
        let state = self.0.store.link_state(code.hash(), now_millis()).await?;
        match state {
            CodeState::Active {
                session: owner,
                expires_at,
            } if owner == session => {
                if self.0.linking.expires(session) != Some(expires_at) {
                    self.0.linking.record(session, Some(expires_at));
                }
                Ok(Some(expires_at))
            }
            _ => Ok(None),
        }
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
        if let Some(why) = self.looked_too_often(code, state).await? {
            return Ok(Found::Not(why));
        }
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

    /// Counts a look at `code`, in `state`: past [`LOOKS_PER_CODE`] a live code is cancelled
    /// (its maker's pages show it is gone) and this says why it no longer works.
    async fn looked_too_often(
        &self,
        code: &Code,
        state: CodeState,
    ) -> Result<Option<Unusable>, StoreError> {
        let CodeState::Active {
            session,
            expires_at,
        } = state
        else {
            return Ok(None);
        };
        if self.0.linking.looks.lock().look(&code.hash(), expires_at) {
            return Ok(None);
        }
        self.cancel_link(session).await?;
        tracing::info!("a one-time code was looked at too many times and was cancelled");
        Ok(Some(Unusable::LookedAtTooOften))
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
        let state = self.0.store.link_state(code.hash(), now).await?;
        if let Some(why) = self.looked_too_often(code, state).await? {
            return Ok(Found::Not(why));
        }
        if let CodeState::Active { session, .. } = state
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
