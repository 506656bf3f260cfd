//! Storage faults: a full disk, read-only storage, a database locked by another process, a data
//! dir that vanished. Each must give a clear error, keep serving what it can, lose nothing saved,
//! and recover on its own once the cause is gone.
//!
//! The disk-full and read-only tests put the data dir on a small tmpfs, which needs root (as in
//! CI). Without it they say so on the terminal and return; under `CI=true` they fail instead.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{TestApp, username_field};
use reqwest::StatusCode;

/// A tmpfs mounted on a temporary folder for the length of a test.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(test: &str, size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status();
        if status.is_ok_and(|s| s.success()) {
            return Some(Tmpfs { dir });
        }
        cannot(test, "cannot mount a tmpfs (needs root)")
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, mode: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(status.success(), "remount {mode}");
    }

    /// Fills the file system with a file of its own, to be deleted to give the space back.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        // Whatever is left, byte-sized.
        while file.write_all(&[0]).is_ok() {}
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

async fn health(app: &TestApp) -> (StatusCode, serde_json::Value) {
    let response = app.browser().get("/healthz").await;
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// A write is refused with `message` (and `503`), `/healthz` says `reason`, and reads go on with
/// what was saved before (`kept`).
async fn assert_writes_refused(
    app: &TestApp,
    browser: &mut crate::common::Browser,
    message: &str,
    reason: &str,
    kept: &str,
) {
    let response = browser.save_settings("refused", "light").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = response.text().await.unwrap();
    assert!(text.contains(message), "{text}");
    let (status, body) = health(app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["reason"], reason);
    assert_eq!(username_field(&browser.page("/settings").await), kept);
}

/// A fault test that cannot set up its fault here: says so, or fails under `CI=true`.
fn cannot<T>(test: &str, why: &str) -> Option<T> {
    crate::common::skip(&format!("fault test {test}"), why)
}

fn integrity_ok(path: &Path) {
    let db = rusqlite::Connection::open(path.join("livesession.db")).unwrap();
    let result: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(result, "ok");
}

#[tokio::test]
async fn a_full_disk_refuses_writes_clearly_keeps_serving_reads_and_recovers() {
    let Some(fs) = Tmpfs::mount("a_full_disk", "4m") else {
        return;
    };
    let app = TestApp::spawn_in(
        fs.path(),
        &[
            // The database's own refusal is under test, not the guard that would come first.
            "--min-free-disk",
            "0",
            "--message-burst",
            "100000",
            "--message-burst-per-ip",
            "100000",
            "--room-message-burst",
            "100000",
        ],
    )
    .await;
    let mut browser = app.browser();
    assert_eq!(
        browser.save_settings("saved before", "dark").await.status(),
        StatusCode::SEE_OTHER
    );
    browser.post_message("said before").await;

    let filler = fs.fill();
    // Write until the disk says no (the WAL may still have room for a few).
    let body = "x".repeat(2000);
    let mut refused = None;
    for _ in 0..2000 {
        let response = browser.post_message(&body).await;
        if response.status() != StatusCode::SEE_OTHER {
            refused = Some(response);
            break;
        }
    }
    let refused = refused.expect("the full disk never refused a write");
    assert_eq!(refused.status(), StatusCode::INSUFFICIENT_STORAGE);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("disk is full, so nothing was changed")
    );
    let response = browser.save_settings("while full", "light").await;
    assert_eq!(response.status(), StatusCode::INSUFFICIENT_STORAGE);

    // Reads go on, with everything saved before.
    let page = browser.page("/settings").await;
    assert_eq!(username_field(&page), "saved before");
    assert!(browser.page("/").await.contains("said before"));

    // Space comes back: writes work again, no restart.
    std::fs::remove_file(filler).unwrap();
    assert_eq!(
        browser.save_settings("after", "light").await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(username_field(&browser.page("/settings").await), "after");
    assert_eq!(health(&app).await.0, StatusCode::OK);
    app.stop().await;
    integrity_ok(fs.path());
}

/// A small ext4 file system on a loop device, where files can be made immutable (`chattr +i`):
/// even a process holding them open can no longer write them, which is what storage turning
/// read-only under a running server looks like.
struct Ext4 {
    image: tempfile::NamedTempFile,
    dir: tempfile::TempDir,
}

impl Ext4 {
    fn mount(test: &str) -> Option<Ext4> {
        let image = tempfile::NamedTempFile::new().unwrap();
        image.as_file().set_len(16 * 1024 * 1024).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mkfs.ext4")
            .arg("-q")
            .arg(image.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            && Command::new("mount")
                .args(["-o", "loop"])
                .arg(image.path())
                .arg(dir.path())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        if ok {
            return Some(Ext4 { image, dir });
        }
        cannot(
            test,
            "cannot make and loop-mount an ext4 file system (needs root and e2fsprogs)",
        )
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Makes the database and its log immutable, or writable again. (Not the `-shm` index: it is
    /// memory-mapped, and a mapped page that cannot be written kills the process with SIGBUS,
    /// which is SQLite's behaviour, not ours to test.)
    fn immutable(&self, on: bool) {
        let flag = if on { "+i" } else { "-i" };
        for entry in std::fs::read_dir(self.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() && !path.to_string_lossy().ends_with("-shm") {
                let status = Command::new("chattr")
                    .arg(flag)
                    .arg(&path)
                    .status()
                    .unwrap();
                assert!(status.success(), "chattr {flag} {}", path.display());
            }
        }
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        self.immutable(false);
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
        let _ = &self.image;
    }
}

#[tokio::test]
async fn storage_turning_read_only_refuses_writes_reports_unhealthy_and_recovers() {
    let Some(fs) = Ext4::mount("storage_turning_read_only") else {
        return;
    };
    // A file system of a few MiB: the free-space guard is off, the database's refusal is tested.
    let app = TestApp::spawn_in(fs.path(), &["--min-free-disk", "0"]).await;
    let mut browser = app.browser();
    browser.save_settings("kept", "dark").await;

    fs.immutable(true);
    let message = "cannot write to its database right now, so nothing was changed";
    assert_writes_refused(&app, &mut browser, message, "database not writable", "kept").await;

    fs.immutable(false);
    assert_eq!(health(&app).await.0, StatusCode::OK);
    assert_eq!(
        browser.save_settings("again", "light").await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(username_field(&browser.page("/settings").await), "again");
    app.stop().await;
    integrity_ok(fs.path());
}

#[tokio::test]
async fn a_read_only_data_dir_is_refused_at_startup_with_one_clear_line() {
    let Some(fs) = Tmpfs::mount("a_read_only_data_dir", "1m") else {
        return;
    };
    fs.remount("ro");
    let output = crate::common::binary::command(fs.path(), &[])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("livesession: "))
        .unwrap_or_else(|| panic!("no error line in {stderr}"));
    assert!(
        line.contains("is not writable") && line.contains("Read-only file system"),
        "{line}"
    );
}

#[tokio::test]
async fn a_database_locked_by_another_process_gives_busy_and_recovers() {
    let app = TestApp::spawn(&["--busy-timeout", "300ms"]).await;
    let mut browser = app.browser();
    browser.save_settings("kept", "dark").await;

    // Another program (a maintenance script, say) opens a write transaction and sits on it.
    let intruder = rusqlite::Connection::open(app.data_dir.join("livesession.db")).unwrap();
    intruder
        .execute_batch("BEGIN IMMEDIATE; UPDATE settings SET read_at = read_at;")
        .unwrap();

    let message = "busy, so nothing was changed";
    assert_writes_refused(&app, &mut browser, message, "database locked", "kept").await;

    intruder.execute_batch("ROLLBACK").unwrap();
    drop(intruder);
    assert_eq!(health(&app).await.0, StatusCode::OK);
    assert_eq!(
        browser.save_settings("after", "light").await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(username_field(&browser.page("/settings").await), "after");
    app.stop().await;
}

#[tokio::test]
async fn a_vanished_data_dir_refuses_writes_instead_of_losing_them() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser.save_settings("before", "dark").await;
    let token = browser.csrf_token().await;
    std::fs::remove_dir_all(&app.data_dir).unwrap();

    let response = browser
        .post(
            "/settings",
            &[
                ("_csrf", &token),
                ("username", "into the void"),
                ("theme", "light"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let (status, body) = health(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["reason"], "database not writable");
    app.stop().await;
}

/// A page view whose touch is due when the database takes no writes still shows what was saved:
/// it only reads, and the touch is tried again on a later view.
#[tokio::test]
async fn a_page_view_whose_touch_cannot_be_written_still_shows_what_was_saved() {
    // A touch window of 20 ms: every view after a short pause wants to write read_at.
    let app = TestApp::spawn(&["--stale-after", "2s"]).await;
    let mut browser = app.browser();
    browser.save_settings("before", "dark").await;
    std::fs::remove_dir_all(&app.data_dir).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let response = browser.get("/settings").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(username_field(&response.text().await.unwrap()), "before");
    app.stop().await;
}
