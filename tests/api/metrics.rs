//! `/metrics`: where it is served, and that real traffic moves its counters. Each test runs the
//! real binary, so the process-wide metrics it reads are its own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::common::binary::{Server, command};
use crate::common::live::{change, join_settings, open, recv};
use crate::common::{Browser, SECRET_A, cookie_pair};
use livesession::clock::now_millis;
use livesession::session::{Keys, SessionId};
use livesession::settings::{SettingsChange, Theme};
use livesession::store::Durability;
use livesession::store::{Store, StoreOptions};

/// The samples of a scrape, by series (`name{labels}`).
fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

async fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    parse(&response.text().await.unwrap())
}

async fn status(url: String) -> u16 {
    reqwest::get(url).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn metrics_are_not_served_on_the_public_listener_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    assert_eq!(status(format!("http://{}/metrics", server.addr)).await, 404);
    server.stop();
}

#[tokio::test]
async fn metrics_listen_serves_them_on_a_listener_of_their_own_only() {
    let dir = tempfile::tempdir().unwrap();
    let (server, log) =
        Server::start_logged(command(dir.path(), &["--metrics-listen", "127.0.0.1:0"]));
    let line = log.wait_for("metrics on http://");
    let at = line.find("http://").unwrap() + "http://".len();
    let metrics: SocketAddr = line[at..].trim_end_matches("/metrics").parse().unwrap();
    assert_ne!(metrics, server.addr);

    let samples = scrape(metrics).await;
    assert_eq!(samples["livesession_live_sockets"], 0.0);
    assert_eq!(status(format!("http://{}/metrics", server.addr)).await, 404);
    assert_eq!(status(format!("http://{metrics}/settings")).await, 404);
    server.stop();
}

#[tokio::test]
async fn a_metrics_address_that_cannot_be_bound_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = command(dir.path(), &["--metrics-listen", &addr])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("livesession: cannot listen for metrics on {addr}")),
        "{stderr}"
    );
}

/// A data dir whose database holds one row last used two hours ago (past the default touch
/// window of an hour), and the cookie of its session under `SECRET_A`.
async fn data_dir_with_an_old_row() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        durability: Durability::Normal,
        busy_timeout: Duration::from_secs(5),
    };
    let store = Store::open_sqlite(&dir.path().join("livesession.db"), options).unwrap();
    let id = SessionId::generate();
    let change = SettingsChange {
        username: None,
        theme: Some(Theme::Light),
    };
    store
        .save(id, change, now_millis() - 2 * 3_600_000)
        .await
        .unwrap();
    let keys = Keys::new(SECRET_A.as_bytes(), &[], false).unwrap();
    (dir, cookie_pair(&keys, id))
}

#[tokio::test(flavor = "multi_thread")]
async fn real_traffic_moves_the_counters() {
    let (dir, old_cookie) = data_dir_with_an_old_row().await;
    let args = [
        "--metrics",
        "--secret-key",
        SECRET_A,
        "--message-burst",
        "2",
    ];
    let server = Server::start(dir.path(), &args);
    // The prune task's first pass runs at startup.
    let mut before = scrape(server.addr).await;
    for _ in 0..500 {
        if before["livesession_prune_runs_total"] >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        before = scrape(server.addr).await;
    }
    assert_eq!(before["livesession_prune_runs_total"], 1.0);
    assert_eq!(
        before["livesession_page_views_total{page=\"settings\"}"],
        0.0
    );

    // The old row: the first view touches it, the next one is inside the touch window.
    let mut returning = Browser::new(server.addr);
    returning.cookie = Some(old_cookie);
    returning.page("/settings").await;
    returning.page("/settings").await;

    let mut browser = Browser::new(server.addr);
    assert_eq!(browser.save_settings("ada", "dark").await.status(), 303);
    for _ in 0..2 {
        assert_eq!(browser.post_message("hello").await.status(), 303);
    }
    assert_eq!(browser.post_message("too fast").await.status(), 429);

    let foreign = open(&browser, Some("http://evil.example")).await;
    assert!(foreign.is_err(), "a foreign origin was let in");
    let mut socket = join_settings(&mut browser, "page-1").await;
    change(&mut socket, 1, "grace", "light").await;
    assert_eq!(recv(&mut socket).await["t"], "ack");

    let after = scrape(server.addr).await;
    let moved = |series: &str| after[series] - before[series];
    assert_eq!(after["livesession_live_sockets"], 1.0);
    assert!(moved("livesession_page_views_total{page=\"settings\"}") >= 4.0);
    assert!(moved("livesession_page_views_total{page=\"chat\"}") >= 3.0);
    assert_eq!(
        moved("livesession_settings_writes_total{path=\"form\"}"),
        1.0
    );
    assert_eq!(
        moved("livesession_settings_writes_total{path=\"live\"}"),
        1.0
    );
    assert_eq!(moved("livesession_touches_total"), 1.0);
    assert!(moved("livesession_touches_skipped_total") >= 1.0);
    assert_eq!(moved("livesession_chat_messages_total"), 2.0);
    assert_eq!(moved("livesession_rate_limited_total{limit=\"chat\"}"), 1.0);
    assert_eq!(moved("livesession_live_origin_rejections_total"), 1.0);
    // Two settings saves, two messages and one touch, at least.
    assert!(moved("livesession_write_duration_seconds_count") >= 5.0);
    assert!(moved("livesession_write_duration_seconds_sum") > 0.0);
    let errors: f64 = after
        .iter()
        .filter(|(series, _)| series.starts_with("livesession_database_errors_total"))
        .map(|(_, value)| value)
        .sum();
    assert_eq!(errors, 0.0);
    drop(socket);
    server.stop();
}
