//! In-process publish/subscribe keyed by session id: how one tab's change reaches the session's
//! other tabs. (Chat messages go through the room, `site::room`, which carries them rendered.)
//!
//! Events carry versions and ids, not data: a subscriber that cares reads the current state from
//! the store. That keeps events tiny, makes a lagging subscriber harmless (it reads the newest
//! state anyway), and gives the PostgreSQL backend's `LISTEN`/`NOTIFY` the same shape: `cluster`
//! publishes what another instance wrote as the very events a local write publishes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::lock::Mutex;
use crate::session::{DeviceId, SessionId};

/// Events buffered per session before a slow subscriber starts skipping (and re-reads instead).
/// Small: every session with an open page holds a channel of this many slots, and a subscriber
/// that skips loses nothing (it reads the newest state).
const EVENT_BUFFER: usize = 4;

/// Something happened to a session's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// The settings row now has `version`, changed `by` a socket (which has rendered it
    /// already) or elsewhere.
    SettingsChanged { version: i64, by: ChangedBy },
    /// The settings may have changed, by how much is not known (the subscriber lagged, or this
    /// instance lost the other instances' notifications for a while): read them again, and show
    /// only what differs.
    Reread,
    /// The session was deleted ("forget me"): its pages must reload to get a new one.
    Forgotten,
    /// The session's one-time link code was made, used, cancelled or expired: its settings
    /// pages show it differently.
    LinkChanged,
    /// The session's devices changed (one was added, renamed, signed out or seen): its settings
    /// pages show the list again.
    DevicesChanged,
    /// This device of the session was signed out: its pages must reload into a new session.
    SignedOut(DeviceId),
    /// This device joined the session with a one-time code: the other devices' pages say so.
    Joined(DeviceId),
}

/// Who made a settings change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangedBy {
    /// The live socket of this number (see `Live::next_socket_id`): it shows the change already.
    Socket(u64),
    /// A form post, or another instance: every socket of the session shows it.
    Elsewhere,
}

/// The registry of live sessions.
#[derive(Default)]
pub struct Hub {
    sessions: Mutex<HashMap<SessionId, broadcast::Sender<SessionEvent>>>,
    pages: Mutex<PageSeqs>,
}

impl Hub {
    /// Starts receiving `id`'s events; they stop when the subscription is dropped.
    pub fn subscribe(self: &Arc<Self>, id: SessionId) -> Subscription {
        let mut sessions = self.sessions.lock();
        let receiver = sessions
            .entry(id)
            .or_insert_with(|| broadcast::channel(EVENT_BUFFER).0)
            .subscribe();
        Subscription {
            hub: Arc::clone(self),
            id,
            receiver,
        }
    }

    /// Tells every live socket of `id` about `event`. A session with no socket costs a map lookup.
    pub fn publish(&self, id: SessionId, event: SessionEvent) {
        if let Some(sender) = self.sessions.lock().get(&id) {
            let _ = sender.send(event);
        }
    }

    /// Tells every live socket of every session about `event`.
    pub fn publish_all(&self, event: SessionEvent) {
        for sender in self.sessions.lock().values() {
            let _ = sender.send(event);
        }
    }

    /// How many live sockets session `id` has subscribed.
    pub fn sockets_of(&self, id: SessionId) -> usize {
        self.sessions
            .lock()
            .get(&id)
            .map_or(0, broadcast::Sender::receiver_count)
    }

    /// The last change number acknowledged for a form of a page, surviving the page's
    /// reconnects.
    pub fn acked_seq(&self, id: SessionId, page: &str, form: &'static str) -> u64 {
        self.pages.lock().get(id, page, form)
    }

    /// Records that change `seq` of a form of a page was committed and acknowledged.
    pub fn record_ack(&self, id: SessionId, page: &str, form: &'static str, seq: u64) {
        self.pages.lock().set(id, page, form, seq, Instant::now());
    }
}

/// A live socket's view of its session's events.
pub struct Subscription {
    hub: Arc<Hub>,
    id: SessionId,
    receiver: broadcast::Receiver<SessionEvent>,
}

impl Subscription {
    /// The next event. A subscriber that fell behind gets the newest state instead of the ones it
    /// missed: `Lagged` is reported as [`SessionEvent::Reread`].
    pub async fn recv(&mut self) -> SessionEvent {
        match self.receiver.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(_)) => SessionEvent::Reread,
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut sessions = self.hub.sessions.lock();
        if let Some(sender) = sessions.get(&self.id)
            && sender.receiver_count() <= 1
        {
            sessions.remove(&self.id);
        }
    }
}

