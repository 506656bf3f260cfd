//! The background task that deletes settings nobody has used for `--stale-after`, chat messages
//! past `--message-retention` or beyond the newest `--message-limit`, and forgotten ids whose
//! cookies have expired.
//!
//! It wakes every `--prune-every` (and once at startup), deletes in small batches through an
//! index, each batch its own short transaction so live writes never wait long, and stops when
//! shutdown is signalled. The rules themselves are [`Retention`]'s; `livesession prune` runs the
//! very same pass once.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::{Millis, now_millis};
use crate::metrics::metrics;
use crate::retention::{Pruned, Retention};
use crate::session::{DeviceId, SessionId};
use crate::site::Site;
use crate::store::{Store, StoreError};

/// Rows deleted per transaction.
pub const BATCH_SIZE: usize = 1000;

/// One pass of pruning at `now`, the same whether the background task runs it every
/// `--prune-every` or `livesession prune` runs it once: stale sessions and old messages, a batch
/// at a time (stopping between batches on shutdown), then forgotten ids whose cookies have
/// expired, then the change numbers pages acknowledged long ago. `signed_out` hears each batch of
/// idle devices the moment it is committed (the server refuses their cookies from then on, not
/// only once the pass is over).
pub async fn prune_pass(
    store: &Store,
    retention: Retention,
    now: Millis,
    shutdown: &CancellationToken,
    signed_out: impl Fn(&[(SessionId, DeviceId)]),
) -> Result<Pruned, StoreError> {
    let cutoffs = retention.cutoffs(now);
    // Sessions and messages first: a failure to expire forgotten ids must not keep stale data.
    let sessions = in_batches(shutdown, || {
        store.prune_batch(cutoffs.stale_before, BATCH_SIZE)
    })
    .await?;
    let messages = in_batches(shutdown, || {
        store.prune_messages_batch(cutoffs.messages_before, cutoffs.keep_messages, BATCH_SIZE)
    })
    .await?;
    let devices = in_batches(shutdown, || async {
        let pruned = store
            .prune_devices_batch(cutoffs.stale_before, BATCH_SIZE, now)
            .await?;
        signed_out(&pruned);
        Ok(pruned.len())
    })
    .await?;
    let forgotten = store.prune_forgotten(cutoffs.forgotten_before).await?;
    store.prune_signed_out(cutoffs.forgotten_before).await?;
    store
        .prune_page_acks(retention.page_acks_before(now))
        .await?;
    Ok(Pruned {
        sessions,
        messages,
        forgotten,
        devices,
    })
}

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
        devices: store.count_idle_devices(cutoffs.stale_before).await?,
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

/// Starts the prune loop on `store` (the site's); after each pass the site stops refusing the
/// forgotten ids the pass expired. The returned handle finishes after `shutdown` is cancelled.
pub fn spawn(
    site: Site,
    store: Store,
    every: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let retention = site.retention();
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.cancelled() => break,
            }
            let now = now_millis();
            let started = std::time::Instant::now();
            let pass = prune_pass(&store, retention, now, &shutdown, |pruned| {
                site.devices_pruned(pruned, now);
            })
            .await;
            metrics().prune_ran(&pass);
            match pass {
                Ok(pruned) => {
                    site.pruned(&pruned, now).await;
                    log_pass(&pruned, started.elapsed());
                }
                Err(e) => tracing::error!(error = %e, "prune failed; will retry on the next run"),
            }
        }
        tracing::info!("prune task stopped");
    })
}

/// One line for a pass that removed something, a debug line for one that did not.
fn log_pass(pruned: &Pruned, elapsed: Duration) {
    if pruned.is_empty() {
        tracing::debug!("prune: nothing to remove");
        return;
    }
    let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        sessions = pruned.sessions,
        messages = pruned.messages,
        forgotten = pruned.forgotten,
        devices = pruned.devices,
        elapsed_ms,
        "prune: removed stale sessions and devices, old messages and expired forgotten ids"
    )
}
