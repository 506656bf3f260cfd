//! Links another device can open: the link and QR code of "Use on another device" name
//! `--public-url` when given; else the `Host` the page was opened at when this server answers for
//! it, with a loopback one on a server listening on every interface replaced by this machine's
//! LAN address; never a forged `Host`. The startup log says where the server is reached.

use std::net::{IpAddr, SocketAddr};

use crate::common::binary::{Server, command};
use crate::common::{Browser, TestApp};
use livesession::views::qr_svg;
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Makes a code on `browser`: the URL of the settings page that shows it, and the code as its
/// link names it.
async fn make_code(browser: &mut Browser) -> (String, String) {
    let token = browser.csrf_token().await;
    let response = browser
        .post("/settings/link", &[("_csrf", token.as_str())])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    let code = location
        .strip_prefix("/settings?link=")
        .unwrap_or_else(|| panic!("{location}"))
        .to_owned();
    (location, code)
}

/// `GET path` of `browser`'s session over a connection to `to`, with this `Host`: the whole
/// answer, head and body.
async fn get_with_host(browser: &Browser, to: SocketAddr, path: &str, host: &str) -> String {
    let mut stream = TcpStream::connect(to).await.unwrap();
    let cookie = browser.cookie.as_deref().expect("a session cookie");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    answer
}

/// Asserts that `page` shows the link `<origin>/link/<code>`, and its QR code.
fn assert_links_to(page: &str, origin: &str, code: &str, asked_with: &str) {
    let url = format!("{origin}/link/{code}");
    assert!(
        page.contains(&format!("href=\"{url}\"")) || page.contains(&url),
        "Host {asked_with:?}: the page does not link to {url}"
    );
    assert!(
        page.contains(&qr_svg(&url)),
        "Host {asked_with:?}: the QR code is not that of {url}"
    );
}

/// This machine's LAN address as a link names it: the first IPv4 interface address that is
/// neither loopback nor link-local.
fn lan_ipv4() -> Option<IpAddr> {
    livesession::origin::interface_addresses()
        .unwrap()
        .into_iter()
        .find(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local(),
            IpAddr::V6(_) => false,
        })
}

#[tokio::test]
async fn a_forged_host_reaches_neither_the_link_nor_its_qr_code() {
    let app = TestApp::spawn(&[]).await;
    let mut desktop = app.browser();
    let (page, code) = make_code(&mut desktop).await;
    let port = app.addr.port();
    // The longest host name DNS allows, and a port: still a name, and still not this server.
    let long = format!("{}.example:{port}", "a".repeat(245));
    let forged = [
        "evil.example".to_owned(),
        format!("evil.example:{port}"),
        format!("user:pw@127.0.0.1:{port}"),
        format!("user@evil.example:{port}"),
        long,
        format!("192.0.2.1:{port}"),
    ];
    for host in &forged {
        let answer = get_with_host(&desktop, app.addr, &page, host).await;
        // The listening address stands in.
        assert_links_to(&answer, &format!("http://{}", app.addr), &code, host);
        assert!(!answer.contains("evil"), "{host:?} reached the page");
        assert!(!answer.contains("pw@"), "{host:?} reached the page");
        assert!(
            !answer.contains(&"a".repeat(64)),
            "{host:?} reached the page"
        );
        assert!(!answer.contains("192.0.2.1"), "{host:?} reached the page");
    }
    // A host this server answers for is kept as the browser named it.
    let named = format!("localhost:{port}");
    let answer = get_with_host(&desktop, app.addr, &page, &named).await;
    assert_links_to(&answer, &format!("http://{named}"), &code, &named);
    app.stop().await;
}

