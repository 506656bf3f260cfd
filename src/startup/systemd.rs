//! Life under systemd, and restarts without a refused connection.
//!
//! - Socket activation: when systemd passes a listening socket (`LISTEN_FDS`, from a
//!   `livesession.socket` unit), the server serves on it instead of binding `--listen`. The
//!   socket outlives each process, so connections that arrive during a restart wait in its queue
//!   for the next one instead of being refused.
//! - `--reuse-port`, without systemd: the listener is bound with `SO_REUSEPORT`, so a new
//!   process binds the same address while the old one drains.
//! - `Type=notify`: `READY=1` once the server listens, `STOPPING=1` when it starts draining, and
//!   `WATCHDOG=1` every half of `WatchdogSec` while the runtime answers and the database does
//!   within its health timeout, so a wedged server is killed and restarted. Without
//!   `NOTIFY_SOCKET` (no systemd) all of it does nothing.

use std::time::Duration;

use anyhow::Context;
use sd_notify::NotifyState;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::site::{Health, Site};

/// The socket to serve on: systemd's, or `--listen` bound (with `SO_REUSEPORT` for
/// `--reuse-port`).
pub(super) async fn listener(config: &Config) -> anyhow::Result<TcpListener> {
    let mut passed = listenfd::ListenFd::from_env();
    if passed.len() > 0 {
        let listener = passed
            .take_tcp_listener(0)
            .context("the first socket systemd passed (LISTEN_FDS) is not a TCP listener")?
            .context("systemd passed no socket (LISTEN_FDS)")?;
        listener
            .set_nonblocking(true)
            .context("the socket systemd passed")?;
        tracing::info!("serving on the socket systemd passed (LISTEN_FDS), not --listen");
        return TcpListener::from_std(listener).context("the socket systemd passed");
    }
    if !config.reuse_port {
        return TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen));
    }
    let addr = tokio::net::lookup_host(&config.listen)
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .with_context(|| format!("cannot listen on {}: not an address", config.listen))?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .context("a socket for --listen")?;
    socket.set_reuseaddr(true).context("SO_REUSEADDR")?;
    socket.set_reuseport(true).context("SO_REUSEPORT")?;
    socket
        .bind(addr)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    socket
        .listen(1024)
        .with_context(|| format!("cannot listen on {}", config.listen))
}

/// Tells systemd the server is up (`READY=1`).
pub(super) fn ready() {
    notify(&[NotifyState::Ready], "READY=1");
}

/// Tells systemd the server is draining (`STOPPING=1`).
pub(super) fn stopping() {
    notify(&[NotifyState::Stopping], "STOPPING=1");
}

/// Answers systemd's watchdog (`WATCHDOG_USEC`) until `shutdown`: every half interval, when the
/// runtime runs this task and the database answers within its health timeout. Nothing without
/// a watchdog.
pub(super) fn spawn_watchdog(site: &Site, shutdown: &CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let (site, shutdown) = (site.clone(), shutdown.clone());
    let every = (interval / 2).max(Duration::from_millis(100));
    tracing::info!(?interval, "answering systemd's watchdog");
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = shutdown.cancelled() => return,
            }
            match site.health().await {
                Health::Unavailable("database timed out") => {
                    tracing::warn!("watchdog: the database did not answer in time; not answered");
                }
                _ => notify(&[NotifyState::Watchdog], "WATCHDOG=1"),
            }
        }
    });
}

fn notify(state: &[NotifyState], what: &str) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "could not tell systemd {what}");
    }
}
