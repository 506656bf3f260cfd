//! A throwaway certificate authority for the HTTPS tests: it signs `localhost` certificates, and
//! gives clients (reqwest, rustls, Chromium by its key's pin) that trust it and nothing else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PublicKeyData,
};
use sha2::{Digest, Sha256};
use tokio_rustls::rustls;

/// A CA that signs certificates for `localhost`.
pub(crate) struct Authority {
    ca: CertifiedIssuer<'static, KeyPair>,
    pem: String,
}

impl Authority {
    pub(crate) fn new(name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = ca.pem();
        Authority { ca, pem }
    }

    /// A certificate for `localhost` and its key, written to `<stem>.crt` and `<stem>.key`.
    pub(crate) fn issue(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &*self.ca).unwrap();
        let (cert_file, key_file) = (
            dir.join(format!("{stem}.crt")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }

    /// Writes this CA's certificate (PEM) to `path`, for a server that is to trust it.
    pub(crate) fn write_pem(&self, path: &Path) {
        std::fs::write(path, &self.pem).unwrap();
    }

    /// A client that trusts this CA only, for `https://localhost:<port>`.
    pub(crate) fn client(&self, server: SocketAddr) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.pem.as_bytes()).unwrap())
            .tls_built_in_root_certs(false)
            .resolve("localhost", server)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// A TLS client configuration that trusts this CA only.
    pub(crate) fn tls(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

/// The base64 of the SHA-256 of the public key (its SubjectPublicKeyInfo, DER) of the private
/// key in `key_file`: what Chromium's `--ignore-certificate-errors-spki-list` names a
/// certificate by.
pub(crate) fn spki_sha256_base64(key_file: &Path) -> String {
    let key = KeyPair::from_pem(&std::fs::read_to_string(key_file).unwrap()).unwrap();
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(key.subject_public_key_info()))
}
