//! Each browser's device under its session: made when first seen (the first browser) or when a
//! code is used, seen at most once per touch window, renamed, signed out (never written again, on
//! any instance), limited per session, pruned when idle, and deleted with a forgotten session.

use livesession::device::{Added, DeviceId};
use livesession::session::{SessionId, Who};
use livesession::store::{AddedDevice, Ended};

use crate::store::harness::{Fixture, change};

pub async fn a_session_s_first_browser_gets_its_device_when_seen(f: Fixture) {
    let session = SessionId::generate();
    let device = DeviceId::generate();
    f.store
        .save(session, change(Some("ada"), None), 1_000)
        .await
        .unwrap();
    assert!(f.store.devices(session).await.unwrap().is_empty());
    assert!(
        f.store
            .see_device(session, device, "Firefox on Linux".into(), 1_000)
            .await
            .unwrap()
    );
    // Seen again later, named by another User-Agent: the time moves, the name stays.
    assert!(
        f.store
            .see_device(session, device, "Chrome on Linux".into(), 5_000)
            .await
            .unwrap()
    );
    let other = f.another().await;
    let devices = other.devices(session).await.unwrap();
    assert_eq!(devices.len(), 1);
    let d = &devices[0];
    assert_eq!((d.id, d.name.as_str()), (device, "Firefox on Linux"));
    assert_eq!(
        (d.added, d.added_at, d.active_at),
        (Added::First, 1_000, 5_000)
    );
    // An earlier clock never moves it back.
    f.store
        .see_device(session, device, String::new(), 2_000)
        .await
        .unwrap();
    assert_eq!(other.devices(session).await.unwrap()[0].active_at, 5_000);
    assert!(
        f.store
            .rename_device(session, device, "Work laptop".into())
            .await
            .unwrap()
    );
    assert_eq!(other.devices(session).await.unwrap()[0].name, "Work laptop");
    assert!(
        !f.store
            .rename_device(SessionId::generate(), device, "Not theirs".into())
            .await
            .unwrap(),
        "another session cannot rename it"
    );
    let data = other.session_data(session).await.unwrap();
    assert_eq!(data.devices.len(), 1, "the export lists it");
}

pub async fn a_signed_out_device_is_never_written_again_on_any_instance(f: Fixture) {
    let session = SessionId::generate();
    let (desktop, phone) = (DeviceId::generate(), DeviceId::generate());
    f.store
        .see_device(session, desktop, "Desktop".into(), 1_000)
        .await
        .unwrap();
    assert_eq!(
        f.store
            .add_device(session, phone, "Phone".into(), 1_500, 10)
            .await
            .unwrap(),
        AddedDevice::Added
    );
    f.store
        .sign_out_devices(session, vec![phone], 2_000)
        .await
        .unwrap();
    let other = f.another().await;
    let left: Vec<DeviceId> = other
        .devices(session)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(left, vec![desktop]);
    assert!(
        other
            .signed_out(100)
            .await
            .unwrap()
            .contains(&(phone, 2_000))
    );
    assert!(
        !other
            .see_device(session, phone, "Phone".into(), 3_000)
            .await
            .unwrap(),
        "a signed out device does not come back"
    );
    assert_eq!(other.devices(session).await.unwrap().len(), 1);
}

pub async fn a_session_takes_at_most_its_most_devices(f: Fixture) {
    let session = SessionId::generate();
    let other = f.another().await;
    for n in 0..3 {
        let store = if n % 2 == 0 { &f.store } else { &other };
        assert_eq!(
            store
                .add_device(
                    session,
                    DeviceId::generate(),
                    format!("Device {n}"),
                    1_000 + n,
                    3
                )
                .await
                .unwrap(),
            AddedDevice::Added
        );
    }
    assert_eq!(
        other
            .add_device(session, DeviceId::generate(), "One more".into(), 2_000, 3)
            .await
            .unwrap(),
        AddedDevice::Full
    );
    let devices = f.store.devices(session).await.unwrap();
    assert_eq!(devices.len(), 3);
    assert!(devices.iter().all(|d| d.added == Added::Code));
}

pub async fn a_device_moved_to_a_new_id_keeps_how_it_was_added(f: Fixture) {
    let session = SessionId::generate();
    let (old, new) = (DeviceId::generate(), DeviceId::generate());
    f.store
        .add_device(session, old, "Phone".into(), 1_000, 10)
        .await
        .unwrap();
    f.store
        .move_device(session, old, new, "ignored".into(), 2_000)
        .await
        .unwrap();
    let devices = f.another().await.devices(session).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!((devices[0].id, devices[0].added), (new, Added::Code));
    assert_eq!(devices[0].name, "Phone");
    // A browser with no row yet becomes the session's first device under its new id.
    let (fresh_old, fresh_new) = (DeviceId::generate(), DeviceId::generate());
    let lone = SessionId::generate();
    f.store
        .move_device(lone, fresh_old, fresh_new, "Firefox".into(), 3_000)
        .await
        .unwrap();
    let devices = f.store.devices(lone).await.unwrap();
    assert_eq!((devices[0].id, devices[0].added), (fresh_new, Added::First));
}

