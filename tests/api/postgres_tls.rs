//! PostgreSQL over TLS, against a real server of the test's own: `initdb` in a temporary dir,
//! `ssl = on` with a certificate for `localhost` signed by a CA made on the spot, and a
//! `pg_hba.conf` that takes TCP connections over TLS only. The real binary connects to it with
//! each `sslmode`: verified connections start, a certificate for another host or from an unknown
//! CA stops startup with one sentence, `require` connects unverified and says so, `disable` is
//! refused, `prefer` falls back to plain once the server stops offering TLS, and two instances
//! share a session and the chat over verified TLS (the pool and the listening connection).
//!
//! It needs PostgreSQL's server binaries (`initdb`, `pg_ctl`, `postgres`, `pg_isready`: Debian's
//! `postgresql` package), run as the `postgres` user when the test runs as root; without them it
//! says it was skipped and why, or fails under `CI=true`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::binary::{Server, assert_refused, run_to_exit, same_browser_on};
use crate::common::live::{self, recv_until};
use crate::common::tls::Authority;
use crate::common::{Browser, SECRET_A, free_port, html_theme, message_ids, username_field};
use reqwest::StatusCode;

/// The database the instances use on the test's server.
const DATABASE: &str = "livesession";

/// A PostgreSQL server of the test's own, stopped and removed on drop.
struct TlsServer {
    port: u16,
    /// The running server (or `runuser`, its parent, when run as root).
    postmaster: Option<std::process::Child>,
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Run the server's programs as this user (`postgres`): they refuse to run as root.
    run_as: Option<String>,
    /// The CA that signed the server's certificate, and another one that did not.
    ca: PathBuf,
    other_ca: PathBuf,
}

impl TlsServer {
    /// Sets up and starts the server, or says why the test is skipped.
    fn start(test: &str) -> Option<TlsServer> {
        let what = format!("PostgreSQL TLS test {test}");
        let Some(bin) = server_binaries() else {
            return crate::common::skip(
                &what,
                "no PostgreSQL server binaries (initdb, pg_ctl, postgres, pg_isready) in \
                 /usr/lib/postgresql/*/bin or on PATH; apt-get install postgresql",
            );
        };
        let root = output("id", &["-u"]).as_deref() == Some("0");
        let owner = match root {
            false => None,
            true => match (
                output("id", &["-u", "postgres"]),
                output("id", &["-g", "postgres"]),
            ) {
                (Some(uid), Some(gid)) => Some((uid.parse().unwrap(), gid.parse().unwrap())),
                _ => {
                    return crate::common::skip(
                        &what,
                        "running as root, and there is no postgres user to run the server as",
                    );
                }
            },
        };
        let dir = tempfile::tempdir().unwrap();
        let mut server = TlsServer {
            port: free_port(),
            postmaster: None,
            ca: dir.path().join("ca.pem"),
            other_ca: dir.path().join("other-ca.pem"),
            dir,
            bin,
            run_as: owner.map(|_| "postgres".to_owned()),
        };
        let (cert, key) = server.make_certificates();
        if let Some((uid, gid)) = owner {
            for file in [server.dir.path(), cert.as_path(), key.as_path()] {
                std::os::unix::fs::chown(file, Some(uid), Some(gid)).unwrap();
            }
        }
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D",
                path(&data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
        );
        let config = format!(
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nfsync = off\n\
             max_connections = 100\n",
            server.port,
            path(server.dir.path()),
            path(&cert),
            path(&key),
        );
        append(&data.join("postgresql.conf"), &config);
        server.trust(&[
            "hostssl all all 127.0.0.1/32 trust",
            "host all all 127.0.0.1/32 reject",
        ]);
        let log = std::fs::File::create(server.dir.path().join("server.log")).unwrap();
        // The server runs as this process's child (not daemonized by pg_ctl), so it is reaped.
        let child = server
            .command("postgres")
            .args(["-D", path(&data)])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        server.postmaster = Some(child);
        server.wait_until_ready();
        Some(server)
    }

