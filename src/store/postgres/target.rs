//! Where PostgreSQL is, and how to reach it: a URL read the way libpq reads it.
//!
//! tokio-postgres knows `sslmode` only as `disable`, `prefer` and `require`, and `sslrootcert`
//! not at all, while a managed database wants libpq's `verify-ca` or `verify-full`. So
//! [`PostgresTarget`] takes both parameters out of the URL, hands the rest to tokio-postgres,
//! and keeps what they asked for: whether to encrypt ([`SslMode`]) and what to verify of the
//! server's certificate ([`Check`]), against which CAs.
//!
//! As in libpq: no `sslmode` means `prefer`; a CA given to `prefer` or `require` (with
//! `--database-ca` or `sslrootcert`) makes them verify the chain like `verify-ca`;
//! `sslrootcert=system` means the system's CAs and asks for `verify-full`; and TLS does not
//! apply to a Unix socket.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres::config::Host;

/// `sslmode`, as libpq reads it (its `allow` excepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, plain otherwise.
    Prefer,
    /// TLS or nothing.
    Require,
    /// TLS, and a certificate signed by a trusted CA.
    VerifyCa,
    /// TLS, and a certificate signed by a trusted CA for the host connected to.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err(
                    "sslmode=allow (plain first, TLS only if the server insists) is not \
                            supported: use sslmode=prefer, or verify-full"
                        .to_owned(),
                );
            }
            other => {
                return Err(format!(
                    "sslmode {other:?} is not one of disable, prefer, require, verify-ca, \
                     verify-full"
                ));
            }
        })
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// What is verified of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// Nothing: the connection is encrypted, but anyone on the way could pose as the server.
    Nothing,
    /// That a trusted CA signed it, whatever host it names.
    Chain,
    /// That a trusted CA signed it for the host connected to.
    ChainAndHost,
}

/// A PostgreSQL database to connect to: the URL's connection parameters for tokio-postgres,
/// how to use TLS, and which CAs to trust.
#[derive(Clone)]
pub struct PostgresTarget {
    /// The URL without `sslmode` and `sslrootcert`, its `sslmode` set to what tokio-postgres
    /// knows of ours (`require` for both `verify-` modes).
    config: tokio_postgres::Config,
    mode: SslMode,
    /// PEM files of CA certificates: `--database-ca`, `sslrootcert`.
    ca_files: Vec<PathBuf>,
    /// Whether the system's CAs are trusted too: `sslrootcert=system`, or no CA file given.
    system_roots: bool,
    /// Every host is a Unix socket, where TLS does not apply.
    unix_only: bool,
}

impl PostgresTarget {
    /// Reads a PostgreSQL URL (`postgres://` or `postgresql://`) and the CA file given beside it
    /// (`--database-ca`), and checks that every CA file named holds certificates. A message
    /// never repeats the URL, which may hold a password.
    pub fn new(url: &str, ca: Option<&Path>) -> Result<PostgresTarget, String> {
        let target = PostgresTarget::parse(url, ca)?;
        for file in &target.ca_files {
            read_ca(file)?;
        }
        Ok(target)
    }

    /// Checks that `path` is a PEM file of one or more usable CA certificates.
    pub fn check_ca_file(path: &Path) -> Result<(), String> {
        read_ca(path).map(drop)
    }

