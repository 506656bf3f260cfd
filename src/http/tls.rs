//! HTTPS from certificate files (`--tls-cert`, `--tls-key`): the pair is checked before it is
//! used (a file that does not parse, or a key that is not the certificate's, is refused with one
//! sentence naming the file), and [`Certificates::reload`] swaps in a new pair for the next
//! connection (on `SIGHUP`) while the old one keeps serving when the new one is bad. Open
//! connections are never touched: each keeps the configuration it was accepted with.
//!
//! Or from ACME (`--tls-domain`, see `crate::startup`): [`Certificates::acme`] serves what an
//! ACME client's resolver holds, and offers the `acme-tls/1` protocol, so the ACME server's
//! TLS-ALPN-01 validation is answered on this listener ([`is_acme_validation`]: such a
//! connection ends after its handshake).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;

use crate::lock::RwLock;

/// Why a certificate pair was refused: one sentence, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadPair(String);

/// The protocol name of ACME's TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The protocols offered by ALPN to browsers: HTTP/2 first, then HTTP/1.1.
const ALPN: [&[u8]; 2] = [H2_ALPN, b"http/1.1"];

/// HTTP/2's protocol name: a connection that chose it is served by HTTP/2.
pub const H2_ALPN: &[u8] = b"h2";

/// The served certificates and the TLS configuration made of them.
pub struct Certificates {
    /// The pair's files, read again on `SIGHUP`; `None` for ACME's.
    files: Option<(PathBuf, PathBuf)>,
    current: RwLock<Arc<ServerConfig>>,
}

impl Certificates {
    /// Reads and checks the pair in `cert` (PEM, the chain after the leaf) and `key` (PEM:
    /// PKCS#8, PKCS#1 RSA or SEC1 EC; RSA, ECDSA or Ed25519).
    pub fn load(cert: &Path, key: &Path) -> Result<Certificates, BadPair> {
        let config = server_config(cert, key)?;
        Ok(Certificates {
            files: Some((cert.to_owned(), key.to_owned())),
            current: RwLock::new(config),
        })
    }

    /// The certificates `resolver` holds (an ACME client's: it gets and renews them, and
    /// answers the `acme-tls/1` validation handshakes).
    pub fn acme(resolver: Arc<dyn ResolvesServerCert>) -> Result<Certificates, BadPair> {
        let mut config = config_with(Arc::new(ring::default_provider()), resolver)?;
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
        Ok(Certificates {
            files: None,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Whether the certificates come from files that `SIGHUP` reads again.
    pub fn from_files(&self) -> bool {
        self.files.is_some()
    }

    /// The configuration a new connection is accepted with.
    pub fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read())
    }

    /// Reads both files again; a bad pair is refused (the current one keeps serving). Nothing
    /// to read for ACME's.
    pub fn reload(&self) -> Result<(), BadPair> {
        let Some((cert, key)) = &self.files else {
            return Ok(());
        };
        let config = server_config(cert, key)?;
        *self.current.write() = config;
        Ok(())
    }
}

/// Whether a connection chose HTTP/2.
pub fn is_h2(connection: &rustls::ServerConnection) -> bool {
    connection.alpn_protocol() == Some(H2_ALPN)
}

/// Whether a connection is an ACME server's TLS-ALPN-01 validation: it ends after the
/// handshake, which was all it came for.
pub fn is_acme_validation(connection: &rustls::ServerConnection) -> bool {
    connection.alpn_protocol() == Some(ACME_TLS_ALPN)
}

/// The TLS configuration of the pair in `cert` and `key`: TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1
/// by ALPN.
fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, BadPair> {
    let chain = read_chain(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        BadPair(format!(
            "{} holds no private key in PEM form that can be read ({e})",
            key.display()
        ))
    })?;
    let provider = Arc::new(ring::default_provider());
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| {
            BadPair(format!(
                "{} holds a private key of a kind that cannot sign for TLS ({e})",
                key.display()
            ))
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| {
        BadPair(format!(
            "the private key in {} is not the key of the certificate in {}",
            key.display(),
            cert.display()
        ))
    })?;
    let config = config_with(provider, Arc::new(Fixed(Arc::new(certified))))?;
    Ok(Arc::new(config))
}

/// The server configuration both sources share: TLS 1.2 and 1.3 at their safe defaults, no
/// client certificates, [`ALPN`], the certificate from `resolver`.
fn config_with(
    provider: Arc<rustls::crypto::CryptoProvider>,
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<ServerConfig, BadPair> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BadPair(format!("TLS cannot be set up: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// One certificate for every name asked.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// The certificates in `path`, the leaf first.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, BadPair> {
    let unreadable = |e: &dyn std::fmt::Display| {
        BadPair(format!(
            "{} holds no certificate in PEM form that can be read ({e})",
            path.display()
        ))
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&e))?;
    if chain.is_empty() {
        return Err(unreadable(&"it is empty"));
    }
    Ok(chain)
}
