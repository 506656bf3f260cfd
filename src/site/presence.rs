//! Who is on the chat page now: one entry per browser (session) with an open chat socket, however
//! many tabs it has, named as it is named in its settings; the unnamed are counted, not listed.
//!
//! A socket that joins the chat is counted in with [`Presence::arrive`] and counted out when the
//! guard it gets is dropped. A browser whose last chat socket closed stays listed for the
//! `--presence-grace`, so a reload (the old socket closes, the new page's joins a moment later)
//! does not make it blink out of everyone's list. On PostgreSQL every instance shares what it
//! has (`cluster` writes it, with a heartbeat) and lists the others' too ([`Presence::set_others`]).
//!
//! A crowd of fresh sessions from one address (new browsers minted to fill the list) costs a
//! number, not names: of the browsers whose session is younger than [`FRESH_FOR`], each address
//! (an IPv6 client by its /64) has its first [`FRESH_NAMED_PER_ADDRESS`] named and the rest
//! counted as "and N more". People who have used the chat before are named however many share
//! an address.
//!
//! The list is rendered once per change, not once per page: a publisher task coalesces changes
//! for [`SETTLE`], renders the [`Roster`] into shared bytes and hands it to every chat page
//! through a `watch` channel, which holds only the newest: a slow page skips to it, nothing
//! queues up behind it.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::lock::Mutex;
use crate::session::SessionId;
use crate::settings::Username;
use crate::store::Present;
use crate::views::{
    self, PRESENCE_ITEM_OVERHEAD, PRESENCE_LIST_BYTES, PRESENCE_NAMES, PresenceList, listed_name,
};

/// How long changes are gathered before the list is rendered again: a burst of arrivals (a
/// room filling up, an instance restarting) costs one render and one frame per page.
pub const SETTLE: Duration = Duration::from_millis(100);

/// The shortest time between two lists sent to the pages: however fast browsers come and go, a
/// chat page gets at most four presence frames a second (of at most about 8 KB each).
pub const MIN_GAP: Duration = Duration::from_millis(250);

/// How young a session is fresh: younger ones count under [`FRESH_NAMED_PER_ADDRESS`].
pub const FRESH_FOR: Duration = Duration::from_secs(3600);

/// Fresh sessions from one address named in the list; more are counted, not named.
pub const FRESH_NAMED_PER_ADDRESS: usize = 3;

/// The chat's presence of this instance and, on PostgreSQL, of the others.
pub struct Presence {
    state: Mutex<State>,
    /// How long a browser stays listed after its last chat socket closed.
    grace: Duration,
    /// Wakes the publisher.
    changed: Notify,
    /// Wakes whoever shares this instance's entries with the others.
    local_changed: Notify,
    roster: watch::Sender<Arc<Roster>>,
}

#[derive(Default)]
struct State {
    here: HashMap<SessionId, Here>,
    others: HashMap<SessionId, Present>,
    /// Numbers arrivals, so the first of a crowd are the ones named.
    arrivals: u64,
}

/// A browser with (or, for the grace, recently with) a chat socket on this instance.
struct Here {
    sockets: usize,
    name: String,
    /// When its last socket closed.
    left: Option<Instant>,
    /// Its address (as limits count it) while its session is fresh; `None` once it is not.
    fresh_from: Option<IpAddr>,
    /// Its place in the order of arrivals.
    arrival: u64,
}

impl State {
    /// Every browser listed here, the crowds of fresh sessions marked.
    fn here(&self) -> Vec<Present> {
        let mut fresh: HashMap<IpAddr, Vec<(u64, SessionId)>> = HashMap::new();
        for (id, here) in &self.here {
            if let Some(from) = here.fresh_from
                && !here.name.is_empty()
            {
                fresh.entry(from).or_default().push((here.arrival, *id));
            }
        }
        let mut crowded = HashSet::new();
        for mut of_one in fresh.into_values() {
            if of_one.len() > FRESH_NAMED_PER_ADDRESS {
                of_one.sort_unstable_by_key(|(arrival, _)| *arrival);
                crowded.extend(of_one[FRESH_NAMED_PER_ADDRESS..].iter().map(|(_, id)| *id));
            }
        }
        self.here
            .iter()
            .map(|(id, here)| Present {
                id: *id,
                name: here.name.clone(),
                crowded: crowded.contains(id),
            })
            .collect()
    }
}

