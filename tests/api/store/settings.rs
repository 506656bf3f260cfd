//! Settings rows: load, save, touch, a page's resent change, and saves racing on two instances.

use std::collections::BTreeSet;

use livesession::session::SessionId;
use livesession::settings::Theme;
use livesession::store::{NewRow, PageChange, Saved};

use crate::store::harness::{Fixture, change};

pub async fn a_session_that_never_saved_has_no_row(f: Fixture) {
    let id = SessionId::generate();
    assert_eq!(f.store.load(id).await.unwrap(), None);
    assert_eq!(f.store.touch(id, 1_000).await.unwrap(), None);
    assert_eq!(
        f.store.load(id).await.unwrap(),
        None,
        "a touch creates no row"
    );
}

pub async fn saves_create_the_row_and_bump_the_version_only_on_a_change(f: Fixture) {
    let id = SessionId::generate();
    let first = f
        .store
        .save(id, change(Some("ada"), None), 1_000)
        .await
        .unwrap()
        .applied()
        .unwrap();
    assert_eq!(first.settings.username.as_str(), "ada");
    assert_eq!(first.settings.theme, Theme::System);
    assert_eq!((first.version, first.read_at), (1, 1_000));

    let same = f
        .store
        .save(id, change(Some("ada"), None), 2_000)
        .await
        .unwrap()
        .applied()
        .unwrap();
    assert_eq!(same.version, 1, "saving the same value is not a change");
    assert_eq!(same.read_at, 2_000, "but it is a use");

    let renamed = f
        .store
        .save(id, change(Some("grace"), None), 3_000)
        .await
        .unwrap()
        .applied()
        .unwrap();
    assert_eq!(renamed.version, 2);
    assert_eq!(f.store.load(id).await.unwrap(), Some(renamed));
}

pub async fn a_partial_change_keeps_the_other_field(f: Fixture) {
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
        .applied()
        .unwrap();
    assert_eq!(themed.settings.username.as_str(), "ada");
    assert_eq!(themed.settings.theme, Theme::Light);
    let renamed = f
        .store
        .save(id, change(Some("grace"), None), 3_000)
        .await
        .unwrap()
        .applied()
        .unwrap();
    assert_eq!(renamed.settings.theme, Theme::Light);
    assert_eq!(renamed.version, 3);
}

