//! The chat, as both transports use it: posting a message (once per nonce, within the rate
//! limits), a page of it, and catching a live page up with what it missed.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::account::Ending;
use super::limits::RateLimiter;
use super::room::{CatchUp, RenderedMessage};
use super::{Site, Via};
use crate::chat::{Message, MessageBody, RECENT_MESSAGES, new_nonce};
use crate::clock::now_millis;
use crate::limit::RateLimit;
use crate::metrics::{Limit, Refusal, metrics};
use crate::refusals::refused;
use crate::session::{Session, SessionId};
use crate::settings::FieldError;
use crate::store::StoreError;
use crate::views;

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
pub(super) struct ChatLimiters {
    per_session: RateLimiter<SessionId>,
    per_address: RateLimiter<IpAddr>,
    room: RateLimiter<()>,
}

impl ChatLimiters {
    /// Full buckets for `limits`.
    pub(super) fn new(limits: ChatLimits) -> ChatLimiters {
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
        let refused =
            |limit: Limit, rate: RateLimit, wait| (views::chat_too_fast(limit, rate, wait), limit);
        if let Err(wait) = self.per_session.try_acquire(author, now) {
            return Err(refused(Limit::Chat, self.per_session.limit(), wait));
        }
        if let Err(wait) = self.per_address.try_acquire(from, now) {
            self.per_session.refund(author);
            return Err(refused(Limit::ChatAddress, self.per_address.limit(), wait));
        }
        if let Err(wait) = self.room.try_acquire((), now) {
            self.per_session.refund(author);
            self.per_address.refund(from);
            return Err(refused(Limit::ChatRoom, self.room.limit(), wait));
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

/// A page of the chat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatPage {
    /// Its messages, oldest first.
    pub messages: Vec<Message>,
    /// The id an older page starts before, when there are older messages.
    pub older: Option<i64>,
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
    /// The author's session was forgotten, or its device signed out, meanwhile (in another tab,
    /// on another device or instance): nothing was stored, and the page starts over.
    #[error("this browser's session ended")]
    Ended,
    /// The database failed; nothing was stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a live page missed of the chat, after its newest message.
pub enum Missed {
    /// These, from the room's log, rendered (possibly none).
    Logged(Vec<Arc<RenderedMessage>>),
    /// These, from the database: the page is older than the log.
    Stored(Vec<Message>),
    /// More than the page is sent one by one: it needs a whole render.
    TooMany,
}

impl Site {
    /// Posts a chat message for `author` (whose request came `from` an address), once per
    /// `nonce`, and tells every chat page. The stored message, or `None` for a live page's
    /// resend that was acknowledged before (nothing done).
    ///
    /// A form post returns once the room holds the message, so the page it redirects to shows
    /// it. A live page's returns once it is stored: the caller acknowledges it, then calls
    /// [`Site::announce`], so the acknowledgement waits for the commit only.
    pub async fn post_message(
        &self,
        session: Session,
        from: IpAddr,
        body: &str,
        nonce: &str,
        via: Via<'_>,
    ) -> Result<Option<Message>, PostError> {
        let author = session.id;
        if via.acked_before(self, author) {
            return Ok(None);
        }
        if self.is_signed_out(session.device) || self.is_forgotten(author) {
            return Err(PostError::Ended);
        }
        let body = MessageBody::parse(body).map_err(PostError::Invalid)?;
        let nonce = if (1..=64).contains(&nonce.len()) {
            nonce.to_owned()
        } else {
            new_nonce()
        };
        let limits = &self.0.chat_limits;
        if let Err((error, limit)) = limits.try_acquire(author, from) {
            match limit {
                Limit::ChatAddress => tracing::debug!("chat rate limit reached by an address"),
                Limit::ChatRoom => tracing::debug!("chat rate limit reached by the whole room"),
                _ => tracing::debug!("chat rate limit reached by a session"),
            }
            metrics().rate_limited(limit);
            refused(Refusal::ChatLimit);
            return Err(PostError::TooFast(error));
        }
        let posted = match self
            .0
            .store
            .post_message(author, body, nonce, now_millis())
            .await
        {
            Ok(posted) => posted,
            Err(StoreError::AuthorForgotten) => {
                limits.refund(author, from);
                // Forgotten in the database before this instance heard of it.
                self.end(author, Ending::Found).await?;
                return Err(PostError::Ended);
            }
            Err(e) => {
                limits.refund(author, from);
                return Err(e.into());
            }
        };
        if posted.duplicate {
            limits.refund(author, from);
        } else {
            metrics().chat_message_posted();
        }
        via.record_ack(self, author);
        // The room reads what is new (one query, whatever the number of open pages). Even after
        // a duplicate: the first try may have been stored without anyone being told (its
        // answer lost with a dropped database connection).
        if let Via::Form = via {
            self.announce(posted.message.clone()).await;
        }
        Ok(Some(posted.message))
    }

    /// Makes sure the room has `message` (just stored here) and sent it to every chat page: no
    /// query when it is the next one the room expects, else one, whatever the number of open
    /// pages. A failed read is left to the room's reader, which tries again.
    pub async fn announce(&self, message: Message) {
        if let Err(e) = self.0.room.take_posted(&self.0.store, message).await {
            tracing::warn!(error = %e, "the chat room could not read a new message yet");
            self.0.room.wake();
        }
    }

    /// Makes sure the room's log holds message `id`, which its poster was told was posted
    /// (perhaps on another instance, whose notification has not arrived yet): a read of what is
    /// new when the log is behind, nothing when it is not.
    pub async fn show_posted(&self, id: i64) -> Result<(), StoreError> {
        self.0.room.catch_up_to(&self.0.store, id).await
    }

    /// A page of the chat: the newest [`RECENT_MESSAGES`] (`before` is `None`; from the room's
    /// log when it holds them) or the [`RECENT_MESSAGES`] before message `before` (an older page,
    /// from the database), oldest first, and the id to ask for the page before it, when there is
    /// one.
    pub async fn chat_page(&self, before: Option<i64>) -> Result<ChatPage, StoreError> {
        let one_more = RECENT_MESSAGES + 1;
        let mut messages = match before {
            None => match self.0.room.recent(one_more) {
                Some(messages) => messages,
                None => self.0.store.recent_messages(one_more).await?,
            },
            Some(before) => self.0.store.messages_before(before, one_more).await?,
        };
        let older = if messages.len() == one_more {
            messages.remove(0);
            messages.first().map(|m| m.id)
        } else {
            None
        };
        Ok(ChatPage { messages, older })
    }

    /// What a live page whose newest message is `last` missed: from the room's log when it
    /// reaches back that far, else from the database, up to `most` messages (past that, the
    /// page needs a whole render).
    pub async fn catch_up(&self, last: i64, most: usize) -> Result<Missed, StoreError> {
        if let CatchUp::Logged(missed) = self.0.room.after(last) {
            return Ok(Missed::Logged(missed));
        }
        let missed = self.0.store.messages_after(last, most).await?;
        Ok(if missed.len() >= most {
            Missed::TooMany
        } else {
            Missed::Stored(missed)
        })
    }
}