/// The list as every chat page shows it at one moment, rendered once.
#[derive(Debug, Default)]
pub struct Roster {
    /// Grows with every change; the page sends the one it shows when it joins.
    pub version: u64,
    ids: HashSet<SessionId>,
    /// Names, sorted as shown.
    names: Vec<String>,
    /// Named browsers of a crowd of fresh sessions: counted, not named.
    crowded: usize,
    anonymous: usize,
    frame: Utf8Bytes,
}

impl Roster {
    /// The list of `people` (by session; an empty name for the unnamed), not rendered yet.
    fn of(people: &HashMap<SessionId, Present>) -> Roster {
        let mut names: Vec<String> = people
            .values()
            .filter(|p| !p.name.is_empty() && !p.crowded)
            .map(|p| p.name.clone())
            .collect();
        names.sort_by_cached_key(|name| (name.to_lowercase(), name.clone()));
        let anonymous = people.values().filter(|p| p.name.is_empty()).count();
        Roster {
            version: 0,
            ids: people.keys().copied().collect(),
            crowded: people.len() - names.len() - anonymous,
            anonymous,
            names,
            frame: Utf8Bytes::default(),
        }
    }

    /// Numbers the list `version` and renders its frame.
    fn rendered(mut self, version: u64) -> Roster {
        self.version = version;
        let html = views::presence_items(&self.list()).into_string();
        let frame = serde_json::json!({ "t": "presence", "html": html, "version": version });
        self.frame = Utf8Bytes::from(frame.to_string());
        self
    }

    /// The list to show.
    pub fn list(&self) -> PresenceList<'_> {
        // At most PRESENCE_NAMES names, and only as many as fit in PRESENCE_LIST_BYTES.
        let mut bytes = 0;
        let shown = self
            .names
            .iter()
            .take(PRESENCE_NAMES)
            .take_while(|name| {
                bytes += listed_name(name).len() + PRESENCE_ITEM_OVERHEAD;
                bytes <= PRESENCE_LIST_BYTES
            })
            .count();
        PresenceList {
            version: self.version,
            names: self.names[..shown].iter().map(String::as_str).collect(),
            more: self.names.len() - shown + self.crowded,
            anonymous: self.anonymous,
        }
    }

    /// The list to show on the first render of `viewer`'s page: the viewer is about to join, so
    /// it is listed already (once, if another tab of it is counted).
    pub fn list_with<'a>(&'a self, viewer: SessionId, name: &'a Username) -> PresenceList<'a> {
        let mut list = self.list();
        if !self.ids.contains(&viewer) {
            if name.is_anonymous() {
                list.anonymous += 1;
            } else {
                let key = name.as_str().to_lowercase();
                let at = list.names.partition_point(|n| n.to_lowercase() <= key);
                list.names.insert(at, name.as_str());
                if list.names.len() > PRESENCE_NAMES {
                    list.names.pop();
                    list.more += 1;
                }
            }
        }
        list
    }

    /// How many browsers are listed.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether nobody is.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The `presence` frame a live page gets: the same bytes for every page.
    pub fn frame(&self) -> &Utf8Bytes {
        &self.frame
    }
}

/// A chat socket's place in the list: dropping it counts the socket out.
pub struct Arrival {
    presence: Arc<Presence>,
    id: SessionId,
}

impl Drop for Arrival {
    fn drop(&mut self) {
        self.presence.leave(self.id);
    }
}

impl Presence {
    /// Nobody here yet; a browser stays listed `grace` after its last socket.
    pub fn new(grace: Duration) -> Presence {
        Presence {
            state: Mutex::default(),
            grace,
            changed: Notify::new(),
            local_changed: Notify::new(),
            roster: watch::channel(Arc::new(Roster::of(&HashMap::new()).rendered(0))).0,
        }
    }

