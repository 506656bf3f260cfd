//! The live layer in a real browser: headless Chromium, driven over WebDriver.

mod harness;
mod https;
mod offline;

use std::time::Duration;

use crate::common::{Browser, TestApp, username_field};
use fantoccini::Locator;
use harness::Chrome;

/// The static HTML of `/settings` for the browser's session, fetched without JavaScript.
async fn static_settings(app_addr: std::net::SocketAddr, cookie: String) -> String {
    let mut plain = Browser::new(app_addr);
    plain.cookie = Some(cookie);
    plain.page("/settings").await
}

const CONNECTED: &str = "return document.documentElement.classList.contains('live-connected')";

/// Stops `app`, and once the page shows it is offline types `name` into the username field and
/// leaves the field, so the change is flushed (and kept) at once.
async fn type_a_name_while_the_server_is_down(chrome: &Chrome, app: TestApp, name: &str) {
    app.stop().await;
    chrome
        .until(
            "the page shows it is offline",
            "return document.documentElement.classList.contains('live-disconnected')",
        )
        .await;
    chrome.type_into("#username", name).await;
    chrome
        .js("document.getElementById('username').blur(); return true;")
        .await;
}

/// The settings form's status says its change is saved.
const SAVED: &str = "return document.getElementById('settings-status').textContent === 'Saved'";

