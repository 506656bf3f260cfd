//! The SQLite backend: one database file in WAL mode. Reads run on a small r2d2 pool, on tokio's
//! blocking threads so the async workers never wait on the disk. Writes go to the one writer
//! thread ([`super::writer`]), which commits whatever has queued up in one `BEGIN IMMEDIATE`
//! transaction (group commit), and answers each write only after that commit.
//!
//! - [`schema`]: `schema.sql`, the upgrades, the settings of every connection;
//! - [`chat`]: posting and reading chat messages, and a session's export;
//! - [`device`]: each session's devices, and the devices signed out;
//! - [`link`]: one-time link codes, made, cancelled and spent through the writer;
//! - [`prune`]: what pruning deletes, and the dry run's counts;
//! - [`backup`]: the online backup and the files' sizes.

mod backup;
mod chat;
mod device;
mod link;
mod prune;
mod schema;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OptionalExtension, params};

pub use backup::{check_copy, sidecar};
pub use schema::SCHEMA_VERSION;

use super::writer::{Guard, Writer};
use super::{
    NewRow, PageChange, Saved, StoreError, StoreOptions, StoreStats, StoredSettings, sql_int,
};

use crate::clock::{Millis, now_millis};
use crate::session::SessionId;
use crate::settings::{Settings, SettingsChange, Theme, Username};
use schema::{configure, migrate, open_current};

/// How long a caller waits for a free pooled connection.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections in the pool. Readers run concurrently in WAL mode; writers queue on the lock.
const POOL_SIZE: u32 = 8;

/// "Forget me" unlinks the browser's chat messages from it: they stay in the chat, under the name
/// they were sent with, but their author becomes nobody, and their nonce (chosen by the browser's
/// pages) is replaced by one made of the message's id, unique among nobody's messages.
const UNLINK_MESSAGES: &str = "UPDATE messages SET author_session = ?2, nonce = 'forgotten-' || id
                               WHERE author_session = ?1";

/// Remembers session `?1` as forgotten at `?2`.
const REMEMBER_FORGOTTEN: &str = "INSERT INTO forgotten (session_id, forgotten_at) VALUES (?1, ?2)
                                  ON CONFLICT (session_id) DO NOTHING";

#[derive(Clone)]
pub(super) struct SqliteStore {
    /// Readers: run concurrently in WAL mode, each seeing the last commit.
    pool: r2d2::Pool<SqliteConnectionManager>,
    /// One permit per pooled connection: a read waits for one before it takes a blocking
    /// thread, so a burst of reads keeps [`POOL_SIZE`] threads busy instead of parking hundreds
    /// on the pool (each with its stack and its allocator's pages).
    readers: Arc<tokio::sync::Semaphore>,
    /// The one writer, with group commit.
    writer: Writer,
    /// Where the database file is.
    path: Arc<PathBuf>,
}

impl SqliteStore {
    pub(super) fn open(path: &Path, options: StoreOptions) -> anyhow::Result<SqliteStore> {
        create_private(path)
            .with_context(|| format!("cannot create the database {}", path.display()))?;
        let mut conn = Connection::open(path)
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        configure(&mut conn, options)
            .map_err(anyhow::Error::from)
            .and_then(|()| migrate(&mut conn))
            .with_context(|| format!("cannot use the database {}", path.display()))?;
        SqliteStore::start(conn, path, options)
    }

    /// Starts the writer thread on `conn`, the configured connection to the database at `path`,
    /// and opens the readers' pool on the same file.
    fn start(conn: Connection, path: &Path, options: StoreOptions) -> anyhow::Result<SqliteStore> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot inspect the database {}", path.display()))?;
        let writer = Writer::start(conn, same_file(path, (meta.dev(), meta.ino())))
            .with_context(|| format!("cannot start the writer thread for {}", path.display()))?;

