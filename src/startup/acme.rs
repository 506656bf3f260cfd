//! Certificates from ACME for `--tls-domain`: Let's Encrypt (or `--acme-directory`) issues them,
//! the TLS-ALPN-01 challenge is answered on the HTTPS listener itself, and they are renewed a
//! third of their lifetime before they expire (30 days for Let's Encrypt's 90-day ones), with
//! backoff on failure (1 s, 2 s, 4 s, ... up to 18 hours), each failure logged. The protocol is
//! `rustls-acme`'s; the account key and the certificates are kept in `<data-dir>/acme/`, readable
//! by the owner only, so a restart serves the cached certificate without asking again.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use futures_util::StreamExt;
use rustls::crypto::ring;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use rustls_acme::{AccountCache, AcmeConfig, CertCache, EventOk};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::tls::Certificates;

/// Starts getting (or loading) the certificate of `--tls-domain` in a task of its own, until
/// `shutdown`; the certificates to serve, which hold it once it is there. Until then a browser's
/// handshake fails (there is nothing to show it yet); the ACME server's validation succeeds.
pub(super) fn certificates(
    config: &Config,
    shutdown: CancellationToken,
) -> anyhow::Result<Certificates> {
    let client = Arc::new(acme_client(config.acme_ca.as_deref())?);
    let mut acme = AcmeConfig::new_with_client_config(&config.tls_domain, client)
        .directory(&config.acme_directory);
    if let Some(email) = &config.acme_email {
        acme = acme.contact_push(format!("mailto:{email}"));
    }
    let mut state = acme.cache(AcmeDir(config.data_dir.join("acme"))).state();
    let certificates = Certificates::acme(state.resolver())?;
    let names = config.tls_domain.join(", ");
    tracing::info!(
        directory = %config.acme_directory,
        "HTTPS for {names}: the certificate comes from ACME"
    );
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                event = state.next() => event,
                () = shutdown.cancelled() => return,
            };
            match event {
                Some(Ok(EventOk::DeployedCachedCert)) => {
                    tracing::info!("HTTPS for {names}: serving the certificate kept from before");
                }
                Some(Ok(EventOk::DeployedNewCert)) => {
                    tracing::info!("HTTPS for {names}: a new certificate was issued and is served");
                }
                Some(Ok(EventOk::CertCacheStore | EventOk::AccountCacheStore)) => {
                    tracing::debug!("HTTPS for {names}: kept in the ACME cache");
                }
                Some(Err(e)) => {
                    tracing::error!("HTTPS for {names}: ACME failed ({e}); trying again later");
                }
                None => return,
            }
        }
    });
    Ok(certificates)
}

/// The TLS client for the ACME server: the system's roots, and `--acme-ca`'s certificates.
fn acme_client(ca: Option<&Path>) -> anyhow::Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system root rustls cannot use is no root of ours either.
        let _ = roots.add(cert);
    }
    if let Some(ca) = ca {
        let certs = CertificateDer::pem_file_iter(ca)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("{} holds no CA certificate in PEM form", ca.display()))?;
        for cert in certs {
            roots.add(cert).with_context(|| {
                format!(
                    "{} holds a CA certificate that cannot be used",
                    ca.display()
                )
            })?;
        }
    }
    Ok(
        ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS for the ACME server")?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// `<data-dir>/acme/`: one file per account and per certificate, named by a hash of what it is
/// for (the names, or the contact, and the ACME directory), so another directory or other
/// names never get the wrong one. The directory is 0700 and each file 0600, written whole to a
/// temporary file first, so a crash never leaves half a key.
struct AcmeDir(PathBuf);

impl AcmeDir {
    fn file(&self, kind: &str, parts: &[String], directory: &str) -> PathBuf {
        let mut hash = Sha256::new();
        for part in parts {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        hash.update(directory.as_bytes());
        let digest = hash.finalize();
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        self.0.join(format!("{kind}-{hex}.pem"))
    }

    async fn read(path: PathBuf) -> io::Result<Option<Vec<u8>>> {
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn write(&self, path: PathBuf, bytes: Vec<u8>) -> io::Result<()> {
        let dir = self.0.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)?;
            let partial = path.with_extension("partial");
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&partial)?;
            io::Write::write_all(&mut file, &bytes)?;
            file.sync_all()?;
            std::fs::rename(&partial, &path)
        })
        .await
        .map_err(io::Error::other)?
    }
}

#[async_trait::async_trait]
impl CertCache for AcmeDir {
    type EC = io::Error;

    async fn load_cert(&self, domains: &[String], directory: &str) -> io::Result<Option<Vec<u8>>> {
        AcmeDir::read(self.file("certificate", domains, directory)).await
    }

    async fn store_cert(&self, domains: &[String], directory: &str, cert: &[u8]) -> io::Result<()> {
        self.write(self.file("certificate", domains, directory), cert.to_vec())
            .await
    }
}

#[async_trait::async_trait]
impl AccountCache for AcmeDir {
    type EA = io::Error;

    async fn load_account(
        &self,
        contact: &[String],
        directory: &str,
    ) -> io::Result<Option<Vec<u8>>> {
        AcmeDir::read(self.file("account", contact, directory)).await
    }

    async fn store_account(
        &self,
        contact: &[String],
        directory: &str,
        account: &[u8],
    ) -> io::Result<()> {
        self.write(self.file("account", contact, directory), account.to_vec())
            .await
    }
}
