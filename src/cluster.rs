//! Several instances on one PostgreSQL database: what one instance hears of the others.
//!
//! Each instance keeps one listening connection (`Store::listen`),
//! and every write that another instance's pages must see sends a notification as it commits.
//! Here those notifications become the very hub events a local write publishes, so a live socket
//! cannot tell a change made in a tab on this instance from one made on another.
//!
//! When the listening connection drops, notifications sent meanwhile are lost; on reconnecting
//! (and once at startup, for what happened between reading its state and listening), the
//! instance catches up from the tables: it re-reads the forgotten sessions, and tells every
//! live socket to re-read its settings and every chat page to fetch what follows its newest
//! message. Both are reads by id and version, so nothing is missed and nothing is shown twice.
//!
//! Presence is shared through the database too: each instance writes who has the chat open on it
//! when that changes and at every `--presence-heartbeat`, and reads the others' when one of them
//! announces a change, at its own heartbeat and after a reconnect. The list of an instance not
//! heard from for [`HEARTBEATS_TO_EXPIRE`] heartbeats (it died, or lost the database) is dropped;
//! one that stops cleanly withdraws its list at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::hub::SessionEvent;
use crate::site::presence::SETTLE;
use crate::site::{Site, forgotten};
use crate::store::Notice;

/// Notices waiting to be applied before the listener waits for room.
const NOTICE_BUFFER: usize = 4096;

/// An instance's presence list counts for this many of its heartbeats after it was written.
pub const HEARTBEATS_TO_EXPIRE: u32 = 3;

/// Starts hearing the other instances and sharing this one's presence every `heartbeat`, until
/// `shutdown`; `None` when the store is not shared.
pub fn spawn(
    site: Site,
    heartbeat: Duration,
    shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    let (sender, mut notices) = mpsc::channel(NOTICE_BUFFER);
    let listener = site.store.listen(sender, shutdown.clone())?;
    let others_changed = Arc::new(Notify::new());
    let presence = tokio::spawn(share_presence(
        site.clone(),
        heartbeat,
        Arc::clone(&others_changed),
        shutdown,
    ));
    Some(tokio::spawn(async move {
        while let Some(notice) = notices.recv().await {
            apply(&site, &others_changed, notice).await;
        }
        let _ = listener.await;
        let _ = presence.await;
    }))
}

/// Writes this instance's presence when it changes (announced) and at every heartbeat, and
/// reads the others' when `others_changed` says so and at every heartbeat; withdraws it on
/// `shutdown`. A failed write or read is tried again at the next change or heartbeat.
async fn share_presence(
    site: Site,
    heartbeat: Duration,
    others_changed: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let presence = &site.presence;
    let fresh = heartbeat * HEARTBEATS_TO_EXPIRE;
    let mut beats = tokio::time::interval(heartbeat);
    beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (write, announce, read) = tokio::select! {
            () = presence.here_changed() => {
                // Gather a burst of arrivals into one write.
                tokio::select! {
                    () = tokio::time::sleep(SETTLE) => {}
                    () = shutdown.cancelled() => break,
                }
                (true, true, false)
            }
            () = others_changed.notified() => (false, false, true),
            _ = beats.tick() => (true, false, true),
            () = shutdown.cancelled() => break,
        };
        if write && let Err(e) = site.store.share_presence(&presence.here(), announce).await {
            tracing::warn!(error = %e, "cannot share who has the chat open here");
        }
        if read {
            match site.store.others_presence(fresh).await {
                Ok(others) => presence.set_others(others),
                Err(e) => tracing::warn!(error = %e, "cannot read who has the chat open elsewhere"),
            }
        }
    }
    if let Err(e) = site.store.withdraw_presence().await {
        tracing::warn!(error = %e, "cannot withdraw this instance's presence list");
    }
}

/// Does what a local write of the same kind would have done after its commit.
async fn apply(site: &Site, others_changed: &Notify, notice: Notice) {
    let hub = &site.hub;
    match notice {
        Notice::SettingsChanged { id, version } => {
            hub.publish(id, SessionEvent::SettingsChanged { version, origin: 0 });
        }
        Notice::Forgotten { id, at } => {
            site.forgotten.insert(id, at);
            hub.publish(id, SessionEvent::Forgotten);
        }
        Notice::Message { .. } => site.room.wake(),
        Notice::Presence => others_changed.notify_one(),
        Notice::Link { id, expires_at } => {
            site.linking.record(id, expires_at);
            hub.publish(id, SessionEvent::LinkChanged);
        }
        Notice::Resync => {
            match site.store.forgotten(forgotten::IN_MEMORY).await {
                Ok(forgotten) => {
                    for (id, at) in forgotten {
                        if !site.forgotten.contains(id) {
                            site.forgotten.insert(id, at);
                            hub.publish(id, SessionEvent::Forgotten);
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot re-read the forgotten sessions"),
            }
            // A version no row has: every socket re-reads, and renders only what changed.
            hub.publish_all(SessionEvent::SettingsChanged {
                version: i64::MAX,
                origin: 0,
            });
            site.room.wake();
            others_changed.notify_one();
            tracing::info!("caught up with the other instances");
        }
    }
}
