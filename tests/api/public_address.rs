//! On a public address: idle and half-sent connections are closed, a flood of connections
//! cannot take the process's descriptors, one address cannot take the connections or the live
//! sockets, `X-Forwarded-For` counts only from a trusted proxy, sockets that never join are
//! counted and closed, and what clients send cannot grow the log.
//!
//! The tests that need a process of their own (its open-file limit, its log) run the real
//! binary; the others an app in this process. A second client address is another loopback
//! address (127.0.0.2, ...), which Linux routes to the same interface.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use crate::common::binary::{Log, Server, command};
use crate::common::live::{self, Socket, closed};
use crate::common::{Browser, TestApp};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// A loopback address other than 127.0.0.1: `n` = 2 is 127.0.0.2.
fn loopback(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// A TCP connection to `addr` from `from`.
async fn connect_from(from: IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Reads until the server closes the connection (EOF or a reset), at most `limit`; returns
/// whether it did, and what it sent before.
async fn closed_by_server(stream: &mut TcpStream, limit: Duration) -> (bool, Vec<u8>) {
    let mut seen = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    let done = timeout(limit, read_all).await.is_ok();
    (done, seen)
}

/// One `GET path` from `from` on a connection of its own, with extra header lines; the status,
/// or `None` when the connection was closed without an answer.
async fn get_from(from: IpAddr, addr: SocketAddr, path: &str, extra: &str) -> Option<u16> {
    let mut stream = connect_from(from, addr).await;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return None;
    }
    let (_, answer) = closed_by_server(&mut stream, Duration::from_secs(20)).await;
    let head = String::from_utf8_lossy(&answer);
    head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Opens `/live` from `from` with `cookie`, this server's origin and an `X-Forwarded-For`.
async fn open_from(
    from: IpAddr,
    addr: SocketAddr,
    cookie: Option<&str>,
    forwarded_for: Option<&str>,
) -> Socket {
    let mut request = format!("ws://{addr}/live").into_client_request().unwrap();
    let headers = request.headers_mut();
    let origin = format!("http://{addr}");
    headers.insert("origin", HeaderValue::from_str(&origin).unwrap());
    if let Some(cookie) = cookie {
        headers.insert("cookie", HeaderValue::from_str(cookie).unwrap());
    }
    if let Some(forwarded) = forwarded_for {
        headers.insert("x-forwarded-for", HeaderValue::from_str(forwarded).unwrap());
    }
    let stream = MaybeTlsStream::Plain(connect_from(from, addr).await);
    tokio_tungstenite::client_async(request, stream)
        .await
        .expect("the upgrade was refused")
        .0
}

/// A page of `browser` (on the settings view) joining over a socket opened from `from`: what the
/// server answers ("joined", or the close frame's reason), and the socket.
async fn join_from(
    from: IpAddr,
    browser: &mut Browser,
    forwarded_for: Option<&str>,
) -> (String, Socket) {
    let info = live::page_info(browser, "/settings").await;
    let mut socket = open_from(from, browser.addr, browser.cookie.as_deref(), forwarded_for).await;
    live::send(
        &mut socket,
        serde_json::json!({"t": "join", "view": "settings", "csrf": info.csrf,
                           "build": info.build, "page": format!("p{}", rand_id()),
                           "version": info.version}),
    )
    .await;
    loop {
        let frame = timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("no answer to the join within 10 s");
        let answer = match frame {
            Some(Ok(Message::Text(text))) => {
                let message: serde_json::Value = serde_json::from_str(&text).unwrap();
                message["t"].as_str().unwrap().to_owned()
            }
            Some(Ok(Message::Close(Some(frame)))) => frame.reason.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => format!("{other:?}"),
        };
        return (answer, socket);
    }
}

/// Reads the close frame a refused socket gets at once: its code and reason.
async fn refusal(socket: &mut Socket) -> (CloseCode, String) {
    let frame = closed(socket).await.expect("a close frame");
    (frame.code, frame.reason.to_string())
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

/// The samples of a Prometheus scrape, by series.
async fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// The real binary with an open-file limit of `limit` (soft and hard: `main` raises the soft
/// limit to the hard one).
#[allow(unsafe_code)]
fn start_with_open_file_limit(dir: &std::path::Path, limit: u64, args: &[&str]) -> (Server, Log) {
    let mut command = command(dir, args);
    // SAFETY: setrlimit is async-signal-safe, and the closure allocates nothing.
    unsafe {
        command.pre_exec(move || rlimit::setrlimit(rlimit::Resource::NOFILE, limit, limit));
    }
    Server::start_logged(command)
}

/// The number after `prefix` in `line`.
fn number_after(line: &str, prefix: &str) -> usize {
    let at = line.find(prefix).unwrap() + prefix.len();
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_idle_connections_is_closed_in_time_and_healthz_still_answers() {
    rlimit::increase_nofile_limit(4096).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (server, log) =
        start_with_open_file_limit(dir.path(), 256, &["--header-timeout", "1s", "--metrics"]);
    let cap = number_after(&server.log.wait_for("serving at most "), "serving at most ");
    assert!(
        (64..256).contains(&cap),
        "the cap {cap} is not below the open-file limit of 256"
    );

    // More idle connections than the server may hold (those it does not take yet wait in the
    // kernel's listen queue, whose 128 places hold the rest; opened one after the other, so
    // none is dropped from a full queue): sending nothing, a partial request line, or the first
    // line of an HTTP/2 preface.
    let flood = cap + 100;
    let started = Instant::now();
    let mut idle = Vec::new();
    for n in 0..flood {
        let mut stream = connect_from(loopback(1), server.addr).await;
        match n % 3 {
            0 => {}
            1 => stream.write_all(b"P").await.unwrap(),
            _ => stream.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap(),
        }
        idle.push(stream);
    }
    let opened = started.elapsed();

    // Another client is answered.
    let asked = Instant::now();
    let health = timeout(
        Duration::from_secs(10),
        get_from(loopback(2), server.addr, "/healthz", ""),
    )
    .await
    .expect("/healthz did not answer within 10 s");
    assert_eq!(health, Some(200));
    let healthz_took = asked.elapsed();

    // Every idle connection is closed by the server: those it took at once within the header
    // timeout, those that waited in the queue one header timeout after they were taken.
    let rounds = flood.div_ceil(cap) as u32;
    let deadline = started + Duration::from_secs(1) * rounds + Duration::from_secs(5);
    let mut last_closed = Duration::ZERO;
    for stream in &mut idle {
        let left = deadline.saturating_duration_since(Instant::now());
        let (closed, _) = closed_by_server(stream, left).await;
        assert!(
            closed,
            "an idle connection was still open after {rounds} header timeouts"
        );
        last_closed = last_closed.max(started.elapsed());
    }
    drop(idle);

    let metrics = scrape(server.addr).await;
    let timed_out = metrics[r#"livesession_refused_total{reason="header_timeout"}"#];
    assert!(
        timed_out >= (2 * flood / 3) as f64,
        "{timed_out} header timeouts for {flood} idle connections"
    );
    let waited = metrics[r#"livesession_refused_total{reason="connections"}"#];
    if opened < Duration::from_millis(900) {
        // Opened before the first could time out: more than the cap were open at once.
        assert!(waited >= 1.0, "the cap of {cap} was never reached");
    }
    // Every place was given back: the scrape's own connection is the one left.
    assert_eq!(metrics["livesession_connections"], 1.0);
    server.stop();
    let log = log.finished();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(!log.contains("accepting connections failed"), "{log}");
    let lines = log.lines().count();
    assert!(
        lines < 30,
        "{lines} log lines for {flood} idle connections:\n{log}"
    );
    eprintln!(
        "{flood} idle connections against a cap of {cap}, opened in {opened:?}: /healthz answered \
         in {healthz_took:?}, the last idle connection closed {last_closed:?} after the flood \
         began, {lines} log lines"
    );
}

#[tokio::test]
async fn one_address_holds_at_most_max_connections_per_ip_and_others_are_served() {
    let app = TestApp::spawn(&["--max-connections-per-ip", "3", "--header-timeout", "30s"]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(loopback(1), app.addr).await);
    }
    // The fourth is closed at once, long before its header timeout.
    let mut fourth = connect_from(loopback(1), app.addr).await;
    let (closed, answer) = closed_by_server(&mut fourth, Duration::from_secs(10)).await;
    assert!(closed, "the fourth connection was not closed");
    assert!(answer.is_empty(), "it was answered: {answer:?}");
    assert_eq!(get_from(loopback(1), app.addr, "/healthz", "").await, None);
    // Another address is served; so is this one once it closes a connection.
    assert_eq!(
        get_from(loopback(2), app.addr, "/healthz", "").await,
        Some(200)
    );
    drop(held.pop());
    let started = Instant::now();
    while get_from(loopback(1), app.addr, "/healthz", "").await != Some(200) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no room after a close"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(held);
    app.stop().await;
}

#[tokio::test]
async fn a_trusted_proxy_is_not_held_to_the_cap_and_an_untrusted_peer_is() {
    let app = TestApp::spawn(&[
        "--max-connections-per-ip",
        "2",
        "--header-timeout",
        "30s",
        "--trusted-proxy",
        "127.0.0.1",
    ])
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from(loopback(1), app.addr).await);
    }
    // Its X-Forwarded-For names other clients each time, but the cap counts sockets' peers.
    let forwarded = "X-Forwarded-For: 203.0.113.7\r\n";
    assert_eq!(
        get_from(loopback(1), app.addr, "/healthz", forwarded).await,
        Some(200)
    );
    for _ in 0..2 {
        held.push(connect_from(loopback(2), app.addr).await);
    }
    assert_eq!(
        get_from(loopback(2), app.addr, "/healthz", forwarded).await,
        None,
        "an untrusted peer's X-Forwarded-For let it past the cap"
    );
    drop(held);
    app.stop().await;
}

#[tokio::test]
async fn x_forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
    let app = TestApp::spawn(&[
        "--trusted-proxy",
        "127.0.0.1",
        "--max-sockets-per-ip",
        "2",
        "--live-join-timeout",
        "10s",
    ])
    .await;
    let full = "too many live sockets from this address";
    let proxy = loopback(1);
    let mut held = Vec::new();
    // Behind the proxy, two sockets for client 10.0.0.1, then it is full...
    for _ in 0..2 {
        held.push(open_from(proxy, app.addr, None, Some("10.0.0.1")).await);
    }
    let mut third = open_from(proxy, app.addr, None, Some("10.0.0.1")).await;
    assert_eq!(
        refusal(&mut third).await,
        (CloseCode::Again, full.to_owned())
    );
    // ... while 10.0.0.2 behind the same proxy has room: a real page joins.
    let mut browser = app.browser();
    let (joined, page) = join_from(proxy, &mut browser, Some("10.0.0.2")).await;
    assert_eq!(joined, "joined");
    held.push(page);
    // The rightmost address the proxy did not add counts; what the client put before it does
    // not.
    held.push(open_from(proxy, app.addr, None, Some("10.0.0.1, 10.0.0.3")).await);
    held.push(open_from(proxy, app.addr, None, Some("10.0.0.9, 10.0.0.3, 127.0.0.1")).await);
    let mut spoofed = open_from(proxy, app.addr, None, Some("10.0.0.4, 10.0.0.3")).await;
    assert_eq!(
        refusal(&mut spoofed).await,
        (CloseCode::Again, full.to_owned())
    );

    // From a peer that is not a trusted proxy, X-Forwarded-For is ignored: it is one client.
    let untrusted = loopback(2);
    held.push(open_from(untrusted, app.addr, None, Some("10.0.0.5")).await);
    held.push(open_from(untrusted, app.addr, None, Some("10.0.0.6")).await);
    let mut third = open_from(untrusted, app.addr, None, Some("10.0.0.7")).await;
    assert_eq!(
        refusal(&mut third).await,
        (CloseCode::Again, full.to_owned())
    );
    let (refused, _) = join_from(untrusted, &mut browser, Some("10.0.0.8")).await;
    assert_eq!(refused, full);
    drop(held);
    app.stop().await;
}

#[tokio::test]
async fn sockets_that_never_join_count_against_the_caps_until_the_join_timeout_closes_them() {
    let app = TestApp::spawn(&[
        "--max-sockets",
        "5",
        "--max-sockets-per-ip",
        "3",
        "--live-join-timeout",
        "500ms",
    ])
    .await;
    let full_address = "too many live sockets from this address";
    // One address opens more sockets than it may hold, and never joins.
    let mut unjoined = Vec::new();
    for _ in 0..3 {
        unjoined.push(open_from(loopback(1), app.addr, None, None).await);
    }
    for _ in 0..2 {
        let mut extra = open_from(loopback(1), app.addr, None, None).await;
        assert_eq!(
            refusal(&mut extra).await,
            (CloseCode::Again, full_address.to_owned())
        );
    }
    let mut browser = app.browser();
    // A real page from another address joins while they are held.
    let (joined, page) = join_from(loopback(2), &mut browser, None).await;
    assert_eq!(joined, "joined");
    // One more unjoined socket elsewhere fills the server (3 + 1 + the joined page = 5): the
    // next page is turned away, however well-formed its join.
    unjoined.push(open_from(loopback(3), app.addr, None, None).await);
    let (refused, _) = join_from(loopback(4), &mut browser, None).await;
    assert_eq!(refused, "the server is full");
    // The join timeout closes the silent ones, with a reason...
    for socket in &mut unjoined {
        assert_eq!(
            refusal(socket).await,
            (CloseCode::Policy, "no join message".to_owned())
        );
    }
    // ... and then pages join again, from the address that held them too.
    let started = Instant::now();
    loop {
        match join_from(loopback(1), &mut browser, None).await.0.as_str() {
            "joined" => break,
            other => assert!(
                started.elapsed() < Duration::from_secs(10),
                "still refused: {other}"
            ),
        }
    }
    drop(page);
    app.stop().await;
}

/// A WebSocket upgrade of `/live` (or of `path`, with `method`) from a foreign `origin`, on a
/// kept-alive connection; the status of the answer, or `None` when the connection was closed.
async fn refused_upgrade(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    origin: &[u8],
) -> Option<u16> {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: "
    )
    .into_bytes();
    request.extend_from_slice(origin);
    request.extend_from_slice(b"\r\n\r\n");
    stream.write_all(&request).await.ok()?;
    // The head, then as many bytes of body as it says.
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    };
    let head = String::from_utf8_lossy(&answer[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    while answer.len() < head_end + length {
        match timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
    head.get(9..12)?.parse().ok()
}

/// A 60 KB `Origin` with what a log line must not carry raw: tabs, quotes, backslashes, bytes
/// that are not UTF-8.
fn hostile_origin() -> Vec<u8> {
    let mut origin = b"http://evil.example/".to_vec();
    while origin.len() < 60 * 1024 {
        origin.extend_from_slice(b"\t\"'\\\xff\xfe%0a");
        origin.extend_from_slice(&[b'o'; 40]);
    }
    origin
}

/// The bytes of everything logged so far, as written (each line and its newline).
fn log_bytes(log: &Log) -> usize {
    log.lines().iter().map(|l| l.len() + 1).sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_invalid_cookies_and_refused_posts_grows_the_log_by_kilobytes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, log) = Server::start_logged(command(dir.path(), &["--metrics"]));
    let before = log_bytes(&log);
    let (tasks, each) = (4, 300);
    let mut flood = Vec::new();
    for task in 0..tasks {
        let addr = server.addr;
        flood.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for n in 0..each {
                let response = client
                    .get(format!("http://{addr}/settings"))
                    .header("cookie", format!("livesession=forged-{task}-{n}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
            }
        }));
    }
    for task in flood {
        task.await.unwrap();
    }
    // One browser posting far over its allowance: every post past the burst is refused.
    let mut browser = Browser::new(server.addr);
    let mut refused = 0;
    for n in 0..200 {
        if browser.post_message(&format!("flood {n}")).await.status() == 429 {
            refused += 1;
        }
    }
    assert!(refused > 150, "{refused}");
    let metrics = scrape(server.addr).await;
    assert_eq!(
        metrics[r#"livesession_refused_total{reason="invalid_cookie"}"#],
        (tasks * each) as f64
    );
    assert_eq!(
        metrics[r#"livesession_refused_total{reason="chat_rate_limit"}"#],
        f64::from(refused)
    );
    server.stop();
    let text = log.finished();
    let grown = log_bytes(&log) - before;
    assert!(
        grown < 8 * 1024,
        "{} invalid cookies and {refused} refused posts grew the log by {grown} bytes:\n{text}",
        tasks * each
    );
    assert!(text.contains("failed verification"), "{text}");
    assert!(text.contains("refused a chat post"), "{text}");
    assert!(text.contains("more in the last"), "{text}");
    eprintln!(
        "{} invalid cookies and {refused} refused posts grew the log by {grown} bytes",
        tasks * each
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_refused_upgrades_with_huge_origins_grows_the_log_by_kilobytes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, log) = Server::start_logged(command(dir.path(), &["--metrics"]));
    let before = log_bytes(&log);
    let origin = std::sync::Arc::new(hostile_origin());
    let (tasks, each) = (4, 250);
    let mut flood = Vec::new();
    for _ in 0..tasks {
        let origin = std::sync::Arc::clone(&origin);
        let addr = server.addr;
        flood.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            for _ in 0..each {
                match refused_upgrade(&mut stream, "GET", "/live", &origin).await {
                    Some(status) => assert_eq!(status, 403),
                    None => stream = TcpStream::connect(addr).await.unwrap(),
                }
            }
        }));
    }
    for task in flood {
        task.await.unwrap();
    }
    let metrics = scrape(server.addr).await;
    let refused = metrics[r#"livesession_refused_total{reason="origin"}"#];
    assert_eq!(refused, (tasks * each) as f64);
    assert_eq!(metrics["livesession_live_origin_rejections_total"], refused);
    // An upgraded socket keeps its connection's place until it closes.
    let mut browser = Browser::new(server.addr);
    let (joined, socket) = join_from(loopback(1), &mut browser, None).await;
    assert_eq!(joined, "joined");
    drop(browser);
    let open_now = |want: f64| async move {
        let started = Instant::now();
        loop {
            let open = scrape(server.addr).await["livesession_connections"];
            if open == want {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{open} open, not {want}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    // The socket's, and the scrape's own.
    open_now(2.0).await;
    drop(socket);
    open_now(1.0).await;
    server.stop();
    let text = log.finished();
    let grown = log_bytes(&log) - before;
    let sent = tasks * each * origin.len();
    assert!(
        grown < 8 * 1024,
        "{} refusals with {sent} bytes of origins grew the log by {grown} bytes:\n{text}",
        tasks * each
    );
    // The first refusal is logged at once, the rest in a summary.
    assert!(
        text.contains("refused a live socket from a foreign origin"),
        "{text}"
    );
    assert!(text.contains("more in the last"), "{text}");
    eprintln!(
        "{} refused upgrades with {sent} bytes of origins grew the log by {grown} bytes",
        tasks * each
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn what_clients_send_reaches_a_debug_log_line_escaped_and_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut debug = command(dir.path(), &[]);
    debug.env("RUST_LOG", "livesession=debug");
    let (server, log) = Server::start_logged(debug);
    let origin = hostile_origin();
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    for _ in 0..10 {
        let status = refused_upgrade(&mut stream, "GET", "/live", &origin).await;
        assert_eq!(status, Some(403));
    }
    // A long path, and a long made-up method, are logged by the request line.
    let path = format!("/{}", "p".repeat(30_000));
    let method = "M".repeat(20_000);
    for method in ["GET", method.as_str()] {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let status = refused_upgrade(&mut stream, method, &path, b"x").await;
        assert!(status.is_some_and(|s| s >= 400), "{status:?}");
    }
    server.stop();
    let text = log.finished();
    let refusals: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("DEBUG") && l.contains("refused a live socket"))
        .collect();
    assert_eq!(refusals.len(), 10, "{text}");
    assert!(refusals[0].contains("client=127.0.0.1"), "{}", refusals[0]);
    assert!(
        refusals[0].contains(r#"origin=http://evil.example/\t"'\\\xff\xfe%0aoooo"#),
        "{}",
        refusals[0]
    );
    assert!(refusals[0].contains("bytes cut)"), "{}", refusals[0]);
    assert!(
        text.lines()
            .any(|l| l.contains(" served ") && l.contains("pppp…(")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains(" served ") && l.contains("MMMM…(")),
        "{text}"
    );
    for line in text.lines() {
        assert!(line.len() < 1500, "a line of {} bytes: {line}", line.len());
        assert!(
            !line.chars().any(char::is_control),
            "a raw control: {line:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn running_out_of_descriptors_backs_off_and_is_logged_once_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let (server, log) = start_with_open_file_limit(dir.path(), 256, &["--header-timeout", "1s"]);
    // Lower the limit under the running server, below what its connection cap assumed: accept
    // now fails with EMFILE long before the cap.
    let pid = i32::try_from(server.child.id()).unwrap();
    rlimit::prlimit(pid, rlimit::Resource::NOFILE, Some((48, 48)), None).unwrap();
    let started = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..70 {
        idle.push(connect_from(loopback(1), server.addr).await);
    }
    // They are all closed in time (the ones accepted late, one header timeout after that)...
    for stream in &mut idle {
        let left = (started + Duration::from_secs(20)).saturating_duration_since(Instant::now());
        let (closed, _) = closed_by_server(stream, left).await;
        assert!(closed, "an idle connection was never closed");
    }
    let drained = started.elapsed();
    drop(idle);
    // ... and the server serves again.
    let mut health = None;
    while health != Some(200) {
        assert!(started.elapsed() < Duration::from_secs(30), "{health:?}");
        health = get_from(loopback(2), server.addr, "/healthz", "").await;
    }
    server.stop();
    let text = log.finished();
    let failures: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Too many open files") || l.contains("accepting connections"))
        .collect();
    assert!(!failures.is_empty(), "accept never failed:\n{text}");
    // Within one 10 s interval: the first failure, and no more lines.
    assert_eq!(failures.len(), 1, "{failures:#?}");
    eprintln!(
        "70 connections with 48 descriptors: drained in {drained:?}, {} log line(s) about \
         accepting: {}",
        failures.len(),
        failures[0]
    );
}
