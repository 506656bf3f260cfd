//! The SQLite backend: one database file in WAL mode. Reads run on a small r2d2 pool, on tokio's
//! blocking threads so the async workers never wait on the disk. Writes go to the one writer
//! thread ([`super::writer`]), which commits whatever has queued up in one `BEGIN IMMEDIATE`
//! transaction (group commit), and answers each write only after that commit.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::writer::Writer;
use super::{
    Millis, PageChange, PageSave, Posted, StoreError, StoreOptions, StoreStats, StoredSettings,
};
use crate::chat::{Message, MessageBody};
use crate::config::Durability;
use crate::session::SessionId;
use crate::settings::{Settings, SettingsChange, Theme, Username};

/// The whole schema, applied to a new database.
const SCHEMA: &str = include_str!("../../schema.sql");

/// The schema version this build writes; `schema.sql` sets `PRAGMA user_version` to it.
pub const SCHEMA_VERSION: i64 = 3;

/// Upgrades, by the version they start from; each ends by setting `user_version` to the next.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/002_messages.sql")),
    (2, include_str!("../../migrations/003_page_acks.sql")),
];

/// How long a caller waits for a free pooled connection.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);

/// The size a checkpointed WAL file is cut back to, in bytes.
const WAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;

/// Connections in the pool. Readers run concurrently in WAL mode; writers queue on the lock.
const POOL_SIZE: u32 = 8;

// The rows each prune deletes, written once: a dry run counts with the very predicate the real
// run deletes with. `?1` is the cutoff; for messages, `?2` is how many of the newest are kept.
macro_rules! stale_settings {
    () => {
        "FROM settings WHERE read_at < ?1"
    };
}
macro_rules! old_messages {
    () => {
        "FROM messages WHERE created_at < ?1
            OR id < coalesce((SELECT id FROM messages ORDER BY id DESC LIMIT 1 OFFSET ?2 - 1), 0)"
    };
}
macro_rules! expired_forgotten {
    () => {
        "FROM forgotten WHERE forgotten_at < ?1"
    };
}

/// "Forget me" unlinks the browser's chat messages from it: they stay in the chat, under the name
/// they were sent with, but their author becomes nobody, and their nonce (chosen by the browser's
/// pages) is replaced by one made of the message's id, unique among nobody's messages.
const UNLINK_MESSAGES: &str = "UPDATE messages SET author_session = ?2, nonce = 'forgotten-' || id
                               WHERE author_session = ?1";

#[derive(Clone)]
pub(super) struct SqliteStore {
    /// Readers: run concurrently in WAL mode, each seeing the last commit.
    pool: r2d2::Pool<SqliteConnectionManager>,
    /// The one writer, with group commit.
    writer: Writer,
    /// Where the database file is, and which file it was when opened (device, inode).
    path: Arc<PathBuf>,
    identity: (u64, u64),
}

impl SqliteStore {
    pub(super) fn open(path: &Path, options: StoreOptions) -> anyhow::Result<SqliteStore> {
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
        let writer = Writer::start(conn)
            .with_context(|| format!("cannot start the writer thread for {}", path.display()))?;

        let manager =
            SqliteConnectionManager::file(path).with_init(move |conn| configure(conn, options));
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(POOL_TIMEOUT)
            .build(manager)
            .with_context(|| format!("cannot open a connection pool on {}", path.display()))?;
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot inspect the database {}", path.display()))?;
        Ok(SqliteStore {
            pool,
            writer,
            path: Arc::new(path.to_path_buf()),
            identity: (meta.dev(), meta.ino()),
        })
    }

    /// Runs `work` with a pooled connection on a blocking thread.
    async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
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

    pub(super) async fn save(
        &self,
        id: SessionId,
        change: SettingsChange,
        now: Millis,
    ) -> Result<Option<StoredSettings>, StoreError> {
        self.check_file()?;
        self.writer
            .write(move |tx| upsert(tx, id, &change, now))
            .await
    }

