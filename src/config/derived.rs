//! What the flags mean together: the settings each part of the server is built with, derived
//! from the parsed [`Config`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::{Config, TOUCH_WINDOW_CAP};
use crate::http::client::TrustedProxies;
use crate::limit::RateLimit;
use crate::live::LiveConfig;
use crate::retention::Retention;
use crate::site::ChatLimits;
use crate::store::StoreOptions;

impl Config {
    /// Parses flags and environment as the binary does. Tests build their configuration the same
    /// way, so they exercise the real defaults.
    pub fn from_args<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Config::try_parse_from(args)
    }

    /// Where automatic backups go: `--backup-dir`, or `<data-dir>/backups`.
    pub fn backup_dir(&self) -> PathBuf {
        self.backup_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("backups"))
    }

    /// The file a server holds a shared lock on while it runs, and `restore` an exclusive one.
    pub fn server_lock_path(&self) -> PathBuf {
        self.data_dir.join("server.lock")
    }

    /// Whether the site is served over HTTPS, by this server (`--tls-cert`) or by a proxy in
    /// front of it (`--secure-cookies`): the cookie is `Secure`, links and origins are `https://`.
    pub fn is_https(&self) -> bool {
        self.secure_cookies || self.tls_cert.is_some() || !self.tls_domain.is_empty()
    }

    /// The `Strict-Transport-Security` value HTTPS responses carry; `None` for max-age 0.
    pub fn hsts(&self) -> Option<String> {
        let seconds = self.hsts_max_age.as_secs();
        (seconds > 0).then(|| format!("max-age={seconds}"))
    }

    /// How long a page view may go without writing `read_at`: 1% of `stale_after`, at most an hour.
    /// Reads inside the window cost no write; pruning allows for the window, so a row read within
    /// `stale_after` is never deleted.
    pub fn touch_window(&self) -> Duration {
        (self.stale_after / 100).min(TOUCH_WINDOW_CAP)
    }

    /// The live layer's settings.
    pub fn live(&self) -> LiveConfig {
        LiveConfig {
            allowed_origins: self.allowed_origins.clone(),
            idle_timeout: self.live_idle_timeout,
            send_timeout: self.live_send_timeout,
            message_rate: self.live_message_rate,
            max_sockets: self.max_sockets as usize,
            max_sockets_per_session: self.max_sockets_per_session as usize,
            https_only: self.is_https(),
            join_timeout: self.live_join_timeout,
            max_sockets_per_ip: self.max_sockets_per_ip as usize,
            reconnect_spread: self.reconnect_spread,
        }
    }

    /// The chat's rate limits: per browser, per client address, for the whole room.
    pub fn chat_limits(&self) -> ChatLimits {
        let per_window = |burst| RateLimit {
            burst,
            window: self.message_window,
        };
        ChatLimits {
            per_session: per_window(self.message_burst),
            per_address: per_window(self.message_burst_per_ip),
            room: per_window(self.room_message_burst),
        }
    }

    /// How many new sessions one client address may save per hour (`--new-sessions-per-ip`).
    pub fn new_sessions_limit(&self) -> RateLimit {
        RateLimit {
            burst: self.new_sessions_per_ip,
            window: Duration::from_secs(3600),
        }
    }

    /// How the database is used (`--durability`, `--busy-timeout`).
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            durability: self.durability,
            busy_timeout: self.busy_timeout,
        }
    }

    /// Where the database lives.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("livesession.db")
    }

    /// Where the signing key lives when it is not given in the environment.
    pub fn secret_key_path(&self) -> PathBuf {
        self.data_dir.join("secret.key")
    }

    /// What the prune task keeps, and for how long.
    pub fn retention(&self) -> Retention {
        Retention {
            stale_after: self.stale_after,
            touch_window: self.touch_window(),
            message_retention: self.message_retention,
            message_limit: self.message_limit as usize,
        }
    }
}

impl Config {
    /// The proxies whose `X-Forwarded-For` is believed (`--trusted-proxy`).
    pub fn trusted_proxies(&self) -> TrustedProxies {
        TrustedProxies::new(self.trusted_proxies.clone())
    }
}
