//! Where settings are kept: a narrow interface over the database.
//!
//! Handlers, the live layer and the prune task talk to [`Store`] only. It knows nothing of HTTP and
//! takes the current time as a parameter, so tests can drive it with any clock. The SQLite backend
//! (the default) lives in [`sqlite`], the PostgreSQL backend for several instances in
//! [`postgres`]; both keep the same contract and run the same tests.

mod cache;
mod postgres;
mod sqlite;
mod writer;

use std::path::Path;
use std::sync::Arc;

use cache::Cache;

use crate::chat::{Message, MessageBody};
use crate::config::Durability;
use crate::session::SessionId;
use crate::settings::{Settings, SettingsChange};

pub use sqlite::SCHEMA_VERSION;

/// Where a PostgreSQL URL points, for messages: user, host, port and database, never the
/// password.
pub fn describe_postgres(url: &str) -> String {
    match url.parse() {
        Ok(config) => postgres::describe(&config),
        Err(_) => "the configured PostgreSQL database".to_owned(),
    }
}

/// Milliseconds since the Unix epoch: how every time is stored.
pub type Millis = i64;

/// The wall clock in [`Millis`].
pub fn now_millis() -> Millis {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Millis::try_from(since_epoch.as_millis()).unwrap_or(Millis::MAX)
}

/// How the database is used, on either backend.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// What a commit survives: SQLite's `synchronous` (`NORMAL` or `FULL`); on PostgreSQL,
    /// `synchronous_commit` off or on (with it off, a crash of this process loses nothing; a
    /// crash of the database server may lose the last moment of commits).
    pub durability: Durability,
    /// How long a statement waits for a lock held by another connection or process (SQLite's
    /// busy timeout, PostgreSQL's `lock_timeout`).
    pub busy_timeout: std::time::Duration,
}

/// A session's row as stored. The default is what a session without a row sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredSettings {
    /// The values.
    pub settings: Settings,
    /// Bumped by every write that changed a value; lets a live view tell newer from older.
    pub version: i64,
    /// The last time the row was read or written, give or take the touch window.
    pub read_at: Millis,
}

/// Where a settings change came from when a live page sent it: the page (its id, stable across
/// its reconnects), the form, and the change's number on that page. A change the page resends
/// (its acknowledgement was lost) is then applied once, whichever instance it reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageChange {
    pub page: String,
    pub form: &'static str,
    pub seq: u64,
}

/// What saving a live page's change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageSave {
    /// Applied; the row as committed.
    Saved(StoredSettings),
    /// This page's change of that number (or a later one) was applied before: nothing changed.
    Replayed,
    /// The session was forgotten: its id is never written again.
    Forgotten,
}

/// The outcome of posting a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// The stored message.
    pub message: Message,
    /// True when this author had already posted this nonce: nothing new was stored.
    pub duplicate: bool,
}

/// Why the store could not answer. Its `Display` is for logs; users see [`Unavailable::message`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("no database connection available: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("database task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the database file {0} is missing or was replaced; restart to use a new one")]
    Vanished(String),
    #[error("the database writer stopped")]
    WriterStopped,
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("database error: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("no database connection available: {0}")]
    PostgresPool(#[from] deadpool_postgres::PoolError),
}

/// What another instance did, as heard through the database (PostgreSQL only). Each names what
/// changed; the data itself is read from the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Session `id`'s settings were saved and now have `version`.
    SettingsChanged { id: SessionId, version: i64 },
    /// Session `id` was forgotten at `at`.
    Forgotten { id: SessionId, at: Millis },
    /// Chat message `id` was stored.
    Message { id: i64 },
    /// The listening connection was re-established: anything may have happened meanwhile.
    Resync,
}

/// What a store failure means for the person who asked, in the few kinds they can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The disk (or the configured database size) is full.
    DiskFull,
    /// The database or its folder cannot be written (read-only storage, missing files).
    ReadOnly,
    /// Another process held the database locked for longer than the busy timeout.
    Busy,
    /// Anything else.
    Failed,
}

