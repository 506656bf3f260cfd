//! The `/live` WebSocket through a real socket: join, save, acknowledge, sync tabs, refuse abuse.

use std::time::Duration;

use crate::common::live::{self, change, closed, join_settings, page_info, recv, send, try_recv};
use crate::common::{TestApp, html_theme, username_field};
use futures_util::SinkExt;
use reqwest::StatusCode;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test]
async fn a_change_is_acknowledged_only_once_it_is_readable_over_http() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let mut socket = join_settings(&mut browser, "page-1").await;

    change(&mut socket, 1, "Ada", "dark").await;
    let ack = recv(&mut socket).await;
    assert_eq!(ack, json!({"t": "ack", "form": "settings", "seq": 1}));
    // The ack means committed: a plain page load sees it right away.
    let page = browser.page("/settings").await;
    assert_eq!(username_field(&page), "Ada");
    assert_eq!(html_theme(&page), "dark");

    // The page is re-rendered for the change: the header now names Ada, the theme is dark.
    let render = recv(&mut socket).await;
    assert_eq!(render["t"], "render");
    assert_eq!(render["theme"], "dark");
    assert!(render["html"].as_str().unwrap().contains(">Ada</strong>"));
    app.stop().await;
}

#[tokio::test]
async fn a_change_that_alters_nothing_visible_sends_no_render() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser.save_settings("Ada", "dark").await;
    let mut socket = join_settings(&mut browser, "page-1").await;
    change(&mut socket, 1, "Ada", "dark").await;
    assert_eq!(recv(&mut socket).await["t"], "ack");
    assert_eq!(
        try_recv(&mut socket, Duration::from_millis(300)).await,
        None
    );
    app.stop().await;
}

#[tokio::test]
async fn replaying_an_acknowledged_change_changes_nothing() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let mut socket = join_settings(&mut browser, "page-r").await;
    change(&mut socket, 1, "first", "light").await;
    assert_eq!(recv(&mut socket).await["t"], "ack");
    drop(socket);

    // Meanwhile another tab (a plain form post) saves something newer.
    browser.save_settings("newer", "dark").await;

    // The page reconnects and replays change 1, as if its ack had been lost.
    let mut socket = join_settings(&mut browser, "page-r").await;
    change(&mut socket, 1, "first", "light").await;
    assert_eq!(
        recv(&mut socket).await,
        json!({"t": "ack", "form": "settings", "seq": 1})
    );
    let page = browser.page("/settings").await;
    assert_eq!(username_field(&page), "newer");
    assert_eq!(html_theme(&page), "dark");
    app.stop().await;
}

#[tokio::test]
async fn a_change_resent_after_a_restart_is_not_applied_twice() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let mut socket = join_settings(&mut browser, "page-s").await;
    change(&mut socket, 1, "first", "light").await;
    assert_eq!(recv(&mut socket).await["t"], "ack");
    drop(socket);
    let dir = app.stop().await.unwrap();

    // The server comes back (its memory of pages is gone), another tab saves something newer,
    // and the page resends change 1, whose acknowledgement it never got.
    let app = TestApp::spawn_in(dir.path(), &[]).await;
    let mut browser = crate::common::Browser {
        addr: app.addr,
        ..browser
    };
    browser.save_settings("newer", "dark").await;
    let mut socket = join_settings(&mut browser, "page-s").await;
    change(&mut socket, 1, "first", "light").await;
    assert_eq!(
        recv(&mut socket).await,
        json!({"t": "ack", "form": "settings", "seq": 1})
    );
    let page = browser.page("/settings").await;
    assert_eq!(username_field(&page), "newer");
    app.stop().await;
}

#[tokio::test]
async fn a_replayed_change_is_refused_again_for_the_same_reasons() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser.save_settings("kept", "dark").await;
    let too_long = "x".repeat(41);
    let mut socket = join_settings(&mut browser, "page-e").await;
    change(&mut socket, 1, &too_long, "light").await;
    let first = recv(&mut socket).await;
    assert_eq!(first["t"], "ack");
    assert!(first["errors"]["username"].is_string(), "{first}");
    drop(socket);

    // The ack was lost with the connection: the page replays the change.
    let mut socket = join_settings(&mut browser, "page-e").await;
    change(&mut socket, 1, &too_long, "light").await;
    let replayed = recv(&mut socket).await;
    assert_eq!(replayed, first, "the same ack, errors and all");
    let page = browser.page("/settings").await;
    assert_eq!(username_field(&page), "kept");
    assert_eq!(html_theme(&page), "light", "the valid field was saved once");
    app.stop().await;
}

