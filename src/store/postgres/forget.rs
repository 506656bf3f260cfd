//! "Forget me" on PostgreSQL: under the session's advisory lock,
//! so a save racing them waits and then finds the id forgotten; announced to the other instances
//! when they commit.

use super::{CHANNEL, LOCK_SESSION, NOTIFY, Param, PostgresStore};
use crate::clock::Millis;
use crate::session::SessionId;
use crate::store::StoreError;

impl PostgresStore {
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
                        OR EXISTS (SELECT 1 FROM devices WHERE session_id = $1)
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
            let delete_devices = tx
                .prepare_cached("DELETE FROM devices WHERE session_id = $1")
                .await?;
            let (_, _, deleted, unlinked, devices) = tokio::try_join!(
                tx.execute(&lock, &lock_params),
                tx.execute(&remember, &remember_params),
                tx.execute(&delete, &delete_params),
                tx.execute(&unlink, &unlink_params),
                tx.execute(&delete_devices, &delete_params),
            )?;
            let had_data = deleted + unlinked + devices > 0;
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
