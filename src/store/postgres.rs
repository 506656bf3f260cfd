//! The PostgreSQL backend, for several instances sharing one database.
//!
//! Statements are prepared once per pooled connection (deadpool's statement cache) and take
//! every value as a parameter. Each write that other instances must hear about sends a
//! `NOTIFY` in its own transaction, so the notification goes out exactly when the write commits
//! (and never for a write that rolled back). Payloads are tiny — ids and versions — and the
//! receiving instance reads the data itself; see [`Notice`] and [`listen`].
//!
//! Locks keep the contract that SQLite's single writer gave for free:
//! - a save and a "forget me" of the same session take that session's advisory lock, so a save
//!   racing a forget can never bring the forgotten row back (a save is one call of the
//!   `livesession_save` function of `schema.postgres.sql`: lock, upsert and notification in one
//!   round trip);
//! - posts take the chat's advisory lock, so message ids commit in order and a page that has
//!   seen message N has seen every message below N it ever will;
//! - pruning deletes with `FOR UPDATE SKIP LOCKED`: instances pruning at once take different
//!   rows, and a row being written is left for the next pass (where its new `read_at` keeps it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls, Row};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    Millis, Notice, PageChange, PageSave, Posted, StoreError, StoreOptions, StoreStats,
    StoredSettings,
};
use crate::chat::{Message, MessageBody};
use crate::config::Durability;
use crate::metrics::metrics;
use crate::session::SessionId;
use crate::settings::{Settings, SettingsChange, Theme, Username};

/// The whole schema, applied to a database that has none of it.
const SCHEMA: &str = include_str!("../../schema.postgres.sql");

/// The schema version this build writes; `schema.postgres.sql` records it in `livesession_meta`.
pub const SCHEMA_VERSION: i64 = 1;

/// Upgrades, by the version they start from; each ends by recording the next version.
const MIGRATIONS: &[(i64, &str)] = &[];

/// The channel every instance listens on, and the statement that listens to it.
const CHANNEL: &str = "livesession";
const LISTEN: &str = "LISTEN livesession";

/// A statement parameter.
type Param<'a> = dyn tokio_postgres::types::ToSql + Sync + 'a;

/// Holds a session's advisory lock until the transaction ends. A "forget me" takes it first (a
/// save takes the same lock inside `livesession_save`); the statement after it takes its snapshot
/// once the lock is held, so it sees what the other committed. Pipelining keeps that order:
/// statements sent back to back on one connection run one after the other.
const LOCK_SESSION: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))";

/// Holds the chat's advisory lock until the transaction ends.
const LOCK_CHAT: &str = "SELECT pg_advisory_xact_lock($1)";

/// Sends a notification when the transaction commits (never for one that rolls back).
const NOTIFY: &str = "SELECT pg_notify($1, $2)";

/// Advisory lock keys (PostgreSQL's one-`bigint` form). Per-session locks hash the session id
/// into the same space; a collision only makes two writes wait for each other.
const SCHEMA_LOCK: i64 = 0x6c69_7665_0001;
const CHAT_LOCK: i64 = 0x6c69_7665_0002;

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

/// Connections in each instance's pool.
const POOL_SIZE: usize = 16;

/// How long a caller waits for a free pooled connection, or for a new one to connect.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);

/// The listener's reconnect delays: doubling from the first to the last.
const RECONNECT_FIRST: Duration = Duration::from_millis(50);
const RECONNECT_LAST: Duration = Duration::from_secs(5);

/// How often the listening connection is asked whether it is alive, and how long it may take
/// to answer before it is given up and replaced.
const HEARTBEAT: Duration = Duration::from_secs(10);
const HEARTBEAT_WAIT: Duration = Duration::from_secs(5);

/// The longest one statement may run: a request waits no longer than that on a database that
/// stopped answering.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub(super) struct PostgresStore {
    pool: Pool,
    /// How to reach the database, for the listening connection.
    config: Arc<tokio_postgres::Config>,
    /// The start of every notification this instance sends, so it can skip its own.
    instance: Arc<str>,
}

