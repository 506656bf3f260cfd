//! The live layer in a real browser over HTTPS: the real binary serving a certificate for
//! `localhost` from a throwaway CA, which Chromium trusts only by the pin of that certificate's
//! public key (`--ignore-certificate-errors-spki-list`). Over HTTP/2 (what ALPN gives Chromium),
//! where the live socket is an extended CONNECT stream, and over HTTP/1.1 (Chromium told not to
//! speak HTTP/2), where it is an upgraded connection.

use super::harness::Chrome;
use super::{CONNECTED, SAVED};
use crate::common::binary::{Server, command};
use crate::common::tls::{Authority, spki_sha256_base64};

#[tokio::test]
async fn over_https_a_typed_name_survives_a_reload_and_the_socket_is_live() {
    typed_name_survives_a_reload_over("h2", &[]).await;
}

#[tokio::test]
async fn over_https_and_http_1_1_a_typed_name_survives_a_reload_and_the_socket_is_live() {
    typed_name_survives_a_reload_over("http/1.1", &["--disable-http2"]).await;
}

/// The test, with Chromium speaking `protocol` (its `nextHopProtocol`), started with `flags`.
async fn typed_name_survives_a_reload_over(protocol: &str, flags: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = Authority::new("livesession test CA").issue(dir.path(), "server");
    let mut args = vec![format!(
        "--ignore-certificate-errors-spki-list={}",
        spki_sha256_base64(&key)
    )];
    args.extend(flags.iter().map(|f| f.to_string()));
    let test = format!("over_https_{protocol}_a_typed_name_survives_a_reload");
    let Some(chrome) = Chrome::start_with(&test, &args).await else {
        return;
    };
    let mut debug = command(
        &dir.path().join("data"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            // Short, so that the test sees the live socket outlive it.
            "--header-timeout",
            "1s",
        ],
    );
    debug.env("RUST_LOG", "livesession=debug");
    let (server, log) = Server::start_logged(debug);
    let url = format!("https://localhost:{}/settings", server.addr.port());
    chrome.goto(&url).await;
    assert_eq!(chrome.js("return location.href").await, url.as_str());
    let spoken = chrome
        .js("return performance.getEntriesByType('navigation')[0].nextHopProtocol")
        .await;
    assert_eq!(spoken, protocol);
    chrome.until("the socket is live", CONNECTED).await;
    // The live socket came the way the protocol has: a CONNECT stream, or an upgrade.
    let socket = if protocol == "h2" {
        ["method=CONNECT path=/live}", "served status=200"]
    } else {
        ["method=GET path=/live}", "served status=101"]
    };
    assert!(
        log.lines()
            .iter()
            .any(|l| socket.iter().all(|part| l.contains(part))),
        "{socket:?} not in the log: {:?}",
        log.lines()
    );

    // Longer than the header timeout: the connection that carries the socket is not idle.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    chrome.type_into("#username", "Ada").await;
    chrome.until("the change is saved", SAVED).await;

    let opened = log
        .lines()
        .iter()
        .filter(|l| l.contains("path=/live}") && l.contains("served"))
        .count();
    assert_eq!(opened, 1, "the first socket lasted until the reload");
    chrome.client.refresh().await.unwrap();
    assert_eq!(chrome.value("#username").await, "Ada");
    chrome.until("the socket is live again", CONNECTED).await;
    assert_eq!(
        chrome
            .js("return document.getElementById('current-username').textContent")
            .await,
        "Ada"
    );

    // The session cookie is the HTTPS one: `__Host-` named, Secure, and out of the page's reach.
    let cookie = chrome
        .client
        .get_named_cookie("__Host-livesession")
        .await
        .unwrap();
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.http_only(), Some(true));
    let visible = chrome.js("return document.cookie").await;
    assert!(
        !visible.as_str().unwrap().contains("livesession"),
        "the page sees {visible}"
    );
    chrome.assert_clean_console().await;
    chrome.quit().await;
    server.stop();
}
