//! Hostile input: random and mangled cookies, random WebSocket frames, floods, too many sockets,
//! cross-site requests, oversized requests. Never a panic, never another session's data, and the
//! server stays healthy for everyone else.

use std::sync::OnceLock;
use std::time::Duration;

use crate::common::live::{self, change, closed, join_chat, join_settings, recv};
use crate::common::{Browser, SECRET_A, TestApp, username_field};
use futures_util::SinkExt;
use livesession::session::{COOKIE_NAME, Keys, SessionId, Verdict};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, HeaderValue};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys::new(SECRET_A.as_bytes(), &[], false).unwrap())
}

fn cookie_header(value: &[u8]) -> Option<axum::http::HeaderMap> {
    let mut headers = axum::http::HeaderMap::new();
    let mut header = format!("{COOKIE_NAME}=").into_bytes();
    header.extend_from_slice(value);
    headers.insert("cookie", axum::http::HeaderValue::from_bytes(&header).ok()?);
    Some(headers)
}

fn signed_value(id: SessionId) -> String {
    let pair = crate::common::cookie_pair(keys(), id);
    pair[COOKIE_NAME.len() + 1..].to_owned()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_cookie_values_never_verify(value in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Some(headers) = cookie_header(&value) {
            let verdict = keys().verify(&headers);
            prop_assert!(matches!(verdict, Verdict::Invalid | Verdict::Missing), "{verdict:?}");
        }
    }

    #[test]
    fn a_truncated_or_extended_cookie_never_verifies_as_another_session(
        cut in 0usize..80, extra in "[A-Za-z0-9+/=-]{0,40}"
    ) {
        let id = SessionId::generate();
        let value = signed_value(id);
        let mangled = format!("{}{}", &value[..value.len().saturating_sub(cut)], extra);
        let headers = cookie_header(mangled.as_bytes()).unwrap();
        match keys().verify(&headers) {
            Verdict::Current(same) => prop_assert_eq!(same.session, id),
            Verdict::Invalid | Verdict::Missing => {}
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn a_bit_flipped_cookie_is_the_same_session_or_none(byte in 0usize..80, bit in 0u8..8) {
        let id = SessionId::generate();
        let mut value = signed_value(id).into_bytes();
        let at = byte % value.len();
        value[at] ^= 1 << bit;
        if let Some(headers) = cookie_header(&value) {
            match keys().verify(&headers) {
                // A flip in the unused low bits of the last base64 digit leaves the bytes as
                // they were: still the same session, never another.
                Verdict::Current(same) => prop_assert_eq!(same.session, id),
                Verdict::Invalid | Verdict::Missing => {}
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }
}

#[tokio::test]
async fn random_cookies_over_http_always_get_a_fresh_session_and_the_defaults() {
    let app = TestApp::spawn(&[]).await;
    let mut owner = app.browser();
    owner.save_settings("owner", "dark").await;
    let client = reqwest::Client::new();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = proptest::collection::vec(any::<u8>(), 0..2000);
    for _ in 0..300 {
        let value = strategy.new_tree(&mut runner).unwrap().current();
        let mut header = format!("{COOKIE_NAME}=").into_bytes();
        header.extend(value);
        let Ok(header) = HeaderValue::from_bytes(&header) else {
            continue;
        };
        let response = client
            .get(app.url("/settings"))
            .header(COOKIE, header)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().contains_key("set-cookie"));
        let page = response.text().await.unwrap();
        assert_eq!(username_field(&page), "");
    }
    assert_eq!(username_field(&owner.page("/settings").await), "owner");
    app.stop().await;
}

#[tokio::test]
async fn random_websocket_frames_never_hurt_the_server() {
    let app = TestApp::spawn(&["--live-message-rate", "100000"]).await;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let texts = prop_oneof![
        any::<String>(),
        "\\{\"t\":\"(join|change|post|ack|render)\"[^}]{0,80}\\}",
        Just(
            r#"{"t":"change","form":"settings","seq":18446744073709551615,"fields":{}}"#.to_owned()
        ),
        Just(r#"{"t":"post","form":"composer","seq":1,"nonce":"","body":""}"#.to_owned()),
        Just(r#"{"t":"change","form":"settings","seq":1,"fields":{"username":null}}"#.to_owned()),
        Just("[".repeat(10_000)),
    ];
    let mut browser = app.browser();
    let mut frames = 0;
    for round in 0..20 {
        let mut socket = if round % 2 == 0 {
            join_settings(&mut browser, &format!("p{round}")).await
        } else {
            join_chat(&mut browser, &format!("p{round}"), None).await
        };
        for _ in 0..25 {
            let text = texts.new_tree(&mut runner).unwrap().current();
            if socket.send(Message::text(text)).await.is_err() {
                break;
            }
            frames += 1;
        }
        let binary: Vec<u8> = proptest::collection::vec(any::<u8>(), 0..100)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let _ = socket.send(Message::binary(binary)).await;
        drop(socket);
        // After each round the server answers everyone.
        assert_eq!(browser.get("/healthz").await.status(), StatusCode::OK);
    }
    let mut fresh = app.browser();
    let mut socket = join_settings(&mut fresh, "after").await;
    change(&mut socket, 1, "still fine", "dark").await;
    assert_eq!(recv(&mut socket).await["t"], "ack");
    eprintln!("random websocket frames sent: {frames}");
    app.stop().await;
}

#[tokio::test]
async fn a_flooding_socket_is_closed_and_others_are_not_affected() {
    let app = TestApp::spawn(&["--live-message-rate", "10"]).await;
    let mut flooder = app.browser();
    let mut flood = join_settings(&mut flooder, "flood").await;
    let mut neighbour = app.browser();
    let mut calm = join_settings(&mut neighbour, "calm").await;

    for seq in 1..=200u64 {
        let text = serde_json::json!({"t": "change", "form": "settings", "seq": seq,
                                      "fields": {"username": format!("f{seq}")}})
        .to_string();
        if flood.send(Message::text(text)).await.is_err() {
            break;
        }
    }
    let frame = closed(&mut flood).await.expect("a close frame");
    assert_eq!(frame.code, CloseCode::Policy);
    assert_eq!(frame.reason.as_str(), "too many messages");
    change(&mut calm, 1, "calm", "light").await;
    assert_eq!(recv(&mut calm).await["t"], "ack");
    app.stop().await;
}

#[tokio::test]
async fn sockets_per_browser_and_in_total_are_bounded_with_a_clear_reason() {
    let app = TestApp::spawn(&["--max-sockets-per-session", "3", "--max-sockets", "5"]).await;
    let mut browser = app.browser();
    let mut open = Vec::new();
    for n in 0..3 {
        open.push(join_settings(&mut browser, &format!("tab{n}")).await);
    }
    let info = live::page_info(&mut browser, "/settings").await;
    let origin = format!("http://{}", app.addr);
    let join = |page: &str| {
        serde_json::json!({"t": "join", "view": "settings", "csrf": info.csrf, "build": info.build,
                           "page": page, "version": info.version})
    };
    let mut fourth = live::open(&browser, Some(&origin)).await.unwrap();
    live::send(&mut fourth, join("tab3")).await;
    let frame = closed(&mut fourth).await.expect("a close frame");
    assert_eq!(frame.code, CloseCode::Again);
    assert_eq!(
        frame.reason.as_str(),
        "too many open pages for this browser"
    );

    // Two more browsers fill the server; the sixth socket is turned away.
    let mut others = Vec::new();
    for n in 0..2 {
        let mut other = app.browser();
        others.push(join_settings(&mut other, &format!("o{n}")).await);
    }
    let mut late = app.browser();
    let info = live::page_info(&mut late, "/settings").await;
    let mut sixth = live::open(&late, Some(&origin)).await.unwrap();
    live::send(
        &mut sixth,
        serde_json::json!({"t": "join", "view": "settings", "csrf": info.csrf,
        "build": info.build, "page": "late", "version": info.version}),
    )
    .await;
    let frame = closed(&mut sixth).await.expect("a close frame");
    assert_eq!(frame.code, CloseCode::Again);
    assert_eq!(frame.reason.as_str(), "the server is full");

    // A socket that leaves makes room again.
    drop(others.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = live::open(&late, Some(&origin)).await.unwrap();
    live::send(
        &mut again,
        serde_json::json!({"t": "join", "view": "settings", "csrf": info.csrf,
        "build": info.build, "page": "late2", "version": info.version}),
    )
    .await;
    assert_eq!(recv(&mut again).await["t"], "joined");
    app.stop().await;
}

#[tokio::test]
async fn cross_site_posts_of_any_content_type_are_refused() {
    let app = TestApp::spawn(&[]).await;
    let mut victim = app.browser();
    victim.save_settings("victim", "dark").await;
    let cookie = victim.cookie.clone().unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (path, content_type, body) in [
        (
            "/settings",
            "application/x-www-form-urlencoded",
            "username=pwned&theme=light",
        ),
        (
            "/settings",
            "application/json",
            r#"{"username":"pwned","theme":"light"}"#,
        ),
        ("/settings", "text/plain", "username=pwned&theme=light"),
        (
            "/settings",
            "multipart/form-data; boundary=x",
            "--x\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\npwned\r\n--x--\r\n",
        ),
        (
            "/messages",
            "application/x-www-form-urlencoded",
            "body=pwned",
        ),
        ("/messages", "application/json", r#"{"body":"pwned"}"#),
        ("/settings/forget", "application/x-www-form-urlencoded", ""),
    ] {
        let response = client
            .post(app.url(path))
            .header(COOKIE, &cookie)
            .header("origin", "http://evil.example")
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status() == StatusCode::FORBIDDEN
                || response.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{path} {content_type}: {}",
            response.status()
        );
    }
    assert_eq!(username_field(&victim.page("/settings").await), "victim");
    assert!(!victim.page("/").await.contains("pwned"));
    app.stop().await;
}

#[tokio::test]
async fn oversized_headers_are_refused_and_no_version_banner_is_sent() {
    let app = TestApp::spawn(&[]).await;
    let client = reqwest::Client::new();
    let response = client
        .get(app.url("/settings"))
        .header("x-padding", "p".repeat(512 * 1024))
        .send()
        .await;
    match response {
        Ok(response) => assert!(response.status().is_client_error(), "{}", response.status()),
        Err(e) => assert!(e.is_request() || e.is_connect() || e.is_body(), "{e}"),
    }
    let response = Browser::new(app.addr).get("/settings").await;
    assert!(response.headers().get("server").is_none());
    assert!(response.headers().get("x-powered-by").is_none());
    app.stop().await;
}

#[tokio::test]
async fn a_keep_alive_connection_is_closed_after_the_header_timeout_of_quiet_not_while_busy() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn(&["--header-timeout", "500ms"]).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let mut buf = vec![0u8; 8192];
    // Busy for three header timeouts: a request every 150 ms, each answered on the same
    // connection.
    let started = std::time::Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "request {answered}");
        answered += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(answered >= 8);

    // A request whose body takes longer than the header timeout is in flight: not cut.
    let body = b"_csrf=x&username=slow&theme=dark";
    let head = format!(
        "POST /settings HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(4) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stream.write_all(chunk).await.unwrap();
    }
    let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 403"),
        "answered (a bad CSRF token), not cut: {:?}",
        String::from_utf8_lossy(&buf[..n.min(40)])
    );

    // Then quiet: closed once the header timeout has passed without a request.
    let quiet = std::time::Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf))
        .await
        .expect("an idle connection was never closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed, without an answer");
    let took = quiet.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "closed too early: {took:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn(&["--header-timeout", "500ms"]).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET /settings HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let trickle = async {
        loop {
            if stream.write_all(b"X").await.is_err() {
                return;
            }
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return,
                Ok(Ok(_)) => return, // an error response, then the close
                Err(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), trickle)
        .await
        .expect("the trickling client was never cut off");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "cut off too early: {took:?}"
    );
    // Everyone else is served.
    assert_eq!(
        Browser::new(app.addr).get("/healthz").await.status(),
        StatusCode::OK
    );
    app.stop().await;
}

