//! What every request shares, whichever way it arrives: a page view, a form post or a live
//! socket. The HTTP handlers (`http`) and the live layer (`live`) are two transports over the same
//! operations, kept here so the rules are written once: which session a cookie names (forgotten
//! ones refused), what a page view reads and when it may write, how a chat message is posted.
//!
//! It also owns the runtime state those rules need: the forgotten ids, the chat's rate limiters,
//! the hub, the chat room's log of rendered messages ([`room`]), who has the chat open
//! ([`presence`]), the cache of rendered settings pages.

mod client;
pub mod forgotten;
mod limits;
pub mod linking;
pub mod presence;
pub mod room;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::http::HeaderMap;

pub use client::ClientAddr;
pub use forgotten::Forgotten;
pub use limits::{RateLimit, RateLimiter, acquire_both, rate_limited_message};

use crate::chat::{Message, MessageBody, RECENT_MESSAGES, new_nonce};
use crate::clock::{now_millis, whole_seconds};
use crate::hub::{Hub, SessionEvent};
use crate::metrics::{Limit, metrics};
use crate::retention::Retention;
use crate::session::{CookieCheck, Keys, Session, SessionId, Verdict};
use crate::settings::{FieldError, Settings};
use crate::store::{SessionData, Store, StoreError};
use crate::views::PageCache;

/// The site: one pointer, so the clone axum makes for every request is a reference count.
#[derive(Clone)]
pub struct Site(Arc<Parts>);

/// The parts of a [`Site`].
pub struct Parts {
    /// Where everything is kept.
    pub store: Store,
    /// Signs session cookies and derives CSRF tokens.
    pub keys: Keys,
    /// When rows go stale, and how often reads may write.
    pub retention: Retention,
    /// Carries changes between the sockets of a session, and chat messages to every chat page.
    pub hub: Arc<Hub>,
    /// How fast each browser, each client address and the room may send chat messages.
    pub chat_limits: ChatLimiters,
    /// Sessions deleted by "forget me", refused from now on.
    pub forgotten: Forgotten,
    /// How often each client address may ask to be forgotten.
    pub forget_limit: RateLimiter<IpAddr>,
    /// How often each browser, and each client address, may download its data.
    pub export_limits: ExportLimiters,
    /// Rendered settings pages of recent visitors.
    pub pages: PageCache,
    /// The chat's newest messages, rendered once, and the channel to every chat page.
    pub room: Arc<room::Room>,
    /// Who has the chat open, here and on the other instances.
    pub presence: Arc<presence::Presence>,
    /// One-time codes for other devices: their limits and the live ones made here.
    pub linking: linking::Linking,
}

impl Site {
    /// Shares `parts` with every request.
    pub fn new(parts: Parts) -> Site {
        Site(Arc::new(parts))
    }
}

impl std::ops::Deref for Site {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

/// The chat's rate limits (`--message-burst`, `--message-burst-per-ip`, `--room-message-burst`,
/// all per `--message-window`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatLimits {
    /// Per browser.
    pub per_session: RateLimit,
    /// Per client address, however many browsers it uses.
    pub per_address: RateLimit,
    /// For the whole room.
    pub room: RateLimit,
}

/// The buckets behind [`ChatLimits`]. A message takes a token from each, in that order; one that
/// is refused, resent or not stored gives back what it took.
pub struct ChatLimiters {
    per_session: RateLimiter<SessionId>,
    per_address: RateLimiter<IpAddr>,
    room: RateLimiter<()>,
}

impl ChatLimiters {
    /// Full buckets for `limits`.
    pub fn new(limits: ChatLimits) -> ChatLimiters {
        ChatLimiters {
            per_session: RateLimiter::new(limits.per_session),
            per_address: RateLimiter::new(limits.per_address),
            room: RateLimiter::new(limits.room),
        }
    }

