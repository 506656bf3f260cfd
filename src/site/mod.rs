//! The site: the only door from the transports down to the state. A page view, a form post and a
//! live socket all arrive here, and each use case is one method, written once, that both `http`
//! and `live` call: read a session's settings ([`Site::settings_for`]), save them
//! ([`Site::save_settings`]), post a chat message ([`Site::post_message`]), catch a page up
//! ([`Site::catch_up`]), forget a browser ([`Site::forget`]), link a device
//! ([`Site::make_link`], [`Site::use_link`]), sign the others out ([`Site::sign_out_elsewhere`]),
//! download its data ([`Site::export`]), answer a health check ([`Site::health`]).
//!
//! Its state is private: the store, the hub, the forgotten ids, the rate limiters, the chat
//! room's log of rendered messages ([`room`]), who has the chat open ([`presence`]), the live
//! one-time codes, the cache of rendered settings pages. The transports see the values the use
//! cases answer with, never the parts.
//!
//! - [`settings`](Site::save_settings): reading and saving a session's settings.
//! - `chat`: posting, the chat's pages, catching a page up, its rate limits.
//! - `account`: what a browser does with its own session: forget it, sign out everywhere else,
//!   download its data; and the one way a session id stops working.
//! - `linking`: one-time codes for another device.
//! - `cookie`: which session a request's cookie names, and when it is refused.
//! - `cluster`: what another instance's notification does here.
//! - `ended`: on a shared database, whether a cookie this instance accepts was signed out or
//!   forgotten on another one a moment ago, before its notification came.
//! - [`room`], [`presence`], `forgotten`, `limits`, `client`: the runtime state behind them.

mod account;
mod chat;
mod client;
mod cluster;
mod cookie;
mod devices;
mod disk;
mod ended;
mod forgotten;
mod late;
mod limits;
mod linking;
pub mod presence;
pub mod room;
mod settings;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use account::{
    EXPORT_LIMIT_PER_ADDRESS, EXPORT_LIMIT_PER_SESSION, FORGET_LIMIT, Limited, SIGN_OUT_LIMIT,
};
pub use chat::{ChatLimits, ChatPage, Missed, PostError};
pub use client::ClientAddr;
pub use devices::{DeviceChange, DeviceList};
pub use late::{LateEdit, Overtaken};
pub use limits::Whose;
pub use linking::Found;
pub use linking::{ATTEMPTS_PER_ADDRESS, CODES_PER_ADDRESS, CODES_PER_SESSION, LOOKS_PER_CODE};
pub use settings::SaveOutcome;

/// Types the use cases answer with, from the layers below, so the transports name them here.
pub use crate::hub::{ChangedBy, SessionEvent, Subscription};
pub use crate::store::{SessionData, StoreError, Unavailable};

use crate::clock::{Millis, now_millis};
use crate::hub::Hub;
use crate::metrics::metrics;
use crate::origin::Origins;
use crate::retention::{Pruned, Retention};
use crate::session::{Keys, Session, SessionId};
use crate::store::Store;
use crate::views::{PageCache, QrCache};
use account::ExportLimiters;
use chat::ChatLimiters;
use forgotten::{Forgotten, SignedOut};
use limits::RateLimiter;
use presence::{Arrival, Presence, Roster};
use room::{RenderedMessage, Room};

/// The site: one pointer, so the clone axum makes for every request is a reference count.
#[derive(Clone)]
pub struct Site(Arc<Parts>);

/// What a [`Site`] is opened with: the store and the keys the wiring made, and the settings of
/// the rules.
pub struct Setup {
    /// Where everything is kept.
    pub store: Store,
    /// Signs session cookies and derives CSRF tokens.
    pub keys: Keys,
    /// When rows go stale, and how often reads may write.
    pub retention: Retention,
    /// How fast each browser, each client address and the room may send chat messages.
    pub chat_limits: ChatLimits,
    /// How many new sessions one client address may save (`--new-sessions-per-ip`).
    pub new_sessions: crate::limit::RateLimit,
    /// The data dir, and the free space under which new sessions are not saved
    /// (`--min-free-disk`; 0: never).
    pub min_free_disk: (std::path::PathBuf, u64),
    /// The chat messages the database keeps at most (`--message-limit`): the room's log never
    /// holds more.
    pub message_limit: usize,
    /// How long a browser stays in the presence list after its last chat page closed.
    pub presence_grace: Duration,
    /// How long a one-time code lives (`--link-ttl`).
    pub link_ttl: Duration,
    /// What the links for another device name (`--public-url`, the listening address, the LAN
    /// address).
    pub origins: Origins,
    /// The most devices one session may have (`--max-devices`).
    pub max_devices: usize,
}

