//! `livesession restore FILE`: puts a backup in place of the database while no server runs on
//! the data dir. The backup is checked first (a livesession database, `PRAGMA integrity_check`
//! ok); the database it replaces is kept beside it (`livesession.db.before-restore-<time>`, with
//! its `-wal`), so nothing saved before is lost; the backup is copied through a temporary file,
//! flushed, and renamed into place.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::config::Config;
use crate::store::{check_copy, describe_postgres, sidecar};

/// What `restore` did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The backup put in place.
    pub backup: PathBuf,
    /// The database it now is.
    pub database: PathBuf,
    /// Where the database it replaced was kept, if there was one.
    pub kept: Option<PathBuf>,
}

impl std::fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "restored {} as {}",
            self.backup.display(),
            self.database.display()
        )?;
        if let Some(kept) = &self.kept {
            write!(
                f,
                "; the database it replaced is kept as {}",
                kept.display()
            )?;
        }
        Ok(())
    }
}

pub(super) fn restore(config: &Config, backup: &Path) -> anyhow::Result<RestoreReport> {
    if let Some(url) = &config.database_url {
        bail!(
            "restore puts a SQLite backup in place; the PostgreSQL database at {} is restored \
             with pg_restore",
            describe_postgres(url)
        );
    }
    match std::fs::metadata(backup) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => bail!("{} is not a file", backup.display()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", backup.display())),
    }
    match check_copy(backup) {
        Ok(integrity) if integrity == "ok" => {}
        Ok(problems) => bail!(
            "{} failed its integrity check, so nothing was changed: {problems}",
            backup.display()
        ),
        Err(why) => bail!("{} cannot be restored: {why}", backup.display()),
    }
    let database = config.database_path();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create the data dir {}", config.data_dir.display()))?;
    let lock = crate::backups::open_server_lock(&config.server_lock_path())?;
    if lock.try_lock().is_err() {
        bail!(
            "a livesession server runs on {}: stop it first, then restore",
            config.data_dir.display()
        );
    }
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace(':', "-");
    let kept = if database.exists() {
        let kept = sidecar(&database, &format!(".before-restore-{stamp}"));
        for suffix in ["-wal", "-shm", ""] {
            let from = sidecar(&database, suffix);
            if from.exists() {
                let to = sidecar(&kept, suffix);
                std::fs::rename(&from, &to).with_context(|| {
                    format!("cannot move {} aside to {}", from.display(), to.display())
                })?;
            }
        }
        Some(kept)
    } else {
        None
    };
    let temporary = sidecar(
        &database,
        &format!(".restoring-{}", uuid::Uuid::new_v4().simple()),
    );
    let copied = copy_into_place(backup, &temporary, &database);
    if copied.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    copied?;
    drop(lock);
    Ok(RestoreReport {
        backup: backup.to_path_buf(),
        database,
        kept,
    })
}

/// Copies `backup` to `temporary` (0600), flushes it, renames it to `database` and flushes the
/// folder.
fn copy_into_place(backup: &Path, temporary: &Path, database: &Path) -> anyhow::Result<()> {
    let mut from =
        std::fs::File::open(backup).with_context(|| format!("cannot read {}", backup.display()))?;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::io::copy(&mut from, &mut to)
        .with_context(|| format!("cannot copy {}", backup.display()))?;
    to.sync_all()?;
    std::fs::rename(temporary, database)
        .with_context(|| format!("cannot put the backup in place as {}", database.display()))?;
    if let Some(folder) = database.parent() {
        std::fs::File::open(folder)?.sync_all()?;
    }
    Ok(())
}
