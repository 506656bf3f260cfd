//! Pruning on PostgreSQL: each kind of row written once as a predicate, which the delete and the
//! dry run's count share. Deletes take their rows `FOR UPDATE SKIP LOCKED`: instances pruning at
//! once take different rows, and a row being written is left for the next pass (where its new
//! `read_at` keeps it).

use super::PostgresStore;
use crate::clock::Millis;
use crate::session::SessionId;
use crate::store::StoreError;
use crate::store::sql_int;

// What pruning deletes, shared by the deletes and the dry run's counts so they cannot drift.
macro_rules! stale_settings {
    () => {
        "FROM settings WHERE read_at < $1"
    };
}
macro_rules! old_messages {
    () => {
        "FROM messages WHERE created_at < $1
            OR id < coalesce((SELECT id FROM messages ORDER BY id DESC
                              LIMIT 1 OFFSET $2::bigint - 1), 0)"
    };
}
macro_rules! expired_forgotten {
    () => {
        "FROM forgotten WHERE forgotten_at < $1"
    };
}

impl PostgresStore {
    pub(in crate::store) async fn prune_page_acks(
        &self,
        before: Millis,
    ) -> Result<usize, StoreError> {
        self.execute("DELETE FROM page_acks WHERE acked_at < $1", &[&before])
            .await
    }

    pub(in crate::store) async fn prune_forgotten(
        &self,
        before: Millis,
    ) -> Result<usize, StoreError> {
        self.execute(concat!("DELETE ", expired_forgotten!()), &[&before])
            .await
    }

    pub(in crate::store) async fn prune_batch(
        &self,
        cutoff: Millis,
        limit: usize,
    ) -> Result<Vec<SessionId>, StoreError> {
        let limit = sql_int(limit);
        self.retry(|client| async move {
            // The outer condition is checked again on each locked row, so a row touched since
            // the inner scan is kept.
            let statement = client
                .prepare_cached(concat!(
                    "DELETE FROM settings WHERE session_id IN (SELECT session_id ",
                    stale_settings!(),
                    " ORDER BY read_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                     AND read_at < $1
                     RETURNING session_id"
                ))
                .await?;
            let rows = client.query(&statement, &[&cutoff, &limit]).await?;
            let mut deleted = Vec::with_capacity(rows.len());
            let mut uuids = Vec::with_capacity(rows.len());
            for row in &rows {
                let uuid: uuid::Uuid = row.try_get(0)?;
                uuids.push(uuid);
                deleted.push(SessionId::from_uuid(uuid));
            }
            if !uuids.is_empty() {
                client
                    .execute("DELETE FROM devices WHERE session_id = ANY($1)", &[&uuids])
                    .await?;
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
        // The oldest id still kept by the count limit; everything below it goes, as does
        // everything older than the retention cutoff.
        self.execute(
            concat!(
                "DELETE FROM messages WHERE id IN (SELECT id ",
                old_messages!(),
                " ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)"
            ),
            &[&created_before, &sql_int(keep_newest), &sql_int(limit)],
        )
        .await
    }

    /// How many rows [`Self::prune_batch`] would delete in all at `cutoff`; deletes nothing.
    pub(in crate::store) async fn count_stale(&self, cutoff: Millis) -> Result<usize, StoreError> {
        self.count(concat!("SELECT count(*) ", stale_settings!()), &[&cutoff])
            .await
    }

    /// How many devices [`Self::prune_devices_batch`] would sign out in all; changes nothing.
    pub(in crate::store) async fn count_idle_devices(
        &self,
        cutoff: Millis,
    ) -> Result<usize, StoreError> {
        self.count(
            "SELECT count(*) FROM devices WHERE active_at < $1",
            &[&cutoff],
        )
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
            &[&created_before, &keep],
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
            &[&before],
        )
        .await
    }
}
