//! Many writers at once (tabs, chat, pruning): nobody is told "busy", pruning never deletes a fresh
//! row nor brings back a pruned one, and the write-ahead log stays bounded.

use std::time::Duration;

use crate::common::TestApp;
use livesession::chat::MessageBody;
use livesession::clock::now_millis;
use livesession::prune::prune_pass;
use livesession::retention::Retention;
use livesession::session::SessionId;
use livesession::settings::{SettingsChange, Theme, Username};
use livesession::shutdown::CancellationToken;
use reqwest::StatusCode;

fn rename(name: &str) -> SettingsChange {
    SettingsChange {
        username: Some(Username::parse(name).unwrap()),
        theme: Some(Theme::Dark),
    }
}

#[tokio::test]
async fn concurrent_tabs_chat_and_pruning_never_surface_busy() {
    let app = TestApp::spawn(&[
        "--prune-every",
        "20ms",
        "--stale-after",
        "1h",
        "--message-burst",
        "100000",
        "--message-burst-per-ip",
        "100000",
        "--room-message-burst",
        "100000",
    ])
    .await;
    // Stale rows for the prune task to chew on while the writers run.
    let long_ago = now_millis() - 10 * 3_600_000;
    for _ in 0..3000 {
        app.store
            .save(SessionId::generate(), rename("stale"), long_ago)
            .await
            .unwrap();
    }

    let shared = {
        let mut browser = app.browser();
        browser.page("/settings").await;
        browser
    };
    let mut tasks = Vec::new();
    for writer in 0..48 {
        // A third of the writers are tabs of one browser; the rest have their own.
        let mut browser = if writer % 3 == 0 {
            shared.clone()
        } else {
            app.browser()
        };
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..20 {
                let name = format!("w{writer}-{i}");
                statuses.push(browser.save_settings(&name, "light").await.status());
            }
            statuses
        }));
    }
    for poster in 0..8 {
        let mut browser = app.browser();
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..20 {
                statuses.push(
                    browser
                        .post_message(&format!("p{poster}-{i}"))
                        .await
                        .status(),
                );
            }
            statuses
        }));
    }
    let mut answered = 0;
    for task in tasks {
        for status in task.await.unwrap() {
            assert_eq!(status, StatusCode::SEE_OTHER, "a writer was refused");
            answered += 1;
        }
    }
    assert_eq!(answered, 56 * 20);
    app.stop().await;
}

#[tokio::test]
async fn pruning_racing_saves_never_deletes_a_fresh_row_nor_revives_old_data() {
    let app = TestApp::spawn(&[]).await;
    let store = app.store.clone();
    let long_ago = now_millis() - 200 * 86_400_000;
    let mut ids = Vec::new();
    for _ in 0..2000 {
        let id = SessionId::generate();
        store.save(id, rename("old data"), long_ago).await.unwrap();
        ids.push(id);
    }
    let retention = Retention {
        stale_after: Duration::from_secs(100 * 86_400),
        touch_window: Duration::from_secs(3600),
        message_retention: Duration::from_secs(30 * 86_400),
        message_limit: 10_000,
    };
    let pruner = {
        let store = store.clone();
        tokio::spawn(async move {
            prune_pass(
                &store,
                retention,
                now_millis(),
                &CancellationToken::new(),
                |_| {},
            )
            .await
            .unwrap()
        })
    };
    // Meanwhile half the sessions come back: only their theme changes.
    let returning: Vec<SessionId> = ids.iter().copied().step_by(2).collect();
    let mut saves = Vec::new();
    for chunk in returning.chunks(100) {
        let store = store.clone();
        let chunk = chunk.to_vec();
        saves.push(tokio::spawn(async move {
            for id in chunk {
                let change = SettingsChange {
                    username: None,
                    theme: Some(Theme::Light),
                };
                store
                    .save(id, change, now_millis())
                    .await
                    .unwrap()
                    .applied()
                    .unwrap();
            }
        }));
    }
    for save in saves {
        save.await.unwrap();
    }
    pruner.await.unwrap();

    for id in &returning {
        let row = store
            .load(*id)
            .await
            .unwrap()
            .expect("a row saved just now was deleted");
        assert_eq!(row.settings.theme, Theme::Light);
        // Saved before the prune reached it: the old name stays (it was never deleted). Saved
        // after: a fresh row, without the pruned name.
        assert!(["old data", ""].contains(&row.settings.username.as_str()));
    }
    let cutoff = retention.cutoff(now_millis());
    for id in ids.iter().skip(1).step_by(2) {
        if let Some(row) = store.load(*id).await.unwrap() {
            assert!(row.read_at >= cutoff, "a stale row survived the prune");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn the_write_ahead_log_stays_bounded_under_sustained_writes_and_reads() {
    let app = TestApp::spawn(&[
        "--message-burst",
        "1000000",
        "--message-burst-per-ip",
        "1000000",
        "--room-message-burst",
        "1000000",
    ])
    .await;
    let store = app.store.clone();
    let wal = app.data_dir.join("livesession.db-wal");
    let stop = CancellationToken::new();
    let mut readers = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        let stop = stop.clone();
        readers.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                store.recent_messages(50).await.unwrap();
            }
        }));
    }
    let author = SessionId::generate();
    let body = "w".repeat(1500);
    let mut largest = 0;
    for i in 0..6000 {
        let message = MessageBody::parse(&body).unwrap();
        store
            .post_message(author, message, format!("n{i}"), now_millis())
            .await
            .unwrap();
        if i % 100 == 0 {
            largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
        }
    }
    stop.cancel();
    for reader in readers {
        reader.await.unwrap();
    }
    let database = std::fs::metadata(app.data_dir.join("livesession.db"))
        .unwrap()
        .len();
    eprintln!("wal: largest {largest} bytes while writing {database} bytes of database");
    assert!(
        database > 8 * 1024 * 1024,
        "not enough was written to test anything"
    );
    assert!(largest < 8 * 1024 * 1024, "the WAL grew to {largest} bytes");
    app.stop().await;
}

#[tokio::test]
async fn a_read_never_returns_a_value_older_than_the_last_acknowledged_write() {
    let app = TestApp::spawn(&[]).await;
    let mut writer = app.browser();
    writer.save_settings("v0", "system").await;
    // Readers of the same session keep the cache hot and racing the writes.
    let stop = CancellationToken::new();
    let mut readers = Vec::new();
    for _ in 0..4 {
        let mut reader = writer.clone();
        let stop = stop.clone();
        readers.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                reader.page("/settings").await;
            }
        }));
    }
    for i in 1..=300 {
        let name = format!("v{i}");
        assert_eq!(
            writer.save_settings(&name, "system").await.status(),
            StatusCode::SEE_OTHER
        );
        let page = writer.page("/settings").await;
        assert_eq!(
            crate::common::username_field(&page),
            name,
            "read an older value after the ack"
        );
    }
    stop.cancel();
    for reader in readers {
        reader.await.unwrap();
    }
    // The store directly, with prunes and touches in the mix.
    let store = app.store.clone();
    let id = SessionId::generate();
    for i in 0..300 {
        let name = format!("s{i}");
        let (saved, _) = tokio::join!(store.save(id, rename(&name), now_millis()), store.load(id));
        assert_eq!(
            saved.unwrap().applied().unwrap().settings.username.as_str(),
            name
        );
        let loaded = store.load(id).await.unwrap().unwrap();
        assert_eq!(loaded.settings.username.as_str(), name);
    }
    app.stop().await;
}
