//! The real binary under concurrent writes (form posts, chat posts, live changes), killed with
//! SIGKILL at varied moments, or stopped with SIGTERM: every write it acknowledged is there after a
//! restart, and the database passes `PRAGMA integrity_check`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::Browser;
use crate::common::binary::Server;
use crate::common::live::{self, Socket};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// Flags for every server here: no chat rate limit in the way of the writers.
const ARGS: &[&str] = &[
    "--message-burst",
    "100000",
    "--message-burst-per-ip",
    "100000",
    "--room-message-burst",
    "100000",
];

/// What the writers were told was saved.
#[derive(Default)]
struct Acked {
    /// Per writer: its cookie, the last value acknowledged, and the last value sent.
    settings: HashMap<String, (String, u64, u64)>,
    /// Chat messages acknowledged (303 received).
    messages: Vec<String>,
}

impl Acked {
    /// Writer `name` (with `cookie`) is about to send its write number `i`.
    fn sending(&mut self, name: &str, cookie: &str, i: u64) {
        self.settings
            .entry(name.to_owned())
            .or_insert_with(|| (cookie.to_owned(), 0, 0))
            .2 = i;
    }

    /// Writer `name`'s write number `i` was acknowledged.
    fn acknowledged(&mut self, name: &str, i: u64) {
        if let Some(writer) = self.settings.get_mut(name) {
            writer.1 = i;
        }
    }
}

type Shared = Arc<Mutex<Acked>>;

async fn form_writer(mut browser: Browser, name: String, acked: Shared) {
    browser.page("/settings").await;
    let cookie = browser.cookie.clone().unwrap();
    let token = browser.csrf_token().await;
    for i in 1u64.. {
        acked.lock().unwrap().sending(&name, &cookie, i);
        let username = format!("{name}-{i}");
        let request = browser
            .client
            .post(format!("http://{}/settings", browser.addr))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(crate::common::encode_form(&[
                ("_csrf", &token),
                ("username", &username),
                ("theme", "dark"),
            ]));
        match request.send().await {
            Ok(response) if response.status() == StatusCode::SEE_OTHER => {
                acked.lock().unwrap().acknowledged(&name, i);
            }
            _ => return,
        }
    }
}

async fn chat_writer(mut browser: Browser, name: String, acked: Shared) {
    let page = browser.page("/").await;
    let token = crate::common::attribute_after(&page, r#"name="_csrf" value=""#).to_owned();
    for i in 1u64.. {
        let body = format!("{name}-{i}");
        let nonce = body.clone();
        let response = browser
            .client
            .post(format!("http://{}/messages", browser.addr))
            .header("cookie", browser.cookie.as_deref().unwrap())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(crate::common::encode_form(&[
                ("_csrf", &token),
                ("nonce", &nonce),
                ("body", &body),
            ]))
            .send()
            .await;
        match response {
            Ok(response) if response.status() == StatusCode::SEE_OTHER => {
                acked.lock().unwrap().messages.push(body);
            }
            _ => return,
        }
    }
}

async fn live_writer(mut browser: Browser, name: String, acked: Shared) {
    let mut socket: Socket = live::join_settings(&mut browser, &name).await;
    let cookie = browser.cookie.clone().unwrap();
    for i in 1u64.. {
        acked.lock().unwrap().sending(&name, &cookie, i);
        let change = json!({"t": "change", "form": "settings", "seq": i,
                            "fields": {"username": format!("{name}-{i}"), "theme": "light"}});
        if socket
            .send(Message::text(change.to_string()))
            .await
            .is_err()
        {
            return;
        }
        // Read until this change's ack (renders come too).
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    let message: serde_json::Value = serde_json::from_str(&text).unwrap();
                    if message["t"] == "ack" && message["seq"] == i {
                        acked.lock().unwrap().acknowledged(&name, i);
                        break;
                    }
                }
                Some(Ok(_)) => {}
                _ => return,
            }
        }
    }
}

