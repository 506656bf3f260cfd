//! "Forget me" and "sign out everywhere else" on PostgreSQL: under the session's advisory lock,
//! so a save racing them waits and then finds the id forgotten; announced to the other instances
//! when they commit.

use super::{CHANNEL, LOCK_SESSION, NOTIFY, Param, PostgresStore};
use crate::clock::Millis;
use crate::session::SessionId;
use crate::store::StoreError;

impl PostgresStore {
    pub(in crate::store) async fn move_session(
        &self,
        from: SessionId,
        to: SessionId,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let notice = &format!("{}f {from} {now}", self.instance);
        let key = &from.to_key();
        let (old, new) = (from.as_uuid(), to.as_uuid());
        self.retry(|mut client| async move {
            let tx = client.transaction().await?;
            // The old id's lock: a save under it waits, then finds it forgotten.
            tx.execute(LOCK_SESSION, &[key]).await?;
            let moved = tx
                .execute(
                    "INSERT INTO settings
                         (session_id, username, theme, version, inserted_at, updated_at, read_at)
                     SELECT $2, username, theme, version, inserted_at, updated_at, $3
                     FROM settings WHERE session_id = $1
                     ON CONFLICT (session_id) DO NOTHING",
                    &[&old, &new, &now],
                )
                .await?;
            tx.execute("DELETE FROM settings WHERE session_id = $1", &[&old])
                .await?;
            let relinked = tx
                .execute(
                    "UPDATE messages SET author_session = $2 WHERE author_session = $1",
                    &[&old, &new],
                )
                .await?;
            tx.execute("DELETE FROM page_acks WHERE session_id = $1", &[&old])
                .await?;
            let had_data = moved + relinked > 0;
            if had_data {
                tx.execute(
                    "INSERT INTO forgotten (session_id, forgotten_at) VALUES ($1, $2)
                     ON CONFLICT (session_id) DO NOTHING",
                    &[&old, &now],
                )
                .await?;
                // The other instances refuse the old cookie too once this commits, and its
                // pages there reload.
                tx.execute(NOTIFY, &[&CHANNEL, notice]).await?;
            }
            tx.commit().await?;
            Ok(had_data)
        })
        .await
    }

    pub(in crate::store) async fn forget(
        &self,
        id: SessionId,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let notice = &format!("{}f {id} {now}", self.instance);
        let key = &id.to_key();
        let (uuid, nobody) = (id.as_uuid(), SessionId::NOBODY.as_uuid());
        self.retry(|mut client| async move {
            let tx = client.transaction().await?;
            let lock = tx.prepare_cached(LOCK_SESSION).await?;
            // Remembered only when there is something of it to forget: a row or a message.
            let remember = tx
                .prepare_cached(
                    "INSERT INTO forgotten (session_id, forgotten_at)
                     SELECT $1, $2
                     WHERE EXISTS (SELECT 1 FROM settings WHERE session_id = $1)
                        OR EXISTS (SELECT 1 FROM messages WHERE author_session = $1)
                     ON CONFLICT (session_id) DO NOTHING",
                )
                .await?;
            let delete = tx
                .prepare_cached("DELETE FROM settings WHERE session_id = $1")
                .await?;
            // The browser's chat messages stay, under the name they were sent with, but no
            // longer say whose they were; their nonce (chosen by its pages) becomes one made of
            // the id.
            let unlink = tx
                .prepare_cached(
                    "UPDATE messages SET author_session = $2, nonce = 'forgotten-' || id
                     WHERE author_session = $1",
                )
                .await?;
            // Pipelined: sent back to back, run in this order, one round trip.
            let lock_params: [&Param<'_>; 1] = [key];
            let remember_params: [&Param<'_>; 2] = [&uuid, &now];
            let delete_params: [&Param<'_>; 1] = [&uuid];
            let unlink_params: [&Param<'_>; 2] = [&uuid, &nobody];
            let (_, _, deleted, unlinked) = tokio::try_join!(
                tx.execute(&lock, &lock_params),
                tx.execute(&remember, &remember_params),
                tx.execute(&delete, &delete_params),
                tx.execute(&unlink, &unlink_params),
            )?;
            let had_data = deleted + unlinked > 0;
            if had_data {
                // The other instances refuse its cookie too once this commits.
                let notify = tx.prepare_cached(NOTIFY).await?;
                tx.execute(&notify, &[&CHANNEL, notice]).await?;
            }
            tx.commit().await?;
            Ok(had_data)
        })
        .await
    }
}
