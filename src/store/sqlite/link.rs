//! One-time link codes on SQLite: made, cancelled and spent through the writer, so two
//! browsers spending one code are one after the other and only the first wins.

use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::clock::Millis;
use crate::session::SessionId;
use crate::store::link::KEPT_AFTER_EXPIRY;
use crate::store::{CodeState, StoreError};

/// Cancels the live codes of session `?1` at `?2`.
const CANCEL_LIVE: &str = "UPDATE link_codes SET cancelled_at = ?2
                           WHERE session_id = ?1 AND used_at IS NULL AND cancelled_at IS NULL";

impl SqliteStore {
    pub(in crate::store) async fn create_link(
        &self,
        session: SessionId,
        hash: String,
        now: Millis,
        expires_at: Millis,
    ) -> Result<(), StoreError> {
        self.writer
            .write(move |tx| {
                let key = session.to_key();
                tx.prepare_cached("DELETE FROM link_codes WHERE expires_at < ?1")?
                    .execute([now - KEPT_AFTER_EXPIRY])?;
                // One live code per session: a new one replaces the last.
                tx.prepare_cached(CANCEL_LIVE)?.execute(params![key, now])?;
                tx.prepare_cached(
                    "INSERT INTO link_codes (code_hash, session_id, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![hash, key, now, expires_at])?;
                Ok(())
            })
            .await
    }

    pub(in crate::store) async fn active_link(
        &self,
        session: SessionId,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        self.run(move |conn| {
            conn.prepare_cached(
                "SELECT max(expires_at) FROM link_codes WHERE session_id = ?1
                 AND used_at IS NULL AND cancelled_at IS NULL AND expires_at > ?2",
            )?
            .query_row(params![session.to_key(), now], |row| row.get(0))
        })
        .await
    }

    pub(in crate::store) async fn live_links(
        &self,
        now: Millis,
    ) -> Result<Vec<(SessionId, Millis)>, StoreError> {
        self.run(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT session_id, max(expires_at) FROM link_codes
                 WHERE used_at IS NULL AND cancelled_at IS NULL AND expires_at > ?1
                 GROUP BY session_id",
            )?;
            let rows = statement.query_map(params![now], |row| {
                let id: String = row.get(0)?;
                Ok((id, row.get(1)?))
            })?;
            let mut live = Vec::new();
            for row in rows {
                let (id, at) = row?;
                if let Ok(id) = id.parse() {
                    live.push((id, at));
                }
            }
            Ok(live)
        })
        .await
    }

    pub(in crate::store) async fn cancel_links(
        &self,
        session: SessionId,
        now: Millis,
    ) -> Result<usize, StoreError> {
        self.writer
            .write(move |tx| {
                tx.prepare_cached(CANCEL_LIVE)?
                    .execute(params![session.to_key(), now])
            })
            .await
    }

    pub(in crate::store) async fn link_state(
        &self,
        hash: String,
        now: Millis,
    ) -> Result<CodeState, StoreError> {
        self.run(move |conn| read_state(conn, &hash, now)).await
    }

    pub(in crate::store) async fn spend_link(
        &self,
        hash: String,
        now: Millis,
    ) -> Result<CodeState, StoreError> {
        self.writer
            .write(move |tx| {
                let state = read_state(tx, &hash, now)?;
                if let CodeState::Active { .. } = state {
                    tx.prepare_cached("UPDATE link_codes SET used_at = ?2 WHERE code_hash = ?1")?
                        .execute(params![hash, now])?;
                }
                Ok(state)
            })
            .await
    }
}

/// What code `hash` stands for at `now`; a code of a forgotten session is cancelled.
fn read_state(
    conn: &rusqlite::Connection,
    hash: &str,
    now: Millis,
) -> Result<CodeState, rusqlite::Error> {
    let row = conn
        .prepare_cached(
            "SELECT session_id, expires_at, used_at IS NOT NULL, cancelled_at IS NOT NULL,
                    EXISTS (SELECT 1 FROM forgotten f WHERE f.session_id = l.session_id)
             FROM link_codes l WHERE code_hash = ?1",
        )?
        .query_row([hash], |row| {
            let session: String = row.get(0)?;
            Ok((
                session,
                row.get::<_, Millis>(1)?,
                row.get::<_, bool>(2)?,
                row.get::<_, bool>(3)?,
                row.get::<_, bool>(4)?,
            ))
        })
        .optional()?;
    Ok(match row {
        None => CodeState::Unknown,
        Some((_, _, true, _, _)) => CodeState::Spent,
        Some((_, _, _, cancelled, forgotten)) if cancelled || forgotten => CodeState::Cancelled,
        Some((_, expires_at, ..)) if expires_at <= now => CodeState::Expired,
        Some((session, expires_at, ..)) => match session.parse() {
            Ok(session) => CodeState::Active {
                session,
                expires_at,
            },
            Err(_) => CodeState::Unknown,
        },
    })
}
