//! livesession: a live, server-rendered web app whose per-browser data survives reloads, browser
//! restarts and server restarts.
//!
//! Every browser gets a random session id in a signed, long-lived cookie on its first request;
//! its settings live in a SQLite table keyed by that id. They are loaded for the very first static
//! render (no flash of the wrong name or theme), written from form posts, and rows nobody has used
//! for `--stale-after` are pruned in the background.
//!
//! # Layout
//!
//! - [`config`]: flags and `LIVESESSION_*` environment variables.
//! - [`app`]: the shared [`AppState`] and the router.
//! - [`routes`]: the HTTP handlers.
//! - [`session`]: session ids, the signed cookie, signing keys and CSRF tokens.
//! - [`settings`]: the validated settings domain types.
//! - [`store`]: the database behind a narrow interface (SQLite).
//! - [`prune`]: the background task that deletes stale rows.
//! - [`views`]: the maud pages.
//! - [`assets`]: the embedded, content-hashed static files.
//! - [`error`]: the handlers' error type.
//! - [`shutdown`]: the shutdown signal.
//!
//! [`App::build`] opens everything a [`Config`] names; [`App::run`] serves until a shutdown token
//! is cancelled. The binary is a thin wrapper around the two.

pub mod app;
pub mod assets;
pub mod config;
pub mod error;
pub mod prune;
pub mod routes;
pub mod session;
pub mod settings;
pub mod shutdown;
pub mod store;
pub mod views;

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use app::AppState;
pub use config::Config;

use prune::Retention;
use session::Keys;
use store::Store;

/// A built, bound, not yet serving app.
pub struct App {
    listener: TcpListener,
    state: AppState,
    config: Config,
}

impl App {
    /// Binds the listener, creates the data dir, loads the signing keys and opens the database.
    /// Any problem comes back as one readable error naming what failed.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        prepare_data_dir(&config.data_dir)?;
        let keys = Keys::load(&config)?;
        let store = {
            let path = config.database_path();
            let durability = config.durability;
            tokio::task::spawn_blocking(move || Store::open_sqlite(&path, durability)).await??
        };
        let state = AppState {
            store,
            keys: Arc::new(keys),
            retention: Retention {
                stale_after: config.stale_after,
                touch_window: config.touch_window(),
            },
        };
        Ok(App {
            listener,
            state,
            config,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The shared state, for tests that look behind the HTTP surface.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets in-flight requests finish
    /// (for at most `--shutdown-grace`) and stops the prune task.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let App {
            listener,
            state,
            config,
        } = self;
        tracing::info!(
            "listening on http://{}",
            listener.local_addr().context("reading the bound address")?
        );
        let prune = prune::spawn(
            state.store.clone(),
            state.retention,
            config.prune_every,
            shutdown.clone(),
        );

        let server = axum::serve(listener, app::router(state))
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let grace = config.shutdown_grace;
        let deadline = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = server => result.context("the server failed")?,
            () = deadline => tracing::warn!(?grace, "in-flight requests did not finish in time; stopping anyway"),
        }
        shutdown.cancel();
        prune.await.context("the prune task panicked")?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Creates the data dir (mode 0700: it holds the signing key) if it does not exist yet.
fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the data dir {}", dir.display()))?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .with_context(|| format!("the data dir {} is not writable", dir.display()))
}
