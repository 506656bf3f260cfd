//! PostgreSQL only, what a shared database adds: the schema check, a clear error for an unreachable
//! server, and the signing key every instance must share.

use livesession::session::SessionId;
use livesession::store::{Present, Unavailable};

use crate::common::postgres::TestDatabase;
use crate::store::harness::{change, open_postgres, postgres_fixture};

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

/// A schema changed under a running instance (a column of another type) makes its reads fail
/// like any other database error, with a reason for the page, instead of a panic in a handler.
#[tokio::test]
async fn postgres_a_column_of_another_type_is_a_database_error_not_a_panic() {
    let Some(f) =
        postgres_fixture("postgres_a_column_of_another_type_is_a_database_error_not_a_panic").await
    else {
        return;
    };
    let id = SessionId::generate();
    f.store
        .save(id, change(Some("ada"), None), 1_000)
        .await
        .unwrap();
    let client = f.postgres.as_ref().unwrap().connect().await;
    client
        .batch_execute("ALTER TABLE settings ALTER COLUMN version TYPE text")
        .await
        .unwrap();
    let error = f.store.load(id).await.unwrap_err();
    assert_eq!(error.unavailable(), Unavailable::Failed, "{error}");
    let error = f.store.touch(id, 2_000).await.unwrap_err();
    assert_eq!(error.unavailable(), Unavailable::Failed, "{error}");
}

#[tokio::test]
async fn postgres_upgrades_a_version_1_schema_keeping_every_row() {
    let Some(database) = TestDatabase::create("postgres_upgrades_a_version_1_schema").await else {
        return;
    };
    let client = database.connect().await;
    client
        .batch_execute(include_str!("../../fixtures/postgres-schema-v1.sql"))
        .await
        .unwrap();
    let id = SessionId::generate();
    client
        .execute(
            "INSERT INTO settings (session_id, username, theme, inserted_at, updated_at, read_at)
             VALUES ($1, 'ada', 'dark', 1, 2, 3)",
            &[&id.as_uuid()],
        )
        .await
        .unwrap();
    let store = open_postgres(&database.url).await.unwrap();
    let version: String = client
        .query_one(
            "SELECT value FROM livesession_meta WHERE name = 'schema_version'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, "4", "upgraded through every migration");
    let kept = store.load(id).await.unwrap().expect("the row is kept");
    assert_eq!(kept.settings.username.as_str(), "ada");
    // The session got its first device, whose id is the session's: its cookie keeps working.
    let devices = store.devices(id).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].id, livesession::session::first_device(id));
    assert_eq!((devices[0].added_at, devices[0].active_at), (1, 3));

    // The new table works: what one instance shares, another reads.
    let here = vec![Present {
        id,
        name: "ada".into(),
        crowded: false,
    }];
    store.share_presence(&here, true).await.unwrap();
    let other = open_postgres(&database.url).await.unwrap();
    assert_eq!(
        other
            .others_presence(std::time::Duration::from_secs(30))
            .await
            .unwrap(),
        here
    );
    assert!(
        store
            .others_presence(std::time::Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty(),
        "an instance does not read its own list"
    );
    store.withdraw_presence().await.unwrap();
    assert!(
        other
            .others_presence(std::time::Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
}