#[tokio::test]
async fn another_tab_of_the_same_session_gets_the_change_and_the_sender_no_echo() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let mut sender = join_settings(&mut browser, "tab-1").await;
    let mut other = join_settings(&mut browser, "tab-2").await;
    let mut stranger_browser = app.browser();
    let mut stranger = join_settings(&mut stranger_browser, "tab-3").await;

    change(&mut sender, 1, "Grace", "light").await;
    let render = recv(&mut other).await;
    assert_eq!(render["t"], "render");
    assert_eq!(render["theme"], "light");
    assert!(
        render["html"]
            .as_str()
            .unwrap()
            .contains(r#"value="Grace""#)
    );

    // The sender gets its ack and one render of its own change, and nothing more.
    assert_eq!(recv(&mut sender).await["t"], "ack");
    assert_eq!(recv(&mut sender).await["t"], "render");
    assert_eq!(
        try_recv(&mut sender, Duration::from_millis(300)).await,
        None
    );
    // Another session hears nothing.
    assert_eq!(
        try_recv(&mut stranger, Duration::from_millis(100)).await,
        None
    );
    app.stop().await;
}

#[tokio::test]
async fn a_plain_form_post_reaches_the_live_tabs_too() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let mut tab = join_settings(&mut browser, "tab-1").await;
    browser.save_settings("posted", "dark").await;
    let render = recv(&mut tab).await;
    assert_eq!(render["t"], "render");
    assert!(
        render["html"]
            .as_str()
            .unwrap()
            .contains(r#"value="posted""#)
    );
    app.stop().await;
}

#[tokio::test]
async fn validation_errors_come_back_with_the_ack_and_keep_the_saved_value() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser.save_settings("kept", "light").await;
    let mut socket = join_settings(&mut browser, "page-v").await;
    let long = "z".repeat(41);
    change(&mut socket, 1, &long, "dark").await;
    let ack = recv(&mut socket).await;
    assert_eq!(ack["t"], "ack");
    assert_eq!(
        ack["errors"]["username"],
        "Username is 41 characters long; at most 40 are allowed."
    );
    assert!(ack["errors"].get("theme").is_none());
    let render = recv(&mut socket).await;
    let html = render["html"].as_str().unwrap();
    assert!(html.contains("at most 40 are allowed"));
    assert!(
        html.contains(&format!(r#"value="{long}""#)),
        "the typed value is shown back"
    );
    let page = browser.page("/settings").await;
    assert_eq!(username_field(&page), "kept");
    assert_eq!(html_theme(&page), "dark", "the valid field was saved");
    app.stop().await;
}

#[tokio::test]
async fn a_name_that_could_impersonate_is_refused_live_and_the_saved_one_is_kept() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser.save_settings("kept", "light").await;
    let mut socket = join_settings(&mut browser, "page-i").await;
    for (seq, (typed, expected)) in [
        (
            "\u{202E}nimda",
            "Username may not contain characters that change the direction of text (it has U+202E).",
        ),
        (
            "\u{3164}",
            "Username may not contain invisible characters such as zero-width spaces (it has U+3164).",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        change(&mut socket, seq as u64 + 1, typed, "dark").await;
        let ack = recv(&mut socket).await;
        assert_eq!(ack["t"], "ack");
        assert_eq!(ack["errors"]["username"], expected);
        let render = recv(&mut socket).await;
        let html = render["html"].as_str().unwrap();
        assert!(html.contains(expected), "the sentence is next to the field");
        assert!(html.contains(r#"<bdi><strong id="current-username">kept</strong></bdi>"#));
    }
    let page = browser.page("/settings").await;
    assert_eq!(username_field(&page), "kept");
    assert_eq!(html_theme(&page), "dark", "the valid field was saved");
    app.stop().await;
}

#[tokio::test]
async fn a_stale_page_gets_the_current_state_when_it_joins_and_a_fresh_one_does_not() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser.save_settings("one", "light").await;
    let info = page_info(&mut browser, "/settings").await;
    let origin = format!("http://{}", app.addr);

    let mut fresh = live::open(&browser, Some(&origin)).await.unwrap();
    send(
        &mut fresh,
        json!({"t": "join", "view": "settings", "csrf": info.csrf,
                            "build": info.build, "page": "p1", "version": info.version}),
    )
    .await;
    assert_eq!(recv(&mut fresh).await["t"], "joined");
    assert_eq!(try_recv(&mut fresh, Duration::from_millis(200)).await, None);

    let mut stale = live::open(&browser, Some(&origin)).await.unwrap();
    send(
        &mut stale,
        json!({"t": "join", "view": "settings", "csrf": info.csrf,
                            "build": info.build, "page": "p2", "version": info.version - 1}),
    )
    .await;
    assert_eq!(recv(&mut stale).await["t"], "joined");
    assert_eq!(recv(&mut stale).await["t"], "render");
    app.stop().await;
}

#[tokio::test]
async fn a_page_from_another_build_is_told_to_reload() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let info = page_info(&mut browser, "/settings").await;
    let mut socket = live::open(&browser, Some(&format!("http://{}", app.addr)))
        .await
        .unwrap();
    send(
        &mut socket,
        json!({"t": "join", "view": "settings", "csrf": info.csrf,
                             "build": "0123456789ab", "page": "p", "version": 0}),
    )
    .await;
    assert_eq!(recv(&mut socket).await["t"], "reload");
    app.stop().await;
}

#[tokio::test]
async fn forgetting_the_browser_tells_its_other_tabs_to_reload() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser.save_settings("bye", "dark").await;
    let mut tab = join_settings(&mut browser, "tab").await;
    let token = browser.csrf_token().await;
    browser.post("/settings/forget", &[("_csrf", &token)]).await;
    assert_eq!(recv(&mut tab).await["t"], "reload");
    app.stop().await;
}