#[tokio::test]
async fn the_public_url_names_the_link_whatever_the_host() {
    let app = TestApp::spawn(&["--public-url", "https://demo.example.com/"]).await;
    let mut desktop = app.browser();
    let (page, code) = make_code(&mut desktop).await;
    for host in [
        format!("127.0.0.1:{}", app.addr.port()),
        "evil.example".to_owned(),
    ] {
        let answer = get_with_host(&desktop, app.addr, &page, &host).await;
        assert_links_to(&answer, "https://demo.example.com", &code, &host);
        assert!(!answer.contains("evil.example"), "{host:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_loopback_request_on_every_interface_gets_the_lan_address() {
    let app = TestApp::spawn(&["--listen", "0.0.0.0:0"]).await;
    let port = app.addr.port();
    let loopback = SocketAddr::from(([127, 0, 0, 1], port));
    let mut desktop = Browser::new(loopback);
    let (page, code) = make_code(&mut desktop).await;
    let lan = lan_ipv4();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "evil.example".to_owned(),
    ] {
        let answer = get_with_host(&desktop, loopback, &page, &host).await;
        let origin = match (lan, host.as_str()) {
            (Some(lan), _) => format!("http://{lan}:{port}"),
            // A machine without a LAN address keeps the loopback link, never a forged one.
            (None, "evil.example") => format!("http://127.0.0.1:{port}"),
            (None, host) => format!("http://{host}"),
        };
        assert_links_to(&answer, &origin, &code, &host);
    }
    // A request from the network, on the LAN address, keeps the address it used.
    if let Some(lan) = lan {
        let on_lan = SocketAddr::new(lan, port);
        let answer = get_with_host(&desktop, on_lan, &page, &on_lan.to_string()).await;
        assert_links_to(
            &answer,
            &format!("http://{on_lan}"),
            &code,
            "the LAN address",
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn startup_says_each_url_the_server_is_reached_at() {
    let dir = tempfile::tempdir().unwrap();
    let (server, log) = Server::start_logged(command(dir.path(), &["--listen", "0.0.0.0:0"]));
    let port = server.addr.port();
    log.wait_for(&format!("Local: http://127.0.0.1:{port}"));
    if let Some(lan) = lan_ipv4() {
        log.wait_for(&format!("Network: http://{lan}:{port}"));
    }
    server.stop();
    let text = log.finished();
    let listening = text
        .find("listening on http://0.0.0.0:")
        .expect("the listening line");
    let local = text.find("Local: ").unwrap();
    assert!(
        listening < local,
        "the URLs come after the listening line:\n{text}"
    );
    assert!(!text.contains("Network: http://127."), "{text}");

    // A server on loopback only is reached from this machine only.
    let dir = tempfile::tempdir().unwrap();
    let (server, log) = Server::start_logged(command(dir.path(), &[]));
    log.wait_for(&format!("Local: http://{}", server.addr));
    server.stop();
    let text = log.finished();
    assert!(!text.contains("Network: "), "{text}");
}

/// `GET path` over a connection of its own with this `Host`: the status and the answer's body.
async fn status_with_host(to: SocketAddr, path: &str, host: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(to).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, body.to_owned())
}

#[tokio::test]
async fn a_host_longer_than_a_host_name_may_be_is_refused_with_400() {
    let app = TestApp::spawn(&[]).await;
    let name = format!("{}.example", "a".repeat(245));
    assert_eq!(name.len(), 253);
    for path in ["/settings", "/", "/link/ABCD-EFGH", "/healthz"] {
        let (status, _) = status_with_host(app.addr, path, &format!("{name}:65535")).await;
        assert_ne!(status, 400, "{path} with the longest host name and a port");
        for host in [
            format!("a{name}:65535"),
            format!("{}.example", "a".repeat(2048)),
        ] {
            let (status, body) = status_with_host(app.addr, path, &host).await;
            assert_eq!(status, 400, "{path} with a {}-byte Host", host.len());
            assert!(body.contains("longer than a host name may be"), "{body}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn the_qr_code_of_a_link_is_drawn_once_however_often_its_page_is_viewed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--metrics"]);
    let mut desktop = Browser::new(server.addr);
    let (page, code) = make_code(&mut desktop).await;
    let drawn = || async {
        let text = reqwest::get(format!("http://{}/metrics", server.addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix("livesession_qr_codes_drawn_total "))
            .unwrap_or_else(|| panic!("no QR counter in\n{text}"))
            .parse::<f64>()
            .unwrap()
    };
    for _ in 0..20 {
        let answer = desktop.page(&page).await;
        assert_links_to(
            &answer,
            &format!("http://{}", server.addr),
            &code,
            "its own",
        );
    }
    assert_eq!(drawn().await, 1.0, "twenty views of one code");
    // Another name of this server is another link, with a QR code of its own.
    let named = format!("localhost:{}", server.addr.port());
    let answer = get_with_host(&desktop, server.addr, &page, &named).await;
    assert_links_to(&answer, &format!("http://{named}"), &code, &named);
    assert_eq!(drawn().await, 2.0);
    server.stop();
}
