//! The session cookie: how it is issued, what it survives, and what a bad one gets.

use crate::common::{Browser, SECRET_A, SECRET_B, TestApp, username_field};
use reqwest::StatusCode;
use reqwest::header::SET_COOKIE;

fn set_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(SET_COOKIE)
        .expect("a Set-Cookie header")
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_first_visit_gets_a_long_lived_http_only_lax_cookie() {
    let app = TestApp::spawn(&[]).await;
    let response = app.browser().get("/settings").await;
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = set_cookie(&response);
    let attributes: Vec<&str> = cookie.split("; ").collect();
    assert!(attributes[0].starts_with("livesession="), "{cookie}");
    for expected in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=34560000"] {
        assert!(
            attributes.contains(&expected),
            "{expected} missing from {cookie}"
        );
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    // The signed value carries the session's UUID v4, this browser's device (another UUID v4)
    // and the day it was signed on, after the 44-character signature: `<session>.<device>.<day>`.
    let value = attributes[0].trim_start_matches("livesession=");
    let (id, device, day) = signed_parts(value);
    assert_eq!((id.len(), device.len()), (36, 36), "{value}");
    let today = livesession::session::day_of(livesession::clock::now_millis());
    assert!(
        day.abs_diff(today) <= 1,
        "signed on day {day}, today is {today}"
    );
    assert_eq!(&id[14..15], "4", "not a version 4 UUID: {id}");
    assert_eq!(&device[14..15], "4", "not a version 4 UUID: {device}");
    assert_ne!(id, device, "a new browser's device has an id of its own");
    app.stop().await;
}

#[tokio::test]
async fn secure_cookies_are_marked_secure() {
    let app = TestApp::spawn(&["--secure-cookies"]).await;
    let cookie = set_cookie(&app.browser().get("/settings").await);
    assert!(cookie.split("; ").any(|a| a == "Secure"), "{cookie}");
    app.stop().await;
}

/// Served over HTTPS the cookie is `__Host-livesession`: a sibling or parent domain cannot set
/// one, and a cookie of the plain name (as such a domain could set) never wins over it, in
/// whatever order the browser sends them.
#[tokio::test]
async fn a_secure_cookie_has_the_host_prefix_and_a_tossed_plain_cookie_never_wins() {
    let app = TestApp::spawn(&["--secure-cookies"]).await;
    let mut victim = app.browser();
    victim.save_settings("Victim", "dark").await;
    let mut attacker = app.browser();
    attacker.save_settings("Attacker", "light").await;
    for browser in [&victim, &attacker] {
        let cookie = browser.cookie.as_deref().unwrap();
        assert!(cookie.starts_with("__Host-livesession="), "{cookie}");
    }
    let issued = set_cookie(&app.browser().get("/settings").await);
    assert!(issued.starts_with("__Host-livesession="), "{issued}");
    for attribute in ["Secure", "Path=/"] {
        assert!(issued.split("; ").any(|a| a == attribute), "{issued}");
    }
    assert!(!issued.contains("Domain"), "{issued}");

    // The attacker's valid cookie, under the plain name, tossed in front of the victim's.
    let tossed =
        attacker
            .cookie
            .as_deref()
            .unwrap()
            .replacen("__Host-livesession=", "livesession=", 1);
    let mut tossed_at = app.browser();
    tossed_at.cookie = Some(format!("{tossed}; {}", victim.cookie.as_deref().unwrap()));
    let page = tossed_at.page("/settings").await;
    assert_eq!(crate::common::username_field(&page), "Victim");
    app.stop().await;
}

/// A browser that got its cookie before the site was served over HTTPS keeps its session: the
/// cookie moves to the `__Host-` name, and the old one is expired.
#[tokio::test]
async fn a_cookie_of_the_plain_name_moves_to_the_host_name_keeping_its_session() {
    let app = TestApp::spawn(&["--secure-cookies"]).await;
    let mut browser = app.browser();
    browser.save_settings("Ada", "dark").await;
    let value = browser
        .cookie
        .as_deref()
        .unwrap()
        .trim_start_matches("__Host-livesession=")
        .to_owned();
    let mut before_https = app.browser();
    before_https.cookie = Some(format!("livesession={value}"));
    let response = before_https.get("/settings").await;
    let set: Vec<&str> = response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        set.iter()
            .any(|c| c.starts_with(&format!("__Host-livesession={value};"))),
        "{set:?}"
    );
    assert!(
        set.iter()
            .any(|c| c.starts_with("livesession=;") && c.contains("Max-Age=0")),
        "{set:?}"
    );
    let page = response.text().await.unwrap();
    assert_eq!(crate::common::username_field(&page), "Ada");
    app.stop().await;
}

