//! One-time link codes on PostgreSQL: spending takes the code's row lock (`FOR UPDATE`), so two
//! browsers spending one code on any instances are one after the other and only the first wins.

use super::{CHANNEL, NOTIFY, Param, PostgresStore};
use crate::clock::Millis;
use crate::session::SessionId;
use crate::store::link::KEPT_AFTER_EXPIRY;
use crate::store::{CodeState, StoreError};

/// Cancels the live codes of session `$1` at `$2`.
const CANCEL_LIVE: &str = "UPDATE link_codes SET cancelled_at = $2
                           WHERE session_id = $1 AND used_at IS NULL AND cancelled_at IS NULL";

/// What a code stands for, and whether its session was forgotten since.
const STATE: &str = "SELECT session_id, expires_at, used_at IS NOT NULL, cancelled_at IS NOT NULL,
                            EXISTS (SELECT 1 FROM forgotten f WHERE f.session_id = l.session_id)
                     FROM link_codes l WHERE code_hash = $1";

impl PostgresStore {
    pub(in crate::store) async fn create_link(
        &self,
        session: SessionId,
        hash: String,
        now: Millis,
        expires_at: Millis,
    ) -> Result<(), StoreError> {
        let notice = &self.link_notice(session, Some(expires_at));
        let (session, hash) = (session.as_uuid(), &hash);
        self.retry(|mut client| async move {
            let tx = client.transaction().await?;
            tx.execute(
                "DELETE FROM link_codes WHERE expires_at < $1",
                &[&(now - KEPT_AFTER_EXPIRY)],
            )
            .await?;
            // One live code per session: a new one replaces the last.
            tx.execute(CANCEL_LIVE, &[&session, &now]).await?;
            let params: [&Param<'_>; 4] = [hash, &session, &now, &expires_at];
            tx.execute(
                "INSERT INTO link_codes (code_hash, session_id, created_at, expires_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (code_hash) DO NOTHING",
                &params,
            )
            .await?;
            tx.execute(NOTIFY, &[&CHANNEL, notice]).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    pub(in crate::store) async fn active_link(
        &self,
        session: SessionId,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        let session = session.as_uuid();
        self.retry(|client| async move {
            let row = client
                .query_one(
                    "SELECT max(expires_at) FROM link_codes WHERE session_id = $1
                     AND used_at IS NULL AND cancelled_at IS NULL AND expires_at > $2",
                    &[&session, &now],
                )
                .await?;
            Ok(row.try_get(0)?)
        })
        .await
    }

    pub(in crate::store) async fn live_links(
        &self,
        now: Millis,
    ) -> Result<Vec<(SessionId, Millis)>, StoreError> {
        self.retry(|client| async move {
            let rows = client
                .query(
                    "SELECT session_id, max(expires_at) FROM link_codes
                     WHERE used_at IS NULL AND cancelled_at IS NULL AND expires_at > $1
                     GROUP BY session_id",
                    &[&now],
                )
                .await?;
            let mut live = Vec::with_capacity(rows.len());
            for row in &rows {
                live.push((SessionId::from_uuid(row.try_get(0)?), row.try_get(1)?));
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
        let notice = &self.link_notice(session, None);
        let session = session.as_uuid();
        self.retry(|mut client| async move {
            let tx = client.transaction().await?;
            let n = tx.execute(CANCEL_LIVE, &[&session, &now]).await?;
            if n > 0 {
                tx.execute(NOTIFY, &[&CHANNEL, notice]).await?;
            }
            tx.commit().await?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
        .await
    }

    pub(in crate::store) async fn link_state(
        &self,
        hash: String,
        now: Millis,
    ) -> Result<CodeState, StoreError> {
        let hash = &hash;
        self.retry(|client| async move {
            let row = client.query_opt(STATE, &[hash]).await?;
            Ok(state(row.as_ref(), now)?)
        })
        .await
    }

    pub(in crate::store) async fn spend_link(
        &self,
        hash: String,
        now: Millis,
    ) -> Result<CodeState, StoreError> {
        let hash = &hash;
        self.retry(|mut client| async move {
            let tx = client.transaction().await?;
            let row = tx
                .query_opt(&format!("{STATE} FOR UPDATE OF l"), &[hash])
                .await?;
            let found = state(row.as_ref(), now)?;
            if let CodeState::Active { session, .. } = found {
                tx.execute(
                    "UPDATE link_codes SET used_at = $2 WHERE code_hash = $1",
                    &[hash, &now],
                )
                .await?;
                let notice = self.link_notice(session, None);
                tx.execute(NOTIFY, &[&CHANNEL, &notice]).await?;
            }
            tx.commit().await?;
            Ok(found)
        })
        .await
    }
}

impl PostgresStore {
    /// The notification that `session`'s live code now expires at `expires_at` (or has none).
    fn link_notice(&self, session: SessionId, expires_at: Option<Millis>) -> String {
        format!("{}k {session} {}", self.instance, expires_at.unwrap_or(0))
    }
}

/// What a row of [`STATE`] says at `now`.
fn state(
    row: Option<&tokio_postgres::Row>,
    now: Millis,
) -> Result<CodeState, tokio_postgres::Error> {
    let Some(row) = row else {
        return Ok(CodeState::Unknown);
    };
    let expires_at: Millis = row.try_get(1)?;
    Ok(if row.try_get(2)? {
        CodeState::Spent
    } else if row.try_get::<_, bool>(3)? || row.try_get::<_, bool>(4)? {
        CodeState::Cancelled
    } else if expires_at <= now {
        CodeState::Expired
    } else {
        CodeState::Active {
            session: SessionId::from_uuid(row.try_get(0)?),
            expires_at,
        }
    })
}
