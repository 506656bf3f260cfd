//! Settings: saved by a plain form post, shown on the very first render, kept across restarts.

use crate::common::{TestApp, html_theme, selected_theme, username_field};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION};

#[tokio::test]
async fn a_saved_username_and_theme_are_in_the_first_static_render() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let response = browser.save_settings("Ada Lovelace", "dark").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/settings");

    let page = browser.page("/settings").await;
    assert_eq!(username_field(&page), "Ada Lovelace");
    assert_eq!(selected_theme(&page), "dark");
    assert_eq!(html_theme(&page), "dark");
    assert!(page.contains(r#"<strong id="current-username">Ada Lovelace</strong>"#));
    // Other pages carry the theme too.
    assert_eq!(html_theme(&browser.page("/").await), "dark");
    app.stop().await;
}

#[tokio::test]
async fn a_new_browser_sees_the_defaults() {
    let app = TestApp::spawn(&[]).await;
    let page = app.browser().page("/settings").await;
    assert_eq!(username_field(&page), "");
    assert_eq!(selected_theme(&page), "system");
    assert_eq!(html_theme(&page), "system");
    assert!(page.contains("anonymous"));
    app.stop().await;
}

#[tokio::test]
async fn settings_survive_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestApp::spawn_in(dir.path(), &[]).await;
    let mut browser = first.browser();
    browser.save_settings("grace", "light").await;
    first.stop().await;

    let second = TestApp::spawn_in(dir.path(), &[]).await;
    browser.addr = second.addr;
    let page = browser.page("/settings").await;
    assert_eq!(username_field(&page), "grace");
    assert_eq!(html_theme(&page), "light");
    second.stop().await;
}

#[tokio::test]
async fn looking_without_saving_writes_no_row() {
    let app = TestApp::spawn(&[]).await;
    for _ in 0..5 {
        let mut browser = app.browser();
        browser.page("/settings").await;
        browser.page("/").await;
        browser.page("/settings").await;
    }
    assert_eq!(app.settings_rows(), 0);
    app.stop().await;
}

#[tokio::test]
async fn a_post_without_a_valid_csrf_token_is_refused_and_changes_nothing() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser.save_settings("ada", "dark").await;

    let missing = browser
        .post("/settings", &[("username", "mallory"), ("theme", "light")])
        .await;
    assert_eq!(missing.status(), StatusCode::FORBIDDEN);

    // A token from another session is worthless here.
    let mut other = app.browser();
    let foreign = other.csrf_token().await;
    let forged = browser
        .post(
            "/settings",
            &[
                ("_csrf", &foreign),
                ("username", "mallory"),
                ("theme", "light"),
            ],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(forged.text().await.unwrap().contains("nothing was changed"));

    let page = browser.page("/settings").await;
    assert_eq!(username_field(&page), "ada");
    assert_eq!(html_theme(&page), "dark");
    app.stop().await;
}

#[tokio::test]
async fn a_too_long_username_is_shown_with_its_message_and_the_saved_one_is_kept() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser.save_settings("ada", "system").await;

    let typed = "x".repeat(41);
    let response = browser.save_settings(&typed, "dark").await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.unwrap();
    assert_eq!(
        username_field(&page),
        typed,
        "what was typed is kept in the field"
    );
    assert!(page.contains("Username is 41 characters long; at most 40 are allowed."));
    assert!(page.contains(r#"aria-invalid="true""#));
    // The valid field was saved; the invalid one kept its old value.
    let page = browser.page("/settings").await;
    assert_eq!(username_field(&page), "ada");
    assert_eq!(selected_theme(&page), "dark");
    app.stop().await;
}

#[tokio::test]
async fn control_characters_and_unknown_themes_are_refused() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser.save_settings("ada", "light").await;

    let response = browser.save_settings("line\nbreak", "purple").await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.unwrap();
    assert!(page.contains("Username may not contain control characters"));
    assert!(page.contains("Theme must be one of system, light or dark."));
    assert_eq!(html_theme(&page), "light");

    let page = browser.page("/settings").await;
    assert_eq!(username_field(&page), "ada");
    assert_eq!(selected_theme(&page), "light");
    app.stop().await;
}

#[tokio::test]
async fn surrounding_spaces_are_trimmed_and_empty_means_anonymous() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser.save_settings("   ada  ", "system").await;
    assert_eq!(username_field(&browser.page("/settings").await), "ada");
    browser.save_settings("   ", "system").await;
    let page = browser.page("/settings").await;
    assert_eq!(username_field(&page), "");
    assert!(page.contains(r#"<strong id="current-username">anonymous</strong>"#));
    app.stop().await;
}

#[tokio::test]
async fn markup_in_a_username_is_escaped() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser
        .save_settings("<img src=x onerror=alert(1)>", "system")
        .await;
    let page = browser.page("/settings").await;
    assert!(!page.contains("<img"));
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
    app.stop().await;
}