/// The session, the device and the day of a signed cookie value (after its signature).
fn signed_parts(value: &str) -> (&str, &str, u32) {
    let mut parts = value[44..].split('.');
    let (Some(id), Some(device), Some(day), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("not <session>.<device>.<day>: {value}");
    };
    (id, device, day.parse().expect("a day"))
}

/// `name=value` of a `Set-Cookie` header.
fn pair(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap()
}

/// The cookie's 400 days slide without a signature on every page: a page on the day the cookie
/// was signed sends no cookie at all; the first page of a later day gets the same session and
/// device signed anew, with that day and the full lifetime. A cookie of the older forms, which
/// say no day, is signed anew on its first page, and keeps its session.
#[tokio::test]
async fn a_cookie_is_signed_anew_on_the_first_page_of_a_later_day_and_left_alone_the_same_day() {
    use livesession::session::{DeviceId, Keys, SessionId, Who};
    let app = TestApp::spawn(&["--secret-key", SECRET_A]).await;
    let mut browser = app.browser();
    let saved = browser.save_settings("Ada", "dark").await;
    assert!(saved.status().is_redirection(), "{}", saved.status());
    let first = browser.cookie.clone().unwrap();
    let (id, device, day) = signed_parts(first.trim_start_matches("livesession="));
    let who = Who {
        session: id.parse::<SessionId>().unwrap(),
        device: device.parse::<DeviceId>().unwrap(),
    };

    for path in ["/settings", "/", "/settings"] {
        let again = browser.get(path).await;
        assert_eq!(again.status(), StatusCode::OK);
        assert!(
            again.headers().get(SET_COOKIE).is_none(),
            "a page the same day re-sent the cookie: {:?}",
            again.headers().get(SET_COOKIE)
        );
    }

    let keys = Keys::new(SECRET_A.as_bytes(), &[], false).unwrap();
    let yesterday = keys.issue_on(who, day - 1);
    let a_year_ago = keys.issue_on(who, day - 365);
    let older_form = {
        let key = cookie::Key::derive_from(SECRET_A.as_bytes());
        let mut jar = cookie::CookieJar::new();
        jar.signed_mut(&key)
            .add(("livesession", format!("{id}.{device}")));
        format!("livesession={}", jar.get("livesession").unwrap().value())
    };
    for old in [
        pair(yesterday.to_str().unwrap()).to_owned(),
        pair(a_year_ago.to_str().unwrap()).to_owned(),
        older_form,
    ] {
        let mut returning = app.browser();
        returning.cookie = Some(old.clone());
        let page = returning.get("/settings").await;
        let renewed = set_cookie(&page);
        assert_eq!(username_field(&page.text().await.unwrap()), "Ada", "{old}");
        assert!(renewed.contains("Max-Age=34560000"), "{renewed}");
        let (renewed_id, renewed_device, renewed_day) =
            signed_parts(pair(&renewed).trim_start_matches("livesession="));
        assert_eq!((renewed_id, renewed_device), (id, device), "{renewed}");
        assert!(renewed_day >= day, "{renewed} is not signed today");
        // Signed anew once: the next page that day leaves it alone.
        let next = returning.get("/settings").await;
        assert!(next.headers().get(SET_COOKIE).is_none(), "{old}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_tampered_cookie_gets_a_fresh_session_and_not_the_original_data() {
    let app = TestApp::spawn(&[]).await;
    let mut owner = app.browser();
    assert_eq!(
        owner.save_settings("ada", "dark").await.status(),
        StatusCode::SEE_OTHER
    );
    let cookie = owner.cookie.clone().unwrap();

    // Flip one character of the id part (after the signature).
    let mut tampered = cookie.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
    let mut attacker = Browser::new(app.addr);
    attacker.cookie = Some(String::from_utf8(tampered).unwrap());
    let response = attacker.get("/settings").await;
    assert_eq!(response.status(), StatusCode::OK);
    let fresh = set_cookie(&response);
    assert!(!fresh.starts_with(&cookie));
    let page = response.text().await.unwrap();
    assert_eq!(username_field(&page), "");
    assert!(!page.contains("ada"));

    // The owner is unaffected.
    assert_eq!(username_field(&owner.page("/settings").await), "ada");
    app.stop().await;
}

#[tokio::test]
async fn malformed_and_unknown_cookies_get_fresh_sessions_never_errors() {
    let app = TestApp::spawn(&[]).await;
    let other_server = TestApp::spawn(&[]).await;
    let mut stranger = other_server.browser();
    stranger.get("/settings").await;
    let foreign = stranger.cookie.clone().unwrap();

    for value in [
        "livesession=".to_owned(),
        "livesession=garbage".to_owned(),
        format!("livesession={}", "A".repeat(4000)),
        "livesession=\"quoted value\"".to_owned(),
        "livesession=%00%ff".to_owned(),
        "livesession=a=b=c; livesession=again".to_owned(),
        foreign,
    ] {
        let mut browser = Browser::new(app.addr);
        browser.cookie = Some(value.clone());
        let response = browser.get("/settings").await;
        assert_eq!(response.status(), StatusCode::OK, "{value:?}");
        assert!(set_cookie(&response).starts_with("livesession="));
    }
    other_server.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_cookie_signed_with_a_previous_key_still_works_and_is_re_signed() {
    let dir = tempfile::tempdir().unwrap();
    let old = TestApp::spawn_in(dir.path(), &["--secret-key", SECRET_A]).await;
    let mut browser = old.browser();
    browser.save_settings("grace", "light").await;
    let old_cookie = browser.cookie.clone().unwrap();
    old.stop().await;

    let previous = dir.path().join("previous.keys");
    std::fs::write(&previous, format!("# rotated out\n{SECRET_A}\n")).unwrap();
    let rotated = TestApp::spawn_in(
        dir.path(),
        &[
            "--secret-key",
            SECRET_B,
            "--previous-keys",
            previous.to_str().unwrap(),
        ],
    )
    .await;
    browser.addr = rotated.addr;
    let response = browser.get("/settings").await;
    let new_cookie = set_cookie(&response);
    assert!(!new_cookie.starts_with(&old_cookie), "not re-signed");
    assert_eq!(username_field(&response.text().await.unwrap()), "grace");
    rotated.stop().await;

    // Once the old key is retired, the re-signed cookie still works on its own.
    let retired = TestApp::spawn_in(dir.path(), &["--secret-key", SECRET_B]).await;
    browser.addr = retired.addr;
    assert_eq!(username_field(&browser.page("/settings").await), "grace");
    let mut stale = Browser::new(retired.addr);
    stale.cookie = Some(old_cookie);
    assert_eq!(username_field(&stale.page("/settings").await), "");
    retired.stop().await;
}

#[tokio::test]
async fn forget_me_deletes_the_data_and_makes_the_old_cookie_worthless() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser.save_settings("linus", "dark").await;
    let old_cookie = browser.cookie.clone().unwrap();
    assert_eq!(app.settings_rows(), 1);

    let token = browser.csrf_token().await;
    let response = browser.post("/settings/forget", &[("_csrf", &token)]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_ne!(browser.cookie.as_ref(), Some(&old_cookie), "no new session");
    assert_eq!(app.settings_rows(), 0);
    assert_eq!(username_field(&browser.page("/settings").await), "");

    let mut replay = Browser::new(app.addr);
    replay.cookie = Some(old_cookie);
    assert_eq!(username_field(&replay.page("/settings").await), "");
    app.stop().await;
}

#[tokio::test]
async fn forget_me_needs_the_csrf_token() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser.save_settings("linus", "dark").await;
    let response = browser.post("/settings/forget", &[("_csrf", "nope")]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.settings_rows(), 1);
    app.stop().await;
}

#[tokio::test]
async fn health_and_assets_set_no_cookie() {
    let app = TestApp::spawn(&[]).await;
    let response = app.browser().get("/healthz").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get(SET_COOKIE).is_none());
    app.stop().await;
}

#[tokio::test]
async fn a_forgotten_cookie_can_never_write_again_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_in(dir.path(), &[]).await;
    let mut browser = app.browser();
    browser.save_settings("linus", "dark").await;
    let old_cookie = browser.cookie.clone().unwrap();
    let old_token = browser.csrf_token().await;
    let response = browser
        .post("/settings/forget", &[("_csrf", &old_token)])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    app.stop().await;

    let app = TestApp::spawn_in(dir.path(), &[]).await;
    let mut replay = Browser::new(app.addr);
    replay.cookie = Some(old_cookie.clone());
    let response = replay
        .post(
            "/settings",
            &[
                ("_csrf", &old_token),
                ("username", "back"),
                ("theme", "light"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        !set_cookie(&response).starts_with(&old_cookie),
        "the old id was re-issued"
    );
    assert_eq!(app.settings_rows(), 0);
    app.stop().await;
}

/// The settings page with exactly `cookie_header` as the `Cookie` header's bytes.
async fn settings_with_cookie_bytes(app: &TestApp, cookie_header: &[u8]) -> reqwest::Response {
    reqwest::Client::new()
        .get(app.url("/settings"))
        .header(
            reqwest::header::COOKIE,
            reqwest::header::HeaderValue::from_bytes(cookie_header).unwrap(),
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn another_apps_cookie_with_bytes_that_are_not_ascii_does_not_hide_the_session() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser.save_settings("ada", "dark").await;
    let ours = browser.cookie.clone().unwrap();
    for header in [
        format!("z=café; {ours}"),
        format!("{ours}; z=café"),
        format!("broken\u{ff}pair; {ours}; other=\u{e9}t\u{e9}"),
    ] {
        let response = settings_with_cookie_bytes(&app, header.as_bytes()).await;
        assert_eq!(response.status(), StatusCode::OK);
        // A replaced session would come with a cookie of its own; ours, signed today, is left.
        assert!(
            response.headers().get(SET_COOKIE).is_none(),
            "{header:?}: the session was replaced by {:?}",
            response.headers().get(SET_COOKIE)
        );
        let page = response.text().await.unwrap();
        assert_eq!(username_field(&page), "ada", "{header:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn of_two_session_cookies_the_one_whose_session_saved_something_wins() {
    let app = TestApp::spawn(&[]).await;
    let mut saved = app.browser();
    saved.save_settings("ada", "dark").await;
    let with_data = saved.cookie.clone().unwrap();
    let mut stray = app.browser();
    stray.get("/settings").await;
    let empty = stray.cookie.clone().unwrap();
    for header in [
        format!("{empty}; {with_data}"),
        format!("{with_data}; {empty}"),
    ] {
        let response = settings_with_cookie_bytes(&app, header.as_bytes()).await;
        assert!(response.headers().get(SET_COOKIE).is_none(), "{header}");
        let page = response.text().await.unwrap();
        assert_eq!(username_field(&page), "ada", "{header}");
    }
    app.stop().await;
}

/// How many ids the database remembers as forgotten.
fn forgotten_rows(app: &TestApp) -> i64 {
    app.db()
        .query_row("SELECT count(*) FROM forgotten", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn forget_me_of_browsers_that_saved_nothing_remembers_nothing_and_is_limited_per_address() {
    let app = TestApp::spawn(&[]).await;
    let mut keeper = app.browser();
    keeper.save_settings("ada", "dark").await;
    for n in 0..10 {
        let mut fresh = app.browser();
        let token = fresh.csrf_token().await;
        let response = fresh.post("/settings/forget", &[("_csrf", &token)]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "forget {n}");
    }
    assert_eq!(
        forgotten_rows(&app),
        0,
        "nothing to forget, nothing remembered"
    );

    // The eleventh from this address within ten minutes is refused, and changes nothing.
    let token = keeper.csrf_token().await;
    let response = keeper.post("/settings/forget", &[("_csrf", &token)]).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("retry-after").is_some());
    let text = response.text().await.unwrap();
    assert!(text.contains("try again in"), "{text}");
    assert_eq!(username_field(&keeper.page("/settings").await), "ada");
    assert_eq!(forgotten_rows(&app), 0);
    app.stop().await;
}

/// Posts "Sign out everywhere else" from `browser`; returns the answer's status.
async fn sign_out_elsewhere(browser: &mut Browser) -> StatusCode {
    let token = browser.csrf_token().await;
    browser
        .post("/settings/sign-out-elsewhere", &[("_csrf", token.as_str())])
        .await
        .status()
}

#[tokio::test]
async fn signing_out_everywhere_else_moves_the_data_and_every_other_device_starts_over() {
    let app = TestApp::spawn(&[]).await;
    let mut desktop = app.browser();
    desktop.save_settings("Ada", "dark").await;
    desktop.post_message("mine").await;
    // A second device on the same session, with a live page open.
    let mut phone = app.browser();
    phone.cookie = desktop.cookie.clone();
    let mut phone_tab = crate::common::live::join_settings(&mut phone, "phone").await;
    let old_cookie = desktop.cookie.clone();

    assert_eq!(
        sign_out_elsewhere(&mut desktop).await,
        StatusCode::SEE_OTHER
    );
    assert_ne!(desktop.cookie, old_cookie, "this browser got a new session");
    let reload = crate::common::live::recv_until(&mut phone_tab, |m| m["t"] == "reload").await;
    assert_eq!(reload["t"], "reload");

    // This browser keeps everything, under the new id: its settings and its messages.
    let page = desktop.page("/settings").await;
    assert_eq!(username_field(&page), "Ada");
    assert!(
        desktop.page("/").await.contains("(you)"),
        "its message is still its own"
    );
    // The other device's cookie is refused: a fresh, empty session.
    let page = phone.page("/settings").await;
    assert_eq!(username_field(&page), "");
    assert_ne!(phone.cookie, old_cookie);
    assert_ne!(phone.cookie, desktop.cookie);
    // And the old cookie cannot sign anyone out again, nor without its token.
    let mut stale = app.browser();
    stale.cookie = old_cookie;
    assert_eq!(
        stale
            .post("/settings/sign-out-elsewhere", &[("_csrf", "x")])
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(username_field(&desktop.page("/settings").await), "Ada");
    app.stop().await;
}

#[tokio::test]
async fn first_saves_from_one_address_are_limited_and_the_refused_form_is_kept() {
    let app = TestApp::spawn(&["--new-sessions-per-ip", "5"]).await;
    let mut keeper = app.browser();
    assert_eq!(
        keeper.save_settings("ada", "dark").await.status(),
        StatusCode::SEE_OTHER
    );
    let mut saved = 1;
    for n in 0..10 {
        let mut fresh = app.browser();
        let typed = format!("fresh {n}");
        let response = fresh.save_settings(&typed, "light").await;
        match response.status() {
            StatusCode::SEE_OTHER => saved += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                let page = response.text().await.unwrap();
                assert!(
                    page.contains("too many new browsers from your network saved settings"),
                    "no sentence for save {n}"
                );
                assert!(
                    page.contains("Please try again in 12 min"),
                    "no wait for save {n}"
                );
                assert_eq!(
                    username_field(&page),
                    typed,
                    "the form keeps what was typed"
                );
                assert_eq!(username_field(&fresh.page("/settings").await), "");
            }
            other => panic!("save {n}: {other}"),
        }
    }
    assert_eq!(saved, 5, "five first saves from one address");
    assert_eq!(app.settings_rows(), 5);
    // A session that has saved before is not a new one: it saves as always.
    assert_eq!(
        keeper.save_settings("ada again", "dark").await.status(),
        StatusCode::SEE_OTHER
    );
    // Another address has an allowance of its own.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let mut other = Browser {
        addr: app.addr,
        client,
        cookie: None,
    };
    assert_eq!(
        other.save_settings("neighbour", "dark").await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(app.settings_rows(), 6);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn under_min_free_disk_new_sessions_are_not_saved_and_old_ones_are() {
    use crate::common::binary::{Server, command, same_browser_on};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut keeper = Browser::new(server.addr);
    assert_eq!(
        keeper.save_settings("ada", "dark").await.status(),
        StatusCode::SEE_OTHER
    );
    server.stop();

    // More free space asked for than any disk has: the guard holds.
    let (server, log) =
        Server::start_logged(command(dir.path(), &["--min-free-disk", "1000000TiB"]));
    let mut keeper = same_browser_on(&keeper, &server);
    assert_eq!(
        keeper.save_settings("ada again", "light").await.status(),
        StatusCode::SEE_OTHER,
        "a browser that saved before still saves"
    );
    assert_eq!(username_field(&keeper.page("/settings").await), "ada again");
    for n in 0..5 {
        let mut fresh = Browser::new(server.addr);
        let typed = format!("fresh {n}");
        let response = fresh.save_settings(&typed, "dark").await;
        assert_eq!(response.status(), StatusCode::INSUFFICIENT_STORAGE);
        let page = response.text().await.unwrap();
        assert!(page.contains("short of disk space"), "no sentence");
        assert_eq!(
            username_field(&page),
            typed,
            "the form keeps what was typed"
        );
    }
    let health = reqwest::get(format!("http://{}/healthz", server.addr))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let health = health.text().await.unwrap();
    assert!(health.contains(r#""disk":"low""#), "{health}");
    server.stop();
    let text = log.finished();
    let lines = text
        .lines()
        .filter(|line| line.contains("under --min-free-disk"))
        .count();
    assert_eq!(lines, 1, "one line a minute:\n{text}");
    let rows: i64 = rusqlite::Connection::open(dir.path().join("livesession.db"))
        .unwrap()
        .query_row("select count(*) from settings", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rows, 1);
}