#[tokio::test]
async fn a_foreign_or_missing_origin_is_refused_before_the_upgrade() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser.page("/settings").await;
    for origin in [Some("http://evil.example"), None] {
        match live::open(&browser, origin).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), StatusCode::FORBIDDEN, "{origin:?}");
            }
            other => panic!("{origin:?} was not refused: {other:?}"),
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn an_allowed_origin_is_accepted() {
    let app = TestApp::spawn(&["--allowed-origin", "https://chat.example"]).await;
    let mut browser = app.browser();
    browser.page("/settings").await;
    assert!(
        live::open(&browser, Some("https://chat.example"))
            .await
            .is_ok()
    );
    app.stop().await;
}

#[tokio::test]
async fn a_join_without_the_right_csrf_token_is_closed_as_a_policy_violation() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let info = page_info(&mut browser, "/settings").await;
    let origin = format!("http://{}", app.addr);
    let mut other = app.browser();
    let foreign = page_info(&mut other, "/settings").await.csrf;
    for csrf in ["", "forged", foreign.as_str()] {
        let mut socket = live::open(&browser, Some(&origin)).await.unwrap();
        send(
            &mut socket,
            json!({"t": "join", "view": "settings", "csrf": csrf,
                                 "build": info.build, "page": "p", "version": 0}),
        )
        .await;
        let frame = closed(&mut socket).await.expect("a close frame");
        assert_eq!(frame.code, CloseCode::Policy, "{csrf:?}");
    }
    // A change before any join is refused the same way.
    let mut socket = live::open(&browser, Some(&origin)).await.unwrap();
    change(&mut socket, 1, "sneaky", "dark").await;
    assert_eq!(closed(&mut socket).await.unwrap().code, CloseCode::Policy);
    assert_eq!(app.settings_rows(), 0);
    app.stop().await;
}

#[tokio::test]
async fn a_socket_without_a_session_cookie_cannot_join() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let info = page_info(&mut browser, "/settings").await;
    let mut cookieless = browser.clone();
    cookieless.cookie = None;
    let mut socket = live::open(&cookieless, Some(&format!("http://{}", app.addr)))
        .await
        .unwrap();
    send(
        &mut socket,
        json!({"t": "join", "view": "settings", "csrf": info.csrf,
                             "build": info.build, "page": "p", "version": 0}),
    )
    .await;
    assert_eq!(closed(&mut socket).await.unwrap().code, CloseCode::Policy);
    app.stop().await;
}

