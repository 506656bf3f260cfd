//! Chat messages: stored once per nonce, under the name their author had, in id order, and never
//! with a gap behind a reader while two instances post.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use livesession::session::SessionId;

use crate::store::harness::{Fixture, body, change};

pub async fn a_resent_message_is_stored_once(f: Fixture) {
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

pub async fn a_message_carries_the_name_its_author_had_when_sending(f: Fixture) {
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

pub async fn messages_come_in_id_order_with_limits(f: Fixture) {
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

pub async fn posts_from_two_instances_never_leave_a_gap_behind_a_reader(f: Fixture) {
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

/// `--message-limit` holds at every post, on both backends: the oldest beyond it go in the
/// post's own transaction, and a resend changes nothing.
pub async fn the_message_limit_holds_at_every_post(f: Fixture) {
    let store = f.store.clone().keeping_messages(5);
    let author = SessionId::generate();
    for n in 0..20 {
        store
            .post_message(author, body(&format!("m{n}")), format!("n{n}"), 1_000 + n)
            .await
            .unwrap();
        assert!(store.stats().await.unwrap().messages <= 5, "after post {n}");
    }
    let again = store
        .post_message(author, body("m19"), "n19".into(), 3_000)
        .await
        .unwrap();
    assert!(again.duplicate);
    let kept: Vec<String> = store
        .recent_messages(50)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(kept, ["m15", "m16", "m17", "m18", "m19"]);
}

pub async fn a_session_s_data_is_its_row_with_its_times_and_the_messages_it_sent(f: Fixture) {
    let id = SessionId::generate();
    assert_eq!(
        f.store.session_data(id).await.unwrap(),
        livesession::store::SessionData::default(),
        "nothing kept of a session that saved nothing"
    );
    f.store
        .post_message(id, body("anonymous"), "a".into(), 1_000)
        .await
        .unwrap();
    f.store
        .save(id, change(Some("ada"), None), 2_000)
        .await
        .unwrap();
    f.store
        .save(
            id,
            change(None, Some(livesession::settings::Theme::Dark)),
            3_000,
        )
        .await
        .unwrap();
    f.store
        .post_message(id, body("named"), "b".into(), 4_000)
        .await
        .unwrap();
    f.store
        .post_message(
            SessionId::generate(),
            body("someone else"),
            "c".into(),
            5_000,
        )
        .await
        .unwrap();

    let data = f.another().await.session_data(id).await.unwrap();
    let row = data.settings.expect("the row");
    assert_eq!(row.settings.username.as_str(), "ada");
    assert_eq!(row.settings.theme, livesession::settings::Theme::Dark);
    assert_eq!((row.inserted_at, row.updated_at), (2_000, 3_000));
    assert_eq!(row.read_at, 4_000, "posting is using the session");
    let sent: Vec<(&str, &str, i64)> = data
        .messages
        .iter()
        .map(|m| (m.author_name.as_str(), m.body.as_str(), m.created_at))
        .collect();
    assert_eq!(sent, [("", "anonymous", 1_000), ("ada", "named", 4_000)]);
}