#[tokio::test]
async fn a_typed_username_is_saved_live_and_is_in_the_static_html_after_a_reload() {
    let Some(chrome) = Chrome::start("a_typed_username_is_saved_live").await else {
        return;
    };
    let app = TestApp::spawn(&[]).await;
    chrome.goto(&app.url("/settings")).await;
    chrome.until("the socket is live", CONNECTED).await;

    chrome.type_into("#username", "Ada").await;
    chrome.until("the change is saved", SAVED).await;
    chrome
        .until(
            "the header shows the name",
            "return document.getElementById('current-username').textContent === 'Ada'",
        )
        .await;

    // A theme change applies to the page at once, without a reload.
    let select = chrome.client.find(Locator::Css("#theme")).await.unwrap();
    select.select_by_value("dark").await.unwrap();
    chrome
        .until(
            "the page turns dark",
            "return document.documentElement.dataset.theme === 'dark'",
        )
        .await;
    chrome.until("the theme is saved", SAVED).await;

    chrome.client.refresh().await.unwrap();
    assert_eq!(chrome.value("#username").await, "Ada");
    assert_eq!(chrome.value("#theme").await, "dark");
    let html = static_settings(app.addr, chrome.session_cookie().await).await;
    assert_eq!(username_field(&html), "Ada");
    assert!(html.contains(r#"data-theme="dark""#));
    chrome.assert_clean_console().await;
    chrome.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn two_tabs_of_one_browser_stay_in_sync() {
    let Some(chrome) = Chrome::start("two_tabs_of_one_browser_stay_in_sync").await else {
        return;
    };
    let app = TestApp::spawn(&[]).await;
    chrome.goto(&app.url("/settings")).await;
    chrome.until("tab 1 is live", CONNECTED).await;
    let first = chrome.client.window().await.unwrap();
    let second = chrome.client.new_window(true).await.unwrap().handle;
    chrome
        .client
        .switch_to_window(second.clone())
        .await
        .unwrap();
    chrome.goto(&app.url("/settings")).await;
    chrome.until("tab 2 is live", CONNECTED).await;

    chrome.client.switch_to_window(first.clone()).await.unwrap();
    chrome.type_into("#username", "Grace").await;
    chrome.until("tab 1 saved", SAVED).await;

    chrome.client.switch_to_window(second).await.unwrap();
    chrome
        .until(
            "tab 2 shows the new name",
            "return document.getElementById('username').value === 'Grace'",
        )
        .await;
    chrome
        .until(
            "tab 2's header too",
            "return document.getElementById('current-username').textContent === 'Grace'",
        )
        .await;
    chrome.assert_clean_console().await;
    chrome.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn typing_slowly_is_never_clobbered_mid_word() {
    let Some(chrome) = Chrome::start("typing_slowly_is_never_clobbered_mid_word").await else {
        return;
    };
    let app = TestApp::spawn(&[]).await;
    chrome.goto(&app.url("/settings")).await;
    chrome.until("the socket is live", CONNECTED).await;

    // Pauses around the debounce time, so saves and re-renders land while typing goes on.
    let word = "Slowly typed name";
    for (n, ch) in word.chars().enumerate() {
        chrome.type_into("#username", &ch.to_string()).await;
        let pause = [60, 110, 140, 90][n % 4];
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    assert_eq!(chrome.value("#username").await, word);
    chrome.until("the whole word is saved", SAVED).await;
    assert_eq!(chrome.value("#username").await, word);
    // The caret is still at the end, where the person left it.
    let caret = chrome
        .js("const el = document.getElementById('username'); return [el.selectionStart, el.value.length, document.activeElement === el];")
        .await;
    assert_eq!(caret, serde_json::json!([word.len(), word.len(), true]));
    let html = static_settings(app.addr, chrome.session_cookie().await).await;
    assert_eq!(username_field(&html), word);
    chrome.assert_clean_console().await;
    chrome.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn a_change_typed_while_the_server_restarts_is_saved_once_it_is_back() {
    let Some(chrome) = Chrome::start("a_change_typed_while_the_server_restarts").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_in(dir.path(), &[]).await;
    let addr = app.addr.to_string();
    chrome.goto(&app.url("/settings")).await;
    chrome.until("the socket is live", CONNECTED).await;

    app.stop().await;
    chrome
        .until(
            "the page shows it is offline",
            "return document.documentElement.classList.contains('live-disconnected') \
             && document.getElementById('live-status').textContent.startsWith('Offline')",
        )
        .await;
    chrome.type_into("#username", "typed offline").await;
    // Leave the field, as a person would, so the change is flushed (and kept) right away.
    chrome
        .js("document.getElementById('username').blur(); return true;")
        .await;

    let app = TestApp::spawn_in(dir.path(), &["--listen", &addr]).await;
    chrome.until("the socket is back", CONNECTED).await;
    chrome.until("the change is saved", SAVED).await;
    let html = static_settings(app.addr, chrome.session_cookie().await).await;
    assert_eq!(username_field(&html), "typed offline");
    chrome.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn an_edit_typed_while_the_server_is_down_survives_leaving_the_page_and_is_saved_by_the_next()
{
    let Some(chrome) = Chrome::start("an_edit_typed_while_the_server_is_down_survives").await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_in(dir.path(), &[]).await;
    let addr = app.addr.to_string();
    let url = app.url("/settings");
    chrome.goto(&url).await;
    chrome.until("the socket is live", CONNECTED).await;
    assert_eq!(
        chrome
            .js("return document.getElementById('unsaved').textContent")
            .await,
        ""
    );

    type_a_name_while_the_server_is_down(&chrome, app, "typed while down").await;
    assert_eq!(
        chrome
            .js("return document.getElementById('unsaved').textContent")
            .await,
        "1 change not yet saved"
    );
    // Leaving now asks first.
    let asks = "var e = new Event('beforeunload', { cancelable: true }); \
                window.dispatchEvent(e); return e.defaultPrevented;";
    assert_eq!(chrome.js(asks).await, true);

    // The tab goes (the person answers "Leave"); the server comes back; the next page of this
    // browser sends the edit before anything else.
    chrome.goto("about:blank").await;
    let app = TestApp::spawn_in(dir.path(), &["--listen", &addr]).await;
    chrome.goto(&url).await;
    chrome.until("the kept edit is saved", SAVED).await;
    let html = static_settings(app.addr, chrome.session_cookie().await).await;
    assert_eq!(username_field(&html), "typed while down");
    assert_eq!(
        chrome
            .js("return document.getElementById('unsaved').textContent")
            .await,
        ""
    );
    assert_eq!(chrome.js(asks).await, false, "nothing left to ask about");
    chrome.assert_clean_console().await;
    chrome.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn the_chat_draft_survives_a_reload_and_is_gone_once_sent() {
    let Some(chrome) = Chrome::start("the_chat_draft_survives_a_reload").await else {
        return;
    };
    let app = TestApp::spawn(&[]).await;
    chrome.goto(&app.url("/")).await;
    chrome.until("the socket is live", CONNECTED).await;
    chrome.type_into("#body", "half a thought").await;
    chrome.client.refresh().await.unwrap();
    chrome.until("the socket is live again", CONNECTED).await;
    assert_eq!(chrome.value("#body").await, "half a thought");
    chrome
        .js("document.getElementById('composer').requestSubmit(); return true;")
        .await;
    chrome
        .until(
            "the message is in the log",
            "return document.getElementById('messages').textContent.includes('half a thought')",
        )
        .await;
    chrome.client.refresh().await.unwrap();
    chrome
        .until("the socket is live once more", CONNECTED)
        .await;
    assert_eq!(chrome.value("#body").await, "");
    chrome.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn an_injected_img_onerror_username_is_inert() {
    let Some(chrome) = Chrome::start("an_injected_img_onerror_username_is_inert").await else {
        return;
    };
    let app = TestApp::spawn(&[]).await;
    chrome.goto(&app.url("/settings")).await;
    chrome.until("the socket is live", CONNECTED).await;
    let payload = r#"<img src=x onerror="document.title=1">"#;
    chrome.type_into("#username", payload).await;
    chrome.until("the change is saved", SAVED).await;
    chrome.client.refresh().await.unwrap();
    chrome.until("the socket is live", CONNECTED).await;
    let check = "return [document.title, document.querySelectorAll('img').length, \
                 document.getElementById('current-username').textContent];";
    let seen = chrome.js(check).await;
    assert_eq!(
        seen,
        serde_json::json!(["Settings · livesession", 0, payload])
    );
    chrome.goto(&app.url("/")).await;
    let seen = chrome
        .js("return [document.title, document.querySelectorAll('img').length];")
        .await;
    assert_eq!(seen, serde_json::json!(["Chat · livesession", 0]));
    chrome.assert_clean_console().await;
    chrome.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn a_field_changed_in_another_tab_while_typing_keeps_the_typing_and_says_so() {
    let Some(chrome) = Chrome::start("a_field_changed_in_another_tab_while_typing").await else {
        return;
    };
    let app = TestApp::spawn(&[]).await;
    chrome.goto(&app.url("/settings")).await;
    chrome.until("the socket is live", CONNECTED).await;
    chrome.type_into("#username", "mine").await;
    chrome.until("the typing is saved", SAVED).await;

    // Another tab of the same browser (same cookie) renames the user while the field has focus.
    let mut other_tab = Browser::new(app.addr);
    other_tab.cookie = Some(chrome.session_cookie().await);
    let mut socket = crate::common::live::join_settings(&mut other_tab, "other-tab").await;
    crate::common::live::change(&mut socket, 1, "theirs", "system").await;
    assert_eq!(crate::common::live::recv(&mut socket).await["t"], "ack");

    chrome
        .until(
            "the hint appears",
            "return document.getElementById('username-remote').textContent.includes('Changed in another tab')",
        )
        .await;
    assert_eq!(
        chrome
            .js("return document.querySelector('#username-remote bdi').textContent")
            .await,
        "theirs",
        "the other tab's value is isolated"
    );
    assert_eq!(
        chrome.value("#username").await,
        "mine",
        "the focused field was overwritten"
    );
    chrome
        .until(
            "the header follows the saved name",
            "return document.getElementById('current-username').textContent === 'theirs'",
        )
        .await;

    // Leaving the field shows what is saved now, and the hint goes away.
    chrome
        .js("document.getElementById('username').blur(); return true;")
        .await;
    assert_eq!(chrome.value("#username").await, "theirs");
    let hint = chrome
        .js("return document.getElementById('username-remote').textContent")
        .await;
    assert_eq!(hint, "");
    chrome.assert_clean_console().await;
    chrome.quit().await;
    app.stop().await;
}

/// Waits until the chat log holds `count` messages.
async fn until_messages(chrome: &Chrome, count: usize) {
    chrome
        .until(
            &format!("{count} messages are shown"),
            &format!("return document.querySelectorAll('#messages > li').length === {count}"),
        )
        .await;
}

#[tokio::test]
async fn two_people_in_two_browsers_chat_live_under_their_own_names() {
    let Some(ada) = Chrome::start("two_people_chat_live (ada)").await else {
        return;
    };
    let Some(bob) = Chrome::start("two_people_chat_live (bob)").await else {
        return;
    };
    let app = TestApp::spawn(&[]).await;
    for (chrome, name) in [(&ada, "Ada"), (&bob, "Bob")] {
        chrome.goto(&app.url("/settings")).await;
        chrome.until("the socket is live", CONNECTED).await;
        chrome.type_into("#username", name).await;
        chrome.until("the name is saved", SAVED).await;
        chrome.goto(&app.url("/")).await;
        chrome.until("the chat is live", CONNECTED).await;
    }

    // Ada types and presses Enter; Bob sees it without reloading.
    ada.type_into("#body", "Hello Bob\u{E007}").await;
    until_messages(&bob, 1).await;
    until_messages(&ada, 1).await;
    ada.until(
        "the composer is cleared",
        "return document.getElementById('body').value === ''",
    )
    .await;
    bob.type_into("#body", "Hi Ada!").await;
    bob.client
        .find(Locator::Css("#composer button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_messages(&ada, 2).await;
    until_messages(&bob, 2).await;

    let log = "return Array.from(document.querySelectorAll('#messages > li')).map(li => \
               li.querySelector('.author').textContent + ': ' + li.querySelector('.body').textContent)";
    let expected = serde_json::json!(["Ada (you): Hello Bob", "Bob: Hi Ada!"]);
    assert_eq!(ada.js(log).await, expected);
    let expected = serde_json::json!(["Ada: Hello Bob", "Bob (you): Hi Ada!"]);
    assert_eq!(bob.js(log).await, expected);

    // Each is remembered after quitting the browser: a new browser with the same cookie (what a
    // restarted browser sends) is greeted by name on the first, static render.
    let cookie = ada.session_cookie().await;
    ada.assert_clean_console().await;
    bob.assert_clean_console().await;
    ada.quit().await;
    let mut returning = Browser::new(app.addr);
    returning.cookie = Some(cookie);
    assert!(
        returning
            .page("/")
            .await
            .contains(r#"<strong id="composer-name">Ada</strong>"#)
    );
    bob.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn an_injected_img_onerror_message_is_inert() {
    let Some(chrome) = Chrome::start("an_injected_img_onerror_message_is_inert").await else {
        return;
    };
    let app = TestApp::spawn(&[]).await;
    chrome.goto(&app.url("/")).await;
    chrome.until("the chat is live", CONNECTED).await;
    let payload =
        r#"<img src=x onerror="document.title='pwned'"><script>document.title='pwned'</script>"#;
    chrome.type_into("#body", payload).await;
    chrome.type_into("#body", "\u{E007}").await;
    until_messages(&chrome, 1).await;
    let check = "return [document.title, document.querySelectorAll('#messages img, #messages script').length, \
                 document.querySelector('#messages .body').textContent];";
    assert_eq!(
        chrome.js(check).await,
        serde_json::json!(["Chat · livesession", 0, payload])
    );
    chrome.client.refresh().await.unwrap();
    chrome.until("the chat is live", CONNECTED).await;
    assert_eq!(
        chrome.js(check).await,
        serde_json::json!(["Chat · livesession", 0, payload])
    );
    chrome.assert_clean_console().await;
    chrome.quit().await;
    app.stop().await;
}

/// Where the first message's author name (its `<bdi>`), its "(you)" marker (when there is one)
/// and its time are drawn, as `[left, right, top]` each, with the direction of the message.
const MESSAGE_LAYOUT: &str = "const li = document.querySelector('#messages > li'); \
     const box = el => { if (!el) return null; const r = el.getBoundingClientRect(); \
                         return [r.left, r.right, r.top]; }; \
     return { direction: getComputedStyle(li).direction, \
              name: box(li.querySelector('.author > bdi')), you: box(li.querySelector('.you')), \
              time: box(li.querySelector('time')) };";

/// `[left, right, top]` out of the layout.
fn rect(layout: &serde_json::Value, what: &str) -> [f64; 3] {
    let r = &layout[what];
    [0, 1, 2].map(|i| {
        r[i].as_f64()
            .unwrap_or_else(|| panic!("no {what} in {layout}"))
    })
}

#[tokio::test]
async fn a_right_to_left_name_cannot_reorder_the_you_marker_or_the_time() {
    let Some(chrome) = Chrome::start("a_right_to_left_name_cannot_reorder").await else {
        return;
    };
    let app = TestApp::spawn(&[]).await;
    chrome.goto(&app.url("/settings")).await;
    chrome.until("the socket is live", CONNECTED).await;

    // A right-to-left override is refused, with the reason next to the field.
    chrome
        .js(
            "const el = document.getElementById('username'); el.value = '\\u202Eevil'; \
             el.dispatchEvent(new Event('input', { bubbles: true })); return true;",
        )
        .await;
    chrome
        .until(
            "the override is refused",
            "return document.getElementById('username-error').textContent === \
             'Username may not contain characters that change the direction of text (it has U+202E).'",
        )
        .await;
    assert_eq!(
        chrome
            .js("return document.getElementById('current-username').textContent")
            .await,
        "anonymous"
    );

    // A name in a right-to-left script is a name like any other.
    chrome
        .js("document.getElementById('username').value = ''; return true;")
        .await;
    chrome.type_into("#username", "שלום").await;
    chrome
        .until(
            "the header shows the name",
            "return document.getElementById('current-username').textContent === 'שלום' && \
             document.getElementById('username-error').textContent === ''",
        )
        .await;

    chrome.goto(&app.url("/")).await;
    chrome.until("the chat is live", CONNECTED).await;
    chrome.type_into("#body", "hello").await;
    chrome.type_into("#body", "\u{E007}").await;
    until_messages(&chrome, 1).await;

    // In the author's own page: the name's box, then " (you)", then the time, left to right.
    let layout = chrome.js(MESSAGE_LAYOUT).await;
    assert_eq!(layout["direction"], "ltr", "{layout}");
    let (name, you, time) = (
        rect(&layout, "name"),
        rect(&layout, "you"),
        rect(&layout, "time"),
    );
    assert!(name[0] < name[1], "the name is drawn: {layout}");
    assert!(
        name[1] <= you[0] + 0.5,
        "(you) comes after the name: {layout}"
    );
    assert!(
        you[1] <= time[0] + 0.5,
        "the time comes after (you): {layout}"
    );
    assert!((name[2] - time[2]).abs() < 8.0, "all on one line: {layout}");

    // In a stranger's page there is no marker; the time still comes after the name (without the
    // isolation, its digits would join the right-to-left run and be drawn before the name).
    chrome.client.delete_all_cookies().await.unwrap();
    chrome.goto(&app.url("/")).await;
    chrome.until("the chat is live", CONNECTED).await;
    until_messages(&chrome, 1).await;
    let layout = chrome.js(MESSAGE_LAYOUT).await;
    assert_eq!(layout["you"], serde_json::Value::Null, "{layout}");
    let (name, time) = (rect(&layout, "name"), rect(&layout, "time"));
    assert!(
        name[1] <= time[0] + 0.5,
        "the time comes after the name: {layout}"
    );
    assert!((name[2] - time[2]).abs() < 8.0, "on one line: {layout}");
    chrome.assert_clean_console().await;
    chrome.quit().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tabs_on_two_instances_sharing_postgresql_stay_in_sync_and_chat() {
    let Some(database) =
        crate::common::postgres::TestDatabase::create("tabs_on_two_instances_sharing_postgresql")
            .await
    else {
        return;
    };
    let Some(chrome) = Chrome::start("tabs_on_two_instances_sharing_postgresql").await else {
        return;
    };
    // Two instances as a load balancer would have them; a browser keeps one cookie for both
    // (cookies are per host, not per port), as it would for one public address.
    let shared = [
        "--database-url",
        &database.url,
        "--secret-key",
        crate::common::SECRET_A,
    ];
    let a = TestApp::spawn(&shared).await;
    let b = TestApp::spawn(&shared).await;

    chrome.goto(&a.url("/settings")).await;
    chrome.until("the tab on A is live", CONNECTED).await;
    let on_a = chrome.client.window().await.unwrap();
    let on_b = chrome.client.new_window(true).await.unwrap().handle;
    chrome.client.switch_to_window(on_b.clone()).await.unwrap();
    chrome.goto(&b.url("/settings")).await;
    chrome.until("the tab on B is live", CONNECTED).await;

    chrome.client.switch_to_window(on_a.clone()).await.unwrap();
    chrome.type_into("#username", "Grace").await;
    chrome.until("A saved it", SAVED).await;
    chrome.client.switch_to_window(on_b.clone()).await.unwrap();
    chrome
        .until(
            "the tab on B shows it",
            "return document.getElementById('current-username').textContent === 'Grace'",
        )
        .await;

    // A message sent from a chat page on B appears on the chat page on A.
    chrome.goto(&b.url("/")).await;
    chrome.until("the chat on B is live", CONNECTED).await;
    chrome.client.switch_to_window(on_a).await.unwrap();
    chrome.goto(&a.url("/")).await;
    chrome.until("the chat on A is live", CONNECTED).await;
    chrome.client.switch_to_window(on_b).await.unwrap();
    chrome.type_into("#body", "Hello from B\u{E007}").await;
    until_messages(&chrome, 1).await;
    let windows = chrome.client.windows().await.unwrap();
    for window in windows {
        chrome.client.switch_to_window(window).await.unwrap();
        until_messages(&chrome, 1).await;
        let text = chrome
            .js("return document.querySelector('#messages > li .body').textContent")
            .await;
        assert_eq!(text, "Hello from B");
    }
    chrome.assert_clean_console().await;
    chrome.quit().await;
    a.stop().await;
    b.stop().await;
}

/// axe-core, the accessibility checker (the npm package `axe-core`; `.ci/run` installs it and
/// names its `axe.min.js` in `LIVESESSION_AXE`), run on the chat and settings pages in the light
/// and the dark theme, with a message and a name on the page: no violations.
#[tokio::test]
async fn the_chat_and_settings_pages_pass_axe_in_both_themes() {
    let Some(axe) = std::env::var_os("LIVESESSION_AXE")
        .map(std::path::PathBuf::from)
        .filter(|path| path.exists())
    else {
        let _: Option<()> = crate::common::skip(
            "browser test the_chat_and_settings_pages_pass_axe_in_both_themes",
            "axe-core not found (npm install axe-core, and set LIVESESSION_AXE to its axe.min.js)",
        );
        return;
    };
    let axe = std::fs::read_to_string(axe).unwrap();
    let Some(chrome) = Chrome::start("the_chat_and_settings_pages_pass_axe_in_both_themes").await
    else {
        return;
    };
    let app = TestApp::spawn(&[]).await;
    // The test client acts as the browser's session: its name, its theme, its messages.
    chrome.goto(&app.url("/settings")).await;
    let mut browser = app.browser();
    browser.cookie = Some(chrome.session_cookie().await);
    for theme in ["light", "dark"] {
        browser.save_settings("Ada", theme).await;
        browser
            .post_message(&format!("hello in the {theme} theme"))
            .await;
        for path in ["/", "/settings"] {
            chrome.goto(&app.url(path)).await;
            chrome.until("the socket is live", CONNECTED).await;
            chrome.client.execute(&axe, vec![]).await.unwrap();
            let result = chrome
                .client
                .execute_async(
                    "const done = arguments[arguments.length - 1];
                     axe.run(document, { resultTypes: ['violations'] })
                        .then(r => done(r.violations.map(v =>
                            v.id + ': ' + v.help + ' at ' +
                            v.nodes.map(n => n.target.join(' ')).join(', '))))
                        .catch(e => done(['axe failed: ' + e]));",
                    vec![],
                )
                .await
                .unwrap();
            let violations: Vec<String> = serde_json::from_value(result).unwrap();
            assert!(
                violations.is_empty(),
                "{path} in the {theme} theme: {violations:#?}"
            );
        }
    }
    chrome.quit().await;
    app.stop().await;
}

/// With JavaScript, "Older messages" loads the older page into the list in place: every message
/// in order, once, and the messages that were in view stay where they were.
#[tokio::test]
async fn older_messages_load_in_place_and_keep_the_scroll_position() {
    let Some(chrome) =
        Chrome::start("older_messages_load_in_place_and_keep_the_scroll_position").await
    else {
        return;
    };
    let app = TestApp::spawn(&[
        "--message-burst",
        "1000",
        "--message-burst-per-ip",
        "1000",
        "--room-message-burst",
        "1000",
    ])
    .await;
    let mut writer = app.browser();
    for n in 0..60 {
        writer.post_message(&format!("history {n}")).await;
    }
    chrome.goto(&app.url("/")).await;
    chrome.until("the socket is live", CONNECTED).await;
    let ids = "return Array.from(document.querySelectorAll('#messages > li'))
                   .map(li => Number(li.dataset.id))";
    assert_eq!(chrome.js(ids).await.as_array().unwrap().len(), 50);

    // Scrolled to the top of the list, where the link is; note where the first message is.
    let before = chrome
        .js("const list = document.getElementById('messages');
             list.scrollTop = 0;
             const first = list.firstElementChild;
             return [first.id, first.getBoundingClientRect().top]")
        .await;
    let (first_id, first_top) = (
        before[0].as_str().unwrap().to_owned(),
        before[1].as_f64().unwrap(),
    );
    chrome
        .client
        .find(Locator::Css("#older"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    chrome
        .until(
            "the older messages are in the list",
            "return document.querySelectorAll('#messages > li').length === 60",
        )
        .await;
    let all: Vec<i64> = serde_json::from_value(chrome.js(ids).await).unwrap();
    let mut sorted = all.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(all, sorted, "in order, each once");
    let now_top = chrome
        .js(&format!(
            "return document.getElementById('{first_id}').getBoundingClientRect().top"
        ))
        .await
        .as_f64()
        .unwrap();
    assert!(
        (now_top - first_top).abs() <= 2.0,
        "the message in view moved from {first_top} to {now_top}"
    );
    assert_eq!(
        chrome
            .js("return window.location.pathname + window.location.search")
            .await,
        "/",
        "the page stayed where it was"
    );
    assert_eq!(
        chrome
            .js("return document.querySelector('.older').textContent")
            .await,
        "No older messages"
    );
    chrome.assert_clean_console().await;
    chrome.quit().await;
    app.stop().await;
}

/// Clicks the element matching `css`.
async fn click(chrome: &Chrome, css: &str) {
    chrome
        .client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_phone_linked_by_typing_the_code_stays_in_sync_and_can_sign_the_desktop_out() {
    let Some(desktop) = Chrome::start("link_devices (desktop)").await else {
        return;
    };
    let Some(phone) = Chrome::start("link_devices (phone)").await else {
        return;
    };
    let app = TestApp::spawn(&[]).await;
    desktop.goto(&app.url("/settings")).await;
    desktop.until("the socket is live", CONNECTED).await;
    desktop.type_into("#username", "Ada").await;
    desktop.until("the name is saved", SAVED).await;
    click(&desktop, "form[action='/settings/link'] button").await;
    desktop
        .until(
            "the code is shown",
            "return !!document.getElementById('link-code')",
        )
        .await;
    let code = desktop
        .js("return document.getElementById('link-code').textContent")
        .await;
    let code = code.as_str().unwrap().to_owned();

    // The phone types the code (in lower case, as people do) and confirms.
    phone.goto(&app.url("/link")).await;
    phone
        .type_into("#code", &format!("{}\u{E007}", code.to_lowercase()))
        .await;
    phone
        .until(
            "the confirmation page",
            "return document.body.textContent.includes('Use it on this browser')",
        )
        .await;
    click(&phone, "form[action^='/link/'] button").await;
    phone.until("the settings page", CONNECTED).await;
    assert_eq!(phone.value("#username").await, "Ada");

    // One session: a name typed on the desktop shows on the phone, live.
    desktop.type_into("#username", " Lovelace").await;
    phone
        .until(
            "the phone shows the new name",
            "return document.getElementById('current-username').textContent === 'Ada Lovelace'",
        )
        .await;

    // The phone signs everyone else out: the desktop reloads into a fresh, empty session.
    click(&phone, "form[action='/settings/sign-out-elsewhere'] button").await;
    desktop
        .until(
            "the desktop starts over",
            "return document.getElementById('current-username').textContent === 'anonymous'",
        )
        .await;
    assert_eq!(desktop.value("#username").await, "");
    // The phone, on its new session, keeps the name.
    phone
        .until(
            "the phone is back on its new session",
            "return document.documentElement.classList.contains('live-connected') \
             && document.getElementById('current-username').textContent === 'Ada Lovelace' \
             && !document.querySelector('form[action=\"/settings/sign-out-elsewhere\"] button:disabled')",
        )
        .await;
    assert_eq!(phone.value("#username").await, "Ada Lovelace");
    desktop.assert_clean_console().await;
    phone.assert_clean_console().await;
    desktop.quit().await;
    phone.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn the_desktop_sees_the_phone_join_and_signs_it_out_and_the_phone_starts_over() {
    let Some(desktop) = Chrome::start("devices (desktop)").await else {
        return;
    };
    let Some(phone) = Chrome::start("devices (phone)").await else {
        return;
    };
    let app = TestApp::spawn(&[]).await;
    desktop.goto(&app.url("/settings")).await;
    desktop.until("the socket is live", CONNECTED).await;
    desktop.type_into("#username", "Ada").await;
    desktop.until("the name is saved", SAVED).await;
    click(&desktop, "form[action='/settings/link'] button").await;
    desktop
        .until(
            "the code is shown",
            "return !!document.getElementById('link-code')",
        )
        .await;
    let code = desktop
        .js("return document.getElementById('link-code').textContent")
        .await;
    let code = code.as_str().unwrap().to_owned();
    desktop.until("the socket is live again", CONNECTED).await;

    phone.goto(&app.url("/link")).await;
    phone.type_into("#code", &format!("{code}\u{E007}")).await;
    phone
        .until(
            "the confirmation page",
            "return document.body.textContent.includes('Use it on this browser')",
        )
        .await;
    click(&phone, "form[action^='/link/'] button").await;
    phone.until("the settings page", CONNECTED).await;
    assert_eq!(phone.value("#username").await, "Ada");

    // The desktop's open page says so, without a reload, and lists both devices.
    desktop
        .until(
            "the desktop is told a device joined",
            "return (document.getElementById('new-device') || {textContent: ''}).textContent \
             .includes('A new device joined') \
             && document.querySelectorAll('#devices > li').length === 2",
        )
        .await;
    click(&desktop, "#new-device form.sign-out button").await;

    // The phone reloads into a new, empty session; the desktop keeps its name and one device.
    phone
        .until(
            "the phone starts over",
            "return document.getElementById('current-username').textContent === 'anonymous' \
             && document.documentElement.classList.contains('live-connected')",
        )
        .await;
    assert_eq!(phone.value("#username").await, "");
    desktop
        .until(
            "the desktop keeps its name and lists one device",
            "return document.getElementById('current-username').textContent === 'Ada' \
             && document.querySelectorAll('#devices > li').length === 1 \
             && !!document.querySelector('#devices > li[data-this-device]')",
        )
        .await;
    desktop.assert_clean_console().await;
    phone.assert_clean_console().await;
    desktop.quit().await;
    phone.quit().await;
    app.stop().await;
}
