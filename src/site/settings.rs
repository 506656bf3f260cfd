//! A session's settings, as both transports read and save them: one lookup per page view (a
//! write only when the touch window says so), and one save, whether a form post or a live page
//! sends the change.

use std::net::IpAddr;
use std::time::Instant;

use super::account::Ending;
use super::{Site, Via};
use crate::clock::now_millis;
use crate::hub::{ChangedBy, SessionEvent};
use crate::metrics::{Limit, WritePath, metrics};
use crate::session::{Session, SessionId};
use crate::settings::{FieldError, Settings, SettingsChange, SettingsErrors, SettingsInput};
use crate::store::{NewRow, PageChange, Saved, StoreError};

/// What [`Site::save_settings`] did with the valid fields of a change; the refused ones come
/// with it, as [`SettingsErrors`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveOutcome {
    /// Written: the settings as they are now, and their version.
    Written(Settings, i64),
    /// No field was valid: nothing to write.
    Nothing,
    /// This very change was written before (a live page's resend): nothing changed.
    Replayed,
    /// The session was forgotten meanwhile (in another tab, or on another instance): nothing
    /// was written under the dead id, its cookie is refused from now on, and its pages reload.
    Forgotten,
    /// The session has nothing saved yet and its client address saved too many new sessions
    /// lately (`--new-sessions-per-ip`): nothing was written; the errors say so, next to the
    /// name, and how long to wait.
    TooManyNew,
    /// The session has nothing saved yet and free disk space is under `--min-free-disk`:
    /// nothing was written; the errors say so, next to the name.
    NoRoom,
}

impl Site {
    /// The settings to show to `session` and their version (defaults and 0 without a row): one
    /// lookup, and a write only when `read_at` is older than the touch window. A new session has
    /// no row, so it costs nothing at all.
    ///
    /// When a touch is due, what is shown is what the touch returned: a row pruned between the
    /// lookup and the touch is shown as gone, never as data that no longer exists.
    pub async fn settings_for(&self, session: Session) -> Result<(Settings, i64), StoreError> {
        self.read_settings(session, false).await
    }

    /// [`Site::settings_for`], for an HTTP request that [`Site::verify_session`] checked just
    /// now: on a shared database that check read the session's row in the same round trip, and
    /// the page takes it (see `Store::load_checked`). Not for a live socket, whose reads come
    /// long after its upgrade was checked.
    pub async fn settings_for_request(
        &self,
        session: Session,
    ) -> Result<(Settings, i64), StoreError> {
        self.read_settings(session, true).await
    }

    async fn read_settings(
        &self,
        session: Session,
        checked: bool,
    ) -> Result<(Settings, i64), StoreError> {
        if session.is_new {
            return Ok((Settings::default(), 0));
        }
        let stored = match checked {
            true => self.0.store.load_checked(session.id).await?,
            false => self.0.store.load(session.id).await?,
        };
        let Some(mut stored) = stored else {
            return Ok((Settings::default(), 0));
        };
        let now = now_millis();
        self.seen(session).await;
        if stored.read_at < self.0.retention.touch_before(now) {
            metrics().touched();
            match self.0.store.touch(session.id, now).await {
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

    /// The settings of session `id` as stored now, for a live page told they changed; the
    /// presence list shows the name they hold.
    pub async fn reread_settings(&self, id: SessionId) -> Result<(Settings, i64), StoreError> {
        let stored = self.0.store.load(id).await?.unwrap_or_default();
        self.0.presence.rename(id, &stored.settings.username);
        Ok((stored.settings, stored.version))
    }

    /// Saves the valid fields of `input` for session `id`, sent `via` a form post or a live
    /// page, in one transaction; the refused fields come back with why. After the commit the
    /// session's other pages are told (on every instance), and the chat's "Here now" shows the
    /// new name.
    pub async fn save_settings(
        &self,
        session: Session,
        input: &SettingsInput,
        from: IpAddr,
        via: Via<'_>,
    ) -> Result<(SaveOutcome, SettingsErrors), StoreError> {
        let id = session.id;
        if self.is_signed_out(session.device) {
            // Signed out from another device while this request was on its way.
            return Ok((SaveOutcome::Forgotten, SettingsErrors::default()));
        }
        let (change, mut errors) = SettingsChange::parse(input);
        if via.acked_before(self, id) {
            // Already committed: a resend after a reconnect. The fields it refused the first
            // time are refused again (checking is pure).
            return Ok((SaveOutcome::Replayed, errors));
        }
        if change.is_empty() {
            via.record_ack(self, id);
            return Ok((SaveOutcome::Nothing, errors));
        }
        let now = now_millis();
        let (page_change, path, by) = match via {
            Via::Form => (None, WritePath::Form, ChangedBy::Elsewhere),
            Via::Page {
                page,
                form,
                seq,
                socket,
            } => {
                let page_change = PageChange {
                    page: page.to_owned(),
                    form,
                    seq,
                };
                (
                    Some(page_change),
                    WritePath::Live,
                    ChangedBy::Socket(socket),
                )
            }
        };
        // A session that saved before is saved in one write. A first save makes a row that lives
        // until it goes stale: limited per address, and held back while the disk is short of
        // space.
        let mut saved = self
            .0
            .store
            .save_change(id, change.clone(), now, page_change.clone(), NewRow::Refuse)
            .await?;
        if matches!(saved, Saved::NoRow) {
            if self.0.disk.is_low() {
                errors.username = Some(FieldError::new(
                    "Nothing",
                    "was saved: the server is short of disk space, so it saves no new browsers \
                     for now. Please try again later",
                ));
                return Ok((SaveOutcome::NoRoom, errors));
            }
            if let Err(wait) = self.0.new_sessions.try_acquire(from, Instant::now()) {
                metrics().rate_limited(Limit::NewSessions);
                let minutes = wait.as_secs().div_ceil(60).max(1);
                errors.username = Some(FieldError::new(
                    "Nothing",
                    format_args!(
                        "was saved: too many new browsers from your network saved settings in \
                         the last hour. Please try again in {minutes} min"
                    ),
                ));
                return Ok((SaveOutcome::TooManyNew, errors));
            }
            saved = self
                .0
                .store
                .save_change(id, change, now, page_change, NewRow::Make)
                .await?;
        }
        let outcome = match saved {
            Saved::Applied(saved) => {
                metrics().settings_written(path);
                let version = saved.version;
                self.0
                    .hub
                    .publish(id, SessionEvent::SettingsChanged { version, by });
                self.0.presence.rename(id, &saved.settings.username);
                via.record_ack(self, id);
                // The session's first save gives its browser a device row.
                self.seen(session).await;
                SaveOutcome::Written(saved.settings, version)
            }
            // Applied before, by another instance or before a restart, and its acknowledgement
            // lost: nothing changed.
            Saved::Replayed => {
                via.record_ack(self, id);
                SaveOutcome::Replayed
            }
            Saved::Forgotten => {
                self.end(id, Ending::Found).await?;
                SaveOutcome::Forgotten
            }
            // Only a save that may not make the row finds none, and that one was followed by
            // one that may: nothing was written.
            Saved::NoRow => SaveOutcome::Nothing,
        };
        Ok((outcome, errors))
    }
}