    pub(super) async fn save_from_page(
        &self,
        id: SessionId,
        change: SettingsChange,
        now: Millis,
        from: PageChange,
    ) -> Result<PageSave, StoreError> {
        self.check_file()?;
        let seq = i64::try_from(from.seq).unwrap_or(i64::MAX);
        self.writer
            .write(move |tx| {
                let acked: Option<i64> = tx
                    .prepare_cached(
                        "SELECT seq FROM page_acks WHERE session_id = ?1 AND page = ?2 AND form = ?3",
                    )?
                    .query_row(params![id.to_key(), from.page, from.form], |row| row.get(0))
                    .optional()?;
                if acked.is_some_and(|acked| acked >= seq) {
                    return Ok(PageSave::Replayed);
                }
                let Some(saved) = upsert(tx, id, &change, now)? else {
                    return Ok(PageSave::Forgotten);
                };
                tx.prepare_cached(
                    "INSERT INTO page_acks (session_id, page, form, seq, acked_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (session_id, page, form) DO UPDATE
                         SET seq = max(seq, excluded.seq), acked_at = excluded.acked_at",
                )?
                .execute(params![id.to_key(), from.page, from.form, seq, now])?;
                Ok(PageSave::Saved(saved))
            })
            .await
    }

    pub(super) async fn prune_page_acks(&self, before: Millis) -> Result<usize, StoreError> {
        self.writer
            .write(move |tx| {
                tx.prepare_cached("DELETE FROM page_acks WHERE acked_at < ?1")?
                    .execute([before])
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
        self.check_file()?;
        self.writer
            .write(move |tx| {
                let deleted = tx
                    .prepare_cached("DELETE FROM settings WHERE session_id = ?1")?
                    .execute([id.to_key()])?;
                tx.prepare_cached(
                    "INSERT INTO forgotten (session_id, forgotten_at) VALUES (?1, ?2)
                 ON CONFLICT (session_id) DO NOTHING",
                )?
                .execute(params![id.to_key(), now])?;
                tx.prepare_cached(UNLINK_MESSAGES)?
                    .execute(params![id.to_key(), SessionId::NOBODY.to_key()])?;
                Ok(deleted > 0)
            })
            .await
    }

    pub(super) async fn forgotten(&self) -> Result<Vec<(SessionId, Millis)>, StoreError> {
        self.run(|conn| {
            let mut statement = conn.prepare("SELECT session_id, forgotten_at FROM forgotten")?;
            let rows = statement.query_map([], |row| {
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

    pub(super) async fn prune_forgotten(&self, before: Millis) -> Result<usize, StoreError> {
        self.writer
            .write(move |conn| {
                conn.prepare_cached(concat!("DELETE ", expired_forgotten!()))?
                    .execute([before])
            })
            .await
    }

    pub(super) async fn prune_batch(
        &self,
        cutoff: Millis,
        limit: usize,
    ) -> Result<Vec<SessionId>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.writer
            .write(move |tx| {
                let mut statement = tx.prepare_cached(concat!(
                    "DELETE FROM settings WHERE session_id IN (SELECT session_id ",
                    stale_settings!(),
                    " ORDER BY read_at LIMIT ?2) RETURNING session_id"
                ))?;
                let deleted = statement
                    .query_map(params![cutoff, limit], |row| row.get::<_, String>(0))?
                    .filter_map(|id| id.map(|id| id.parse().ok()).transpose())
                    .collect::<rusqlite::Result<Vec<SessionId>>>()?;
                Ok(deleted)
            })
            .await
    }

    pub(super) async fn post_message(
        &self,
        author: SessionId,
        body: MessageBody,
        nonce: String,
        now: Millis,
    ) -> Result<Posted, StoreError> {
        self.check_file()?;
        self.writer.write(move |tx| {
            let key = author.to_key();
            // The name is read in the same transaction, so the message carries the name the
            // author had at the moment it was sent.
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO messages (author_session, author_name, body, nonce, created_at)
                     VALUES (?1, coalesce((SELECT username FROM settings WHERE session_id = ?1), ''),
                             ?2, ?3, ?4)
                     ON CONFLICT (author_session, nonce) DO NOTHING
                     RETURNING id, author_session, author_name, body, created_at",
                )?
                .query_row(params![key, body.as_str(), nonce, now], message)
                .optional()?;
            let posted = match inserted {
                Some(message) => {
                    // Posting is using the session.
                    tx.prepare_cached("UPDATE settings SET read_at = ?2 WHERE session_id = ?1")?
                        .execute(params![key, now])?;
                    Posted {
                        message,
                        duplicate: false,
                    }
                }
                None => Posted {
                    message: tx
                        .prepare_cached(
                            "SELECT id, author_session, author_name, body, created_at
                             FROM messages WHERE author_session = ?1 AND nonce = ?2",
                        )?
                        .query_row(params![key, nonce], message)?,
                    duplicate: true,
                },
            };
            Ok(posted)
        })
        .await
    }

    pub(super) async fn recent_messages(&self, limit: usize) -> Result<Vec<Message>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |conn| {
            let mut messages = conn
                .prepare_cached(
                    "SELECT id, author_session, author_name, body, created_at
                     FROM messages ORDER BY id DESC LIMIT ?1",
                )?
                .query_map([limit], message)?
                .collect::<Result<Vec<_>, _>>()?;
            messages.reverse();
            Ok(messages)
        })
        .await
    }

    pub(super) async fn messages_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |conn| {
            conn.prepare_cached(
                "SELECT id, author_session, author_name, body, created_at
                 FROM messages WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?
            .query_map(params![after, limit], message)?
            .collect()
        })
        .await
    }

    pub(super) async fn prune_messages_batch(
        &self,
        created_before: Millis,
        keep_newest: usize,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let keep = i64::try_from(keep_newest).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.writer
            .write(move |tx| {
                // The oldest id still kept by the count limit; everything below it goes, as does
                // everything older than the retention cutoff.
                let deleted = tx
                    .prepare_cached(concat!(
                        "DELETE FROM messages WHERE id IN (SELECT id ",
                        old_messages!(),
                        " ORDER BY id LIMIT ?3)"
                    ))?
                    .execute(params![created_before, keep, limit])?;
                Ok(deleted)
            })
            .await
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.check_file()?;
        self.run(|conn| conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(())))
            .await?;
        self.writer
            .write(|tx| {
                tx.prepare_cached("INSERT OR REPLACE INTO health (id, checked_at) VALUES (1, ?1)")?
                    .execute([super::now_millis()])?;
                Ok(())
            })
            .await
    }

    /// The database file must still be the one we opened: if it was deleted or replaced under
    /// us, writes would go to a file nobody will ever open again.
    fn check_file(&self) -> Result<(), StoreError> {
        match std::fs::metadata(self.path.as_path()) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.identity => Ok(()),
            _ => Err(StoreError::Vanished(self.path.display().to_string())),
        }
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

    /// How many rows [`Self::prune_batch`] would delete in all at `cutoff`; deletes nothing.
    pub(super) async fn count_stale(&self, cutoff: Millis) -> Result<usize, StoreError> {
        self.count(concat!("SELECT count(*) ", stale_settings!()), vec![cutoff])
            .await
    }

    /// How many messages [`Self::prune_messages_batch`] would delete in all; deletes nothing.
    pub(super) async fn count_old_messages(
        &self,
        created_before: Millis,
        keep_newest: usize,
    ) -> Result<usize, StoreError> {
        let keep = i64::try_from(keep_newest).unwrap_or(i64::MAX);
        self.count(
            concat!("SELECT count(*) ", old_messages!()),
            vec![created_before, keep],
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
            vec![before],
        )
        .await
    }

    /// Runs a `SELECT count(*)` with `params` as `?1`, `?2`, ...
    async fn count(&self, sql: &'static str, params: Vec<i64>) -> Result<usize, StoreError> {
        self.run(move |conn| {
            conn.prepare_cached(sql)?
                .query_row(rusqlite::params_from_iter(params), |row| {
                    row.get::<_, i64>(0)
                })
        })
        .await
        .map(|n| usize::try_from(n).unwrap_or(0))
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
            stats.database_bytes = file_size(&path);
            stats.wal_bytes = file_size(&sidecar(&path, "-wal"));
            Ok(stats)
        })
        .await
    }

    /// Copies the database into `file`, an empty file that exists, through SQLite's online
    /// backup API: one consistent snapshot, taken while the server goes on reading and writing
    /// (in WAL mode a reader blocks nobody). The copy is a single file (rollback journal, no
    /// `-wal` beside it). Returns what `PRAGMA integrity_check` says of the copy: `ok` when sound.
    pub(super) async fn backup_into(&self, file: &Path) -> Result<String, StoreError> {
        let file = file.to_path_buf();
        self.run(move |source| {
            let mut copy = Connection::open_with_flags(
                &file,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            copy_pages(source, &mut copy)?;
            copy.pragma_update_and_check(None, "journal_mode", "DELETE", |row| {
                row.get::<_, String>(0)
            })?;
            let problems = copy
                .prepare("PRAGMA integrity_check")?
                .query_map([], |row| row.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(problems.join("; "))
        })
        .await
    }
}

/// How often a backup tries again while the source is busy, and how long it waits each time.
const BACKUP_TRIES: u32 = 100;
const BACKUP_PAUSE: Duration = Duration::from_millis(50);

/// Copies every page of `source` into `copy` in one step, so the copy is one snapshot (a backup
/// in several steps starts over whenever another connection writes in between).
fn copy_pages(source: &Connection, copy: &mut Connection) -> rusqlite::Result<()> {
    let backup = Backup::new(source, copy)?;
    for _ in 0..BACKUP_TRIES {
        // Busy or locked: a writer of another process is in the way for a moment.
        match backup.step(-1)? {
            StepResult::Done => return Ok(()),
            _ => std::thread::sleep(BACKUP_PAUSE),
        }
    }
    Err(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
        Some("the database stayed locked; the backup was not made".to_owned()),
    ))
}