    /// The list as it is now.
    pub fn roster(&self) -> Arc<Roster> {
        Arc::clone(&self.roster.borrow())
    }

    /// Receives every new list from now on (a slow receiver sees only the newest).
    pub fn watch(&self) -> watch::Receiver<Arc<Roster>> {
        self.roster.subscribe()
    }

    /// Counts in a chat socket of `id`, which is named `name`; `fresh_from` is its address
    /// (as limits count it) when its session is younger than [`FRESH_FOR`].
    pub fn arrive(
        self: &Arc<Self>,
        id: SessionId,
        name: &Username,
        fresh_from: Option<IpAddr>,
    ) -> Arrival {
        let mut state = self.state.lock();
        state.arrivals += 1;
        let arrival = state.arrivals;
        let here = state.here.entry(id).or_insert_with(|| Here {
            sockets: 0,
            name: name.as_str().to_owned(),
            left: None,
            fresh_from,
            arrival,
        });
        here.sockets += 1;
        if fresh_from.is_none() {
            here.fresh_from = None;
        }
        let back = here.left.take().is_some();
        let new = here.sockets == 1 && !back;
        let renamed = here.name != name.as_str();
        here.name = name.as_str().to_owned();
        drop(state);
        if new || renamed {
            self.changed_here();
        }
        Arrival {
            presence: Arc::clone(self),
            id,
        }
    }

    /// `id` (counted in here) is now named `name`: the list shows it at once.
    pub fn rename(&self, id: SessionId, name: &Username) {
        let mut state = self.state.lock();
        let Some(here) = state.here.get_mut(&id) else {
            return;
        };
        if here.name == name.as_str() {
            return;
        }
        here.name = name.as_str().to_owned();
        drop(state);
        self.changed_here();
    }

    fn leave(&self, id: SessionId) {
        let mut state = self.state.lock();
        let Some(here) = state.here.get_mut(&id) else {
            return;
        };
        here.sockets = here.sockets.saturating_sub(1);
        if here.sockets == 0 {
            here.left = Some(Instant::now());
        }
        drop(state);
        // Nothing shows yet: the publisher only has to know when the grace ends.
        self.changed.notify_one();
    }

    fn changed_here(&self) {
        self.changed.notify_one();
        self.local_changed.notify_one();
    }

    /// What this instance counts, for the other instances: every browser listed here.
    pub fn here(&self) -> Vec<Present> {
        self.state.lock().here()
    }

    /// Resolves when what [`Presence::here`] returns may have changed.
    pub async fn here_changed(&self) {
        self.local_changed.notified().await;
    }

    /// The browsers the other instances count, replacing what they counted before.
    pub fn set_others(&self, others: Vec<Present>) {
        let others: HashMap<SessionId, Present> = others.into_iter().map(|p| (p.id, p)).collect();
        let mut state = self.state.lock();
        if state.others == others {
            return;
        }
        state.others = others;
        drop(state);
        self.changed.notify_one();
    }

    /// Drops the browsers whose grace ended by `now`; the next end of a grace, if any.
    fn expire(&self, now: Instant) -> (bool, Option<Instant>) {
        let mut state = self.state.lock();
        let before = state.here.len();
        state
            .here
            .retain(|_, here| here.left.is_none_or(|left| now < left + self.grace));
        let next = state
            .here
            .values()
            .filter_map(|here| here.left)
            .min()
            .map(|left| left + self.grace);
        (state.here.len() != before, next)
    }

    /// Renders the list as it is now, and hands it to every page when it differs from the last.
    fn publish(&self) {
        let people: HashMap<SessionId, Present> = {
            let state = self.state.lock();
            let mut people = state.others.clone();
            people.extend(state.here().into_iter().map(|p| (p.id, p)));
            people
        };
        let roster = Roster::of(&people);
        let current = self.roster();
        if roster.ids == current.ids
            && roster.names == current.names
            && roster.crowded == current.crowded
        {
            return;
        }
        self.roster
            .send_replace(Arc::new(roster.rendered(current.version + 1)));
    }