/// Page ids are forgotten after this long without a change.
const PAGE_MEMORY: Duration = Duration::from_secs(60 * 60);

/// The most (session, page, form) entries kept. Past it, the oldest half is forgotten. This is
/// only the fast path: the store keeps the same numbers (`page_acks`), so a change resent after
/// that is still recognised there.
const MAX_PAGES: usize = 100_000;

/// The last acknowledged `seq` per (session, page, form).
#[derive(Default)]
struct PageSeqs {
    seqs: HashMap<(SessionId, String, &'static str), (u64, Instant)>,
}

impl PageSeqs {
    fn get(&self, id: SessionId, page: &str, form: &'static str) -> u64 {
        self.seqs
            .get(&(id, page.to_owned(), form))
            .map_or(0, |(seq, _)| *seq)
    }

    fn set(&mut self, id: SessionId, page: &str, form: &'static str, seq: u64, now: Instant) {
        if self.seqs.len() >= MAX_PAGES {
            self.forget_oldest(now);
        }
        let entry = self
            .seqs
            .entry((id, page.to_owned(), form))
            .or_insert((0, now));
        *entry = (entry.0.max(seq), now);
    }

    /// Drops entries idle past [`PAGE_MEMORY`]; if that leaves more than three quarters of
    /// [`MAX_PAGES`], the older half. Either way a quarter of the map is free afterwards, so the
    /// scan is paid once per many inserts, never once per insert.
    fn forget_oldest(&mut self, now: Instant) {
        self.seqs
            .retain(|_, (_, at)| now.duration_since(*at) < PAGE_MEMORY);
        if self.seqs.len() >= MAX_PAGES / 4 * 3 {
            let mut times: Vec<Instant> = self.seqs.values().map(|(_, at)| *at).collect();
            let middle = times.len() / 2;
            let (_, median, _) = times.select_nth_unstable(middle);
            let median = *median;
            self.seqs.retain(|_, (_, at)| *at > median);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_published_event_reaches_every_subscriber_of_that_session_only() {
        let hub = Arc::new(Hub::default());
        let (a, b) = (SessionId::generate(), SessionId::generate());
        let mut tab1 = hub.subscribe(a);
        let mut tab2 = hub.subscribe(a);
        let mut other = hub.subscribe(b);
        let event = SessionEvent::SettingsChanged {
            version: 2,
            by: ChangedBy::Socket(7),
        };
        hub.publish(a, event);
        assert_eq!(tab1.recv().await, event);
        assert_eq!(tab2.recv().await, event);
        let nothing = tokio::time::timeout(Duration::from_millis(20), other.recv()).await;
        assert!(nothing.is_err());
    }

    #[test]
    fn a_session_leaves_the_hub_with_its_last_socket() {
        let hub = Arc::new(Hub::default());
        let id = SessionId::generate();
        let first = hub.subscribe(id);
        let second = hub.subscribe(id);
        drop(first);
        assert_eq!(hub.sockets_of(id), 1);
        assert_eq!(hub.sessions.lock().len(), 1);
        drop(second);
        assert_eq!(hub.sockets_of(id), 0);
        assert!(hub.sessions.lock().is_empty());
    }

    #[test]
    fn acknowledged_seqs_only_grow_and_are_kept_per_page_and_form() {
        let hub = Hub::default();
        let id = SessionId::generate();
        hub.record_ack(id, "page", "settings", 5);
        hub.record_ack(id, "page", "settings", 3);
        assert_eq!(hub.acked_seq(id, "page", "settings"), 5);
        assert_eq!(hub.acked_seq(id, "page", "composer"), 0);
        assert_eq!(hub.acked_seq(id, "other", "settings"), 0);
    }

    #[test]
    fn the_page_memory_is_bounded() {
        let mut pages = PageSeqs::default();
        let start = Instant::now();
        for n in 0..MAX_PAGES + 10 {
            let at = start + Duration::from_millis(n as u64);
            pages.set(SessionId::generate(), "p", "settings", 1, at);
        }
        assert!(pages.seqs.len() <= MAX_PAGES);
        assert!(pages.seqs.len() >= MAX_PAGES / 2 - 1);
    }
}
