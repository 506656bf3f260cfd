//! HTTPS from certificate files, through real sockets and the real binary: a client that trusts
//! the test CA gets the pages, a `Secure` cookie and HSTS; one that does not is refused; SIGHUP
//! with a new pair serves it on the next connection while an open live socket stays open; a bad
//! pair on SIGHUP keeps the old one, and at startup is refused before anything listens; a client
//! that never sends a ClientHello is closed within the header timeout.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::AsyncReadExt;
use tokio_rustls::rustls;

use crate::common::binary::{Server, assert_refused, run_to_exit};
use crate::common::tls::Authority;

fn start(data: &Path, cert: &Path, key: &Path, more: &[&str]) -> Server {
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ];
    args.extend_from_slice(more);
    Server::start(data, &args)
}

fn url(server: &Server, path: &str) -> String {
    format!("https://localhost:{}{path}", server.addr.port())
}

#[tokio::test]
async fn a_client_trusting_the_ca_gets_the_pages_a_secure_cookie_and_hsts_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new("livesession test CA");
    let (cert, key) = ca.issue(dir.path(), "server");
    let server = start(&dir.path().join("data"), &cert, &key, &[]);
    assert!(server.logged("listening on https://"));

    let client = ca.client(server.addr);
    let response = client.get(url(&server, "/settings")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("__Host-livesession="), "{cookie}");
    assert!(cookie.split("; ").any(|a| a == "Secure"), "{cookie}");
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    assert!(response.text().await.unwrap().contains("Settings"));
    let health = client.get(url(&server, "/healthz")).send().await.unwrap();
    assert!(health.headers().contains_key("strict-transport-security"));

    // A client that does not trust the CA is refused at the handshake.
    let stranger = Authority::new("some other CA").client(server.addr);
    assert!(
        stranger
            .get(url(&server, "/settings"))
            .send()
            .await
            .is_err()
    );
    // Plain HTTP on the HTTPS port gets no page.
    let plain = reqwest::get(format!("http://{}/settings", server.addr)).await;
    assert!(plain.is_err() || plain.unwrap().status() != StatusCode::OK);
    server.stop();
}

#[tokio::test]
async fn hsts_max_age_0_sends_no_header() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new("livesession test CA");
    let (cert, key) = ca.issue(dir.path(), "server");
    let server = start(
        &dir.path().join("data"),
        &cert,
        &key,
        &["--hsts-max-age", "0"],
    );
    let response = ca
        .client(server.addr)
        .get(url(&server, "/settings"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!response.headers().contains_key("strict-transport-security"));
    server.stop();
}

