//! The background task that deletes settings nobody has used for `--stale-after`.
//!
//! It wakes every `--prune-every` (and once at startup), deletes stale rows in small batches
//! through the `read_at` index, each batch its own short transaction so live writes never wait
//! long, and stops when shutdown is signalled.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::store::{Millis, Store, StoreError, now_millis};

/// Rows deleted per transaction.
pub const BATCH_SIZE: usize = 1000;

/// When a row counts as stale.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// A row unused for this long is deleted.
    pub stale_after: Duration,
    /// Reads bump `read_at` at most once per window, so `read_at` may lag the last read by this
    /// much; the cutoff allows for it, so a row read within `stale_after` is never deleted.
    pub touch_window: Duration,
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

/// Deletes every row that is stale at `now`, a batch at a time, stopping early on shutdown.
/// Returns how many rows were deleted.
pub async fn prune_once(
    store: &Store,
    retention: Retention,
    now: Millis,
    shutdown: &CancellationToken,
) -> Result<usize, StoreError> {
    let cutoff = retention.cutoff(now);
    let mut total = 0;
    loop {
        let deleted = store.prune_batch(cutoff, BATCH_SIZE).await?;
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
            match prune_once(&store, retention, now_millis(), &shutdown).await {
                Ok(0) => tracing::debug!("prune: no stale sessions"),
                Ok(n) => tracing::info!(removed = n, "prune: removed stale sessions"),
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
        };
        assert_eq!(retention.cutoff(1_000_000), 1_000_000 - 101_000);
        assert_eq!(retention.touch_before(1_000_000), 999_000);
    }
}