    /// Takes a message's worth for `author` at `from`, or the sentence for the author and the
    /// limit that refused it.
    fn try_acquire(&self, author: SessionId, from: IpAddr) -> Result<(), (FieldError, Limit)> {
        let now = Instant::now();
        if let Err(wait) = self.per_session.try_acquire(author, now) {
            let limit = self.per_session.limit();
            return Err((rate_limited_message(wait, limit), Limit::Chat));
        }
        if let Err(wait) = self.per_address.try_acquire(from, now) {
            self.per_session.refund(author);
            let limit = self.per_address.limit();
            let error = FieldError::new(
                "Message",
                format!(
                    "was not sent: {} messages every {} may come from one network, and yours \
                     has sent them; try again in {} s",
                    limit.burst,
                    humantime::format_duration(limit.window),
                    whole_seconds(wait)
                ),
            );
            return Err((error, Limit::ChatAddress));
        }
        if let Err(wait) = self.room.try_acquire((), now) {
            self.per_session.refund(author);
            self.per_address.refund(from);
            let error = FieldError::new(
                "Message",
                format!(
                    "was not sent: the room is taking too many messages right now; try again \
                     in {} s",
                    whole_seconds(wait)
                ),
            );
            return Err((error, Limit::ChatRoom));
        }
        Ok(())
    }

    /// Gives back a message's worth, for one that was a resend or was not stored.
    fn refund(&self, author: SessionId, from: IpAddr) {
        self.per_session.refund(author);
        self.per_address.refund(from);
        self.room.refund(());
    }
}

/// How often one client address may ask to be forgotten: 10 times in 10 minutes.
pub const FORGET_LIMIT: RateLimit = RateLimit {
    burst: 10,
    window: std::time::Duration::from_secs(600),
};

/// How often one browser may download its data ("Download my data").
pub const EXPORT_LIMIT_PER_SESSION: RateLimit = RateLimit {
    burst: 5,
    window: std::time::Duration::from_secs(600),
};

/// How often one client address may, however many browsers it uses.
pub const EXPORT_LIMIT_PER_ADDRESS: RateLimit = RateLimit {
    burst: 30,
    window: std::time::Duration::from_secs(600),
};

/// The buckets behind [`EXPORT_LIMIT_PER_SESSION`] and [`EXPORT_LIMIT_PER_ADDRESS`].
pub struct ExportLimiters {
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

/// A page of the chat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatPage {
    /// Its messages, oldest first.
    pub messages: Vec<Message>,
    /// The id an older page starts before, when there are older messages.
    pub older: Option<i64>,
}

/// Why a rate-limited request ("forget me", "Download my data") did nothing.
#[derive(Debug, thiserror::Error)]
pub enum Limited {
    /// Asked too often (by this address, or this browser); it may again after this long.
    #[error("too many requests like this one")]
    TooFast(std::time::Duration),
    /// The database failed; nothing was done.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a post waits for once its message is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// Until the room holds it, so the poster's next page view shows it: a form post, answered
    /// with a redirect to the chat.
    OnTheNextPage,
    /// Nothing more: the caller answers first, then calls [`Site::announce`]. A live page's
    /// acknowledgement then waits for the commit only, not for the room's read; the page gets
    /// its message from the room like every other page.
    AfterTheAnswer,
}

