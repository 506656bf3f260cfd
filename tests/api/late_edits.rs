//! Offline edits that arrive late: a field saved from elsewhere after the edit was typed keeps
//! that newer value, and the page that sent the edit is told which field and when; everything
//! else of the edit is applied.

use crate::common::live::{join_settings, recv, recv_until, send};
use crate::common::{Browser, TestApp, html_theme, username_field};
use livesession::clock::now_millis;
use serde_json::{Value, json};

/// A change typed `typed_ago_ms` before it is sent, when the page knew `base` as saved.
fn late_change(seq: u64, fields: Value, base: Value, typed_ago_ms: u64) -> Value {
    json!({"t": "change", "form": "settings", "seq": seq, "fields": fields,
           "late": {"base": base, "typed_ago_ms": typed_ago_ms}})
}

/// Another device of the same session: the same cookie, its own page.
fn other_device(browser: &Browser) -> Browser {
    let mut other = Browser::new(browser.addr);
    other.cookie = browser.cookie.clone();
    other
}

#[tokio::test]
async fn a_field_saved_elsewhere_after_the_edit_was_typed_keeps_the_newer_value_and_says_when() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser.save_settings("Ada", "light").await;
    let mut socket = join_settings(&mut browser, "offline-page").await;

    // Typed a minute ago, while the page was offline; the other device saved a name since.
    let before = now_millis();
    other_device(&browser).save_settings("Newer", "light").await;
    let after = now_millis();
    send(
        &mut socket,
        late_change(
            1,
            json!({"username": "Offline", "theme": "dark"}),
            json!({"username": "Ada", "theme": "light"}),
            60_000,
        ),
    )
    .await;
    let ack = recv_until(&mut socket, |m| m["t"] == "ack").await;
    assert_eq!(ack["seq"], 1, "{ack}");
    assert!(ack.get("errors").is_none(), "{ack}");
    let overtaken = ack["overtaken"].as_object().expect("overtaken fields");
    assert_eq!(
        overtaken.len(),
        1,
        "only the name was saved elsewhere: {ack}"
    );
    assert_eq!(overtaken["username"]["value"], "Newer", "{ack}");
    let at = overtaken["username"]["at"].as_i64().unwrap();
    assert!(
        (before..=after).contains(&at),
        "{at} is not when it was saved"
    );

    // The newer name stays; the theme, which nobody else changed, is the edit's.
    let page = browser.page("/settings").await;
    assert_eq!(username_field(&page), "Newer");
    assert_eq!(html_theme(&page), "dark");

    // "Apply anyway" is a plain change: it is applied.
    send(
        &mut socket,
        json!({"t": "change", "form": "settings", "seq": 2,
               "fields": {"username": "Offline", "theme": "dark"}}),
    )
    .await;
    let ack = recv_until(&mut socket, |m| m["t"] == "ack").await;
    assert_eq!(ack, json!({"t": "ack", "form": "settings", "seq": 2}));
    assert_eq!(username_field(&browser.page("/settings").await), "Offline");
    app.stop().await;
}

#[tokio::test]
async fn a_late_edit_typed_after_the_other_save_or_over_what_is_saved_is_applied() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser.save_settings("Ada", "light").await;
    let mut socket = join_settings(&mut browser, "offline-page").await;
    other_device(&browser).save_settings("Newer", "light").await;

    // Typed just now, after the other device's save (the page had not heard of it).
    send(
        &mut socket,
        late_change(
            1,
            json!({"username": "Typed later", "theme": "light"}),
            json!({"username": "Ada", "theme": "light"}),
            0,
        ),
    )
    .await;
    let ack = recv_until(&mut socket, |m| m["t"] == "ack").await;
    assert_eq!(ack, json!({"t": "ack", "form": "settings", "seq": 1}));
    assert_eq!(
        username_field(&browser.page("/settings").await),
        "Typed later"
    );

    // Typed an hour ago over the value that is still saved: nothing overtook it.
    send(
        &mut socket,
        late_change(
            2,
            json!({"username": "An hour old", "theme": "dark"}),
            json!({"username": "Typed later", "theme": "light"}),
            3_600_000,
        ),
    )
    .await;
    let ack = recv_until(&mut socket, |m| m["t"] == "ack").await;
    assert_eq!(ack, json!({"t": "ack", "form": "settings", "seq": 2}));
    let page = browser.page("/settings").await;
    assert_eq!(username_field(&page), "An hour old");
    assert_eq!(html_theme(&page), "dark");
    app.stop().await;
}

#[tokio::test]
async fn a_late_edit_of_a_session_with_nothing_saved_is_saved() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let mut socket = join_settings(&mut browser, "offline-page").await;
    send(
        &mut socket,
        late_change(
            1,
            json!({"username": "First", "theme": "dark"}),
            json!({"username": "", "theme": "system"}),
            5_000,
        ),
    )
    .await;
    let ack = recv(&mut socket).await;
    assert_eq!(ack, json!({"t": "ack", "form": "settings", "seq": 1}));
    assert_eq!(username_field(&browser.page("/settings").await), "First");
    app.stop().await;
}
