//! What the real binary logs: a line per request at `debug` (method, path, status, latency), the
//! notable events at `info`, and never a session id, a cookie or what someone wrote.

use crate::common::Browser;
use crate::common::binary::{Server, command};
use crate::common::live::{change, join_settings, open, recv};

const BODY: &str = "a private note 7f3a9c";
const NAME: &str = "Zed-4b1f";

#[tokio::test(flavor = "multi_thread")]
async fn requests_are_logged_at_debug_without_ids_cookies_or_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let mut debug = command(dir.path(), &["--message-burst", "1"]);
    debug.env("RUST_LOG", "livesession=debug");
    let (server, log) = Server::start_logged(debug);

    let mut browser = Browser::new(server.addr);
    browser.page("/settings?ref=query-7e1d").await;
    assert_eq!(browser.save_settings(NAME, "dark").await.status(), 303);
    assert_eq!(browser.post_message(BODY).await.status(), 303);
    assert_eq!(browser.post_message(BODY).await.status(), 429);
    assert_eq!(browser.get("/nowhere").await.status(), 404);
    assert_eq!(browser.get("/link/QRSTUVWXYZ23").await.status(), 404);
    assert!(open(&browser, Some("http://evil.example")).await.is_err());
    let mut socket = join_settings(&mut browser, "page-1").await;
    change(&mut socket, 1, NAME, "light").await;
    assert_eq!(recv(&mut socket).await["t"], "ack");
    drop(socket);
    let cookie = browser.cookie.clone().unwrap();
    server.stop();
    let text = log.finished();

    let requests: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("request{") && l.contains(" served "))
        .collect();
    let logged = |method: &str, path: &str, status: u16| {
        requests.iter().any(|line| {
            line.contains(&format!("method={method} path={path}}}"))
                && line.contains(&format!("status={status}"))
                && line.contains("latency_ms=")
        })
    };
    assert!(logged("GET", "/settings", 200), "{text}");
    assert!(logged("POST", "/settings", 303), "{text}");
    assert!(logged("POST", "/messages", 303), "{text}");
    assert!(logged("POST", "/messages", 429), "{text}");
    assert!(logged("GET", "/nowhere", 404), "{text}");
    assert!(logged("GET", "/link/…", 404), "{text}");
    assert!(logged("GET", "/live", 403), "{text}");
    assert!(logged("GET", "/live", 101), "{text}");
    assert!(requests.iter().all(|line| line.contains("DEBUG")), "{text}");
    assert!(!text.contains("query-7e1d"), "a query string was logged");

    // The notable events, at info.
    for event in [
        "starting livesession",
        "listening on http://",
        "refused a chat post over a rate limit",
        "refused a live socket from a foreign origin",
    ] {
        assert!(
            text.lines()
                .any(|line| line.contains(" INFO ") && line.contains(event)),
            "no INFO line with {event:?} in\n{text}"
        );
    }

    // Nothing that identifies a browser or repeats what it wrote.
    let value = &cookie["livesession=".len()..];
    let (id, device) = value[44..].split_once('.').unwrap();
    assert_eq!(id.len(), 36, "{cookie}");
    for secret in [
        value,
        id,
        device,
        &id.replace('-', ""),
        BODY,
        NAME,
        "QRSTUVWXYZ23",
    ] {
        assert!(!text.contains(secret), "{secret:?} is in the log:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_are_not_logged_at_the_default_level() {
    let dir = tempfile::tempdir().unwrap();
    let mut quiet = command(dir.path(), &[]);
    quiet.env_remove("RUST_LOG");
    let (server, log) = Server::start_logged(quiet);
    let mut browser = Browser::new(server.addr);
    browser.page("/settings").await;
    server.stop();
    let text = log.finished();
    assert!(text.contains("listening on http://"), "{text}");
    assert!(!text.contains("request{"), "{text}");
    assert!(!text.contains("DEBUG"), "{text}");
}