impl PostgresStore {
    /// Connects, applies or upgrades the schema, and refuses a database from a newer version or
    /// one that holds another program's tables of the same names. With `existing`, for the
    /// maintenance commands, it creates and upgrades nothing: the schema must be there, at this
    /// build's version.
    pub(super) async fn open(
        url: &str,
        options: StoreOptions,
        existing: bool,
    ) -> anyhow::Result<PostgresStore> {
        let mut config: tokio_postgres::Config =
            url.parse().context("the PostgreSQL URL cannot be read")?;
        let name = describe(&config);
        let mut settings = config.get_options().unwrap_or_default().to_owned();
        settings.push_str(&format!(
            " -c lock_timeout={} -c statement_timeout={} -c synchronous_commit={}",
            options.busy_timeout.as_millis().max(1),
            STATEMENT_TIMEOUT.as_millis(),
            match options.durability {
                Durability::Normal => "off",
                Durability::Full => "on",
            }
        ));
        config
            .options(settings.trim())
            .application_name("livesession")
            .connect_timeout(POOL_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3)
            .tcp_user_timeout(Duration::from_secs(30));

        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .build()
            .context("cannot set up the PostgreSQL connection pool")?;
        let mut client = pool
            .get()
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {name}"))?;
        let schema = if existing {
            check_schema(&client).await
        } else {
            migrate(&mut client).await
        };
        schema.with_context(|| format!("cannot use the PostgreSQL database at {name}"))?;
        drop(client);
        Ok(PostgresStore {
            pool,
            config: Arc::new(config),
            instance: format!("{:016x} ", rand_u64()).into(),
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    pub(super) async fn load(&self, id: SessionId) -> Result<Option<StoredSettings>, StoreError> {
        once_more_if_closed(&self.pool, || self.load_now(id)).await
    }

    async fn load_now(&self, id: SessionId) -> Result<Option<StoredSettings>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT username, theme, version, read_at FROM settings WHERE session_id = $1",
            )
            .await?;
        let row = client.query_opt(&statement, &[&id.as_uuid()]).await?;
        Ok(row.as_ref().map(stored_settings))
    }

    pub(super) async fn save(
        &self,
        id: SessionId,
        change: SettingsChange,
        now: Millis,
    ) -> Result<Option<StoredSettings>, StoreError> {
        let saved = timed(once_more_if_closed(&self.pool, || {
            self.save_now(id, change.clone(), now, None)
        }))
        .await?;
        Ok(match saved {
            PageSave::Saved(row) => Some(row),
            PageSave::Replayed | PageSave::Forgotten => None,
        })
    }

    async fn save_now(
        &self,
        id: SessionId,
        change: SettingsChange,
        now: Millis,
        from: Option<&PageChange>,
    ) -> Result<PageSave, StoreError> {
        let client = self.client().await?;
        // The lock, the replay check, the upsert and the notification, in one statement (see
        // `livesession_save` in schema.postgres.sql).
        let statement = client
            .prepare_cached("SELECT * FROM livesession_save($1, $2, $3, $4, $5, $6, $7, $8)")
            .await?;
        let username = change.username.as_ref().map(Username::as_str);
        let theme = change.theme.map(Theme::as_str);
        let notice = format!("{}s {id} ", self.instance);
        let page = from.map(|from| from.page.as_str());
        let form = from.map(|from| from.form);
        let seq = from.map(|from| i64::try_from(from.seq).unwrap_or(i64::MAX));
        let row = client
            .query_opt(
                &statement,
                &[
                    &id.as_uuid(),
                    &username,
                    &theme,
                    &now,
                    &notice,
                    &page,
                    &form,
                    &seq,
                ],
            )
            .await?;
        Ok(match row {
            None => PageSave::Forgotten,
            Some(row) if row.get::<_, bool>(0) => PageSave::Replayed,
            Some(row) => PageSave::Saved(StoredSettings {
                settings: Settings {
                    username: Username::from_trusted(row.get(1)),
                    theme: Theme::parse(row.get::<_, &str>(2)).unwrap_or_default(),
                },
                version: row.get(3),
                read_at: row.get(4),
            }),
        })
    }

    pub(super) async fn save_from_page(
        &self,
        id: SessionId,
        change: SettingsChange,
        now: Millis,
        from: PageChange,
    ) -> Result<PageSave, StoreError> {
        timed(once_more_if_closed(&self.pool, || {
            self.save_now(id, change.clone(), now, Some(&from))
        }))
        .await
    }

    pub(super) async fn prune_page_acks(&self, before: Millis) -> Result<usize, StoreError> {
        self.execute("DELETE FROM page_acks WHERE acked_at < $1", &[&before])
            .await
    }

    pub(super) async fn touch(
        &self,
        id: SessionId,
        now: Millis,
    ) -> Result<Option<StoredSettings>, StoreError> {
        timed(once_more_if_closed(&self.pool, || self.touch_now(id, now))).await
    }

    async fn touch_now(
        &self,
        id: SessionId,
        now: Millis,
    ) -> Result<Option<StoredSettings>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "UPDATE settings SET read_at = greatest(read_at, $2) WHERE session_id = $1
                 RETURNING username, theme, version, read_at",
            )
            .await?;
        let row = client.query_opt(&statement, &[&id.as_uuid(), &now]).await?;
        Ok(row.as_ref().map(stored_settings))
    }

    pub(super) async fn forget(&self, id: SessionId, now: Millis) -> Result<bool, StoreError> {
        timed(once_more_if_closed(&self.pool, || self.forget_now(id, now))).await
    }

    async fn forget_now(&self, id: SessionId, now: Millis) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let lock = tx.prepare_cached(LOCK_SESSION).await?;
        let delete = tx
            .prepare_cached("DELETE FROM settings WHERE session_id = $1")
            .await?;
        let remember = tx
            .prepare_cached(
                "INSERT INTO forgotten (session_id, forgotten_at) VALUES ($1, $2)
                 ON CONFLICT (session_id) DO NOTHING",
            )
            .await?;
        // The browser's chat messages stay, under the name they were sent with, but no longer
        // say whose they were; their nonce (chosen by its pages) becomes one made of the id.
        let unlink = tx
            .prepare_cached(
                "UPDATE messages SET author_session = $2, nonce = 'forgotten-' || id
                 WHERE author_session = $1",
            )
            .await?;
        let notify = tx.prepare_cached(NOTIFY).await?;
        let notice = format!("{}f {id} {now}", self.instance);
        // Pipelined: sent back to back, run in this order, one round trip.
        let (key, uuid, nobody) = (id.to_key(), id.as_uuid(), SessionId::NOBODY.as_uuid());
        let lock_params: [&Param<'_>; 1] = [&key];
        let delete_params: [&Param<'_>; 1] = [&uuid];
        let remember_params: [&Param<'_>; 2] = [&uuid, &now];
        let unlink_params: [&Param<'_>; 2] = [&uuid, &nobody];
        let notify_params: [&Param<'_>; 2] = [&CHANNEL, &notice];
        let (_, deleted, _, _, _) = tokio::try_join!(
            tx.execute(&lock, &lock_params),
            tx.execute(&delete, &delete_params),
            tx.execute(&remember, &remember_params),
            tx.execute(&unlink, &unlink_params),
            tx.execute(&notify, &notify_params),
        )?;
        tx.commit().await?;
        Ok(deleted > 0)
    }

    pub(super) async fn forgotten(&self) -> Result<Vec<(SessionId, Millis)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT session_id, forgotten_at FROM forgotten", &[])
            .await?;
        Ok(rows
            .iter()
            .map(|row| (SessionId::from_uuid(row.get(0)), row.get(1)))
            .collect())
    }

    pub(super) async fn prune_forgotten(&self, before: Millis) -> Result<usize, StoreError> {
        self.execute(concat!("DELETE ", expired_forgotten!()), &[&before])
            .await
    }

    pub(super) async fn prune_batch(
        &self,
        cutoff: Millis,
        limit: usize,
    ) -> Result<Vec<SessionId>, StoreError> {
        let client = self.client().await?;
        // The outer condition is checked again on each locked row, so a row touched since the
        // inner scan is kept.
        let statement = client
            .prepare_cached(concat!(
                "DELETE FROM settings WHERE session_id IN (SELECT session_id ",
                stale_settings!(),
                " ORDER BY read_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                 AND read_at < $1
                 RETURNING session_id"
            ))
            .await?;
        let rows = client
            .query(&statement, &[&cutoff, &to_limit(limit)])
            .await?;
        Ok(rows
            .iter()
            .map(|row| SessionId::from_uuid(row.get(0)))
            .collect())
    }

    pub(super) async fn post_message(
        &self,
        author: SessionId,
        body: MessageBody,
        nonce: String,
        now: Millis,
    ) -> Result<Posted, StoreError> {
        timed(once_more_if_closed(&self.pool, || {
            self.post_message_now(author, body.clone(), nonce.clone(), now)
        }))
        .await
    }

    async fn post_message_now(
        &self,
        author: SessionId,
        body: MessageBody,
        nonce: String,
        now: Millis,
    ) -> Result<Posted, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let lock = tx.prepare_cached(LOCK_CHAT).await?;
        let author_id = author.as_uuid();
        // The name is read in the same transaction, so the message carries the name the author
        // had at the moment it was sent. A new message also marks the author's row used, and
        // tells the other instances once it commits.
        let insert = tx
            .prepare_cached(
                "WITH posted AS (
                     INSERT INTO messages (author_session, author_name, body, nonce, created_at)
                     VALUES ($1, coalesce((SELECT username FROM settings WHERE session_id = $1),
                                          ''),
                             $2, $3, $4)
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
        let notice = format!("{}m ", self.instance);
        // Pipelined behind the chat's lock: ids are taken, and commit, in order.
        let text = body.as_str();
        let lock_params: [&Param<'_>; 1] = [&CHAT_LOCK];
        let insert_params: [&Param<'_>; 5] = [&author_id, &text, &nonce, &now, &notice];
        let (_, inserted) = tokio::try_join!(
            tx.execute(&lock, &lock_params),
            tx.query_opt(&insert, &insert_params),
        )?;
        let posted = match inserted {
            Some(row) => Posted {
                message: message(&row),
                duplicate: false,
            },
            None => {
                let existing = tx
                    .prepare_cached(
                        "SELECT id, author_session, author_name, body, created_at
                         FROM messages WHERE author_session = $1 AND nonce = $2",
                    )
                    .await?;
                Posted {
                    message: message(&tx.query_one(&existing, &[&author_id, &nonce]).await?),
                    duplicate: true,
                }
            }
        };
        tx.commit().await?;
        Ok(posted)
    }

    pub(super) async fn recent_messages(&self, limit: usize) -> Result<Vec<Message>, StoreError> {
        once_more_if_closed(&self.pool, || self.recent_messages_now(limit)).await
    }

    async fn recent_messages_now(&self, limit: usize) -> Result<Vec<Message>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT id, author_session, author_name, body, created_at
                 FROM messages ORDER BY id DESC LIMIT $1",
            )
            .await?;
        let rows = client.query(&statement, &[&to_limit(limit)]).await?;
        Ok(rows.iter().rev().map(message).collect())
    }

    pub(super) async fn messages_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        once_more_if_closed(&self.pool, || self.messages_after_now(after, limit)).await
    }

    async fn messages_after_now(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT id, author_session, author_name, body, created_at
                 FROM messages WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .await?;
        let rows = client
            .query(&statement, &[&after, &to_limit(limit)])
            .await?;
        Ok(rows.iter().map(message).collect())
    }

    pub(super) async fn prune_messages_batch(
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
            &[&created_before, &to_limit(keep_newest), &to_limit(limit)],
        )
        .await
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        once_more_if_closed(&self.pool, || self.ping_now()).await
    }

    async fn ping_now(&self) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO health (id, checked_at) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
            &[&super::now_millis()],
        )
        .await?;
        Ok(())
    }

    /// How many rows [`Self::prune_batch`] would delete in all at `cutoff`; deletes nothing.
    pub(super) async fn count_stale(&self, cutoff: Millis) -> Result<usize, StoreError> {
        self.count(concat!("SELECT count(*) ", stale_settings!()), &[&cutoff])
            .await
    }

    /// How many messages [`Self::prune_messages_batch`] would delete in all; deletes nothing.
    pub(super) async fn count_old_messages(
        &self,
        created_before: Millis,
        keep_newest: usize,
    ) -> Result<usize, StoreError> {
        let keep = to_limit(keep_newest);
        self.count(
            concat!("SELECT count(*) ", old_messages!()),
            &[&created_before, &keep],
        )
        .await
    }

    /// How many ids [`Self::prune_forgotten`] would delete; deletes nothing.
    pub(super) async fn count_expired_forgotten(
        &self,
        before: Millis,
    ) -> Result<usize, StoreError> {
        self.count(
            concat!("SELECT count(*) ", expired_forgotten!()),
            &[&before],
        )
        .await
    }

    /// Runs one `SELECT count(*)` statement on a pooled connection.
    async fn count(&self, sql: &'static str, params: &[&Param<'_>]) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await?;
        let n: i64 = client.query_one(&statement, params).await?.get(0);
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Runs one statement on a pooled connection; returns how many rows it changed.
    async fn execute(&self, sql: &'static str, params: &[&Param<'_>]) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await?;
        let rows = client.execute(&statement, params).await?;
        Ok(usize::try_from(rows).unwrap_or(usize::MAX))
    }

    /// Row counts and activity times, read in one statement (one snapshot), and the size of
    /// the database on disk.
    pub(super) async fn stats(&self) -> Result<StoreStats, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM settings),
                        (SELECT count(*) FROM messages),
                        (SELECT count(*) FROM forgotten),
                        (SELECT min(read_at) FROM settings),
                        (SELECT max(read_at) FROM settings),
                        (SELECT min(created_at) FROM messages),
                        (SELECT max(created_at) FROM messages),
                        pg_database_size(current_database())",
                &[],
            )
            .await?;
        let unsigned = |n: i64| n.unsigned_abs();
        Ok(StoreStats {
            sessions: unsigned(row.get(0)),
            messages: unsigned(row.get(1)),
            forgotten: unsigned(row.get(2)),
            oldest_activity: row.get(3),
            newest_activity: row.get(4),
            oldest_message: row.get(5),
            newest_message: row.get(6),
            database_bytes: unsigned(row.get(7)),
            wal_bytes: 0,
        })
    }

    /// Records `current` as the fingerprint of the key that signs cookies, unless the database
    /// already names another one. A fingerprint among `previous` is a rotation: it is replaced.
    /// Returns the fingerprint the database held, when it was neither.
    pub(super) async fn claim_key(
        &self,
        current: &str,
        previous: &[String],
    ) -> Result<Option<String>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Instances starting together on a new database take turns: the first records its key,
        // the others compare with it.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await?;
        let held = tx
            .query_opt(
                "SELECT value FROM livesession_meta WHERE name = 'key_fingerprint' FOR UPDATE",
                &[],
            )
            .await?
            .map(|row| row.get::<_, String>(0));
        let other = match held {
            Some(held) if held == current => None,
            Some(held) if !previous.contains(&held) => Some(held),
            _ => {
                tx.execute(
                    "INSERT INTO livesession_meta (name, value) VALUES ('key_fingerprint', $1)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    &[&current],
                )
                .await?;
                None
            }
        };
        tx.commit().await?;
        Ok(other)
    }

    /// Starts the instance's listening connection: every other instance's notifications arrive
    /// as [`Notice`]s on `notices` until `shutdown`. The connection comes back on its own after
    /// it drops, and then sends [`Notice::Resync`]: whatever was missed meanwhile must be read
    /// from the tables.
    pub(super) fn listen(
        &self,
        notices: mpsc::Sender<Notice>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let config = Arc::clone(&self.config);
        let instance = Arc::clone(&self.instance);
        tokio::spawn(async move {
            let mut delay = RECONNECT_FIRST;
            let mut connected_before = false;
            loop {
                let attempt = listen_once(&config, &instance, &notices);
                let outcome = tokio::select! {
                    outcome = attempt => outcome,
                    () = shutdown.cancelled() => return,
                };
                match outcome {
                    Listened::Closed if notices.is_closed() => return,
                    Listened::Closed => {
                        tracing::warn!(
                            "the PostgreSQL notification connection closed; reconnecting"
                        );
                        connected_before = true;
                        delay = RECONNECT_FIRST;
                    }
                    Listened::Failed(e) if connected_before => {
                        tracing::warn!(error = %e, "the PostgreSQL notification connection failed; reconnecting");
                    }
                    Listened::Failed(e) => {
                        tracing::warn!(error = %e, "cannot listen for PostgreSQL notifications yet; retrying");
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return,
                }
                delay = (delay * 2).min(RECONNECT_LAST);
            }
        })
    }
}

