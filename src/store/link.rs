//! The store's one-time link codes ("Use on another device"), on whichever backend it has.

use super::{Backend, CodeState, Store, StoreError};
use crate::clock::Millis;
use crate::session::SessionId;

/// Link codes are deleted this long after they expired (by the next code made).
pub(in crate::store) const KEPT_AFTER_EXPIRY: Millis = 24 * 60 * 60 * 1000;

impl Store {
    /// Makes a one-time link code for `session`, known by its `hash` (the code itself is never
    /// stored), valid until `expires_at`; the session's earlier live code is cancelled.
    pub async fn create_link(
        &self,
        session: SessionId,
        hash: String,
        now: Millis,
        expires_at: Millis,
    ) -> Result<(), StoreError> {
        self.timed(async {
            on_backend!(self, s => s.create_link(session, hash, now, expires_at).await)
        })
        .await
    }

    /// When `session`'s live link code expires, if it has one.
    pub async fn active_link(
        &self,
        session: SessionId,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        on_backend!(self, s => s.active_link(session, now).await)
    }

    /// Every session with a live link code at `now`, and when its code expires (a session's
    /// newest, should it have several).
    pub async fn live_links(&self, now: Millis) -> Result<Vec<(SessionId, Millis)>, StoreError> {
        on_backend!(self, s => s.live_links(now).await)
    }

    /// Cancels `session`'s live link code; returns how many there were.
    pub async fn cancel_links(&self, session: SessionId, now: Millis) -> Result<usize, StoreError> {
        self.timed(async { on_backend!(self, s => s.cancel_links(session, now).await) })
            .await
    }

    /// What the code with `hash` stands for at `now`, changing nothing.
    pub async fn link_state(&self, hash: String, now: Millis) -> Result<CodeState, StoreError> {
        on_backend!(self, s => s.link_state(hash, now).await)
    }

    /// Spends the code with `hash`, at most once whoever races for it: [`CodeState::Active`]
    /// means this call spent it; anything else is why it could not.
    pub async fn spend_link(&self, hash: String, now: Millis) -> Result<CodeState, StoreError> {
        self.timed(async { on_backend!(self, s => s.spend_link(hash, now).await) })
            .await
    }
}
