//! The store's contract, run against both backends: every test below runs once on a SQLite file
//! and once on a PostgreSQL database of its own. Tests that need a second instance on the same
//! database get one from [`Fixture::another`]: on PostgreSQL a separately opened store (what a
//! second process would have), on SQLite the same store (one instance owns the file).
//!
//! The PostgreSQL server is `LIVESESSION_TEST_POSTGRES`; see `common::postgres`.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::postgres::TestDatabase;
use livesession::chat::MessageBody;
use livesession::config::Durability;
use livesession::prune::{Retention, prune_once};
use livesession::session::SessionId;
use livesession::settings::{SettingsChange, Theme, Username};
use livesession::shutdown::CancellationToken;
use livesession::store::{Notice, PageChange, PageSave, Store, StoreOptions};

/// A store for one test, and what keeps its database alive.
struct Fixture {
    store: Store,
    postgres: Option<TestDatabase>,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    async fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("livesession.db");
        let options = StoreOptions {
            durability: Durability::Normal,
            busy_timeout: Duration::from_secs(5),
        };
        let store = tokio::task::spawn_blocking(move || Store::open_sqlite(&path, options))
            .await
            .unwrap()
            .unwrap();
        Fixture {
            store,
            postgres: None,
            _dir: Some(dir),
        }
    }

    async fn postgres(test: &str) -> Option<Fixture> {
        let database = TestDatabase::create(test).await?;
        Some(Fixture {
            store: open_postgres(&database.url).await.unwrap(),
            postgres: Some(database),
            _dir: None,
        })
    }

    /// Another instance on the same database (on SQLite, the one instance itself).
    async fn another(&self) -> Store {
        match &self.postgres {
            Some(database) => open_postgres(&database.url).await.unwrap(),
            None => self.store.clone(),
        }
    }
}

async fn open_postgres(url: &str) -> anyhow::Result<Store> {
    let options = StoreOptions {
        durability: Durability::Normal,
        busy_timeout: Duration::from_secs(5),
    };
    Store::open_postgres(url, options).await
}

/// Each named test, once per backend.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Fixture::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(fixture) = super::Fixture::postgres(stringify!($test)).await {
                        super::$test(fixture).await;
                    }
                }
            )*
        }
    };
}

on_both_backends!(
    a_session_that_never_saved_has_no_row,
    saves_create_the_row_and_bump_the_version_only_on_a_change,
    a_partial_change_keeps_the_other_field,
    a_touch_only_moves_read_at_forward,
    a_forgotten_session_is_never_written_again,
    a_forget_racing_saves_from_another_instance_leaves_no_row,
    forgetting_a_browser_unlinks_its_messages_from_it,
    a_change_a_page_resends_is_applied_once_on_any_instance,
    forgotten_ids_are_remembered_until_they_expire,
    pruning_takes_only_stale_rows_stalest_first,
    a_resent_message_is_stored_once,
    a_message_carries_the_name_its_author_had_when_sending,
    messages_come_in_id_order_with_limits,
    messages_are_pruned_by_age_and_by_count,
    concurrent_saves_to_one_session_count_every_change,
    a_read_never_returns_a_value_older_than_the_last_acknowledged_write,
    posts_from_two_instances_never_leave_a_gap_behind_a_reader,
    two_instances_pruning_at_once_delete_each_stale_row_once_and_no_fresh_one,
    the_health_check_reads_and_writes,
);

fn change(username: Option<&str>, theme: Option<Theme>) -> SettingsChange {
    SettingsChange {
        username: username.map(|name| Username::parse(name).unwrap()),
        theme,
    }
}

fn body(text: &str) -> MessageBody {
    MessageBody::parse(text).unwrap()
}

async fn a_session_that_never_saved_has_no_row(f: Fixture) {
    let id = SessionId::generate();
    assert_eq!(f.store.load(id).await.unwrap(), None);
    assert_eq!(f.store.touch(id, 1_000).await.unwrap(), None);
    assert_eq!(
        f.store.load(id).await.unwrap(),
        None,
        "a touch creates no row"
    );
}

