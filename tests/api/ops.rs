//! The maintenance commands of the real binary: `backup`, `prune` and `stats`, beside a running
//! server and on their own, with the mistakes people make.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::common::Browser;
use crate::common::binary::{BIN, Server, assert_refused, command};
use livesession::chat::MessageBody;
use livesession::clock::now_millis;
use livesession::session::SessionId;
use livesession::settings::{SettingsChange, Theme};
use livesession::store::Durability;
use livesession::store::{Store, StoreOptions};
use serde_json::Value;

const DAY: i64 = 86_400_000;

/// Runs `livesession --data-dir DATA_DIR ARGS` to its end.
fn run(data_dir: &Path, args: &[&str]) -> Output {
    command(data_dir, args).output().unwrap()
}

/// Runs a command that must succeed with `--json`, and returns its object.
fn run_json(data_dir: &Path, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let output = run(data_dir, &args);
    assert!(output.status.success(), "{args:?}: {output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The row counts of a database file, opened directly.
fn counts(db: &Path) -> (i64, i64, i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let count = |table: &str| {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    (count("settings"), count("messages"), count("forgotten"))
}

/// The names of the files in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn integrity(db: &Path) -> String {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// A data dir with a database holding, for a prune at now with the default flags and
/// `--stale-after 10d --message-retention 5d --message-limit 8`: 3 stale and 2 fresh sessions,
/// 4 messages past the retention and 6 recent ones (10 in all: 2 more beyond the limit), and 2
/// forgotten ids past their cookies' lifetime beside 1 recent one.
async fn seeded_data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        durability: Durability::Normal,
        busy_timeout: Duration::from_secs(5),
    };
    let store = Store::open_sqlite(&dir.path().join("livesession.db"), options).unwrap();
    let now = now_millis();
    let change = SettingsChange {
        username: None,
        theme: Some(Theme::Dark),
    };
    for age in [20, 30, 40, 1, 2] {
        let id = SessionId::generate();
        store
            .save(id, change.clone(), now - age * DAY)
            .await
            .unwrap();
    }
    let author = SessionId::generate();
    for (n, age) in [9, 8, 7, 6, 1, 1, 1, 1, 1, 1].into_iter().enumerate() {
        let body = MessageBody::parse(&format!("message {n}")).unwrap();
        store
            .post_message(author, body, format!("n{n}"), now - age * DAY)
            .await
            .unwrap();
    }
    for age in [401, 500, 3] {
        // Only a session that saved something is remembered when it is forgotten.
        let id = SessionId::generate();
        store
            .save(id, change.clone(), now - age * DAY)
            .await
            .unwrap();
        store.forget(id, now - age * DAY).await.unwrap();
    }
    dir
}

const RETENTION: &[&str] = &[
    "--stale-after",
    "10d",
    "--message-retention",
    "5d",
    "--message-limit",
    "8",
];

fn pruned(report: &Value) -> (i64, i64, i64) {
    let count = |key: &str| report[key].as_i64().unwrap();
    (count("sessions"), count("messages"), count("forgotten"))
}

#[tokio::test]
async fn a_dry_run_counts_exactly_what_prune_then_removes() {
    let dir = seeded_data_dir().await;
    let db = dir.path().join("livesession.db");
    let before = counts(&db);

    let dry = run_json(dir.path(), &[&["prune", "--dry-run"], RETENTION].concat());
    assert_eq!(dry["dry_run"], true);
    // Messages: the 4 past the retention, of which the 2 beyond the limit are a part.
    assert_eq!(pruned(&dry), (3, 4, 2));
    assert_eq!(counts(&db), before, "a dry run deleted something");

    let real = run_json(dir.path(), &[&["prune"], RETENTION].concat());
    assert_eq!(real["dry_run"], false);
    assert_eq!(pruned(&real), pruned(&dry));
    assert_eq!(counts(&db), (2, 6, 1));

    let again = run_json(dir.path(), &[&["prune", "--dry-run"], RETENTION].concat());
    assert_eq!(pruned(&again), (0, 0, 0));
}

#[tokio::test]
async fn prune_follows_the_message_limit_and_the_default_rules() {
    let dir = seeded_data_dir().await;
    // The defaults (100 days, 30 days, 10,000 messages) leave every session and message; the
    // forgotten ids past 400 days go whatever the flags.
    let report = run_json(dir.path(), &["prune"]);
    assert_eq!(pruned(&report), (0, 0, 2));
    // Only the limit: the oldest 4 of the 10 messages go.
    let report = run_json(dir.path(), &["prune", "--message-limit", "6"]);
    assert_eq!(pruned(&report), (0, 4, 0));
    assert_eq!(counts(&dir.path().join("livesession.db")), (5, 6, 1));
}

#[tokio::test]
async fn prune_says_what_it_removed_in_a_sentence() {
    let dir = seeded_data_dir().await;
    let output = run(dir.path(), &[&["prune", "--dry-run"], RETENTION].concat());
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "would remove 3 stale sessions, 0 idle devices, 4 old messages and 2 expired forgotten ids \
         (dry run: nothing was deleted)"
    );
}

