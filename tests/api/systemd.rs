//! The systemd units in `contrib/`: the hardening the service promises, an `ExecStart` the
//! binary accepts, `Type=notify` with the watchdog and the socket unit it takes its socket from,
//! and both units as `systemd-analyze verify` reads them (with `ExecStart` pointing at the test's
//! binary; without systemd-analyze the test says so and passes, except under `CI=true`).
//!
//! The other tests read the file the way systemd does (sections, `Key=value` lines, comments,
//! repeated keys) and ask the real binary about the flags.

use std::process::Command;
use std::time::Duration;

use crate::common::binary::BIN;
use livesession::Config;

const UNIT: &str = include_str!("../../contrib/livesession.service");

/// The `Key=value` settings of one section, in order; a key may repeat.
fn section(name: &str) -> Vec<(&'static str, &'static str)> {
    let mut current = "";
    let mut settings = Vec::new();
    for line in UNIT.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = header;
            continue;
        }
        assert!(
            !line.ends_with('\\'),
            "continued lines are not expected: {line}"
        );
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a setting: {line}"));
        if current == name {
            settings.push((key.trim(), value.trim()));
        }
    }
    settings
}

/// Every value of `key` in `[Service]`.
fn service(key: &str) -> Vec<&'static str> {
    section("Service")
        .into_iter()
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .collect()
}

/// The one value of `key` in `[Service]`.
fn service_value(key: &str) -> &'static str {
    match service(key)[..] {
        [value] => value,
        ref values => panic!("{key} should be set once, is {values:?}"),
    }
}

#[test]
fn the_unit_runs_the_service_as_a_confined_user_of_its_own() {
    for (key, expected) in [
        ("DynamicUser", "yes"),
        ("StateDirectory", "livesession"),
        ("StateDirectoryMode", "0700"),
        ("UMask", "0077"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("CapabilityBoundingSet", ""),
        ("KillSignal", "SIGTERM"),
        ("Restart", "on-failure"),
        ("Type", "notify"),
        ("NotifyAccess", "main"),
    ] {
        assert_eq!(service_value(key), expected, "{key}");
    }
    let families: Vec<&str> = service_value("RestrictAddressFamilies")
        .split_whitespace()
        .collect();
    assert_eq!(families, ["AF_INET", "AF_INET6", "AF_UNIX"]);
    let filters = service("SystemCallFilter");
    assert!(filters.contains(&"@system-service"), "{filters:?}");
    assert!(filters.contains(&"~@privileged"), "{filters:?}");
    assert_eq!(
        section("Install"),
        [("WantedBy", "multi-user.target")],
        "enabled at boot"
    );
}

#[test]
fn systemd_waits_longer_than_the_servers_own_shutdown_grace() {
    let stop: u64 = service_value("TimeoutStopSec").parse().unwrap();
    let defaults = Config::from_args(["livesession"]).unwrap();
    assert!(
        Duration::from_secs(stop) > defaults.shutdown_grace,
        "systemd would SIGKILL the server before it finishes closing connections"
    );
}

/// The words of `ExecStart` after the binary, with `${STATE_DIRECTORY}` as `state_dir`.
fn exec_start_args(state_dir: &str) -> Vec<String> {
    let exec = service_value("ExecStart");
    assert!(
        !exec.contains(['"', '\'']),
        "quoted words need a real parser: {exec}"
    );
    let mut words = exec.split_whitespace();
    let binary = words.next().unwrap();
    assert!(binary.starts_with('/'), "systemd wants an absolute path");
    assert!(binary.ends_with("/livesession"), "{binary}");
    words
        .map(|word| word.replace("${STATE_DIRECTORY}", state_dir))
        .collect()
}

#[test]
fn every_flag_of_exec_start_is_one_the_binary_accepts() {
    let state = tempfile::tempdir().unwrap();
    let args = exec_start_args(state.path().to_str().unwrap());
    let flags: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| a.starts_with("--"))
        .collect();
    assert!(flags.contains(&"--data-dir"), "{args:?}");

    // Flags before --help are parsed (and their values checked) before the help is printed.
    let mut command = Command::new(BIN);
    command.args(&args).arg("--help");
    for (key, _) in std::env::vars() {
        if key.starts_with("LIVESESSION_") {
            command.env_remove(key);
        }
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in &flags {
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "{flag} is not in --help"
        );
    }

    // And the values mean what the unit intends: the data lives in systemd's state directory.
    let config = Config::from_args(std::iter::once("livesession".to_owned()).chain(args)).unwrap();
    assert_eq!(config.data_dir, state.path());
    assert!(config.secure_cookies, "the unit runs behind a TLS proxy");
}

#[test]
fn the_service_answers_a_watchdog_and_takes_its_socket_from_the_socket_unit() {
    let watchdog: u64 = service_value("WatchdogSec").parse().unwrap();
    assert!(watchdog >= 10, "a watchdog of {watchdog} s");
    let unit = section("Unit");
    assert!(
        unit.contains(&("Requires", "livesession.socket")),
        "{unit:?}"
    );
    let socket = include_str!("../../contrib/livesession.socket");
    assert!(socket.contains("ListenStream=127.0.0.1:4000"), "{socket}");
    // The address the service would bind without the socket unit is the socket's.
    assert!(service_value("ExecStart").contains("--listen 127.0.0.1:4000"));
}

#[test]
fn systemd_analyze_verify_passes_on_both_units() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        crate::common::skip::<()>(
            "systemd-analyze verify",
            "systemd-analyze not found (install the systemd package)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The same units, with the binary where this build put it.
    std::fs::write(
        dir.path().join("livesession.service"),
        UNIT.replace("/usr/local/bin/livesession", BIN),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("livesession.socket"),
        include_str!("../../contrib/livesession.socket"),
    )
    .unwrap();
    let output = Command::new(analyze)
        .arg("verify")
        .arg(dir.path().join("livesession.socket"))
        .arg(dir.path().join("livesession.service"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}");
    assert!(
        !said.contains("livesession"),
        "systemd-analyze has something to say about the units: {said}"
    );
}
