//! The chat on SQLite: posts through the writer (ids in commit order by construction), with
//! `--message-limit` kept in the same transaction, and the reads a page catches up with.

use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, settings_at};
use crate::chat::{Message, MessageBody};
use crate::clock::Millis;
use crate::session::SessionId;
use crate::store::{Order, Posted, SessionData, SettingsRow, StoreError, sql_int};

/// The columns a message is read from, in [`message`]'s order.
macro_rules! message_columns {
    () => {
        "id, author_session, author_name, body, created_at"
    };
}

impl SqliteStore {
    pub(in crate::store) async fn post_message(
        &self,
        author: SessionId,
        body: MessageBody,
        nonce: String,
        now: Millis,
        keep: usize,
    ) -> Result<Posted, StoreError> {
        let keep = sql_int(keep);
        let posted = self.writer.write(move |tx| {
            let key = author.to_key();
            // In the writer's transaction, so a "forget me" is either before (and this is
            // refused) or after (and unlinks this message too).
            let forgotten = tx
                .prepare_cached("SELECT 1 FROM forgotten WHERE session_id = ?1")?
                .query_row([&key], |_| Ok(()))
                .optional()?;
            if forgotten.is_some() {
                return Ok(None);
            }
            // The name is read in the same transaction, so the message carries the name the
            // author had at the moment it was sent.
            let inserted = tx
                .prepare_cached(concat!(
                    "INSERT INTO messages (author_session, author_name, body, nonce, created_at)
                     VALUES (?1, coalesce((SELECT username FROM settings WHERE session_id = ?1), ''),
                             ?2, ?3, ?4)
                     ON CONFLICT (author_session, nonce) DO NOTHING
                     RETURNING ",
                    message_columns!()
                ))?
                .query_row(params![key, body.as_str(), nonce, now], message)
                .optional()?;
            let posted = match inserted {
                Some(message) => {
                    // Posting is using the session (a clock that stepped back moves nothing back).
                    tx.prepare_cached(
                        "UPDATE settings SET read_at = max(read_at, ?2) WHERE session_id = ?1",
                    )?
                    .execute(params![key, now])?;
                    // --message-limit holds at every post: the oldest beyond it go now.
                    tx.prepare_cached(
                        "DELETE FROM messages WHERE id <=
                             (SELECT id FROM messages ORDER BY id DESC LIMIT 1 OFFSET ?1)",
                    )?
                    .execute([keep])?;
                    Posted {
                        message,
                        duplicate: false,
                    }
                }
                None => Posted {
                    message: tx
                        .prepare_cached(concat!(
                            "SELECT ",
                            message_columns!(),
                            " FROM messages WHERE author_session = ?1 AND nonce = ?2"
                        ))?
                        .query_row(params![key, nonce], message)?,
                    duplicate: true,
                },
            };
            Ok(Some(posted))
        });
        posted.await?.ok_or(StoreError::AuthorForgotten)
    }

    pub(in crate::store) async fn messages_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let sql = concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE id > ?1 ORDER BY id LIMIT ?2"
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
            " FROM messages WHERE id < ?1 ORDER BY id DESC LIMIT ?2"
        );
        self.messages(sql, before, limit, Order::Newest).await
    }

    /// The messages `sql` reads (an id bound as `?1`, a limit as `?2`, in `order`), oldest first.
    async fn messages(
        &self,
        sql: &'static str,
        bound: i64,
        limit: usize,
        order: Order,
    ) -> Result<Vec<Message>, StoreError> {
        let limit = sql_int(limit);
        self.run(move |conn| {
            let mut messages = conn
                .prepare_cached(sql)?
                .query_map(params![bound, limit], message)?
                .collect::<Result<Vec<_>, _>>()?;
            if order == Order::Newest {
                messages.reverse();
            }
            Ok(messages)
        })
        .await
    }
}

impl SqliteStore {
    pub(in crate::store) async fn session_data(
        &self,
        id: SessionId,
    ) -> Result<SessionData, StoreError> {
        self.run(move |conn| {
            // One read transaction: the row and the messages as of one moment.
            let tx = conn.transaction()?;
            let key = id.to_key();
            let settings = tx
                .prepare_cached(
                    "SELECT username, theme, inserted_at, updated_at, read_at
                     FROM settings WHERE session_id = ?1",
                )?
                .query_row([&key], |row| {
                    Ok(SettingsRow {
                        settings: settings_at(row, 0)?,
                        inserted_at: row.get(2)?,
                        updated_at: row.get(3)?,
                        read_at: row.get(4)?,
                    })
                })
                .optional()?;
            let messages = tx
                .prepare_cached(concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages WHERE author_session = ?1 ORDER BY id"
                ))?
                .query_map([&key], message)?
                .collect::<Result<Vec<_>, _>>()?;
            let devices = super::device::devices_of(&tx, id)?;
            tx.finish()?;
            Ok(SessionData {
                settings,
                messages,
                devices,
            })
        })
        .await
    }
}

fn message(row: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    let author: String = row.get(1)?;
    Ok(Message {
        id: row.get(0)?,
        author: author.parse().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
        })?,
        author_name: row.get(2)?,
        body: row.get(3)?,
        created_at: row.get(4)?,
    })
}