/// A browser that saved settings and posted a message on `server`.
async fn active_browser(server: &Server, name: &str) -> Browser {
    let mut browser = Browser::new(server.addr);
    assert_eq!(browser.save_settings(name, "dark").await.status(), 303);
    assert_eq!(browser.post_message("hello").await.status(), 303);
    browser
}

#[tokio::test(flavor = "multi_thread")]
async fn the_commands_work_beside_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    for n in 0..3 {
        active_browser(&server, &format!("user{n}")).await;
    }

    let stats = run_json(dir.path(), &["stats"]);
    assert_eq!(stats["sessions"], 3);
    assert_eq!(stats["messages"], 3);
    assert_eq!(stats["forgotten"], 0);
    let db = dir.path().join("livesession.db");
    let file = std::fs::metadata(&db).unwrap().len();
    assert!(stats["size_bytes"].as_u64().unwrap() >= file, "{stats}");
    assert!(stats["wal_bytes"].as_u64().unwrap() > 0, "{stats}");
    let oldest = stats["oldest_activity_ms"].as_i64().unwrap();
    let newest = stats["newest_activity_ms"].as_i64().unwrap();
    assert!(oldest <= newest && newest <= now_millis(), "{stats}");
    assert!(stats["newest_message"].as_str().unwrap().ends_with('Z'));

    let report = run_json(dir.path(), &["prune", "--dry-run"]);
    assert_eq!(pruned(&report), (0, 0, 0));
    let report = run_json(dir.path(), &["prune", "--message-limit", "1"]);
    assert_eq!(pruned(&report), (0, 2, 0));

    // The server goes on saving while a copy is taken, and after.
    let mut browser = active_browser(&server, "after").await;
    let copy = dir.path().join("copy.db");
    let backup = run_json(dir.path(), &["backup", copy.to_str().unwrap()]);
    assert_eq!(backup["integrity"], "ok");
    assert_eq!(browser.save_settings("later", "light").await.status(), 303);
    assert_eq!(integrity(&copy), "ok");
    assert_eq!(counts(&copy), (4, 2, 0));
    server.stop();
    assert_eq!(integrity(&db), "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_taken_under_load_is_one_consistent_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let addr = server.addr;
            tokio::spawn(async move {
                let mut browser = Browser::new(addr);
                let mut acknowledged = 0;
                for n in 0..60 {
                    let name = format!("w{w}n{n}");
                    if browser.save_settings(&name, "light").await.status() == 303 {
                        acknowledged += 1;
                    }
                }
                acknowledged
            })
        })
        .collect();
    let copies: Vec<_> = (0..3)
        .map(|n| {
            let data = dir.path().to_owned();
            tokio::task::spawn_blocking(move || {
                let copy = data.join(format!("copy{n}.db"));
                let output = run(&data, &["backup", copy.to_str().unwrap()]);
                assert!(output.status.success(), "{output:?}");
                copy
            })
        })
        .collect();
    for copy in copies {
        let copy = copy.await.unwrap();
        assert_eq!(integrity(&copy), "ok");
        // Every row of the copy is whole: a settings row carries one writer's name.
        let conn = rusqlite::Connection::open(&copy).unwrap();
        let names: Vec<String> = conn
            .prepare("SELECT username FROM settings")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(names.iter().all(|n| n.starts_with('w')), "{names:?}");
    }
    for writer in writers {
        assert_eq!(writer.await.unwrap(), 60);
    }
    server.stop();
}

