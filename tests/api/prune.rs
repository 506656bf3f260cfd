//! Stale rows: reads touch within a window, the prune task deletes what nobody used.

use std::time::Duration;

use crate::common::{TestApp, username_field};
use livesession::prune::prune_pass;
use livesession::retention::Retention;
use livesession::session::SessionId;
use livesession::settings::{SettingsChange, Theme};
use livesession::shutdown::CancellationToken;

fn read_at(app: &TestApp, cookie: &str) -> i64 {
    let start = "livesession=".len() + 44;
    let id = &cookie[start..start + 36];
    app.db()
        .query_row(
            "SELECT read_at FROM settings WHERE session_id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap()
}

#[tokio::test]
async fn a_row_used_recently_is_kept_and_an_idle_one_is_removed() {
    let app = TestApp::spawn(&["--stale-after", "1s", "--prune-every", "100ms"]).await;
    let mut reader = app.browser();
    reader.save_settings("reader", "dark").await;
    let mut idle = app.browser();
    idle.save_settings("idle", "light").await;
    assert_eq!(app.settings_rows(), 2);

    // The reader keeps looking at its page; the idle browser does nothing.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1700);
    while tokio::time::Instant::now() < deadline {
        assert_eq!(username_field(&reader.page("/settings").await), "reader");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    assert_eq!(app.settings_rows(), 1, "the idle row should be pruned");
    assert_eq!(username_field(&reader.page("/settings").await), "reader");
    // A pruned session behaves like a new one: defaults, and it can save again.
    let page = idle.page("/settings").await;
    assert_eq!(username_field(&page), "");
    assert_eq!(crate::common::html_theme(&page), "system");
    idle.save_settings("back", "dark").await;
    assert_eq!(username_field(&idle.page("/settings").await), "back");
    app.stop().await;
}

#[tokio::test]
async fn a_page_view_writes_read_at_at_most_once_per_touch_window() {
    // 100 s stale-after: a 1 s touch window.
    let app = TestApp::spawn(&["--stale-after", "100s"]).await;
    let mut browser = app.browser();
    browser.save_settings("ada", "system").await;
    let cookie = browser.cookie.clone().unwrap();
    let saved_at = read_at(&app, &cookie);

    browser.page("/settings").await;
    browser.page("/").await;
    assert_eq!(
        read_at(&app, &cookie),
        saved_at,
        "a read inside the window wrote"
    );

    // Once the window has passed, the next view touches the row (once).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    browser.page("/settings").await;
    let touched = read_at(&app, &cookie);
    assert!(touched >= saved_at + 1000, "the view did not touch the row");
    browser.page("/settings").await;
    assert_eq!(
        read_at(&app, &cookie),
        touched,
        "a second view in the window wrote"
    );
    app.stop().await;
}

#[tokio::test]
async fn prune_deletes_only_stale_rows_in_batches() {
    let app = TestApp::spawn(&[]).await;
    let store = &app.store;
    let retention = Retention {
        stale_after: Duration::from_secs(100),
        touch_window: Duration::from_secs(1),
        message_retention: Duration::from_secs(30 * 86400),
        message_limit: 10_000,
    };
    let now = livesession::clock::now_millis();
    let change = SettingsChange {
        username: None,
        theme: Some(Theme::Dark),
    };
    // 2,500 rows last used 200 s ago (stale), 10 used 50 s ago, 1 right at the edge: 100.5 s ago
    // is inside stale-after plus the touch window, so it may have been read 100 s ago.
    for _ in 0..2500 {
        store
            .save(SessionId::generate(), change.clone(), now - 200_000)
            .await
            .unwrap();
    }
    let mut fresh = Vec::new();
    for _ in 0..10 {
        let id = SessionId::generate();
        store.save(id, change.clone(), now - 50_000).await.unwrap();
        fresh.push(id);
    }
    let edge = SessionId::generate();
    store
        .save(edge, change.clone(), now - 100_500)
        .await
        .unwrap();

    let removed = prune_pass(store, retention, now, &CancellationToken::new(), |_| {})
        .await
        .unwrap();
    assert_eq!(removed.sessions, 2500);
    assert_eq!(app.settings_rows(), 11);
    for id in fresh.into_iter().chain([edge]) {
        assert!(store.load(id).await.unwrap().is_some());
    }
    app.stop().await;
}

#[tokio::test]
async fn a_save_after_a_prune_starts_a_fresh_row() {
    let app = TestApp::spawn(&[]).await;
    let store = &app.store;
    let id = SessionId::generate();
    let change = SettingsChange {
        username: None,
        theme: Some(Theme::Light),
    };
    // Times near the real clock: the app's own prune at startup (100 days) leaves the row
    // alone, only this test's pass (one second, ten seconds on) finds it stale.
    let now = livesession::clock::now_millis();
    store.save(id, change.clone(), now).await.unwrap();
    let retention = Retention {
        stale_after: Duration::from_secs(1),
        touch_window: Duration::ZERO,
        message_retention: Duration::from_secs(30 * 86400),
        message_limit: 10_000,
    };
    assert_eq!(
        prune_pass(
            store,
            retention,
            now + 10_000,
            &CancellationToken::new(),
            |_| {}
        )
        .await
        .unwrap()
        .sessions,
        1
    );
    let saved = store
        .save(id, change, now + 10_001)
        .await
        .unwrap()
        .applied()
        .unwrap();
    assert_eq!(saved.version, 1);
    assert_eq!(saved.settings.theme, Theme::Light);
    app.stop().await;
}