impl Unavailable {
    /// A sentence for the user; it always says that nothing was changed.
    pub fn message(self) -> &'static str {
        match self {
            Unavailable::DiskFull => {
                "The server's disk is full, so nothing was changed. What was saved before is safe; please try again later."
            }
            Unavailable::ReadOnly => {
                "The server cannot write to its database right now, so nothing was changed. What was saved before is safe; please try again later."
            }
            Unavailable::Busy => {
                "The server's database is busy, so nothing was changed. Please try again in a moment."
            }
            Unavailable::Failed => {
                "The database is not available right now, so nothing was changed. Please try again in a moment."
            }
        }
    }

    /// A short reason for logs and the health endpoint.
    pub fn reason(self) -> &'static str {
        match self {
            Unavailable::DiskFull => "disk full",
            Unavailable::ReadOnly => "database not writable",
            Unavailable::Busy => "database locked",
            Unavailable::Failed => "database error",
        }
    }
}

impl StoreError {
    /// True when the database connection was found closed: nothing was done on it, or what was
    /// done may be done again.
    pub fn is_closed_connection(&self) -> bool {
        match self {
            StoreError::Postgres(e)
            | StoreError::PostgresPool(deadpool_postgres::PoolError::Backend(e)) => e.is_closed(),
            _ => false,
        }
    }

    /// What kind of failure this is, for the user.
    pub fn unavailable(&self) -> Unavailable {
        use rusqlite::ErrorCode;
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => match e.code {
                ErrorCode::DiskFull => Unavailable::DiskFull,
                ErrorCode::ReadOnly | ErrorCode::CannotOpen => Unavailable::ReadOnly,
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Unavailable::Busy,
                // A write the operating system refused, not for lack of space (that is
                // SQLITE_FULL): the storage has turned read-only or the files immutable.
                ErrorCode::SystemIoFailure
                    if e.extended_code == rusqlite::ffi::SQLITE_IOERR_WRITE =>
                {
                    Unavailable::ReadOnly
                }
                _ => Unavailable::Failed,
            },
            StoreError::Vanished(_) => Unavailable::ReadOnly,
            StoreError::PostgresPool(deadpool_postgres::PoolError::Timeout(_)) => Unavailable::Busy,
            StoreError::PostgresPool(deadpool_postgres::PoolError::Backend(e))
            | StoreError::Postgres(e) => {
                use tokio_postgres::error::SqlState;
                match e.code() {
                    Some(&SqlState::DISK_FULL) => Unavailable::DiskFull,
                    Some(&SqlState::READ_ONLY_SQL_TRANSACTION) => Unavailable::ReadOnly,
                    Some(
                        &SqlState::LOCK_NOT_AVAILABLE
                        | &SqlState::T_R_DEADLOCK_DETECTED
                        | &SqlState::T_R_SERIALIZATION_FAILURE
                        | &SqlState::TOO_MANY_CONNECTIONS
                        | &SqlState::CANNOT_CONNECT_NOW,
                    ) => Unavailable::Busy,
                    _ => Unavailable::Failed,
                }
            }
            _ => Unavailable::Failed,
        }
    }
}

/// Settings rows kept in memory, at most.
const CACHE_ROWS: usize = 100_000;

/// The settings store. Cheap to clone: every clone shares one pool, one writer and one cache.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    cache: Arc<Cache>,
}

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PostgresStore),
}