/// The parts of a [`Site`]: private, so every use of them is one of the site's methods.
struct Parts {
    store: Store,
    keys: Keys,
    retention: Retention,
    /// Carries changes between the sockets of a session.
    hub: Arc<Hub>,
    chat_limits: ChatLimiters,
    /// Sessions deleted by "forget me", refused from now on.
    forgotten: Forgotten,
    /// Devices signed out, refused from now on.
    signed_out: SignedOut,
    /// Asks the database whether an accepted cookie was ended on another instance meanwhile.
    ended: ended::EndedCheck,
    /// When this instance last wrote each device's activity.
    seen: devices::Seen,
    /// How often each browser may sign out every other device.
    sign_out_limit: RateLimiter<SessionId>,
    /// The most devices one session may have.
    max_devices: usize,
    /// How often each client address may ask to be forgotten or sign out elsewhere.
    forget_limit: RateLimiter<std::net::IpAddr>,
    /// First saves of a session, per client address.
    new_sessions: RateLimiter<std::net::IpAddr>,
    /// Holds new sessions back while the disk is short of space.
    disk: disk::DiskGuard,
    export_limits: ExportLimiters,
    /// Rendered settings pages of recent visitors.
    pages: PageCache,
    /// The QR codes of recent one-time links.
    qr_codes: QrCache,
    /// The chat's newest messages, rendered once, and the channel to every chat page.
    room: Arc<Room>,
    /// Who has the chat open, here and on the other instances.
    presence: Arc<Presence>,
    /// One-time codes for other devices: their limits and the live ones made here.
    linking: linking::Linking,
    origins: Origins,
}

/// The site's background tasks, from [`Site::spawn_tasks`]: each finishes after the shutdown
/// token is cancelled.
pub struct Tasks {
    /// The chat room's reader of new messages.
    pub room: JoinHandle<()>,
    /// The presence list's publisher.
    pub presence: JoinHandle<()>,
}

/// Where a change comes from: it decides what the answer waits for, and how a resend is known.
#[derive(Debug, Clone, Copy)]
pub enum Via<'a> {
    /// A plain form post, answered with a redirect to a page that must show the change.
    Form,
    /// A live page: change number `seq` of its form `form`, sent by socket `socket` (which
    /// shows the change already). A number already acknowledged is a resend after a reconnect,
    /// and changes nothing; the acknowledgement waits for the commit only.
    Page {
        /// The page's own random id, the same over its reconnects.
        page: &'a str,
        /// Which of the page's forms.
        form: &'static str,
        /// The change's number, growing per page and form.
        seq: u64,
        /// The socket's number (see `Live::next_socket_id`).
        socket: u64,
    },
}

impl Via<'_> {
    /// True when `self` is a live page's change that was acknowledged before.
    fn acked_before(&self, site: &Site, id: SessionId) -> bool {
        match *self {
            Via::Form => false,
            Via::Page {
                page, form, seq, ..
            } => seq <= site.0.hub.acked_seq(id, page, form),
        }
    }

    /// Records that the change was committed (or changed nothing), so a resend is known.
    fn record_ack(&self, site: &Site, id: SessionId) {
        if let Via::Page {
            page, form, seq, ..
        } = *self
        {
            site.0.hub.record_ack(id, page, form, seq);
        }
    }
}

/// How a health check found the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// It answered, and takes writes.
    Ok,
    /// It did not; the reason, for the operator.
    Unavailable(&'static str),
    /// It answers, but free disk space is under `--min-free-disk`: new sessions are not saved.
    LowDisk,
}