/// Starts every writer against `addr`.
fn start_writers(addr: SocketAddr, acked: &Shared) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for k in 0..6 {
        tasks.push(tokio::spawn(form_writer(
            Browser::new(addr),
            format!("form{k}"),
            acked.clone(),
        )));
    }
    for k in 0..2 {
        tasks.push(tokio::spawn(chat_writer(
            Browser::new(addr),
            format!("chat{k}"),
            acked.clone(),
        )));
    }
    for k in 0..4 {
        tasks.push(tokio::spawn(live_writer(
            Browser::new(addr),
            format!("live{k}"),
            acked.clone(),
        )));
    }
    tasks
}

/// After a restart: every acknowledged write is there, and the database is sound.
async fn check_everything_acknowledged_is_there(data_dir: &Path, acked: &Acked) -> (usize, usize) {
    let server = Server::start(data_dir, ARGS);
    let mut writes = 0;
    for (name, (cookie, last_acked, last_sent)) in &acked.settings {
        let mut browser = Browser::new(server.addr);
        browser.cookie = Some(cookie.clone());
        let page = browser.page("/settings").await;
        let username = crate::common::username_field(&page);
        let n: u64 = match username.strip_prefix(&format!("{name}-")) {
            Some(n) => n.parse().unwrap(),
            None => 0,
        };
        assert!(
            n >= *last_acked && n <= *last_sent,
            "{name}: stored {username:?}, but {last_acked} was acknowledged (and {last_sent} sent)"
        );
        writes += *last_acked as usize;
    }
    let db = rusqlite::Connection::open(data_dir.join("livesession.db")).unwrap();
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let mut stored = db.prepare("SELECT body FROM messages").unwrap();
    let stored: std::collections::HashSet<String> = stored
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for message in &acked.messages {
        assert!(
            stored.contains(message),
            "acknowledged message {message:?} is missing"
        );
    }
    server.signal("-TERM");
    assert!(
        server.wait(Duration::from_secs(15)),
        "the restarted server did not exit cleanly"
    );
    (writes, acked.messages.len())
}

#[tokio::test]
async fn a_kill_at_any_moment_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut total_writes = 0;
    let mut total_messages = 0;
    // Kill points spread over the first seconds of load, varied run to run by the clock.
    let jitter = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_millis(),
    );
    let kill_points: Vec<u64> = [150, 400, 700, 1000, 1300]
        .iter()
        .map(|ms| ms + jitter % 150)
        .collect();
    for after in &kill_points {
        let server = Server::start(dir.path(), ARGS);
        let acked: Shared = Arc::default();
        let tasks = start_writers(server.addr, &acked);
        tokio::time::sleep(Duration::from_millis(*after)).await;
        server.signal("-KILL");
        server.wait(Duration::from_secs(5));
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        let acked = std::mem::take(&mut *acked.lock().unwrap());
        let (writes, messages) = check_everything_acknowledged_is_there(dir.path(), &acked).await;
        total_writes += writes;
        total_messages += messages;
    }
    eprintln!(
        "crash test: {} kill points ({kill_points:?} ms), {total_writes} acknowledged settings writes and {total_messages} messages checked",
        kill_points.len()
    );
    assert!(
        total_writes > 0 && total_messages > 0,
        "the writers never got going"
    );
}

#[tokio::test]
async fn sigterm_under_load_closes_sockets_with_1012_acks_only_what_was_committed_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), ARGS);
    let acked: Shared = Arc::default();
    let tasks = start_writers(server.addr, &acked);
    let mut watcher_browser = Browser::new(server.addr);
    let mut watcher = live::join_settings(&mut watcher_browser, "watcher").await;
    tokio::time::sleep(Duration::from_millis(600)).await;

    let stopping = Instant::now();
    server.signal("-TERM");
    let frame = live::closed(&mut watcher).await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1012);
    assert!(
        server.wait(Duration::from_secs(12)),
        "exit status after SIGTERM was not 0"
    );
    let took = stopping.elapsed();
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    check_everything_acknowledged_is_there(dir.path(), &acked).await;
    eprintln!("graceful shutdown under load took {took:?}");
}
