//! Certificates from ACME (`--tls-domain`), end to end against a real ACME server on loopback:
//! Debian's `pebble`, with `pebble-challtestsrv` as its DNS (every name is 127.0.0.1). The
//! server gets a certificate for a test name over TLS-ALPN-01 (answered on its own HTTPS port,
//! which is the port pebble validates on), serves it, keeps it and its account key in
//! `<data-dir>/acme/` readable by its owner only, and after a restart serves it from there with
//! pebble stopped. Without pebble the test says so and passes, except under `CI=true`.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::common::binary::Server;
use crate::common::tls::Authority;
use crate::common::{free_port, skip};

/// The name the certificate is for: pebble's DNS answers it with 127.0.0.1.
const NAME: &str = "livesession.test";

/// A child process that is killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something listens on `port`.
fn wait_for_port(port: u16, what: &str) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pebble and its DNS, validating TLS-ALPN-01 on `tls_port`; its directory URL and the address
/// of its management interface (which hands out its root).
struct Pebble {
    _dns: Running,
    _pebble: Running,
    directory: String,
    management: SocketAddr,
}

impl Pebble {
    fn start(dir: &Path, authority: &Authority, tls_port: u16) -> Option<Pebble> {
        let find = |name: &str| {
            ["/usr/bin", "/usr/local/bin", "/usr/sbin"]
                .iter()
                .map(|d| PathBuf::from(d).join(name))
                .find(|p| p.exists())
        };
        let (Some(pebble), Some(challtestsrv)) = (find("pebble"), find("pebble-challtestsrv"))
        else {
            return skip(
                "the ACME test",
                "pebble not found (install Debian's pebble package)",
            );
        };
        let (dns_port, dns_management) = (free_port(), free_port());
        let dns = Running(
            Command::new(challtestsrv)
                .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
                .args(["-management", &format!("127.0.0.1:{dns_management}")])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for_port(dns_management, "pebble-challtestsrv");

        let (listen, management) = (free_port(), free_port());
        let (cert, key) = authority.issue(dir, "pebble");
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{listen}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": cert,
                "privateKey": key,
                "httpPort": free_port(),
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        let config_file = dir.join("pebble-config.json");
        std::fs::write(&config_file, config.to_string()).unwrap();
        let pebble = Running(
            Command::new(pebble)
                .arg("-config")
                .arg(&config_file)
                .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
                // No random waits before validating, no nonces refused at random.
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for_port(listen, "pebble");
        Some(Pebble {
            _dns: dns,
            _pebble: pebble,
            directory: format!("https://localhost:{listen}/dir"),
            management: SocketAddr::from(([127, 0, 0, 1], management)),
        })
    }

    /// The root pebble issues under (a new one each run).
    async fn root(&self, authority: &Authority) -> reqwest::Certificate {
        let url = format!("https://localhost:{}/roots/0", self.management.port());
        let pem = authority
            .client(self.management)
            .get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        reqwest::Certificate::from_pem(&pem).unwrap()
    }
}

/// A client that trusts `root` only and finds [`NAME`] at `server`.
fn client_for(root: &reqwest::Certificate, server: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(root.clone())
        .tls_built_in_root_certs(false)
        .resolve(NAME, server)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_is_issued_over_tls_alpn_served_kept_and_served_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::new("pebble's own CA");
    let port = free_port();
    let Some(pebble) = Pebble::start(dir.path(), &authority, port) else {
        return;
    };
    let ca_file = dir.path().join("pebble-ca.pem");
    authority.write_pem(&ca_file);
    let data = dir.path().join("data");
    let listen = format!("127.0.0.1:{port}");
    let directory = pebble.directory.clone();
    let args = [
        "--listen",
        &listen,
        "--tls-domain",
        NAME,
        "--acme-directory",
        &directory,
        "--acme-ca",
        ca_file.to_str().unwrap(),
        "--acme-email",
        "ops@example.com",
    ];
    let server = Server::start(&data, &args);
    server
        .log
        .wait_for("a new certificate was issued and is served");

    // Served: a client that trusts pebble's root gets the pages over HTTPS under the name.
    let root = pebble.root(&authority).await;
    let client = client_for(&root, server.addr);
    let url = format!("https://{NAME}:{port}/settings");
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("__Host-livesession=") && cookie.contains("Secure"));
    assert!(response.headers().contains_key("strict-transport-security"));

    // Kept: the account key and the certificate, the owner's only.
    let cache = data.join("acme");
    assert_eq!(mode(&cache), 0o700);
    let mut kept: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(&cache).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        kept.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    kept.sort();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept[0].starts_with("account-") && kept[1].starts_with("certificate-"));
    server.stop();

    // With pebble gone, a restart serves the kept certificate, asking nobody.
    drop(pebble);
    let server = Server::start(&data, &args);
    server
        .log
        .wait_for("serving the certificate kept from before");
    let response = client_for(&root, server.addr)
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!server.logged("ACME failed"), "{:?}", server.log.lines());
    server.stop();
}

#[test]
fn https_flags_that_cannot_work_are_refused_before_anything_listens() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (name, expected) in [
        ("127.0.0.1", "is an address; --tls-domain takes a host name"),
        ("localhost", "is not a host name"),
        ("bad-.example.com", "is not a host name"),
        ("a b.example.com", "is not a host name"),
    ] {
        let output = crate::common::binary::run_to_exit(&data, &["--tls-domain", name]);
        crate::common::binary::assert_refused(&output, expected);
    }
    let output = crate::common::binary::run_to_exit(
        &data,
        &[
            "--tls-domain",
            NAME,
            "--tls-cert",
            "x.crt",
            "--tls-key",
            "x.key",
        ],
    );
    crate::common::binary::assert_refused(&output, "cannot be used with");
    let output = crate::common::binary::run_to_exit(&data, &["--redirect-http", "127.0.0.1:0"]);
    crate::common::binary::assert_refused(
        &output,
        "--redirect-http needs HTTPS to redirect to: --tls-cert or --tls-domain",
    );
    assert!(!data.join("acme").exists());
}
