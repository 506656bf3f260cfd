//! Starting and stopping: [`App::build`] binds the listeners, prepares the data dir, loads the
//! keys and opens the database; [`App::run`] serves, prunes and listens to the other instances
//! until its shutdown token is cancelled, then stops everything within `--shutdown-grace`.

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::app::{self, AppState};
use crate::config::Config;
use crate::http::{metrics, server};
use crate::live::Live;
use crate::origin::{Origins, interface_addresses};
use crate::session::Keys;
use crate::site::{Setup, Site};
use crate::store::{PostgresTarget, Store};
use crate::{cluster, prune, refusals};

mod acme;
mod capacity;
mod https;
mod systemd;
use capacity::Capacity;
use https::{https, reload_on_sighup};

/// A built, bound, not yet serving app.
pub struct App {
    listener: TcpListener,
    state: AppState,
    config: Config,
    shutdown: CancellationToken,
    metrics_listener: Option<TcpListener>,
    /// `--redirect-http`: plain HTTP, answered with redirects to HTTPS.
    redirect_listener: Option<TcpListener>,
    connections: Capacity,
    /// The store the site was opened on: the prune task and the shutdown use it.
    store: Store,
    /// HTTPS from certificate files (`--tls-cert`) or ACME (`--tls-domain`).
    https: Option<server::Https>,
    /// A shared lock on `<data-dir>/server.lock` while the server runs: `restore` waits for
    /// none to be held (servers share it, so a restart's two processes both run).
    _server_lock: std::fs::File,
}