async fn saves_create_the_row_and_bump_the_version_only_on_a_change(f: Fixture) {
    let id = SessionId::generate();
    let first = f
        .store
        .save(id, change(Some("ada"), None), 1_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.settings.username.as_str(), "ada");
    assert_eq!(first.settings.theme, Theme::System);
    assert_eq!((first.version, first.read_at), (1, 1_000));

    let same = f
        .store
        .save(id, change(Some("ada"), None), 2_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(same.version, 1, "saving the same value is not a change");
    assert_eq!(same.read_at, 2_000, "but it is a use");

    let renamed = f
        .store
        .save(id, change(Some("grace"), None), 3_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.version, 2);
    assert_eq!(f.store.load(id).await.unwrap(), Some(renamed));
}

async fn a_partial_change_keeps_the_other_field(f: Fixture) {
    let id = SessionId::generate();
    f.store
        .save(id, change(Some("ada"), Some(Theme::Dark)), 1_000)
        .await
        .unwrap();
    let themed = f
        .store
        .save(id, change(None, Some(Theme::Light)), 2_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(themed.settings.username.as_str(), "ada");
    assert_eq!(themed.settings.theme, Theme::Light);
    let renamed = f
        .store
        .save(id, change(Some("grace"), None), 3_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.settings.theme, Theme::Light);
    assert_eq!(renamed.version, 3);
}

async fn a_touch_only_moves_read_at_forward(f: Fixture) {
    let id = SessionId::generate();
    f.store
        .save(id, change(Some("ada"), None), 5_000)
        .await
        .unwrap();
    let later = f.store.touch(id, 9_000).await.unwrap().unwrap();
    assert_eq!((later.read_at, later.version), (9_000, 1));
    let earlier = f.store.touch(id, 7_000).await.unwrap().unwrap();
    assert_eq!(
        earlier.read_at, 9_000,
        "a late touch never moves read_at back"
    );
}

async fn a_forgotten_session_is_never_written_again(f: Fixture) {
    let id = SessionId::generate();
    let other = f.another().await;
    f.store
        .save(id, change(Some("ada"), None), 1_000)
        .await
        .unwrap();
    assert!(f.store.forget(id, 2_000).await.unwrap(), "there was a row");
    assert_eq!(f.store.load(id).await.unwrap(), None);
    assert_eq!(
        other
            .save(id, change(Some("back"), None), 3_000)
            .await
            .unwrap(),
        None,
        "no instance writes a forgotten id"
    );
    assert_eq!(other.load(id).await.unwrap(), None);
    assert!(
        !f.store.forget(id, 4_000).await.unwrap(),
        "no row the second time"
    );
}

async fn a_forget_racing_saves_from_another_instance_leaves_no_row(f: Fixture) {
    let other = f.another().await;
    for round in 0..20 {
        let id = SessionId::generate();
        f.store
            .save(id, change(Some("before"), None), 1_000)
            .await
            .unwrap();
        let savers: Vec<_> = (0..8)
            .map(|n| {
                let store = other.clone();
                tokio::spawn(async move {
                    store
                        .save(id, change(Some(&format!("racer {n}")), None), 2_000)
                        .await
                        .unwrap()
                })
            })
            .collect();
        f.store.forget(id, 1_500).await.unwrap();
        for saver in savers {
            saver.await.unwrap();
        }
        // Every save either came before the forget (and was deleted with the row) or after it
        // (and was refused): nothing brings the row back.
        assert_eq!(f.store.load(id).await.unwrap(), None, "round {round}");
        assert_eq!(other.load(id).await.unwrap(), None, "round {round}");
    }
}

async fn forgetting_a_browser_unlinks_its_messages_from_it(f: Fixture) {
    let (leaving, staying) = (SessionId::generate(), SessionId::generate());
    f.store
        .save(leaving, change(Some("ada"), None), 1_000)
        .await
        .unwrap();
    for (author, nonce) in [(leaving, "n1"), (staying, "n1"), (leaving, "n2")] {
        f.store
            .post_message(
                author,
                body(&format!("{nonce} by {author}")),
                nonce.into(),
                2_000,
            )
            .await
            .unwrap();
    }
    // Another browser forgotten before, whose message had the same nonce: no clash.
    let earlier = SessionId::generate();
    f.store
        .post_message(earlier, body("earlier"), "n1".into(), 2_500)
        .await
        .unwrap();
    f.store.forget(earlier, 2_600).await.unwrap();

    f.store.forget(leaving, 3_000).await.unwrap();
    let messages = f.store.recent_messages(10).await.unwrap();
    assert_eq!(messages.len(), 4, "the chat keeps every message");
    assert!(
        messages
            .iter()
            .all(|m| m.author != leaving && m.author != earlier),
        "no message names a forgotten browser"
    );
    let left: Vec<(bool, &str)> = messages
        .iter()
        .map(|m| (m.author == SessionId::NOBODY, m.author_name.as_str()))
        .collect();
    assert_eq!(
        left,
        [(true, "ada"), (false, ""), (true, "ada"), (true, "")],
        "unlinked, under the names they were sent with"
    );
    assert_eq!(messages[1].author, staying);
}

async fn a_change_a_page_resends_is_applied_once_on_any_instance(f: Fixture) {
    let id = SessionId::generate();
    let from = |page: &str, seq| PageChange {
        page: page.to_owned(),
        form: "settings",
        seq,
    };
    let first = f
        .store
        .save_from_page(id, change(Some("first"), None), 1_000, from("p1", 1))
        .await
        .unwrap();
    assert!(matches!(first, PageSave::Saved(_)), "{first:?}");
    // Another tab saves something newer; then the first page resends its change 1 to another
    // instance, its acknowledgement having been lost.
    f.store
        .save(id, change(Some("newer"), None), 2_000)
        .await
        .unwrap();
    let other = f.another().await;
    let resent = other
        .save_from_page(id, change(Some("first"), None), 3_000, from("p1", 1))
        .await
        .unwrap();
    assert_eq!(resent, PageSave::Replayed);
    assert_eq!(
        other
            .load(id)
            .await
            .unwrap()
            .unwrap()
            .settings
            .username
            .as_str(),
        "newer",
        "the resent change did not overwrite the newer one"
    );
    // The page's next change, and another page's first, are applied.
    let next = other
        .save_from_page(id, change(Some("second"), None), 4_000, from("p1", 2))
        .await
        .unwrap();
    assert!(matches!(next, PageSave::Saved(ref row) if row.settings.username.as_str() == "second"));
    let elsewhere = other
        .save_from_page(id, change(Some("p2"), None), 5_000, from("p2", 1))
        .await
        .unwrap();
    assert!(matches!(elsewhere, PageSave::Saved(_)));
    // Forgotten after an hour; a forgotten session's pages are refused like its form posts.
    assert_eq!(f.store.prune_page_acks(4_500).await.unwrap(), 1);
    f.store.forget(id, 6_000).await.unwrap();
    let refused = f
        .store
        .save_from_page(id, change(Some("late"), None), 7_000, from("p3", 1))
        .await
        .unwrap();
    assert_eq!(refused, PageSave::Forgotten);
}

async fn forgotten_ids_are_remembered_until_they_expire(f: Fixture) {
    let (old, recent) = (SessionId::generate(), SessionId::generate());
    f.store.forget(old, 1_000).await.unwrap();
    f.store.forget(recent, 5_000).await.unwrap();
    let listed: BTreeSet<String> = f
        .store
        .forgotten()
        .await
        .unwrap()
        .into_iter()
        .map(|(id, at)| format!("{id} {at}"))
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from([format!("{old} 1000"), format!("{recent} 5000")])
    );
    assert_eq!(f.store.prune_forgotten(2_000).await.unwrap(), 1);
    let left: Vec<SessionId> = f
        .store
        .forgotten()
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(left, vec![recent]);
}

async fn pruning_takes_only_stale_rows_stalest_first(f: Fixture) {
    let ids: Vec<SessionId> = (0..5).map(|_| SessionId::generate()).collect();
    for (n, id) in ids.iter().enumerate() {
        // read_at 1000, 2000, ... 5000
        let at = 1_000 * (n as i64 + 1);
        f.store
            .save(*id, change(Some("x"), None), at)
            .await
            .unwrap();
    }
    // Stale: read before 3500, so the first three. A batch of two takes the two stalest.
    assert_eq!(f.store.prune_batch(3_500, 2).await.unwrap(), 2);
    assert_eq!(f.store.load(ids[0]).await.unwrap(), None);
    assert_eq!(f.store.load(ids[1]).await.unwrap(), None);
    assert!(f.store.load(ids[2]).await.unwrap().is_some());
    assert_eq!(f.store.prune_batch(3_500, 2).await.unwrap(), 1);
    assert_eq!(f.store.prune_batch(3_500, 2).await.unwrap(), 0);
    for id in &ids[3..] {
        assert!(
            f.store.load(*id).await.unwrap().is_some(),
            "fresh rows stay"
        );
    }
}

async fn a_resent_message_is_stored_once(f: Fixture) {
    let author = SessionId::generate();
    let first = f
        .store
        .post_message(author, body("hello"), "nonce-1".into(), 1_000)
        .await
        .unwrap();
    assert!(!first.duplicate);
    let again = f
        .another()
        .await
        .post_message(author, body("hello"), "nonce-1".into(), 2_000)
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message, first.message);
    let other_author = f
        .store
        .post_message(
            SessionId::generate(),
            body("hello"),
            "nonce-1".into(),
            3_000,
        )
        .await
        .unwrap();
    assert!(!other_author.duplicate, "nonces belong to their author");
    assert_eq!(f.store.recent_messages(10).await.unwrap().len(), 2);
}

