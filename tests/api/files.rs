//! What livesession writes to disk holds session ids and the signing key: every file is readable
//! by its owner only, and a data dir others can read is named in a warning.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::common::Browser;
use crate::common::binary::{Server, command};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn the_database_its_log_the_key_and_backups_are_readable_by_their_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    Browser::new(server.addr).save_settings("ada", "dark").await;
    for file in [
        "livesession.db",
        "livesession.db-wal",
        "livesession.db-shm",
        "secret.key",
    ] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&data), 0o700, "the data dir");

    let copy = dir.path().join("copy.db");
    let output = command(&data, &["backup", copy.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(mode(&copy), 0o600, "the backup");
    server.signal("-TERM");
    assert!(server.wait(Duration::from_secs(10)));
}

#[test]
fn a_data_dir_other_users_can_read_is_named_in_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (server, log) = Server::start_logged(command(&data, &[]));
    let warning = log
        .lines()
        .into_iter()
        .find(|line| line.contains("WARN") && line.contains("other users"))
        .unwrap_or_else(|| panic!("no warning in {:?}", log.lines()));
    assert!(warning.contains(data.to_str().unwrap()), "{warning}");
    assert!(warning.contains("755"), "{warning}");
    // It still starts: the operator decides.
    server.signal("-TERM");
    assert!(server.wait(Duration::from_secs(10)));
}
