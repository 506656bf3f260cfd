//! How many connections the server holds: in all, below the open-file limit, and per client
//! address. A connection's place is held by its [`Counted`] stream, so it is given back when the
//! socket is closed, whether hyper closed it or a live socket that took it over by an upgrade.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::client::TrustedProxies;
use crate::address::{Held, Tally};
use crate::metrics::metrics;

/// The connection limits of one listener.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Connections held at most, in all; past it the accept loop waits for one to close.
    pub max_connections: usize,
    /// Connections one peer address (an IPv6 /64) may hold; one more is closed at once.
    /// Trusted proxies are not held to it.
    pub max_per_ip: usize,
    /// The proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Arc<TrustedProxies>,
}

/// How many connections `open_file_limit` descriptors leave room for once `reserved` are kept
/// for everything else (the database, the listeners, the logs). Never 0: a process with hardly
/// any descriptors still serves, one connection at a time.
pub fn connection_budget(open_file_limit: u64, reserved: u64) -> usize {
    let room = open_file_limit.saturating_sub(reserved).max(1);
    usize::try_from(room).unwrap_or(usize::MAX)
}

/// The connections a listener holds.
pub struct Connections {
    limits: ConnectionLimits,
    total: Arc<Semaphore>,
    per_ip: Tally,
    /// Signalled when a connection closes (its descriptor is free again).
    closed: Arc<Notify>,
}

impl Connections {
    /// No connections yet.
    pub fn new(limits: ConnectionLimits) -> Connections {
        let total = Arc::new(Semaphore::new(
            limits.max_connections.min(Semaphore::MAX_PERMITS),
        ));
        Connections {
            limits,
            total,
            per_ip: Tally::default(),
            closed: Arc::default(),
        }
    }

    /// The limits.
    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// A place for one more connection: at once when there is room, else `None` (the caller
    /// then waits with [`Connections::wait_for_room`]).
    pub fn try_room(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.total).try_acquire_owned().ok()
    }

    /// A place for one more connection, once one is free.
    pub async fn wait_for_room(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.total)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Returns once a connection has closed since the last call (at once if one did).
    pub async fn one_closed(&self) {
        self.closed.notified().await;
    }

    /// Counts an accepted connection from `peer` in, or gives it back (`Err`) when `peer` holds
    /// its most connections already.
    pub fn admit(
        &self,
        stream: TcpStream,
        peer: IpAddr,
        room: OwnedSemaphorePermit,
    ) -> Result<Counted, TcpStream> {
        let held = if self.limits.trusted_proxies.contains(peer) {
            None
        } else {
            match self.per_ip.take(peer, self.limits.max_per_ip) {
                Some(held) => Some(held),
                None => return Err(stream),
            }
        };
        metrics().connection_opened();
        Ok(Counted {
            stream,
            _slot: Slot {
                _room: room,
                _held: held,
                closed: Arc::clone(&self.closed),
            },
        })
    }
}

/// One connection's place in the counts; given back when dropped.
struct Slot {
    _room: OwnedSemaphorePermit,
    _held: Option<Held>,
    closed: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics().connection_closed();
        self.closed.notify_one();
    }
}

/// An accepted connection and its place in the counts.
pub struct Counted {
    stream: TcpStream,
    _slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_keeps_the_reserve_and_is_never_zero() {
        assert_eq!(connection_budget(1024, 100), 924);
        assert_eq!(connection_budget(50, 100), 1);
        assert_eq!(connection_budget(u64::MAX, 0), usize::MAX);
    }
}