    /// [`PostgresTarget::new`] without reading the CA files.
    pub(in crate::store) fn parse(url: &str, ca: Option<&Path>) -> Result<PostgresTarget, String> {
        let (rest, tls) = take_tls_params(url.trim())?;
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e| format!("not a usable PostgreSQL URL: {e}"))?;
        let system = tls.rootcert.as_deref() == Some(OsStr::new("system"));
        let mode = match tls.mode.as_deref() {
            Some(value) => SslMode::parse(value)?,
            // libpq 16: the system's CAs are for verifying the host.
            None if system => SslMode::VerifyFull,
            None if tls.is_url => SslMode::Prefer,
            // A URL tokio-postgres reads by itself (key=value pairs) keeps its own sslmode.
            None => match config.get_ssl_mode() {
                tokio_postgres::config::SslMode::Disable => SslMode::Disable,
                tokio_postgres::config::SslMode::Require => SslMode::Require,
                _ => SslMode::Prefer,
            },
        };
        if system && mode != SslMode::VerifyFull {
            return Err(format!(
                "sslmode={} may not be used with sslrootcert=system: use sslmode=verify-full",
                mode.as_str()
            ));
        }
        let mut ca_files: Vec<PathBuf> = ca.map(Path::to_path_buf).into_iter().collect();
        if let Some(file) = tls.rootcert.filter(|_| !system) {
            ca_files.push(PathBuf::from(file));
        }
        let hosts = config.get_hosts();
        let unix_only = !hosts.is_empty() && hosts.iter().all(|h| matches!(h, Host::Unix(_)));
        config.ssl_mode(match mode {
            _ if unix_only => tokio_postgres::config::SslMode::Disable,
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        Ok(PostgresTarget {
            config,
            mode,
            system_roots: system || ca_files.is_empty(),
            ca_files,
            unix_only,
        })
    }

    /// The connection parameters for tokio-postgres.
    pub(in crate::store) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    pub(super) fn mode(&self) -> SslMode {
        self.mode
    }

    /// Whether a connection tries TLS at all.
    pub(super) fn tries_tls(&self) -> bool {
        self.mode != SslMode::Disable && !self.unix_only
    }

    pub(super) fn unix_only(&self) -> bool {
        self.unix_only
    }

    pub(super) fn ca_files(&self) -> &[PathBuf] {
        &self.ca_files
    }

    /// What is verified of the server's certificate.
    pub(super) fn check(&self) -> Check {
        match self.mode {
            SslMode::Disable => Check::Nothing,
            SslMode::Prefer | SslMode::Require if self.ca_files.is_empty() => Check::Nothing,
            SslMode::Prefer | SslMode::Require | SslMode::VerifyCa => Check::Chain,
            SslMode::VerifyFull => Check::ChainAndHost,
        }
    }

    /// Every host and port, as `host:port` (comma-separated when there are several).
    pub(super) fn address(&self) -> String {
        let ports = self.config.get_ports();
        let hosts = self.config.get_hosts();
        if hosts.is_empty() {
            return "localhost".to_owned();
        }
        let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let shown: Vec<String> = hosts
            .iter()
            .enumerate()
            .map(|(i, host)| match host {
                Host::Tcp(host) if host.contains(':') => format!("[{host}]:{}", port(i)),
                Host::Tcp(host) => format!("{host}:{}", port(i)),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        shown.join(",")
    }

    /// The CAs a certificate must be signed by: the CA files, and the system's when
    /// [`PostgresTarget::system_roots`]. Loaded only when something is verified.
    pub(super) fn trusted(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        if self.check() == Check::Nothing || !self.tries_tls() {
            return Ok(roots);
        }
        for file in &self.ca_files {
            for cert in read_ca(file)? {
                // read_ca added each one already: this cannot fail.
                roots.add(cert).map_err(|e| e.to_string())?;
            }
        }
        if self.system_roots {
            let native = rustls_native_certs::load_native_certs();
            let (added, _unusable) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                tracing::warn!(
                    "found no CA certificates on this system (install ca-certificates, or \
                     give the database's CA with --database-ca)"
                );
            }
        }
        Ok(roots)
    }
}

/// `sslmode` and `sslrootcert`, as found in a URL.
#[derive(Default)]
struct TlsParams {
    /// A `postgres://` URL, read here (not key=value pairs, read by tokio-postgres).
    is_url: bool,
    mode: Option<String>,
    rootcert: Option<std::ffi::OsString>,
}

/// Splits `sslmode` and `sslrootcert` off a `postgres://` URL's query; the rest is for
/// tokio-postgres. The query starts where tokio-postgres starts it: at the first `?` after the
/// credentials (which end at the first `@`). The last of a repeated parameter wins, as in libpq.
/// libpq's other TLS parameters (client certificates, CRLs, protocol versions) are refused by
/// name rather than ignored.
fn take_tls_params(url: &str) -> Result<(String, TlsParams), String> {
    let Some(body) = ["postgres://", "postgresql://"]
        .iter()
        .find_map(|prefix| url.strip_prefix(prefix))
    else {
        return Ok((url.to_owned(), TlsParams::default()));
    };
    let mut params = TlsParams {
        is_url: true,
        ..TlsParams::default()
    };
    let credentials_end = body.find('@').map_or(0, |at| at + 1);
    let Some(query_at) = body[credentials_end..]
        .find('?')
        .map(|at| url.len() - body.len() + credentials_end + at)
    else {
        return Ok((url.to_owned(), params));
    };
    let mut kept = Vec::new();
    for pair in url[query_at + 1..].split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value: Vec<u8> = percent_decode_str(value).collect();
        match percent_decode_str(key).decode_utf8_lossy().as_ref() {
            "sslmode" => params.mode = Some(String::from_utf8_lossy(&value).into_owned()),
            "sslrootcert" if value.is_empty() => params.rootcert = None,
            "sslrootcert" => params.rootcert = Some(OsStr::from_bytes(&value).to_owned()),
            // tokio-postgres's own: direct TLS, without the SSLRequest round trip.
            "sslnegotiation" => kept.push(pair),
            key if key.starts_with("ssl") => {
                return Err(format!(
                    "{key} is not supported (of libpq's TLS parameters this build reads \
                     sslmode and sslrootcert; client certificates are not supported)"
                ));
            }
            _ => kept.push(pair),
        }
    }
    let mut rest = url[..query_at].to_owned();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    Ok((rest, params))
}

/// The certificates of a PEM file of one or more CA certificates, each checked to be usable as
/// a CA.
pub(super) fn read_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{shown} is not a PEM file of certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{shown} holds no certificate (a PEM file of -----BEGIN CERTIFICATE----- blocks)"
        ));
    }
    let mut roots = RootCertStore::empty();
    for (n, cert) in certs.iter().enumerate() {
        roots
            .add(cert.clone())
            .map_err(|e| format!("certificate {} in {shown} cannot be a CA: {e}", n + 1))?;
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> PostgresTarget {
        PostgresTarget::parse(url, None).unwrap()
    }

    fn error(url: &str) -> String {
        PostgresTarget::parse(url, None).err().unwrap()
    }

    #[test]
    fn no_sslmode_means_prefer_with_nothing_verified() {
        let t = target("postgres://ada:pw@db.example/app");
        assert_eq!((t.mode(), t.check()), (SslMode::Prefer, Check::Nothing));
        assert!(t.tries_tls());
        assert_eq!(
            t.config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Prefer
        );
        assert_eq!(t.address(), "db.example:5432");
    }

    #[test]
    fn each_sslmode_means_what_libpq_says() {
        use tokio_postgres::config::SslMode as Driver;
        for (mode, ours, check, driver) in [
            ("disable", SslMode::Disable, Check::Nothing, Driver::Disable),
            ("prefer", SslMode::Prefer, Check::Nothing, Driver::Prefer),
            ("require", SslMode::Require, Check::Nothing, Driver::Require),
            (
                "verify-ca",
                SslMode::VerifyCa,
                Check::Chain,
                Driver::Require,
            ),
            (
                "verify-full",
                SslMode::VerifyFull,
                Check::ChainAndHost,
                Driver::Require,
            ),
        ] {
            let t = target(&format!("postgres://db.example/app?sslmode={mode}"));
            assert_eq!((t.mode(), t.check()), (ours, check), "{mode}");
            assert_eq!(t.config().get_ssl_mode(), driver, "{mode}");
            assert_eq!(t.mode().as_str(), mode);
        }
    }

    #[test]
    fn tls_parameters_are_taken_out_and_the_others_kept() {
        let t = target(
            "postgresql://ada:p%3Fw@db.example:6543/app?application_name=x&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
        );
        assert_eq!(t.mode(), SslMode::VerifyFull);
        assert_eq!(t.ca_files(), [PathBuf::from("/etc/ca.pem")]);
        assert_eq!(t.config().get_application_name(), Some("x"));
        assert_eq!(
            t.config().get_connect_timeout(),
            Some(&std::time::Duration::from_secs(3))
        );
        assert_eq!(t.config().get_password(), Some(&b"p?w"[..]));
        assert_eq!(t.address(), "db.example:6543");
        // A `?` in the password is not the query.
        let t = target("postgres://ada:a?b@db.example/app?sslmode=require");
        assert_eq!(t.mode(), SslMode::Require);
        assert_eq!(t.config().get_password(), Some(&b"a?b"[..]));
    }

    #[test]
    fn a_ca_makes_prefer_and_require_verify_the_chain() {
        let t = PostgresTarget::parse(
            "postgres://db.example/app?sslmode=require",
            Some(Path::new("/ca.pem")),
        )
        .unwrap();
        assert_eq!(t.check(), Check::Chain);
        let t = target("postgres://db.example/app?sslrootcert=/ca.pem");
        assert_eq!((t.mode(), t.check()), (SslMode::Prefer, Check::Chain));
        let both = PostgresTarget::parse(
            "postgres://db.example/app?sslmode=verify-full&sslrootcert=/b.pem",
            Some(Path::new("/a.pem")),
        )
        .unwrap();
        assert_eq!(both.ca_files(), [PathBuf::from("/a.pem"), "/b.pem".into()]);
        assert!(!both.system_roots);
    }

    #[test]
    fn sslrootcert_system_asks_for_verify_full() {
        let t = target("postgres://db.example/app?sslrootcert=system");
        assert_eq!(t.mode(), SslMode::VerifyFull);
        assert!(t.system_roots && t.ca_files().is_empty());
        let e = error("postgres://db.example/app?sslrootcert=system&sslmode=require");
        assert!(e.contains("sslmode=verify-full"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_without_the_url() {
        let e = error("postgres://ada:hunter2@db.example/app?sslmode=verify-everything");
        assert!(
            e.contains("verify-everything") && !e.contains("hunter2"),
            "{e}"
        );
        let e = error("postgres://ada:hunter2@db.example/app?sslmode=allow");
        assert!(e.contains("prefer"), "{e}");
        let e = error("postgres://ada:hunter2@db.example:port/app?sslmode=require");
        assert!(!e.contains("hunter2"), "{e}");
        let e = error("postgres://ada:hunter2@db.example/app?sslmode=require&sslcert=/c.pem");
        assert!(e.starts_with("sslcert is not supported"), "{e}");
    }

    #[test]
    fn tls_does_not_apply_to_a_unix_socket() {
        let t = target("postgres://ada@%2Frun%2Fpostgresql/app?sslmode=verify-full");
        assert!(t.unix_only() && !t.tries_tls());
        assert_eq!(
            t.config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
    }

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let dir = std::env::temp_dir().join(format!("livesession-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(
            read_ca(&empty)
                .unwrap_err()
                .contains("holds no certificate")
        );
        let missing = dir.join("missing.pem");
        assert!(read_ca(&missing).unwrap_err().starts_with("cannot read"));
        let broken = dir.join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(read_ca(&broken).unwrap_err().contains("cannot be a CA"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
