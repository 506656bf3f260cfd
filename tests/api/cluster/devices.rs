//! Read-your-writes for devices across two instances, as behind a load balancer that sends each
//! request wherever it likes: a code made on one instance works at once on the other, and its
//! maker's very next page shows the device it added; a device signed out on one instance is
//! refused by the other on its very next request, and the signer's next page there no longer
//! lists it; a session forgotten on one is refused by the other at once. Each is tried many
//! times in a tight loop, every write followed at once by a request to the other instance: no
//! sleep, no retry, so a lag of a millisecond is a miss.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use super::Cluster;
use crate::common::binary::same_browser_on;
use crate::common::{Browser, attribute_after, username_field};
use reqwest::StatusCode;

/// The loopback address round `round` comes from: its own client address, so the limits per
/// address (codes made, codes tried, new sessions) are never what a round meets.
fn address(round: usize) -> IpAddr {
    let n = u32::try_from(round).unwrap() + 2;
    IpAddr::V4(Ipv4Addr::new(127, 1, (n >> 8) as u8, n as u8))
}

/// How many devices a settings page lists.
fn devices_listed(page: &str) -> usize {
    page.matches("<li class=\"device\"").count()
}

/// The public handle of the first device a settings page lists that is not the one viewing it.
fn other_device(page: &str) -> String {
    let other = page
        .split("<li class=\"device\"")
        .skip(1)
        .find(|item| !item.contains("data-this-device"))
        .expect("another device is listed");
    attribute_after(other, r#"data-device=""#).to_owned()
}

/// The `_csrf` field of a page's first form.
fn csrf(page: &str) -> String {
    attribute_after(page, r#"name="_csrf" value=""#).to_owned()
}

/// `desktop` makes a code where it is served: the page it is sent to (which shows the code,
/// and which it reloads), and the code.
async fn make_code(desktop: &mut Browser) -> (String, String) {
    let page = desktop.page("/settings").await;
    let made = desktop
        .post("/settings/link", &[("_csrf", csrf(&page).as_str())])
        .await;
    assert_eq!(made.status(), StatusCode::SEE_OTHER);
    let location = made.headers()["location"].to_str().unwrap().to_owned();
    let code = location.rsplit('=').next().unwrap().to_owned();
    (location, code)
}

/// `phone` opens the link of `code` and confirms it where it is served: the confirm page, and
/// the answer to the confirm.
async fn use_code(phone: &mut Browser, code: &str) -> (String, StatusCode) {
    let confirm = phone.get(&format!("/link/{code}")).await;
    if confirm.status() != StatusCode::OK {
        return (String::new(), confirm.status());
    }
    let confirm = confirm.text().await.unwrap();
    let used = phone
        .post(
            &format!("/link/{code}"),
            &[("_csrf", csrf(&confirm).as_str())],
        )
        .await;
    (confirm, used.status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_made_on_one_instance_works_at_once_on_the_other_and_its_maker_sees_the_device() {
    let Some(cluster) = Cluster::start("a_code_made_on_one_instance_works_at_once").await else {
        return;
    };
    const ROUNDS: usize = 300;
    let started = Instant::now();
    let (mut refused, mut stale) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // A new browser each round: a session has at most --max-devices.
        let name = format!("maker {round}");
        let mut desktop = Browser::from_address(cluster.a.addr, address(round));
        desktop.save_settings(&name, "dark").await;
        let (polled, code) = make_code(&mut desktop).await;
        // On odd rounds the page the maker is sent to is served by B: it shows the code.
        if round % 2 == 1 {
            let mut desktop_on_b = same_browser_on(&desktop, &cluster.b);
            if !desktop_on_b
                .page(&polled)
                .await
                .contains(&format!("/link/{code}"))
            {
                stale.push((round, format!("{polled} on B")));
            }
        }
        // The new browser opens the link and confirms it on B, at once.
        let mut phone = Browser::from_address(cluster.b.addr, address(round));
        let (confirm, used) = use_code(&mut phone, &code).await;
        if used != StatusCode::SEE_OTHER || !confirm.contains(&name) {
            refused.push(round);
            continue;
        }
        // The maker's very next pages, on A: the one showing the code (which it reloads), then
        // the plain settings page. Both list the phone, and neither offers the spent code.
        for path in [polled.as_str(), "/settings"] {
            let page = desktop.page(path).await;
            if devices_listed(&page) != 2 || page.contains("It expires in") {
                stale.push((round, path.to_owned()));
            }
        }
        // And the phone's own next page, on A, is the maker's session.
        let mut phone_on_a = same_browser_on(&phone, &cluster.a);
        if username_field(&phone_on_a.page("/settings").await) != name {
            stale.push((round, "the phone on A".to_owned()));
        }
    }
    eprintln!(
        "{ROUNDS} codes made on A and used on B in {:?}",
        started.elapsed()
    );
    assert!(
        refused.is_empty(),
        "codes B did not take at once: {refused:?}"
    );
    assert!(stale.is_empty(), "pages A served stale: {stale:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_signed_out_on_one_instance_is_refused_at_once_by_the_other() {
    let Some(cluster) = Cluster::start("a_device_signed_out_on_one_instance_is_refused").await
    else {
        return;
    };
    const ROUNDS: usize = 300;
    let started = Instant::now();
    let (mut still_in, mut still_listed) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let name = format!("signer {round}");
        let mut desktop = Browser::from_address(cluster.a.addr, address(round));
        desktop.save_settings(&name, "dark").await;
        let mut phone = Browser::from_address(cluster.a.addr, address(round));
        let (_, code) = make_code(&mut desktop).await;
        let (_, used) = use_code(&mut phone, &code).await;
        assert_eq!(used, StatusCode::SEE_OTHER, "round {round}");
        let page = desktop.page("/settings").await;
        assert_eq!(devices_listed(&page), 2, "round {round}");
        let token = csrf(&page);

        // Even rounds sign the phone out by its button; odd rounds sign out everywhere else,
        // which also ends any copy of the desktop's own cookie.
        let old_desktop = desktop.clone();
        let mut signed_out = vec![("the phone", phone.clone())];
        let response = if round % 2 == 0 {
            let handle = other_device(&page);
            desktop
                .post(
                    "/settings/devices/sign-out",
                    &[("_csrf", token.as_str()), ("device", handle.as_str())],
                )
                .await
        } else {
            signed_out.push(("the desktop's old cookie", old_desktop));
            desktop
                .post("/settings/sign-out-elsewhere", &[("_csrf", token.as_str())])
                .await
        };
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "round {round}");

        // (a) Each signed-out cookie's very next request, to B, gets a fresh session.
        for (who, browser) in signed_out {
            let mut on_b = same_browser_on(&browser, &cluster.b);
            let page = on_b.page("/settings").await;
            if username_field(&page) == name || on_b.cookie == browser.cookie {
                still_in.push((round, who));
            }
        }
        // (b) The signer's very next settings page, from B, lists only itself.
        let mut signer_on_b = same_browser_on(&desktop, &cluster.b);
        let page = signer_on_b.page("/settings").await;
        if devices_listed(&page) != 1 || username_field(&page) != name {
            still_listed.push(round);
        }
    }
    eprintln!(
        "{ROUNDS} sign-outs on A, each followed by requests to B, in {:?}",
        started.elapsed()
    );
    assert!(
        still_in.is_empty(),
        "signed-out cookies B still served: {still_in:?}"
    );
    assert!(
        still_listed.is_empty(),
        "signer's pages on B still listing the device: {still_listed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_forgotten_on_one_instance_is_refused_at_once_by_the_other() {
    let Some(cluster) = Cluster::start("a_session_forgotten_on_one_instance_is_refused").await
    else {
        return;
    };
    const ROUNDS: usize = 300;
    let started = Instant::now();
    let mut still_in = Vec::new();
    for round in 0..ROUNDS {
        let name = format!("forgotten {round}");
        let mut browser = Browser::from_address(cluster.a.addr, address(round));
        browser.save_settings(&name, "dark").await;
        let old = browser.clone();
        let token = browser.csrf_token().await;
        let response = browser
            .post("/settings/forget", &[("_csrf", token.as_str())])
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "round {round}");
        // The forgotten cookie's very next request, to B, gets a fresh session: not the old
        // data, and not the old cookie back.
        let mut on_b = same_browser_on(&old, &cluster.b);
        let page = on_b.page("/settings").await;
        if username_field(&page) == name || on_b.cookie == old.cookie {
            still_in.push(round);
        }
    }
    eprintln!(
        "{ROUNDS} sessions forgotten on A, each cookie sent to B at once, in {:?}",
        started.elapsed()
    );
    assert!(
        still_in.is_empty(),
        "forgotten cookies B still took: {still_in:?}"
    );
}
