//! The signing secret's files: the key file, created 0600 on the first run, and the file of
//! previous keys a rotation keeps accepting.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};

use super::MIN_SECRET_LEN;

pub(super) fn read_or_create_key_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    match fs::read(path) {
        Ok(bytes) => {
            warn_if_readable_by_others(path);
            let secret = bytes.trim_ascii().to_vec();
            if secret.len() < MIN_SECRET_LEN {
                bail!(
                    "the secret key in {} is too short ({} bytes; at least {MIN_SECRET_LEN} are needed)",
                    path.display(),
                    secret.len()
                );
            }
            Ok(secret)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_key_file(path)
            .with_context(|| format!("cannot create the secret key {}", path.display())),
        Err(e) => Err(e).with_context(|| format!("cannot read the secret key {}", path.display())),
    }
}

fn create_key_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    let secret: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    tracing::info!(path = %path.display(), "created a new cookie signing key");
    Ok(secret.into_bytes())
}

fn warn_if_readable_by_others(path: &Path) {
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "the secret key file is readable by other users; chmod 600 it");
    }
}

pub(super) fn read_previous_keys(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read the previous keys file {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.as_bytes().to_vec())
        .collect())
}
