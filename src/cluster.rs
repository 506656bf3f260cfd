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

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::hub::SessionEvent;
use crate::site::{Site, forgotten};
use crate::store::Notice;

/// Notices waiting to be applied before the listener waits for room.
const NOTICE_BUFFER: usize = 4096;

/// Starts hearing the other instances, until `shutdown`; `None` when the store is not shared.
pub fn spawn(site: Site, shutdown: CancellationToken) -> Option<JoinHandle<()>> {
    let (sender, mut notices) = mpsc::channel(NOTICE_BUFFER);
    let listener = site.store.listen(sender, shutdown)?;
    Some(tokio::spawn(async move {
        while let Some(notice) = notices.recv().await {
            apply(&site, notice).await;
        }
        let _ = listener.await;
    }))
}

/// Does what a local write of the same kind would have done after its commit.
async fn apply(site: &Site, notice: Notice) {
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
            tracing::info!("caught up with the other instances");
        }
    }
}
