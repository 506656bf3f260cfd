//! The PostgreSQL backend, for several instances sharing one database.
//!
//! Statements are prepared once per pooled connection (deadpool's statement cache) and take
//! every value as a parameter. Each write that other instances must hear about sends a
//! `NOTIFY` in its own transaction, so the notification goes out exactly when the write commits
//! (and never for a write that rolled back). Payloads are tiny — ids and versions — and the
//! receiving instance reads the data itself; see [`Notice`](super::Notice) and [`listen`].
//!
//! Locks keep the contract that SQLite's single writer gave for free:
//! - a save and a "forget me" of the same session take that session's advisory lock, so a save
//!   racing a forget can never bring the forgotten row back (a save is one call of the
//!   `livesession_save` function of `schema.postgres.sql`: lock, upsert and notification in one
//!   round trip);
//! - posts take the chat's advisory lock, so message ids commit in order and a page that has
//!   seen message N has seen every message below N it ever will;
//! - pruning deletes with `FOR UPDATE SKIP LOCKED` ([`prune`]).
//!
//! Every operation goes through [`PostgresStore::retry`]: one that finds its pooled connection
//! closed (a database restart, a dropped network) runs once more on a fresh one.
//!
//! - [`schema`]: `schema.postgres.sql`, its version, the signing key's fingerprint;
//! - [`listen`]: the listening connection that hears the other instances;
//! - [`chat`]: posting and reading chat messages, and a session's export;
//! - [`device`]: each session's devices, under the session's lock, and the devices signed out;
//! - [`forget`]: "forget me", under the session's lock;
//! - [`link`]: one-time link codes, spent under the code's row lock;
//! - [`presence`]: the instances' shared presence lists;
//! - [`prune`]: what pruning deletes, and the dry run's counts;
//! - [`target`]: the URL read as libpq reads it (`sslmode`, `sslrootcert`);
//! - [`tls`]: TLS with rustls, the certificate checks, and what the log says of them.

mod chat;
mod device;
mod forget;
mod link;
mod listen;
mod presence;
mod prune;
mod schema;
mod target;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{
    Durability, PageChange, Saved, StoreError, StoreOptions, StoreStats, StoredSettings, sql_int,
};
use crate::clock::{Millis, now_millis};
use crate::session::SessionId;
use crate::settings::{Settings, SettingsChange, Theme, Username};
use listen::CHANNEL;
pub use target::PostgresTarget;
use tls::Connector;

/// A statement parameter.
type Param<'a> = dyn tokio_postgres::types::ToSql + Sync + 'a;

/// Holds a session's advisory lock until the transaction ends. A "forget me" takes it first (a
/// save takes the same lock inside `livesession_save`); the statement after it takes its snapshot
/// once the lock is held, so it sees what the other committed. Pipelining keeps that order:
/// statements sent back to back on one connection run one after the other.
const LOCK_SESSION: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))";

/// Holds the advisory lock of one `bigint` key (the chat's, the schema's) until the transaction
/// ends.
const ADVISORY_LOCK: &str = "SELECT pg_advisory_xact_lock($1)";

/// Sends a notification when the transaction commits (never for one that rolls back).
const NOTIFY: &str = "SELECT pg_notify($1, $2)";

/// Connections in each instance's pool.
const POOL_SIZE: usize = 16;

/// How long a caller waits for a free pooled connection, or for a new one to connect.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest one statement may run: a request waits no longer than that on a database that
/// stopped answering.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub(super) struct PostgresStore {
    pool: Pool,
    /// How to reach the database, for the listening connection.
    config: Arc<Connector>,
    /// The start of every notification this instance sends, so it can skip its own.
    instance: Arc<str>,
}

