//! The live layer in a real browser over HTTPS: the real binary serving a certificate for
//! `localhost` from a throwaway CA, which Chromium trusts only by the pin of that certificate's
//! public key (`--ignore-certificate-errors-spki-list`).

use super::CONNECTED;
use super::harness::Chrome;
use crate::common::binary::Server;
use crate::common::tls::{Authority, spki_sha256_base64};

#[tokio::test]
async fn over_https_a_typed_name_survives_a_reload_and_the_socket_is_live() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = Authority::new("livesession test CA").issue(dir.path(), "server");
    let pin = format!(
        "--ignore-certificate-errors-spki-list={}",
        spki_sha256_base64(&key)
    );
    let Some(chrome) =
        Chrome::start_with("over_https_a_typed_name_survives_a_reload", &[pin]).await
    else {
        return;
    };
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let url = format!("https://localhost:{}/settings", server.addr.port());
    chrome.goto(&url).await;
    assert_eq!(chrome.js("return location.href").await, url.as_str());
    chrome.until("the socket is live", CONNECTED).await;

    chrome.type_into("#username", "Ada").await;
    chrome
        .until(
            "the change is saved",
            "return document.getElementById('settings-status').textContent === 'Saved'",
        )
        .await;

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