/// Runs the same call on whichever backend the store has.
macro_rules! on_backend {
    ($store:expr, $backend:ident => $call:expr) => {
        match &$store.backend {
            Backend::Sqlite($backend) => $call,
            Backend::Postgres($backend) => $call,
        }
    };
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path`, brings its schema up to date,
    /// and refuses a database written by a newer version or one that is not a database at all.
    pub fn open_sqlite(path: &Path, options: StoreOptions) -> anyhow::Result<Store> {
        Ok(Store {
            backend: Backend::Sqlite(sqlite::SqliteStore::open(path, options)?),
            cache: Arc::new(Cache::new(CACHE_ROWS)),
        })
    }

    /// Connects to the PostgreSQL database at `url`, brings its schema up to date, and refuses
    /// a database written by a newer version or holding another program's tables.
    ///
    /// There is no read cache on this backend: another instance's write would make a cached row
    /// stale until its notification arrived, and a page must never show a value older than an
    /// acknowledged write.
    pub async fn open_postgres(url: &str, options: StoreOptions) -> anyhow::Result<Store> {
        Ok(Store {
            backend: Backend::Postgres(postgres::PostgresStore::open(url, options, false).await?),
            cache: Arc::new(Cache::disabled()),
        })
    }

    /// Connects to the PostgreSQL database at `url` for a maintenance command: like
    /// [`Store::open_sqlite_existing`], it creates and upgrades nothing.
    pub async fn open_postgres_existing(url: &str, options: StoreOptions) -> anyhow::Result<Store> {
        Ok(Store {
            backend: Backend::Postgres(postgres::PostgresStore::open(url, options, true).await?),
            cache: Arc::new(Cache::disabled()),
        })
    }

    /// Starts hearing what other instances do, on `notices`, until `shutdown`; `None` for a
    /// store no other instance can share.
    pub fn listen(
        &self,
        notices: tokio::sync::mpsc::Sender<Notice>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(p) => Some(p.listen(notices, shutdown)),
        }
    }

    /// Checks that every instance of a shared database signs cookies with the same key, by
    /// fingerprint (see [`crate::session::Keys::fingerprints`]). Returns the fingerprint the
    /// database holds when it is neither `current` nor one of `previous`; always `None` for a
    /// database only one instance uses (SQLite).
    pub async fn claim_key(
        &self,
        current: &str,
        previous: &[String],
    ) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(p) => p.claim_key(current, previous).await,
        }
    }

    /// The row of session `id`, if it ever saved anything (and was not pruned since).
    pub async fn load(&self, id: SessionId) -> Result<Option<StoredSettings>, StoreError> {
        let ticket = match self.cache.get(id) {
            Ok(entry) => return Ok(entry),
            Err(ticket) => ticket,
        };
        let entry = on_backend!(self, s => s.load(id).await?);
        self.cache.fill(id, entry.clone(), ticket);
        Ok(entry)
    }

    /// Applies `change` to session `id`'s row, creating the row if needed, in one transaction,
    /// and marks it used at `now`. Returns the row as committed, or `None` when the session was
    /// forgotten: its id is never written again.
    pub async fn save(
        &self,
        id: SessionId,
        change: SettingsChange,
        now: Millis,
    ) -> Result<Option<StoredSettings>, StoreError> {
        let saved = on_backend!(self, s => s.save(id, change, now).await);
        self.cache.remove([id]);
        saved
    }

    /// Like [`Store::save`], for a change a live page sent: applied only if that page has not had
    /// a change of this number (or a later one) applied before.
    pub async fn save_from_page(
        &self,
        id: SessionId,
        change: SettingsChange,
        now: Millis,
        from: PageChange,
    ) -> Result<PageSave, StoreError> {
        let saved = on_backend!(self, s => s.save_from_page(id, change, now, from).await);
        self.cache.remove([id]);
        saved
    }

    /// Forgets which changes pages had applied before `before` (pages replay within seconds).
    pub async fn prune_page_acks(&self, before: Millis) -> Result<usize, StoreError> {
        on_backend!(self, s => s.prune_page_acks(before).await)
    }

    /// Marks session `id`'s row used at `now` and returns it as it is after that, or `None` when
    /// there is no row (it was never saved, or was pruned or forgotten in the meantime).
    pub async fn touch(
        &self,
        id: SessionId,
        now: Millis,
    ) -> Result<Option<StoredSettings>, StoreError> {
        let touched = on_backend!(self, s => s.touch(id, now).await);
        self.cache.remove([id]);
        touched
    }

    /// "Forget me": deletes session `id`'s row and remembers the id as forgotten, in one
    /// transaction. Returns whether there was a row.
    pub async fn forget(&self, id: SessionId, now: Millis) -> Result<bool, StoreError> {
        let forgotten = on_backend!(self, s => s.forget(id, now).await);
        self.cache.remove([id]);
        forgotten
    }

    /// Every forgotten session id, with when it was forgotten.
    pub async fn forgotten(&self) -> Result<Vec<(SessionId, Millis)>, StoreError> {
        on_backend!(self, s => s.forgotten().await)
    }

    /// Stops remembering ids forgotten before `before` (their cookies have expired by then).
    pub async fn prune_forgotten(&self, before: Millis) -> Result<usize, StoreError> {
        on_backend!(self, s => s.prune_forgotten(before).await)
    }

    /// Deletes up to `limit` rows last used before `cutoff`, stalest first, in one short
    /// transaction. Returns how many were deleted; fewer than `limit` means none are left.
    pub async fn prune_batch(&self, cutoff: Millis, limit: usize) -> Result<usize, StoreError> {
        let deleted = on_backend!(self, s => s.prune_batch(cutoff, limit).await?);
        let count = deleted.len();
        self.cache.remove(deleted);
        Ok(count)
    }

    /// Stores a chat message from `author` under their current username. `nonce` makes a resend
    /// harmless: the same author and nonce store one message.
    pub async fn post_message(
        &self,
        author: SessionId,
        body: MessageBody,
        nonce: String,
        now: Millis,
    ) -> Result<Posted, StoreError> {
        let posted = on_backend!(self, s => s.post_message(author, body, nonce, now).await);
        // Posting touched the author's row.
        self.cache.remove([author]);
        posted
    }

    /// The newest `limit` messages, oldest first.
    pub async fn recent_messages(&self, limit: usize) -> Result<Vec<Message>, StoreError> {
        on_backend!(self, s => s.recent_messages(limit).await)
    }

    /// Up to `limit` messages with ids above `after`, oldest first.
    pub async fn messages_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        on_backend!(self, s => s.messages_after(after, limit).await)
    }

    /// Deletes up to `limit` messages created before `created_before` or older than the newest
    /// `keep_newest`, oldest first, in one short transaction. Returns how many were deleted.
    pub async fn prune_messages_batch(
        &self,
        created_before: Millis,
        keep_newest: usize,
        limit: usize,
    ) -> Result<usize, StoreError> {
        on_backend!(self, s => s.prune_messages_batch(created_before, keep_newest, limit).await)
    }

    /// Does the database answer, and take a write? Reads a row and writes one (in its own tiny
    /// table), so a full disk, read-only storage or a lock held elsewhere all show.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_backend!(self, s => s.ping().await)
    }

    /// Opens the existing SQLite database at `path` for a maintenance command (`backup`,
    /// `prune`, `stats`), beside a server that may be running on it. Unlike
    /// [`Store::open_sqlite`] it creates nothing and upgrades nothing: a missing file, another
    /// program's database or another schema version is refused before anything is written.
    ///
    /// With `accept_older`, a database of an older schema version is opened as it is: `backup`
    /// takes a copy before an upgrade. Nothing else may run on it.
    pub fn open_sqlite_existing(
        path: &Path,
        options: StoreOptions,
        accept_older: bool,
    ) -> anyhow::Result<Store> {
        Ok(Store {
            backend: Backend::Sqlite(sqlite::SqliteStore::open_existing(
                path,
                options,
                accept_older,
            )?),
            cache: Arc::new(Cache::new(CACHE_ROWS)),
        })
    }

    /// How many rows [`Store::prune_batch`] would delete in all at `cutoff`, deleting nothing:
    /// the dry run of pruning, with the same predicate.
    pub async fn count_stale(&self, cutoff: Millis) -> Result<usize, StoreError> {
        on_backend!(self, s => s.count_stale(cutoff).await)
    }

    /// How many messages [`Store::prune_messages_batch`] would delete in all, deleting nothing.
    pub async fn count_old_messages(
        &self,
        created_before: Millis,
        keep_newest: usize,
    ) -> Result<usize, StoreError> {
        on_backend!(self, s => s.count_old_messages(created_before, keep_newest).await)
    }

    /// How many ids [`Store::prune_forgotten`] would stop remembering, deleting nothing.
    pub async fn count_expired_forgotten(&self, before: Millis) -> Result<usize, StoreError> {
        on_backend!(self, s => s.count_expired_forgotten(before).await)
    }

    /// What the database holds and how big it is.
    pub async fn stats(&self) -> Result<StoreStats, StoreError> {
        on_backend!(self, s => s.stats().await)
    }

    /// Writes a consistent copy of the database into `file` (an empty file that exists) while
    /// the database stays in use, and returns what an integrity check says of the copy (`ok`
    /// when it is sound). The caller owns `file`: on an error it holds nothing usable.
    pub async fn backup_into(&self, file: &Path) -> Result<String, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.backup_into(file).await,
            Backend::Postgres(_) => Err(StoreError::Unsupported(
                "a PostgreSQL database is backed up with pg_dump",
            )),
        }
    }
}

/// What the database holds, as `livesession stats` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Settings rows: browsers that saved something.
    pub sessions: u64,
    /// Chat messages.
    pub messages: u64,
    /// Ids of forgotten browsers still remembered.
    pub forgotten: u64,
    /// The size of the database file, in bytes.
    pub database_bytes: u64,
    /// The size of its write-ahead log, in bytes (not yet checkpointed into the file).
    pub wal_bytes: u64,
    /// The least recent use of a settings row (`read_at`), if there is a row.
    pub oldest_activity: Option<Millis>,
    /// The most recent use of a settings row.
    pub newest_activity: Option<Millis>,
    /// When the oldest chat message kept was posted.
    pub oldest_message: Option<Millis>,
    /// When the newest chat message was posted.
    pub newest_message: Option<Millis>,
}