    /// Waits (30 s at most) until the server accepts connections.
    fn wait_until_ready(&mut self) {
        let started = std::time::Instant::now();
        let socket = path(self.dir.path()).to_owned();
        let port = self.port.to_string();
        loop {
            let ready = self
                .command("pg_isready")
                .args(["-q", "-h", &socket, "-p", &port])
                .status()
                .unwrap();
            if ready.success() {
                return;
            }
            let exited = self.postmaster.as_mut().unwrap().try_wait().unwrap();
            let log = || std::fs::read_to_string(self.dir.path().join("server.log"));
            assert!(exited.is_none(), "PostgreSQL exited: {:?}", log());
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "PostgreSQL is not ready: {:?}",
                log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A CA, a server certificate for `localhost` it signs, and another CA. Returns the server's
    /// certificate and key files.
    fn make_certificates(&self) -> (PathBuf, PathBuf) {
        let ca = Authority::new("livesession test CA");
        ca.write_pem(&self.ca);
        Authority::new("some other CA").write_pem(&self.other_ca);
        let (cert_file, key_file) = ca.issue(self.dir.path(), "server");
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        (cert_file, key_file)
    }

    /// One of the server's programs, to run as the server's user.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        }
    }

    /// Runs one of the server's programs, as the server's user; panics if it fails.
    fn run(&self, program: &str, args: &[&str]) {
        let output = self.command(program).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Replaces `pg_hba.conf` with `lines` (and trust on the Unix socket, for the test's own
    /// connection); takes effect at the next reload.
    fn trust(&self, lines: &[&str]) {
        let hba = format!("local all all trust\n{}\n", lines.join("\n"));
        std::fs::write(self.data().join("pg_hba.conf"), hba).unwrap();
    }

    /// A connection over the Unix socket, as the administrator.
    async fn admin(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::Config::new()
            .host_path(self.dir.path())
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }

    /// Creates the instances' database.
    async fn create_database(&self) {
        self.admin()
            .await
            .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
            .await
            .unwrap();
    }

    /// The URL of the instances' database on `host`, with these parameters.
    fn url(&self, host: &str, params: &str) -> String {
        let query = if params.is_empty() {
            String::new()
        } else {
            format!("?{params}")
        };
        format!("postgres://postgres@{host}:{}/{DATABASE}{query}", self.port)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let Some(mut postmaster) = self.postmaster.take() else {
            return;
        };
        let data = self.data();
        let stopped = self
            .command("pg_ctl")
            .args(["-D", path(&data), "-m", "immediate", "-w", "stop"])
            .output();
        if !stopped.is_ok_and(|output| output.status.success()) {
            let _ = postmaster.kill();
        }
        let _ = postmaster.wait();
    }
}

/// A self-signed CA certificate and its key.
/// The folder of `initdb` and `pg_ctl`: Debian's newest, or the first on PATH.
fn server_binaries() -> Option<PathBuf> {
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    debian.sort();
    let path = std::env::var_os("PATH").unwrap_or_default();
    debian
        .into_iter()
        .rev()
        .map(|(_, bin)| bin)
        .chain(std::env::split_paths(&path))
        .find(|bin| {
            ["initdb", "pg_ctl", "postgres", "pg_isready"]
                .iter()
                .all(|program| bin.join(program).is_file())
        })
}

/// What a command prints, trimmed; `None` when it fails.
fn output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn append(file: &Path, text: &str) {
    let mut contents = std::fs::read_to_string(file).unwrap();
    contents.push_str(text);
    std::fs::write(file, contents).unwrap();
}

/// Starts an instance on `url` with `args`, and returns it once it listens.
fn serve(data_dir: &Path, url: &str, args: &[&str]) -> Server {
    let mut all = vec!["--database-url", url, "--secret-key", SECRET_A];
    all.extend_from_slice(args);
    Server::start(data_dir, &all)
}

/// The line the instance logged about its connection to PostgreSQL.
fn connection_line(server: &Server) -> String {
    server.log.wait_for("connected to PostgreSQL at")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_tls_connects_and_a_refused_certificate_stops_startup_with_one_sentence() {
    let Some(server) = TlsServer::start("verified_tls_connects") else {
        return;
    };
    server.create_database().await;
    let dirs = tempfile::tempdir().unwrap();
    let data = dirs.path().join("data");
    let ca = path(&server.ca);

    // verify-full with the CA, for the host the certificate names: connected and verified.
    let url = server.url("localhost", "sslmode=verify-full");
    let instance = serve(&data, &url, &["--database-ca", ca]);
    let line = connection_line(&instance);
    assert!(line.contains(" INFO "), "{line}");
    assert!(
        line.contains(&format!(
            "connected to PostgreSQL at localhost:{} over TLS, its certificate verified: signed \
             by a trusted CA, for this host (sslmode=verify-full)",
            server.port
        )),
        "{line}"
    );
    assert!(line.contains("encrypted=true verified=true"), "{line}");
    let mut browser = Browser::new(instance.addr);
    assert_eq!(
        browser.save_settings("ada", "dark").await.status(),
        StatusCode::SEE_OTHER
    );
    instance.stop();

    // The same through the URL's sslrootcert, and for a maintenance command with the flag.
    let url = server.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    serve(&data, &url, &[]).stop();
    let url = server.url("localhost", "sslmode=verify-full");
    let stats = run_to_exit(
        &data,
        &[
            "stats",
            "--json",
            "--database-url",
            &url,
            "--database-ca",
            ca,
        ],
    );
    assert!(stats.status.success(), "{stats:?}");
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["sessions"], 1, "{stats}");

    // A host the certificate does not name: refused, with what did not match.
    let url = server.url("127.0.0.1", "sslmode=verify-full");
    let output = run_to_exit(&data, &["--database-url", &url, "--database-ca", ca]);
    assert_refused(
        &output,
        &format!(
            "livesession: cannot connect to PostgreSQL at 127.0.0.1:{}: its certificate is for \
             localhost, not 127.0.0.1 (sslmode=verify-full)",
            server.port
        ),
    );
    // verify-ca checks the chain and not the name: the same host is fine.
    let url = server.url("127.0.0.1", "sslmode=verify-ca");
    let instance = serve(&data, &url, &["--database-ca", ca]);
    let line = connection_line(&instance);
    assert!(
        line.contains("signed by a trusted CA; the host name is not checked"),
        "{line}"
    );
    instance.stop();

    // No CA given: the system's CAs did not sign it.
    let url = server.url("localhost", "sslmode=verify-full");
    let output = run_to_exit(&data, &["--database-url", &url]);
    assert_refused(
        &output,
        &format!(
            "livesession: cannot connect to PostgreSQL at localhost:{}: its certificate is not \
             signed by a trusted CA (give the CA with --database-ca)",
            server.port
        ),
    );
    // Another CA given: not signed by that one either; with a CA, require checks the chain
    // too (as libpq does with a root certificate).
    let other = path(&server.other_ca);
    for mode in ["verify-full", "verify-ca", "require"] {
        let url = server.url("localhost", &format!("sslmode={mode}"));
        let output = run_to_exit(&data, &["--database-url", &url, "--database-ca", other]);
        assert_refused(
            &output,
            &format!(
                "livesession: cannot connect to PostgreSQL at localhost:{}: its certificate is \
                 not signed by the CA in {other}",
                server.port
            ),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_encrypts_unverified_disable_is_refused_and_prefer_falls_back_to_plain() {
    let Some(server) = TlsServer::start("require_encrypts_unverified") else {
        return;
    };
    server.create_database().await;
    let dirs = tempfile::tempdir().unwrap();
    let data = dirs.path().join("data");

    // require without a CA: encrypted, not verified, and the log says so at warn.
    let instance = serve(&data, &server.url("localhost", "sslmode=require"), &[]);
    let line = connection_line(&instance);
    assert!(line.contains(" WARN "), "{line}");
    assert!(
        line.contains("over TLS, but its certificate is not verified (sslmode=require)"),
        "{line}"
    );
    assert!(line.contains("encrypted=true verified=false"), "{line}");
    instance.stop();
    // No sslmode is prefer: the same, since the server offers TLS.
    let instance = serve(&data, &server.url("127.0.0.1", ""), &[]);
    let line = connection_line(&instance);
    assert!(
        line.contains("its certificate is not verified (sslmode=prefer)"),
        "{line}"
    );
    instance.stop();

    // disable, against a server that takes TCP connections over TLS only: refused.
    let url = server.url("127.0.0.1", "sslmode=disable");
    let output = run_to_exit(&data, &["--database-url", &url]);
    assert_refused(
        &output,
        &format!(
            "livesession: cannot connect to PostgreSQL at 127.0.0.1:{}: it takes connections \
             over TLS only, and sslmode=disable asks for none (",
            server.port
        ),
    );
    assert_refused(&output, "no encryption)");

    // Once the server offers no TLS and takes plain connections, prefer connects without it,
    // and require refuses.
    server.trust(&["host all all 127.0.0.1/32 trust"]);
    let admin = server.admin().await;
    admin
        .batch_execute("ALTER SYSTEM SET ssl = off")
        .await
        .unwrap();
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let instance = serve(&data, &server.url("127.0.0.1", ""), &[]);
    let line = connection_line(&instance);
    assert!(
        line.contains(&format!(
            "connected to PostgreSQL at 127.0.0.1:{} without encryption: the server does not \
             offer TLS (sslmode=prefer)",
            server.port
        )),
        "{line}"
    );
    assert!(line.contains("encrypted=false verified=false"), "{line}");
    instance.stop();
    let url = server.url("127.0.0.1", "sslmode=require");
    let output = run_to_exit(&data, &["--database-url", &url]);
    assert_refused(
        &output,
        &format!(
            "livesession: cannot connect to PostgreSQL at 127.0.0.1:{}: the server does not \
             offer TLS (sslmode=require)",
            server.port
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_a_session_and_the_chat_over_verified_tls() {
    let Some(server) = TlsServer::start("two_instances_share") else {
        return;
    };
    server.create_database().await;
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let url = server.url("localhost", "sslmode=verify-full");
    let ca = path(&server.ca);
    let flags = ["--database-ca", ca, "--message-burst", "100"];
    let a = serve(dirs.0.path(), &url, &flags);
    let b = serve(dirs.1.path(), &url, &flags);
    for instance in [&a, &b] {
        assert!(connection_line(instance).contains("its certificate verified"));
    }

    // A session made on A is read on B, and a change on B reaches A's tab.
    let mut on_a = Browser::new(a.addr);
    assert_eq!(
        on_a.save_settings("ada", "dark").await.status(),
        StatusCode::SEE_OTHER
    );
    let mut on_b = same_browser_on(&on_a, &b);
    let page = on_b.page("/settings").await;
    assert_eq!(username_field(&page), "ada");
    assert_eq!(html_theme(&page), "dark");
    let mut tab_a = live::join_settings(&mut on_a, "tab-a").await;
    assert_eq!(
        on_b.save_settings("grace", "light").await.status(),
        StatusCode::SEE_OTHER
    );
    recv_until(&mut tab_a, |m| {
        m["t"] == "render" && m["html"].as_str().unwrap_or("").contains("grace")
    })
    .await;

    // A chat message posted on A reaches a chat page on B, through B's listening connection.
    let mut reader = Browser::new(b.addr);
    let mut chat_b = live::join_chat(&mut reader, "chat-b", None).await;
    assert_eq!(
        on_a.post_message("over tls").await.status(),
        StatusCode::SEE_OTHER
    );
    let delivered = recv_until(&mut chat_b, |m| m["t"] == "messages").await;
    let html = delivered["html"].as_str().unwrap();
    assert!(html.contains("over tls"), "{html}");
    assert_eq!(message_ids(html).len(), 1);

    // Every connection of both instances is encrypted, the listening ones included.
    let rows = server
        .admin()
        .await
        .query(
            "SELECT s.ssl, a.query = 'LISTEN livesession' FROM pg_stat_activity a
             JOIN pg_stat_ssl s USING (pid)
             WHERE a.datname = $1 AND a.application_name = 'livesession'",
            &[&DATABASE],
        )
        .await
        .unwrap();
    let listening = rows.iter().filter(|row| row.get::<_, bool>(1)).count();
    assert_eq!(listening, 2, "one listening connection per instance");
    assert!(
        rows.iter().all(|row| row.get::<_, bool>(0)),
        "a connection without TLS"
    );
    a.stop();
    b.stop();
}