/// A configured connection to the existing database at `path`, if it holds this build's schema;
/// the file is neither created nor written before that is known.
fn open_current(
    path: &Path,
    options: StoreOptions,
    accept_older: bool,
) -> anyhow::Result<Connection> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("there is no database there (is --data-dir right?)")
        }
        Err(e) => return Err(e).context("cannot read it"),
        Ok(meta) if !meta.is_file() => bail!("it is not a file"),
        Ok(_) => {}
    }
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(options.busy_timeout)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .context("not a SQLite database, or a damaged one")?;
    match version {
        SCHEMA_VERSION => {}
        0 => bail!("it is not a livesession database"),
        newer if newer > SCHEMA_VERSION => bail!(
            "it was written by a newer livesession (schema version {newer}; this build knows up \
             to {SCHEMA_VERSION})"
        ),
        older if older > 0 && accept_older => {}
        older => bail!(
            "it has the older schema version {older}; start this version's server once to \
             upgrade it (it keeps everything)"
        ),
    }
    configure(&mut conn, options)?;
    Ok(conn)
}

/// The `-wal` or `-shm` file beside the database `path`.
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The size of `path` in bytes; 0 when it does not exist.
fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |meta| meta.len())
}

/// Applies `change` to session `id`'s row, creating it if needed, unless the id was forgotten
/// (then no row comes back).
fn upsert(
    tx: &Connection,
    id: SessionId,
    change: &SettingsChange,
    now: Millis,
) -> rusqlite::Result<Option<StoredSettings>> {
    // In an upsert's SET clause every column name means the value before the update, so the
    // version check compares old and new values.
    tx.prepare_cached(
        "INSERT INTO settings
             (session_id, username, theme, version, inserted_at, updated_at, read_at)
         SELECT ?1, coalesce(?2, ''), coalesce(?3, 'system'), 1, ?4, ?4, ?4
         WHERE NOT EXISTS (SELECT 1 FROM forgotten WHERE session_id = ?1)
         ON CONFLICT (session_id) DO UPDATE SET
             version = version + (username IS NOT coalesce(?2, username)
                                  OR theme IS NOT coalesce(?3, theme)),
             username = coalesce(?2, username),
             theme = coalesce(?3, theme),
             updated_at = ?4,
             read_at = ?4
         RETURNING username, theme, version, read_at",
    )?
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

fn stored_settings(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredSettings> {
    let theme: String = row.get(1)?;
    Ok(StoredSettings {
        settings: Settings {
            username: Username::from_trusted(row.get(0)?),
            theme: Theme::parse(&theme).unwrap_or_default(),
        },
        version: row.get(2)?,
        read_at: row.get(3)?,
    })
}

/// The settings every connection gets, before it is used for anything.
fn configure(conn: &mut Connection, options: StoreOptions) -> rusqlite::Result<()> {
    conn.busy_timeout(options.busy_timeout)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(%mode, "SQLite refused WAL mode; concurrent readers will block on writers");
    }
    let synchronous = match options.durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // Checkpoints run every 1000 pages (SQLite's default); after one, a WAL that grew past this
    // (a burst, a long reader) is cut back, so the file does not keep its high-water mark.
    conn.pragma_update_and_check(None, "journal_size_limit", WAL_SIZE_LIMIT, |row| {
        row.get::<_, i64>(0)
    })?;
    Ok(())
}

/// Brings the schema to [`SCHEMA_VERSION`], or refuses a database from a newer version.
fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("not a SQLite database, or a damaged one")?;
    let found: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .context("not a SQLite database, or a damaged one")?;
    match found {
        SCHEMA_VERSION => return Ok(()),
        0 => {
            let tables: i64 = tx.query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
                [],
                |row| row.get(0),
            )?;
            if tables > 0 {
                bail!(
                    "it holds tables but no livesession schema version; is it another program's database?"
                );
            }
            tx.execute_batch(SCHEMA).context("applying schema.sql")?;
            tracing::info!(version = SCHEMA_VERSION, "created the database schema");
        }
        newer if newer > SCHEMA_VERSION => bail!(
            "it was written by a newer livesession (schema version {newer}; this build knows up to \
             {SCHEMA_VERSION}); run the newer version or restore a backup"
        ),
        older => {
            for (from, sql) in MIGRATIONS.iter().filter(|(from, _)| *from >= older) {
                tx.execute_batch(sql)
                    .with_context(|| format!("upgrading the schema from version {from}"))?;
            }
            let now: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
            if now != SCHEMA_VERSION {
                bail!("schema version {older} is not one this build can upgrade");
            }
            tracing::info!(
                from = older,
                to = SCHEMA_VERSION,
                "upgraded the database schema"
            );
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_sql_records_the_version_this_build_expects() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    /// Every table's columns and every index, as SQLite describes them.
    fn shape(conn: &Connection) -> Vec<String> {
        let mut shape = Vec::new();
        let mut objects = conn
            .prepare("SELECT type, name, tbl_name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY name")
            .unwrap();
        let objects: Vec<(String, String, String)> = objects
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (kind, name, table) in objects {
            shape.push(format!("{kind} {name} on {table}"));
            let pragma = if kind == "table" {
                "table_xinfo"
            } else {
                "index_xinfo"
            };
            let mut columns = conn.prepare(&format!("PRAGMA {pragma}({name})")).unwrap();
            let count = columns.column_count();
            let rows: Vec<String> = columns
                .query_map([], |r| {
                    (0..count)
                        .map(|i| {
                            r.get::<_, rusqlite::types::Value>(i)
                                .map(|v| format!("{v:?}"))
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map(|v| v.join(","))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            shape.extend(rows);
        }
        shape
    }

    #[test]
    fn an_upgraded_database_has_the_same_shape_as_a_new_one() {
        let mut fresh = Connection::open_in_memory().unwrap();
        migrate(&mut fresh).unwrap();
        let mut upgraded = Connection::open_in_memory().unwrap();
        upgraded
            .execute_batch(include_str!("../../tests/fixtures/schema-v1.sql"))
            .unwrap();
        migrate(&mut upgraded).unwrap();
        assert_eq!(shape(&upgraded), shape(&fresh));
    }

    #[test]
    fn migrating_twice_changes_nothing() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = format!("{:#}", migrate(&mut conn).unwrap_err());
        assert!(err.contains("newer livesession"), "{err}");
    }

    #[test]
    fn another_programs_database_is_left_alone() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE accounts (id INTEGER)")
            .unwrap();
        let err = format!("{:#}", migrate(&mut conn).unwrap_err());
        assert!(err.contains("another program"), "{err}");
    }
}