/// How one listening connection ended.
enum Listened {
    /// It was up, then closed or failed.
    Closed,
    /// It never got to listening.
    Failed(tokio_postgres::Error),
}

/// Connects, listens, and forwards notifications until the connection ends or stops answering.
/// Once listening, it asks for a [`Notice::Resync`], even the first time: whatever happened
/// before (since this instance read its state at startup, or while it was not listening) is read
/// from the tables.
async fn listen_once(
    config: &tokio_postgres::Config,
    instance: &str,
    notices: &mpsc::Sender<Notice>,
) -> Listened {
    let (client, mut connection) = match config.connect(NoTls).await {
        Ok(connected) => connected,
        Err(e) => return Listened::Failed(e),
    };
    let listen = client.batch_execute(LISTEN);
    tokio::pin!(listen);
    let mut listening = false;
    // A connection that only listens sends nothing, so a silently dead one (a network partition,
    // a failover) would go unnoticed for as long as TCP takes to give up: ask it something now
    // and then.
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    let mut probe: Option<std::pin::Pin<Box<dyn Future<Output = bool> + Send + '_>>> = None;
    loop {
        tokio::select! {
            done = &mut listen, if !listening => {
                if let Err(e) = done {
                    return Listened::Failed(e);
                }
                listening = true;
                tracing::debug!("listening for PostgreSQL notifications");
                if notices.send(Notice::Resync).await.is_err() {
                    return Listened::Closed;
                }
            }
            _ = heartbeat.tick(), if listening && probe.is_none() => {
                let client = &client;
                probe = Some(Box::pin(async move {
                    let answer = tokio::time::timeout(HEARTBEAT_WAIT, client.simple_query("SELECT 1"));
                    matches!(answer.await, Ok(Ok(_)))
                }));
            }
            alive = async { probe.as_mut().expect("guarded").await }, if probe.is_some() => {
                probe = None;
                if !alive {
                    return Listened::Closed;
                }
            }
            message = std::future::poll_fn(|cx| connection.poll_message(cx)) => match message {
                Some(Ok(AsyncMessage::Notification(n))) if n.channel() == CHANNEL => {
                    if let Some(notice) = parse_notice(n.payload(), instance)
                        && notices.send(notice).await.is_err()
                    {
                        return Listened::Closed;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) if !listening => return Listened::Failed(e),
                Some(Err(_)) | None => return Listened::Closed,
            },
        }
    }
}

/// Reads a notification's payload; `None` for this instance's own, and for anything that is not
/// one of ours (the channel is open to every client of the database).
fn parse_notice(payload: &str, own_instance: &str) -> Option<Notice> {
    if payload.starts_with(own_instance) {
        return None;
    }
    let mut parts = payload.split(' ');
    let instance = parts.next()?;
    if instance.len() != 16 || !instance.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let notice = match (parts.next()?, parts.next()?, parts.next()) {
        ("s", id, Some(version)) => Notice::SettingsChanged {
            id: id.parse().ok()?,
            version: version.parse().ok()?,
        },
        ("f", id, Some(at)) => Notice::Forgotten {
            id: id.parse().ok()?,
            at: at.parse().ok()?,
        },
        ("m", id, None) => Notice::Message {
            id: id.parse().ok()?,
        },
        _ => return None,
    };
    parts.next().is_none().then_some(notice)
}

/// Checks that the schema is there at this build's version, changing nothing.
async fn check_schema(client: &deadpool_postgres::Object) -> anyhow::Result<()> {
    let has_meta: bool = client
        .query_one("SELECT to_regclass('livesession_meta') IS NOT NULL", &[])
        .await?
        .get(0);
    if !has_meta {
        bail!("it has no livesession schema; start the server on it once to create one");
    }
    let recorded: Option<String> = client
        .query_opt(
            "SELECT value FROM livesession_meta WHERE name = 'schema_version'",
            &[],
        )
        .await?
        .map(|row| row.get(0));
    match recorded.as_deref().and_then(|v| v.parse::<i64>().ok()) {
        Some(SCHEMA_VERSION) => Ok(()),
        Some(version) => bail!(
            "its schema is version {version} and this build's is {SCHEMA_VERSION}; run the \
             matching livesession (a server of this build upgrades an older schema)"
        ),
        None => bail!("its livesession_meta table records no schema version"),
    }
}

/// Brings the schema to [`SCHEMA_VERSION`], or refuses a database it cannot use.
async fn migrate(client: &mut deadpool_postgres::Object) -> anyhow::Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await?;
    let has_meta: bool = tx
        .query_one("SELECT to_regclass('livesession_meta') IS NOT NULL", &[])
        .await?
        .get(0);
    if !has_meta {
        let foreign: Option<String> = tx
            .query_one(
                "SELECT string_agg(name, ', ') FROM unnest(ARRAY['settings', 'messages',
                 'forgotten', 'health']) AS name WHERE to_regclass(name) IS NOT NULL",
                &[],
            )
            .await?
            .get(0);
        if let Some(tables) = foreign {
            bail!(
                "it already has tables named {tables} that livesession did not create; \
                 give livesession a database of its own"
            );
        }
        tx.batch_execute(SCHEMA).await?;
        tx.commit().await?;
        tracing::info!(version = SCHEMA_VERSION, "created the PostgreSQL schema");
        return Ok(());
    }
    let recorded: Option<String> = tx
        .query_opt(
            "SELECT value FROM livesession_meta WHERE name = 'schema_version'",
            &[],
        )
        .await?
        .map(|row| row.get(0));
    let mut version: i64 = recorded
        .as_deref()
        .and_then(|v| v.parse().ok())
        .context("its livesession_meta table records no schema version")?;
    if version > SCHEMA_VERSION {
        bail!(
            "it was written by a newer livesession (schema version {version}; this build knows \
             up to {SCHEMA_VERSION}); run the newer version, or restore a backup"
        );
    }
    while version < SCHEMA_VERSION {
        let Some((_, sql)) = MIGRATIONS.iter().find(|(from, _)| *from == version) else {
            bail!("no upgrade from schema version {version}");
        };
        tx.batch_execute(sql).await?;
        version += 1;
        tx.execute(
            "UPDATE livesession_meta SET value = $1 WHERE name = 'schema_version'",
            &[&version.to_string()],
        )
        .await?;
        tracing::info!(version, "upgraded the PostgreSQL schema");
    }
    tx.commit().await?;
    Ok(())
}