impl App {
    /// Binds the listener, creates the data dir, loads the signing keys and opens the database.
    /// Any problem comes back as one readable error naming what failed.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        if config.backup_every.is_some() && config.database_url.is_some() {
            anyhow::bail!(
                "--backup-every copies the SQLite database; a PostgreSQL database is backed up \
                 with pg_dump (for example: pg_dump --format=custom --file=FILE URL)"
            );
        }
        let shutdown = CancellationToken::new();
        // A bad certificate pair is refused before anything listens.
        let https = https(&config, &shutdown)?;
        let listener = systemd::listener(&config).await?;
        prepare_data_dir(&config.data_dir, &config.database_path())?;
        let server_lock = hold_server_lock(&config.server_lock_path())?;
        let keys = Keys::load(
            config.secret_key.as_deref(),
            &config.secret_key_path(),
            config.previous_keys.as_deref(),
            config.is_https(),
        )?;
        let store = open_store(&config, Opening::ToServe)
            .await?
            .keeping_messages(config.message_limit as usize);
        check_shared_key(&store, &keys).await?;
        let origins = origins(&listener, &config)?;
        let site = Site::open(Setup {
            store: store.clone(),
            keys,
            retention: config.retention(),
            chat_limits: config.chat_limits(),
            new_sessions: config.new_sessions_limit(),
            min_free_disk: (config.data_dir.clone(), config.min_free_disk),
            message_limit: config.message_limit as usize,
            presence_grace: config.presence_grace,
            link_ttl: config.link_ttl,
            origins,
            max_devices: config.max_devices as usize,
        })
        .await
        .context("reading the forgotten sessions and the newest chat messages")?;
        let live = Arc::new(Live::new(config.live(), site.clone(), shutdown.clone()));
        let metrics_listener = match &config.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen for metrics on {addr}"))?,
            ),
            None => None,
        };
        let redirect_listener = match &config.redirect_http {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen for --redirect-http on {addr}"))?,
            ),
            None => None,
        };
        let connections = Capacity::of(&config);
        Ok(App {
            listener,
            state: AppState { site, live },
            config,
            shutdown,
            metrics_listener,
            redirect_listener,
            connections,
            store,
            https,
            _server_lock: server_lock,
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

    /// The store behind the site, for tests and tools that look behind the HTTP surface (the
    /// transports never do: they go through the site).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The token that stops this app: cancel it to shut down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then stops accepting, closes live sockets
    /// with 1012 (service restart: pages come back within `--reconnect-spread`), lets in-flight requests finish, stops the prune task and the notification
    /// listener, and lets the database writer commit what was queued: all of it within one
    /// `--shutdown-grace` from the moment the token is cancelled.
    pub async fn run(self) -> anyhow::Result<()> {
        let App {
            listener,
            state,
            config,
            shutdown,
            metrics_listener,
            redirect_listener,
            connections,
            store,
            https,
            _server_lock,
        } = self;
        connections.log();
        let metrics_server = match metrics_listener {
            Some(listener) => Some(serve_metrics(
                listener,
                &state,
                &config,
                &connections,
                &shutdown,
            )?),
            None => None,
        };
        // Before the line that says the server is up: a SIGHUP from then on is handled.
        let certificates = https.as_ref().map(|https| Arc::clone(&https.certificates));
        reload_on_sighup(certificates, shutdown.clone())?;
        tracing::info!(
            "listening on {}://{}",
            if https.is_some() { "https" } else { "http" },
            listener.local_addr().context("reading the bound address")?
        );
        let bound = listener.local_addr().context("reading the bound address")?;
        let redirect_server = match redirect_listener {
            Some(redirect) => {
                let addr = redirect
                    .local_addr()
                    .context("reading the redirect address")?;
                tracing::info!("redirecting http://{addr} to https");
                Some(tokio::spawn(server::serve(
                    redirect,
                    crate::http::redirect::router(bound.port()),
                    config.header_timeout,
                    connections.redirect.clone(),
                    None,
                    shutdown.clone(),
                )))
            }
            None => None,
        };
        for (reached_from, url) in state.site.origins().reachable_at(https.is_some()) {
            tracing::info!("{reached_from}: {url}");
        }
        systemd::ready();
        systemd::spawn_watchdog(&state.site, &shutdown);
        let background = Background::spawn(&state.site, &store, &config, &shutdown);
        let live = Arc::clone(&state.live);
        let server = server::serve(
            listener,
            app::router(state, config.metrics),
            config.header_timeout,
            connections.public.clone(),
            https,
            shutdown.clone(),
        );
        let serving = async {
            server.await;
            if let Some(metrics_server) = metrics_server {
                let _ = metrics_server.await;
            }
            if let Some(redirect_server) = redirect_server {
                let _ = redirect_server.await;
            }
            live.tracker.close();
            live.tracker.wait().await;
        };
        // Everything after the cancel is done by one deadline: the grace counts from it.
        let deadline = drain(serving, &shutdown, config.shutdown_grace).await;
        shutdown.cancel();
        match tokio::time::timeout_at(deadline, background.stop(&store)).await {
            Ok(finished) => finished?,
            Err(_) => tracing::warn!("background tasks did not stop in time; stopping anyway"),
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// What links for another device name: `--public-url`, or the bound address and this machine's
/// interface addresses (read once, now).
fn origins(listener: &TcpListener, config: &Config) -> anyhow::Result<Origins> {
    let bound = listener.local_addr().context("reading the bound address")?;
    let interfaces = interface_addresses().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot list the network interfaces; links name the listening address");
        Vec::new()
    });
    let public = config.public_url.clone();
    Ok(Origins::new(bound, interfaces, public, config.is_https()))
}

/// Serves `/metrics` on a listener of its own (`--metrics-listen`) until `shutdown`.
fn serve_metrics(
    listener: TcpListener,
    state: &AppState,
    config: &Config,
    connections: &Capacity,
    shutdown: &CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let addr = listener
        .local_addr()
        .context("reading the metrics address")?;
    tracing::info!("metrics on http://{addr}/metrics");
    let router = metrics::router(Arc::clone(&state.live));
    Ok(tokio::spawn(server::serve(
        listener,
        router,
        config.header_timeout,
        connections.metrics.clone(),
        None,
        shutdown.clone(),
    )))
}

/// Runs `serving` until it ends by itself, or until `shutdown` and then at most `grace` more;
/// returns the deadline the rest of the shutdown keeps to.
async fn drain(
    serving: impl Future<Output = ()>,
    shutdown: &CancellationToken,
    grace: std::time::Duration,
) -> Instant {
    tokio::pin!(serving);
    let finished = tokio::select! {
        () = &mut serving => true,
        () = shutdown.cancelled() => false,
    };
    if shutdown.is_cancelled() {
        systemd::stopping();
    }
    let deadline = Instant::now() + grace;
    if !finished && tokio::time::timeout_at(deadline, serving).await.is_err() {
        tracing::warn!(
            ?grace,
            "connections did not finish in time; stopping anyway"
        );
    }
    deadline
}

/// The tasks that run beside the server until shutdown.
struct Background {
    prune: tokio::task::JoinHandle<()>,
    /// `--backup-every`'s task.
    backups: Option<tokio::task::JoinHandle<()>>,
    cluster: Option<tokio::task::JoinHandle<()>>,
    site: crate::site::Tasks,
    summaries: tokio::task::JoinHandle<()>,
}

impl Background {
    /// Starts the prune task, the notification listener (on a shared store), the site's own
    /// tasks and the refusal summaries.
    fn spawn(
        site: &Site,
        store: &Store,
        config: &Config,
        shutdown: &CancellationToken,
    ) -> Background {
        let prune = prune::spawn(
            site.clone(),
            store.clone(),
            config.prune_every,
            shutdown.clone(),
        );
        let cluster = cluster::spawn(site.clone(), config.presence_heartbeat, shutdown.clone());
        let backups = config.backup_every.map(|every| {
            crate::backups::spawn(
                store.clone(),
                config.backup_dir(),
                every,
                config.backup_keep as usize,
                shutdown.clone(),
            )
        });
        Background {
            prune,
            backups,
            cluster,
            site: site.spawn_tasks(shutdown.clone()),
            summaries: tokio::spawn(refusals::summarise(shutdown.clone())),
        }
    }

    /// Waits for each task to stop (they stop at once on the token, unless a database call is
    /// hanging), then lets the database writer commit what was queued and its thread end.
    async fn stop(self, store: &Store) -> anyhow::Result<()> {
        self.prune.await.context("the prune task panicked")?;
        if let Some(backups) = self.backups {
            backups.await.context("the backup task panicked")?;
        }
        self.site
            .room
            .await
            .context("the chat room's reader panicked")?;
        self.site
            .presence
            .await
            .context("the presence list's publisher panicked")?;
        if let Some(cluster) = self.cluster {
            cluster
                .await
                .context("the notification listener panicked")?;
        }
        store.close().await;
        let _ = self.summaries.await;
        Ok(())
    }
}

/// How [`open_store`] treats the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// To serve: created if missing, its schema brought up to date.
    ToServe,
    /// For a maintenance command: as it is, nothing created or upgraded. A database of an older
    /// schema version is accepted only with `accept_older` (a backup before an upgrade).
    AsItIs { accept_older: bool },
}

/// Opens the database the configuration names: PostgreSQL with `--database-url`, else the
/// SQLite file in the data dir.
pub async fn open_store(config: &Config, opening: Opening) -> anyhow::Result<Store> {
    let options = config.store_options();
    if let Some(url) = &config.database_url {
        let target =
            PostgresTarget::new(url, config.database_ca.as_deref()).map_err(anyhow::Error::msg)?;
        return match opening {
            Opening::ToServe => Store::open_postgres_at(&target, options).await,
            Opening::AsItIs { .. } => Store::open_postgres_existing(&target, options).await,
        };
    }
    let path = config.database_path();
    tokio::task::spawn_blocking(move || match opening {
        Opening::ToServe => Store::open_sqlite(&path, options),
        Opening::AsItIs { accept_older } => {
            Store::open_sqlite_existing(&path, options, accept_older)
        }
    })
    .await?
}

/// Refuses to start when the shared database's cookies are signed with another key than this
/// instance's: behind a load balancer, every request to this instance would start a new session.
async fn check_shared_key(store: &Store, keys: &Keys) -> anyhow::Result<()> {
    let (current, previous) = keys.fingerprints();
    let held = store
        .claim_key(&current, &previous)
        .await
        .context("recording the signing key's fingerprint")?;
    match held {
        None => Ok(()),
        Some(held) => anyhow::bail!(
            "the other instances on this database sign cookies with another key (fingerprint \
             {held}; this instance's is {current}): give every instance the same secret with \
             --secret-key or LIVESESSION_SECRET_KEY (to change it on purpose, list the old one in \
             --previous-keys)"
        ),
    }
}

/// Takes a shared lock on `path` (created if missing): any number of servers may hold it, a
/// `livesession restore` (which takes it exclusively) may not while one does.
fn hold_server_lock(path: &Path) -> anyhow::Result<std::fs::File> {
    let file = crate::backups::open_server_lock(path)?;
    match file.try_lock_shared() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "a restore is putting a backup in place in this data dir; start the server when it is done"
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Creates the data dir (mode 0700: it holds the signing key and the database) if it does not
/// exist yet, and warns when an existing one, or the database in it, can be read by other users.
fn prepare_data_dir(dir: &Path, database: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the data dir {}", dir.display()))?;
    for path in [dir, database] {
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
                "other users of this machine can read this; it holds session ids: chmod go= it"
            );
        }
    }
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .with_context(|| format!("the data dir {} is not writable", dir.display()))
}
