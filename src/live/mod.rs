//! The live layer: `GET /live`, the WebSocket that keeps a page in step with the database.
//!
//! The upgrade request is checked before anything else: its `Origin` must be this server's own
//! (or one given with `--allowed-origin`), which stops other sites from opening sockets with the
//! browser's cookie. The session comes from the signed cookie on the upgrade request, never from
//! the page, and the page's CSRF token must come with the join message.
//!
//! - [`protocol`]: the JSON messages.
//! - [`socket`]: one socket's loop: its join, then serving the page.
//! - [`peer`]: the socket as it is written to: send timeouts, close codes.
//!
//! A socket reaches the state only through the site (`crate::site`): it saves and posts with the
//! same methods a form post calls, and hears the session's other tabs through the subscription
//! the site hands it.

pub mod peer;
pub mod protocol;
pub mod socket;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::http::header::{HOST, ORIGIN, USER_AGENT};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::address::{Held, Tally};
use crate::metrics::{Refusal, metrics};
use crate::refusals::refused;
use crate::session::{Kind, Session};
use crate::site::{ClientAddr, Site};
use crate::untrusted::Untrusted;
use peer::{MAX_MESSAGE_BYTES, Peer, code};

/// The most a socket's write buffer holds while its peer does not read: the frame being written
/// must fit whole, or the socket is dropped. The largest frame is a chat page's render: 50
/// messages of 2,000 characters, at most about 12 KB each once escaped. (Catch-up frames are cut
/// at 32 KiB.) Only a socket whose peer stopped reading holds more than the 16 KiB write buffer,
/// and only until `--live-send-timeout`.
pub const MAX_WRITE_BUFFER: usize = 1024 * 1024;
/// The live layer's settings (from the `--live-*`, `--max-sockets*` and `--allowed-origin`
/// flags).
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Origins accepted besides the server's own, e.g. behind a proxy.
    pub allowed_origins: Vec<String>,
    /// A socket that sends nothing (not even a pong) for this long is closed.
    pub idle_timeout: Duration,
    /// A send that does not complete in this long means the peer is not reading: drop it.
    pub send_timeout: Duration,
    /// Messages per second a socket may send on average (twice that in a burst).
    pub message_rate: u32,
    /// Sockets the server holds at most.
    pub max_sockets: usize,
    /// Sockets one session may hold at most.
    pub max_sockets_per_session: usize,
    /// The site is served over HTTPS (`--secure-cookies`): only `https://` origins are its own.
    pub https_only: bool,
    /// How long an upgraded socket may take to send its join.
    pub join_timeout: Duration,
    /// Sockets one client address (an IPv6 /64) may hold at most, joined or not.
    pub max_sockets_per_ip: usize,
    /// On a restart (close code 1012) pages reconnect after a random delay up to this.
    pub reconnect_spread: Duration,
}

/// What the live layer shares between sockets.
pub struct Live {
    /// The settings.
    pub config: LiveConfig,
    /// The store, the keys, the hub: what form posts use too.
    pub site: Site,
    /// Every socket task, so shutdown can wait for them to close.
    pub tracker: TaskTracker,
    /// Cancelled on shutdown: sockets close with 1012 (service restart).
    pub shutdown: CancellationToken,
    next_socket_id: AtomicU64,
    open_sockets: AtomicUsize,
    /// Sockets upgraded (or being upgraded), joined or not: what `max_sockets` counts.
    held: AtomicUsize,
    /// The same, per client address.
    per_ip: Tally,
}

impl Live {
    /// A live layer with no sockets yet, serving `site`.
    pub fn new(config: LiveConfig, site: Site, shutdown: CancellationToken) -> Live {
        Live {
            config,
            site,
            tracker: TaskTracker::new(),
            shutdown,
            next_socket_id: AtomicU64::new(1),
            open_sockets: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            per_ip: Tally::default(),
        }
    }

    /// A number no other socket of this process has; 0 is never handed out.
    pub fn next_socket_id(&self) -> u64 {
        self.next_socket_id.fetch_add(1, Ordering::Relaxed)
    }

    /// How many live sockets are joined right now.
    pub fn open_sockets(&self) -> usize {
        self.open_sockets.load(Ordering::Relaxed)
    }

    /// A place for one more socket from `client`, taken before the upgrade: `max_sockets` and
    /// `max_sockets_per_ip` count every socket from then on, joined or not.
    fn reserve(self: &Arc<Self>, client: IpAddr) -> Result<SocketPermit, Refusal> {
        let address = self
            .per_ip
            .take(client, self.config.max_sockets_per_ip)
            .ok_or(Refusal::SocketsPerIp)?;
        let max = self.config.max_sockets;
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < max).then_some(held + 1)
            })
            .map_err(|_| Refusal::Sockets)?;
        Ok(SocketPermit {
            live: Arc::clone(self),
            _address: address,
        })
    }
}

/// One socket's place in the server's and its address's counts, from before its upgrade until
/// it closes.
pub struct SocketPermit {
    live: Arc<Live>,
    _address: Held,
}

impl SocketPermit {
    /// The socket joined: it counts as open (the `livesession_live_sockets` gauge) too.
    fn joined(self) -> SocketSlot {
        self.live.open_sockets.fetch_add(1, Ordering::AcqRel);
        SocketSlot { permit: self }
    }
}

