//! Backups that make themselves: `--backup-every` writes a checked copy into `--backup-dir`
//! while writes go on, keeps the newest `--backup-keep`, each 0600 in a 0700 folder; after a
//! `kill -9`, `livesession restore` puts the newest in place (refused while a server runs), and
//! every write acknowledged before that backup started is there. On PostgreSQL the flag is
//! refused with a sentence.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;

use crate::common::binary::{Server, assert_refused, run_to_exit};
use crate::common::{Browser, username_field};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// When a backup named `livesession-2026-12-04T02-51-33.123Z.db` started.
fn started(backup: &Path) -> SystemTime {
    let name = backup.file_name().unwrap().to_str().unwrap();
    let stamp = &name["livesession-".len()..name.len() - ".db".len()];
    // Back to RFC 3339: the time's dashes were colons.
    let (date, time) = stamp.split_once('T').unwrap();
    humantime::parse_rfc3339(&format!("{date}T{}", time.replacen('-', ":", 2))).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_made_under_load_restore_every_write_acknowledged_before_they_started() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["--backup-every", "150ms", "--backup-keep", "3"];
    let server = Server::start(&data, &args);

    // Eight browsers save one value after another; each remembers when its save was answered.
    let acked: Arc<Mutex<Vec<(usize, u32, SystemTime)>>> = Arc::default();
    let mut writers = Vec::new();
    let mut browsers = Vec::new();
    for n in 0..8 {
        let mut browser = Browser::new(server.addr);
        browser.save_settings(&format!("w{n}v0"), "dark").await;
        browsers.push(browser.cookie.clone().unwrap());
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for k in 1u32.. {
                let response = browser.save_settings(&format!("w{n}v{k}"), "dark").await;
                if response.status() != StatusCode::SEE_OTHER {
                    return; // the server is gone
                }
                acked.lock().unwrap().push((n, k, SystemTime::now()));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    server.signal("-KILL");
    for writer in writers {
        let _ = writer.await;
    }
    assert!(
        server.logged("backup written and checked"),
        "{:?}",
        server.log.lines()
    );

    // The newest three are kept, the owner's only.
    let folder = data.join("backups");
    assert_eq!(mode(&folder), 0o700);
    let backups = livesession::backups::list(&folder).unwrap();
    assert_eq!(backups.len(), 3, "{backups:?}");
    for backup in &backups {
        assert_eq!(mode(backup), 0o600, "{}", backup.display());
    }
    let newest = backups.last().unwrap();
    let began = started(newest);

    let output = run_to_exit(&data, &["restore", newest.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.contains("the database it replaced is kept as"),
        "{said}"
    );

    // Every value acknowledged before the backup began is there, or a later one.
    let mut before = [0u32; 8];
    for &(n, k, at) in acked.lock().unwrap().iter() {
        if at < began {
            before[n] = before[n].max(k);
        }
    }
    assert!(
        before.iter().all(|&k| k > 0),
        "writes before the backup: {before:?}"
    );
    let server = Server::start(&data, &[]);
    for (n, cookie) in browsers.iter().enumerate() {
        let mut browser = Browser::new(server.addr);
        browser.cookie = Some(cookie.clone());
        let page = browser.page("/settings").await;
        let name = username_field(&page);
        let k: u32 = name[format!("w{n}v").len()..].parse().unwrap();
        assert!(
            k >= before[n],
            "browser {n}: {name}, acknowledged v{} before",
            before[n]
        );
    }

    // With the server running, restore is refused and changes nothing.
    let refused = run_to_exit(&data, &["restore", newest.to_str().unwrap()]);
    assert_refused(&refused, "a livesession server runs on");
    assert_eq!(
        Browser::new(server.addr).get("/healthz").await.status(),
        StatusCode::OK
    );
    server.stop();
}

#[test]
fn a_restore_of_a_file_that_is_not_a_sound_backup_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"not a database at all, just some bytes").unwrap();
    assert_refused(
        &run_to_exit(&data, &["restore", junk.to_str().unwrap()]),
        "cannot be restored",
    );
    let missing = dir.path().join("missing.db");
    assert_refused(
        &run_to_exit(&data, &["restore", missing.to_str().unwrap()]),
        "cannot read",
    );
    assert!(!data.join("livesession.db").exists());
}

#[test]
fn backup_every_on_postgresql_is_refused_pointing_to_pg_dump() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_to_exit(
        dir.path(),
        &[
            "--database-url",
            "postgres://nobody@127.0.0.1:1/none",
            "--backup-every",
            "1h",
        ],
    );
    assert_refused(&output, "a PostgreSQL database is backed up with pg_dump");
}
