//! Configuration from command-line flags, each with a `LIVESESSION_*` environment twin.
//!
//! Values are checked while parsing, so a bad one stops the program before anything starts and the
//! message names the flag. Durations are written the way people say them: `2s`, `90m`, `100d`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::http::client::Network;
use crate::origin::PublicUrl;
use crate::store::Durability;

mod derived;
mod parse;
pub use parse::MAX_DURATION;
use parse::{
    parse_ca_file, parse_database_url, parse_domain, parse_duration, parse_network,
    parse_positive_duration, parse_public_url, parse_size,
};

/// The longest a touch window may be: a page view writes `read_at` at most this often.
const TOUCH_WINDOW_CAP: Duration = Duration::from_secs(60 * 60);

/// Serve a live web app whose per-browser settings survive reloads, browser restarts and server
/// restarts: they live in a database (a SQLite file, or PostgreSQL for several instances) keyed
/// by a signed cookie session id.
#[derive(Debug, Clone, Parser)]
#[command(name = "livesession", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on, as host:port. Port 0 picks a free port.
    #[arg(
        long,
        env = "LIVESESSION_LISTEN",
        default_value = "127.0.0.1:4000",
        value_name = "ADDR"
    )]
    pub listen: String,

    /// Folder for the database (livesession.db) and the cookie signing key (secret.key); the
    /// server creates it if missing.
    #[arg(
        long,
        env = "LIVESESSION_DATA_DIR",
        default_value = "data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// Keep everything in this PostgreSQL database instead of the SQLite file, so several
    /// instances can share sessions, chat and live updates (`postgres://user@host:5432/db`).
    /// Every instance must then sign cookies with the same secret (LIVESESSION_SECRET_KEY).
    /// TLS as libpq's sslmode says: disable, prefer (the default), require, verify-ca, or
    /// verify-full (`?sslmode=verify-full`: encrypted, and the server's certificate checked).
    #[arg(long, env = "LIVESESSION_DATABASE_URL", value_name = "URL",
          value_parser = parse_database_url, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Trust the CA certificates in this PEM file (one or more) for PostgreSQL's TLS certificate,
    /// instead of the system's: for a managed database whose CA is its provider's own. The URL's
    /// sslrootcert=FILE does the same. With sslmode=verify-full the host name is checked too.
    #[arg(long, env = "LIVESESSION_DATABASE_CA", value_name = "FILE",
          value_parser = parse_ca_file, requires = "database_url")]
    pub database_ca: Option<PathBuf>,

    /// Delete a browser's saved settings when nobody has read or written them for this long.
    #[arg(long, env = "LIVESESSION_STALE_AFTER", default_value = "100d", value_name = "DURATION",
          value_parser = parse_positive_duration)]
    pub stale_after: Duration,

    /// How often the background task looks for stale settings to delete.
    #[arg(long, env = "LIVESESSION_PRUNE_EVERY", default_value = "1h", value_name = "DURATION",
          value_parser = parse_positive_duration)]
    pub prune_every: Duration,

    /// What a saved change survives: `normal` survives a crash of this process (kill -9);
    /// `full` also survives a power loss or an operating-system crash (on SQLite at the cost of an
    /// fsync per commit; on PostgreSQL, synchronous_commit on).
    #[arg(
        long,
        env = "LIVESESSION_DURABILITY",
        default_value = "normal",
        value_enum
    )]
    pub durability: Durability,

    /// How long a database statement waits for a lock held by another connection or process
    /// before the request fails with "busy".
    #[arg(long, env = "LIVESESSION_BUSY_TIMEOUT", default_value = "5s", value_name = "DURATION",
          value_parser = parse_positive_duration)]
    pub busy_timeout: Duration,

    /// Mark the session cookie `Secure` (sent over HTTPS only). Use it behind a TLS proxy.
    #[arg(long, env = "LIVESESSION_SECURE_COOKIES",
          value_parser = clap::builder::FalseyValueParser::new(), default_value_t = false)]
    pub secure_cookies: bool,

    /// Serve HTTPS on --listen with this certificate (PEM; the chain after it in the same file).
    /// Needs --tls-key. SIGHUP reads both files again (a bad pair is refused, and the old one
    /// keeps serving). With it the cookie is Secure and every response carries HSTS.
    #[arg(
        long,
        env = "LIVESESSION_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, RSA or EC; RSA, ECDSA or Ed25519).
    #[arg(
        long,
        env = "LIVESESSION_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Serve HTTPS on --listen for this public name with a certificate got and renewed
    /// automatically over ACME (Let's Encrypt by default), answering its TLS-ALPN-01 challenge
    /// on --listen itself (which must be reachable on port 443 under this name). Repeat it for
    /// more names (one certificate holds them all). Not with --tls-cert.
    #[arg(
        long,
        env = "LIVESESSION_TLS_DOMAIN",
        value_name = "NAME",
        value_delimiter = ',',
        conflicts_with = "tls_cert",
        value_parser = parse_domain
    )]
    pub tls_domain: Vec<String>,

    /// The ACME server's directory for --tls-domain. Let's Encrypt's staging server, for trying
    /// a setup without its rate limits, is https://acme-staging-v02.api.letsencrypt.org/directory
    #[arg(
        long,
        env = "LIVESESSION_ACME_DIRECTORY",
        value_name = "URL",
        default_value = "https://acme-v02.api.letsencrypt.org/directory"
    )]
    pub acme_directory: String,

    /// A contact address for the ACME account of --tls-domain (where Let's Encrypt writes about
    /// expiring certificates or problems).
    #[arg(long, env = "LIVESESSION_ACME_EMAIL", value_name = "EMAIL")]
    pub acme_email: Option<String>,

    /// Trust this CA (PEM) for the ACME server too: for a private ACME server, or a test one.
    #[arg(long, env = "LIVESESSION_ACME_CA", value_name = "FILE", value_parser = parse_ca_file)]
    pub acme_ca: Option<PathBuf>,

    /// With HTTPS: how long browsers remember to use only HTTPS for this host
    /// (Strict-Transport-Security max-age); 0 sends no such header.
    #[arg(long, env = "LIVESESSION_HSTS_MAX_AGE", default_value = "365d", value_name = "DURATION",
          value_parser = parse_duration)]
    pub hsts_max_age: Duration,

    /// With --tls-cert or --tls-domain: also listen for plain HTTP here (for example
    /// 0.0.0.0:80) and answer every request with a 308 to the same path over HTTPS; nothing
    /// else is served on it.
    #[arg(long, env = "LIVESESSION_REDIRECT_HTTP", value_name = "ADDR")]
    pub redirect_http: Option<String>,

    /// The origin that links and QR codes for another device name (`https://demo.example.com`):
    /// behind a proxy, or for a fixed name. Without it a link names the host the page was opened
    /// at when this server answers for it; a loopback one (on a server listening on every
    /// interface) becomes this machine's LAN address, so a phone can open it.
    #[arg(long, env = "LIVESESSION_PUBLIC_URL", value_name = "URL", value_parser = parse_public_url)]
    pub public_url: Option<PublicUrl>,

    /// The cookie signing secret (at least 32 characters). Prefer the environment variable to the
    /// flag, which other users of the machine can see. Without it, `<data-dir>/secret.key` is used,
    /// and created on first run.
    #[arg(
        long,
        env = "LIVESESSION_SECRET_KEY",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub secret_key: Option<String>,

    /// A file of older signing secrets, one per line, still accepted after a key rotation: a cookie
    /// signed with one of them is re-issued under the current key. Lines starting with # are
    /// comments.
    #[arg(long, env = "LIVESESSION_PREVIOUS_KEYS", value_name = "FILE")]
    pub previous_keys: Option<PathBuf>,

    /// Delete chat messages older than this.
    #[arg(long, env = "LIVESESSION_MESSAGE_RETENTION", default_value = "30d", value_name = "DURATION",
          value_parser = parse_positive_duration)]
    pub message_retention: Duration,

    /// Keep at most this many chat messages (the newest); older ones are deleted.
    #[arg(long, env = "LIVESESSION_MESSAGE_LIMIT", default_value_t = 10_000, value_name = "COUNT",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub message_limit: u32,

    /// How many chat messages one browser may send in a burst (see --message-window).
    #[arg(long, env = "LIVESESSION_MESSAGE_BURST", default_value_t = 5, value_name = "COUNT",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub message_burst: u32,

    /// The window of the chat rate limit: at most --message-burst messages per window, per browser.
    #[arg(long, env = "LIVESESSION_MESSAGE_WINDOW", default_value = "10s", value_name = "DURATION",
          value_parser = parse_positive_duration)]
    pub message_window: Duration,

    /// How many chat messages one client address may send per --message-window, however many
    /// browsers (sessions) it uses: a flood of fresh sessions from one machine gets this many
    /// through.
    #[arg(long, env = "LIVESESSION_MESSAGE_BURST_PER_IP", default_value_t = 20, value_name = "COUNT",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub message_burst_per_ip: u32,

    /// How many new browsers (sessions) one client address (an IPv6 /64) may save settings for,
    /// for the first time, per hour: a session costs a database row from its first save until it
    /// goes stale, so this bounds how fast one machine can fill the disk. A school or an office
    /// behind one address never meets the default.
    #[arg(long, env = "LIVESESSION_NEW_SESSIONS_PER_IP", default_value_t = 300, value_name = "COUNT",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub new_sessions_per_ip: u32,

    /// Free disk space (of the data dir's file system) under which settings of new browsers are
    /// not saved, while browsers that saved before still save: `256MiB`, `1GiB`, or bytes; 0
    /// turns the guard off.
    #[arg(long, env = "LIVESESSION_MIN_FREE_DISK", default_value = "256MiB", value_name = "SIZE",
          value_parser = parse_size)]
    pub min_free_disk: u64,

    /// How many chat messages the whole room takes per --message-window, from everyone together:
    /// under a flood from many addresses the last page of the chat still stays up for a while.
    #[arg(long, env = "LIVESESSION_ROOM_MESSAGE_BURST", default_value_t = 50, value_name = "COUNT",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub room_message_burst: u32,

    /// Also accept live WebSocket connections from this origin (`https://chat.example.com`), for
    /// example behind a reverse proxy that changes the Host header. Repeatable; the environment
    /// variable takes a comma-separated list.
    #[arg(
        long = "allowed-origin",
        env = "LIVESESSION_ALLOWED_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Close a live socket that sends nothing, not even a pong to our pings, for this long.
    #[arg(long, env = "LIVESESSION_LIVE_IDLE_TIMEOUT", default_value = "60s", value_name = "DURATION",
          value_parser = parse_positive_duration)]
    pub live_idle_timeout: Duration,

    /// Drop a live socket whose peer does not take a message within this long (it stopped reading).
    #[arg(long, env = "LIVESESSION_LIVE_SEND_TIMEOUT", default_value = "10s", value_name = "DURATION",
          value_parser = parse_positive_duration)]
    pub live_send_timeout: Duration,

    /// How many messages per second one live socket may send on average (twice that in a burst);
    /// a socket over it is closed with 1008. The client sends far fewer: it debounces.
    #[arg(long, env = "LIVESESSION_LIVE_MESSAGE_RATE", default_value_t = 20, value_name = "COUNT",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub live_message_rate: u32,

    /// The most live sockets one browser (session) may have open; one more is closed with 1013.
    #[arg(long, env = "LIVESESSION_MAX_SOCKETS_PER_SESSION", default_value_t = 32, value_name = "COUNT",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_sockets_per_session: u32,

    /// The most live sockets the server holds in all; one more is closed with 1013.
    #[arg(long, env = "LIVESESSION_MAX_SOCKETS", default_value_t = 50_000, value_name = "COUNT",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_sockets: u32,

    /// How long a client may take to send a request's headers; a slower one is disconnected.
    #[arg(long, env = "LIVESESSION_HEADER_TIMEOUT", default_value = "10s", value_name = "DURATION",
          value_parser = parse_positive_duration)]
    pub header_timeout: Duration,

    /// How logs are written to standard error: `text` for people, `json` (one object per line)
    /// for log shippers. `RUST_LOG` picks what is logged.
    #[arg(
        long,
        env = "LIVESESSION_LOG_FORMAT",
        default_value = "text",
        value_enum
    )]
    pub log_format: LogFormat,

    /// How long shutdown waits for in-flight requests before it stops anyway.
    #[arg(long, env = "LIVESESSION_SHUTDOWN_GRACE", default_value = "10s", value_name = "DURATION",
          value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Serve Prometheus metrics at /metrics on the public listener. Off by default: the numbers
    /// are for the operator, not for every visitor; --metrics-listen keeps them on an address of
    /// their own.
    #[arg(long, env = "LIVESESSION_METRICS",
          value_parser = clap::builder::FalseyValueParser::new(), default_value_t = false)]
    pub metrics: bool,

    /// Serve Prometheus metrics at /metrics on a listener of their own at this address (e.g.
    /// 127.0.0.1:9464), apart from the public one.
    #[arg(long, env = "LIVESESSION_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,

    /// The most connections one client address (an IPv6 /64) may hold open; one more is closed
    /// at once. Trusted proxies (--trusted-proxy) are not held to it.
    #[arg(long, env = "LIVESESSION_MAX_CONNECTIONS_PER_IP", default_value_t = 256, value_name = "COUNT",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_ip: u32,

    /// A reverse proxy in front of this server (an address, or a CIDR range like 10.0.0.0/8):
    /// its X-Forwarded-For names the client that limits per address count, and it is not held to
    /// --max-connections-per-ip. Repeatable; the environment variable takes a comma-separated
    /// list.
    #[arg(
        long = "trusted-proxy",
        env = "LIVESESSION_TRUSTED_PROXIES",
        value_name = "ADDR",
        value_delimiter = ',',
        value_parser = parse_network
    )]
    pub trusted_proxies: Vec<Network>,

    /// The most live sockets one client address (an IPv6 /64; behind a trusted proxy, the
    /// forwarded client) may hold, joined or not; one more is closed with 1013.
    #[arg(long, env = "LIVESESSION_MAX_SOCKETS_PER_IP", default_value_t = 256, value_name = "COUNT",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_sockets_per_ip: u32,

    /// Close a live socket that has not sent its join message this long after its upgrade.
    #[arg(long, env = "LIVESESSION_LIVE_JOIN_TIMEOUT", default_value = "5s", value_name = "DURATION",
          value_parser = parse_positive_duration)]
    pub live_join_timeout: Duration,

    /// How long a browser stays in the chat's "here now" list after its last chat page closed:
    /// a reload within it does not make it blink out of everyone's list.
    #[arg(long, env = "LIVESESSION_PRESENCE_GRACE", default_value = "5s", value_name = "DURATION",
          value_parser = parse_duration)]
    pub presence_grace: Duration,

    /// With PostgreSQL: how often each instance tells the others who has the chat open on it.
    /// The list of an instance not heard from for three of these (it stopped, or lost the
    /// database) is dropped.
    #[arg(long, env = "LIVESESSION_PRESENCE_HEARTBEAT", default_value = "10s", value_name = "DURATION",
          value_parser = parse_positive_duration)]
    pub presence_heartbeat: Duration,

    /// How long a one-time code for another device ("Use on another device") works.
    #[arg(long, env = "LIVESESSION_LINK_TTL", default_value = "10m", value_name = "DURATION",
          value_parser = parse_positive_duration)]
    pub link_ttl: Duration,

    /// Write a consistent, checked copy of the SQLite database into --backup-dir this often
    /// (for example 6h), named by the time it started; off by default. Not with --database-url
    /// (back PostgreSQL up with pg_dump).
    #[arg(long, env = "LIVESESSION_BACKUP_EVERY", value_name = "DURATION",
          value_parser = parse_positive_duration)]
    pub backup_every: Option<Duration>,

    /// How many automatic backups to keep: the oldest beyond it is removed after each new one.
    #[arg(long, env = "LIVESESSION_BACKUP_KEEP", default_value_t = 7, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub backup_keep: u32,

    /// Where automatic backups go (created 0700); default <data-dir>/backups.
    #[arg(long, env = "LIVESESSION_BACKUP_DIR", value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,

    /// When the server stops (a restart, an upgrade), each live page reconnects after a random
    /// delay of up to this, so thousands of pages do not come back in the same moment.
    #[arg(long, env = "LIVESESSION_RECONNECT_SPREAD", default_value = "5s", value_name = "DURATION",
          value_parser = parse_duration)]
    pub reconnect_spread: Duration,

    /// Bind --listen with SO_REUSEPORT, so a new process can bind the same address while the
    /// old one still drains (start the new one, then stop the old one). Not needed under
    /// systemd's socket activation, which hands the same socket to each.
    #[arg(long, env = "LIVESESSION_REUSE_PORT",
          value_parser = clap::builder::FalseyValueParser::new(), default_value_t = false)]
    pub reuse_port: bool,

    /// The most browsers one session may have ("Your devices" on the settings page): one more
    /// code used is refused, saying so.
    #[arg(long, env = "LIVESESSION_MAX_DEVICES", default_value_t = 10, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_devices: u32,
}

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_bytes_or_binary_units() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2t"), Ok(2 << 40));
        assert!(parse_size("1.5GiB").is_err());
        assert!(parse_size("10XB").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::from_args(std::iter::once("livesession").chain(args.iter().copied()))
    }

    #[test]
    fn a_duration_past_a_hundred_years_is_refused_with_the_bound() {
        for flag in ["--presence-heartbeat", "--stale-after", "--prune-every"] {
            let error = parse(&[flag, "200000000000y"]).unwrap_err().to_string();
            assert!(error.contains("longer than 100 years"), "{flag}: {error}");
            assert!(error.contains(flag), "{flag}: {error}");
        }
        assert!(parse(&["--stale-after", "36500d"]).is_ok());
    }

    #[test]
    fn a_public_url_that_is_not_an_origin_is_refused_in_one_sentence_naming_the_flag() {
        let error = parse(&["--public-url", "https://demo.example.com/app"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("--public-url"), "{error}");
        assert!(error.contains("has a path"), "{error}");
        let config = parse(&["--public-url", "https://demo.example.com/"]).unwrap();
        let public = config.public_url.unwrap();
        assert_eq!(public.as_str(), "https://demo.example.com");
        assert!(parse(&[]).unwrap().public_url.is_none());
    }

    #[test]
    fn the_defaults_match_the_contract() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.listen, "127.0.0.1:4000");
        assert_eq!(config.data_dir, PathBuf::from("data"));
        assert_eq!(config.stale_after, Duration::from_secs(100 * 24 * 3600));
        assert_eq!(config.prune_every, Duration::from_secs(3600));
        assert_eq!(config.durability, Durability::Normal);
        assert!(!config.secure_cookies);
        assert_eq!(
            config.message_retention,
            Duration::from_secs(30 * 24 * 3600)
        );
        assert_eq!(config.message_limit, 10_000);
        assert_eq!(
            (config.message_burst, config.message_window),
            (5, Duration::from_secs(10))
        );
    }

    #[test]
    fn the_connection_limits_default_and_parse() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.max_connections_per_ip, 256);
        assert_eq!(config.max_sockets_per_ip, 256);
        assert_eq!(config.live_join_timeout, Duration::from_secs(5));
        assert!(config.trusted_proxies.is_empty());
        let config = parse(&[
            "--trusted-proxy",
            "127.0.0.1",
            "--trusted-proxy",
            "10.0.0.0/8,fd00::/8",
            "--live-join-timeout",
            "500ms",
        ])
        .unwrap();
        assert_eq!(config.trusted_proxies.len(), 3);
        assert!(
            config
                .trusted_proxies()
                .contains("10.9.8.7".parse().unwrap())
        );
        assert!(
            !config
                .trusted_proxies()
                .contains("11.0.0.1".parse().unwrap())
        );
        assert_eq!(config.live_join_timeout, Duration::from_millis(500));
        for bad in [
            &["--trusted-proxy", "proxy.example"][..],
            &["--trusted-proxy", "10.0.0.0/40"],
            &["--max-connections-per-ip", "0"],
            &["--max-sockets-per-ip", "0"],
            &["--live-join-timeout", "0s"],
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad[0]), "{err}");
        }
    }

    #[test]
    fn a_zero_message_limit_is_refused() {
        assert!(parse(&["--message-limit", "0"]).is_err());
        assert!(parse(&["--message-burst", "0"]).is_err());
    }

    #[test]
    fn durations_are_read_in_human_form() {
        let config = parse(&["--stale-after", "90m", "--prune-every", "2s"]).unwrap();
        assert_eq!(config.stale_after, Duration::from_secs(90 * 60));
        assert_eq!(config.prune_every, Duration::from_secs(2));
    }

    #[test]
    fn a_zero_prune_interval_is_refused() {
        let err = parse(&["--prune-every", "0s"]).unwrap_err().to_string();
        assert!(err.contains("--prune-every"), "{err}");
        assert!(err.contains("longer than zero"), "{err}");
    }

    #[test]
    fn an_unparsable_duration_names_the_flag() {
        let err = parse(&["--stale-after", "soon"]).unwrap_err().to_string();
        assert!(err.contains("--stale-after"), "{err}");
    }

    #[test]
    fn the_touch_window_is_a_hundredth_of_stale_after_capped_at_an_hour() {
        let config = parse(&["--stale-after", "100s"]).unwrap();
        assert_eq!(config.touch_window(), Duration::from_secs(1));
        let config = parse(&[]).unwrap();
        assert_eq!(config.touch_window(), Duration::from_secs(3600));
    }
}
