//! The chat on PostgreSQL: posts behind the chat's advisory lock, so ids commit in order, and the
//! reads a page catches up with.

use tokio_postgres::Row;
use uuid::Uuid;

use super::{ADVISORY_LOCK, LOCK_SESSION, Param, PostgresStore, settings_at};
use crate::chat::{Message, MessageBody};
use crate::clock::Millis;
use crate::session::SessionId;
use crate::store::{Order, sql_int};
use crate::store::{Posted, SessionData, SettingsRow, StoreError};

/// The chat's advisory lock key (PostgreSQL's one-`bigint` form). Per-session locks hash the
/// session id into the same space; a collision only makes two writes wait for each other.
const CHAT_LOCK: i64 = 0x6c69_7665_0002;

/// The columns a message is read from, in [`message`]'s order.
macro_rules! message_columns {
    () => {
        "id, author_session, author_name, body, created_at"
    };
}

impl PostgresStore {
    pub(in crate::store) async fn post_message(
        &self,
        author: SessionId,
        body: MessageBody,
        nonce: String,
        now: Millis,
        keep: usize,
    ) -> Result<Posted, StoreError> {
        let keep = sql_int(keep);
        let author_id = author.as_uuid();
        let text = body.as_str();
        let notice = &format!("{}m ", self.instance);
        let nonce = &nonce;
        let author_key = &author.to_key();
        self.retry(|mut client| async move {
            let tx = client.transaction().await?;
            let lock = tx.prepare_cached(ADVISORY_LOCK).await?;
            // The author's lock too, which "forget me" takes: a forget is either before (and
            // this is refused) or after (and unlinks this message too).
            let session_lock = tx.prepare_cached(LOCK_SESSION).await?;
            // The name is read in the same transaction, so the message carries the name the
            // author had at the moment it was sent. A new message also marks the author's row
            // used, and tells the other instances once it commits.
            let insert = tx
                .prepare_cached(
                    "WITH posted AS (
                         INSERT INTO messages (author_session, author_name, body, nonce, created_at)
                         SELECT $1, coalesce((SELECT username FROM settings WHERE session_id = $1),
                                             ''),
                                $2, $3, $4
                         WHERE NOT EXISTS (SELECT 1 FROM forgotten WHERE session_id = $1)
                         ON CONFLICT (author_session, nonce) DO NOTHING
                         RETURNING id, author_session, author_name, body, created_at),
                     used AS (
                         UPDATE settings SET read_at = greatest(read_at, $4)
                         WHERE session_id = $1 AND EXISTS (SELECT 1 FROM posted))
                     SELECT id, author_session, author_name, body, created_at,
                            pg_notify('livesession', $5::text || id::text)
                     FROM posted",
                )
                .await?;
            // --message-limit holds at every post: the oldest beyond it go in this transaction.
            let trim = tx
                .prepare_cached(
                    "DELETE FROM messages WHERE id <=
                         (SELECT id FROM messages ORDER BY id DESC LIMIT 1 OFFSET $1)",
                )
                .await?;
            // Pipelined behind the chat's lock: ids are taken, and commit, in order.
            let lock_params: [&Param<'_>; 1] = [&CHAT_LOCK];
            let insert_params: [&Param<'_>; 5] = [&author_id, &text, nonce, &now, notice];
            let trim_params: [&Param<'_>; 1] = [&keep];
            let session_params: [&Param<'_>; 1] = [author_key];
            let (_, _, inserted, _) = tokio::try_join!(
                tx.execute(&lock, &lock_params),
                tx.execute(&session_lock, &session_params),
                tx.query_opt(&insert, &insert_params),
                tx.execute(&trim, &trim_params),
            )?;
            let posted = match inserted {
                Some(row) => Posted {
                    message: message(&row)?,
                    duplicate: false,
                },
                None => {
                    let existing = tx
                        .prepare_cached(concat!(
                            "SELECT ",
                            message_columns!(),
                            " FROM messages WHERE author_session = $1 AND nonce = $2"
                        ))
                        .await?;
                    // Nothing inserted: a resend, or an author forgotten meanwhile.
                    let Some(row) = tx.query_opt(&existing, &[&author_id, nonce]).await? else {
                        return Err(StoreError::AuthorForgotten);
                    };
                    Posted {
                        message: message(&row)?,
                        duplicate: true,
                    }
                }
            };
            tx.commit().await?;
            Ok(posted)
        })
        .await
    }

    pub(in crate::store) async fn messages_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let sql = concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE id > $1 ORDER BY id LIMIT $2"
        );
        self.messages(sql, after, limit, Order::Oldest).await
    }

    pub(in crate::store) async fn messages_before(
        &self,
        before: i64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let sql = concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE id < $1 ORDER BY id DESC LIMIT $2"
        );
        self.messages(sql, before, limit, Order::Newest).await
    }

    /// The messages `sql` reads (an id bound as `$1`, a limit as `$2`, in `order`), oldest first.
    async fn messages(
        &self,
        sql: &'static str,
        bound: i64,
        limit: usize,
        order: Order,
    ) -> Result<Vec<Message>, StoreError> {
        let limit = sql_int(limit);
        self.retry(|client| async move {
            let statement = client.prepare_cached(sql).await?;
            let rows = client.query(&statement, &[&bound, &limit]).await?;
            let mut messages = rows.iter().map(message).collect::<Result<Vec<_>, _>>()?;
            if order == Order::Newest {
                messages.reverse();
            }
            Ok(messages)
        })
        .await
    }
}

/// A message row, of the columns `message_columns!` names.
impl PostgresStore {
    pub(in crate::store) async fn session_data(
        &self,
        id: SessionId,
    ) -> Result<SessionData, StoreError> {
        self.retry(|mut client| async move {
            // One read-only snapshot: the row and the messages as of one moment.
            let tx = client.transaction().await?;
            tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?;
            let key = id.as_uuid();
            let settings = tx
                .query_opt(
                    "SELECT username, theme, inserted_at, updated_at, read_at
                     FROM settings WHERE session_id = $1",
                    &[&key],
                )
                .await?
                .map(|row| -> Result<SettingsRow, tokio_postgres::Error> {
                    Ok(SettingsRow {
                        settings: settings_at(&row, 0)?,
                        inserted_at: row.try_get(2)?,
                        updated_at: row.try_get(3)?,
                        read_at: row.try_get(4)?,
                    })
                })
                .transpose()?;
            let messages = tx
                .query(
                    concat!(
                        "SELECT ",
                        message_columns!(),
                        " FROM messages WHERE author_session = $1 ORDER BY id"
                    ),
                    &[&key],
                )
                .await?
                .iter()
                .map(message)
                .collect::<Result<Vec<_>, _>>()?;
            let devices = super::device::devices_of(&tx, id).await?;
            tx.commit().await?;
            Ok(SessionData {
                settings,
                messages,
                devices,
            })
        })
        .await
    }
}

fn message(row: &Row) -> Result<Message, tokio_postgres::Error> {
    Ok(Message {
        id: row.try_get(0)?,
        author: SessionId::from_uuid(row.try_get::<_, Uuid>(1)?),
        author_name: row.try_get(2)?,
        body: row.try_get(3)?,
        created_at: row.try_get(4)?,
    })
}
