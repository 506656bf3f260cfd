//! One session on two devices, without an account: a one-time code made on one browser, typed
//! (or opened as a link) on another, confirmed there, and both are one session from then on.

use std::time::Duration;

use crate::common::{Browser, TestApp, username_field};
use reqwest::StatusCode;
use reqwest::header::LOCATION;

/// Makes a code on `browser`; the code as shown (grouped) and the page that shows it.
async fn make_code(browser: &mut Browser) -> (String, String) {
    let token = browser.csrf_token().await;
    let response = browser
        .post("/settings/link", &[("_csrf", token.as_str())])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(location.starts_with("/settings?link="), "{location}");
    let page = browser.page(&location).await;
    let code = page
        .split(r#"<code id="link-code">"#)
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the page shows the code")
        .to_owned();
    (code, page)
}

fn url_code(shown: &str) -> String {
    shown.replace('-', "")
}

/// Confirms `code` on `browser`: the status of the answer.
async fn confirm(browser: &mut Browser, code: &str) -> (StatusCode, String) {
    let token = browser.csrf_token().await;
    let response = browser
        .post(
            &format!("/link/{}", url_code(code)),
            &[("_csrf", token.as_str())],
        )
        .await;
    let status = response.status();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn a_code_carries_the_session_to_another_browser_only_once_it_is_confirmed() {
    let app = TestApp::spawn(&[]).await;
    let mut desktop = app.browser();
    desktop.save_settings("Ada", "dark").await;
    let (code, page) = make_code(&mut desktop).await;
    assert_eq!(code.len(), 14, "ABCD-EFGH-JKMN: {code}");
    assert!(
        page.contains(&format!("/link/{}", url_code(&code))),
        "the link, to copy"
    );
    assert!(page.contains("<svg") && page.contains(r#"aria-label="QR code of the link""#));
    assert!(page.contains("expires in 10 min"));
    // Other views say a code is live, but do not show it; nor does its URL to another browser.
    let later = desktop.page("/settings").await;
    assert!(later.contains("expires in 10 min") && !later.contains(&code));
    let stranger = app
        .browser()
        .page(&format!("/settings?link={}", url_code(&code)))
        .await;
    assert!(!stranger.contains(&code) && !stranger.contains("<svg"));

    // The other browser has a name of its own.
    let mut phone = app.browser();
    phone.save_settings("Bob", "light").await;
    let bob_cookie = phone.cookie.clone();

    // Looking at the link (a preview bot, or the person before confirming) changes nothing.
    let mut bot = app.browser();
    let preview = bot.page(&format!("/link/{}", url_code(&code))).await;
    assert!(preview.contains("Use it on this browser"));
    let shown = phone.page(&format!("/link/{}", url_code(&code))).await;
    assert!(
        shown.contains("the name <bdi><strong>Ada</strong></bdi>"),
        "{shown}"
    );
    assert!(shown.contains("the dark theme"));
    // It says plainly whose session this is, before anything else.
    assert!(
        shown.contains(
            "This browser will become part of the session named <bdi><strong>Ada</strong></bdi>, \
             made on another device just now. Only continue if that device is yours."
        ),
        "{shown}"
    );
    assert!(shown.contains("<bdi><strong>Bob</strong></bdi>, will be replaced"));
    assert_eq!(username_field(&phone.page("/settings").await), "Bob");

    // Confirmed: the phone is the desktop's session now, and Bob's session is forgotten.
    let (status, _) = confirm(&mut phone, &code).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let page = phone.page("/settings").await;
    assert_eq!(username_field(&page), "Ada");
    assert!(page.contains(r#"data-theme="dark""#));
    let mut old_phone = app.browser();
    old_phone.cookie = bob_cookie;
    assert_eq!(username_field(&old_phone.page("/settings").await), "");

    // One session: a change on one shows on the other, live.
    let mut phone_tab = crate::common::live::join_settings(&mut phone, "phone").await;
    desktop.save_settings("Ada L.", "dark").await;
    crate::common::live::recv_until(&mut phone_tab, |m| {
        m["t"] == "render" && m["html"].as_str().unwrap_or("").contains("Ada L.")
    })
    .await;

    // The code worked once; the desktop's page no longer shows it live.
    let (status, again) = confirm(&mut app.browser(), &code).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(again.contains("used already"), "{again}");
    assert!(!desktop.page("/settings").await.contains("expires in"));
    app.stop().await;
}

#[tokio::test]
async fn wrong_expired_and_cancelled_codes_each_get_their_sentence() {
    let app = TestApp::spawn(&["--link-ttl", "300ms"]).await;
    let mut desktop = app.browser();
    desktop.save_settings("Ada", "system").await;
    let mut phone = app.browser();

    let wrong = phone.get("/link/ABCDEFGHJKMN").await;
    assert_eq!(wrong.status(), StatusCode::NOT_FOUND);
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("That code is not right")
    );

    let (code, _) = make_code(&mut desktop).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, page) = confirm(&mut phone, &code).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("has expired"), "{page}");

    let (code, _) = make_code(&mut desktop).await;
    let token = desktop.csrf_token().await;
    desktop
        .post("/settings/link/cancel", &[("_csrf", token.as_str())])
        .await;
    let page = phone.get(&format!("/link/{}", url_code(&code))).await;
    assert!(page.text().await.unwrap().contains("was cancelled"));

    // The form: a typed code goes to its page, whatever its case and dashes; junk is refused.
    let typed = phone.get("/link?code=abcd-efgh-jkmn").await;
    assert_eq!(typed.status(), StatusCode::SEE_OTHER);
    assert_eq!(typed.headers()[LOCATION], "/link/ABCDEFGHJKMN");
    let junk = phone.get("/link?code=hello").await;
    assert_eq!(junk.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(junk.text().await.unwrap().contains("That is not a code"));
    assert_eq!(username_field(&phone.page("/settings").await), "");
    app.stop().await;
}

#[tokio::test]
async fn two_browsers_racing_for_one_code_get_one_winner_and_guessing_is_limited() {
    let app = TestApp::spawn(&[]).await;
    let mut desktop = app.browser();
    desktop.save_settings("Ada", "system").await;
    let (code, _) = make_code(&mut desktop).await;
    let (mut one, mut two) = (app.browser(), app.browser());
    let ((a, _), (b, _)) = tokio::join!(confirm(&mut one, &code), confirm(&mut two, &code));
    let mut statuses = [a, b];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::SEE_OTHER, StatusCode::NOT_FOUND]);

    // One address may look up 20 codes per 10 minutes, right or wrong.
    let mut guesser = app.browser();
    let mut refused = 0;
    for n in 0..25 {
        let status = guesser
            .get(&format!("/link/ABCDEFGHJK{:02}", n + 22))
            .await
            .status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    // Two of the address's attempts went to the race above.
    assert_eq!(refused, 7);
    app.stop().await;
}

#[tokio::test]
async fn wrong_guesses_from_many_addresses_never_refuse_a_correct_code_and_say_who_was_limited() {
    let app = TestApp::spawn(&[]).await;
    let mut desktop = app.browser();
    desktop.save_settings("Ada", "system").await;
    let (code, _) = make_code(&mut desktop).await;
    let from = |n: u8| std::net::IpAddr::from([127, 0, 0, n]);
    let letter = |n: usize| char::from(b"23456789ABCDEFGHJKMNPQRSTUVWXYZ"[n % 31]);

    // 51 addresses guess 20 wrong codes each: 1,020 guesses, more than any budget for the
    // whole server would allow; each address then finds its own allowance spent, and is told
    // that it was its network, not the server, that was stopped.
    for n in 10..61u8 {
        let mut guesser = Browser::from_address(app.addr, from(n));
        for guess in 0..20 {
            let (n, guess) = (usize::from(n), guess as usize);
            let path = format!(
                "/link/ABCDEFGH{}{}{}{}",
                letter(n / 31),
                letter(n),
                letter(guess / 31),
                letter(guess)
            );
            let status = guesser.get(&path).await.status();
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        }
        let refused = guesser.get("/link/ABCDEFGHJKMN").await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let sentence = refused.text().await.unwrap();
        assert!(
            sentence.contains("came from your network address"),
            "{sentence}"
        );
    }

    // Then a person from another address uses the right code: it works.
    let mut phone = Browser::from_address(app.addr, from(200));
    let (status, page) = confirm(&mut phone, &code).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    assert_eq!(username_field(&phone.page("/settings").await), "Ada");
    app.stop().await;
}

#[tokio::test]
async fn a_code_looked_at_more_than_ten_times_dies_and_its_maker_sees_it_go() {
    let app = TestApp::spawn(&[]).await;
    let mut desktop = app.browser();
    desktop.save_settings("Ada", "system").await;
    let (code, _) = make_code(&mut desktop).await;
    let path = format!("/link/{}", url_code(&code));
    // Ten looks, from ten addresses so that no address's own allowance is what stops them.
    for n in 0..10u8 {
        let mut viewer = Browser::from_address(app.addr, std::net::IpAddr::from([127, 0, 1, n]));
        let page = viewer.get(&path).await;
        assert_eq!(page.status(), StatusCode::OK, "look {n}");
    }
    let mut eleventh = Browser::from_address(app.addr, std::net::IpAddr::from([127, 0, 1, 99]));
    let refused = eleventh.get(&path).await;
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("That code was tried too many times, so it no longer works")
    );
    // It is cancelled for good: its maker's page offers a new one, and confirming it fails.
    let settings = desktop.page("/settings").await;
    assert!(
        settings.contains(r#"action="/settings/link""#),
        "{settings}"
    );
    assert!(!settings.contains(&code));
    let (status, _) = confirm(&mut app.browser(), &code).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn a_live_settings_page_shows_the_code_go_when_it_is_used_or_expires() {
    let app = TestApp::spawn(&["--link-ttl", "600ms"]).await;
    let mut desktop = app.browser();
    desktop.save_settings("Ada", "system").await;
    let mut tab = crate::common::live::join_settings(&mut desktop, "desktop").await;
    let shows_code = |m: &serde_json::Value| {
        m["t"] == "render" && m["html"].as_str().unwrap_or("").contains("It expires in")
    };
    let shows_none = |m: &serde_json::Value| {
        m["t"] == "render"
            && m["html"]
                .as_str()
                .unwrap_or("")
                .contains(r#"action="/settings/link""#)
    };

    // Made in another tab: this one shows a code is live, then that it was used.
    let (code, _) = make_code(&mut desktop).await;
    crate::common::live::recv_until(&mut tab, shows_code).await;
    let (status, _) = confirm(&mut app.browser(), &code).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    crate::common::live::recv_until(&mut tab, shows_none).await;

    // Left alone, it expires, and the page says so without a reload.
    make_code(&mut desktop).await;
    crate::common::live::recv_until(&mut tab, shows_code).await;
    crate::common::live::recv_until(&mut tab, shows_none).await;
    app.stop().await;
}