#[tokio::test]
async fn a_body_over_64_kib_gets_413_and_changes_nothing() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser.save_settings("ada", "system").await;
    let token = browser.csrf_token().await;
    let huge = "y".repeat(64 * 1024);
    let response = browser
        .post(
            "/settings",
            &[("_csrf", &token), ("username", &huge), ("theme", "dark")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let page = browser.page("/settings").await;
    assert_eq!(username_field(&page), "ada");
    assert_eq!(selected_theme(&page), "system");
    app.stop().await;
}

#[tokio::test]
async fn concurrent_saves_for_one_session_leave_one_row() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let token = browser.csrf_token().await;
    let posts = (0..24).map(|n| {
        let mut tab = browser.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let name = format!("tab {n}");
            tab.post(
                "/settings",
                &[("_csrf", &token), ("username", &name), ("theme", "dark")],
            )
            .await
            .status()
        })
    });
    for post in posts.collect::<Vec<_>>() {
        assert_eq!(post.await.unwrap(), StatusCode::SEE_OTHER);
    }
    assert_eq!(app.settings_rows(), 1);
    let name = username_field(&browser.page("/settings").await).to_owned();
    assert!(name.starts_with("tab "), "{name}");
    app.stop().await;
}

#[tokio::test]
async fn pages_carry_security_headers_and_are_not_cached() {
    let app = TestApp::spawn(&[]).await;
    let response = app.browser().get("/settings").await;
    let csp = response.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    app.stop().await;
}

