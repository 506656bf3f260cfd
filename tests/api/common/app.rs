//! An app on port 0 with a fresh data dir, and the secrets tests that need to know the key use.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use livesession::shutdown::CancellationToken;
use livesession::{App, AppState, Config};
use tokio::task::JoinHandle;

use super::Browser;

/// A secret for tests that need to know the key.
pub const SECRET_A: &str = "test-secret-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
/// Another one, for rotation.
pub const SECRET_B: &str = "test-secret-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// A running app and the folder it keeps its data in.
pub struct TestApp {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub state: AppState,
    /// The store behind the app's site, for tests that arrange or inspect rows directly.
    pub store: livesession::store::Store,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    _temp: Option<tempfile::TempDir>,
}

impl TestApp {
    /// Starts an app with a fresh temporary data dir and extra flags.
    pub async fn spawn(args: &[&str]) -> TestApp {
        let temp = tempfile::tempdir().unwrap();
        let mut app = TestApp::spawn_in(temp.path(), args).await;
        app._temp = Some(temp);
        app
    }

    /// Starts an app on an existing data dir (to test restarts).
    pub async fn spawn_in(data_dir: &Path, args: &[&str]) -> TestApp {
        let data = data_dir.to_str().unwrap();
        let mut argv = vec!["livesession", "--data-dir", data];
        if !args.contains(&"--listen") {
            argv.extend(["--listen", "127.0.0.1:0"]);
        }
        argv.extend_from_slice(args);
        let config = Config::from_args(argv).unwrap();
        let app = App::build(config).await.unwrap();
        let addr = app.local_addr();
        let state = app.state().clone();
        let store = app.store().clone();
        let shutdown = app.shutdown_token();
        let task = tokio::spawn(app.run());
        TestApp {
            addr,
            data_dir: data_dir.to_path_buf(),
            state,
            store,
            shutdown,
            task,
            _temp: None,
        }
    }

    /// Stops the app and waits until it has finished; returns the data dir (kept alive).
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        self.shutdown.cancel();
        (&mut self.task).await.unwrap().unwrap();
        self._temp.take()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A browser with an empty cookie jar.
    pub fn browser(&self) -> Browser {
        Browser::new(self.addr)
    }

    /// Opens the database file directly, to look behind the HTTP surface.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.data_dir.join("livesession.db")).unwrap()
    }

    /// How many settings rows there are.
    pub fn settings_rows(&self) -> i64 {
        self.db()
            .query_row("SELECT count(*) FROM settings", [], |r| r.get(0))
            .unwrap()
    }
}