#[tokio::test]
async fn a_backup_is_a_single_file_that_opens_as_the_database() {
    let dir = seeded_data_dir().await;
    let copy = dir.path().join("backup.db");
    let output = run(dir.path(), &["backup", copy.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("integrity check ok"), "{said}");
    assert!(!dir.path().join("backup.db-wal").exists());
    assert_eq!(counts(&copy), counts(&dir.path().join("livesession.db")));
    let mode: String = rusqlite::Connection::open(&copy)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    // Nothing else was left beside it.
    let names = files_in(dir.path());
    let others: Vec<&String> = names
        .iter()
        .filter(|n| !n.starts_with("livesession.db"))
        .collect();
    assert_eq!(others, ["backup.db"]);

    // A server started on the copy serves what was saved.
    let restored = tempfile::tempdir().unwrap();
    std::fs::copy(&copy, restored.path().join("livesession.db")).unwrap();
    let server = Server::start(restored.path(), &[]);
    let stats = run_json(restored.path(), &["stats"]);
    assert_eq!(stats["sessions"], 5);
    server.stop();
}

#[tokio::test]
async fn a_backup_never_replaces_a_file_without_force() {
    let dir = seeded_data_dir().await;
    let target = dir.path().join("existing.db");
    std::fs::write(&target, b"precious").unwrap();
    let output = run(dir.path(), &["backup", target.to_str().unwrap()]);
    assert_refused(&output, "exists already; pass --force to replace it");
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");

    let report = run_json(dir.path(), &["backup", "--force", target.to_str().unwrap()]);
    assert_eq!(report["integrity"], "ok");
    assert_eq!(
        report["bytes"].as_u64().unwrap(),
        std::fs::metadata(&target).unwrap().len()
    );
    assert_eq!(integrity(&target), "ok");
}

#[tokio::test]
async fn a_backup_into_a_missing_folder_fails_and_leaves_nothing() {
    let dir = seeded_data_dir().await;
    let db = dir.path().join("livesession.db");
    let before = counts(&db);
    let target = dir.path().join("no-such-folder").join("copy.db");
    let output = run(dir.path(), &["backup", target.to_str().unwrap()]);
    assert_refused(&output, "the folder");
    assert_refused(&output, "does not exist");
    assert!(!dir.path().join("no-such-folder").exists());
    assert_eq!(counts(&db), before);
    assert_eq!(integrity(&db), "ok");
}

#[tokio::test]
async fn a_backup_over_the_database_itself_is_refused() {
    let dir = seeded_data_dir().await;
    let db = dir.path().join("livesession.db");
    let before = counts(&db);
    let output = run(dir.path(), &["backup", "--force", db.to_str().unwrap()]);
    assert_refused(&output, "the database itself");
    assert_eq!(counts(&db), before);
    assert_eq!(integrity(&db), "ok");
}

#[test]
fn a_corrupt_database_is_refused_by_every_command_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("livesession.db");
    let garbage = b"definitely not a SQLite file ".repeat(200);
    std::fs::write(&db, &garbage).unwrap();
    let copy = dir.path().join("copy.db");
    for args in [
        &["stats"][..],
        &["prune"],
        &["prune", "--dry-run"],
        &["backup", copy.to_str().unwrap()],
    ] {
        let output = run(dir.path(), args);
        assert_refused(&output, "not a SQLite database, or a damaged one");
        assert_eq!(std::fs::read(&db).unwrap(), garbage, "{args:?}");
    }
    assert_eq!(
        files_in(dir.path()),
        ["livesession.db"],
        "no copy, journal or key was made"
    );
}

