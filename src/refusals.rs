//! The log lines of refusals: a foreign origin, a connection or a socket over a cap, a client too
//! slow to send its headers or its join, a cookie that does not verify, a chat post or a live
//! socket over a rate limit, a peer that stopped reading: every line a client can cause at will. Each one is counted in `livesession_refused_total`; the
//! code that refuses logs the details at `debug`; and at `info` a flood costs two lines per
//! reason and [`SUMMARY_EVERY`], not one per refusal: the first refusal after a quiet interval is
//! logged at once, the rest are counted and summarised by [`summarise`] ("... (1234 more in the
//! last 10 s)").

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::time::{MissedTickBehavior, interval_at};
use tokio_util::sync::CancellationToken;

use crate::clock::whole_seconds;
use crate::metrics::{Refusal, metrics};

/// How often the refusals since the last line are summarised at `info`.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Counts `refusal` and, the first time in a quiet interval, logs it at `info`.
pub fn refused(refusal: Refusal) {
    metrics().refused(refusal);
    let quiet = &state()[refusal as usize];
    let now = elapsed_ms();
    let until = quiet.until_ms.load(Ordering::Relaxed);
    if now >= until
        && quiet
            .until_ms
            .compare_exchange(
                until,
                now + interval_ms(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    {
        tracing::info!(reason = refusal.label(), "{}", what(refusal));
    } else {
        quiet.unreported.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every [`SUMMARY_EVERY`] until `shutdown`, and once more then: one `info` line per reason with
/// refusals not logged yet.
pub async fn summarise(shutdown: CancellationToken) {
    let start = tokio::time::Instant::now() + SUMMARY_EVERY;
    let mut ticks = interval_at(start, SUMMARY_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = Instant::now();
    loop {
        let stopping = tokio::select! {
            _ = ticks.tick() => false,
            () = shutdown.cancelled() => true,
        };
        report(last.elapsed());
        last = Instant::now();
        if stopping {
            return;
        }
    }
}

/// Logs the refusals not logged yet, `since` being how long ago the last report was.
fn report(since: Duration) {
    let seconds = whole_seconds(since);
    for refusal in Refusal::ALL {
        let quiet = &state()[refusal as usize];
        let count = quiet.unreported.swap(0, Ordering::Relaxed);
        if count == 0 {
            continue;
        }
        // Within the next interval, refusals are only counted: this line stands for them.
        quiet
            .until_ms
            .fetch_max(elapsed_ms() + interval_ms(), Ordering::Relaxed);
        tracing::info!(
            reason = refusal.label(),
            count,
            "{} ({count} more in the last {seconds} s)",
            what(refusal)
        );
    }
}

/// What a refusal's `info` line says.
fn what(refusal: Refusal) -> &'static str {
    match refusal {
        Refusal::Origin => "refused a live socket from a foreign origin",
        Refusal::ConnectionsPerIp => {
            "closed a connection at once: its address holds --max-connections-per-ip already"
        }
        Refusal::Connections => {
            "the server holds its most connections (see the open-file limit); new ones wait"
        }
        Refusal::HeaderTimeout => {
            "closed a connection that sent no complete request headers within --header-timeout"
        }
        Refusal::Sockets => "refused a live socket: the server is full (--max-sockets)",
        Refusal::SocketsPerIp => {
            "refused a live socket: too many from one address (--max-sockets-per-ip)"
        }
        Refusal::SocketsPerSession => {
            "live socket refused: too many open pages for one browser (--max-sockets-per-session)"
        }
        Refusal::JoinTimeout => "closed a live socket that did not join within --live-join-timeout",
        Refusal::TlsHandshake => "a TLS handshake failed",
        Refusal::Cookie => {
            "a session cookie failed verification or was forgotten; started a fresh session"
        }
        Refusal::ChatLimit => "refused a chat post over a rate limit",
        Refusal::LiveRate => "closed a live socket over the message rate limit",
        Refusal::LiveTooSlow => "dropped a live socket: the peer stopped reading",
    }
}

/// Per reason: until when (in ms since [`EPOCH`]) refusals are only counted, and how many were.
#[derive(Default)]
struct Quiet {
    until_ms: AtomicU64,
    unreported: AtomicU64,
}

fn state() -> &'static [Quiet; Refusal::ALL.len()] {
    static STATE: LazyLock<[Quiet; Refusal::ALL.len()]> = LazyLock::new(Default::default);
    &STATE
}

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn elapsed_ms() -> u64 {
    u64::try_from(EPOCH.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn interval_ms() -> u64 {
    SUMMARY_EVERY.as_millis() as u64
}
