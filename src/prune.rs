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

use crate::metrics::metrics;
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

/// What one prune pass removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Stale settings rows.
    pub sessions: usize,
    /// Chat messages past the retention or beyond the newest `message_limit`.
    pub messages: usize,
    /// Forgotten ids whose cookies have expired, so they need no remembering.
    pub forgotten: usize,
}

impl Pruned {
    /// True when nothing was (or would be) removed.
    pub fn is_empty(&self) -> bool {
        *self == Pruned::default()
    }
}

/// Where one prune pass at a given time draws its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// Settings rows last used before this are stale.
    pub stale_before: Millis,
    /// Messages posted before this are past the retention.
    pub messages_before: Millis,
    /// Only this many of the newest messages are kept.
    pub keep_messages: usize,
    /// Ids forgotten before this are remembered no more: every cookie holding one has expired.
    pub forgotten_before: Millis,
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

    /// The lines a prune pass at `now` draws: one definition for the real pass and the dry run.
    pub fn cutoffs(&self, now: Millis) -> Cutoffs {
        Cutoffs {
            stale_before: self.cutoff(now),
            messages_before: now.saturating_sub(millis(self.message_retention)),
            keep_messages: self.message_limit,
            forgotten_before: now.saturating_sub(millis(COOKIE_MAX_AGE.unsigned_abs())),
        }
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
    let cutoffs = retention.cutoffs(now);
    let sessions = in_batches(shutdown, || {
        store.prune_batch(cutoffs.stale_before, BATCH_SIZE)
    })
    .await?;
    let messages = in_batches(shutdown, || {
        store.prune_messages_batch(cutoffs.messages_before, cutoffs.keep_messages, BATCH_SIZE)
    })
    .await?;
    Ok(Pruned {
        sessions,
        messages,
        forgotten: 0,
    })
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
            let started = std::time::Instant::now();
            let pass = prune_pass(&store, retention, now, &shutdown).await;
            metrics().prune_ran(&pass);
            match pass {
                Ok(pruned) => {
                    forgotten.forget_before(retention.cutoffs(now).forgotten_before);
                    if pruned.is_empty() {
                        tracing::debug!("prune: nothing to remove");
                    } else {
                        let elapsed_ms =
                            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                        tracing::info!(
                            sessions = pruned.sessions,
                            messages = pruned.messages,
                            forgotten = pruned.forgotten,
                            elapsed_ms,
                            "prune: removed stale sessions, old messages and expired forgotten ids"
                        )
                    }
                }
                Err(e) => tracing::error!(error = %e, "prune failed; will retry on the next run"),
            }
        }
        tracing::info!("prune task stopped");
    })
}

/// One pass of pruning at `now`, the same whether the background task runs it every
/// `--prune-every` or `livesession prune` runs it once: forgotten ids whose cookies have expired,
/// then stale sessions and old messages (see [`prune_once`]).
pub async fn prune_pass(
    store: &Store,
    retention: Retention,
    now: Millis,
    shutdown: &CancellationToken,
) -> Result<Pruned, StoreError> {
    // Sessions and messages first: a failure to expire forgotten ids must not keep stale data.
    let pruned = prune_once(store, retention, now, shutdown).await?;
    let forgotten = store
        .prune_forgotten(retention.cutoffs(now).forgotten_before)
        .await?;
    // Pages resend an unacknowledged change within seconds of reconnecting; an hour is plenty.
    store
        .prune_page_acks(now.saturating_sub(millis(PAGE_ACK_MEMORY)))
        .await?;
    Ok(Pruned {
        forgotten,
        ..pruned
    })
}

/// How long the change numbers pages had applied are remembered.
pub const PAGE_ACK_MEMORY: Duration = Duration::from_secs(60 * 60);

/// What [`prune_pass`] would remove at `now`, removing nothing: the same cutoffs, and the store
/// counts with the same predicates it deletes with.
pub async fn count_pass(
    store: &Store,
    retention: Retention,
    now: Millis,
) -> Result<Pruned, StoreError> {
    let cutoffs = retention.cutoffs(now);
    Ok(Pruned {
        sessions: store.count_stale(cutoffs.stale_before).await?,
        messages: store
            .count_old_messages(cutoffs.messages_before, cutoffs.keep_messages)
            .await?,
        forgotten: store
            .count_expired_forgotten(cutoffs.forgotten_before)
            .await?,
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