#[tokio::test]
async fn the_stylesheet_is_served_with_a_hashed_name_and_cached_for_long() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let page = browser.page("/settings").await;
    let href = crate::common::attribute_after(&page, r#"rel="stylesheet" href=""#).to_owned();
    assert!(
        href.starts_with("/assets/app.") && href.ends_with(".css"),
        "{href}"
    );
    let response = browser.get(&href).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert_eq!(
        browser.get("/assets/app.000000000000.css").await.status(),
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

#[tokio::test]
async fn health_reports_ok_while_the_database_answers() {
    let app = TestApp::spawn(&[]).await;
    let response = app.browser().get("/healthz").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    app.stop().await;
}

#[tokio::test]
async fn health_reports_503_when_the_database_file_is_gone() {
    let app = TestApp::spawn(&[]).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(app.data_dir.join(format!("livesession.db{suffix}")));
    }
    let response = app.browser().get("/healthz").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    app.stop().await;
}

#[tokio::test]
async fn a_name_that_could_impersonate_is_refused_next_to_the_field_and_the_saved_one_is_kept() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser.save_settings("ada", "system").await;

    let flood = format!("a{}", "\u{301}".repeat(39));
    for (typed, expected) in [
        (
            "\u{202E}nimda",
            "Username may not contain characters that change the direction of text (it has U+202E).",
        ),
        (
            "\u{200B}\u{200B}",
            "Username may not contain invisible characters such as zero-width spaces (it has U+200B).",
        ),
        (
            "\u{3164}",
            "Username may not contain invisible characters such as zero-width spaces (it has U+3164).",
        ),
        (
            "\u{FEFF}",
            "Username may not contain invisible characters such as zero-width spaces (it has U+FEFF).",
        ),
        (
            flood.as_str(),
            "Username may not stack more than 4 accents or other combining marks on one letter.",
        ),
        (
            "...",
            "Username must contain at least one letter, digit, symbol or emoji.",
        ),
    ] {
        let response = browser.save_settings(typed, "dark").await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{typed:?}"
        );
        let page = response.text().await.unwrap();
        let error = &page[page
            .find(r#"<p class="error" id="username-error""#)
            .unwrap()..];
        let error = &error[..error.find("</p>").unwrap()];
        assert!(
            error.contains(expected),
            "{expected} not next to the field: {error}"
        );
        assert!(page.contains(r#"aria-invalid="true""#));
        assert!(
            page.contains(r#"<bdi><strong id="current-username">ada</strong></bdi>"#),
            "the header still shows the saved name"
        );
        let page = browser.page("/settings").await;
        assert_eq!(
            username_field(&page),
            "ada",
            "{typed:?} replaced the saved name"
        );
        assert_eq!(selected_theme(&page), "dark", "the valid field was saved");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_name_is_stored_in_nfc_and_its_length_is_what_a_person_sees() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    let response = browser.save_settings("Rene\u{301}e", "system").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(username_field(&browser.page("/settings").await), "Renée");

    // A family emoji is five code points and one character: forty of them are a valid name.
    let family = "👨\u{200D}👩\u{200D}👧";
    let forty = family.repeat(40);
    let response = browser.save_settings(&forty, "system").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(username_field(&browser.page("/settings").await), forty);

    let response = browser.save_settings(&family.repeat(41), "system").await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.unwrap();
    assert!(page.contains("Username is 41 characters long; at most 40 are allowed."));
    assert_eq!(username_field(&browser.page("/settings").await), forty);

    let response = browser.save_settings("\u{2764}\u{FE0F}", "system").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let page = browser.page("/settings").await;
    assert!(page.contains("<bdi><strong id=\"current-username\">\u{2764}\u{FE0F}</strong></bdi>"));
    app.stop().await;
}

/// `GET /settings/export` as the browser would download it: the response and its JSON.
async fn export(browser: &mut crate::common::Browser) -> (reqwest::StatusCode, serde_json::Value) {
    let response = browser.get("/settings/export").await;
    let status = response.status();
    if status != StatusCode::OK {
        return (status, serde_json::Value::Null);
    }
    let headers = response.headers().clone();
    assert_eq!(
        headers["content-type"], "application/json; charset=utf-8",
        "{headers:?}"
    );
    assert_eq!(
        headers["content-disposition"],
        r#"attachment; filename="livesession-data.json""#
    );
    assert_eq!(headers[CACHE_CONTROL], "no-store");
    let body = response.text().await.unwrap();
    (status, serde_json::from_str(&body).unwrap())
}

#[tokio::test]
async fn download_my_data_has_the_settings_their_times_and_every_message_this_browser_sent() {
    let app = TestApp::spawn(&[]).await;
    let mut ada = app.browser();
    ada.post_message("before I had a name").await;
    ada.save_settings("Ada", "dark").await;
    ada.post_message("hello").await;
    let mut bob = app.browser();
    bob.post_message("not Ada's").await;
    let page = ada.page("/settings").await;
    assert!(
        page.contains(r#"href="/settings/export""#),
        "a plain link, no script"
    );

    let (status, data) = export(&mut ada).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(data["version"], 2);
    assert_eq!(data["format"], "livesession export");
    assert_eq!(data["devices"].as_array().unwrap().len(), 1, "this browser");
    assert_eq!(data["settings"]["username"], "Ada");
    assert_eq!(data["settings"]["theme"], "dark");
    for field in ["created_at", "updated_at", "last_used_at"] {
        let time = data["settings"][field].as_str().unwrap();
        assert!(time.ends_with('Z') && time.len() == 24, "{field}: {time}");
    }
    let messages = data["messages"].as_array().unwrap();
    let sent: Vec<(&str, &str)> = messages
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m["body"].as_str().unwrap()))
        .collect();
    assert_eq!(
        sent,
        [("", "before I had a name"), ("Ada", "hello")],
        "only this browser's, under the names they were sent with"
    );
    assert!(messages[0]["id"].as_i64().unwrap() < messages[1]["id"].as_i64().unwrap());
    // The session id is the browser's secret: neither it nor any other id is in the file.
    fn strings(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
            serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    strings(&data, &mut all);
    assert!(
        all.iter().all(|s| uuid::Uuid::parse_str(s).is_err()),
        "{all:?}"
    );
    let cookie = ada.cookie.clone().unwrap();
    assert!(!data.to_string().contains(cookie.split('=').nth(1).unwrap()));

    // A browser that saved nothing gets an empty export; one that was forgotten starts over.
    let (_, empty) = export(&mut app.browser()).await;
    assert!(empty["settings"].is_null());
    assert_eq!(empty["messages"], serde_json::json!([]));
    let token = ada.csrf_token().await;
    ada.post("/settings/forget", &[("_csrf", token.as_str())])
        .await;
    let (_, after) = export(&mut ada).await;
    assert!(after["settings"].is_null());
    assert_eq!(after["messages"], serde_json::json!([]));
    app.stop().await;
}

#[tokio::test]
async fn download_my_data_is_rate_limited_per_browser_and_per_address() {
    let app = TestApp::spawn(&[]).await;
    let mut ada = app.browser();
    ada.save_settings("Ada", "system").await;
    for n in 0..5 {
        assert_eq!(export(&mut ada).await.0, StatusCode::OK, "export {n}");
    }
    let refused = ada.get("/settings/export").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    let text = refused.text().await.unwrap();
    assert!(text.contains("try again in"), "{text}");

    // Other browsers from the same address: 30 in all per window, then refused too.
    let mut answered = 5;
    let mut others = Vec::new();
    for _ in 0..30 {
        let mut browser = app.browser();
        browser.save_settings("someone", "system").await;
        others.push(browser);
    }
    for browser in &mut others {
        if export(browser).await.0 == StatusCode::OK {
            answered += 1;
        }
    }
    assert_eq!(
        answered, 30,
        "the address's allowance, over all its browsers"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_name_the_page_draws_itself_beside_names_is_refused_next_to_the_field() {
    let app = TestApp::spawn(&[]).await;
    let mut browser = app.browser();
    browser.save_settings("ada", "system").await;
    for typed in ["anonymous", "Anonymous", "Bob (you)", "Bob(YOU)", "no name"] {
        let response = browser.save_settings(typed, "system").await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{typed:?}"
        );
        let page = response.text().await.unwrap();
        assert!(
            page.contains("the page shows that itself beside names"),
            "{typed:?} refused without its reason"
        );
        assert_eq!(username_field(&browser.page("/settings").await), "ada");
    }
    // A name that only contains one of the words is a name like any other.
    let response = browser.save_settings("anonymous fan", "system").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    app.stop().await;
}