    /// Publishes each change, [`SETTLE`] after it, until `shutdown`.
    pub fn spawn(self: &Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let presence = Arc::clone(self);
        tokio::spawn(async move {
            let mut next_expiry: Option<Instant> = None;
            let mut last_published: Option<Instant> = None;
            loop {
                let expiry = async {
                    match next_expiry {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = presence.changed.notified() => {
                        let settled = Instant::now() + SETTLE;
                        let at = last_published.map_or(settled, |last| settled.max(last + MIN_GAP));
                        tokio::select! {
                            () = tokio::time::sleep_until(at) => {}
                            () = shutdown.cancelled() => return,
                        }
                    }
                    () = expiry => {}
                    () = shutdown.cancelled() => return,
                }
                let (expired, next) = presence.expire(Instant::now());
                next_expiry = next;
                if expired {
                    presence.local_changed.notify_one();
                }
                presence.publish();
                last_published = Some(Instant::now());
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(5);

    fn name(s: &str) -> Username {
        Username::parse(s).unwrap()
    }

    async fn settled(presence: &Presence) -> Arc<Roster> {
        tokio::time::sleep(SETTLE * 2).await;
        presence.roster()
    }

    fn person(id: SessionId, name: &str) -> Present {
        Present {
            id,
            name: name.to_owned(),
            crowded: false,
        }
    }

    fn names(roster: &Roster) -> (Vec<&str>, usize) {
        let list = roster.list();
        (list.names, list.anonymous)
    }

    #[tokio::test(start_paused = true)]
    async fn a_browser_is_listed_once_however_many_tabs_and_the_unnamed_are_counted() {
        let presence = Arc::new(Presence::new(GRACE));
        let _task = presence.spawn(CancellationToken::new());
        let ada = SessionId::generate();
        let _tab1 = presence.arrive(ada, &name("Ada"), None);
        let _tab2 = presence.arrive(ada, &name("Ada"), None);
        let _bob = presence.arrive(SessionId::generate(), &name("bob"), None);
        let _x = presence.arrive(SessionId::generate(), &Username::default(), None);
        let _y = presence.arrive(SessionId::generate(), &Username::default(), None);
        let roster = settled(&presence).await;
        assert_eq!(names(&roster), (vec!["Ada", "bob"], 2));
        assert_eq!(roster.len(), 4);
        assert!(roster.frame().contains("\"t\":\"presence\""));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_within_the_grace_changes_nothing_and_leaving_shows_after_it() {
        let presence = Arc::new(Presence::new(GRACE));
        let _task = presence.spawn(CancellationToken::new());
        let ada = SessionId::generate();
        let tab = presence.arrive(ada, &name("Ada"), None);
        let version = settled(&presence).await.version;
        drop(tab);
        tokio::time::sleep(GRACE / 2).await;
        let again = presence.arrive(ada, &name("Ada"), None);
        let roster = settled(&presence).await;
        assert_eq!(roster.version, version, "a reload is not a change");
        drop(again);
        tokio::time::sleep(GRACE - SETTLE).await;
        assert_eq!(presence.roster().len(), 1, "still within the grace");
        let roster = settled(&presence).await;
        assert!(roster.is_empty(), "gone after the grace");
        assert!(presence.here().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_rename_shows_at_once_and_other_instances_are_merged_by_session() {
        let presence = Arc::new(Presence::new(GRACE));
        let _task = presence.spawn(CancellationToken::new());
        let ada = SessionId::generate();
        let _tab = presence.arrive(ada, &name("Ada"), None);
        presence.rename(ada, &name("Ada L."));
        let elsewhere = SessionId::generate();
        presence.set_others(vec![
            Present {
                id: ada,
                name: "Ada L.".into(),
                crowded: false,
            },
            Present {
                id: elsewhere,
                name: "Carol".into(),
                crowded: false,
            },
        ]);
        let roster = settled(&presence).await;
        assert_eq!(names(&roster), (vec!["Ada L.", "Carol"], 0));
        presence.set_others(Vec::new());
        assert_eq!(names(&*settled(&presence).await), (vec!["Ada L."], 0));
    }

    #[test]
    fn the_first_render_lists_its_viewer_once() {
        let ada = SessionId::generate();
        let mut people = HashMap::new();
        people.insert(ada, person(ada, "Ada"));
        let roster = Roster::of(&people).rendered(1);
        let (same, zed, abe, nobody) = (name("Ada"), name("Zed"), name("abe"), Username::default());
        let list = roster.list_with(ada, &same);
        assert_eq!((list.names, list.anonymous), (vec!["Ada"], 0));
        let list = roster.list_with(SessionId::generate(), &zed);
        assert_eq!(list.names, vec!["Ada", "Zed"]);
        let list = roster.list_with(SessionId::generate(), &abe);
        assert_eq!(list.names, vec!["abe", "Ada"]);
        let list = roster.list_with(SessionId::generate(), &nobody);
        assert_eq!((list.names.len(), list.anonymous), (1, 1));
    }

    #[test]
    fn a_full_room_lists_the_first_hundred_names_and_counts_the_rest() {
        let people: HashMap<SessionId, Present> = (0..150)
            .map(|n| {
                let id = SessionId::generate();
                (id, person(id, &format!("p{n:03}")))
            })
            .collect();
        let roster = Roster::of(&people).rendered(1);
        let list = roster.list();
        assert_eq!((list.names.len(), list.more), (PRESENCE_NAMES, 50));
        assert_eq!(list.names[0], "p000");
        let late = name("zz");
        let list = roster.list_with(SessionId::generate(), &late);
        assert_eq!((list.names.len(), list.more), (PRESENCE_NAMES, 51));
        let early = name("a");
        let list = roster.list_with(SessionId::generate(), &early);
        assert_eq!((list.names[0], list.more), ("a", 51));
        let html = views::presence_items(&roster.list()).into_string();
        assert!(html.contains("and 50 more"), "{html}");
        assert_eq!(html.matches("<li>").count(), PRESENCE_NAMES);
    }

    #[tokio::test(start_paused = true)]
    async fn a_crowd_of_fresh_sessions_from_one_address_is_counted_and_old_ones_are_named() {
        let presence = Arc::new(Presence::new(GRACE));
        let _task = presence.spawn(CancellationToken::new());
        let crowd: IpAddr = "192.0.2.7".parse().unwrap();
        let neighbour: IpAddr = "2001:db8::1".parse().unwrap();
        let mut tabs = Vec::new();
        for n in 0..8 {
            let id = SessionId::generate();
            tabs.push(presence.arrive(id, &name(&format!("fresh{n}")), Some(crowd)));
        }
        // Old hands on the same address, a fresh one elsewhere, and an unnamed fresh one.
        for n in 0..5 {
            let id = SessionId::generate();
            tabs.push(presence.arrive(id, &name(&format!("old{n}")), None));
        }
        tabs.push(presence.arrive(SessionId::generate(), &name("other"), Some(neighbour)));
        tabs.push(presence.arrive(SessionId::generate(), &Username::default(), Some(crowd)));
        let roster = settled(&presence).await;
        let list = roster.list();
        assert_eq!(
            list.names,
            vec![
                "fresh0", "fresh1", "fresh2", "old0", "old1", "old2", "old3", "old4", "other"
            ]
        );
        assert_eq!((list.more, list.anonymous), (5, 1));
        let shared = presence.here();
        assert_eq!(shared.iter().filter(|p| p.crowded).count(), 5);
        // Another instance counts the crowd the same way from what this one shares.
        let elsewhere = Arc::new(Presence::new(GRACE));
        let _other_task = elsewhere.spawn(CancellationToken::new());
        elsewhere.set_others(shared);
        assert_eq!(settled(&elsewhere).await.list().more, 5);
        // When the first of the crowd leaves, the next in line is named.
        tabs.remove(0);
        tokio::time::sleep(GRACE).await;
        let list = settled(&presence).await.list().names.join(" ");
        assert!(
            list.contains("fresh3") && !list.contains("fresh0"),
            "{list}"
        );
    }
}
