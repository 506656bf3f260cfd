//! Read-your-writes for devices across two instances, as behind a load balancer that sends each
//! request wherever it likes: a code made on one instance works at once on the other, and its
//! maker's very next page shows the device it added; a device signed out on one instance is
//! refused by the other on its very next request, and the signer's next page there no longer
//! lists it; a session forgotten on one is refused by the other at once. Each is tried many
//! times (1,000 rounds, four at a time, each of its own browsers and client address), every
//! write followed at once by a request to the other instance: no sleep, no retry, so a lag of a
//! millisecond is a miss.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use super::Cluster;
use crate::common::{Browser, attribute_after, username_field};
use reqwest::StatusCode;

/// Rounds of each test.
const ROUNDS: usize = 1000;

/// Rounds run at once: the two instances share two cores, and a round mostly waits.
const LANES: usize = 4;

/// Runs `round(n, a, b)` for every round, [`LANES`] at a time, on the cluster's two instances;
/// every miss the rounds report, in round order, and how long it took.
async fn rounds<F, Fut>(cluster: &Cluster, round: F) -> (Vec<String>, std::time::Duration)
where
    F: Fn(usize, SocketAddr, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Vec<String>> + Send,
{
    let (a, b) = (cluster.a.addr, cluster.b.addr);
    let started = Instant::now();
    let lanes: Vec<_> = (0..LANES)
        .map(|lane| {
            let round = round.clone();
            tokio::spawn(async move {
                let mut misses = Vec::new();
                for n in (lane..ROUNDS).step_by(LANES) {
                    misses.extend(round(n, a, b).await.into_iter().map(|m| (n, m)));
                }
                misses
            })
        })
        .collect();
    let mut misses = Vec::new();
    for lane in lanes {
        misses.extend(lane.await.unwrap());
    }
    misses.sort();
    let misses = misses
        .into_iter()
        .map(|(n, miss)| format!("round {n}: {miss}"))
        .collect();
    (misses, started.elapsed())
}

/// Cuts both instances' listening connections: the notifications of the writes that follow
/// are lost until each has connected again (and caught up from the tables). An instance that
/// trusted its memory alone would then answer from stale state for as long as that takes.
struct Deafen(tokio_postgres::Client);

impl Deafen {
    async fn new(cluster: &Cluster) -> Deafen {
        Deafen(cluster.database.connect().await)
    }

    async fn cut(&self) {
        self.0.execute(super::LISTENERS, &[]).await.unwrap();
    }
}

/// After the rounds [`rounds`] runs, this many more, one at a time, each with the listening
/// connections cut just before its write.
const DEAF_ROUNDS: usize = 10;

/// Runs `round` [`DEAF_ROUNDS`] times after the others, cutting the listening connections each
/// time; its misses.
async fn deaf_rounds<F, Fut>(cluster: &Cluster, round: F) -> Vec<String>
where
    F: Fn(usize, SocketAddr, SocketAddr, Option<Arc<Deafen>>) -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    let deafen = Arc::new(Deafen::new(cluster).await);
    let mut misses = Vec::new();
    for n in ROUNDS..ROUNDS + DEAF_ROUNDS {
        let found = round(n, cluster.a.addr, cluster.b.addr, Some(Arc::clone(&deafen))).await;
        misses.extend(found.into_iter().map(|m| format!("deaf round {n}: {m}")));
    }
    misses
}

/// A test of `round`s on a cluster started for `test`: [`ROUNDS`] of them four at a time, then the
/// deaf ones; says how long the first took (`what` they were), and fails on any miss.
async fn every_round<F, Fut>(test: &str, what: &str, round: F)
where
    F: Fn(usize, SocketAddr, SocketAddr, Option<Arc<Deafen>>) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = Vec<String>> + Send,
{
    let Some(cluster) = Cluster::start(test).await else {
        return;
    };
    let (mut misses, took) = rounds(&cluster, move |n, a, b| round(n, a, b, None)).await;
    eprintln!("{ROUNDS} {what} in {took:?}");
    misses.extend(deaf_rounds(&cluster, round).await);
    assert!(misses.is_empty(), "{} misses: {misses:?}", misses.len());
}

/// Cuts the listening connections, when the round is one of the deaf ones.
async fn cut(deafen: Option<&Deafen>) {
    if let Some(deafen) = deafen {
        deafen.cut().await;
    }
}

/// The same browser (its cookie, its client address) sending its next request to `addr`.
fn on(browser: &Browser, addr: SocketAddr) -> Browser {
    let mut other = browser.clone();
    other.addr = addr;
    other
}

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