pub async fn idle_devices_are_pruned_and_remembered_and_forgetting_takes_them_all(f: Fixture) {
    let session = SessionId::generate();
    let (idle, busy) = (DeviceId::generate(), DeviceId::generate());
    f.store
        .save(session, change(Some("ada"), None), 1_000)
        .await
        .unwrap();
    f.store
        .see_device(session, idle, "Old phone".into(), 1_000)
        .await
        .unwrap();
    f.store
        .see_device(session, busy, "Desktop".into(), 9_000)
        .await
        .unwrap();
    assert_eq!(f.store.count_idle_devices(5_000).await.unwrap(), 1);
    let pruned = f
        .store
        .prune_devices_batch(5_000, 100, 10_000)
        .await
        .unwrap();
    assert_eq!(pruned, vec![(session, idle)]);
    let other = f.another().await;
    assert_eq!(other.devices(session).await.unwrap().len(), 1);
    assert!(
        other
            .signed_out(100)
            .await
            .unwrap()
            .contains(&(idle, 10_000))
    );
    assert!(
        !other
            .see_device(session, idle, "x".into(), 11_000)
            .await
            .unwrap()
    );
    // The signed out ids are kept until their cookies have expired.
    assert_eq!(other.prune_signed_out(10_001).await.unwrap(), 1);
    assert!(other.signed_out(100).await.unwrap().is_empty());
    // "Forget me" deletes the session and every device.
    assert!(f.store.forget(session, 12_000).await.unwrap());
    assert!(other.devices(session).await.unwrap().is_empty());
}

pub async fn another_instance_finds_which_cookies_were_ended_in_one_question(f: Fixture) {
    let session = SessionId::generate();
    let (desktop, phone) = (DeviceId::generate(), DeviceId::generate());
    f.store
        .save(session, change(Some("ada"), None), 1_000)
        .await
        .unwrap();
    f.store
        .see_device(session, desktop, "Desktop".into(), 1_000)
        .await
        .unwrap();
    f.store
        .add_device(session, phone, "Phone".into(), 1_500, 10)
        .await
        .unwrap();
    let gone = SessionId::generate();
    f.store
        .save(gone, change(Some("gone"), None), 1_000)
        .await
        .unwrap();
    f.store
        .sign_out_devices(session, vec![phone], 2_000)
        .await
        .unwrap();
    assert!(f.store.forget(gone, 3_000).await.unwrap());

    let who = |session, device| Who { session, device };
    let asked = [
        who(session, desktop),
        who(session, phone),
        who(gone, DeviceId::generate()),
        who(SessionId::generate(), DeviceId::generate()),
    ];
    let ended = f.another().await.ended(&asked).await.unwrap();
    if f.postgres.is_some() {
        // Another instance, which has heard nothing yet, learns both from the database.
        assert_eq!(ended.devices, vec![(phone, 2_000)]);
        assert_eq!(ended.sessions, vec![(gone, 3_000)]);
    } else {
        // One process owns a SQLite file: it made both, its memory knows them, nothing is asked.
        assert_eq!(ended, Ended::default());
    }
}

pub async fn the_row_a_cookie_check_read_is_taken_once_and_never_after_a_write(f: Fixture) {
    let session = SessionId::generate();
    let who = Who {
        session,
        device: DeviceId::generate(),
    };
    let name = |stored: Option<livesession::store::StoredSettings>| {
        stored.unwrap().settings.username.as_str().to_owned()
    };
    f.store
        .save(session, change(Some("ada"), None), 1_000)
        .await
        .unwrap();
    let other = f.another().await;
    f.store.ended(&[who]).await.unwrap();
    // Another instance writes after the check read the row: the checked request's page shows
    // what the check read, once; every later read goes to the database.
    other
        .save(session, change(Some("grace"), None), 2_000)
        .await
        .unwrap();
    let first = name(f.store.load_checked(session).await.unwrap());
    assert_eq!(first, if f.postgres.is_some() { "ada" } else { "grace" });
    assert_eq!(name(f.store.load_checked(session).await.unwrap()), "grace");
    // A write here after the check drops what it read: a page never shows less than its own
    // request's write.
    f.store.ended(&[who]).await.unwrap();
    f.store
        .save(session, change(Some("hopper"), None), 3_000)
        .await
        .unwrap();
    assert_eq!(name(f.store.load_checked(session).await.unwrap()), "hopper");
    // A session without a row is checked as one.
    let nobody = Who {
        session: SessionId::generate(),
        device: DeviceId::generate(),
    };
    f.store.ended(&[nobody]).await.unwrap();
    assert_eq!(f.store.load_checked(nobody.session).await.unwrap(), None);
}
