//! Saving a session's settings: the upsert that makes the row when there is none, and the save of
//! a row that exists ([`NewRow::Refuse`]), on whichever backend the store has.

use super::{Backend, PageChange, Saved, Store, StoreError};
use crate::clock::Millis;
use crate::session::SessionId;
use crate::settings::SettingsChange;

/// Whether a save may make the session's row when it has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewRow {
    /// It may: the row is made (unless the id was forgotten).
    Make,
    /// It may not: [`Saved::NoRow`] when there is none, and nothing is written. A session that
    /// saved before is so saved in one write, with no read before it to learn whether this save
    /// would be its first; only a first save needs a second call, to make the row.
    Refuse,
}

impl Store {
    /// Applies `change` to session `id`'s row, creating the row if needed, in one transaction,
    /// and marks it used at `now`. Returns the row as committed ([`Saved::Applied`]), or
    /// [`Saved::Forgotten`] when the session was forgotten: its id is never written again.
    pub async fn save(
        &self,
        id: SessionId,
        change: SettingsChange,
        now: Millis,
    ) -> Result<Saved, StoreError> {
        self.save_change(id, change, now, None, NewRow::Make).await
    }

    /// Like [`Store::save`], for a change a live page sent: applied only if that page has not had
    /// a change of this number (or a later one) applied before ([`Saved::Replayed`] otherwise).
    pub async fn save_from_page(
        &self,
        id: SessionId,
        change: SettingsChange,
        now: Millis,
        from: PageChange,
    ) -> Result<Saved, StoreError> {
        self.save_change(id, change, now, Some(from), NewRow::Make)
            .await
    }

    /// [`Store::save`] (or [`Store::save_from_page`], with `from`), making the row when there is
    /// none only with [`NewRow::Make`].
    pub async fn save_change(
        &self,
        id: SessionId,
        change: SettingsChange,
        now: Millis,
        from: Option<PageChange>,
        new_row: NewRow,
    ) -> Result<Saved, StoreError> {
        let saved = self
            .timed(async {
                match &self.backend {
                    Backend::Sqlite(s) => s.save(id, change, now, from, new_row).await,
                    // PostgreSQL saves in one statement that makes the row when there is none: the
                    // row is looked for first (in the cache when it is there).
                    Backend::Postgres(_)
                        if new_row == NewRow::Refuse && self.load(id).await?.is_none() =>
                    {
                        Ok(Saved::NoRow)
                    }
                    Backend::Postgres(s) => s.save(id, change, now, from).await,
                }
            })
            .await;
        self.wrote_rows([id]);
        saved
    }
}
