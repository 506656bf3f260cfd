//! "Forget me": a forgotten session is never written again, its messages are unlinked from it,
//! and its id is remembered until it expires.

use std::collections::BTreeSet;

use livesession::session::SessionId;
use livesession::store::Saved;

use crate::store::harness::{Fixture, body, change};

pub async fn a_forgotten_session_is_never_written_again(f: Fixture) {
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
        Saved::Forgotten,
        "no instance writes a forgotten id"
    );
    assert_eq!(other.load(id).await.unwrap(), None);
    assert!(
        !f.store.forget(id, 4_000).await.unwrap(),
        "no row the second time"
    );
}

pub async fn a_forget_racing_saves_from_another_instance_leaves_no_row(f: Fixture) {
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

pub async fn forgetting_a_browser_unlinks_its_messages_from_it(f: Fixture) {
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

pub async fn forgotten_ids_are_remembered_until_they_expire(f: Fixture) {
    let (old, recent) = (SessionId::generate(), SessionId::generate());
    for id in [old, recent] {
        f.store
            .save(id, change(Some("ada"), None), 500)
            .await
            .unwrap();
    }
    f.store.forget(old, 1_000).await.unwrap();
    f.store.forget(recent, 5_000).await.unwrap();
    let listed: BTreeSet<String> = f
        .store
        .forgotten(100)
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
        .forgotten(100)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(left, vec![recent]);
}

/// Only what had something to forget is remembered: a session that saved nothing and posted
/// nothing leaves no row behind, however often it is forgotten; one that only posted is
/// remembered (its messages were unlinked). The newest are listed first, up to the limit asked.
pub async fn a_session_with_nothing_saved_is_forgotten_without_a_trace(f: Fixture) {
    for n in 0..1_000 {
        assert!(
            !f.store
                .forget(SessionId::generate(), 1_000 + n)
                .await
                .unwrap()
        );
    }
    assert_eq!(f.store.stats().await.unwrap().forgotten, 0);
    assert!(f.store.forgotten(10).await.unwrap().is_empty());

    let (poster, saver) = (SessionId::generate(), SessionId::generate());
    f.store
        .post_message(poster, body("hi"), "n".into(), 3_000)
        .await
        .unwrap();
    f.store
        .save(saver, change(Some("ada"), None), 3_000)
        .await
        .unwrap();
    assert!(
        f.store.forget(poster, 4_000).await.unwrap(),
        "it had a message"
    );
    assert!(
        f.store.forget(saver, 5_000).await.unwrap(),
        "it had settings"
    );
    assert_eq!(f.store.stats().await.unwrap().forgotten, 2);
    let newest: Vec<SessionId> = f
        .store
        .forgotten(1)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(newest, vec![saver]);
}

pub async fn a_forgotten_author_s_post_is_refused_and_no_message_stays_linked_to_it(f: Fixture) {
    let id = SessionId::generate();
    f.store
        .save(id, change(Some("ada"), None), 1_000)
        .await
        .unwrap();
    f.store
        .post_message(id, body("before"), "n1".into(), 1_500)
        .await
        .unwrap();
    assert!(f.store.forget(id, 2_000).await.unwrap());
    let other = f.another().await;
    for nonce in ["n1", "n2"] {
        let refused = other
            .post_message(id, body("after"), nonce.into(), 3_000)
            .await;
        assert!(
            matches!(
                refused,
                Err(livesession::store::StoreError::AuthorForgotten)
            ),
            "{refused:?}"
        );
    }
    assert!(other.session_data(id).await.unwrap().messages.is_empty());
    let bodies: Vec<String> = other
        .recent_messages(10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(bodies, ["before"], "the earlier message stays, unlinked");
}