        let manager =
            SqliteConnectionManager::file(path).with_init(move |conn| configure(conn, options));
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(POOL_TIMEOUT)
            // A connection to a local file does not go stale: no test query per checkout.
            .test_on_check_out(false)
            .build(manager)
            .with_context(|| format!("cannot open a connection pool on {}", path.display()))?;
        Ok(SqliteStore {
            pool,
            readers: Arc::new(tokio::sync::Semaphore::new(POOL_SIZE as usize)),
            writer,
            path: Arc::new(path.to_path_buf()),
        })
    }

    /// Commits the writes queued so far and stops the writer thread, waiting for it to end.
    pub(super) async fn close(&self) {
        self.writer.stop().await;
    }

    /// Runs `work` with a pooled connection on a blocking thread.
    async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let pool = self.pool.clone();
        // Past the pool's own timeout the read goes ahead without a permit, and the pool says
        // it had no connection, as it would have.
        let permit = tokio::time::timeout(POOL_TIMEOUT, Arc::clone(&self.readers).acquire_owned())
            .await
            .ok()
            .and_then(Result::ok);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut conn = pool.get()?;
            Ok(work(&mut conn)?)
        })
        .await?
    }

    pub(super) async fn load(&self, id: SessionId) -> Result<Option<StoredSettings>, StoreError> {
        self.run(move |conn| {
            conn.prepare_cached(
                "SELECT username, theme, version, read_at FROM settings WHERE session_id = ?1",
            )?
            .query_row([id.to_key()], stored_settings)
            .optional()
        })
        .await
    }

    pub(super) async fn updated_at(&self, id: SessionId) -> Result<Option<Millis>, StoreError> {
        self.run(move |conn| {
            conn.prepare_cached("SELECT updated_at FROM settings WHERE session_id = ?1")?
                .query_row([id.to_key()], |row| row.get(0))
                .optional()
        })
        .await
    }

    pub(super) async fn save(
        &self,
        id: SessionId,
        change: SettingsChange,
        now: Millis,
        from: Option<PageChange>,
        new_row: NewRow,
    ) -> Result<Saved, StoreError> {
        self.writer
            .write(move |tx| {
                if let Some(from) = &from {
                    let acked: Option<i64> = tx
                        .prepare_cached(
                            "SELECT seq FROM page_acks WHERE session_id = ?1 AND page = ?2 AND form = ?3",
                        )?
                        .query_row(params![id.to_key(), from.page, from.form], |row| row.get(0))
                        .optional()?;
                    if acked.is_some_and(|acked| acked >= sql_int(from.seq)) {
                        return Ok(Saved::Replayed);
                    }
                }
                let sql = match new_row {
                    NewRow::Make => UPSERT,
                    NewRow::Refuse => UPDATE,
                };
                let saved = save_row(tx, sql, id, &change, now)?;
                let Some(saved) = saved else {
                    return Ok(match new_row {
                        NewRow::Make => Saved::Forgotten,
                        NewRow::Refuse => Saved::NoRow,
                    });
                };
                if let Some(from) = from {
                    tx.prepare_cached(
                        "INSERT INTO page_acks (session_id, page, form, seq, acked_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (session_id, page, form) DO UPDATE
                             SET seq = max(seq, excluded.seq), acked_at = excluded.acked_at",
                    )?
                    .execute(params![id.to_key(), from.page, from.form, sql_int(from.seq), now])?;
                }
                Ok(Saved::Applied(saved))
            })
            .await
    }

    pub(super) async fn touch(
        &self,
        id: SessionId,
        now: Millis,
    ) -> Result<Option<StoredSettings>, StoreError> {
        self.writer
            .write(move |tx| {
                let touched = tx
                    .prepare_cached(
                        "UPDATE settings SET read_at = max(read_at, ?2) WHERE session_id = ?1
                     RETURNING username, theme, version, read_at",
                    )?
                    .query_row(params![id.to_key(), now], stored_settings)
                    .optional()?;
                Ok(touched)
            })
            .await
    }

    pub(super) async fn forget(&self, id: SessionId, now: Millis) -> Result<bool, StoreError> {
        self.writer
            .write(move |tx| {
                let deleted = tx
                    .prepare_cached("DELETE FROM settings WHERE session_id = ?1")?
                    .execute([id.to_key()])?;
                let unlinked = tx
                    .prepare_cached(UNLINK_MESSAGES)?
                    .execute(params![id.to_key(), SessionId::NOBODY.to_key()])?;
                let devices = device::delete_devices(tx, id)?;
                let had_data = deleted + unlinked + devices > 0;
                if had_data {
                    tx.prepare_cached(REMEMBER_FORGOTTEN)?
                        .execute(params![id.to_key(), now])?;
                }
                Ok(had_data)
            })
            .await
    }

    pub(super) async fn forgotten(
        &self,
        limit: usize,
    ) -> Result<Vec<(SessionId, Millis)>, StoreError> {
        let limit = sql_int(limit);
        self.run(move |conn| {
            let mut statement = conn.prepare(
                "SELECT session_id, forgotten_at FROM forgotten ORDER BY forgotten_at DESC LIMIT ?1",
            )?;
            let rows = statement.query_map([limit], |row| {
                let id: String = row.get(0)?;
                Ok((id, row.get(1)?))
            })?;
            let mut forgotten = Vec::new();
            for row in rows {
                let (id, at) = row?;
                if let Ok(id) = id.parse() {
                    forgotten.push((id, at));
                }
            }
            Ok(forgotten)
        })
        .await
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.run(|conn| conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(())))
            .await?;
        self.writer
            .write(|tx| {
                tx.prepare_cached("INSERT OR REPLACE INTO health (id, checked_at) VALUES (1, ?1)")?
                    .execute([now_millis()])?;
                Ok(())
            })
            .await
    }

    /// Opens the existing database at `path` for the maintenance commands. It must be a
    /// livesession database of this build's schema version: nothing is created or upgraded, and a
    /// missing, damaged or foreign file is refused, with the reason, before anything touches it.
    pub(super) fn open_existing(
        path: &Path,
        options: StoreOptions,
        accept_older: bool,
    ) -> anyhow::Result<SqliteStore> {
        let conn = open_current(path, options, accept_older)
            .with_context(|| format!("cannot use the database {}", path.display()))?;
        SqliteStore::start(conn, path, options)
    }

    /// Row counts, activity times (all read in one statement, so from one snapshot) and the
    /// size of the files.
    pub(super) async fn stats(&self) -> Result<StoreStats, StoreError> {
        let path = Arc::clone(&self.path);
        self.run(move |conn| {
            let mut stats = conn.query_row(
                "SELECT (SELECT count(*) FROM settings),
                        (SELECT count(*) FROM messages),
                        (SELECT count(*) FROM forgotten),
                        (SELECT min(read_at) FROM settings),
                        (SELECT max(read_at) FROM settings),
                        (SELECT min(created_at) FROM messages),
                        (SELECT max(created_at) FROM messages)",
                [],
                |row| {
                    Ok(StoreStats {
                        sessions: row.get::<_, i64>(0)?.unsigned_abs(),
                        messages: row.get::<_, i64>(1)?.unsigned_abs(),
                        forgotten: row.get::<_, i64>(2)?.unsigned_abs(),
                        oldest_activity: row.get(3)?,
                        newest_activity: row.get(4)?,
                        oldest_message: row.get(5)?,
                        newest_message: row.get(6)?,
                        ..StoreStats::default()
                    })
                },
            )?;
            stats.database_bytes = backup::file_size(&path);
            stats.wal_bytes = backup::file_size(&backup::sidecar(&path, "-wal"));
            Ok(stats)
        })
        .await
    }
}

