//! `livesession backup FILE`: a consistent copy of the SQLite database, written to a temporary
//! file beside `FILE`, checked, flushed, and only then renamed into place.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::config::Config;
use crate::startup::{Opening, open_store};
use crate::store::{describe_postgres, sidecar};

use super::report::human_bytes;

/// What `backup` did.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// The database copied.
    pub database: PathBuf,
    /// The copy.
    pub file: PathBuf,
    /// The copy's size.
    pub bytes: u64,
    /// What `PRAGMA integrity_check` said of the copy.
    pub integrity: String,
}

impl std::fmt::Display for BackupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "backed up {} to {}: {} bytes ({}), integrity check {}",
            self.database.display(),
            self.file.display(),
            self.bytes,
            human_bytes(self.bytes),
            self.integrity
        )
    }
}

/// Writes a copy of the database to `file` through a temporary file beside it, renamed into
/// place only once the copy is complete and passes an integrity check.
pub(super) async fn backup(
    config: &Config,
    file: &Path,
    force: bool,
) -> anyhow::Result<BackupReport> {
    if let Some(url) = &config.database_url {
        bail!(
            "backup copies the SQLite database; the PostgreSQL database at {} is backed up with \
             pg_dump (for example: pg_dump --format=custom --file=FILE URL)",
            describe_postgres(url)
        );
    }
    let database = config.database_path();
    let temporary = backup_target(file, &database, force)?;
    let store = open_store(config, Opening::AsItIs { accept_older: true }).await?;
    let written = crate::backups::write_checked(&store, file, temporary).await;
    store.close().await;
    let bytes = written.with_context(|| format!("cannot back up {}", database.display()))?;
    Ok(BackupReport {
        database,
        file: file.to_path_buf(),
        bytes,
        integrity: "ok".to_owned(),
    })
}

/// Checks that `file` may receive a backup of `database`, and names the temporary file to
/// write first: beside `file`, so the final rename stays on one filesystem.
fn backup_target(file: &Path, database: &Path, force: bool) -> anyhow::Result<PathBuf> {
    let Some(name) = file.file_name() else {
        bail!("{} does not name a file to write", file.display());
    };
    let folder = match file.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    match std::fs::metadata(folder) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => bail!(
            "cannot write the backup to {}: {} is not a folder",
            file.display(),
            folder.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "cannot write the backup to {}: the folder {} does not exist",
            file.display(),
            folder.display()
        ),
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot write the backup to {}: cannot read the folder {}",
                    file.display(),
                    folder.display()
                )
            });
        }
    }
    if let Ok(existing) = std::fs::metadata(file) {
        if existing.is_dir() {
            bail!("{} is a folder; name a file to write", file.display());
        }
        let live = ["", "-wal", "-shm"].iter().any(|suffix| {
            std::fs::metadata(sidecar(database, suffix))
                .is_ok_and(|m| (m.dev(), m.ino()) == (existing.dev(), existing.ino()))
        });
        if live {
            bail!(
                "{} is the database itself; write the backup to another file",
                file.display()
            );
        }
        if !force {
            bail!(
                "{} exists already; pass --force to replace it",
                file.display()
            );
        }
    }
    let mut temporary = std::ffi::OsString::from(".");
    temporary.push(name);
    temporary.push(format!(".partial-{}", uuid::Uuid::new_v4().simple()));
    Ok(folder.join(temporary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_target_in_a_missing_folder_or_existing_without_force_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("livesession.db");
        std::fs::write(&database, b"").unwrap();
        let missing = dir.path().join("nope").join("copy.db");
        let err = backup_target(&missing, &database, false).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");

        let existing = dir.path().join("copy.db");
        std::fs::write(&existing, b"old").unwrap();
        let err = backup_target(&existing, &database, false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        let temporary = backup_target(&existing, &database, true).unwrap();
        assert_eq!(temporary.parent(), Some(dir.path()));
        assert!(!temporary.exists());

        let err = backup_target(&database, &database, true).unwrap_err();
        assert!(err.to_string().contains("the database itself"), "{err}");
        let err = backup_target(dir.path(), &database, true).unwrap_err();
        assert!(err.to_string().contains("is a folder"), "{err}");
    }
}
