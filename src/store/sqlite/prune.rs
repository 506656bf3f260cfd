//! Pruning on SQLite: each kind of row written once as a predicate, which the delete and the dry
//! run's count share, so `livesession prune --dry-run` says exactly what a pass would remove.

use rusqlite::params;

use super::SqliteStore;
use crate::clock::Millis;
use crate::session::SessionId;
use crate::store::{StoreError, sql_int};

// The rows each prune deletes, written once: a dry run counts with the very predicate the real
// run deletes with. `?1` is the cutoff; for messages, `?2` is how many of the newest are kept.
macro_rules! stale_settings {
    () => {
        "FROM settings WHERE read_at < ?1"
    };
}
macro_rules! old_messages {
    () => {
        "FROM messages WHERE created_at < ?1
            OR id < coalesce((SELECT id FROM messages ORDER BY id DESC LIMIT 1 OFFSET ?2 - 1), 0)"
    };
}
macro_rules! expired_forgotten {
    () => {
        "FROM forgotten WHERE forgotten_at < ?1"
    };
}

impl SqliteStore {
    pub(in crate::store) async fn prune_page_acks(
        &self,
        before: Millis,
    ) -> Result<usize, StoreError> {
        self.writer
            .write(move |tx| {
                tx.prepare_cached("DELETE FROM page_acks WHERE acked_at < ?1")?
                    .execute([before])
            })
            .await
    }

    pub(in crate::store) async fn prune_forgotten(
        &self,
        before: Millis,
    ) -> Result<usize, StoreError> {
        self.writer
            .write(move |conn| {
                conn.prepare_cached(concat!("DELETE ", expired_forgotten!()))?
                    .execute([before])
            })
            .await
    }

    pub(in crate::store) async fn prune_batch(
        &self,
        cutoff: Millis,
        limit: usize,
    ) -> Result<Vec<SessionId>, StoreError> {
        let limit = sql_int(limit);
        self.writer
            .write(move |tx| {
                let mut statement = tx.prepare_cached(concat!(
                    "DELETE FROM settings WHERE session_id IN (SELECT session_id ",
                    stale_settings!(),
                    " ORDER BY read_at LIMIT ?2) RETURNING session_id"
                ))?;
                let deleted = statement
                    .query_map(params![cutoff, limit], |row| row.get::<_, String>(0))?
                    .filter_map(|id| id.map(|id| id.parse().ok()).transpose())
                    .collect::<rusqlite::Result<Vec<SessionId>>>()?;
                drop(statement);
                for id in &deleted {
                    super::device::delete_devices(tx, *id)?;
                }
                Ok(deleted)
            })
            .await
    }

    pub(in crate::store) async fn prune_messages_batch(
        &self,
        created_before: Millis,
        keep_newest: usize,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let keep = sql_int(keep_newest);
        let limit = sql_int(limit);
        self.writer
            .write(move |tx| {
                // The oldest id still kept by the count limit; everything below it goes, as does
                // everything older than the retention cutoff.
                let deleted = tx
                    .prepare_cached(concat!(
                        "DELETE FROM messages WHERE id IN (SELECT id ",
                        old_messages!(),
                        " ORDER BY id LIMIT ?3)"
                    ))?
                    .execute(params![created_before, keep, limit])?;
                Ok(deleted)
            })
            .await
    }

    /// How many rows [`Self::prune_batch`] would delete in all at `cutoff`; deletes nothing.
    pub(in crate::store) async fn count_stale(&self, cutoff: Millis) -> Result<usize, StoreError> {
        self.count(concat!("SELECT count(*) ", stale_settings!()), vec![cutoff])
            .await
    }

    /// How many messages [`Self::prune_messages_batch`] would delete in all; deletes nothing.
    pub(in crate::store) async fn count_old_messages(
        &self,
        created_before: Millis,
        keep_newest: usize,
    ) -> Result<usize, StoreError> {
        let keep = sql_int(keep_newest);
        self.count(
            concat!("SELECT count(*) ", old_messages!()),
            vec![created_before, keep],
        )
        .await
    }

    /// How many ids [`Self::prune_forgotten`] would delete; deletes nothing.
    pub(in crate::store) async fn count_expired_forgotten(
        &self,
        before: Millis,
    ) -> Result<usize, StoreError> {
        self.count(
            concat!("SELECT count(*) ", expired_forgotten!()),
            vec![before],
        )
        .await
    }

    /// How many devices [`Self::prune_devices_batch`] would sign out in all; changes nothing.
    pub(in crate::store) async fn count_idle_devices(
        &self,
        cutoff: Millis,
    ) -> Result<usize, StoreError> {
        self.count(
            "SELECT count(*) FROM devices WHERE active_at < ?1",
            vec![cutoff],
        )
        .await
    }

    /// Runs a `SELECT count(*)` with `params` as `?1`, `?2`, ...
    async fn count(&self, sql: &'static str, params: Vec<i64>) -> Result<usize, StoreError> {
        self.run(move |conn| {
            conn.prepare_cached(sql)?
                .query_row(rusqlite::params_from_iter(params), |row| {
                    row.get::<_, i64>(0)
                })
        })
        .await
        .map(|n| usize::try_from(n).unwrap_or(0))
    }
}
