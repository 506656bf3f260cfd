//! Backups of the SQLite database: a consistent copy written to a temporary file, checked
//! (`PRAGMA integrity_check`), flushed and only then renamed into place, readable by its owner
//! only. `livesession backup FILE` writes one; `--backup-every` makes the server write one into
//! `--backup-dir` at that interval, named by the moment it started
//! (`livesession-2026-12-04T02-51-33.123Z.db`), keeping the newest `--backup-keep`. A failed
//! backup is logged and counted (`livesession_backups_total{result="failed"}`), never fatal.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use crate::metrics::metrics;
use crate::store::Store;

/// What an automatic backup's file name starts and ends with.
const PREFIX: &str = "livesession-";
const SUFFIX: &str = ".db";

/// Copies `store`'s database into `file` through `temporary` (a new file beside it), renamed
/// into place only once the copy is complete and passes its integrity check; the copy's size.
pub async fn write_checked(store: &Store, file: &Path, temporary: PathBuf) -> anyhow::Result<u64> {
    let partial = Partial::create(temporary)
        .with_context(|| format!("cannot write the backup beside {}", file.display()))?;
    let integrity = store.backup_into(&partial.path).await?;
    if integrity != "ok" {
        bail!(
            "the copy failed its integrity check, so {} was not written: {integrity}",
            file.display()
        );
    }
    partial
        .finish(file)
        .with_context(|| format!("cannot write the backup to {}", file.display()))
}

/// Writes a backup into `dir` every `every` until `shutdown`, keeping the newest `keep`.
pub fn spawn(
    store: Store,
    dir: PathBuf,
    every: Duration,
    keep: usize,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = shutdown.cancelled() => return,
            }
            match once(&store, &dir, keep).await {
                Ok((file, bytes, removed)) => {
                    metrics().backup_ran(true);
                    tracing::info!(
                        file = %file.display(),
                        bytes,
                        removed,
                        "backup written and checked"
                    );
                }
                Err(e) => {
                    metrics().backup_ran(false);
                    tracing::error!("backup failed: {e:#}; the next one is tried in {every:?}");
                }
            }
        }
    })
}

/// One backup into `dir`, then the oldest beyond `keep` removed: the file, its size, and how
/// many were removed.
async fn once(store: &Store, dir: &Path, keep: usize) -> anyhow::Result<(PathBuf, u64, usize)> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the backup folder {}", dir.display()))?;
    let stamp = humantime::format_rfc3339_millis(SystemTime::now())
        .to_string()
        .replace(':', "-");
    let name = format!("{PREFIX}{stamp}{SUFFIX}");
    let file = dir.join(&name);
    let temporary = dir.join(format!(".{name}.partial-{}", uuid::Uuid::new_v4().simple()));
    let bytes = write_checked(store, &file, temporary).await?;
    let mut backups = list(dir)?;
    let removed = backups.len().saturating_sub(keep);
    for old in backups.drain(..removed) {
        std::fs::remove_file(&old)
            .with_context(|| format!("cannot remove the old backup {}", old.display()))?;
    }
    Ok((file, bytes, removed))
}

/// The automatic backups in `dir`, oldest first (their names sort by time).
pub fn list(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the backup folder {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
        })
        .collect();
    backups.sort();
    Ok(backups)
}

/// Opens `<data-dir>/server.lock` (created if missing): every server holds a shared lock on it
/// while it runs, and `restore` an exclusive one, so no backup is put in place under a server.
pub fn open_server_lock(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// A temporary file that is deleted unless it is renamed into place.
pub struct Partial {
    pub path: PathBuf,
    kept: bool,
}

impl Partial {
    /// Creates the file, empty, readable by its owner only (the copy holds session ids).
    pub fn create(path: PathBuf) -> std::io::Result<Partial> {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(Partial { path, kept: false })
    }

    /// Flushes the file to disk, renames it to `file` and flushes the folder, so the copy
    /// survives a crash right after; returns its size.
    pub fn finish(mut self, file: &Path) -> std::io::Result<u64> {
        let copy = std::fs::File::open(&self.path)?;
        copy.sync_all()?;
        let bytes = copy.metadata()?.len();
        std::fs::rename(&self.path, file)?;
        self.kept = true;
        if let Some(folder) = self.path.parent() {
            let folder = if folder.as_os_str().is_empty() {
                Path::new(".")
            } else {
                folder
            };
            std::fs::File::open(folder)?.sync_all()?;
        }
        Ok(bytes)
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
