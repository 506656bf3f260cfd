//! Upkeep: pruning stale settings rows and old messages (also by two instances at once), and the
//! health check.

use std::time::Duration;

use livesession::prune::prune_pass;
use livesession::retention::Retention;
use livesession::session::SessionId;
use livesession::shutdown::CancellationToken;

use crate::store::harness::{Fixture, body, change};

pub async fn pruning_takes_only_stale_rows_stalest_first(f: Fixture) {
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

pub async fn messages_are_pruned_by_age_and_by_count(f: Fixture) {
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

pub async fn two_instances_pruning_at_once_delete_each_stale_row_once_and_no_fresh_one(f: Fixture) {
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
        prune_pass(&a, retention, now, &shutdown, |_| {}),
        prune_pass(&b, retention, now, &shutdown, |_| {})
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

pub async fn the_health_check_reads_and_writes(f: Fixture) {
    f.store.ping().await.unwrap();
    f.store.ping().await.unwrap();
}

/// The write-duration histogram means the same on both backends: one observation per write a
/// request waits for (saves, a page's change, touches, forget me, posts), none for reads.
pub async fn each_write_a_request_waits_for_is_timed_once_and_reads_are_not(f: Fixture) {
    let count = |store: &livesession::store::Store| -> u64 {
        store.write_times().snapshot().counts.iter().sum()
    };
    let id = SessionId::generate();
    let before = count(&f.store);
    f.store
        .save(id, change(Some("ada"), None), 1_000)
        .await
        .unwrap();
    let from = livesession::store::PageChange {
        page: "p".into(),
        form: "settings",
        seq: 1,
    };
    f.store
        .save_from_page(id, change(Some("grace"), None), 2_000, from)
        .await
        .unwrap();
    f.store.touch(id, 3_000).await.unwrap();
    f.store
        .post_message(id, body("hello"), "n".into(), 4_000)
        .await
        .unwrap();
    f.store.forget(id, 5_000).await.unwrap();
    assert_eq!(count(&f.store) - before, 5);
    f.store.load(id).await.unwrap();
    f.store.recent_messages(10).await.unwrap();
    f.store.messages_after(0, 10).await.unwrap();
    assert_eq!(count(&f.store) - before, 5, "reads are not writes");
}
