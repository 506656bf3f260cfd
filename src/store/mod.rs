//! Where everything is kept: a narrow interface over the database.
//!
//! Handlers, the live layer and the prune task talk to [`Store`] only. It knows nothing of HTTP and
//! takes the current time as a parameter, so tests can drive it with any clock. The SQLite backend
//! (the default) lives in [`sqlite`], the PostgreSQL backend for several instances in
//! [`postgres`]; both keep the same contract and run the same tests. The facade adds what is the
//! same on both: the read cache (on SQLite), and the timing of every write a request waits for
//! ([`WriteTimes`]).

mod cache;
mod error;
mod latency;
mod postgres;
mod sqlite;
mod types;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use cache::Cache;

pub use device::{AddedDevice, Ended};
pub use error::{StoreError, Unavailable};
pub use latency::{WRITE_BUCKETS, WriteTimes, WriteTimesSnapshot};
pub use postgres::PostgresTarget;
pub use sqlite::SCHEMA_VERSION;
pub use sqlite::{check_copy, sidecar};
pub use types::{
    CodeState, Durability, Notice, PageChange, Posted, Present, Saved, SessionData, SettingsRow,
    StoreOptions, StoreStats, StoredSettings,
};

use crate::chat::{Message, MessageBody};
use crate::clock::Millis;
use crate::session::SessionId;

/// Where a PostgreSQL URL points, for messages: user, host, port and database, never the
/// password.
pub fn describe_postgres(url: &str) -> String {
    match PostgresTarget::parse(url, None) {
        Ok(target) => postgres::describe(target.config()),
        Err(_) => "the configured PostgreSQL database".to_owned(),
    }
}

/// A count or number as SQL's 64-bit integer (a `LIMIT`, a change number), saturating.
fn sql_int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// Which end of the chat a query of messages reads from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    /// The oldest first, as pages show them.
    Oldest,
    /// The newest first (the newest of a page): turned around before they are returned.
    Newest,
}

/// Settings rows kept in memory, at most.
const CACHE_ROWS: usize = 100_000;

/// Rows read by cookie checks and not yet taken by their pages, at most.
const CHECKED_ROWS: usize = 10_000;

/// The store. Cheap to clone: every clone shares one pool, one writer, one cache and one
/// histogram of write times.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    cache: Arc<Cache>,
    /// On a shared database (where `cache` keeps nothing), the rows read by the cookie check of
    /// requests under way, each for its request's page to take once ([`Store::ended`],
    /// [`Store::load_checked`]); every write drops its rows here as it does from `cache`.
    checked: Arc<Cache>,
    /// The device lists, cached like the rows (SQLite only).
    devices: Arc<device::DeviceCache>,
    writes: Arc<WriteTimes>,
    /// At most this many chat messages are kept, checked at every post.
    keep_messages: usize,
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

// After the macro, which they use.
mod device;
mod link;
mod presence;
mod save;
pub use save::NewRow;

impl Store {
    /// Opens (creating if needed) the SQLite database at `path`, brings its schema up to date,
    /// and refuses a database written by a newer version or one that is not a database at all.
    pub fn open_sqlite(path: &Path, options: StoreOptions) -> anyhow::Result<Store> {
        let backend = Backend::Sqlite(sqlite::SqliteStore::open(path, options)?);
        Ok(Store::with(backend, Cache::new(CACHE_ROWS)))
    }

    fn with(backend: Backend, cache: Cache) -> Store {
        let shared = matches!(backend, Backend::Postgres(_));
        Store {
            backend,
            cache: Arc::new(cache),
            checked: Arc::new(if shared {
                Cache::new(CHECKED_ROWS)
            } else {
                Cache::disabled()
            }),
            devices: Arc::new(device::DeviceCache::new(!shared)),
            writes: Arc::default(),
            keep_messages: usize::MAX,
        }
    }

    /// This store, keeping at most `limit` chat messages (`--message-limit`): each post deletes,
    /// in its own transaction, the oldest beyond it. Without it, only the prune pass trims.
    pub fn keeping_messages(mut self, limit: usize) -> Store {
        self.keep_messages = limit;
        self
    }

    /// How long this store's writes have taken.
    pub fn write_times(&self) -> &WriteTimes {
        &self.writes
    }

    /// Runs one write a caller waits for, and records how long it took, failed or not.
    async fn timed<T>(&self, write: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let result = write.await;
        self.writes.observe(started.elapsed());
        result
    }

