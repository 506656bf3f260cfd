//! The accept loop: HTTP/1.1 with upgrades (and, over TLS, HTTP/2 with the live socket on an
//! extended CONNECT stream), and the limits a public server needs.
//!
//! `axum::serve` sets no header read timeout, so a client trickling a request's headers one byte
//! at a time would hold its connection forever. This loop is the same idea with the limits set:
//!
//! - Every connection is served by hyper's HTTP/1 connection directly (no protocol detection,
//!   which has no timer of its own), with one idle timer of its own ([`Activity`]) that starts
//!   when the connection does: a connection whose first request's headers are not complete within
//!   `--header-timeout` is closed, whatever it sent (nothing, half a line, an HTTP/2 preface); so
//!   is one that has had no request in flight for that long between requests. The timer is armed
//!   once per connection and moved only when it fires, not once per request as hyper's own
//!   header timer is. Headers must fit in [`MAX_HEADER_BYTES`]; the router adds a timeout for the
//!   rest of the request.
//! - At most [`ConnectionLimits::max_connections`] connections are held (below the open-file
//!   limit, so the database and the logs always have descriptors): at the cap the loop stops
//!   accepting until one closes, and new connections wait in the kernel's listen queue.
//! - One peer address holds at most [`ConnectionLimits::max_per_ip`]; one more is closed at once,
//!   without an answer. Trusted proxies are exempt, and their `X-Forwarded-For` names the
//!   client ([`ClientAddr`]) of each request.
//! - An `accept` that fails for want of descriptors or memory is tried again when a connection
//!   closes, or after a pause (10 ms, doubling to 1 s), and is logged at most once per
//!   [`ACCEPT_LOG_EVERY`], with the count of failures.
//!
//! Over TLS a connection that chose `h2` by ALPN is served by hyper's HTTP/2 connection, with
//! RFC 8441's extended CONNECT on (the live socket's stream), at most [`H2_STREAMS`] streams at
//! once and the same header limit. The idle timer is the same; a connection that carries a live
//! socket is never idle while it lives (the peer closes it, or the shutdown does), and pings
//! every [`H2_PING`] find a peer that went away.
//!
//! On shutdown it stops accepting, asks every connection to finish its current request, and
//! waits for them.

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use http::HeaderValue;
use tokio_rustls::TlsAcceptor;

use super::client::{ClientAddr, LocalAddr};
use super::connection::{Activity, drive};
use super::limits::{ConnectionLimits, Connections};
use super::tls::Certificates;
use crate::metrics::Refusal;
use crate::refusals::refused;

/// The most a request's headers (with the request line) may take; more is refused with `431`.
/// It is also the read buffer's limit, so a connection holding partial headers holds under
/// twice this much (the buffer grows by doubling), for at most the header timeout.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The most streams one HTTP/2 connection may have open at once.
pub const H2_STREAMS: u32 = 128;

/// How often an HTTP/2 connection pings its peer, and how long the answer may take.
pub const H2_PING: Duration = Duration::from_secs(30);