#[test]
fn a_missing_database_is_refused_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    for args in [
        &["stats"][..],
        &["prune"],
        &["backup", copy.to_str().unwrap()],
    ] {
        let output = run(dir.path(), args);
        assert_refused(&output, "there is no database there (is --data-dir right?)");
    }
    assert!(files_in(dir.path()).is_empty());
}

#[test]
fn another_programs_database_and_another_versions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("livesession.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("CREATE TABLE accounts (id INTEGER)")
        .unwrap();
    assert_refused(
        &run(dir.path(), &["stats"]),
        "it is not a livesession database",
    );
    conn.pragma_update(None, "user_version", livesession::store::SCHEMA_VERSION + 1)
        .unwrap();
    assert_refused(
        &run(dir.path(), &["prune"]),
        "it was written by a newer livesession",
    );
    conn.pragma_update(None, "user_version", 1).unwrap();
    assert_refused(
        &run(dir.path(), &["stats"]),
        "start this version's server once to upgrade it",
    );
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 1, "the database was upgraded behind the refusal");
}

#[tokio::test]
async fn the_commands_read_the_environment_twins_of_the_flags() {
    let dir = seeded_data_dir().await;
    let output = std::process::Command::new(BIN)
        .args(["prune", "--dry-run", "--json"])
        .env("LIVESESSION_DATA_DIR", dir.path())
        .env("LIVESESSION_STALE_AFTER", "10d")
        .env("LIVESESSION_MESSAGE_LIMIT", "8")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(pruned(&report), (3, 2, 2));
}

#[test]
fn stats_reads_as_a_summary_for_people() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server.stop();
    let output = run(dir.path(), &["stats"]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    let db = dir.path().join("livesession.db");
    assert!(
        text.starts_with(&format!("database         {}\n", db.display())),
        "{text}"
    );
    for line in [
        "sessions         0",
        "messages         0",
        "forgotten ids    0",
        "oldest activity  none",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
}

#[test]
fn a_missing_backup_file_name_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &["backup"]);
    assert_eq!(output.status.code(), Some(2));
    assert_refused(&output, "<FILE>");
}

#[test]
fn a_database_of_an_older_version_can_be_backed_up_before_its_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("livesession.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(include_str!("../fixtures/schema-v1.sql"))
        .unwrap();
    conn.execute(
        "INSERT INTO settings (session_id, username, theme, inserted_at, updated_at, read_at)
         VALUES ('00000000-0000-4000-8000-000000000001', 'ada', 'dark', 1, 1, 1)",
        [],
    )
    .unwrap();
    drop(conn);
    let copy = dir.path().join("before-upgrade.db");
    let report = run_json(dir.path(), &["backup", copy.to_str().unwrap()]);
    assert_eq!(report["integrity"], "ok");
    let copied = rusqlite::Connection::open(&copy).unwrap();
    let (version, name): (i64, String) = copied
        .query_row(
            "SELECT (SELECT user_version FROM pragma_user_version), username FROM settings",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (version, name.as_str()),
        (1, "ada"),
        "a copy of the old database as it was"
    );
    let original = rusqlite::Connection::open(&db).unwrap();
    let version: i64 = original
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 1, "the backup upgraded nothing");
    // Everything else still asks for the upgrade first.
    assert_refused(
        &run(dir.path(), &["prune"]),
        "start this version's server once",
    );
}