/// One round of the codes test: a fresh browser makes a code on A, a new browser uses it on B,
/// and the maker's next pages on A are looked at.
async fn code_round(
    round: usize,
    a: SocketAddr,
    b: SocketAddr,
    deaf: Option<Arc<Deafen>>,
) -> Vec<String> {
    let mut misses = Vec::new();
    // A new browser each round: a session has at most --max-devices.
    let name = format!("maker {round}");
    let mut desktop = Browser::from_address(a, address(round));
    desktop.save_settings(&name, "dark").await;
    cut(deaf.as_deref()).await;
    let (polled, code) = make_code(&mut desktop).await;
    // On odd rounds the page the maker is sent to is served by B: it shows the code.
    if !round.is_multiple_of(2) {
        let page = on(&desktop, b).page(&polled).await;
        if !page.contains(&format!("/link/{code}")) {
            misses.push(format!("B did not show the code made on A at {polled}"));
        }
    }
    // The new browser opens the link and confirms it on B, at once.
    cut(deaf.as_deref()).await;
    let mut phone = Browser::from_address(b, address(round));
    let (confirm, used) = use_code(&mut phone, &code).await;
    if used != StatusCode::SEE_OTHER || !confirm.contains(&name) {
        misses.push(format!("B did not take the code: {used}"));
        return misses;
    }
    // The maker's very next pages, on A: the one showing the code (which it reloads), then
    // the plain settings page. Both list the phone, and neither offers the spent code.
    for path in [polled.as_str(), "/settings"] {
        let page = desktop.page(path).await;
        if devices_listed(&page) != 2 || page.contains("It expires in") {
            misses.push(format!("A's {path} was stale"));
        }
    }
    // And the phone's own next page, on A, is the maker's session.
    if username_field(&on(&phone, a).page("/settings").await) != name {
        misses.push("the phone's page on A was not the maker's".to_owned());
    }
    misses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_made_on_one_instance_works_at_once_on_the_other_and_its_maker_sees_the_device() {
    every_round(
        "a_code_made_on_one_instance_works_at_once",
        "codes made on A and used on B",
        code_round,
    )
    .await;
}

/// One round of the sign-out test: a fresh browser links a phone on A and signs it out there
/// (by its button, or everywhere else); the signed out cookies and the signer go to B.
async fn sign_out_round(
    round: usize,
    a: SocketAddr,
    b: SocketAddr,
    deaf: Option<Arc<Deafen>>,
) -> Vec<String> {
    let mut misses = Vec::new();
    let name = format!("signer {round}");
    let mut desktop = Browser::from_address(a, address(round));
    desktop.save_settings(&name, "dark").await;
    let mut phone = Browser::from_address(a, address(round));
    let (_, code) = make_code(&mut desktop).await;
    let (_, used) = use_code(&mut phone, &code).await;
    assert_eq!(used, StatusCode::SEE_OTHER, "round {round}");
    let page = desktop.page("/settings").await;
    assert_eq!(devices_listed(&page), 2, "round {round}");
    let token = csrf(&page);

    // Even rounds sign the phone out by its button; odd rounds sign out everywhere else,
    // which also ends any copy of the desktop's own cookie.
    cut(deaf.as_deref()).await;
    let mut signed_out = vec![("the phone", phone.clone())];
    let response = if round.is_multiple_of(2) {
        let handle = other_device(&page);
        desktop
            .post(
                "/settings/devices/sign-out",
                &[("_csrf", token.as_str()), ("device", handle.as_str())],
            )
            .await
    } else {
        signed_out.push(("the desktop's old cookie", desktop.clone()));
        desktop
            .post("/settings/sign-out-elsewhere", &[("_csrf", token.as_str())])
            .await
    };
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "round {round}");

    // (a) Each signed-out cookie's very next request, to B, gets a fresh session.
    for (who, browser) in signed_out {
        let mut on_b = on(&browser, b);
        let page = on_b.page("/settings").await;
        if username_field(&page) == name || on_b.cookie == browser.cookie {
            misses.push(format!("B served {who}"));
        }
    }
    // (b) The signer's very next settings page, from B, lists only itself.
    let page = on(&desktop, b).page("/settings").await;
    if devices_listed(&page) != 1 || username_field(&page) != name {
        misses.push("the signer's page on B still listed the device".to_owned());
    }
    misses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_signed_out_on_one_instance_is_refused_at_once_by_the_other() {
    every_round(
        "a_device_signed_out_on_one_instance_is_refused",
        "sign-outs on A, each followed by requests to B,",
        sign_out_round,
    )
    .await;
}

/// One round of the forget test: a fresh browser saves and forgets itself on A; its old cookie
/// goes to B.
async fn forget_round(
    round: usize,
    a: SocketAddr,
    b: SocketAddr,
    deaf: Option<Arc<Deafen>>,
) -> Vec<String> {
    let name = format!("forgotten {round}");
    let mut browser = Browser::from_address(a, address(round));
    browser.save_settings(&name, "dark").await;
    let old = browser.clone();
    let token = browser.csrf_token().await;
    cut(deaf.as_deref()).await;
    let response = browser
        .post("/settings/forget", &[("_csrf", token.as_str())])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "round {round}");
    // The forgotten cookie's very next request, to B, gets a fresh session: not the old data,
    // and not the old cookie back.
    let mut on_b = on(&old, b);
    let page = on_b.page("/settings").await;
    if username_field(&page) == name || on_b.cookie == old.cookie {
        return vec!["B took the forgotten cookie".to_owned()];
    }
    Vec::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_forgotten_on_one_instance_is_refused_at_once_by_the_other() {
    every_round(
        "a_session_forgotten_on_one_instance_is_refused",
        "sessions forgotten on A, each cookie sent to B at once,",
        forget_round,
    )
    .await;
}