/// Where the database is, for messages: host, port, database and user, never the password.
pub(super) fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    match config.get_user() {
        Some(user) => format!("{user}@{host}:{port}/{database}"),
        None => format!("{host}:{port}/{database}"),
    }
}

fn stored_settings(row: &Row) -> StoredSettings {
    let theme: &str = row.get(1);
    StoredSettings {
        settings: Settings {
            username: Username::from_trusted(row.get(0)),
            theme: Theme::parse(theme).unwrap_or_default(),
        },
        version: row.get(2),
        read_at: row.get(3),
    }
}

fn message(row: &Row) -> Message {
    Message {
        id: row.get(0),
        author: SessionId::from_uuid(row.get::<_, Uuid>(1)),
        author_name: row.get(2),
        body: row.get(3),
        created_at: row.get(4),
    }
}

/// Runs `op`, and once more when the pooled connection it got turned out to be closed (the
/// database server restarted, or the network dropped it): the pool then hands out a fresh one.
/// Every operation of this store may run twice without harm: reads, upserts of the same values,
/// deletes, and posts carrying a nonce.
async fn once_more_if_closed<T, Fut>(
    pool: &Pool,
    mut op: impl FnMut() -> Fut,
) -> Result<T, StoreError>
where
    Fut: Future<Output = Result<T, StoreError>>,
{
    match op().await {
        Err(e) if e.is_closed_connection() => {
            tracing::debug!("a pooled PostgreSQL connection was closed; retrying on another");
            // Whatever closed this one most likely closed its neighbours too, which may not
            // know it yet: the retry (and those after it) get fresh connections.
            pool.retain(|_, _| false);
            op().await
        }
        result => result,
    }
}