impl Drop for SocketPermit {
    fn drop(&mut self) {
        self.live.held.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One joined socket's place in the server's count.
pub struct SocketSlot {
    permit: SocketPermit,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.permit.live.open_sockets.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `GET /live` from `client` (the address the accept loop recorded, the forwarded one behind a
/// trusted proxy): checks the origin, takes a place for the socket, then upgrades.
/// Sockets are tracked so shutdown can close them. Over a cap the socket is upgraded and closed
/// at once with `1013` and the reason, as a socket over `--max-sockets-per-session` is at its
/// join: the client sees why, and tries again later.
pub async fn endpoint(
    State(live): State<Arc<Live>>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(
        &headers,
        &live.config.allowed_origins,
        live.config.https_only,
    ) {
        metrics().live_origin_rejected();
        let origin = headers.get(ORIGIN).map(|o| o.as_bytes());
        tracing::debug!(
            %client,
            origin = %Untrusted::bytes(origin.unwrap_or(b"(none)")),
            "refused a live socket from a foreign origin"
        );
        refused(Refusal::Origin);
        return (
            StatusCode::FORBIDDEN,
            "WebSocket connections are accepted from this site's own pages only.",
        )
            .into_response();
    }
    let permit = match live.reserve(client) {
        Ok(permit) => permit,
        Err(refusal) => {
            let reason = match refusal {
                Refusal::SocketsPerIp => "too many live sockets from this address",
                _ => "the server is full",
            };
            tracing::debug!(%client, reason, "refused a live socket");
            refused(refusal);
            let tracker = live.tracker.clone();
            return upgrade
                .max_message_size(MAX_MESSAGE_BYTES)
                .max_frame_size(MAX_MESSAGE_BYTES)
                .read_buffer_size(512)
                .write_buffer_size(1024)
                .on_upgrade(move |ws| {
                    tracker.track_future(async move {
                        let _ = refuse(ws, &live, reason).await;
                    })
                });
        }
    };
    let kind = headers
        .get(USER_AGENT)
        .and_then(|ua| ua.to_str().ok())
        .map(Kind::of)
        .unwrap_or_default();
    let session = live
        .site
        .verify_session(&headers)
        .await
        .verdict
        .who()
        .map(|who| Session::known(who, kind));
    let tracker = live.tracker.clone();
    upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        // Small buffers: a socket mostly idles, and 20,000 of them must fit in a few hundred MiB.
        // The read buffer is zero-filled to its size on every read, so it is all resident; a
        // join fits in it, and a longer frame grows it as it must.
        .read_buffer_size(512)
        // Messages queued together (an ack and its render) are written together.
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .on_upgrade(move |ws| tracker.track_future(socket::run(ws, live, session, permit, client)))
}

/// Closes a socket that got no place with `1013` and `reason`.
async fn refuse(ws: WebSocket, live: &Live, reason: &'static str) -> peer::End {
    let mut peer = Peer::new(ws, live.config.send_timeout);
    peer.close(code::TRY_AGAIN_LATER, reason).await
}

/// True when `Origin` names this server (as the browser reached it, per `Host`; over HTTPS only
/// when `https_only`) or an allowed origin. A request without `Origin` is refused: every browser
/// sends one on a WebSocket upgrade, so its absence means a non-browser client, which has no page
/// and no CSRF token to offer.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String], https_only: bool) -> bool {
    let Some(origin) = headers.get(ORIGIN).and_then(|o| o.to_str().ok()) else {
        return false;
    };
    if allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let same = |scheme: &str| {
        origin
            .strip_prefix(scheme)
            .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
    };
    same("https://") || (!https_only && same("http://"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            headers.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        headers
    }

    #[test]
    fn the_servers_own_origin_is_accepted() {
        assert!(origin_allowed(
            &headers(Some("http://127.0.0.1:4000"), "127.0.0.1:4000"),
            &[],
            false
        ));
        assert!(origin_allowed(
            &headers(Some("https://chat.example"), "chat.example"),
            &[],
            false
        ));
    }

    #[test]
    fn another_origin_a_missing_one_and_a_lookalike_are_refused() {
        assert!(!origin_allowed(
            &headers(Some("http://evil.example"), "127.0.0.1:4000"),
            &[],
            false
        ));
        assert!(!origin_allowed(
            &headers(None, "127.0.0.1:4000"),
            &[],
            false
        ));
        assert!(!origin_allowed(
            &headers(Some("http://127.0.0.1:4000.evil"), "127.0.0.1:4000"),
            &[],
            false
        ));
        assert!(!origin_allowed(
            &headers(Some("null"), "127.0.0.1:4000"),
            &[],
            false
        ));
    }

    #[test]
    fn an_https_site_refuses_its_own_host_over_plain_http() {
        let host = "chat.example";
        assert!(origin_allowed(
            &headers(Some("https://chat.example"), host),
            &[],
            true
        ));
        assert!(!origin_allowed(
            &headers(Some("http://chat.example"), host),
            &[],
            true
        ));
    }

    #[test]
    fn a_configured_origin_is_accepted() {
        let allowed = vec!["https://chat.example/".to_owned()];
        assert!(origin_allowed(
            &headers(Some("https://chat.example"), "10.0.0.5:4000"),
            &allowed,
            false
        ));
    }
}