async fn a_message_carries_the_name_its_author_had_when_sending(f: Fixture) {
    let author = SessionId::generate();
    let anonymous = f
        .store
        .post_message(author, body("one"), "a".into(), 1_000)
        .await
        .unwrap()
        .message;
    f.store
        .save(author, change(Some("ada"), None), 2_000)
        .await
        .unwrap();
    let named = f
        .store
        .post_message(author, body("two"), "b".into(), 3_000)
        .await
        .unwrap()
        .message;
    f.store
        .save(author, change(Some("grace"), None), 4_000)
        .await
        .unwrap();
    let messages = f.store.recent_messages(10).await.unwrap();
    assert_eq!(messages, vec![anonymous.clone(), named.clone()]);
    assert_eq!(
        (anonymous.author_name.as_str(), named.author_name.as_str()),
        ("", "ada")
    );
    assert_eq!(named.author, author);
    assert_eq!(named.body, "two");
    assert_eq!(
        f.store.load(author).await.unwrap().unwrap().read_at,
        4_000,
        "posting and saving are uses"
    );
}

async fn messages_come_in_id_order_with_limits(f: Fixture) {
    let author = SessionId::generate();
    let mut ids = Vec::new();
    for n in 0..6 {
        let posted = f
            .store
            .post_message(author, body(&format!("m{n}")), format!("n{n}"), 1_000 + n)
            .await
            .unwrap();
        ids.push(posted.message.id);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");
    let recent: Vec<i64> = f
        .store
        .recent_messages(3)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(recent, ids[3..], "the newest three, oldest first");
    let after: Vec<i64> = f
        .store
        .messages_after(ids[1], 2)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(after, ids[2..4]);
    assert!(f.store.messages_after(ids[5], 10).await.unwrap().is_empty());
}

async fn messages_are_pruned_by_age_and_by_count(f: Fixture) {
    let author = SessionId::generate();
    for n in 0..10 {
        f.store
            .post_message(
                author,
                body(&format!("m{n}")),
                format!("n{n}"),
                1_000 * (n + 1),
            )
            .await
            .unwrap();
    }
    // Older than 3500: the first three go.
    assert_eq!(
        f.store.prune_messages_batch(3_500, 100, 100).await.unwrap(),
        3
    );
    // Keep the newest five: two more go, in batches of one.
    assert_eq!(f.store.prune_messages_batch(0, 5, 1).await.unwrap(), 1);
    assert_eq!(f.store.prune_messages_batch(0, 5, 1).await.unwrap(), 1);
    assert_eq!(f.store.prune_messages_batch(0, 5, 1).await.unwrap(), 0);
    let left: Vec<String> = f
        .store
        .recent_messages(100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(left, ["m5", "m6", "m7", "m8", "m9"]);
}

async fn concurrent_saves_to_one_session_count_every_change(f: Fixture) {
    let id = SessionId::generate();
    let other = f.another().await;
    let writers: Vec<_> = (0..40)
        .map(|n| {
            let store = if n % 2 == 0 {
                f.store.clone()
            } else {
                other.clone()
            };
            tokio::spawn(async move {
                store
                    .save(id, change(Some(&format!("name{n}")), None), 1_000 + n)
                    .await
                    .unwrap()
                    .unwrap()
                    .version
            })
        })
        .collect();
    let mut versions = BTreeSet::new();
    for writer in writers {
        versions.insert(writer.await.unwrap());
    }
    assert_eq!(
        versions,
        (1..=40).collect::<BTreeSet<i64>>(),
        "every change got its own version"
    );
    assert_eq!(f.store.load(id).await.unwrap().unwrap().version, 40);
}

async fn a_read_never_returns_a_value_older_than_the_last_acknowledged_write(f: Fixture) {
    let id = SessionId::generate();
    let reader = f.another().await;
    // Warm whatever the reading instance keeps.
    for n in 0..100 {
        let name = format!("v{n}");
        let saved = f
            .store
            .save(id, change(Some(&name), None), 1_000 + n)
            .await
            .unwrap()
            .unwrap();
        let read = reader.load(id).await.unwrap().unwrap();
        assert!(
            read.version >= saved.version,
            "read version {} after version {} was acknowledged",
            read.version,
            saved.version
        );
        assert_eq!(read.settings.username.as_str(), name);
    }
}

async fn posts_from_two_instances_never_leave_a_gap_behind_a_reader(f: Fixture) {
    let stores = [f.store.clone(), f.another().await];
    let done = Arc::new(AtomicBool::new(false));
    // A reader that, like a chat page, asks for what follows the newest message it has seen.
    let reader = {
        let store = f.another().await;
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut last = 0;
            loop {
                let finished = done.load(Ordering::SeqCst);
                for message in store.messages_after(last, 1_000).await.unwrap() {
                    last = message.id;
                    seen.push(message.id);
                }
                if finished {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let posters: Vec<_> = (0..8)
        .map(|writer| {
            let store = stores[writer % 2].clone();
            tokio::spawn(async move {
                let author = SessionId::generate();
                for n in 0..40 {
                    store
                        .post_message(author, body("hi"), format!("{n}"), 1_000)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for poster in posters {
        poster.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let all: Vec<i64> = f
        .store
        .messages_after(0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(all.len(), 320);
    assert_eq!(seen, all, "the reader missed or repeated a message");
}

async fn two_instances_pruning_at_once_delete_each_stale_row_once_and_no_fresh_one(f: Fixture) {
    let now = 1_000_000_000;
    let retention = Retention {
        stale_after: Duration::from_secs(100),
        touch_window: Duration::from_secs(1),
        message_retention: Duration::from_secs(1_000_000),
        message_limit: 1_000_000,
    };
    let stale_at = now - 200_000;
    // 2,500 stale rows: more than two prune batches for each instance.
    let writers: Vec<_> = (0..25)
        .map(|_| {
            let store = f.store.clone();
            tokio::spawn(async move {
                let mut fresh = Vec::new();
                for n in 0..150 {
                    let id = SessionId::generate();
                    let at = if n % 3 == 0 { now } else { stale_at };
                    store.save(id, change(Some("x"), None), at).await.unwrap();
                    if at == now {
                        fresh.push(id);
                    }
                }
                fresh
            })
        })
        .collect();
    let mut fresh = Vec::new();
    for writer in writers {
        fresh.extend(writer.await.unwrap());
    }
    let shutdown = CancellationToken::new();
    let (a, b) = (f.store.clone(), f.another().await);
    let (pruned_a, pruned_b) = tokio::join!(
        prune_once(&a, retention, now, &shutdown),
        prune_once(&b, retention, now, &shutdown)
    );
    let removed = pruned_a.unwrap().sessions + pruned_b.unwrap().sessions;
    assert_eq!(
        removed, 2_500,
        "each stale row was deleted and counted once"
    );
    for id in fresh {
        assert!(
            f.store.load(id).await.unwrap().is_some(),
            "a fresh row was pruned"
        );
    }
}

async fn the_health_check_reads_and_writes(f: Fixture) {
    f.store.ping().await.unwrap();
    f.store.ping().await.unwrap();
}

// PostgreSQL only: what a shared database adds.

async fn postgres_fixture(test: &str) -> Option<Fixture> {
    Fixture::postgres(test).await
}

#[tokio::test]
async fn postgres_refuses_a_schema_from_a_newer_version() {
    let Some(f) = postgres_fixture("postgres_refuses_a_schema_from_a_newer_version").await else {
        return;
    };
    let database = f.postgres.as_ref().unwrap();
    let client = database.connect().await;
    client
        .execute(
            "UPDATE livesession_meta SET value = '99' WHERE name = 'schema_version'",
            &[],
        )
        .await
        .unwrap();
    let error = format!("{:#}", open_postgres(&database.url).await.err().unwrap());
    assert!(error.contains("newer livesession"), "{error}");
    assert!(error.contains("99"), "{error}");
}

#[tokio::test]
async fn postgres_leaves_another_programs_tables_alone() {
    let Some(database) =
        TestDatabase::create("postgres_leaves_another_programs_tables_alone").await
    else {
        return;
    };
    let client = database.connect().await;
    client
        .batch_execute("CREATE TABLE settings (id int); INSERT INTO settings VALUES (7)")
        .await
        .unwrap();
    let error = format!("{:#}", open_postgres(&database.url).await.err().unwrap());
    assert!(error.contains("did not create"), "{error}");
    let kept: i32 = client
        .query_one("SELECT id FROM settings", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 7);
}

#[tokio::test]
async fn postgres_an_unreachable_server_is_a_clear_error() {
    let error = open_postgres("postgres://nobody@127.0.0.1:1/nothing")
        .await
        .err()
        .unwrap();
    let error = format!("{error:#}");
    assert!(
        error.contains("cannot connect to PostgreSQL at nobody@127.0.0.1:1/nothing"),
        "{error}"
    );
}

/// Waits for the next notice, at most a few seconds.
async fn next_notice(notices: &mut tokio::sync::mpsc::Receiver<Notice>) -> Notice {
    tokio::time::timeout(Duration::from_secs(5), notices.recv())
        .await
        .expect("no notice within 5 s")
        .expect("the listener stopped")
}

#[tokio::test]
async fn postgres_another_instance_hears_each_write_and_not_its_own() {
    let Some(f) = postgres_fixture("postgres_another_instance_hears_each_write").await else {
        return;
    };
    let listening = f.another().await;
    let shutdown = CancellationToken::new();
    let (sender, mut notices) = tokio::sync::mpsc::channel(64);
    let listener = listening.listen(sender, shutdown.clone()).unwrap();
    // The listener is up once it asks to catch up.
    assert_eq!(next_notice(&mut notices).await, Notice::Resync);

    let id = SessionId::generate();
    save_and_hear(&f.store, id, &mut notices).await;
    let posted = f
        .store
        .post_message(id, body("hi"), "n".into(), 2_000)
        .await
        .unwrap();
    assert_eq!(
        next_notice(&mut notices).await,
        Notice::Message {
            id: posted.message.id
        }
    );
    f.store.forget(id, 3_000).await.unwrap();
    assert_eq!(
        next_notice(&mut notices).await,
        Notice::Forgotten { id, at: 3_000 }
    );
    // Its own writes are not news to the listening instance.
    listening
        .save(SessionId::generate(), change(Some("own"), None), 4_000)
        .await
        .unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(300), notices.recv()).await;
    assert!(quiet.is_err(), "heard its own write: {quiet:?}");
    shutdown.cancel();
    listener.await.unwrap();
}

/// Saves a change to `id` through `store` and expects to hear it on `notices`.
async fn save_and_hear(
    store: &Store,
    id: SessionId,
    notices: &mut tokio::sync::mpsc::Receiver<Notice>,
) {
    let saved = store
        .save(id, change(Some(&rand_name()), None), 1_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        next_notice(notices).await,
        Notice::SettingsChanged {
            id,
            version: saved.version
        }
    );
}

fn rand_name() -> String {
    format!("w{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

#[tokio::test]
async fn postgres_a_dropped_listener_reconnects_and_asks_for_a_resync() {
    let Some(f) = postgres_fixture("postgres_a_dropped_listener_reconnects").await else {
        return;
    };
    let database = f.postgres.as_ref().unwrap();
    let listening = f.another().await;
    let shutdown = CancellationToken::new();
    let (sender, mut notices) = tokio::sync::mpsc::channel(64);
    let listener = listening.listen(sender, shutdown.clone()).unwrap();
    assert_eq!(
        next_notice(&mut notices).await,
        Notice::Resync,
        "once listening, an instance catches up with what happened before"
    );
    let admin = database.connect().await;
    let terminate = "SELECT count(pg_terminate_backend(pid))::int FROM pg_stat_activity
                     WHERE datname = current_database() AND query = 'LISTEN livesession'";
    // Wait until the listener is connected, then cut it off.
    let mut cut = 0;
    for _ in 0..100 {
        cut = admin
            .query_one(terminate, &[])
            .await
            .unwrap()
            .get::<_, i32>(0);
        if cut > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cut, 1, "the listening connection never showed up");
    assert_eq!(next_notice(&mut notices).await, Notice::Resync);
    // And it hears writes again.
    let id = SessionId::generate();
    save_and_hear(&f.store, id, &mut notices).await;
    shutdown.cancel();
    listener.await.unwrap();
}

#[tokio::test]
async fn postgres_instances_must_share_the_signing_key() {
    let Some(f) = postgres_fixture("postgres_instances_must_share_the_signing_key").await else {
        return;
    };
    assert_eq!(f.store.claim_key("key-a", &[]).await.unwrap(), None);
    let other = f.another().await;
    assert_eq!(other.claim_key("key-a", &[]).await.unwrap(), None);
    assert_eq!(
        other.claim_key("key-b", &[]).await.unwrap(),
        Some("key-a".to_owned()),
        "a different key is refused"
    );
    assert_eq!(
        other
            .claim_key("key-b", &["key-a".to_owned()])
            .await
            .unwrap(),
        None,
        "a rotation that lists the old key is accepted"
    );
    assert_eq!(
        f.store.claim_key("key-a", &[]).await.unwrap(),
        Some("key-b".to_owned()),
        "after the rotation the old key alone is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instances_starting_together_with_different_keys_cannot_both_start() {
    let Some(f) = postgres_fixture("postgres_instances_starting_together").await else {
        return;
    };
    for round in 0..10 {
        let client = f.postgres.as_ref().unwrap().connect().await;
        client
            .execute(
                "DELETE FROM livesession_meta WHERE name = 'key_fingerprint'",
                &[],
            )
            .await
            .unwrap();
        let other = f.another().await;
        let (a, b) = tokio::join!(
            f.store.claim_key("key-a", &[]),
            other.claim_key("key-b", &[])
        );
        let refused = [a.unwrap(), b.unwrap()]
            .iter()
            .filter(|held| held.is_some())
            .count();
        assert_eq!(
            refused, 1,
            "round {round}: exactly one of the two keys is refused"
        );
    }
}

/// A TCP proxy to PostgreSQL whose existing connections can be frozen (their bytes stop flowing
/// both ways but nothing is closed, as in a network partition) or cut (closed, as when the
/// server restarts). Later connections pass.
struct FreezingProxy {
    addr: std::net::SocketAddr,
    connections: Arc<std::sync::Mutex<Vec<Connection>>>,
}

/// One proxied connection: whether it is frozen, and the token that closes it.
type Connection = (Arc<AtomicBool>, CancellationToken);

impl FreezingProxy {
    async fn start(target: std::net::SocketAddr) -> FreezingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let registry = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let stuck = Arc::new(AtomicBool::new(false));
                let cut = CancellationToken::new();
                registry
                    .lock()
                    .unwrap()
                    .push((Arc::clone(&stuck), cut.clone()));
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let up = pipe(client_read, server_write, Arc::clone(&stuck), cut.clone());
                tokio::spawn(up);
                tokio::spawn(pipe(server_read, client_write, stuck, cut));
            }
        });
        FreezingProxy { addr, connections }
    }

    /// Freezes every connection open now.
    fn freeze(&self) {
        for (stuck, _) in self.connections.lock().unwrap().iter() {
            stuck.store(true, Ordering::SeqCst);
        }
    }

    /// Closes every connection open now.
    fn cut(&self) {
        for (_, cut) in self.connections.lock().unwrap().drain(..) {
            cut.cancel();
        }
    }
}

/// Copies `from` to `to` until either ends or `cut`; once `stuck`, swallows everything and
/// closes nothing until `cut`.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stuck: Arc<AtomicBool>,
    cut: CancellationToken,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = [0u8; 8192];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buffer) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            () = cut.cancelled() => return,
        };
        if !stuck.load(Ordering::SeqCst) && to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    // Keep the other side open while stuck, as a partition would.
    if stuck.load(Ordering::SeqCst) {
        cut.cancelled().await;
    }
}

/// Starts a [`FreezingProxy`] in front of the test database; returns it and a URL through it.
async fn proxied(database: &TestDatabase) -> (FreezingProxy, String) {
    let config: tokio_postgres::Config = database.url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        other => panic!("the test server must be reached over TCP, not {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let target = tokio::net::lookup_host((host.as_str(), port))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = FreezingProxy::start(target).await;
    let dbname = config.get_dbname().unwrap();
    let user = config.get_user().unwrap_or("postgres");
    let url = format!("postgres://{user}@{}/{dbname}", proxy.addr);
    (proxy, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_listener_that_silently_stops_answering_is_replaced() {
    let Some(f) = postgres_fixture("postgres_a_listener_that_silently_stops_answering").await
    else {
        return;
    };
    let (proxy, proxied) = proxied(f.postgres.as_ref().unwrap()).await;
    let listening = open_postgres(&proxied).await.unwrap();

    let shutdown = CancellationToken::new();
    let (sender, mut notices) = tokio::sync::mpsc::channel(64);
    let listener = listening.listen(sender, shutdown.clone()).unwrap();
    assert_eq!(next_notice(&mut notices).await, Notice::Resync);
    // The partition: the listening connection gets no answer and no error, ever.
    proxy.freeze();
    let started = std::time::Instant::now();
    let replaced = tokio::time::timeout(Duration::from_secs(30), notices.recv())
        .await
        .expect("the dead listening connection was never replaced");
    assert_eq!(
        replaced,
        Some(Notice::Resync),
        "caught up after replacing it"
    );
    eprintln!(
        "a silently dead listener was replaced after {:?}",
        started.elapsed()
    );
    // And it hears writes again, through a fresh connection.
    save_and_hear(&f.store, SessionId::generate(), &mut notices).await;
    shutdown.cancel();
    listener.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_cut_under_the_store_are_replaced() {
    let Some(f) = postgres_fixture("postgres_connections_cut_under_the_store").await else {
        return;
    };
    let (proxy, url) = proxied(f.postgres.as_ref().unwrap()).await;
    let store = open_postgres(&url).await.unwrap();
    let shutdown = CancellationToken::new();
    let (sender, mut notices) = tokio::sync::mpsc::channel(64);
    let listener = store.listen(sender, shutdown.clone()).unwrap();
    assert_eq!(next_notice(&mut notices).await, Notice::Resync);
    let id = SessionId::generate();
    // Warm the pool: several connections open at once.
    let warm: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.load(id).await.unwrap() })
        })
        .collect();
    for task in warm {
        task.await.unwrap();
    }

    // As when the database server restarts: every connection is closed under the store.
    proxy.cut();
    // Nobody is told: the store finds the closed connections and uses fresh ones.
    let saved = store
        .save(id, change(Some("after"), None), 1_000)
        .await
        .expect("the first save after the cut")
        .unwrap();
    assert_eq!(saved.settings.username.as_str(), "after");
    for _ in 0..20 {
        assert_eq!(
            store.load(id).await.unwrap().unwrap().version,
            saved.version
        );
    }
    // The listening connection came back and caught up.
    assert_eq!(next_notice(&mut notices).await, Notice::Resync);
    shutdown.cancel();
    listener.await.unwrap();
}
