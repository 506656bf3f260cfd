//! The real binary: flags, startup errors, the URL it prints, and a clean exit on SIGTERM.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::binary::{BIN, Server, assert_refused, command, run_to_exit};

#[test]
fn an_unparsable_duration_is_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_to_exit(dir.path(), &["--stale-after", "forever"]);
    assert_refused(&output, "--stale-after");
}

#[test]
fn a_zero_prune_interval_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_to_exit(dir.path(), &["--prune-every", "0s"]);
    assert_refused(&output, "longer than zero");
}

#[test]
fn a_bad_database_url_is_refused_without_showing_its_password() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "mysql://ada:hunter2@db.example/app",
        "postgres://ada:hunter2@db.example:notaport/app",
    ] {
        let output = run_to_exit(dir.path(), &["--database-url", url]);
        assert_refused(&output, "--database-url");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
    for (url, expected) in [
        (
            "postgres://ada:hunter2@db.example/app?sslmode=verify-everything",
            "sslmode \"verify-everything\" is not one of disable, prefer, require, verify-ca, \
             verify-full",
        ),
        (
            "postgres://ada:hunter2@db.example/app?sslmode=allow",
            "sslmode=allow",
        ),
        (
            "postgres://ada:hunter2@db.example/app?sslmode=verify-full&sslrootcert=/nowhere/ca.pem",
            "cannot read /nowhere/ca.pem",
        ),
        (
            "postgres://ada:hunter2@db.example/app?sslmode=require&sslrootcert=system",
            "sslmode=require may not be used with sslrootcert=system",
        ),
    ] {
        let output = run_to_exit(dir.path(), &["--database-url", url]);
        assert_refused(&output, "--database-url");
        assert_refused(&output, expected);
        assert!(!String::from_utf8_lossy(&output.stderr).contains("hunter2"));
    }
    let unreachable = "postgres://ada:hunter2@127.0.0.1:1/app";
    let output = run_to_exit(dir.path(), &["--database-url", unreachable]);
    assert_refused(
        &output,
        "cannot connect to PostgreSQL at ada@127.0.0.1:1/app",
    );
    assert!(!String::from_utf8_lossy(&output.stderr).contains("hunter2"));
}

#[test]
fn a_bad_database_ca_is_refused_by_every_command_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = "postgres://ada:hunter2@db.example/app?sslmode=verify-full";
    let not_pem = dir.path().join("key.pem");
    std::fs::write(
        &not_pem,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let not_pem = not_pem.to_str().unwrap();
    for command in [&[][..], &["prune"], &["stats"]] {
        let flags = [
            &["--database-url", url, "--database-ca", "/nowhere/ca.pem"][..],
            &["--database-url", url, "--database-ca", not_pem],
        ];
        for flags in flags {
            let args: Vec<&str> = command.iter().chain(flags).copied().collect();
            let output = run_to_exit(&data, &args);
            assert_refused(&output, "--database-ca");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains("cannot read /nowhere/ca.pem")
                    || stderr.contains("holds no certificate"),
                "{stderr}"
            );
            assert!(!stderr.contains("hunter2"), "{stderr}");
        }
    }
    // The environment twin, and the flag without a database to use it for.
    let output = command(&data, &["--database-url", url])
        .env("LIVESESSION_DATABASE_CA", not_pem)
        .output()
        .unwrap();
    assert_refused(&output, "holds no certificate");
    let ca = dir.path().join("ca.pem");
    let certified = rcgen::generate_simple_self_signed(vec!["db.example".to_owned()]).unwrap();
    std::fs::write(&ca, certified.cert.pem()).unwrap();
    let output = run_to_exit(&data, &["--database-ca", ca.to_str().unwrap()]);
    assert_refused(&output, "--database-url");
    assert!(!data.exists(), "the data dir was created behind a refusal");
}

#[test]
fn a_bad_durability_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_to_exit(dir.path(), &["--durability", "maybe"]);
    assert_refused(&output, "--durability");
}

#[test]
fn an_unusable_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_to_exit(dir.path(), &["--listen", "not an address"]);
    assert_refused(&output, "cannot listen on not an address");
}

#[test]
fn an_address_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = run_to_exit(dir.path(), &["--listen", &addr]);
    assert_refused(&output, &format!("cannot listen on {addr}"));
}

