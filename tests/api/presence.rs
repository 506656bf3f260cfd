//! Who has the chat open, through real sockets: the first render lists them (without
//! JavaScript too), one entry per browser however many tabs, the unnamed counted, live updates as
//! people come and go, a reload within the grace changes nothing, and a rename shows at once.
//! (Across instances on PostgreSQL: tests/api/cluster.rs.)

use std::time::Duration;

use crate::common::live::{self, join_chat, presence, presence_until, try_presence};
use crate::common::{Browser, TestApp};
use serde_json::Value;

/// A grace short enough to wait out in a test.
const GRACE: &str = "300ms";

async fn app() -> TestApp {
    TestApp::spawn(&["--presence-grace", GRACE]).await
}

async fn named(app: &TestApp, name: &str) -> Browser {
    let mut browser = app.browser();
    browser.save_settings(name, "system").await;
    browser
}

/// The inside of the page's presence list.
fn listed(page: &str) -> &str {
    let start = page
        .find(r#"id="presence""#)
        .expect("the page has a presence list");
    let inner = &page[start..];
    let end = inner.find("</div>").unwrap();
    &inner[..end]
}

fn html(frame: &Value) -> &str {
    frame["html"].as_str().unwrap()
}

#[tokio::test]
async fn the_first_render_lists_who_has_the_chat_open_once_per_browser_and_counts_the_unnamed() {
    let app = app().await;
    let mut ada = named(&app, "Ada").await;
    let _tab1 = join_chat(&mut ada, "ada-1", None).await;
    let _tab2 = join_chat(&mut ada, "ada-2", None).await;
    let mut anonymous = app.browser();
    let mut watcher = join_chat(&mut anonymous, "anon", None).await;
    presence_until(&mut watcher, |h| {
        h.contains("Ada") && h.contains("1 anonymous")
    })
    .await;

    // A page without JavaScript: the list is in the HTML, its viewer in it, each name isolated.
    let mut bob = named(&app, "Bob").await;
    let page = bob.page("/").await;
    let list = listed(&page);
    assert!(list.contains(r#"aria-live="polite""#), "{list}");
    assert_eq!(
        list.matches("<bdi>Ada</bdi>").count(),
        1,
        "two tabs, one entry: {list}"
    );
    assert!(
        list.contains("<bdi>Bob</bdi>"),
        "the viewer is listed: {list}"
    );
    assert!(list.contains("and 1 anonymous"), "{list}");
    assert!(
        list.find("Ada").unwrap() < list.find("Bob").unwrap(),
        "sorted by name: {list}"
    );

    // Settings pages are not the chat: a browser there is not listed.
    let mut carol = named(&app, "Carol").await;
    let _settings = live::join_settings(&mut carol, "carol").await;
    let page = bob.page("/").await;
    assert!(!listed(&page).contains("Carol"));
    app.stop().await;
}

#[tokio::test]
async fn arrivals_and_departures_reach_every_chat_page_and_a_reload_changes_nothing() {
    let app = app().await;
    let mut bob = named(&app, "Bob").await;
    let mut bob_tab = join_chat(&mut bob, "bob", None).await;
    let mut ada = named(&app, "Ada").await;
    let ada_tab = join_chat(&mut ada, "ada-1", None).await;
    presence_until(&mut bob_tab, |h| h.contains("<bdi>Ada</bdi>")).await;

    // A reload: the page's socket closes and the new page's joins a moment later. Within the
    // grace nobody sees Ada leave.
    drop(ada_tab);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ada_tab = join_chat(&mut ada, "ada-2", None).await;
    while let Some(frame) = try_presence(&mut bob_tab, Duration::from_millis(800)).await {
        assert!(html(&frame).contains("Ada"), "Ada blinked out: {frame}");
    }

    // Closing the last tab: gone once the grace is over, for live pages and new ones alike.
    drop(ada_tab);
    let list = presence_until(&mut bob_tab, |h| !h.contains("Ada")).await;
    assert!(list.contains("<bdi>Bob</bdi>"), "{list}");
    let page = app.browser().page("/").await;
    assert!(!listed(&page).contains("Ada"), "{}", listed(&page));
    app.stop().await;
}

#[tokio::test]
async fn a_rename_shows_in_everyone_s_list_at_once() {
    let app = app().await;
    let mut bob = named(&app, "Bob").await;
    let mut bob_tab = join_chat(&mut bob, "bob", None).await;
    let mut ada = named(&app, "Ada").await;
    let _chat = join_chat(&mut ada, "ada-chat", None).await;
    presence_until(&mut bob_tab, |h| h.contains("<bdi>Ada</bdi>")).await;

    // Renamed in a settings tab: the chat tab hears it and the list follows.
    let mut settings = live::join_settings(&mut ada, "ada-settings").await;
    live::change(&mut settings, 1, "Ada Lovelace", "system").await;
    let list = presence_until(&mut bob_tab, |h| h.contains("Ada Lovelace")).await;
    assert!(
        !list.contains("<bdi>Ada</bdi>"),
        "the old name is gone: {list}"
    );

    // Renamed without JavaScript (a form post): the same.
    ada.save_settings("Countess", "system").await;
    presence_until(&mut bob_tab, |h| h.contains("Countess")).await;
    app.stop().await;
}

#[tokio::test]
async fn a_rename_by_form_post_shows_in_here_now_without_a_live_page_of_the_renamer() {
    // A grace long enough that Ada stays listed after her chat page closed.
    let app = TestApp::spawn(&["--presence-grace", "30s"]).await;
    let mut bob = named(&app, "Bob").await;
    let mut bob_tab = join_chat(&mut bob, "bob", None).await;
    let mut ada = named(&app, "Ada").await;
    let mut ada_tab = join_chat(&mut ada, "ada-chat", None).await;
    presence_until(&mut bob_tab, |h| h.contains("<bdi>Ada</bdi>")).await;
    ada_tab.close(None).await.unwrap();
    drop(ada_tab);

    // No page of Ada's is open to re-read her settings: the save itself renames her entry.
    ada.save_settings("Countess", "system").await;
    let list = presence_until(&mut bob_tab, |h| h.contains("Countess")).await;
    assert!(
        !list.contains("<bdi>Ada</bdi>"),
        "the old name is gone: {list}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_page_that_joins_with_an_old_list_gets_the_current_one_and_a_current_page_nothing() {
    let app = app().await;
    let mut bob = named(&app, "Bob").await;
    let info = live::page_info(&mut bob, "/").await;
    assert_eq!(info.presence, 0, "nobody here yet");

    // Ada arrives between Bob's page load and his join: his page learns of her on joining.
    let mut ada = named(&app, "Ada").await;
    let mut ada_tab = join_chat(&mut ada, "ada", None).await;
    presence_until(&mut ada_tab, |h| h.contains("Ada")).await;
    let origin = format!("http://{}", app.addr);
    let mut bob_tab = live::open(&bob, Some(&origin)).await.unwrap();
    live::send_join(&mut bob_tab, "chat", "bob", &info).await;
    let first = presence(&mut bob_tab).await;
    assert!(html(&first).contains("Ada"), "{first}");
    let list = presence_until(&mut bob_tab, |h| h.contains("Ada") && h.contains("Bob")).await;
    assert_eq!(list.matches("<li>").count(), 2, "{list}");

    // Another tab of Bob, loaded now, shows the current list: it gets none on joining.
    let mut again = join_chat(&mut bob, "bob-2", None).await;
    assert_eq!(
        try_presence(&mut again, Duration::from_millis(400)).await,
        None
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn churn_of_long_names_costs_a_viewer_small_frames_a_few_times_a_second() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let app = app().await;
    let mut viewer = named(&app, "viewer").await;
    let mut watching = join_chat(&mut viewer, "viewer-1", None).await;
    presence(&mut watching).await;

    // 120 fresh browsers, each named with 37 family emoji (7 code points each) and a number: the
    // longest names there are, about 0.9 KB each. One joins every 100 ms.
    let family = "👨\u{200D}👩\u{200D}👧\u{200D}👦";
    let mut churners = Vec::new();
    for n in 0..120 {
        churners.push(named(&app, &format!("{}{n:03}", family.repeat(37))).await);
    }
    let churn = tokio::spawn(async move {
        let mut sockets = Vec::new();
        for (n, browser) in churners.iter_mut().enumerate() {
            sockets.push(join_chat(browser, &format!("churn-{n}"), None).await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sockets
    });

    let started = std::time::Instant::now();
    let (mut frames, mut bytes, mut largest, mut cut) = (0usize, 0usize, 0usize, false);
    while !churn.is_finished() || started.elapsed() < Duration::from_secs(1) {
        let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout(Duration::from_millis(500), watching.next()).await
        else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        if frame["t"] != "presence" {
            continue;
        }
        frames += 1;
        bytes += text.len();
        largest = largest.max(text.len());
        cut |= html(&frame).contains('…');
    }
    let took = started.elapsed();
    let sockets = churn.await.unwrap();
    assert_eq!(sockets.len(), 120);
    assert!(cut, "long names are cut with an ellipsis in the list");
    assert!(largest <= 8 * 1024, "a presence frame of {largest} bytes");
    // At most four lists a second (and the one in flight at either end).
    let most = (took.as_millis() / 250 + 2) as usize;
    assert!(frames <= most, "{frames} frames in {took:?}");
    let per_second = bytes as f64 / took.as_secs_f64();
    eprintln!(
        "presence churn: {frames} frames, {bytes} bytes in {took:?} ({per_second:.0} B/s), largest {largest} bytes"
    );
    assert!(per_second <= 64.0 * 1024.0, "{per_second:.0} B/s");
    app.stop().await;
}

#[tokio::test]
async fn a_crowd_of_fresh_browsers_from_one_address_is_counted_not_named() {
    let app = app().await;
    let mut viewer = named(&app, "Viewer").await;
    let mut watching = join_chat(&mut viewer, "viewer", None).await;
    presence_until(&mut watching, |h| h.contains("Viewer")).await;

    // Ten more browsers, minted a moment ago on the viewer's own address, join with names: the
    // address's first three fresh sessions are named (the viewer is one), the rest counted.
    let mut sockets = Vec::new();
    for n in 0..10 {
        let mut browser = named(&app, &format!("Crowd{n:02}")).await;
        sockets.push(join_chat(&mut browser, &format!("crowd-{n}"), None).await);
    }
    let frame = presence_until(&mut watching, |h| h.contains("and 8 more")).await;
    let named_in_list = frame.matches("<bdi>").count();
    assert_eq!(named_in_list, 3, "{frame}");
    assert!(
        frame.contains("Crowd00") && frame.contains("Crowd01"),
        "{frame}"
    );
    assert!(!frame.contains("Crowd02"), "{frame}");

    // A page rendered without JavaScript says the same.
    let page = viewer.page("/").await;
    let list = listed(&page);
    assert!(list.contains("and 8 more"), "{list}");
    assert_eq!(list.matches("<bdi>").count(), 3, "{list}");
    drop(sockets);
    app.stop().await;
}
