//! One connection's life after it is accepted: [`drive`] serves it until it ends, the shutdown
//! (it finishes its current request), or its idle timer ([`Activity`]) fires.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

use crate::metrics::Refusal;
use crate::refusals::refused;

/// Serves one connection until it ends, `shutdown` (it finishes its current request), or its
/// idle timer fires: no complete request headers within `header_timeout` of the start, or no
/// request in flight for that long.
pub(super) async fn drive<C, E>(
    connection: C,
    activity: Arc<Activity>,
    peer: IpAddr,
    header_timeout: Duration,
    shutdown: CancellationToken,
) where
    C: Future<Output = Result<(), E>> + GracefulShutdown,
    E: std::fmt::Display,
{
    tokio::pin!(connection);
    let mut deadline = activity.start + header_timeout;
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break Some(result),
            () = shutdown.cancelled() => {
                // A connection accepted a moment ago may hold a request not read yet: it gets
                // a moment to start it, so the client gets its answer, not a closed connection.
                let waited = Instant::now();
                while !activity.served() && waited.elapsed() < FIRST_REQUEST_ON_SHUTDOWN {
                    tokio::select! {
                        result = connection.as_mut() => return finished(Some(result), &activity, peer),
                        () = tokio::time::sleep(Duration::from_millis(5)) => {}
                    }
                }
                connection.as_mut().graceful_shutdown();
                break Some(connection.await);
            }
            () = tokio::time::sleep_until(deadline.into()) => {
                match activity.quiet_until(header_timeout) {
                    Some(later) => deadline = later,
                    // Dropping the connection closes it.
                    None => break None,
                }
            }
        }
    };
    finished(result, &activity, peer);
}

/// How long a connection that has not sent its first request yet gets to send it when the
/// server starts draining.
const FIRST_REQUEST_ON_SHUTDOWN: Duration = Duration::from_millis(500);

/// Logs how a connection ended: `None` when its idle timer closed it.
fn finished<E: std::fmt::Display>(
    result: Option<Result<(), E>>,
    activity: &Activity,
    peer: IpAddr,
) {
    match result {
        None if !activity.served() => {
            tracing::debug!(client = %peer, "no complete request headers in time; closed");
            refused(Refusal::HeaderTimeout);
        }
        None => tracing::debug!("closed a connection idle for the header timeout"),
        Some(Err(e)) => tracing::debug!(error = %e, "connection ended with an error"),
        Some(Ok(())) => {}
    }
}

/// A connection that can be asked to finish its current request and stop.
pub(super) trait GracefulShutdown {
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>);
}

impl<I, S> GracefulShutdown for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        hyper::server::conn::http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<I, S> GracefulShutdown for http2::Connection<I, S, TokioExecutor>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
}

/// What a connection's idle timer needs to know: whether a request is in flight, and since when
/// none has been. Two atomic updates per request; the timer itself is armed once per connection
/// and moved only when it fires.
pub(super) struct Activity {
    pub(super) start: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `start` when the last request was answered (or 0).
    quiet_since: AtomicU64,
    served: AtomicBool,
}

impl Activity {
    pub(super) fn new() -> Activity {
        Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            quiet_since: AtomicU64::new(0),
            served: AtomicBool::new(false),
        }
    }

    /// A request's headers are in.
    pub(super) fn request_started(&self) {
        self.served.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// A stream outlives its answer (a live socket over HTTP/2): the connection is not idle from
    /// now on, until it closes.
    pub(super) fn pin(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// A request's response is ready: the connection waits for the next request from now.
    pub(super) fn request_answered(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.quiet_since.store(now, Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether any request's headers were ever complete.
    fn served(&self) -> bool {
        self.served.load(Ordering::Relaxed)
    }

    /// When the timer is due next, or `None` when the connection has been without a request in
    /// flight for `timeout` (or never had a complete one): it is closed.
    fn quiet_until(&self, timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Some(Instant::now() + timeout);
        }
        let quiet_since =
            self.start + Duration::from_millis(self.quiet_since.load(Ordering::Acquire));
        let due = quiet_since + timeout;
        (due > Instant::now()).then_some(due)
    }
}
