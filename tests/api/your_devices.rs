//! "Your devices": each browser its own key to the session. A code gives the new browser a device
//! of its own; the settings page lists every device by name, "this device" marked; one device
//! can be renamed or signed out (the others go on); "sign out everywhere else" signs out every
//! other one; a session has at most `--max-devices`; an idle device is pruned; a database of the
//! schema before devices upgrades with one device per session, its cookies still working.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::LOCATION;

use crate::common::live::{self, recv_until};
use crate::common::{Browser, TestApp, attribute_after, username_field};

const FIREFOX_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const CHROME_ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 \
                              (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36";

/// The session and device a browser's cookie names (`<signature><session>.<device>`).
fn who(browser: &Browser) -> (String, String) {
    let cookie = browser.cookie.as_deref().expect("a cookie");
    let value = &cookie["livesession=".len() + 44..];
    let (session, device) = value.split_once('.').expect("a session and a device");
    (session.to_owned(), device.to_owned())
}

/// Makes a code on `maker` and uses it on `joiner`: the status of the confirm.
async fn link(maker: &mut Browser, joiner: &mut Browser) -> (StatusCode, String) {
    let token = maker.csrf_token().await;
    let made = maker
        .post("/settings/link", &[("_csrf", token.as_str())])
        .await;
    assert_eq!(made.status(), StatusCode::SEE_OTHER);
    let location = made.headers()[LOCATION].to_str().unwrap().to_owned();
    let code = location.rsplit('=').next().unwrap().to_owned();
    let token = joiner.csrf_token().await;
    let used = joiner
        .post(&format!("/link/{code}"), &[("_csrf", token.as_str())])
        .await;
    let status = used.status();
    (status, used.text().await.unwrap())
}

/// The `<li>` items of the page's `<ul id="devices">`.
fn device_items(page: &str) -> Vec<String> {
    let start = page.find(r#"<ul id="devices">"#).expect("the devices list");
    let list = &page[start..];
    let list = &list[..list.find("</ul>").unwrap()];
    list.split("<li ")
        .skip(1)
        .map(|item| item.to_owned())
        .collect()
}

/// The public handle of the device named `name` on `page`, as its sign-out form names it.
fn handle_of(page: &str, name: &str) -> String {
    let item = device_items(page)
        .into_iter()
        .find(|item| item.contains(&format!("<strong>{name}</strong>")))
        .unwrap_or_else(|| panic!("no device {name:?} in\n{page}"));
    attribute_after(&item, r#"data-device=""#).to_owned()
}

async fn sign_out(browser: &mut Browser, handle: &str) -> reqwest::Response {
    let token = browser.csrf_token().await;
    browser
        .post(
            "/settings/devices/sign-out",
            &[("_csrf", token.as_str()), ("device", handle)],
        )
        .await
}

#[tokio::test]
async fn a_code_gives_the_new_browser_a_device_of_its_own_and_both_are_listed() {
    let app = TestApp::spawn(&[]).await;
    let mut desktop = Browser::with_user_agent(app.addr, FIREFOX_LINUX);
    desktop.save_settings("Ada", "dark").await;
    let mut phone = Browser::with_user_agent(app.addr, CHROME_ANDROID);
    let (status, _) = link(&mut desktop, &mut phone).await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    let (desktop_session, desktop_device) = who(&desktop);
    let (phone_session, phone_device) = who(&phone);
    assert_eq!(phone_session, desktop_session, "one session");
    assert_ne!(
        phone_device, desktop_device,
        "never a copy of the other cookie"
    );

    let page = desktop.page("/settings").await;
    let items = device_items(&page);
    assert_eq!(items.len(), 2, "{page}");
    let this: Vec<&String> = items
        .iter()
        .filter(|i| i.contains("data-this-device"))
        .collect();
    assert_eq!(this.len(), 1);
    assert!(
        this[0].contains("<strong>Firefox on Linux</strong>"),
        "{}",
        this[0]
    );
    assert!(this[0].contains("the first browser"));
    let other = items
        .iter()
        .find(|i| !i.contains("data-this-device"))
        .unwrap();
    assert!(
        other.contains("<strong>Chrome on Android</strong>"),
        "{other}"
    );
    assert!(other.contains("linked by code"));
    assert!(other.contains(r#"action="/settings/devices/sign-out""#));
    // The button names the device by a public handle, never by an id of a cookie.
    let handle = handle_of(&page, "Chrome on Android");
    assert_eq!(handle.len(), 16);
    assert!(!page.contains(&phone_device) && !page.contains(&desktop_device));
    assert!(
        !this[0].contains("/settings/devices/sign-out"),
        "no sign out of itself"
    );
    // The desktop is told a device joined; the phone's own list marks it as this device.
    assert!(page.contains("A new device joined: <bdi><strong>Chrome on Android</strong></bdi>"));
    let phone_page = phone.page("/settings").await;
    let phone_this = device_items(&phone_page)
        .into_iter()
        .find(|i| i.contains("data-this-device"))
        .unwrap();
    assert!(phone_this.contains("Chrome on Android"));
    assert!(
        !phone_page.contains("A new device joined"),
        "not about itself"
    );

    // Both are in the export, by name, without ids.
    let export = desktop.get("/settings/export").await.text().await.unwrap();
    let json: serde_json::Value = serde_json::from_str(&export).unwrap();
    assert_eq!(json["version"], 2);
    let names: Vec<&str> = json["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Firefox on Linux", "Chrome on Android"]);
    assert!(!export.contains(&phone_device) && !export.contains(&desktop_session));
    app.stop().await;
}

#[tokio::test]
async fn a_device_signed_out_from_another_is_refused_and_its_pages_reload_while_the_other_goes_on()
{
    let app = TestApp::spawn(&[]).await;
    let mut desktop = Browser::with_user_agent(app.addr, FIREFOX_LINUX);
    desktop.save_settings("Ada", "dark").await;
    let mut phone = Browser::with_user_agent(app.addr, CHROME_ANDROID);
    link(&mut desktop, &mut phone).await;
    let phone_cookie = phone.cookie.clone();
    let mut phone_tab = live::join_settings(&mut phone, "phone").await;
    let mut desktop_tab = live::join_settings(&mut desktop, "desktop").await;

    let page = desktop.page("/settings").await;
    let handle = handle_of(&page, "Chrome on Android");
    let response = sign_out(&mut desktop, &handle).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);

    // The phone's open page reloads; the desktop's list loses the phone, live.
    recv_until(&mut phone_tab, |m| m["t"] == "reload").await;
    recv_until(&mut desktop_tab, |m| {
        m["t"] == "render"
            && !m["html"]
                .as_str()
                .unwrap_or("")
                .contains("Chrome on Android")
    })
    .await;
    // Its cookie is refused from now on: an empty, new session.
    let mut old_phone = Browser::with_user_agent(app.addr, CHROME_ANDROID);
    old_phone.cookie = phone_cookie.clone();
    let after = old_phone.page("/settings").await;
    assert_eq!(username_field(&after), "");
    assert_ne!(
        old_phone.cookie, phone_cookie,
        "a new cookie, never the old one again"
    );
    // A post with the old cookie changes nothing of the session.
    let mut replay = Browser::with_user_agent(app.addr, CHROME_ANDROID);
    replay.cookie = phone_cookie;
    let token = desktop.csrf_token().await;
    let refused = replay
        .post(
            "/settings",
            &[
                ("_csrf", token.as_str()),
                ("username", "Mallory"),
                ("theme", "light"),
            ],
        )
        .await;
    assert_ne!(refused.status(), StatusCode::SEE_OTHER);
    // The desktop keeps its name and its one device.
    let page = desktop.page("/settings").await;
    assert_eq!(username_field(&page), "Ada");
    assert_eq!(device_items(&page).len(), 1);

    // Its own device, or one that is not the session's, is refused with a sentence.
    let own = handle_of(&page, "Firefox on Linux");
    let response = sign_out(&mut desktop, &own).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response.text().await.unwrap().contains("Forget me"));
    let response = sign_out(&mut desktop, "0123456789abcdef").await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let response = sign_out(&mut desktop, "not a handle").await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

#[tokio::test]
async fn a_device_can_be_renamed_and_every_settings_page_of_the_session_shows_it_live() {
    let app = TestApp::spawn(&[]).await;
    let mut desktop = Browser::with_user_agent(app.addr, FIREFOX_LINUX);
    desktop.save_settings("Ada", "dark").await;
    let mut phone = Browser::with_user_agent(app.addr, CHROME_ANDROID);
    let mut desktop_tab = live::join_settings(&mut desktop, "desktop").await;
    link(&mut desktop, &mut phone).await;
    // The desktop's open page shows the new device and the notice, without a reload.
    recv_until(&mut desktop_tab, |m| {
        let html = m["html"].as_str().unwrap_or("");
        m["t"] == "render"
            && html.contains("Chrome on Android")
            && html.contains("A new device joined")
    })
    .await;

    let page = phone.page("/settings").await;
    let handle = handle_of(&page, "Chrome on Android");
    let token = phone.csrf_token().await;
    let renamed = phone
        .post(
            "/settings/devices/rename",
            &[
                ("_csrf", token.as_str()),
                ("device", &handle),
                ("name", "  Ada's phone "),
            ],
        )
        .await;
    assert_eq!(renamed.status(), StatusCode::SEE_OTHER);
    recv_until(&mut desktop_tab, |m| {
        m["t"] == "render" && m["html"].as_str().unwrap_or("").contains("Ada's phone")
    })
    .await;
    // A name that is empty or too long is refused, saying why.
    for bad in ["   ", &"x".repeat(41)] {
        let refused = phone
            .post(
                "/settings/devices/rename",
                &[
                    ("_csrf", token.as_str()),
                    ("device", &handle),
                    ("name", bad),
                ],
            )
            .await;
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let text = refused.text().await.unwrap();
        assert!(
            text.contains("device") && text.contains("role=\"alert\""),
            "{text}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn signing_out_everywhere_else_cuts_off_every_other_device_and_keeps_the_data() {
    let app = TestApp::spawn(&[]).await;
    let mut desktop = Browser::with_user_agent(app.addr, FIREFOX_LINUX);
    desktop.save_settings("Ada", "dark").await;
    let (session, device) = who(&desktop);
    // A copy of the desktop's cookie (as the link of older versions made), and a linked phone.
    let mut copy = desktop.clone();
    let mut phone = Browser::with_user_agent(app.addr, CHROME_ANDROID);
    link(&mut desktop, &mut phone).await;
    let mut phone_tab = live::join_settings(&mut phone, "phone").await;

    let token = desktop.csrf_token().await;
    let response = desktop
        .post("/settings/sign-out-elsewhere", &[("_csrf", token.as_str())])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    recv_until(&mut phone_tab, |m| m["t"] == "reload").await;
    // The same session, this browser under a new device id; the others start over.
    let (still, new_device) = who(&desktop);
    assert_eq!(still, session);
    assert_ne!(new_device, device);
    assert_eq!(username_field(&desktop.page("/settings").await), "Ada");
    assert_eq!(device_items(&desktop.page("/settings").await).len(), 1);
    assert_eq!(username_field(&phone.page("/settings").await), "");
    assert_eq!(
        username_field(&copy.page("/settings").await),
        "",
        "the copy too"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_session_has_at_most_max_devices_and_one_more_link_is_refused_saying_so() {
    let app = TestApp::spawn(&["--max-devices", "2"]).await;
    let mut desktop = Browser::with_user_agent(app.addr, FIREFOX_LINUX);
    desktop.save_settings("Ada", "dark").await;
    let mut phone = Browser::with_user_agent(app.addr, CHROME_ANDROID);
    assert_eq!(
        link(&mut desktop, &mut phone).await.0,
        StatusCode::SEE_OTHER
    );
    let mut tablet = Browser::with_user_agent(app.addr, CHROME_ANDROID);
    tablet.save_settings("Tab", "light").await;
    let (status, page) = link(&mut desktop, &mut tablet).await;
    assert_ne!(status, StatusCode::SEE_OTHER);
    assert!(page.contains("as many devices as it may have"), "{page}");
    // Refused before the code was spent, and the tablet keeps its own session.
    assert_eq!(username_field(&tablet.page("/settings").await), "Tab");
    assert_eq!(device_items(&desktop.page("/settings").await).len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_device_not_seen_for_stale_after_is_pruned_while_its_session_goes_on() {
    let app = TestApp::spawn(&["--stale-after", "2s", "--prune-every", "100ms"]).await;
    let mut desktop = Browser::with_user_agent(app.addr, FIREFOX_LINUX);
    desktop.save_settings("Ada", "dark").await;
    let mut phone = Browser::with_user_agent(app.addr, CHROME_ANDROID);
    link(&mut desktop, &mut phone).await;
    assert_eq!(device_items(&desktop.page("/settings").await).len(), 2);
    // The desktop keeps using the session; the phone does not.
    let mut pruned = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let page = desktop.page("/settings").await;
        if device_items(&page).len() == 1 {
            pruned = true;
            break;
        }
    }
    assert!(pruned, "the idle phone was not pruned");
    assert_eq!(username_field(&desktop.page("/settings").await), "Ada");
    assert_eq!(
        username_field(&phone.page("/settings").await),
        "",
        "its cookie is refused"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_database_from_before_devices_gives_each_session_its_first_device_and_keeps_its_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let db = rusqlite::Connection::open(dir.path().join("livesession.db")).unwrap();
    db.execute_batch(include_str!("../fixtures/schema-v4.sql"))
        .unwrap();
    let (id, other, gone) = (
        livesession::session::SessionId::generate(),
        livesession::session::SessionId::generate(),
        livesession::session::SessionId::generate(),
    );
    let now = livesession::clock::now_millis();
    db.execute_batch(&format!(
        "INSERT INTO settings (session_id, username, theme, version, inserted_at, updated_at, read_at)
             VALUES ('{id}', 'from v4', 'dark', 2, {now}, {now}, {now}),
                    ('{other}', 'other', 'light', 1, {now}, {now}, {now});
         INSERT INTO messages (author_session, author_name, body, nonce, created_at)
             VALUES ('{id}', 'from v4', 'kept', 'n1', {now});
         INSERT INTO forgotten (session_id, forgotten_at) VALUES ('{gone}', {now});
         INSERT INTO page_acks (session_id, page, form, seq, acked_at)
             VALUES ('{id}', 'p', 'settings', 4, {now});
         INSERT INTO link_codes (code_hash, session_id, created_at, expires_at)
             VALUES ('h', '{id}', {now}, {now} + 60000);
         INSERT INTO health (id, checked_at) VALUES (1, {now});"
    ))
    .unwrap();
    let tables = [
        "settings",
        "messages",
        "forgotten",
        "page_acks",
        "link_codes",
        "health",
    ];
    let counts = |db: &rusqlite::Connection| -> Vec<i64> {
        tables
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
    assert_eq!(counts(&db), before, "every row kept");
    let devices: i64 = db
        .query_row("SELECT count(*) FROM devices", [], |r| r.get(0))
        .unwrap();
    assert_eq!(devices, 2, "one device per session");
    // A cookie of the older form (the session only) is that session's first device.
    let mut browser = Browser::with_user_agent(app.addr, FIREFOX_LINUX);
    browser.cookie = Some(old_cookie(id));
    let page = browser.page("/settings").await;
    assert_eq!(username_field(&page), "from v4");
    let items = device_items(&page);
    assert_eq!(items.len(), 1);
    assert!(items[0].contains("data-this-device"));
    assert!(
        items[0].contains("<strong>Firefox on Linux</strong>"),
        "named when first seen: {}",
        items[0]
    );
    app.stop().await;
}

/// The cookie a build before devices issued for `id`: the signed session id alone.
fn old_cookie(id: livesession::session::SessionId) -> String {
    // The cookie crate's signed jar is what signs ours: the old value is `<signature><id>`.
    let key = cookie::Key::derive_from(crate::common::SECRET_A.as_bytes());
    let mut jar = cookie::CookieJar::new();
    jar.signed_mut(&key).add(("livesession", id.to_key()));
    let value = jar.get("livesession").unwrap().value().to_owned();
    format!("livesession={value}")
}

#[tokio::test]
async fn sign_out_elsewhere_has_its_own_allowance_and_works_on_a_session_with_nothing_saved() {
    let app = TestApp::spawn(&[]).await;
    // A neighbour on the same address spends the address's "forget me" allowance.
    let mut refused = 0;
    for _ in 0..12 {
        let mut neighbour = app.browser();
        let token = neighbour.csrf_token().await;
        let status = neighbour
            .post("/settings/forget", &[("_csrf", token.as_str())])
            .await
            .status();
        refused += usize::from(status == StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(refused, 2, "the address's forget allowance is spent");

    // A browser that saved nothing, and a copy of its cookie elsewhere: signing out everywhere
    // else still works, and cuts the copy off.
    let mut mine = app.browser();
    mine.page("/settings").await;
    let mut copy = app.browser();
    copy.cookie = mine.cookie.clone();
    let old = who(&mine);
    let token = mine.csrf_token().await;
    let signed_out = mine
        .post("/settings/sign-out-elsewhere", &[("_csrf", token.as_str())])
        .await;
    assert_eq!(signed_out.status(), StatusCode::SEE_OTHER);
    assert_ne!(who(&mine).1, old.1, "this browser's device has a new id");
    copy.page("/settings").await;
    assert_ne!(who(&copy), old, "the copy of the old cookie was refused");

    // Its own allowance is per browser: ten, then a sentence that names this browser.
    for _ in 1..10 {
        let token = mine.csrf_token().await;
        let status = mine
            .post("/settings/sign-out-elsewhere", &[("_csrf", token.as_str())])
            .await
            .status();
        assert_eq!(status, StatusCode::SEE_OTHER);
    }
    let token = mine.csrf_token().await;
    let over = mine
        .post("/settings/sign-out-elsewhere", &[("_csrf", token.as_str())])
        .await;
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        over.text()
            .await
            .unwrap()
            .contains("came from this browser")
    );
    app.stop().await;
}
