//! The background task that deletes settings nobody has used for `--stale-after`, and chat
//! messages past `--message-retention` or beyond the newest `--message-limit`.
//!
//! It wakes every `--prune-every` (and once at startup), deletes in small batches through an
//! index, each batch its own short transaction so live writes never wait long, and stops when
//! shutdown is signalled.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use crate::session::{COOKIE_MAX_AGE, Forgotten};
use crate::store::{Millis, Store, StoreError, now_millis};

/// Rows deleted per transaction.
pub const BATCH_SIZE: usize = 1000;

/// What is kept, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// A settings row unused for this long is deleted.
    pub stale_after: Duration,
    /// Reads bump `read_at` at most once per window, so `read_at` may lag the last read by this
    /// much; the cutoff allows for it, so a row read within `stale_after` is never deleted.
    pub touch_window: Duration,
    /// Chat messages older than this are deleted.
    pub message_retention: Duration,
    /// At most this many chat messages are kept, the newest.
    pub message_limit: usize,
}

/// What one prune pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub sessions: usize,
    pub messages: usize,
}

impl Retention {
    /// Rows whose `read_at` is before this are stale at `now`.
    pub fn cutoff(&self, now: Millis) -> Millis {
        now.saturating_sub(millis(self.stale_after))
            .saturating_sub(millis(self.touch_window))
    }

    /// A read at `now` must bump `read_at` when it is older than this.
    pub fn touch_before(&self, now: Millis) -> Millis {
        now.saturating_sub(millis(self.touch_window))
    }
}

fn millis(duration: Duration) -> Millis {
    Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX)
}

/// Deletes every settings row and message that is stale at `now`, a batch at a time, stopping
/// early on shutdown.
pub async fn prune_once(
    store: &Store,
    retention: Retention,
    now: Millis,
    shutdown: &CancellationToken,
) -> Result<Pruned, StoreError> {
    let cutoff = retention.cutoff(now);
    let sessions = in_batches(shutdown, || store.prune_batch(cutoff, BATCH_SIZE)).await?;
    let created_before = now.saturating_sub(millis(retention.message_retention));
    let messages = in_batches(shutdown, || {
        store.prune_messages_batch(created_before, retention.message_limit, BATCH_SIZE)
    })
    .await?;
    Ok(Pruned { sessions, messages })
}

/// Runs `batch` until it deletes fewer than a full batch (or shutdown); returns the total.
async fn in_batches<F, Fut>(shutdown: &CancellationToken, mut batch: F) -> Result<usize, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<usize, StoreError>>,
{
    let mut total = 0;
    loop {
        let deleted = batch().await?;
        total += deleted;
        if deleted < BATCH_SIZE || shutdown.is_cancelled() {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// Starts the prune loop. The returned handle finishes after `shutdown` is cancelled.
pub fn spawn(
    store: Store,
    forgotten: Arc<Forgotten>,
    retention: Retention,
    every: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.cancelled() => break,
            }
            let now = now_millis();
            // A forgotten id needs remembering only while a cookie holding it could be valid.
            let cookies_expired = now.saturating_sub(COOKIE_MAX_AGE.whole_milliseconds() as Millis);
            match store.prune_forgotten(cookies_expired).await {
                Ok(_) => forgotten.forget_before(cookies_expired),
                Err(e) => tracing::error!(error = %e, "prune of forgotten sessions failed"),
            }
            let started = std::time::Instant::now();
            match prune_once(&store, retention, now, &shutdown).await {
                Ok(Pruned {
                    sessions: 0,
                    messages: 0,
                }) => tracing::debug!("prune: nothing to remove"),
                Ok(Pruned { sessions, messages }) => {
                    let elapsed_ms =
                        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    tracing::info!(
                        sessions,
                        messages,
                        elapsed_ms,
                        "prune: removed stale sessions and old messages"
                    )
                }
                Err(e) => tracing::error!(error = %e, "prune failed; will retry on the next run"),
            }
        }
        tracing::info!("prune task stopped");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_allows_for_the_touch_window() {
        let retention = Retention {
            stale_after: Duration::from_secs(100),
            touch_window: Duration::from_secs(1),
            message_retention: Duration::from_secs(1000),
            message_limit: 10,
        };
        assert_eq!(retention.cutoff(1_000_000), 1_000_000 - 101_000);
        assert_eq!(retention.touch_before(1_000_000), 999_000);
    }
}
