//! What a browser does with its own session: "forget me", "sign out everywhere else", "Download
//! my data"; and [`Site::end`], the one way a session id stops working, whichever of them (or a
//! code used on another device, or another instance) ends it.

use std::net::IpAddr;
use std::time::Duration;

use super::Site;
use super::limits::{RateLimiter, Whose, acquire_both};
use crate::clock::{Millis, now_millis};
use crate::hub::SessionEvent;
use crate::limit::RateLimit;
use crate::metrics::{Limit, metrics};
use crate::session::{Session, SessionId};
use crate::store::{SessionData, StoreError};

/// How often one client address may ask to be forgotten: 10 times in 10 minutes.
pub const FORGET_LIMIT: RateLimit = RateLimit {
    burst: 10,
    window: Duration::from_secs(600),
};

/// How often one browser may sign out every other device of its session: 10 times in 10
/// minutes. Its own allowance, so nobody else on the same network can use it up.
pub const SIGN_OUT_LIMIT: RateLimit = RateLimit {
    burst: 10,
    window: Duration::from_secs(600),
};

/// How often one browser may download its data ("Download my data").
pub const EXPORT_LIMIT_PER_SESSION: RateLimit = RateLimit {
    burst: 5,
    window: Duration::from_secs(600),
};

/// How often one client address may, however many browsers it uses.
pub const EXPORT_LIMIT_PER_ADDRESS: RateLimit = RateLimit {
    burst: 30,
    window: Duration::from_secs(600),
};

/// The buckets behind [`EXPORT_LIMIT_PER_SESSION`] and [`EXPORT_LIMIT_PER_ADDRESS`].
pub(super) struct ExportLimiters {
    per_session: RateLimiter<SessionId>,
    per_address: RateLimiter<IpAddr>,
}

impl Default for ExportLimiters {
    fn default() -> ExportLimiters {
        ExportLimiters {
            per_session: RateLimiter::new(EXPORT_LIMIT_PER_SESSION),
            per_address: RateLimiter::new(EXPORT_LIMIT_PER_ADDRESS),
        }
    }
}

/// Why a rate-limited request ("forget me", "Download my data", a one-time code) did nothing.
#[derive(Debug, thiserror::Error)]
pub enum Limited {
    /// Asked too often (by this address, or this browser: whose allowance ran out); it may
    /// again after this long.
    #[error("too many requests like this one")]
    TooFast(Duration, Whose),
    /// The database failed; nothing was done.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Limited {
    /// The refusal of a request over `limit`, counted in `livesession_rate_limited_total`:
    /// for `map_err` on what a limiter says (how long to wait, and whose allowance ran out).
    pub(super) fn counted(limit: Limit) -> impl FnOnce((Duration, Whose)) -> Limited {
        move |(wait, whose)| {
            metrics().rate_limited(limit);
            Limited::TooFast(wait, whose)
        }
    }
}

/// How a session id comes to an end (see [`Site::end`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// Its settings are deleted: "forget me", or its browser joined another session with a
    /// code.
    Forget,
    /// Another instance ended it at this time: the database has it already.
    Heard(Millis),
    /// A write found it ended in the database before this instance heard of it.
    Found,
}

impl Site {
    /// Ends session `id` as `ending` says: the database first (for [`Ending::Forget`]), then this instance refuses its cookie from now on, then its open
    /// pages are told to reload into a fresh session. Only an id that had something to forget
    /// (settings or messages) is remembered: "forget me" of fresh sessions in a loop grows
    /// nothing.
    pub(super) async fn end(&self, id: SessionId, ending: Ending) -> Result<(), StoreError> {
        let now = now_millis();
        let remember = match ending {
            Ending::Forget => self.0.store.forget(id, now).await?.then_some(now),
            Ending::Heard(at) => Some(at),
            Ending::Found => Some(now),
        };
        if let Some(at) = remember {
            self.0.forgotten.insert(id, at);
        }
        self.0.hub.publish(id, SessionEvent::Forgotten);
        Ok(())
    }

    /// Takes one of the address's [`FORGET_LIMIT`] allowance.
    fn may_forget(&self, from: IpAddr) -> Result<(), Limited> {
        self.0
            .forget_limit
            .take(from)
            .map_err(Limited::counted(Limit::Forget))
    }

    /// "Forget me": deletes session `id`'s settings, refuses its cookie from now on, and tells
    /// its open pages to reload into a new session. Each client address may ask
    /// [`FORGET_LIMIT`] times.
    pub async fn forget(&self, id: SessionId, from: IpAddr) -> Result<(), Limited> {
        self.may_forget(from)?;
        self.end(id, Ending::Forget).await?;
        tracing::info!("a browser asked to be forgotten; its settings were deleted");
        Ok(())
    }

    /// Everything kept of `session` ("Download my data"), for a request `from` an address;
    /// refused past [`EXPORT_LIMIT_PER_SESSION`] or [`EXPORT_LIMIT_PER_ADDRESS`]. A browser with
    /// no session yet has nothing kept: no lookup, no allowance taken.
    pub async fn export(&self, session: Session, from: IpAddr) -> Result<SessionData, Limited> {
        if session.is_new {
            return Ok(SessionData::default());
        }
        let limits = &self.0.export_limits;
        acquire_both(&limits.per_session, session.id, &limits.per_address, from)
            .map_err(Limited::counted(Limit::Export))?;
        Ok(self.0.store.session_data(session.id).await?)
    }
}
