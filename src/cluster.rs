//! Several instances on one PostgreSQL database: what one instance hears of the others.
//!
//! Each instance keeps one listening connection (`Store::listen`),
//! and every write that another instance's pages must see sends a notification as it commits.
//! Here those notifications become the very hub events a local write publishes, so a live socket
//! cannot tell a change made in a tab on this instance from one made on another.
//!
//! When the listening connection drops, notifications sent meanwhile are lost; on reconnecting
//! (and once at startup, for what happened between reading its state and listening), the
//! instance catches up from the tables: it re-reads the forgotten sessions, the devices signed
//! out and the live one-time codes, and tells every live socket to re-read its settings and
//! every chat page to fetch what follows its newest message. Both are reads by id and version,
//! so nothing is missed and nothing is shown twice.
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

use crate::site::Site;

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
    let listener = site.listen(sender, shutdown.clone())?;
    let others_changed = Arc::new(Notify::new());
    let presence = {
        let (site, others_changed) = (site.clone(), Arc::clone(&others_changed));
        let fresh = heartbeat.saturating_mul(HEARTBEATS_TO_EXPIRE);
        tokio::spawn(async move {
            site.share_presence(heartbeat, fresh, others_changed, shutdown)
                .await;
        })
    };
    Some(tokio::spawn(async move {
        while let Some(notice) = notices.recv().await {
            site.hear(notice, &others_changed).await;
        }
        let _ = listener.await;
        let _ = presence.await;
    }))
}