/// Why a chat message was not posted.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// The body is empty, too long or has control characters: the author should see why.
    #[error("{0}")]
    Invalid(FieldError),
    /// The author is over the rate limit: the author should see how long to wait.
    #[error("{0}")]
    TooFast(FieldError),
    /// The database failed; nothing was stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Site {
    /// The session a request's cookie names, with forgotten sessions treated as invalid, and
    /// the cookie's value when it can be re-issued as it is (see [`Keys::verify_cookie`]). Of
    /// several valid session cookies, the first whose session has saved settings wins (else the
    /// first): a stray cookie never hides a browser's data. One cookie costs no lookup.
    pub async fn verify_session(&self, headers: &HeaderMap) -> CookieCheck {
        let check = self.keys.verify_cookie(headers);
        if !check.more_valid {
            return self.unless_forgotten(check);
        }
        let candidates: Vec<CookieCheck> = self
            .keys
            .valid_cookies(headers)
            .into_iter()
            .map(|check| self.unless_forgotten(check))
            .filter(|check| check.verdict.id().is_some())
            .collect();
        for candidate in &candidates {
            if let Some(id) = candidate.verdict.id()
                && let Ok(Some(_)) = self.store.load(id).await
            {
                return candidate.clone();
            }
        }
        candidates
            .into_iter()
            .next()
            .unwrap_or_else(|| self.unless_forgotten(check))
    }

    /// `check`, or an invalid cookie when it names a forgotten session.
    fn unless_forgotten(&self, check: CookieCheck) -> CookieCheck {
        match check.verdict.id() {
            Some(id) if self.forgotten.contains(id) => CookieCheck {
                verdict: Verdict::Invalid,
                current_value: None,
                more_valid: false,
            },
            _ => check,
        }
    }

    /// The settings to show to `session` and their version (defaults and 0 without a row): one
    /// lookup, and a write only when `read_at` is older than the touch window. A new session has
    /// no row, so it costs nothing at all.
    ///
    /// When a touch is due, what is shown is what the touch returned: a row pruned between the
    /// lookup and the touch is shown as gone, never as data that no longer exists.
    pub async fn settings_for(&self, session: Session) -> Result<(Settings, i64), StoreError> {
        if session.is_new {
            return Ok((Settings::default(), 0));
        }
        let Some(mut stored) = self.store.load(session.id).await? else {
            return Ok((Settings::default(), 0));
        };
        let now = now_millis();
        if stored.read_at < self.retention.touch_before(now) {
            metrics().touched();
            match self.store.touch(session.id, now).await {
                Ok(Some(touched)) => stored = touched,
                Ok(None) => return Ok((Settings::default(), 0)),
                // A page view only reads: when the database takes no writes (a full disk,
                // read-only storage, the file gone), the row read is shown, and the touch is due
                // again on the next view.
                Err(e) => {
                    metrics().database_error(&e);
                    tracing::warn!(error = %e, "a page view could not touch its session");
                }
            }
        } else {
            metrics().touch_skipped();
        }
        Ok((stored.settings, stored.version))
    }

    /// Posts a chat message for `author` (whose request came `from` an address), once per
    /// `nonce`, and tells every chat page; returns once it is stored and `shown` holds.
    pub async fn post_message(
        &self,
        author: SessionId,
        from: IpAddr,
        body: &str,
        nonce: &str,
        shown: Shown,
    ) -> Result<Message, PostError> {
        let body = MessageBody::parse(body).map_err(PostError::Invalid)?;
        let nonce = if (1..=64).contains(&nonce.len()) {
            nonce.to_owned()
        } else {
            new_nonce()
        };
        if let Err((error, limit)) = self.chat_limits.try_acquire(author, from) {
            match limit {
                Limit::ChatAddress => tracing::info!("chat rate limit reached by an address"),
                Limit::ChatRoom => tracing::info!("chat rate limit reached by the whole room"),
                _ => tracing::info!("chat rate limit reached by a session"),
            }
            metrics().rate_limited(limit);
            return Err(PostError::TooFast(error));
        }
        let posted = match self
            .store
            .post_message(author, body, nonce, now_millis())
            .await
        {
            Ok(posted) => posted,
            Err(e) => {
                self.chat_limits.refund(author, from);
                return Err(e.into());
            }
        };
        if posted.duplicate {
            self.chat_limits.refund(author, from);
        } else {
            metrics().chat_message_posted();
        }
        // The room reads what is new (one query, whatever the number of open pages). Even after
        // a duplicate: the first try may have been stored without anyone being told (its
        // answer lost with a dropped database connection).
        if shown == Shown::OnTheNextPage {
            self.announce(posted.message.id).await;
        }
        Ok(posted.message)
    }

    /// Makes sure the room has read message `id` (just stored here) and sent it to every chat
    /// page: one query, whatever the number of open pages. A failed read is left to the room's
    /// reader, which tries again.
    pub async fn announce(&self, id: i64) {
        if let Err(e) = self.room.catch_up_to(&self.store, id).await {
            tracing::warn!(error = %e, "the chat room could not read a new message yet");
            self.room.wake();
        }
    }

    /// A page of the chat: the newest [`RECENT_MESSAGES`] (`before` is `None`; from the room's
    /// log when it holds them) or the [`RECENT_MESSAGES`] before message `before` (an older page,
    /// from the database), oldest first, and the id to ask for the page before it, when there is
    /// one.
    pub async fn chat_page(&self, before: Option<i64>) -> Result<ChatPage, StoreError> {
        let one_more = RECENT_MESSAGES + 1;
        let mut messages = match before {
            None => match self.room.recent(one_more) {
                Some(messages) => messages,
                None => self.store.recent_messages(one_more).await?,
            },
            Some(before) => self.store.messages_before(before, one_more).await?,
        };
        let older = if messages.len() == one_more {
            messages.remove(0);
            messages.first().map(|m| m.id)
        } else {
            None
        };
        Ok(ChatPage { messages, older })
    }

    /// "Forget me": deletes session `id`'s settings, refuses its cookie from now on, and tells
    /// its open pages to reload into a new session.
    ///
    /// Only an id that had something to forget (settings or messages) is remembered, and each
    /// client address may ask [`FORGET_LIMIT`] times: "forget me" of fresh sessions in a loop
    /// grows nothing.
    pub async fn forget(&self, id: SessionId, from: IpAddr) -> Result<(), Limited> {
        if let Err(wait) = self.forget_limit.try_acquire(from, Instant::now()) {
            metrics().rate_limited(Limit::Forget);
            return Err(Limited::TooFast(wait));
        }
        let now = now_millis();
        if self.store.forget(id, now).await? {
            self.forgotten.insert(id, now);
        }
        self.hub.publish(id, SessionEvent::Forgotten);
        tracing::info!("a browser asked to be forgotten; its settings were deleted");
        Ok(())
    }

    /// "Sign out everywhere else": session `id`'s data moves to a new id (returned: this
    /// browser's new cookie), the old id is forgotten, and every page still on it, on every
    /// device and instance, reloads into a fresh session. Counts against the address's "forget
    /// me" allowance ([`FORGET_LIMIT`]).
    pub async fn sign_out_elsewhere(
        &self,
        id: SessionId,
        from: IpAddr,
    ) -> Result<SessionId, Limited> {
        if let Err(wait) = self.forget_limit.try_acquire(from, Instant::now()) {
            metrics().rate_limited(Limit::Forget);
            return Err(Limited::TooFast(wait));
        }
        let (new, now) = (SessionId::generate(), now_millis());
        if self.store.move_session(id, new, now).await? {
            self.forgotten.insert(id, now);
        }
        self.hub.publish(id, SessionEvent::Forgotten);
        // The room's log names authors by id: read it again, so "(you)" follows the move.
        if let Err(e) = self.room.load(&self.store).await {
            tracing::warn!(error = %e, "the chat room could not be read again after a move");
        }
        tracing::info!("a browser signed out everywhere else; its session moved to a new id");
        Ok(new)
    }

    /// Everything kept of session `id` ("Download my data"), for a request `from` an address;
    /// refused past [`EXPORT_LIMIT_PER_SESSION`] or [`EXPORT_LIMIT_PER_ADDRESS`].
    pub async fn export(&self, id: SessionId, from: IpAddr) -> Result<SessionData, Limited> {
        let limits = &self.export_limits;
        acquire_both(&limits.per_session, id, &limits.per_address, from).map_err(|wait| {
            metrics().rate_limited(Limit::Export);
            Limited::TooFast(wait)
        })?;
        Ok(self.store.session_data(id).await?)
    }

    /// A save found session `id` forgotten (in another tab, or on another instance) before this
    /// instance heard of it: from now on its cookie is refused here too.
    pub fn found_forgotten(&self, id: SessionId) {
        self.forgotten.insert(id, now_millis());
    }
}
