//! TLS to PostgreSQL, with rustls: the connector the pool and the listening connection share,
//! the certificate check each `sslmode` asks for ([`Check`]), what the startup log says of the
//! connection, and a refused certificate told in one sentence.
//!
//! tokio-postgres negotiates (`prefer` falls back to plain when the server does not offer TLS;
//! `require` refuses then), and calls the verifier here on every handshake: it checks the chain
//! against the trusted CAs for `verify-ca`, and the host name too for `verify-full`, with
//! rustls' own webpki functions.

use std::error::Error;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Connection, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::target::{Check, PostgresTarget, SslMode};

/// What a connection to PostgreSQL runs over: TLS or plain TCP (or a Unix socket).
pub(super) type Stream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

/// How every connection of an instance is made: the pool's and the listening one.
pub(super) struct Connector {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    /// Certificates checked so far: how the first connection tells whether it was encrypted.
    handshakes: Arc<AtomicU64>,
}

impl Connector {
    /// The connector for `target`, connecting with `config` (the target's, with this
    /// instance's session settings). Fails when a CA file cannot be read.
    pub(super) fn new(
        target: &PostgresTarget,
        config: tokio_postgres::Config,
    ) -> Result<Connector, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let handshakes = Arc::new(AtomicU64::new(0));
        let verifier = Verifier {
            check: target.check(),
            roots: Arc::new(target.trusted()?),
            provider: Arc::clone(&provider),
            handshakes: Arc::clone(&handshakes),
        };
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        // What libpq offers since PostgreSQL 17; older servers ignore it.
        tls.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Connector {
            config,
            tls: MakeRustlsConnect::new(tls),
            handshakes,
        })
    }

    /// The connection parameters, for the pool.
    pub(super) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The TLS connector, for the pool.
    pub(super) fn tls(&self) -> MakeRustlsConnect {
        self.tls.clone()
    }

    /// Opens one connection, outside the pool.
    pub(super) async fn connect(
        &self,
    ) -> Result<(Client, Connection<Socket, Stream>), tokio_postgres::Error> {
        self.config.connect(self.tls.clone()).await
    }

    /// How many certificates were checked so far (each TLS handshake checks one).
    pub(super) fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::Relaxed)
    }
}

