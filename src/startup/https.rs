//! HTTPS at startup: the certificate files checked before anything listens, and read again on
//! every `SIGHUP`; or the certificate of `--tls-domain` got over ACME (`acme`).

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::server;
use crate::http::tls::Certificates;

/// The certificate pair of `--tls-cert` and `--tls-key`, checked, or ACME's for `--tls-domain`
/// (got in a task until `shutdown`), with the HSTS header; `None` for plain HTTP.
pub(super) fn https(
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<server::Https>> {
    let certificates = match (&config.tls_cert, &config.tls_key) {
        _ if !config.tls_domain.is_empty() => super::acme::certificates(config, shutdown.clone())?,
        (Some(cert), Some(key)) => Certificates::load(cert, key)?,
        _ if config.redirect_http.is_some() => {
            anyhow::bail!("--redirect-http needs HTTPS to redirect to: --tls-cert or --tls-domain")
        }
        _ => return Ok(None),
    };
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
/// is refused with one line, and the old one keeps serving. Without certificate files there is
/// nothing to read again, but `SIGHUP` (a `systemctl reload`) never stops the server either.
pub(super) fn reload_on_sighup(
    certificates: Option<Arc<Certificates>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Registered now, so a SIGHUP is never the default action (the end of the process).
    let mut hangups = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                got = hangups.recv() => if got.is_none() { return },
                () = shutdown.cancelled() => return,
            }
            match certificates
                .as_ref()
                .filter(|c| c.from_files())
                .map(|c| c.reload())
            {
                Some(Ok(())) => tracing::info!("SIGHUP: the certificate and key were read again"),
                Some(Err(e)) => tracing::error!("SIGHUP: {e}; the old certificate keeps serving"),
                None => tracing::info!("SIGHUP: nothing to read again (no --tls-cert)"),
            }
        }
    });
    Ok(())
}