/// How long a health check waits for the database.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

impl Site {
    /// Opens the site over `setup`: reads the forgotten ids (so their cookies are refused from
    /// the first request) and the newest chat messages (so the first chat page comes from memory).
    pub async fn open(setup: Setup) -> Result<Site, StoreError> {
        let Setup {
            store,
            keys,
            retention,
            chat_limits,
            new_sessions,
            min_free_disk,
            message_limit,
            presence_grace,
            link_ttl,
            origins,
            max_devices,
        } = setup;
        let forgotten = Forgotten::default();
        for (id, at) in store.forgotten(forgotten::IN_MEMORY).await? {
            forgotten.insert(id, at);
        }
        let signed_out = SignedOut::default();
        for (id, at) in store.signed_out(forgotten::IN_MEMORY).await? {
            signed_out.insert(id, at);
        }
        let room = Arc::new(Room::new(message_limit));
        room.load(&store).await?;
        Ok(Site(Arc::new(Parts {
            store,
            keys,
            retention,
            hub: Arc::new(Hub::default()),
            chat_limits: ChatLimiters::new(chat_limits),
            forgotten,
            signed_out,
            ended: ended::EndedCheck::default(),
            seen: devices::Seen::default(),
            sign_out_limit: RateLimiter::new(SIGN_OUT_LIMIT),
            max_devices,
            forget_limit: RateLimiter::new(FORGET_LIMIT),
            new_sessions: RateLimiter::new(new_sessions),
            disk: disk::DiskGuard::new(min_free_disk.0, min_free_disk.1),
            export_limits: ExportLimiters::default(),
            pages: PageCache::default(),
            qr_codes: QrCache::default(),
            room,
            presence: Arc::new(Presence::new(presence_grace)),
            linking: linking::Linking::new(link_ttl),
            origins,
        })))
    }

    /// Starts the site's background work: the room's reader and the presence list's publisher,
    /// until `shutdown`.
    pub fn spawn_tasks(&self, shutdown: CancellationToken) -> Tasks {
        Tasks {
            room: self.0.room.spawn(self.0.store.clone(), shutdown.clone()),
            presence: self.0.presence.spawn(shutdown),
        }
    }

    /// What the links for another device name: the origin for a request's `Host`.
    pub fn origins(&self) -> &Origins {
        &self.0.origins
    }

    /// Signs session cookies and derives CSRF tokens: pure functions of the keys.
    pub fn keys(&self) -> &Keys {
        &self.0.keys
    }

    /// True when `token` is the CSRF token of session `id`'s pages.
    pub fn verify_csrf(&self, id: SessionId, token: &str) -> bool {
        self.0.keys.verify_csrf(id, token)
    }

    /// The CSRF token of session `id`'s pages.
    pub fn csrf_token(&self, id: SessionId) -> String {
        self.0.keys.csrf_token(id)
    }

    /// When rows go stale, and how often reads may write.
    pub fn retention(&self) -> Retention {
        self.0.retention
    }

    /// The SVG of the QR code of the link `url`, drawn once per link.
    pub fn qr_svg(&self, url: &str) -> std::sync::Arc<str> {
        self.0.qr_codes.svg(url)
    }

    /// The cache of rendered settings pages (the page is `views`', the cache the site's state).
    pub fn pages(&self) -> &PageCache {
        &self.0.pages
    }

    /// Every metric in the Prometheus text format, with `live_sockets` open and the store's
    /// write times read now.
    pub fn metrics_text(&self, live_sockets: usize) -> String {
        metrics().encode(live_sockets, self.0.store.write_times())
    }

    /// True when session `id` was forgotten (here or on another instance): its cookie is
    /// refused, and never issued again.
    pub fn is_forgotten(&self, id: SessionId) -> bool {
        self.0.forgotten.contains(id)
    }