/// How often failing `accept` calls are logged at most.
pub const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// HTTPS on the listener: the certificates, and the `Strict-Transport-Security` every response
/// carries (`None`: `--hsts-max-age 0`).
#[derive(Clone)]
pub struct Https {
    pub certificates: Arc<Certificates>,
    pub hsts: Option<HeaderValue>,
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then finishes gracefully. Each
/// turn of the loop: wait for room under the cap, accept, admit the peer under its address's
/// cap, then serve the connection in a task of its own (which does the TLS handshake first, with
/// `https`, under the same header timeout).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    limits: ConnectionLimits,
    https: Option<Https>,
    shutdown: CancellationToken,
) {
    // No timer for hyper: the connection's idle timer is ours (see `Activity`).
    let mut builder = http1::Builder::new();
    // `max_buf_size` alone bounds the read buffer, which lets up to twice as many bytes of
    // headers through as it says; `max_header_size` is the limit on the headers themselves.
    builder
        .max_buf_size(MAX_HEADER_BYTES)
        .max_header_size(MAX_HEADER_BYTES);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .enable_connect_protocol()
        .max_concurrent_streams(H2_STREAMS)
        .max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX))
        .keep_alive_interval(H2_PING)
        .keep_alive_timeout(H2_PING);
    let connections = Connections::new(limits);
    let tasks = TaskTracker::new();
    let mut failures = AcceptFailures::default();
    while let Some((stream, peer, room)) =
        accept(&listener, &connections, &mut failures, &shutdown).await
    {
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().ok();
        let peer = peer.ip().to_canonical();
        let stream = match connections.admit(stream, peer, room) {
            Ok(stream) => stream,
            Err(stream) => {
                drop(stream);
                tracing::debug!(
                    client = %peer,
                    limit = connections.limits().max_per_ip,
                    "closed a connection over --max-connections-per-ip"
                );
                refused(Refusal::ConnectionsPerIp);
                continue;
            }
        };
        let activity = Arc::new(Activity::new());
        let hsts = https.as_ref().and_then(|https| https.hsts.clone());
        let service = service_for(&router, &activity, peer, local, &connections, hsts);
        // A token of its own (cancelled with the server's): a connection's task checks it each
        // time it is woken, and a child token's waiters are its own, not one list every
        // connection locks.
        let shutdown = shutdown.child_token();
        let builder = builder.clone();
        let h2 = h2.clone();
        match &https {
            None => {
                let connection = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                tasks.spawn(drive(connection, activity, peer, header_timeout, shutdown));
            }
            Some(https) => {
                let acceptor = TlsAcceptor::from(https.certificates.config());
                tasks.spawn(async move {
                    // The handshake counts against the header timeout: a client that opens a
                    // connection and sends no ClientHello is closed like one that sends nothing.
                    let deadline = activity.start + header_timeout;
                    let tls = tokio::select! {
                        tls = acceptor.accept(stream) => tls,
                        () = tokio::time::sleep_until(deadline.into()) => {
                            tracing::debug!(client = %peer, "no TLS handshake in time; closed");
                            refused(Refusal::HeaderTimeout);
                            return;
                        }
                        () = shutdown.cancelled() => return,
                    };
                    let stream = match tls {
                        Ok(stream) if super::tls::is_acme_validation(stream.get_ref().1) => {
                            tracing::debug!(client = %peer, "answered an ACME validation");
                            return;
                        }
                        Ok(stream) if super::tls::is_h2(stream.get_ref().1) => {
                            let connection = h2.serve_connection(TokioIo::new(stream), service);
                            drive(connection, activity, peer, header_timeout, shutdown).await;
                            return;
                        }
                        Ok(stream) => stream,
                        Err(e) => {
                            tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
                            refused(Refusal::TlsHandshake);
                            return;
                        }
                    };
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    drive(connection, activity, peer, header_timeout, shutdown).await;
                });
            }
        }
    }
    tasks.close();
    tasks.wait().await;
}

/// The next connection, with its place under the cap; `None` on shutdown. At the cap it waits
/// for a connection to close; an `accept` that fails for want of descriptors is tried again
/// when one closes, or after a pause.
async fn accept(
    listener: &TcpListener,
    connections: &Connections,
    failures: &mut AcceptFailures,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    loop {
        let room = match connections.try_room() {
            Some(room) => room,
            None => {
                tracing::debug!(
                    limit = connections.limits().max_connections,
                    "the server holds its most connections; waiting for one to close"
                );
                refused(Refusal::Connections);
                tokio::select! {
                    room = connections.wait_for_room() => room,
                    () = shutdown.cancelled() => return None,
                }
            }
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    failures.succeeded();
                    return Some((stream, peer, room));
                }
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    drop(room);
                    // Out of descriptors, most likely: try again when a connection closes, or
                    // after the pause (the descriptors may be held by something else).
                    let pause = failures.failed(&e);
                    tokio::select! {
                        () = tokio::time::sleep(pause) => continue,
                        () = connections.one_closed() => continue,
                        () = shutdown.cancelled() => return None,
                    }
                }
            },
            () = shutdown.cancelled() => return None,
        }
    }
}

