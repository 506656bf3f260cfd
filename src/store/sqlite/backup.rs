//! The database as files: a consistent copy through SQLite's online backup API, and the sizes
//! `livesession stats` reports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

/// Copies the database `source` is connected to into `file`, an empty file that exists, through
/// SQLite's online backup API: one consistent snapshot, taken while the server goes on reading
/// and writing (in WAL mode a reader blocks nobody). The copy is a single file (rollback journal,
/// no `-wal` beside it). Returns what `PRAGMA integrity_check` says of the copy: `ok` when sound.
pub(super) fn backup_into(source: &Connection, file: &Path) -> rusqlite::Result<String> {
    let mut copy = Connection::open_with_flags(
        file,
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
}

/// Checks that `file` is a sound copy of a livesession database, opened read-only: what
/// `PRAGMA integrity_check` says (`ok` when sound), or why it is not one.
pub fn check_copy(file: &Path) -> Result<String, String> {
    let copy = Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("it cannot be opened as a SQLite database ({e})"))?;
    let tables: i64 = copy
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('settings', 'messages')",
            [],
            |row| row.get(0),
        )
        .map_err(|e| format!("it is not a SQLite database ({e})"))?;
    if tables < 2 {
        return Err(
            "it is not a livesession database (it has no settings and messages tables)".into(),
        );
    }
    let problems = copy
        .prepare("PRAGMA integrity_check")
        .and_then(|mut check| {
            check
                .query_map([], |row| row.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(|e| format!("its integrity check could not run ({e})"))?;
    Ok(problems.join("; "))
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

/// `path` with `suffix` after its name: the `-wal` or `-shm` file beside the database.
pub fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The size of `path` in bytes; 0 when it does not exist.
pub(super) fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |meta| meta.len())
}
