//! Two instances of the real binary on one PostgreSQL database, as behind a load balancer: a
//! session made on one is read on the other, a change in a tab on one reaches the session's tabs
//! on the other, chat goes both ways, a dropped notification connection catches up, and stopping
//! an instance loses nothing it acknowledged.
//!
//! The PostgreSQL server is `LIVESESSION_TEST_POSTGRES`; see `crate::common::postgres`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::common::binary::{self, Server, same_browser_on};
use crate::common::live::{self, recv_until};
use crate::common::postgres::TestDatabase;
use crate::common::{Browser, SECRET_A, SECRET_B, html_theme, message_ids, username_field};
use reqwest::StatusCode;
use serde_json::Value;

mod devices;

/// Ends every instance's listening connection. Its last statement is `LISTEN`, or the `SELECT 1`
/// of its heartbeat (every 10 s) once it has run one: no other connection sends that.
const LISTENERS: &str = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE datname = current_database()
                           AND query IN ('LISTEN livesession', 'SELECT 1')";

/// Two instances, each with its own data dir, on one database and one key.
struct Cluster {
    a: Server,
    b: Server,
    database: TestDatabase,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Cluster {
    async fn start(test: &str) -> Option<Cluster> {
        let database = TestDatabase::create(test).await?;
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = start_instance(dirs.0.path(), &database.url, SECRET_A);
        let b = start_instance(dirs.1.path(), &database.url, SECRET_A);
        Some(Cluster {
            a,
            b,
            database,
            _dirs: dirs,
        })
    }
}

fn start_instance(data_dir: &Path, url: &str, secret: &str) -> Server {
    Server::start(
        data_dir,
        &[
            "--database-url",
            url,
            "--secret-key",
            secret,
            "--message-burst",
            "1000",
            "--message-burst-per-ip",
            "1000",
            "--room-message-burst",
            "1000",
            "--presence-heartbeat",
            "300ms",
            "--presence-grace",
            "200ms",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_made_on_one_instance_is_read_and_synced_on_the_other() {
    let Some(cluster) = Cluster::start("a_session_made_on_one_instance").await else {
        return;
    };
    let mut on_a = Browser::new(cluster.a.addr);
    assert_eq!(
        on_a.save_settings("ada", "dark").await.status(),
        StatusCode::SEE_OTHER
    );
    let mut on_b = same_browser_on(&on_a, &cluster.b);
    let page = on_b.page("/settings").await;
    assert_eq!(username_field(&page), "ada", "B reads the row A wrote");
    assert_eq!(html_theme(&page), "dark");

    // A tab on each instance; changes typed on A reach the tab on B.
    let mut tab_a = live::join_settings(&mut on_a, "page-a").await;
    let mut tab_b = live::join_settings(&mut on_b, "page-b").await;
    for seq in 1..=30u64 {
        let name = format!("ada {seq}");
        live::change(&mut tab_a, seq, &name, "light").await;
        let render = recv_until(&mut tab_b, |m| {
            m["t"] == "render" && m["html"].as_str().unwrap_or("").contains(&name)
        })
        .await;
        assert_eq!(render["theme"], "light");
        let ack = recv_until(&mut tab_a, |m| m["t"] == "ack").await;
        assert_eq!(ack["seq"], seq);
    }
    // (How fast is measured by bench/cluster, not here.)

    // The other way round: a plain form post on B reaches the tab on A.
    assert_eq!(
        on_b.save_settings("grace", "system").await.status(),
        StatusCode::SEE_OTHER
    );
    recv_until(&mut tab_a, |m| {
        m["t"] == "render" && m["html"].as_str().unwrap_or("").contains("grace")
    })
    .await;

    // "Forget me" on A ends the session on B too: its tab reloads, its cookie is refused.
    let token = on_a.csrf_token().await;
    let old_cookie = on_a.cookie.clone();
    let response = on_a
        .post("/settings/forget", &[("_csrf", token.as_str())])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let reload = recv_until(&mut tab_b, |m| m["t"] == "reload").await;
    assert_eq!(reload["t"], "reload");
    let mut stale = Browser::new(cluster.b.addr);
    stale.cookie = old_cookie.clone();
    let page = stale.page("/settings").await;
    assert_eq!(
        username_field(&page),
        "",
        "B shows nothing of the forgotten session"
    );
    assert_ne!(stale.cookie, old_cookie, "B issued a new session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_posted_on_one_instance_reaches_chat_pages_on_the_other_once() {
    let Some(cluster) = Cluster::start("chat_posted_on_one_instance").await else {
        return;
    };
    let mut reader = Browser::new(cluster.b.addr);
    let mut page_b = live::join_chat(&mut reader, "chat-b", None).await;
    let mut writer = Browser::new(cluster.a.addr);
    let mut page_a = live::join_chat(&mut writer, "chat-a", None).await;

    let mut received = Vec::new();
    for n in 0..10 {
        let body = format!("hello {n}");
        live::post(&mut page_a, n + 1, &format!("nonce-{n}"), &body).await;
        let delivered = recv_until(&mut page_b, |m| m["t"] == "messages").await;
        assert!(delivered["html"].as_str().unwrap().contains(&body));
        received.extend(message_ids(delivered["html"].as_str().unwrap()));
    }
    // And back: a form post on B reaches the page on A.
    assert_eq!(
        reader.post_message("from b").await.status(),
        StatusCode::SEE_OTHER
    );
    let back = recv_until(&mut page_a, |m| {
        m["t"] == "messages" && m["html"].as_str().unwrap_or("").contains("from b")
    })
    .await;
    assert_eq!(message_ids(back["html"].as_str().unwrap()).len(), 1);

    let unique: BTreeSet<i64> = received.iter().copied().collect();
    assert_eq!(unique.len(), 10, "ten messages, each once: {received:?}");
    assert_eq!(received.len(), 10, "no message twice: {received:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_on_one_instance_is_on_the_very_next_page_the_other_serves_its_poster() {
    let Some(cluster) = Cluster::start("a_post_on_one_instance_is_on_the_very_next_page").await
    else {
        return;
    };
    let mut on_a = Browser::new(cluster.a.addr);
    on_a.save_settings("poster", "system").await;
    // A proxy that alternates: each post goes to A, the page after it to B, at once.
    let mut on_b = same_browser_on(&on_a, &cluster.b);
    let mut missing = Vec::new();
    let started = std::time::Instant::now();
    const POSTS: usize = 1000;
    for n in 0..POSTS {
        let body = format!("round trip {n}");
        let posted = on_a.post_message(&body).await;
        assert_eq!(posted.status(), StatusCode::SEE_OTHER);
        let next = posted.headers()["location"].to_str().unwrap().to_owned();
        let page = on_b.page(&next).await;
        if !page.contains(&body) {
            missing.push(n);
        }
    }
    eprintln!(
        "{POSTS} posts on A, each followed by a page from B, in {:?}",
        started.elapsed()
    );
    assert!(
        missing.is_empty(),
        "missing from B's next page: {missing:?}"
    );

    // With B deaf to notifications for a moment (its listening connection cut), its next page
    // still shows the poster's message: the page reads past its log when the link names a newer
    // one.
    let admin = cluster.database.connect().await;
    admin.execute(LISTENERS, &[]).await.unwrap();
    for n in 0..5 {
        let body = format!("while B is deaf {n}");
        let posted = on_a.post_message(&body).await;
        let next = posted.headers()["location"].to_str().unwrap().to_owned();
        assert!(on_b.page(&next).await.contains(&body), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_has_the_chat_open_is_shared_by_the_instances_and_a_dead_one_s_expire() {
    let Some(cluster) = Cluster::start("presence_across_instances").await else {
        return;
    };
    let mut ada = Browser::new(cluster.a.addr);
    ada.save_settings("Ada", "system").await;
    let _ada_on_a = live::join_chat(&mut ada, "ada-a", None).await;
    let mut carol = Browser::new(cluster.a.addr);
    carol.save_settings("Carol", "system").await;
    let _carol_on_a = live::join_chat(&mut carol, "carol-a", None).await;

    // A page loaded on B lists who is on A, without JavaScript.
    let mut bob = Browser::new(cluster.b.addr);
    bob.save_settings("Bob", "system").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let page = bob.page("/").await;
        if page.contains("<bdi>Ada</bdi>") && page.contains("<bdi>Carol</bdi>") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "B never listed A's people"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut bob_on_b = live::join_chat(&mut bob, "bob-b", None).await;

    // Ada opens the chat on B too: one entry for her, however many instances she is on.
    let mut ada_elsewhere = same_browser_on(&ada, &cluster.b);
    let _ada_on_b = live::join_chat(&mut ada_elsewhere, "ada-b", None).await;
    let list =
        live::presence_until(&mut bob_on_b, |h| h.contains("Ada") && h.contains("Bob")).await;
    assert_eq!(list.matches("<bdi>Ada</bdi>").count(), 1, "{list}");

    // A dies without a word: what only it counted (Carol) goes after three heartbeats; Ada,
    // still here on B, stays.
    cluster.a.signal("-KILL");
    let list = live::presence_until(&mut bob_on_b, |h| !h.contains("Carol")).await;
    assert!(
        list.contains("<bdi>Ada</bdi>") && list.contains("<bdi>Bob</bdi>"),
        "{list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_its_notification_connection_drops_an_instance_misses_nothing() {
    let Some(cluster) = Cluster::start("after_its_notification_connection_drops").await else {
        return;
    };
    let mut reader = Browser::new(cluster.b.addr);
    let mut chat_b = live::join_chat(&mut reader, "chat-b", None).await;
    let mut writer = Browser::new(cluster.a.addr);
    writer.save_settings("before", "system").await;
    let mut tab_b = live::join_settings(&mut same_browser_on(&writer, &cluster.b), "tab-b").await;

    // Cut every listening connection, then write at once: the notifications of these writes go
    // to connections that no longer exist.
    let admin = cluster.database.connect().await;
    let cut: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND query = 'LISTEN livesession'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(cut, 2, "each instance has one listening connection");
    for n in 0..5 {
        assert_eq!(
            writer
                .post_message(&format!("while away {n}"))
                .await
                .status(),
            StatusCode::SEE_OTHER
        );
    }
    writer.save_settings("after", "dark").await;

    // B catches up from the tables once it is listening again: every message once, in order,
    // and the settings tab shows the newest state.
    let mut ids = Vec::new();
    while ids.len() < 5 {
        let delivered =
            recv_until(&mut chat_b, |m| m["t"] == "messages" || m["t"] == "render").await;
        ids.extend(message_ids(delivered["html"].as_str().unwrap()));
    }
    assert_eq!(ids.len(), 5, "{ids:?}");
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "in order, none twice: {ids:?}"
    );
    let more = live::try_recv(&mut chat_b, Duration::from_millis(300)).await;
    assert!(more.is_none(), "nothing more: {more:?}");
    recv_until(&mut tab_b, |m| {
        m["t"] == "render" && m["html"].as_str().unwrap_or("").contains("after")
    })
    .await;
    assert!(
        cluster
            .b
            .logged("notification connection closed; reconnecting")
    );
    let catch_ups = cluster
        .b
        .log
        .lines()
        .iter()
        .filter(|line| line.contains("caught up with the other instances"))
        .count();
    assert!(
        catch_ups >= 2,
        "one at startup, one after the reconnect: {catch_ups}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_an_instance_loses_nothing_it_acknowledged() {
    writes_survive_an_instance_ending("stopping_an_instance_loses_nothing", "-TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_instance_loses_nothing_it_acknowledged() {
    writes_survive_an_instance_ending("killing_an_instance_loses_nothing", "-KILL").await;
}

/// Writers keep saving through A while A gets `signal`; B then shows each writer's last
/// acknowledged save. After SIGKILL, a save that was committed but never answered may show
/// instead: the round right after the last acknowledged one.
async fn writes_survive_an_instance_ending(test: &str, signal: &str) {
    let Some(cluster) = Cluster::start(test).await else {
        return;
    };
    let a = cluster.a.addr;
    // Writers keep saving through A while it is told to stop.
    let writers: Vec<_> = (0..8)
        .map(|n| {
            tokio::spawn(async move {
                let mut browser = Browser::new(a);
                let token = browser.csrf_token().await;
                let cookie = browser.cookie.clone().unwrap();
                let mut acknowledged = None;
                for round in 0.. {
                    let name = format!("writer {n} round {round}");
                    let form = [
                        ("_csrf", token.as_str()),
                        ("username", &name),
                        ("theme", "dark"),
                    ];
                    let sent = browser
                        .client
                        .post(format!("http://{a}/settings"))
                        .header("content-type", "application/x-www-form-urlencoded")
                        .header("cookie", &cookie)
                        .body(crate::common::encode_form(&form))
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status() == StatusCode::SEE_OTHER => {
                            acknowledged = Some(round);
                        }
                        // Refused or cut off by the shutdown: not acknowledged, and the end.
                        _ => break,
                    }
                }
                (
                    cookie,
                    acknowledged.map(|round| (format!("writer {n} round {round}"), round)),
                )
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.a.signal(signal);
    let mut results = Vec::new();
    for writer in writers {
        results.push(writer.await);
    }
    let clean = cluster.a.wait(Duration::from_secs(15));
    assert!(clean || signal == "-KILL", "A did not stop cleanly");

    for result in results {
        let (cookie, acknowledged) = result.unwrap();
        let (name, round) = acknowledged.expect("every writer got some writes in before the stop");
        let mut on_b = Browser::new(cluster.b.addr);
        on_b.cookie = Some(cookie);
        let page = on_b.page("/settings").await;
        let shown = username_field(&page);
        let unanswered = name.replace(&format!("round {round}"), &format!("round {}", round + 1));
        assert!(
            shown == name || (signal == "-KILL" && shown == unanswered),
            "B shows {shown:?}, not the last write A acknowledged ({name:?})"
        );
    }
}

#[tokio::test]
async fn an_instance_with_another_signing_key_refuses_to_start() {
    let Some(cluster) = Cluster::start("an_instance_with_another_signing_key").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let output = binary::command(
        dir.path(),
        &[
            "--database-url",
            &cluster.database.url,
            "--secret-key",
            SECRET_B,
        ],
    )
    .output()
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("sign cookies with another key"), "{stderr}");
    assert!(stderr.contains("LIVESESSION_SECRET_KEY"), "{stderr}");
    assert!(
        !stderr.contains(SECRET_B) && !stderr.contains(SECRET_A),
        "a secret was printed: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maintenance_commands_work_on_the_shared_database() {
    let Some(cluster) =
        Cluster::start("the_maintenance_commands_work_on_the_shared_database").await
    else {
        return;
    };
    let mut browser = Browser::new(cluster.a.addr);
    browser.save_settings("ada", "dark").await;
    browser.post_message("hello").await;
    let dir = tempfile::tempdir().unwrap();
    let url = cluster.database.url.as_str();
    let run = |args: &[&str]| {
        let mut all = vec!["--database-url", url];
        all.extend_from_slice(args);
        binary::command(dir.path(), &all).output().unwrap()
    };

    let stats = run(&["stats", "--json"]);
    assert!(stats.status.success(), "{stats:?}");
    let stats: Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(
        (stats["sessions"].as_u64(), stats["messages"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(stats["size_bytes"].as_u64().unwrap() > 0);
    let database = stats["database"].as_str().unwrap();
    assert!(database.starts_with("postgres://") && database.contains("livesession_test_"));

    // Everything is stale after a millisecond: the dry run counts it, the real run removes it.
    std::thread::sleep(Duration::from_millis(5));
    let dry = run(&["prune", "--dry-run", "--json", "--stale-after", "1ms"]);
    let dry: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(dry["sessions"], 1);
    let page = same_browser_on(&browser, &cluster.b)
        .page("/settings")
        .await;
    assert_eq!(username_field(&page), "ada", "the dry run deleted nothing");
    let pruned = run(&["prune", "--json", "--stale-after", "1ms"]);
    let pruned: Value = serde_json::from_slice(&pruned.stdout).unwrap();
    assert_eq!(pruned["sessions"], 1);

    let backup = run(&["backup", dir.path().join("copy.db").to_str().unwrap()]);
    assert!(!backup.status.success());
    let stderr = String::from_utf8_lossy(&backup.stderr);
    assert!(stderr.contains("pg_dump"), "{stderr}");
    assert!(!dir.path().join("copy.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_resent_to_another_instance_is_not_applied_twice() {
    let Some(cluster) = Cluster::start("a_change_resent_to_another_instance").await else {
        return;
    };
    let mut on_a = Browser::new(cluster.a.addr);
    let mut tab = live::join_settings(&mut on_a, "page-x").await;
    live::change(&mut tab, 1, "first", "light").await;
    recv_until(&mut tab, |m| m["t"] == "ack").await;
    drop(tab);

    // Another tab saves something newer; then the page, whose acknowledgement it never got (say
    // A died just after committing), reconnects to B and resends change 1.
    let mut on_b = same_browser_on(&on_a, &cluster.b);
    on_b.save_settings("newer", "dark").await;
    let mut tab = live::join_settings(&mut on_b, "page-x").await;
    live::change(&mut tab, 1, "first", "light").await;
    let ack = recv_until(&mut tab, |m| m["t"] == "ack").await;
    assert_eq!(ack["seq"], 1);
    let page = on_b.page("/settings").await;
    assert_eq!(
        username_field(&page),
        "newer",
        "the resent change was applied again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_everywhere_else_on_one_instance_restarts_the_devices_on_the_other() {
    let Some(cluster) = Cluster::start("sign_out_elsewhere_across_instances").await else {
        return;
    };
    let mut desktop = Browser::new(cluster.a.addr);
    desktop.save_settings("ada", "dark").await;
    let mut phone = same_browser_on(&desktop, &cluster.b);
    let mut phone_tab = live::join_settings(&mut phone, "phone-b").await;

    let token = desktop.csrf_token().await;
    let response = desktop
        .post("/settings/sign-out-elsewhere", &[("_csrf", token.as_str())])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    recv_until(&mut phone_tab, |m| m["t"] == "reload").await;
    let page = phone.page("/settings").await;
    assert_eq!(username_field(&page), "", "B starts the other device over");
    // The moved session is read on B too.
    let mut desktop_on_b = same_browser_on(&desktop, &cluster.b);
    assert_eq!(username_field(&desktop_on_b.page("/settings").await), "ada");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_made_on_one_instance_is_used_on_the_other_and_both_show_it() {
    let Some(cluster) = Cluster::start("link_across_instances").await else {
        return;
    };
    let mut desktop = Browser::new(cluster.a.addr);
    desktop.save_settings("ada", "dark").await;
    // A second tab of the desktop, served by B.
    let mut desktop_on_b = same_browser_on(&desktop, &cluster.b);
    let mut tab_b = live::join_settings(&mut desktop_on_b, "desktop-b").await;

    let token = desktop.csrf_token().await;
    let made = desktop
        .post("/settings/link", &[("_csrf", token.as_str())])
        .await;
    assert_eq!(made.status(), StatusCode::SEE_OTHER);
    let location = made.headers()["location"].to_str().unwrap().to_owned();
    let code = location.rsplit('=').next().unwrap().to_owned();
    recv_until(&mut tab_b, |m| {
        m["t"] == "render" && m["html"].as_str().unwrap_or("").contains("It expires in")
    })
    .await;

    // A phone reaches B and uses it there.
    let mut phone = Browser::new(cluster.b.addr);
    let token = phone.csrf_token().await;
    let used = phone
        .post(&format!("/link/{code}"), &[("_csrf", token.as_str())])
        .await;
    assert_eq!(used.status(), StatusCode::SEE_OTHER);
    assert_eq!(username_field(&phone.page("/settings").await), "ada");
    recv_until(&mut tab_b, |m| {
        m["t"] == "render" && !m["html"].as_str().unwrap_or("").contains("It expires in")
    })
    .await;
    // A, which made it, heard that it was used.
    assert!(!desktop.page("/settings").await.contains("It expires in"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_joining_on_one_instance_shows_on_the_other_and_signed_out_there_is_refused_here()
{
    let Some(cluster) = Cluster::start("devices_across_instances").await else {
        return;
    };
    let mut desktop = Browser::new(cluster.a.addr);
    desktop.save_settings("ada", "dark").await;
    let mut desktop_tab = live::join_settings(&mut desktop, "desktop-a").await;
    let token = desktop.csrf_token().await;
    let made = desktop
        .post("/settings/link", &[("_csrf", token.as_str())])
        .await;
    let location = made.headers()["location"].to_str().unwrap().to_owned();
    let code = location.rsplit('=').next().unwrap().to_owned();

    // The phone uses the code on B: A's open settings page lists it and announces it.
    let mut phone = Browser::new(cluster.b.addr);
    let token = phone.csrf_token().await;
    let used = phone
        .post(&format!("/link/{code}"), &[("_csrf", token.as_str())])
        .await;
    assert_eq!(used.status(), StatusCode::SEE_OTHER);
    recv_until(&mut desktop_tab, |m| {
        let html = m["html"].as_str().unwrap_or("");
        m["t"] == "render"
            && html.contains("A new device joined")
            && html.matches("<li class=\"device\"").count() == 2
    })
    .await;
    let mut phone_tab = live::join_settings(&mut phone, "phone-b").await;

    // Signed out on A: its page on B reloads, and B refuses its cookie.
    let page = desktop.page("/settings").await;
    let other = page
        .split("<li class=\"device\"")
        .skip(1)
        .find(|item| !item.contains("data-this-device"))
        .unwrap();
    let handle = crate::common::attribute_after(other, r#"data-device=""#).to_owned();
    let token = desktop.csrf_token().await;
    let response = desktop
        .post(
            "/settings/devices/sign-out",
            &[("_csrf", token.as_str()), ("device", handle.as_str())],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    recv_until(&mut phone_tab, |m| m["t"] == "reload").await;
    assert_eq!(username_field(&phone.page("/settings").await), "");
    assert_eq!(username_field(&desktop.page("/settings").await), "ada");
}