#[tokio::test]
async fn a_message_over_64_kib_closes_the_socket_with_1009() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let mut socket = join_settings(&mut browser, "p").await;
    let big = "x".repeat(64 * 1024 + 1);
    socket.send(Message::text(big)).await.unwrap();
    assert_eq!(closed(&mut socket).await.unwrap().code, CloseCode::Size);
    // The server is fine.
    assert_eq!(browser.get("/healthz").await.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn malformed_and_unknown_messages_get_an_error_and_the_socket_keeps_working() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let mut socket = join_settings(&mut browser, "p").await;
    for bad in [
        "not json",
        "{}",
        r#"{"t":"launch"}"#,
        r#"{"t":"change","form":"settings","seq":"one","fields":{}}"#,
        r#"{"t":"change","form":"nope","seq":1,"fields":{}}"#,
        r#"{"t":"join","view":"settings","csrf":"x","build":"y","page":"z"}"#,
    ] {
        socket.send(Message::text(bad)).await.unwrap();
        let reply = recv(&mut socket).await;
        assert_eq!(reply["t"], "error", "{bad}: {reply}");
        assert!(!reply["message"].as_str().unwrap().is_empty());
    }
    change(&mut socket, 1, "still here", "system").await;
    assert_eq!(recv(&mut socket).await["t"], "ack");
    app.stop().await;
}

#[tokio::test]
async fn a_binary_message_closes_the_socket_as_unsupported() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let mut socket = join_settings(&mut browser, "p").await;
    socket.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(
        closed(&mut socket).await.unwrap().code,
        CloseCode::Unsupported
    );
    app.stop().await;
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_cut_off_and_others_are_unaffected() {
    let app = TestApp::spawn(&["--live-send-timeout", "300ms"]).await;
    let mut browser = app.browser();
    let mut slow = join_settings(&mut browser, "slow").await;
    let mut healthy_browser = app.browser();
    let mut healthy = join_settings(&mut healthy_browser, "ok").await;

    // The slow peer keeps sending changes and never reads the acks and renders they cause. Once
    // the buffers between us fill, the server cannot send, gives up after the send timeout and
    // drops the connection, and our next send fails.
    let flood = async {
        for seq in 1u64.. {
            let text = json!({"t": "change", "form": "settings", "seq": seq,
                              "fields": {"username": format!("n{seq}"), "theme": "system"}})
            .to_string();
            if slow.send(Message::text(text)).await.is_err() {
                return seq;
            }
        }
        unreachable!()
    };
    tokio::time::timeout(Duration::from_secs(60), flood)
        .await
        .expect("the server never dropped the slow peer");

    // The well-behaved socket still works.
    change(&mut healthy, 1, "fine", "dark").await;
    assert_eq!(recv(&mut healthy).await["t"], "ack");
    app.stop().await;
}

#[tokio::test]
async fn shutdown_closes_live_sockets_with_service_restart() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let mut socket = join_settings(&mut browser, "p").await;
    let stopping = tokio::spawn(app.stop());
    let frame = closed(&mut socket).await.expect("a close frame");
    assert_eq!(frame.code, CloseCode::Restart);
    stopping.await.unwrap();
}

#[tokio::test]
async fn a_silent_peer_is_closed_after_the_idle_timeout_and_a_responsive_one_is_not() {
    let app = TestApp::spawn(&["--live-idle-timeout", "600ms"]).await;
    let mut browser = app.browser();
    let mut responsive = join_settings(&mut browser, "a").await;
    let mut silent = join_settings(&mut browser, "b").await;
    // Reading answers the server's pings; not reading leaves them unanswered.
    assert_eq!(
        try_recv(&mut responsive, Duration::from_millis(1500)).await,
        None
    );
    // The silent socket is gone: we see the close frame, or (when our late pong hits the closed
    // connection first) a reset.
    if let Some(frame) = closed(&mut silent).await {
        assert_eq!(frame.code, CloseCode::Away);
    }
    change(&mut responsive, 1, "awake", "system").await;
    assert_eq!(recv(&mut responsive).await["t"], "ack");
    app.stop().await;
}

#[tokio::test]
async fn an_open_live_socket_keeps_its_session_from_being_pruned() {
    let app = TestApp::spawn(&["--stale-after", "1s", "--prune-every", "100ms"]).await;
    let mut connected = app.browser();
    connected.save_settings("connected", "dark").await;
    let mut socket = join_settings(&mut connected, "p").await;
    let mut gone = app.browser();
    gone.save_settings("gone", "dark").await;

    // Nobody loads a page or saves for longer than stale-after; one browser keeps a socket open.
    assert_eq!(
        try_recv(&mut socket, Duration::from_millis(1600)).await,
        None
    );
    assert_eq!(app.settings_rows(), 1);
    assert_eq!(
        username_field(&connected.page("/settings").await),
        "connected"
    );
    app.stop().await;
}