pub async fn a_touch_only_moves_read_at_forward(f: Fixture) {
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

/// One rule on both backends for every write: `read_at` is the latest use, so a clock that
/// stepped back (a save or a post stamped earlier than the last use) never moves it back.
pub async fn a_save_or_a_post_with_an_earlier_clock_never_moves_read_at_back(f: Fixture) {
    let id = SessionId::generate();
    f.store
        .save(id, change(Some("ada"), None), 9_000)
        .await
        .unwrap();
    let saved = f
        .store
        .save(id, change(Some("grace"), None), 7_000)
        .await
        .unwrap()
        .applied()
        .unwrap();
    assert_eq!(
        saved.settings.username.as_str(),
        "grace",
        "the change applies"
    );
    assert_eq!(
        saved.read_at, 9_000,
        "a save stamped earlier never moves read_at back"
    );
    f.store
        .post_message(
            id,
            crate::store::harness::body("hello"),
            "n-1".into(),
            5_000,
        )
        .await
        .unwrap();
    let row = f.store.load(id).await.unwrap().unwrap();
    assert_eq!(
        row.read_at, 9_000,
        "a post stamped earlier never moves read_at back"
    );
    f.store
        .post_message(
            id,
            crate::store::harness::body("later"),
            "n-2".into(),
            11_000,
        )
        .await
        .unwrap();
    let row = f.store.load(id).await.unwrap().unwrap();
    assert_eq!(row.read_at, 11_000, "a post is a use");
}

pub async fn a_change_a_page_resends_is_applied_once_on_any_instance(f: Fixture) {
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
    assert!(matches!(first, Saved::Applied(_)), "{first:?}");
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
    assert_eq!(resent, Saved::Replayed);
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
    assert!(matches!(next, Saved::Applied(ref row) if row.settings.username.as_str() == "second"));
    let elsewhere = other
        .save_from_page(id, change(Some("p2"), None), 5_000, from("p2", 1))
        .await
        .unwrap();
    assert!(matches!(elsewhere, Saved::Applied(_)));
    // Forgotten after an hour; a forgotten session's pages are refused like its form posts.
    assert_eq!(f.store.prune_page_acks(4_500).await.unwrap(), 1);
    f.store.forget(id, 6_000).await.unwrap();
    let refused = f
        .store
        .save_from_page(id, change(Some("late"), None), 7_000, from("p3", 1))
        .await
        .unwrap();
    assert_eq!(refused, Saved::Forgotten);
}

pub async fn concurrent_saves_to_one_session_count_every_change(f: Fixture) {
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
                    .applied()
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

pub async fn a_read_never_returns_a_value_older_than_the_last_acknowledged_write(f: Fixture) {
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
            .applied()
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

pub async fn a_save_to_an_existing_row_makes_no_row_and_applies_like_any_save(f: Fixture) {
    let id = SessionId::generate();
    let from = |seq| PageChange {
        page: "p1".to_owned(),
        form: "settings",
        seq,
    };
    // No row: nothing is written, from a form or a page, and the page's change is not recorded
    // as applied (the save that makes the row applies it).
    assert_eq!(
        f.store
            .save_change(id, change(Some("ada"), None), 1_000, None, NewRow::Refuse)
            .await
            .unwrap(),
        Saved::NoRow
    );
    assert_eq!(
        f.store
            .save_change(
                id,
                change(Some("ada"), None),
                1_000,
                Some(from(1)),
                NewRow::Refuse
            )
            .await
            .unwrap(),
        Saved::NoRow
    );
    assert_eq!(f.store.load(id).await.unwrap(), None, "no row was made");
    let made = f
        .store
        .save_from_page(id, change(Some("ada"), None), 1_000, from(1))
        .await
        .unwrap();
    assert!(
        matches!(made, Saved::Applied(ref row) if row.version == 1),
        "{made:?}"
    );

    // A row: applied as the upsert applies it (the version moves only on a change, read_at
    // only forward), on any instance, and a page's resent change is still a replay.
    let other = f.another().await;
    let renamed = other
        .save_change(id, change(Some("grace"), None), 2_000, None, NewRow::Refuse)
        .await
        .unwrap()
        .applied()
        .unwrap();
    assert_eq!(renamed.settings.username.as_str(), "grace");
    assert_eq!((renamed.version, renamed.read_at), (2, 2_000));
    let same = f
        .store
        .save_change(id, change(Some("grace"), None), 1_500, None, NewRow::Refuse)
        .await
        .unwrap()
        .applied()
        .unwrap();
    assert_eq!((same.version, same.read_at), (2, 2_000));
    assert_eq!(
        other
            .save_change(
                id,
                change(Some("ada"), None),
                3_000,
                Some(from(1)),
                NewRow::Refuse
            )
            .await
            .unwrap(),
        Saved::Replayed
    );
    let themed = other
        .save_change(
            id,
            change(None, Some(Theme::Dark)),
            3_000,
            Some(from(2)),
            NewRow::Refuse,
        )
        .await
        .unwrap()
        .applied()
        .unwrap();
    assert_eq!(themed.settings.username.as_str(), "grace");
    assert_eq!(themed.settings.theme, Theme::Dark);
    assert_eq!(f.store.load(id).await.unwrap(), Some(themed));

    // Forgotten: no row, so nothing to save to, and the save that would make one is refused.
    f.store.forget(id, 4_000).await.unwrap();
    assert_eq!(
        other
            .save_change(id, change(Some("late"), None), 5_000, None, NewRow::Refuse)
            .await
            .unwrap(),
        Saved::NoRow
    );
    assert_eq!(
        other
            .save(id, change(Some("late"), None), 5_000)
            .await
            .unwrap(),
        Saved::Forgotten
    );
}