/// The router as one connection from `peer` to `local` serves it: each request counted by the
/// connection's idle timer, and given its client address (the forwarded one behind a trusted
/// proxy) and the address it came in on.
fn service_for(
    router: &Router,
    activity: &Arc<Activity>,
    peer: IpAddr,
    local: Option<SocketAddr>,
    connections: &Connections,
    hsts: Option<HeaderValue>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = axum::response::Response,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static {
    let (started, answered) = (Arc::clone(activity), Arc::clone(activity));
    let trusted = Arc::clone(&connections.limits().trusted_proxies);
    let via_proxy = trusted.contains(peer);
    let service = router
        .clone()
        .map_request(move |request: Request<Incoming>| {
            started.request_started();
            if request.method() == http::Method::CONNECT {
                // A live socket over HTTP/2: its stream lives on after the answer.
                started.pin();
            }
            let client = if via_proxy {
                trusted.client(peer, request.headers())
            } else {
                peer
            };
            let mut request = request.map(axum::body::Body::new);
            // HTTP/2 names the host in the `:authority` pseudo-header; everything that reads
            // `Host` (the origin checks, the links) reads it the same way for both.
            if !request.headers().contains_key(http::header::HOST)
                && let Some(host) = request
                    .uri()
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
                request.headers_mut().insert(http::header::HOST, host);
            }
            request.extensions_mut().insert(ClientAddr(client));
            if let Some(local) = local {
                request.extensions_mut().insert(LocalAddr(local));
            }
            request
        })
        .map_response(move |mut response: axum::response::Response| {
            answered.request_answered();
            if let Some(hsts) = &hsts {
                response
                    .headers_mut()
                    .insert(http::header::STRICT_TRANSPORT_SECURITY, hsts.clone());
            }
            response
        });
    TowerToHyperService::new(service.map_err(|never: Infallible| match never {}))
}

/// An error of the one connection being accepted (it was reset before we took it), not of the
/// listener: accept the next.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Failing `accept` calls (out of descriptors, most likely): how long to back off, and when
/// to say so.
struct AcceptFailures {
    pause: Duration,
    /// Failures not logged yet.
    unreported: u64,
    last_logged: Option<Instant>,
}

impl Default for AcceptFailures {
    fn default() -> AcceptFailures {
        AcceptFailures {
            pause: Duration::from_millis(10),
            unreported: 0,
            last_logged: None,
        }
    }
}

impl AcceptFailures {
    /// Counts a failure, logs it if nothing was logged for [`ACCEPT_LOG_EVERY`], and returns
    /// how long to wait before the next try.
    fn failed(&mut self, error: &io::Error) -> Duration {
        self.unreported += 1;
        if self.may_log() {
            tracing::warn!(
                error = %error,
                failures = self.unreported,
                "accepting connections failed; backing off (logged at most every {} s)",
                ACCEPT_LOG_EVERY.as_secs()
            );
            self.logged();
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(Duration::from_secs(1));
        pause
    }

    /// A connection was accepted: no more backing off, and the failures since the last line
    /// are reported (if a line may be written now).
    fn succeeded(&mut self) {
        self.pause = Duration::from_millis(10);
        if self.unreported > 0 && self.may_log() {
            tracing::warn!(
                failures = self.unreported,
                "accepting connections works again, after {} more failures",
                self.unreported
            );
            self.logged();
        }
    }

    fn may_log(&self) -> bool {
        self.last_logged
            .is_none_or(|at| at.elapsed() >= ACCEPT_LOG_EVERY)
    }

    fn logged(&mut self) {
        self.unreported = 0;
        self.last_logged = Some(Instant::now());
    }
}
