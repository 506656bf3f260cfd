//! What the other instances sharing the database mean here: their notices become the very hub
//! events a local write publishes, and this instance's presence list is shared with theirs.
//! The task that listens is `crate::cluster`'s; the rules are here.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Site;
use super::account::Ending;
use super::forgotten;
use super::presence::SETTLE;
use crate::hub::{ChangedBy, SessionEvent};
use crate::store::Notice;

impl Site {
    /// Starts hearing the other instances' notices into `notices`, until `shutdown`; `None` when
    /// the store is not shared.
    pub fn listen(
        &self,
        notices: mpsc::Sender<Notice>,
        shutdown: CancellationToken,
    ) -> Option<JoinHandle<()>> {
        self.0.store.listen(notices, shutdown)
    }

    /// Does what a local write of the same kind would have done after its commit;
    /// `others_changed` is told when the other instances' presence lists must be read again.
    pub async fn hear(&self, notice: Notice, others_changed: &Notify) {
        let hub = &self.0.hub;
        match notice {
            Notice::SettingsChanged { id, version } => {
                let by = ChangedBy::Elsewhere;
                hub.publish(id, SessionEvent::SettingsChanged { version, by });
            }
            Notice::Forgotten { id, at } => {
                // Already ended in the database: only this instance's memory of it is left.
                let _ = self.end(id, Ending::Heard(at)).await;
            }
            Notice::Message { .. } => self.0.room.wake(),
            Notice::Presence => others_changed.notify_one(),
            Notice::Link { id, expires_at } => {
                self.0.linking.record(id, expires_at);
                hub.publish(id, SessionEvent::LinkChanged);
            }
            Notice::Devices { session } => hub.publish(session, SessionEvent::DevicesChanged),
            Notice::Joined { session, device } => {
                hub.publish(session, SessionEvent::Joined(device));
                hub.publish(session, SessionEvent::DevicesChanged);
            }
            Notice::SignedOut {
                session,
                device,
                at,
            } => self.signed_out_at(session, device, at),
            Notice::Resync => {
                match self.0.store.signed_out(forgotten::IN_MEMORY).await {
                    Ok(signed_out) => {
                        for (device, at) in signed_out {
                            if !self.is_signed_out(device) {
                                self.0.signed_out.insert(device, at);
                            }
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot re-read the signed out devices"),
                }
                match self.0.store.forgotten(forgotten::IN_MEMORY).await {
                    Ok(forgotten) => {
                        for (id, at) in forgotten {
                            if !self.is_forgotten(id) {
                                let _ = self.end(id, Ending::Heard(at)).await;
                            }
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot re-read the forgotten sessions"),
                }
                // Codes made, used or cancelled elsewhere meanwhile: settings pages show them
                // from now on as the database has them.
                match self.0.store.live_links(crate::clock::now_millis()).await {
                    Ok(live) => self.0.linking.record_all(live),
                    Err(e) => tracing::error!(error = %e, "cannot re-read the live link codes"),
                }
                hub.publish_all(SessionEvent::Reread);
                self.0.room.wake();
                others_changed.notify_one();
                tracing::info!("caught up with the other instances");
            }
        }
    }

    /// Writes this instance's presence when it changes (announced) and at every `heartbeat`, and
    /// reads the others' when `others_changed` says so and at every heartbeat, counting lists
    /// written within `fresh`; withdraws it on `shutdown`. A failed write or read is tried again
    /// at the next change or heartbeat.
    pub async fn share_presence(
        &self,
        heartbeat: Duration,
        fresh: Duration,
        others_changed: Arc<Notify>,
        shutdown: CancellationToken,
    ) {
        let (presence, store) = (&self.0.presence, &self.0.store);
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
            if write && let Err(e) = store.share_presence(&presence.here(), announce).await {
                tracing::warn!(error = %e, "cannot share who has the chat open here");
            }
            if read {
                match store.others_presence(fresh).await {
                    Ok(others) => presence.set_others(others),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read who has the chat open elsewhere");
                    }
                }
            }
        }
        if let Err(e) = store.withdraw_presence().await {
            tracing::warn!(error = %e, "cannot withdraw this instance's presence list");
        }
    }
}
