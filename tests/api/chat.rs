//! The chat room: static render, plain posts, live delivery, reconnects, limits and retention.

use std::time::Duration;

use crate::common::live::{self, change, closed, join_chat, post, recv, try_recv};
use crate::common::{TestApp, attribute_after, message_ids};
use livesession::prune::prune_pass;
use livesession::retention::Retention;
use livesession::session::SessionId;
use livesession::shutdown::CancellationToken;
use livesession::site::Via;
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The text of the messages on a page, in order.
fn bodies(page: &str) -> Vec<String> {
    page.split(r#"<p class="body">"#)
        .skip(1)
        .map(|rest| rest[..rest.find("</p>").unwrap()].to_owned())
        .collect()
}

/// The names on the messages of a page, in order (each is isolated in its own `<bdi>`).
fn authors(page: &str) -> Vec<String> {
    page.split(r#"<span class="author"><bdi>"#)
        .skip(1)
        .map(|rest| {
            let end = rest.find('<').unwrap();
            rest[..end].to_owned()
        })
        .collect()
}

#[tokio::test]
async fn the_chat_page_shows_the_composer_and_the_last_fifty_messages_in_order() {
    let app = TestApp::spawn(RAISED).await;
    let mut browser = app.browser();
    for n in 1..=55 {
        let response = browser.post_message(&format!("message {n}")).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let location = response.headers()[LOCATION].to_str().unwrap();
        assert!(location.starts_with("/?seen="), "{location}");
    }
    let page = browser.page("/").await;
    let expected: Vec<String> = (6..=55).map(|n| format!("message {n}")).collect();
    assert_eq!(bodies(&page), expected);
    assert!(page.contains(r#"<textarea id="body" name="body""#));
    assert!(page.contains(r#"<form id="composer" method="post" action="/messages""#));
    assert!(page.contains(r#"role="log" aria-live="polite""#));
    assert!(
        page.contains("choose a name"),
        "anonymous users get a link to the settings"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_message_carries_the_name_its_author_had_when_sending_it() {
    let app = TestApp::spawn(&[]).await;
    let mut ada = app.browser();
    ada.post_message("before I had a name").await;
    ada.save_settings("Ada", "system").await;
    ada.post_message("now I have one").await;
    ada.save_settings("Countess", "system").await;

    let page = app.browser().page("/").await;
    assert_eq!(
        authors(&page),
        ["anonymous", "Ada"],
        "names are the ones at sending time"
    );
    assert!(
        !page.contains("(you)"),
        "a stranger sees no message as theirs"
    );
    let own = ada.page("/").await;
    assert_eq!(own.matches("(you)").count(), 2);
    assert!(own.contains(r#"<strong id="composer-name">Countess</strong>"#));
    app.stop().await;
}

#[tokio::test]
async fn the_author_session_id_is_never_shown_to_others() {
    let app = TestApp::spawn(&[]).await;
    let mut author = app.browser();
    author.post_message("hello").await;
    let cookie = author.cookie.clone().unwrap();
    let start = "livesession=".len() + 44;
    let id = &cookie[start..start + 36];
    let page = app.browser().page("/").await;
    assert!(page.contains("hello"));
    assert!(!page.contains(id));
    app.stop().await;
}

#[tokio::test]
async fn a_post_without_the_csrf_token_is_refused_and_stores_nothing() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser.page("/").await;
    let response = browser
        .post("/messages", &[("body", "forged"), ("nonce", "n")])
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(!browser.page("/").await.contains("forged"));
    app.stop().await;
}

#[tokio::test]
async fn an_invalid_message_is_refused_with_a_clear_message_and_the_text_kept() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let long = "é".repeat(2001);
    for (body, expected) in [
        ("   ", "Message is empty."),
        (
            long.as_str(),
            "Message is 2001 characters long; at most 2000 are allowed.",
        ),
        (
            "bell\u{7}",
            "Message may not contain control characters other than line breaks.",
        ),
    ] {
        let response = browser.post_message(body).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let page = response.text().await.unwrap();
        assert!(page.contains(expected), "{expected} not shown");
        let draft = &page[page.find(r#"<textarea id="body""#).unwrap()..];
        let draft = &draft[draft.find('>').unwrap() + 1..draft.find("</textarea>").unwrap()];
        assert_eq!(draft, body, "the typed text is kept");
    }
    assert_eq!(message_ids(&browser.page("/").await), Vec::<i64>::new());
    app.stop().await;
}

#[tokio::test]
async fn a_body_with_bidi_controls_or_nothing_visible_is_refused_and_nothing_is_stored() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    for (body, expected) in [
        (
            "invoice\u{202E}fdp.exe",
            "Message may not contain characters that change the direction of text (it has U+202E).",
        ),
        ("\u{2067}hello\u{2069}", "(it has U+2067)."),
        ("\u{200B}\u{3164}\u{FEFF}", "Message is empty."),
    ] {
        let response = browser.post_message(body).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body:?}"
        );
        let page = response.text().await.unwrap();
        let error = &page[page.find(r#"id="body-error""#).unwrap()..];
        let error = &error[..error.find("</p>").unwrap()];
        assert!(
            error.contains(expected),
            "{expected} not next to the field: {error}"
        );
    }
    assert_eq!(message_ids(&browser.page("/").await), Vec::<i64>::new());

    // Over the live socket too.
    let mut socket = join_chat(&mut browser, "chat-b", None).await;
    post(&mut socket, 1, "n-bidi", "\u{202D}olleh").await;
    let ack = recv(&mut socket).await;
    assert_eq!(ack["t"], "ack");
    assert_eq!(
        ack["errors"]["body"],
        "Message may not contain characters that change the direction of text (it has U+202D)."
    );
    drop(socket);
    assert_eq!(message_ids(&browser.page("/").await), Vec::<i64>::new());
    assert_eq!(
        app.db()
            .query_row("SELECT count(*) FROM messages", [], |row| row
                .get::<_, i64>(0))
            .unwrap(),
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn a_body_is_stored_in_nfc() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let response = browser.post_message("cafe\u{301}").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(bodies(&browser.page("/").await), ["café"]);
    app.stop().await;
}

#[tokio::test]
async fn every_name_on_the_chat_page_is_isolated_in_a_bdi() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser.save_settings("שלום", "system").await;
    browser.post_message("hello").await;
    let page = browser.page("/").await;
    assert!(page.contains(r#"<bdi><strong id="current-username">שלום</strong></bdi>"#));
    assert!(page.contains(r#"<bdi><strong id="composer-name">שלום</strong></bdi>"#));
    assert!(
        page.contains(
            r#"<span class="author"><bdi>שלום</bdi><span class="you"> (you)</span></span>"#
        ),
        "the name is isolated, the marker outside it"
    );
    assert_eq!(authors(&app.browser().page("/").await), ["שלום"]);
    app.stop().await;
}

#[tokio::test]
async fn a_resubmitted_form_stores_its_message_once() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let page = browser.page("/").await;
    let token = attribute_after(&page, r#"name="_csrf" value=""#).to_owned();
    let nonce = attribute_after(&page, r#"name="nonce" value=""#).to_owned();
    for _ in 0..3 {
        let response = browser
            .post(
                "/messages",
                &[("_csrf", &token), ("nonce", &nonce), ("body", "once")],
            )
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
    }
    assert_eq!(bodies(&browser.page("/").await), ["once"]);
    app.stop().await;
}

#[tokio::test]
async fn a_message_reaches_every_chat_page_once_and_in_order() {
    let app = TestApp::spawn(RAISED).await;
    let mut alice = app.browser();
    let mut bob = app.browser();
    let mut alice_tab = join_chat(&mut alice, "a", None).await;
    let mut bob_tab = join_chat(&mut bob, "b", None).await;

    // (How fast is measured by bench/cluster, not here.)
    post(&mut alice_tab, 1, "n1", "hello bob").await;
    let delivered = recv(&mut bob_tab).await;
    assert_eq!(delivered["t"], "messages");
    let html = delivered["html"].as_str().unwrap();
    assert!(html.contains("hello bob"));

    // The author: an ack, then the message once.
    assert_eq!(recv(&mut alice_tab).await["t"], "ack");
    let own = recv(&mut alice_tab).await;
    assert_eq!(own["t"], "messages");
    assert!(own["html"].as_str().unwrap().contains("(you)"));
    assert_eq!(
        try_recv(&mut alice_tab, Duration::from_millis(200)).await,
        None
    );

    // A burst from both sides arrives everywhere in one order, each message once.
    for n in 2..=11u64 {
        post(
            &mut alice_tab,
            n,
            &format!("a{n}"),
            &format!("from alice {n}"),
        )
        .await;
        post(&mut bob_tab, n, &format!("b{n}"), &format!("from bob {n}")).await;
    }
    let mut seen_by_alice = Vec::new();
    let mut seen_by_bob = Vec::new();
    for (socket, seen) in [
        (&mut alice_tab, &mut seen_by_alice),
        (&mut bob_tab, &mut seen_by_bob),
    ] {
        // Everything that arrives until the line goes quiet.
        while let Some(message) = try_recv(socket, Duration::from_millis(500)).await {
            if message["t"] == "messages" {
                seen.extend(message_ids(message["html"].as_str().unwrap()));
            }
        }
    }
    assert_eq!(seen_by_alice.len(), 20, "{seen_by_alice:?}");
    let mut sorted = seen_by_alice.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(seen_by_alice, sorted, "in order, no duplicates");
    assert_eq!(seen_by_alice, seen_by_bob);
    app.stop().await;
}

#[tokio::test]
async fn messages_posted_while_a_page_was_away_arrive_when_it_is_back() {
    let app = TestApp::spawn(&[]).await;
    let mut reader = app.browser();
    let mut writer = app.browser();
    let socket = join_chat(&mut reader, "r", None).await;
    let last_seen = message_ids(&reader.page("/").await)
        .last()
        .copied()
        .unwrap_or(0);
    drop(socket);

    for n in 1..=3 {
        writer
            .post_message(&format!("while you were away {n}"))
            .await;
    }
    let mut socket = join_chat(&mut reader, "r", Some(last_seen)).await;
    let missed = recv(&mut socket).await;
    assert_eq!(missed["t"], "messages");
    let html = missed["html"].as_str().unwrap();
    assert_eq!(message_ids(html).len(), 3);
    assert!(html.contains("while you were away 1") && html.contains("while you were away 3"));
    assert_eq!(
        try_recv(&mut socket, Duration::from_millis(200)).await,
        None
    );
    app.stop().await;
}

#[tokio::test]
async fn a_message_resent_after_a_reconnect_is_stored_once() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let mut socket = join_chat(&mut browser, "p", None).await;
    post(&mut socket, 1, "same-nonce", "only once").await;
    assert_eq!(recv(&mut socket).await["t"], "ack");
    drop(socket);

    // The page did not see the ack, reconnects as a new page, and sends it again.
    let mut socket = join_chat(&mut browser, "p2", Some(0)).await;
    let _catch_up = recv(&mut socket).await;
    post(&mut socket, 1, "same-nonce", "only once").await;
    let ack = recv(&mut socket).await;
    assert_eq!(ack["t"], "ack");
    assert!(ack.get("errors").is_none());
    assert_eq!(bodies(&browser.page("/").await), ["only once"]);
    app.stop().await;
}

#[tokio::test]
async fn changing_the_username_updates_the_composer_in_open_chat_tabs() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let mut chat_tab = join_chat(&mut browser, "chat", None).await;
    let mut settings_tab = crate::common::live::join_settings(&mut browser, "settings").await;
    change(&mut settings_tab, 1, "Renamed", "dark").await;
    let render = recv(&mut chat_tab).await;
    assert_eq!(render["t"], "render");
    let html = render["html"].as_str().unwrap();
    assert!(html.contains(r#"<strong id="composer-name">Renamed</strong>"#));
    app.stop().await;
}

#[tokio::test]
async fn too_many_messages_too_fast_get_a_clear_refusal_over_http_and_live() {
    let app = TestApp::spawn(&["--message-burst", "2", "--message-window", "1h"]).await;
    let mut browser = app.browser();
    assert_eq!(
        browser.post_message("one").await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        browser.post_message("two").await.status(),
        StatusCode::SEE_OTHER
    );
    let refused = browser.post_message("three").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let page = refused.text().await.unwrap();
    assert!(
        page.contains("you can send 2 messages every 1h"),
        "no clear message"
    );
    assert!(page.contains(">three</textarea>"), "the text is kept");

    let mut socket = join_chat(&mut browser, "p", None).await;
    post(&mut socket, 1, "live-1", "four").await;
    let ack = recv(&mut socket).await;
    assert!(
        ack["errors"]["body"]
            .as_str()
            .unwrap()
            .contains("try again in")
    );
    // Another browser is not affected.
    let mut other = app.browser();
    assert_eq!(
        other.post_message("hi").await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(bodies(&other.page("/").await), ["one", "two", "hi"]);
    app.stop().await;
}

#[tokio::test]
async fn a_post_on_the_settings_view_is_refused() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let mut socket = crate::common::live::join_settings(&mut browser, "s").await;
    post(&mut socket, 1, "n", "wrong place").await;
    assert_eq!(recv(&mut socket).await["t"], "error");
    drop(socket);
    let mut chat = join_chat(&mut browser, "c", None).await;
    post(&mut chat, 1, "n", "right place").await;
    assert_eq!(recv(&mut chat).await["t"], "ack");
    assert!(closed_or_nothing(&mut chat).await);
    assert_eq!(bodies(&browser.page("/").await), ["right place"]);
    app.stop().await;
}

/// True when the socket sends nothing but the message append within a short while.
async fn closed_or_nothing(socket: &mut crate::common::live::Socket) -> bool {
    match try_recv(socket, Duration::from_millis(300)).await {
        Some(message) => message["t"] == "messages",
        None => true,
    }
}

#[tokio::test]
async fn old_messages_and_those_beyond_the_limit_are_pruned() {
    // The app's own prune task keeps messages for 1000 days, so only the pass below removes any.
    let app = TestApp::spawn(&["--message-retention", "1000d"]).await;
    let store = &app.store;
    let author = SessionId::generate();
    let now = livesession::clock::now_millis();
    let day = 86_400_000;
    for n in 0..5 {
        let body = livesession::chat::MessageBody::parse(&format!("old {n}")).unwrap();
        store
            .post_message(author, body, format!("old{n}"), now - 40 * day)
            .await
            .unwrap();
    }
    for n in 0..30 {
        let body = livesession::chat::MessageBody::parse(&format!("new {n}")).unwrap();
        store
            .post_message(author, body, format!("new{n}"), now - 1000)
            .await
            .unwrap();
    }
    let retention = Retention {
        stale_after: Duration::from_secs(100 * 86400),
        touch_window: Duration::from_secs(3600),
        message_retention: Duration::from_secs(30 * 86400),
        message_limit: 20,
    };
    let pruned = prune_pass(store, retention, now, &CancellationToken::new(), |_| {})
        .await
        .unwrap();
    assert_eq!(pruned.messages, 15);
    let left = store.recent_messages(100).await.unwrap();
    let texts: Vec<&str> = left.iter().map(|m| m.body.as_str()).collect();
    let expected: Vec<String> = (10..30).map(|n| format!("new {n}")).collect();
    assert_eq!(texts, expected);
    app.stop().await;
}

#[tokio::test]
async fn a_database_from_the_previous_version_is_upgraded_and_keeps_its_settings() {
    // A data dir as version 1 left it: its schema, and one browser's settings.
    let dir = tempfile::tempdir().unwrap();
    let db = rusqlite::Connection::open(dir.path().join("livesession.db")).unwrap();
    db.execute_batch(include_str!("../fixtures/schema-v1.sql"))
        .unwrap();
    let id = SessionId::generate();
    db.execute(
        "INSERT INTO settings (session_id, username, theme, version, inserted_at, updated_at, read_at)
         VALUES (?1, 'from v1', 'dark', 3, ?2, ?2, ?2)",
        rusqlite::params![id.to_key(), livesession::clock::now_millis()],
    )
    .unwrap();
    drop(db);
    let keys =
        livesession::session::Keys::new(crate::common::SECRET_A.as_bytes(), &[], false).unwrap();
    let cookie = crate::common::cookie_pair(&keys, id);

    let app = TestApp::spawn_in(dir.path(), &["--secret-key", crate::common::SECRET_A]).await;
    let mut browser = app.browser();
    browser.cookie = Some(cookie);
    let page = browser.page("/settings").await;
    assert_eq!(crate::common::username_field(&page), "from v1");
    assert_eq!(
        browser.post_message("chat works").await.status(),
        StatusCode::SEE_OTHER
    );
    let version: i64 = app
        .db()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, livesession::store::SCHEMA_VERSION);
    assert_eq!(bodies(&browser.page("/").await), ["chat works"]);
    app.stop().await;
}

#[tokio::test]
async fn a_database_of_schema_3_is_upgraded_keeping_every_row_of_every_table() {
    // A data dir as the build before one-time codes left it, with a row in every table.
    let dir = tempfile::tempdir().unwrap();
    let db = rusqlite::Connection::open(dir.path().join("livesession.db")).unwrap();
    db.execute_batch(include_str!("../fixtures/schema-v3.sql"))
        .unwrap();
    let (id, gone) = (SessionId::generate(), SessionId::generate());
    let now = livesession::clock::now_millis();
    db.execute_batch(&format!(
        "INSERT INTO settings (session_id, username, theme, version, inserted_at, updated_at, read_at)
             VALUES ('{id}', 'from v3', 'dark', 2, {now}, {now}, {now});
         INSERT INTO messages (author_session, author_name, body, nonce, created_at)
             VALUES ('{id}', 'from v3', 'kept', 'n1', {now});
         INSERT INTO forgotten (session_id, forgotten_at) VALUES ('{gone}', {now});
         INSERT INTO page_acks (session_id, page, form, seq, acked_at)
             VALUES ('{id}', 'p', 'settings', 4, {now});"
    ))
    .unwrap();
    let counts = |db: &rusqlite::Connection| -> Vec<i64> {
        ["settings", "messages", "forgotten", "page_acks"]
            .iter()
            .map(|t| {
                db.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                    .unwrap()
            })
            .collect()
    };
    let before = counts(&db);
    drop(db);

    let app = TestApp::spawn_in(dir.path(), &["--secret-key", crate::common::SECRET_A]).await;
    let db = app.db();
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, livesession::store::SCHEMA_VERSION);
    assert_eq!(counts(&db), before, "every row kept");
    let keys =
        livesession::session::Keys::new(crate::common::SECRET_A.as_bytes(), &[], false).unwrap();
    let mut browser = app.browser();
    browser.cookie = Some(crate::common::cookie_pair(&keys, id));
    assert_eq!(
        crate::common::username_field(&browser.page("/settings").await),
        "from v3"
    );
    assert_eq!(bodies(&browser.page("/").await), ["kept"]);
    app.stop().await;
}

#[tokio::test]
async fn shutdown_closes_chat_sockets_too() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let mut socket = join_chat(&mut browser, "p", None).await;
    let stopping = tokio::spawn(app.stop());
    assert!(closed(&mut socket).await.is_some());
    stopping.await.unwrap();
}

/// The chat's rate limits raised above what a test posts: 100 per window, per browser, per
/// address and for the room.
const RAISED: &[&str] = &[
    "--message-burst",
    "100",
    "--message-burst-per-ip",
    "100",
    "--room-message-burst",
    "100",
];

/// How many messages the database holds.
fn stored_messages(app: &TestApp) -> i64 {
    app.db()
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_flood_of_fresh_sessions_from_one_address_gets_only_its_allowance_through() {
    // The default allowance (20), over a window long enough that nothing refills meanwhile.
    let app = TestApp::spawn(&["--message-window", "1h"]).await;
    let (mut accepted, mut refused) = (0, 0);
    for n in 0..200 {
        // A fresh browser each time: the per-browser limit never applies.
        let mut fresh = app.browser();
        let response = fresh.post_message(&format!("spam {n}")).await;
        match response.status() {
            StatusCode::SEE_OTHER => accepted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                refused += 1;
                let page = response.text().await.unwrap();
                assert!(page.contains("from one network"), "{page}");
            }
            other => panic!("post {n}: {other}"),
        }
    }
    assert_eq!(
        accepted, 20,
        "--message-burst-per-ip is 20 per 10 s by default"
    );
    assert_eq!(refused, 180);
    assert_eq!(stored_messages(&app), 20);
    let health = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn the_room_takes_at_most_its_burst_from_everyone_together() {
    let app = TestApp::spawn(&[
        "--message-burst-per-ip",
        "1000",
        "--room-message-burst",
        "10",
    ])
    .await;
    let mut statuses = Vec::new();
    for n in 0..30 {
        let response = app.browser().post_message(&format!("hello {n}")).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let page = response.text().await.unwrap();
            assert!(
                page.contains("the room is taking too many messages"),
                "{page}"
            );
            statuses.push(429);
        } else {
            statuses.push(response.status().as_u16());
        }
    }
    assert_eq!(statuses.iter().filter(|&&s| s == 303).count(), 10);
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 20);
    assert_eq!(stored_messages(&app), 10);
    app.stop().await;
}

#[tokio::test]
async fn the_message_limit_holds_at_every_post_not_only_at_the_prune() {
    let app = TestApp::spawn(&[&["--message-limit", "5"], RAISED].concat()).await;
    let mut browser = app.browser();
    for n in 0..12 {
        let response = browser.post_message(&format!("message {n}")).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert!(stored_messages(&app) <= 5, "after post {n}");
    }
    let page = browser.page("/").await;
    assert!(page.contains("message 11") && page.contains("message 7"));
    assert!(!page.contains("message 6<"), "the oldest went");
    app.stop().await;
}

/// Posts `count` messages as one author, straight through the site (the limits are the site's,
/// so the app is started with them raised); returns their ids, oldest first.
async fn post_many(app: &TestApp, count: usize) -> Vec<i64> {
    let author = livesession::session::Session::fresh(Default::default());
    let from = std::net::IpAddr::from([127, 0, 0, 9]);
    let mut ids = Vec::with_capacity(count);
    for n in 0..count {
        let message = app
            .state
            .site
            .post_message(
                author,
                from,
                &format!("bulk {n}"),
                &format!("bulk-{n}"),
                Via::Form,
            )
            .await
            .unwrap()
            .expect("a form post is never a resend");
        ids.push(message.id);
    }
    ids
}

const UNLIMITED: &[&str] = &[
    "--message-burst",
    "100000",
    "--message-burst-per-ip",
    "100000",
    "--room-message-burst",
    "100000",
];

#[tokio::test]
async fn a_page_back_within_the_log_catches_up_from_it_and_an_older_one_from_the_database() {
    let app = TestApp::spawn(UNLIMITED).await;
    let ids = post_many(&app, 600).await;
    let mut reader = app.browser();

    // Missed 150: all of them, in order, in one frame, from the room's log (it holds 512).
    let mut socket = join_chat(&mut reader, "r1", Some(ids[449])).await;
    let missed = recv(&mut socket).await;
    assert_eq!(missed["t"], "messages");
    assert_eq!(message_ids(missed["html"].as_str().unwrap()), ids[450..]);
    assert_eq!(missed["last"], ids[599]);
    assert_eq!(
        try_recv(&mut socket, Duration::from_millis(200)).await,
        None
    );

    // Missed 590, from before the log: the database answers, and so many come as a new render
    // of the whole page (its last fifty).
    let mut socket = join_chat(&mut reader, "r2", Some(ids[9])).await;
    let render = recv(&mut socket).await;
    assert_eq!(render["t"], "render");
    assert_eq!(message_ids(render["html"].as_str().unwrap()), ids[550..]);
    app.stop().await;
}

#[tokio::test]
async fn every_open_chat_page_gets_each_message_once_in_order_however_many_there_are() {
    let app = TestApp::spawn(UNLIMITED).await;
    let mut pages = Vec::new();
    for n in 0..20 {
        let mut browser = app.browser();
        pages.push(join_chat(&mut browser, &format!("p{n}"), None).await);
    }
    let ids = post_many(&app, 300).await;
    for (n, page) in pages.iter_mut().enumerate() {
        let mut seen = Vec::new();
        while seen.len() < ids.len() {
            let frame = recv(page).await;
            assert_eq!(frame["t"], "messages", "page {n}");
            seen.extend(message_ids(frame["html"].as_str().unwrap()));
        }
        assert_eq!(seen, ids, "page {n}: each once, in order");
        assert_eq!(try_recv(page, Duration::from_millis(100)).await, None);
    }
    app.stop().await;
}

#[tokio::test]
async fn older_messages_are_a_link_away_without_javascript() {
    let app = TestApp::spawn(UNLIMITED).await;
    let ids = post_many(&app, 60).await;
    let mut reader = app.browser();

    let newest = reader.page("/").await;
    assert_eq!(message_ids(&newest), ids[10..]);
    let link = format!(r#"href="/?before={}""#, ids[10]);
    assert!(newest.contains(&link), "no link to the older page");

    let older = reader.page(&format!("/?before={}", ids[10])).await;
    assert_eq!(message_ids(&older), ids[..10]);
    assert!(
        !older.contains("/?before="),
        "the oldest page links to nothing older"
    );
    assert!(older.contains("Back to the newest messages"));
    assert!(
        !older.contains(r#"id="composer""#),
        "an older page has no composer"
    );
    assert!(
        !older.contains("data-live-view"),
        "an older page is not live"
    );

    // A page in the middle links on to the one before it.
    let middle = reader.page(&format!("/?before={}", ids[55])).await;
    assert_eq!(message_ids(&middle), ids[5..55]);
    assert!(middle.contains(&format!(r#"href="/?before={}""#, ids[5])));

    let junk = reader.get("/?before=soon").await;
    assert_eq!(junk.status(), StatusCode::BAD_REQUEST);
    app.stop().await;
}

/// The send queue of the server's end of the connection from local port `client_port` to
/// `server_port`: what the kernel holds that the peer has not acknowledged (`/proc/net/tcp`).
fn server_send_queue(server_port: u16, client_port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let (local, remote) = (
        format!("0100007F:{server_port:04X}"),
        format!("0100007F:{client_port:04X}"),
    );
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&local.as_str()) && fields.get(2) == Some(&remote.as_str()))
            .then(|| u64::from_str_radix(fields[4].split(':').next()?, 16).ok())
            .flatten()
    })
}

#[tokio::test]
async fn a_page_that_stops_reading_falls_behind_the_room_and_catches_up_from_its_log() {
    let app = TestApp::spawn(&[UNLIMITED, &["--live-send-timeout", "60s"]].concat()).await;
    let mut reader = app.browser();
    let info = live::page_info(&mut reader, "/").await;
    // A page on a connection with a small receive window, which then stops reading: the server's
    // writes to it block once the kernel's buffers are full.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.addr).await.unwrap();
    let client_port = stream.local_addr().unwrap().port();
    let mut request = format!("ws://{}/live", app.addr)
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert("cookie", reader.cookie.clone().unwrap().parse().unwrap());
    headers.insert("origin", format!("http://{}", app.addr).parse().unwrap());
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (mut page, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    live::send_join(&mut page, "chat", "slow", &info).await;
    assert_eq!(recv(&mut page).await["t"], "joined");

    // Long messages until the server's end stops taking more: its send queue no longer grows.
    let body = "x".repeat(2000);
    let author = livesession::session::Session::fresh(Default::default());
    let from = std::net::IpAddr::from([127, 0, 0, 9]);
    let site = &app.state.site;
    let mut ids = Vec::new();
    let post = async |n: usize| {
        let message = site
            .post_message(author, from, &body, &format!("lag-{n}"), Via::Form)
            .await
            .unwrap()
            .expect("a form post is never a resend");
        message.id
    };
    let (mut last_queue, mut steady) = (0, 0);
    while steady < 3 {
        for _ in 0..20 {
            ids.push(post(ids.len()).await);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let queue = server_send_queue(app.addr.port(), client_port).unwrap_or(0);
        steady = if queue > 0 && queue == last_queue {
            steady + 1
        } else {
            0
        };
        last_queue = queue;
        assert!(ids.len() < 20_000, "the server's writes never blocked");
    }
    // Now the page's task waits on its write while the room goes on: more than the room's
    // channel holds (256), fewer than its log (512).
    let blocked_at = ids.len();
    for _ in 0..300 {
        ids.push(post(ids.len()).await);
    }

    // The page reads again: everything, in order, each once. It missed more than the channel
    // holds, so it caught up: several messages to a frame (the room's frames carry one). From the
    // log: it missed more than 200, which from the database would have been a full render.
    let mut seen = Vec::new();
    let mut largest_frame = 0;
    while seen.last() != ids.last() {
        let frame = recv(&mut page).await;
        assert_eq!(frame["t"], "messages", "{}", frame["t"]);
        let batch = message_ids(frame["html"].as_str().unwrap());
        largest_frame = largest_frame.max(batch.len());
        seen.extend(batch);
    }
    assert_eq!(seen, ids, "each message once, in order");
    assert!(
        largest_frame > 1,
        "the page never fell behind (its writes blocked after {blocked_at} messages)"
    );
    app.stop().await;
}