#[test]
fn a_data_dir_that_cannot_be_created_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let output = run_to_exit(&file.join("data"), &[]);
    assert_refused(&output, "cannot create the data dir");
}

#[test]
fn a_corrupt_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("livesession.db");
    let garbage = b"definitely not a SQLite file ".repeat(200);
    std::fs::write(&db, &garbage).unwrap();
    let output = run_to_exit(dir.path(), &[]);
    assert_refused(&output, "livesession.db");
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a database"));
    assert_eq!(std::fs::read(&db).unwrap(), garbage);
}

#[test]
fn a_database_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("livesession.db")).unwrap();
    conn.pragma_update(None, "user_version", livesession::store::SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let output = run_to_exit(dir.path(), &[]);
    assert_refused(&output, "newer livesession");
}

#[test]
fn a_key_file_that_is_too_short_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.key"), "short\n").unwrap();
    let output = run_to_exit(dir.path(), &[]);
    assert_refused(&output, "too short");
}

#[test]
fn an_unreadable_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secret.key")).unwrap();
    let output = run_to_exit(dir.path(), &[]);
    assert_refused(&output, "cannot read the secret key");
}

#[test]
fn a_short_secret_in_the_environment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = command(dir.path(), &[]);
    child.env("LIVESESSION_SECRET_KEY", "tiny");
    let output = child.output().unwrap();
    assert_refused(&output, "too short");
}

#[test]
fn help_explains_every_flag() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--listen",
        "--data-dir",
        "--stale-after",
        "--prune-every",
        "--durability",
        "--secure-cookies",
        "--previous-keys",
        "--database-ca",
        "LIVESESSION_DATABASE_CA",
        "--log-format",
        "LIVESESSION_LISTEN",
        "LIVESESSION_SECRET_KEY",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn it_prints_its_url_creates_a_private_key_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let health = http_status(&format!("http://{}/healthz", server.addr));
    assert_eq!(health, 200);

    let mode = std::fs::metadata(dir.path().join("secret.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    server.signal("-TERM");
    assert!(
        server.wait(Duration::from_secs(10)),
        "no clean exit after SIGTERM"
    );
}

/// The status of `GET url`, from a synchronous test.
fn http_status(url: &str) -> u16 {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { reqwest::get(url).await.unwrap().status().as_u16() })
}

#[test]
fn json_logs_are_one_object_per_line() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = command(dir.path(), &["--log-format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut listening = None;
    for line in stderr.lines().map_while(Result::ok) {
        let entry: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            entry["timestamp"].is_string() && entry["level"].is_string(),
            "{line}"
        );
        let message = entry["fields"]["message"].as_str().unwrap_or_default();
        if message.starts_with("listening on http://") {
            listening = Some(message.to_owned());
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(listening.is_some(), "no listening line");
}

#[test]
fn bad_connection_limits_are_refused_with_one_line_from_flags_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    for (args, expected) in [
        (&["--trusted-proxy", "proxy.example"][..], "--trusted-proxy"),
        (&["--trusted-proxy", "10.0.0.0/33"], "prefix length"),
        (
            &["--max-connections-per-ip", "0"],
            "--max-connections-per-ip",
        ),
        (&["--max-sockets-per-ip", "0"], "--max-sockets-per-ip"),
        (&["--live-join-timeout", "0s"], "longer than zero"),
    ] {
        assert_refused(&run_to_exit(dir.path(), args), expected);
    }
    for (key, value) in [
        ("LIVESESSION_TRUSTED_PROXIES", "127.0.0.1,not-an-address"),
        ("LIVESESSION_MAX_CONNECTIONS_PER_IP", "none"),
        ("LIVESESSION_MAX_SOCKETS_PER_IP", "-1"),
        ("LIVESESSION_LIVE_JOIN_TIMEOUT", "soon"),
    ] {
        let mut child = command(dir.path(), &[])
            .env(key, value)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(10) {
                child.kill().unwrap();
                panic!("{key}={value} did not stop it");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_refused(&child.wait_with_output().unwrap(), "--");
    }
    let output = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--max-connections-per-ip",
        "LIVESESSION_MAX_CONNECTIONS_PER_IP",
        "--trusted-proxy",
        "LIVESESSION_TRUSTED_PROXIES",
        "--max-sockets-per-ip",
        "--live-join-timeout",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}
