//! Stopping: everything is done within one `--shutdown-grace` of the signal, and a clean stop
//! leaves the database whole, in one file.

use std::io::Write as _;
use std::time::{Duration, Instant};

use crate::common::TestApp;
use crate::common::binary::Server;

/// A request whose body never finishes, and a prune stuck behind a lock another process holds:
/// both phases of shutdown (in-flight requests, then the background tasks and the database
/// writer) hang, and still the whole of it takes one grace, not one per phase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_takes_one_grace_even_when_a_request_and_the_database_both_hang() {
    let grace = Duration::from_secs(2);
    let app = TestApp::spawn(&[
        "--shutdown-grace",
        "2s",
        "--prune-every",
        "100ms",
        "--busy-timeout",
        "60s",
    ])
    .await;

    // Another process takes the database's write lock: the next prune pass waits for it.
    let blocker = app.db();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;

    // A form post that announces a body and sends only part of it.
    let mut stalled = std::net::TcpStream::connect(app.addr).unwrap();
    write!(
        stalled,
        "POST /settings HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: 1000\r\n\r\nusername=",
        app.addr
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    app.stop().await;
    let took = started.elapsed();
    assert!(
        took >= grace - Duration::from_millis(100),
        "stopped after {took:?}: did the request and the prune really hang?"
    );
    assert!(
        took < grace + Duration::from_millis(1500),
        "shutdown took {took:?} with --shutdown-grace {grace:?}"
    );
    drop((stalled, blocker));
}

/// After SIGTERM the writer commits what was queued and closes its connection before the
/// process exits, so SQLite checkpoints its log: the data dir holds one database file, with
/// everything that was saved, and no `-wal` or `-shm` beside it.
#[tokio::test]
async fn a_clean_stop_leaves_the_database_in_one_file_with_everything_saved() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut browser = crate::common::Browser::new(server.addr);
    browser.save_settings("ada", "dark").await;

    server.signal("-TERM");
    assert!(
        server.wait(Duration::from_secs(10)),
        "no clean exit after SIGTERM"
    );
    let database = dir.path().join("livesession.db");
    for sidecar in ["-wal", "-shm"] {
        let mut path = database.clone().into_os_string();
        path.push(sidecar);
        assert!(
            !std::path::Path::new(&path).exists(),
            "{} was left beside the database",
            sidecar
        );
    }
    let conn = rusqlite::Connection::open(&database).unwrap();
    let name: String = conn
        .query_row("SELECT username FROM settings", [], |row| row.get(0))
        .unwrap();
    assert_eq!(name, "ada");
}
