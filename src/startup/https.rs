//! HTTPS at startup: the certificate files checked before anything listens, and read again on
//! every `SIGHUP`.

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::server;
use crate::http::tls::Certificates;

/// The certificate pair of `--tls-cert` and `--tls-key`, checked, with the HSTS header; `None`
/// for plain HTTP.
pub(super) fn https(config: &Config) -> anyhow::Result<Option<server::Https>> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let certificates = Certificates::load(cert, key)?;
    let hsts = config
        .hsts()
        .map(|value| http::HeaderValue::try_from(value).context("the HSTS header"))
        .transpose()?;
    Ok(Some(server::Https {
        certificates: Arc::new(certificates),
        hsts,
    }))
}

/// Reads the certificate pair again on every `SIGHUP` (what certbot's deploy hook or
/// `systemctl reload` sends), until `shutdown`: the next connection gets the new one; a bad pair
/// is refused with one line, and the old one keeps serving.
pub(super) async fn reload_on_sighup(certificates: Arc<Certificates>, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; the certificate is not reloaded");
            return;
        }
    };
    loop {
        tokio::select! {
            got = hangups.recv() => if got.is_none() { return },
            () = shutdown.cancelled() => return,
        }
        match certificates.reload() {
            Ok(()) => tracing::info!("SIGHUP: the certificate and key were read again"),
            Err(e) => tracing::error!("SIGHUP: {e}; the old certificate keeps serving"),
        }
    }
}