    /// Finishes the writes already queued and stops the database writer (on SQLite, joining its
    /// thread, so the last commit and the connection's close are done before this returns); on
    /// PostgreSQL, closes the pool. Any write after this fails with [`StoreError::WriterStopped`]
    /// (SQLite) or a closed pool (PostgreSQL).
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(s) => s.close().await,
            Backend::Postgres(p) => p.close(),
        }
    }

    /// Connects to the PostgreSQL database at `url` (over TLS as its `sslmode` and
    /// `sslrootcert` say), brings its schema up to date, and refuses a database written by a
    /// newer version or holding another program's tables.
    ///
    /// There is no read cache on this backend: another instance's write would make a cached row
    /// stale until its notification arrived, and a page must never show a value older than an
    /// acknowledged write. (A row read by a request's cookie check is kept only for that
    /// request's page: [`Store::load_checked`].)
    pub async fn open_postgres(url: &str, options: StoreOptions) -> anyhow::Result<Store> {
        let target = PostgresTarget::new(url, None).map_err(anyhow::Error::msg)?;
        Store::open_postgres_at(&target, options).await
    }

    /// [`Store::open_postgres`], for a target that may trust a CA of its own (`--database-ca`).
    pub async fn open_postgres_at(
        target: &PostgresTarget,
        options: StoreOptions,
    ) -> anyhow::Result<Store> {
        let backend =
            Backend::Postgres(postgres::PostgresStore::open(target, options, false).await?);
        Ok(Store::with(backend, Cache::disabled()))
    }

    /// Connects to the PostgreSQL database `target` names for a maintenance command: like
    /// [`Store::open_sqlite_existing`], it creates and upgrades nothing.
    pub async fn open_postgres_existing(
        target: &PostgresTarget,
        options: StoreOptions,
    ) -> anyhow::Result<Store> {
        let backend =
            Backend::Postgres(postgres::PostgresStore::open(target, options, true).await?);
        Ok(Store::with(backend, Cache::disabled()))
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
    /// fingerprint (see `Keys::fingerprints`). Returns the fingerprint the
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

    /// The row of session `id` for the page of a request whose cookie was just checked
    /// ([`Store::ended`]): the row that check read, taken once, when no write of the session came
    /// since; else read as [`Store::load`] reads it. That check started after the request
    /// arrived, so its row holds every write acknowledged before the request was sent, and the
    /// page costs no second round trip. Only for a request that was checked: anything else
    /// reads with [`Store::load`].
    pub async fn load_checked(&self, id: SessionId) -> Result<Option<StoredSettings>, StoreError> {
        match self.checked.take(id) {
            Some(entry) => Ok(entry),
            None => self.load(id).await,
        }
    }

    /// After a write of the rows `ids` committed: neither cache keeps them.
    fn wrote_rows(&self, ids: impl IntoIterator<Item = SessionId> + Clone) {
        self.cache.remove(ids.clone());
        self.checked.remove(ids);
    }

    /// When session `id`'s settings were last written (by any field), if it has a row: the
    /// rule for late offline edits compares it with when the edit was typed.
    pub async fn updated_at(&self, id: SessionId) -> Result<Option<Millis>, StoreError> {
        on_backend!(self, s => s.updated_at(id).await)
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
        let touched = self
            .timed(async { on_backend!(self, s => s.touch(id, now).await) })
            .await;
        self.wrote_rows([id]);
        touched
    }

    /// "Forget me": deletes session `id`'s row, unlinks its chat messages from it, and remembers
    /// the id as forgotten, in one transaction; an id that had neither a row nor a message is
    /// not remembered (there is nothing of it to refuse, and remembering it would let anyone
    /// grow the table for free). Returns whether it had either, and so was remembered.
    pub async fn forget(&self, id: SessionId, now: Millis) -> Result<bool, StoreError> {
        let forgotten = self
            .timed(async { on_backend!(self, s => s.forget(id, now).await) })
            .await;
        self.wrote_rows([id]);
        self.devices.remove([id]);
        forgotten
    }

    /// The `limit` most recently forgotten session ids, with when each was forgotten.
    pub async fn forgotten(&self, limit: usize) -> Result<Vec<(SessionId, Millis)>, StoreError> {
        on_backend!(self, s => s.forgotten(limit).await)
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
        self.devices.remove(deleted.iter().copied());
        self.wrote_rows(deleted);
        Ok(count)
    }

    /// Stores a chat message from `author` under their current username, and deletes the oldest
    /// beyond [`Store::keeping_messages`]. `nonce` makes a resend harmless: the same author and
    /// nonce store one message.
    pub async fn post_message(
        &self,
        author: SessionId,
        body: MessageBody,
        nonce: String,
        now: Millis,
    ) -> Result<Posted, StoreError> {
        let posted = self
            .timed(async {
                on_backend!(self, s => s.post_message(author, body, nonce, now, self.keep_messages).await)
            })
            .await;
        // Posting touched the author's row.
        self.wrote_rows([author]);
        posted
    }

    /// The newest `limit` messages, oldest first.
    /// Everything kept of session `id` (its settings row and the messages it sent), read in one
    /// snapshot.
    pub async fn session_data(&self, id: SessionId) -> Result<SessionData, StoreError> {
        on_backend!(self, s => s.session_data(id).await)
    }

    pub async fn recent_messages(&self, limit: usize) -> Result<Vec<Message>, StoreError> {
        self.messages_before(i64::MAX, limit).await
    }

    /// Up to `limit` messages with ids below `before`, the newest of them, oldest first: an older
    /// page of the chat (served by the primary key, like every read of messages by id).
    pub async fn messages_before(
        &self,
        before: i64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        on_backend!(self, s => s.messages_before(before, limit).await)
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
        let backend = Backend::Sqlite(sqlite::SqliteStore::open_existing(
            path,
            options,
            accept_older,
        )?);
        Ok(Store::with(backend, Cache::new(CACHE_ROWS)))
    }

    /// How many rows [`Store::prune_batch`] would delete in all at `cutoff`, deleting nothing:
    /// the dry run of pruning, with the same predicate.
    pub async fn count_stale(&self, cutoff: Millis) -> Result<usize, StoreError> {
        on_backend!(self, s => s.count_stale(cutoff).await)
    }

    /// How many devices [`Store::prune_devices_batch`] would sign out in all, changing nothing.
    pub async fn count_idle_devices(&self, cutoff: Millis) -> Result<usize, StoreError> {
        on_backend!(self, s => s.count_idle_devices(cutoff).await)
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