impl PostgresStore {
    /// Connects, applies or upgrades the schema, and refuses a database from a newer version or
    /// one that holds another program's tables of the same names. With `existing`, for the
    /// maintenance commands, it creates and upgrades nothing: the schema must be there, at this
    /// build's version.
    pub(super) async fn open(
        target: &PostgresTarget,
        options: StoreOptions,
        existing: bool,
    ) -> anyhow::Result<PostgresStore> {
        let mut config = target.config().clone();
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

        let connector = Connector::new(target, config)
            .map_err(|e| anyhow!("cannot connect to PostgreSQL at {name}: {e}"))?;
        let manager = Manager::from_config(
            connector.config().clone(),
            connector.tls(),
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
        let handshakes = connector.handshakes();
        let mut client = match pool.get().await {
            Ok(client) => client,
            // A refused certificate is one sentence of its own, naming what did not match.
            Err(e) => {
                return Err(match tls::refusal(target, &e) {
                    Some(sentence) => anyhow!(sentence),
                    None => anyhow::Error::new(e)
                        .context(format!("cannot connect to PostgreSQL at {name}")),
                });
            }
        };
        // Only this connection has been made yet: it was encrypted if it checked a certificate.
        tls::log_connected(target, connector.handshakes() > handshakes);
        let schema = if existing {
            schema::check(&client).await
        } else {
            schema::migrate(&mut client).await
        };
        schema.with_context(|| format!("cannot use the PostgreSQL database at {name}"))?;
        drop(client);
        Ok(PostgresStore {
            pool,
            config: Arc::new(connector),
            instance: format!("{:016x} ", rand_u64()).into(),
        })
    }

    /// Closes the pool: every connection, idle or returned later, is closed.
    pub(super) fn close(&self) {
        self.pool.close();
    }

    /// Runs `op` on a pooled connection, and once more on a fresh one when the connection it got
    /// turned out to be closed (the database server restarted, or the network dropped it).
    /// Every operation of this store may run twice without harm: reads, upserts of the same
    /// values, deletes, and posts carrying a nonce. When the first run did commit and only its
    /// answer was lost, the second answers as a repeat does: a page's change is
    /// [`Saved::Replayed`], a post is a `duplicate`, "forget me" finds nothing left to forget
    /// (the id stays remembered in the database, which refuses every write under it),
    /// and a prune batch counts only what the second run deleted.
    async fn retry<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: Fn(Object) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        match self.attempt(&op).await {
            Err(e) if e.is_closed_connection() => {
                tracing::debug!("a pooled PostgreSQL connection was closed; retrying on another");
                // Whatever closed this one most likely closed its neighbours too, which may not
                // know it yet: the retry (and those after it) get fresh connections.
                self.pool.retain(|_, _| false);
                self.attempt(&op).await
            }
            result => result,
        }
    }