/// Saves and posts from other tabs race "forget me": each is either done before the forget (and
/// then forgotten with the session: messages unlinked) or refused with a sentence, never a
/// redirect for a write that went nowhere, and no message stays linked to the forgotten id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_racing_a_forget_are_refused_clearly_and_leave_nothing_under_the_dead_id() {
    let app = TestApp::spawn(&[
        "--message-burst",
        "1000",
        "--message-burst-per-ip",
        "1000",
        "--room-message-burst",
        "1000",
    ])
    .await;
    for round in 0..5 {
        let mut owner = app.browser();
        owner.save_settings("Ada", "dark").await;
        let token = owner.csrf_token().await;
        let cookie = owner.cookie.clone().unwrap();
        let start = "livesession=".len() + 44;
        let id = cookie[start..start + 36].to_owned();
        let mut tabs = Vec::new();
        for n in 0..30 {
            let mut tab = owner.clone();
            let token = token.clone();
            tabs.push(tokio::spawn(async move {
                let nonce = format!("r{round}n{n}");
                let response = if n % 2 == 0 {
                    tab.post(
                        "/messages",
                        &[("_csrf", &token), ("nonce", &nonce), ("body", "racing")],
                    )
                    .await
                } else {
                    tab.post(
                        "/settings",
                        &[("_csrf", &token), ("username", &nonce), ("theme", "light")],
                    )
                    .await
                };
                response.status()
            }));
        }
        let forgot = owner
            .post("/settings/forget", &[("_csrf", token.as_str())])
            .await;
        assert_eq!(forgot.status(), StatusCode::SEE_OTHER);
        for tab in tabs {
            let status = tab.await.unwrap();
            assert!(
                [
                    StatusCode::SEE_OTHER,
                    StatusCode::CONFLICT,
                    StatusCode::FORBIDDEN
                ]
                .contains(&status),
                "{status}"
            );
        }
        let db = app.db();
        let linked: i64 = db
            .query_row(
                "SELECT count(*) FROM messages WHERE author_session = ?1",
                [&id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(linked, 0, "messages linked to the forgotten id");
        let rows: i64 = db
            .query_row(
                "SELECT count(*) FROM settings WHERE session_id = ?1",
                [&id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rows, 0);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_form_that_is_not_utf8_is_refused_with_a_sentence_not_rewritten() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser.save_settings("ada", "system").await;
    let token = browser.csrf_token().await;
    let cookie = browser.cookie.clone().unwrap();
    let client = browser.client.clone();
    let post = |path: &'static str, body: Vec<u8>| {
        client
            .post(app.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .header(COOKIE, cookie.clone())
            .body(body)
            .send()
    };
    let escaped = format!("_csrf={token}&username=b%FFob&theme=dark").into_bytes();
    let mut raw = format!("_csrf={token}&username=b").into_bytes();
    raw.extend_from_slice(b"\xfe\xffob&theme=dark");
    for body in [escaped, raw] {
        let response = post("/settings", body).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let text = response.text().await.unwrap();
        assert!(text.contains("not sent as UTF-8 text"), "{text}");
    }
    let page = browser.page("/settings").await;
    assert_eq!(username_field(&page), "ada", "the name was not rewritten");
    assert_eq!(
        crate::common::selected_theme(&page),
        "system",
        "nor the theme"
    );

    let chat = browser.page("/").await;
    let nonce = crate::common::attribute_after(&chat, r#"name="nonce" value=""#).to_owned();
    let body = format!("_csrf={token}&nonce={nonce}&body=hi%C3%28").into_bytes();
    let response = post("/messages", body).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(!browser.page("/").await.contains("hi\u{fffd}"));
    app.stop().await;
}

/// Sends `GET /healthz` with `bytes` of headers in all over a raw socket: the status answered.
async fn status_with_headers_of(addr: std::net::SocketAddr, bytes: usize) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    let mut request = head.to_owned();
    // Headers of 1 KiB each (the header count stays under hyper's 100), then the end.
    while request.len() + 1024 + 2 < bytes {
        let n = request.len();
        request.push_str(&format!("x-pad-{n}: {}\r\n", "p".repeat(1000)));
    }
    let fill = bytes - request.len() - 2;
    if fill > 12 {
        request.push_str(&format!("x-last: {}\r\n", "q".repeat(fill - 10)));
    }
    request.push_str("\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .ok()?
        .ok()?;
    std::str::from_utf8(&answer[..n])
        .ok()?
        .get(9..12)?
        .parse()
        .ok()
}

#[tokio::test]
async fn headers_over_the_documented_64_kib_get_431_and_those_under_it_are_served() {
    let app = TestApp::spawn(&[]).await;
    assert_eq!(status_with_headers_of(app.addr, 60 * 1024).await, Some(200));
    for bytes in [65 * 1024, 100 * 1024, 127 * 1024] {
        assert_eq!(
            status_with_headers_of(app.addr, bytes).await,
            Some(431),
            "{bytes} bytes of headers"
        );
    }
    app.stop().await;
}