/// What a save sets in a row that exists, for [`UPSERT`] and [`UPDATE`]. On the right of each
/// `=`, a column name means the value before the save, so the version check compares old and
/// new values (in an upsert's `SET` clause too).
macro_rules! save_set {
    () => {
        "version = version + (username IS NOT coalesce(?2, username)
                              OR theme IS NOT coalesce(?3, theme)),
         username = coalesce(?2, username),
         theme = coalesce(?3, theme),
         updated_at = ?4,
         read_at = max(read_at, ?4)"
    };
}

/// A save that makes the row when there is none, unless the id was forgotten.
const UPSERT: &str = concat!(
    "INSERT INTO settings (session_id, username, theme, version, inserted_at, updated_at, read_at)
     SELECT ?1, coalesce(?2, ''), coalesce(?3, 'system'), 1, ?4, ?4, ?4
     WHERE NOT EXISTS (SELECT 1 FROM forgotten WHERE session_id = ?1)
     ON CONFLICT (session_id) DO UPDATE SET ",
    save_set!(),
    " RETURNING username, theme, version, read_at"
);

/// A save of a row that exists; none is made.
const UPDATE: &str = concat!(
    "UPDATE settings SET ",
    save_set!(),
    " WHERE session_id = ?1 RETURNING username, theme, version, read_at"
);

/// Runs `sql`, [`UPSERT`] or [`UPDATE`], for `change` to session `id` at `now`: the row as it
/// is after the save, or `None` when none was saved (no row, or a forgotten id).
fn save_row(
    tx: &Connection,
    sql: &str,
    id: SessionId,
    change: &SettingsChange,
    now: Millis,
) -> rusqlite::Result<Option<StoredSettings>> {
    tx.prepare_cached(sql)?
        .query_row(
            params![
                id.to_key(),
                change.username.as_ref().map(Username::as_str),
                change.theme.map(Theme::as_str),
                now
            ],
            stored_settings,
        )
        .optional()
}

fn stored_settings(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredSettings> {
    Ok(StoredSettings {
        settings: settings_at(row, 0)?,
        version: row.get(2)?,
        read_at: row.get(3)?,
    })
}

/// The settings in a row whose `username` and `theme` columns start at column `first`.
pub(super) fn settings_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Settings> {
    let theme: String = row.get(first + 1)?;
    Ok(Settings {
        username: Username::from_trusted(row.get(first)?),
        theme: Theme::parse(&theme).unwrap_or_default(),
    })
}

impl SqliteStore {
    /// Copies the database into `file`, an empty file that exists, while the server goes on
    /// reading and writing; returns what an integrity check says of the copy (see
    /// [`backup::backup_into`]).
    pub(super) async fn backup_into(&self, file: &Path) -> Result<String, StoreError> {
        let file = file.to_path_buf();
        self.run(move |source| backup::backup_into(source, &file))
            .await
    }
}

/// Creates the database file, empty and readable by its owner only, unless it exists. SQLite
/// gives the files it makes beside it (`-wal`, `-shm`, a journal) the database's own mode, so
/// none of them is readable by other users either: they hold every session id.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The writer's guard: the database file must still be the one opened (device and inode): if it
/// was deleted or replaced under us, writes would go to a file nobody will ever open again.
fn same_file(path: &Path, identity: (u64, u64)) -> Guard {
    let path = path.to_path_buf();
    Box::new(move || match std::fs::metadata(&path) {
        Ok(meta) if (meta.dev(), meta.ino()) == identity => Ok(()),
        _ => Err(path.display().to_string()),
    })
}
