//! PostgreSQL only: each instance hears the others' writes through its listening connection, and
//! a listener that loses its connection reconnects and asks for a resync.

use std::time::Duration;

use livesession::session::SessionId;
use livesession::shutdown::CancellationToken;
use livesession::store::{Notice, Store};

use crate::store::harness::{body, change, postgres_fixture};

/// Waits for the next notice, at most a few seconds.
pub async fn next_notice(notices: &mut tokio::sync::mpsc::Receiver<Notice>) -> Notice {
    tokio::time::timeout(Duration::from_secs(5), notices.recv())
        .await
        .expect("no notice within 5 s")
        .expect("the listener stopped")
}

/// Saves a change to `id` through `store` and expects to hear it on `notices`.
pub async fn save_and_hear(
    store: &Store,
    id: SessionId,
    notices: &mut tokio::sync::mpsc::Receiver<Notice>,
) {
    let saved = store
        .save(id, change(Some(&rand_name()), None), 1_000)
        .await
        .unwrap()
        .applied()
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