/// Runs a write, recording its latency for `/metrics` when it succeeds.
async fn timed<T>(write: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    let started = Instant::now();
    let result = write.await;
    if result.is_ok() {
        metrics().write_took(started.elapsed());
    }
    result
}

/// A `LIMIT` parameter.
fn to_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A random number from the operating system, to tell instances apart.
fn rand_u64() -> u64 {
    u64::from_le_bytes(Uuid::new_v4().as_bytes()[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "00000000000000aa ";
    const OTHER: &str = "00000000000000bb";

    #[test]
    fn notices_from_other_instances_are_read() {
        let id = SessionId::generate();
        assert_eq!(
            parse_notice(&format!("{OTHER} s {id} 7"), OWN),
            Some(Notice::SettingsChanged { id, version: 7 })
        );
        assert_eq!(
            parse_notice(&format!("{OTHER} f {id} 1700000000000"), OWN),
            Some(Notice::Forgotten {
                id,
                at: 1_700_000_000_000
            })
        );
        assert_eq!(
            parse_notice(&format!("{OTHER} m 42"), OWN),
            Some(Notice::Message { id: 42 })
        );
    }

    #[test]
    fn own_and_foreign_notices_are_ignored() {
        let id = SessionId::generate();
        assert_eq!(parse_notice(&format!("{OWN}s {id} 7"), OWN), None);
        for junk in [
            "",
            "hello",
            &format!("{OTHER} s {id}"),
            &format!("{OTHER} s {id} 7 8"),
            &format!("{OTHER} s not-an-id 7"),
            &format!("{OTHER} m 1 2"),
            &format!("{OTHER} m x"),
            &format!("{OTHER} x 1"),
            &format!("zz{OTHER} m 1"),
            "\u{0} m 1",
        ] {
            assert_eq!(parse_notice(junk, OWN), None, "{junk:?}");
        }
    }

    #[test]
    fn a_description_never_shows_the_password() {
        let config: tokio_postgres::Config = "postgres://alice:hunter2@db.example:6543/app"
            .parse()
            .unwrap();
        assert_eq!(describe(&config), "alice@db.example:6543/app");
    }
}