/// Opens a live socket over TLS (trusting `tls`) to `server` with `cookie`, joined to the
/// settings page.
async fn open_live(
    server: &Server,
    tls: Arc<rustls::ClientConfig>,
    client: &reqwest::Client,
) -> tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let page = client.get(url(server, "/settings")).send().await.unwrap();
    let cookie = page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = page.text().await.unwrap();
    let csrf = crate::common::attribute_after(&html, r#"data-live-csrf=""#).to_owned();
    let build = crate::common::attribute_after(&html, "/assets/live.")
        .split('.')
        .next()
        .unwrap()
        .to_owned();
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .unwrap();
    let request = http::Request::builder()
        .uri(format!("wss://localhost:{}/live", server.addr.port()))
        .header("host", format!("localhost:{}", server.addr.port()))
        .header(
            "origin",
            format!("https://localhost:{}", server.addr.port()),
        )
        .header("cookie", cookie)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header(
            "sec-websocket-key",
            tokio_tungstenite::tungstenite::handshake::client::generate_key(),
        )
        .body(())
        .unwrap();
    let (mut socket, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    use futures_util::SinkExt;
    let join = serde_json::json!({
        "t": "join", "view": "settings", "csrf": csrf, "build": build, "page": "tls-page",
    });
    socket
        .send(tokio_tungstenite::tungstenite::Message::Text(
            join.to_string().into(),
        ))
        .await
        .unwrap();
    socket
}

/// The next text message of `socket`, as JSON.
async fn next_json<S>(socket: &mut tokio_tungstenite::WebSocketStream<S>) -> serde_json::Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a message in time")
            .expect("the socket is open")
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

#[tokio::test]
async fn sighup_serves_a_new_pair_to_the_next_connection_keeps_open_sockets_and_refuses_a_bad_one()
{
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (Authority::new("old CA"), Authority::new("new CA"));
    let (cert, key) = old_ca.issue(dir.path(), "server");
    let server = start(&dir.path().join("data"), &cert, &key, &[]);
    let old_client = old_ca.client(server.addr);
    let mut socket = open_live(&server, old_ca.tls(), &old_client).await;
    assert_eq!(next_json(&mut socket).await["t"], "joined");

    // A new pair in the same files, and SIGHUP.
    let (new_cert, new_key) = new_ca.issue(dir.path(), "next");
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    server.signal("-HUP");
    let started = Instant::now();
    let new_client = new_ca.client(server.addr);
    loop {
        if new_client
            .get(url(&server, "/healthz"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the new pair is not served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        // A fresh client: the old one's pooled connection still has the old certificate.
        old_ca
            .client(server.addr)
            .get(url(&server, "/healthz"))
            .send()
            .await
            .is_err(),
        "a new connection gets the new certificate"
    );
    // The socket opened under the old certificate is still live: a change is acknowledged.
    use futures_util::SinkExt;
    let change = serde_json::json!({
        "t": "change", "form": "settings", "seq": 1,
        "fields": {"username": "Ada", "theme": "dark"},
    });
    socket
        .send(tokio_tungstenite::tungstenite::Message::Text(
            change.to_string().into(),
        ))
        .await
        .unwrap();
    loop {
        let message = next_json(&mut socket).await;
        if message["t"] == "ack" {
            break;
        }
    }

    // A key that is not the certificate's: refused, the new pair keeps serving.
    let (_, stray_key) = old_ca.issue(dir.path(), "stray");
    std::fs::copy(&stray_key, &key).unwrap();
    server.signal("-HUP");
    let started = Instant::now();
    while !server.logged("the old certificate keeps serving") {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no refusal logged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(server.logged("is not the key of the certificate"));
    let response = new_client
        .get(url(&server, "/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    server.stop();
}

#[test]
fn a_bad_pair_is_refused_at_startup_with_one_sentence_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new("livesession test CA");
    let (cert, key) = ca.issue(dir.path(), "server");
    let (_, other_key) = ca.issue(dir.path(), "other");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let data = dir.path().join("data");
    let data = data.as_path();
    let (cert, key, other_key, garbage) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        other_key.to_str().unwrap(),
        garbage.to_str().unwrap(),
    );
    let listen = ["--listen", "127.0.0.1:0"];
    let output = run_to_exit(
        data,
        &[&listen[..], &["--tls-cert", cert, "--tls-key", other_key]].concat(),
    );
    assert_refused(&output, "is not the key of the certificate");
    assert_refused(&output, other_key);
    let output = run_to_exit(
        data,
        &[&listen[..], &["--tls-cert", garbage, "--tls-key", key]].concat(),
    );
    assert_refused(&output, garbage);
    let output = run_to_exit(
        data,
        &[&listen[..], &["--tls-cert", cert, "--tls-key", garbage]].concat(),
    );
    assert_refused(&output, "holds no private key");
    let output = run_to_exit(data, &[&listen[..], &["--tls-cert", cert]].concat());
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--tls-key"));
}

#[tokio::test]
async fn a_client_that_never_sends_a_client_hello_is_closed_within_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new("livesession test CA");
    let (cert, key) = ca.issue(dir.path(), "server");
    let server = start(
        &dir.path().join("data"),
        &cert,
        &key,
        &["--header-timeout", "1s"],
    );
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buffer))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // A garbage handshake is one summarised line, not one per attempt.
    for _ in 0..20 {
        let mut junk = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        use tokio::io::AsyncWriteExt;
        let _ = junk.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let _ = junk.read(&mut buffer).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = server
        .log
        .lines()
        .iter()
        .filter(|l| l.contains("TLS handshake failed"))
        .count();
    assert!(lines <= 1, "{lines} lines for 20 failed handshakes");
    server.stop();
}

/// `systemctl reload` sends SIGHUP whatever the flags: a server without certificate files goes
/// on serving.
#[tokio::test]
async fn sighup_without_certificate_files_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--listen", "127.0.0.1:0"]);
    server.signal("-HUP");
    let started = Instant::now();
    while !server.logged("SIGHUP: nothing to read again") {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "SIGHUP not handled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health = reqwest::get(format!("http://{}/healthz", server.addr))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    server.stop();
}

#[tokio::test]
async fn redirect_http_answers_every_plain_request_with_a_308_to_https_and_serves_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new("livesession test CA");
    let (cert, key) = ca.issue(dir.path(), "server");
    let server = start(
        &dir.path().join("data"),
        &cert,
        &key,
        &["--redirect-http", "127.0.0.1:0"],
    );
    let line = server.log.wait_for("redirecting http://");
    let at = line.find("http://").unwrap() + "http://".len();
    let addr: SocketAddr = line[at..].split(' ').next().unwrap().parse().unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (method, path) in [
        ("GET", "/settings?link=X"),
        ("POST", "/messages"),
        ("GET", "/"),
    ] {
        let response = client
            .request(method.parse().unwrap(), format!("http://{addr}{path}"))
            .header("host", "chat.example:80")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::PERMANENT_REDIRECT,
            "{method} {path}"
        );
        assert_eq!(
            response.headers()["location"],
            format!("https://chat.example:{}{path}", server.addr.port()).as_str()
        );
        assert!(
            !response.headers().contains_key("set-cookie"),
            "no session here"
        );
    }
    let forged = client
        .get(format!("http://{addr}/"))
        .header("host", "evil.example/x")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    // The redirect, followed, reaches the site over HTTPS.
    let page = ca
        .client(server.addr)
        .get(url(&server, "/settings"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    server.stop();
}
