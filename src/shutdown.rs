//! One shutdown signal, fanned out to the server, the live sockets and the background tasks.
//!
//! The signal is a [`CancellationToken`]: the binary cancels it on SIGINT or SIGTERM, tests cancel
//! it themselves. Everything that must stop selects on `token.cancelled()`.

pub use tokio_util::sync::CancellationToken;

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => tracing::info!("received SIGINT; shutting down"),
        _ = term.recv() => tracing::info!("received SIGTERM; shutting down"),
    }
}