    async fn attempt<T, F, Fut>(&self, op: &F) -> Result<T, StoreError>
    where
        F: Fn(Object) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        op(self.pool.get().await?).await
    }

    pub(super) async fn load(&self, id: SessionId) -> Result<Option<StoredSettings>, StoreError> {
        self.retry(|client| async move {
            let statement = client
                .prepare_cached(
                    "SELECT username, theme, version, read_at FROM settings WHERE session_id = $1",
                )
                .await?;
            let row = client.query_opt(&statement, &[&id.as_uuid()]).await?;
            Ok(row.as_ref().map(stored_settings).transpose()?)
        })
        .await
    }

    pub(super) async fn updated_at(&self, id: SessionId) -> Result<Option<Millis>, StoreError> {
        self.retry(|client| async move {
            let statement = client
                .prepare_cached("SELECT updated_at FROM settings WHERE session_id = $1")
                .await?;
            let row = client.query_opt(&statement, &[&id.as_uuid()]).await?;
            Ok(row.map(|row| row.try_get(0)).transpose()?)
        })
        .await
    }

    pub(super) async fn save(
        &self,
        id: SessionId,
        change: SettingsChange,
        now: Millis,
        from: Option<PageChange>,
    ) -> Result<Saved, StoreError> {
        let username = change.username.as_ref().map(Username::as_str);
        let theme = change.theme.map(Theme::as_str);
        let notice = &format!("{}s {id} ", self.instance);
        let page = from.as_ref().map(|from| from.page.as_str());
        let form = from.as_ref().map(|from| from.form);
        let seq = from.as_ref().map(|from| sql_int(from.seq));
        self.retry(|client| async move {
            // The lock, the replay check, the upsert and the notification, in one statement (see
            // `livesession_save` in schema.postgres.sql).
            let statement = client
                .prepare_cached("SELECT * FROM livesession_save($1, $2, $3, $4, $5, $6, $7, $8)")
                .await?;
            let params: [&Param<'_>; 8] = [
                &id.as_uuid(),
                &username,
                &theme,
                &now,
                notice,
                &page,
                &form,
                &seq,
            ];
            let Some(row) = client.query_opt(&statement, &params).await? else {
                return Ok(Saved::Forgotten);
            };
            if row.try_get::<_, bool>(0)? {
                return Ok(Saved::Replayed);
            }
            Ok(Saved::Applied(settings_from(&row, 1)?))
        })
        .await
    }

    pub(super) async fn touch(
        &self,
        id: SessionId,
        now: Millis,
    ) -> Result<Option<StoredSettings>, StoreError> {
        self.retry(|client| async move {
            let statement = client
                .prepare_cached(
                    "UPDATE settings SET read_at = greatest(read_at, $2) WHERE session_id = $1
                     RETURNING username, theme, version, read_at",
                )
                .await?;
            let row = client.query_opt(&statement, &[&id.as_uuid(), &now]).await?;
            Ok(row.as_ref().map(stored_settings).transpose()?)
        })
        .await
    }

    pub(super) async fn forgotten(
        &self,
        limit: usize,
    ) -> Result<Vec<(SessionId, Millis)>, StoreError> {
        let limit = sql_int(limit);
        self.retry(|client| async move {
            let rows = client
                .query(
                    "SELECT session_id, forgotten_at FROM forgotten
                     ORDER BY forgotten_at DESC LIMIT $1",
                    &[&limit],
                )
                .await?;
            let mut forgotten = Vec::with_capacity(rows.len());
            for row in &rows {
                forgotten.push((SessionId::from_uuid(row.try_get(0)?), row.try_get(1)?));
            }
            Ok(forgotten)
        })
        .await
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO health (id, checked_at) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
            &[&now_millis()],
        )
        .await?;
        Ok(())
    }

    /// Runs one `SELECT count(*)` statement.
    async fn count(&self, sql: &'static str, params: &[&Param<'_>]) -> Result<usize, StoreError> {
        self.retry(|client| async move {
            let statement = client.prepare_cached(sql).await?;
            let n: i64 = client.query_one(&statement, params).await?.try_get(0)?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
        .await
    }

    /// Runs one statement; returns how many rows it changed.
    async fn execute(&self, sql: &'static str, params: &[&Param<'_>]) -> Result<usize, StoreError> {
        self.retry(|client| async move {
            let statement = client.prepare_cached(sql).await?;
            let rows = client.execute(&statement, params).await?;
            Ok(usize::try_from(rows).unwrap_or(usize::MAX))
        })
        .await
    }

    /// Row counts and activity times, read in one statement (one snapshot), and the size of
    /// the database on disk.
    pub(super) async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.retry(|client| async move {
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
            let unsigned = |i: usize| row.try_get::<_, i64>(i).map(i64::unsigned_abs);
            Ok(StoreStats {
                sessions: unsigned(0)?,
                messages: unsigned(1)?,
                forgotten: unsigned(2)?,
                oldest_activity: row.try_get(3)?,
                newest_activity: row.try_get(4)?,
                oldest_message: row.try_get(5)?,
                newest_message: row.try_get(6)?,
                database_bytes: unsigned(7)?,
                wal_bytes: 0,
            })
        })
        .await
    }
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

/// A settings row (`username, theme, version, read_at`). A column of another type (a schema
/// that drifted) is an error like any other database error, never a panic.
fn stored_settings(row: &Row) -> Result<StoredSettings, tokio_postgres::Error> {
    settings_from(row, 0)
}

/// A settings row whose four columns start at column `first`.
pub(super) fn settings_from(
    row: &Row,
    first: usize,
) -> Result<StoredSettings, tokio_postgres::Error> {
    Ok(StoredSettings {
        settings: settings_at(row, first)?,
        version: row.try_get(first + 2)?,
        read_at: row.try_get(first + 3)?,
    })
}

/// The settings in a row whose `username` and `theme` columns start at column `first`.
fn settings_at(row: &Row, first: usize) -> Result<Settings, tokio_postgres::Error> {
    let theme: &str = row.try_get(first + 1)?;
    Ok(Settings {
        username: Username::from_trusted(row.try_get(first)?),
        theme: Theme::parse(theme).unwrap_or_default(),
    })
}

/// A random number from the operating system, to tell instances apart.
fn rand_u64() -> u64 {
    u64::from_le_bytes(Uuid::new_v4().as_bytes()[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_never_shows_the_password() {
        let config: tokio_postgres::Config = "postgres://alice:hunter2@db.example:6543/app"
            .parse()
            .unwrap();
        assert_eq!(describe(&config), "alice@db.example:6543/app");
    }
}