    /// An open live page counts as use: bumps session `id`'s activity time, so the row is not
    /// pruned while a page shows it. A failure is logged, and tried again at the next touch.
    pub async fn touch(&self, session: Session) {
        metrics().touched();
        match self.0.store.touch(session.id, now_millis()).await {
            Ok(Some(_)) => self.seen(session).await,
            Ok(None) => {}
            Err(e) => {
                metrics().database_error(&e);
                tracing::warn!(error = %e, "live: touching the session failed");
            }
        }
    }

    /// Starts receiving session `id`'s events (its settings changed, it was forgotten, its code
    /// changed), for a live socket; they stop when the subscription is dropped.
    pub fn subscribe(&self, id: SessionId) -> Subscription {
        self.0.hub.subscribe(id)
    }

    /// How many live sockets session `id` has subscribed.
    pub fn sockets_of(&self, id: SessionId) -> usize {
        self.0.hub.sockets_of(id)
    }

    /// Starts receiving the chat room's new messages, rendered.
    pub fn room_feed(&self) -> tokio::sync::broadcast::Receiver<Arc<RenderedMessage>> {
        self.0.room.subscribe()
    }

    /// Who has the chat open, now.
    pub fn roster(&self) -> Arc<Roster> {
        self.0.presence.roster()
    }

    /// Who has the chat open, as it changes.
    pub fn watch_roster(&self) -> watch::Receiver<Arc<Roster>> {
        self.0.presence.watch()
    }

    /// Counts a chat page of `session` (shown as `name`, opened `from` an address) in the
    /// presence list until the arrival is dropped. A session younger than
    /// [`presence::FRESH_FOR`] is one of its address's crowd: past the first few of them it is
    /// counted, not named (also once it takes a name later, by a rename).
    pub async fn arrive(
        &self,
        session: Session,
        name: &crate::settings::Username,
        from: std::net::IpAddr,
    ) -> Arrival {
        let fresh = self.is_fresh(session.id).await;
        let fresh_from = fresh.then(|| crate::address::limit_key(from));
        self.0.presence.arrive(session.id, name, fresh_from)
    }

    /// Whether `id`'s first device was added within [`presence::FRESH_FOR`] (a session whose
    /// devices cannot be read now counts as not fresh: it is named, as always).
    async fn is_fresh(&self, id: SessionId) -> bool {
        let fresh_for = Millis::try_from(presence::FRESH_FOR.as_millis()).unwrap_or(Millis::MAX);
        let since = now_millis().saturating_sub(fresh_for);
        match self.0.store.devices(id).await {
            Ok(devices) => devices
                .iter()
                .map(|d| d.added_at)
                .min()
                .is_some_and(|at| at > since),
            Err(_) => false,
        }
    }

    /// Whether the database answers and takes a write, within [`HEALTH_TIMEOUT`].
    pub async fn health(&self) -> Health {
        match tokio::time::timeout(HEALTH_TIMEOUT, self.0.store.ping()).await {
            Ok(Ok(())) if self.0.disk.is_low() => Health::LowDisk,
            Ok(Ok(())) => Health::Ok,
            Ok(Err(e)) => {
                metrics().database_error(&e);
                tracing::warn!(error = %e, "health check: the database did not answer");
                Health::Unavailable(e.unavailable().reason())
            }
            Err(_) => Health::Unavailable("database timed out"),
        }
    }

    /// A prune pass removed `pruned` at `now`: the ids forgotten before the cookies' lifetime
    /// are no longer refused (no cookie of theirs is left), and the room's log drops the
    /// messages the database no longer has.
    pub async fn pruned(&self, pruned: &Pruned, now: crate::clock::Millis) {
        let before = self.0.retention.cutoffs(now).forgotten_before;
        self.0.forgotten.forget_before(before);
        self.0.signed_out.forget_before(before);
        // The devices the pass signed out are refused from now on.
        if pruned.devices > 0 {
            match self.0.store.signed_out(forgotten::IN_MEMORY).await {
                Ok(signed_out) => {
                    for (device, at) in signed_out {
                        self.0.signed_out.insert(device, at);
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot re-read the signed out devices"),
            }
        }
        if pruned.messages > 0
            && let Err(e) = self.0.room.load(&self.0.store).await
        {
            tracing::error!(error = %e, "cannot re-read the chat after pruning");
        }
    }
}
