//! Edits typed while the server is unreachable, in a real browser: one that arrives after the
//! same field was saved from elsewhere keeps the newer value, and the page says so next to the
//! field, with a button that applies the edit anyway.

use super::harness::Chrome;
use super::{CONNECTED, SAVED, static_settings, type_a_name_while_the_server_is_down};
use crate::common::{Browser, TestApp, username_field};

/// The note next to the name says the edit was overtaken.
const OVERTAKEN: &str = "return document.getElementById('username-overtaken').textContent \
     .startsWith('Not applied: changed on another device or tab at ')";

#[tokio::test]
async fn an_offline_edit_overtaken_by_a_later_save_elsewhere_is_not_applied_until_asked() {
    let Some(chrome) = Chrome::start("an_offline_edit_overtaken_by_a_later_save").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_in(dir.path(), &[]).await;
    let addr = app.addr.to_string();
    let url = app.url("/settings");
    chrome.goto(&url).await;
    chrome.until("the socket is live", CONNECTED).await;
    let cookie = chrome.session_cookie().await;

    // Typed while the server is down, and the tab left with the edit unsaved.
    type_a_name_while_the_server_is_down(&chrome, app, "typed while down").await;
    chrome.goto("about:blank").await;

    // The server is back, and another device of the session saves a name first.
    let app = TestApp::spawn_in(dir.path(), &["--listen", &addr]).await;
    let mut other = Browser::new(app.addr);
    other.cookie = Some(cookie.clone());
    other.save_settings("saved elsewhere", "system").await;

    // The next page of this browser sends the edit; the newer name stays, and the page says so.
    chrome.goto(&url).await;
    chrome
        .until("the page says the edit was overtaken", OVERTAKEN)
        .await;
    assert_eq!(chrome.value("#username").await, "saved elsewhere");
    let html = static_settings(app.addr, cookie.clone()).await;
    assert_eq!(username_field(&html), "saved elsewhere");
    assert_eq!(
        chrome
            .js("return document.getElementById('unsaved').textContent")
            .await,
        "",
        "the edit was answered: nothing is left unsaved"
    );
    let button = "return document.querySelector('#username-overtaken button').textContent";
    assert_eq!(chrome.js(button).await, "Apply “typed while down” anyway");

    // Applied anyway, when asked.
    chrome
        .js("document.querySelector('#username-overtaken button').click(); return true;")
        .await;
    chrome.until("the edit is saved", SAVED).await;
    let html = static_settings(app.addr, cookie).await;
    assert_eq!(username_field(&html), "typed while down");
    assert_eq!(chrome.value("#username").await, "typed while down");
    assert_eq!(
        chrome
            .js("return document.getElementById('username-overtaken').textContent")
            .await,
        ""
    );
    chrome.assert_clean_console().await;
    chrome.quit().await;
    app.stop().await;
}