/// Checks the server's certificate as [`Check`] says; counts handshakes.
#[derive(Debug)]
struct Verifier {
    check: Check,
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    handshakes: Arc<AtomicU64>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.handshakes.fetch_add(1, Ordering::Relaxed);
        if self.check == Check::Nothing {
            return Ok(ServerCertVerified::assertion());
        }
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        if self.check == Check::ChainAndHost {
            verify_server_name(&cert, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    // The handshake's signatures are checked whatever is verified of the certificate.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Says, once connected, whether the connection is encrypted and what was verified: at `warn`
/// when it is encrypted but anyone could pose as the server.
pub(super) fn log_connected(target: &PostgresTarget, encrypted: bool) {
    let at = target.address();
    let sslmode = target.mode().as_str();
    if target.unix_only() {
        tracing::info!(
            encrypted = false,
            verified = false,
            "connected to PostgreSQL at {at}, a Unix socket (TLS does not apply)"
        );
        return;
    }
    if !encrypted {
        let why = match target.mode() {
            SslMode::Disable => "",
            _ => ": the server does not offer TLS",
        };
        tracing::info!(
            encrypted,
            verified = false,
            sslmode,
            "connected to PostgreSQL at {at} without encryption{why} (sslmode={sslmode})"
        );
        return;
    }
    match target.check() {
        Check::ChainAndHost => tracing::info!(
            encrypted,
            verified = true,
            sslmode,
            "connected to PostgreSQL at {at} over TLS, its certificate verified: signed by a \
             trusted CA, for this host (sslmode={sslmode})"
        ),
        Check::Chain => tracing::info!(
            encrypted,
            verified = true,
            sslmode,
            "connected to PostgreSQL at {at} over TLS, its certificate signed by a trusted CA; \
             the host name is not checked (sslmode={sslmode}; verify-full checks it)"
        ),
        Check::Nothing => tracing::warn!(
            encrypted,
            verified = false,
            sslmode,
            "connected to PostgreSQL at {at} over TLS, but its certificate is not verified \
             (sslmode={sslmode}): anyone on the way could pose as the server; use \
             sslmode=verify-full"
        ),
    }
}

/// The sentence for a connection that failed for TLS: a refused certificate, a failed
/// handshake, a server without TLS. `None` for any other failure.
pub(super) fn refusal(target: &PostgresTarget, error: &(dyn Error + 'static)) -> Option<String> {
    let reason = tls_failure(target, error)?;
    Some(format!(
        "cannot connect to PostgreSQL at {}: {reason}",
        target.address()
    ))
}

fn tls_failure(target: &PostgresTarget, error: &(dyn Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        // rustls' error travels inside an io::Error, whose `source` skips it.
        let inner = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if let Some(tls) = error.downcast_ref::<rustls::Error>().or(inner) {
            return Some(explain(target, tls));
        }
        // The server's own refusal of a plain connection, from pg_hba.conf.
        if target.mode() == SslMode::Disable
            && let Some(db) = error
                .downcast_ref::<tokio_postgres::Error>()
                .and_then(tokio_postgres::Error::as_db_error)
            && db.code() == &SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            && db.message().ends_with("no encryption")
        {
            return Some(format!(
                "it takes connections over TLS only, and sslmode=disable asks for none ({})",
                db.message()
            ));
        }
        if error.to_string() == "server does not support TLS" {
            return Some(format!(
                "the server does not offer TLS (sslmode={})",
                target.mode().as_str()
            ));
        }
        next = error.source();
    }
    None
}

/// What a TLS error means, as the end of a sentence.
fn explain(target: &PostgresTarget, error: &rustls::Error) -> String {
    let sslmode = target.mode().as_str();
    let rustls::Error::InvalidCertificate(error) = error else {
        return format!("the TLS handshake failed: {error} (sslmode={sslmode})");
    };
    match error {
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let names: Vec<String> = presented.iter().filter_map(|n| host_name(n)).collect();
            match names.as_slice() {
                [] => format!(
                    "its certificate names no host, so it is not for {} (sslmode={sslmode})",
                    expected.to_str()
                ),
                names => format!(
                    "its certificate is for {}, not {} (sslmode={sslmode})",
                    names.join(", "),
                    expected.to_str()
                ),
            }
        }
        CertificateError::NotValidForName => {
            format!("its certificate is not for this host (sslmode={sslmode})")
        }
        CertificateError::UnknownIssuer => match target.ca_files() {
            [] => "its certificate is not signed by a trusted CA (give the CA with \
                   --database-ca)"
                .to_owned(),
            files => {
                let mut list = String::new();
                for (i, file) in files.iter().enumerate() {
                    let or = if i == 0 { "" } else { " or " };
                    let _ = write!(list, "{or}{}", file.display());
                }
                format!("its certificate is not signed by the CA in {list}")
            }
        },
        CertificateError::ExpiredContext { not_after, .. } => {
            format!("its certificate expired on {}", date(*not_after))
        }
        CertificateError::Expired => "its certificate has expired".to_owned(),
        CertificateError::NotValidYetContext { not_before, .. } => format!(
            "its certificate is not valid until {} (is this machine's clock right?)",
            date(*not_before)
        ),
        CertificateError::NotValidYet => {
            "its certificate is not valid yet (is this machine's clock right?)".to_owned()
        }
        CertificateError::Revoked => "its certificate has been revoked".to_owned(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "its certificate is not one for a server (its extended key usage)".to_owned()
        }
        CertificateError::BadSignature => {
            "its certificate's signature does not match its issuer".to_owned()
        }
        CertificateError::BadEncoding => "its certificate cannot be read".to_owned(),
        other => format!("its certificate is refused: {other} (sslmode={sslmode})"),
    }
}

/// A host name or address of a certificate, as webpki shows one (`DnsName("db.example")`,
/// `IpAddress(10.0.0.1)`); `None` for a name that is not a host's. It is the server's text:
/// anything unprintable is escaped, so the message stays one line.
fn host_name(presented: &str) -> Option<String> {
    let name = presented
        .strip_prefix("DnsName(\"")
        .and_then(|rest| rest.strip_suffix("\")"))
        .or_else(|| {
            presented
                .strip_prefix("IpAddress(")
                .and_then(|rest| rest.strip_suffix(')'))
        })?;
    Some(name.escape_debug().to_string())
}

/// A certificate's time, to the second, in UTC.
fn date(time: UnixTime) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(time.as_secs());
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> PostgresTarget {
        PostgresTarget::parse(url, None).unwrap()
    }

    fn wrapped(error: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, error)
    }

    #[test]
    fn a_name_mismatch_names_both_hosts() {
        let t = target("postgres://ada:hunter2@db.example:5432/app?sslmode=verify-full");
        let error = wrapped(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("db.example").unwrap(),
                presented: vec![
                    "DnsName(\"other.example\")".to_owned(),
                    "IpAddress(10.0.0.1)".to_owned(),
                    "UniformResourceIdentifier(\"https://x\")".to_owned(),
                ],
            },
        ));
        assert_eq!(
            refusal(&t, &error).unwrap(),
            "cannot connect to PostgreSQL at db.example:5432: its certificate is for \
             other.example, 10.0.0.1, not db.example (sslmode=verify-full)"
        );
        let error = wrapped(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("db.example").unwrap(),
                presented: vec![
                    "DnsName(\"evil\nline\")".to_owned(),
                    "DirectoryName".to_owned(),
                ],
            },
        ));
        assert!(
            refusal(&t, &error).unwrap().ends_with(
                "its certificate is for evil\\nline, not db.example (sslmode=verify-full)"
            )
        );
    }

    #[test]
    fn an_unknown_ca_says_how_to_give_one() {
        let t = target("postgres://db.example/app?sslmode=verify-full");
        let error = wrapped(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert_eq!(
            refusal(&t, &error).unwrap(),
            "cannot connect to PostgreSQL at db.example:5432: its certificate is not signed by \
             a trusted CA (give the CA with --database-ca)"
        );
        let t = target("postgres://db.example/app?sslmode=verify-ca&sslrootcert=/etc/ca.pem");
        assert!(
            refusal(&t, &error)
                .unwrap()
                .ends_with("its certificate is not signed by the CA in /etc/ca.pem")
        );
    }

    #[test]
    fn an_expired_certificate_says_when() {
        let t = target("postgres://db.example/app?sslmode=verify-full");
        let error = wrapped(rustls::Error::InvalidCertificate(
            CertificateError::ExpiredContext {
                time: UnixTime::since_unix_epoch(Duration::from_secs(1_800_000_000)),
                not_after: UnixTime::since_unix_epoch(Duration::from_secs(1_700_000_000)),
            },
        ));
        assert!(
            refusal(&t, &error)
                .unwrap()
                .ends_with("its certificate expired on 2023-11-14T22:13:20Z")
        );
    }

    #[test]
    fn other_failures_are_not_tls_failures() {
        let t = target("postgres://db.example/app");
        let error = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(refusal(&t, &error), None);
    }
}
