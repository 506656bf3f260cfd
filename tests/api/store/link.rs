//! One-time link codes: known by their hash, live until they expire, spent once however many
//! race for them, and dead once cancelled, replaced or their session forgotten.

use livesession::session::SessionId;
use livesession::store::CodeState;

use crate::store::harness::{Fixture, change};

pub async fn a_link_code_is_spent_once_and_says_why_it_cannot_be_again(f: Fixture) {
    let session = SessionId::generate();
    let hash = || "hash-of-a-code".to_owned();
    assert_eq!(
        f.store.link_state(hash(), 1_000).await.unwrap(),
        CodeState::Unknown
    );
    f.store
        .create_link(session, hash(), 1_000, 2_000)
        .await
        .unwrap();
    let active = CodeState::Active {
        session,
        expires_at: 2_000,
    };
    let other = f.another().await;
    assert_eq!(other.link_state(hash(), 1_500).await.unwrap(), active);
    assert_eq!(
        other.active_link(session, 1_500).await.unwrap(),
        Some(2_000)
    );
    assert_eq!(
        other.link_state(hash(), 2_000).await.unwrap(),
        CodeState::Expired
    );

    // Two browsers spend it at once, on two instances: one wins.
    let (a, b) = tokio::join!(
        f.store.spend_link(hash(), 1_600),
        other.spend_link(hash(), 1_600)
    );
    let outcomes = [a.unwrap(), b.unwrap()];
    assert_eq!(
        outcomes.iter().filter(|o| **o == active).count(),
        1,
        "{outcomes:?}"
    );
    assert!(outcomes.contains(&CodeState::Spent));
    assert_eq!(
        f.store.link_state(hash(), 1_700).await.unwrap(),
        CodeState::Spent
    );
    assert_eq!(f.store.active_link(session, 1_700).await.unwrap(), None);
}

pub async fn a_link_code_dies_when_cancelled_replaced_or_its_session_is_forgotten(f: Fixture) {
    let session = SessionId::generate();
    f.store
        .create_link(session, "first".into(), 1_000, 9_000)
        .await
        .unwrap();
    f.store
        .create_link(session, "second".into(), 1_100, 9_000)
        .await
        .unwrap();
    assert_eq!(
        f.store.spend_link("first".into(), 1_200).await.unwrap(),
        CodeState::Cancelled,
        "a newer code replaces it"
    );
    assert_eq!(f.store.cancel_links(session, 1_300).await.unwrap(), 1);
    assert_eq!(
        f.store.spend_link("second".into(), 1_400).await.unwrap(),
        CodeState::Cancelled
    );

    let forgotten = SessionId::generate();
    f.store
        .save(forgotten, change(Some("ada"), None), 1_000)
        .await
        .unwrap();
    f.store
        .create_link(forgotten, "third".into(), 1_000, 9_000)
        .await
        .unwrap();
    assert!(f.store.forget(forgotten, 1_500).await.unwrap());
    assert_eq!(
        f.store.spend_link("third".into(), 1_600).await.unwrap(),
        CodeState::Cancelled
    );
}

pub async fn every_live_code_is_listed_with_its_session_for_an_instance_catching_up(f: Fixture) {
    let (spent, live, expired) = (
        SessionId::generate(),
        SessionId::generate(),
        SessionId::generate(),
    );
    f.store
        .create_link(spent, "spent".into(), 1_000, 5_000)
        .await
        .unwrap();
    f.store
        .create_link(live, "live".into(), 1_000, 5_000)
        .await
        .unwrap();
    f.store
        .create_link(expired, "expired".into(), 1_000, 1_500)
        .await
        .unwrap();
    f.store.spend_link("spent".into(), 1_200).await.unwrap();
    let listed = f.another().await.live_links(2_000).await.unwrap();
    assert_eq!(listed, vec![(live, 5_000)]);
}
