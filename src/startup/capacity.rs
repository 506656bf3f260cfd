//! How many connections each listener may hold: what the open-file limit leaves once the
//! process, the database and the other listeners have their descriptors.

use std::sync::Arc;

use crate::config::Config;
use crate::http::limits::{ConnectionLimits, connection_budget};

/// Descriptors kept from the connections for the rest of the process: standard streams, the
/// runtime's own (epoll, its wakers, the signal pipe), the files read at startup, and slack.
const RESERVED_FOR_PROCESS: u64 = 64;

/// Descriptors kept for SQLite: 8 readers and the writer, each with the database and its WAL
/// open, the shared-memory file, and room for a temporary file or two.
const RESERVED_FOR_SQLITE: u64 = 32;

/// Descriptors kept for PostgreSQL: the pool of 16 and the listening connection, and slack.
const RESERVED_FOR_POSTGRES: u64 = 20;

/// Connections the `--metrics-listen` listener holds at most (kept apart from the public
/// listener's, so a full server still answers its scraper).
const METRICS_CONNECTIONS: usize = 16;

/// Connections the `--redirect-http` listener holds at most, and per client address: it only
/// ever answers with a redirect.
const REDIRECT_CONNECTIONS: usize = 256;
const REDIRECT_CONNECTIONS_PER_IP: usize = 8;

/// How many connections the listeners may hold: the public one gets what the open-file limit
/// leaves once the database, the listeners, the logs and the metrics listener have theirs.
pub(super) struct Capacity {
    pub(super) public: ConnectionLimits,
    pub(super) metrics: ConnectionLimits,
    pub(super) redirect: ConnectionLimits,
    open_file_limit: Option<u64>,
    reserved: u64,
}

impl Capacity {
    /// Reads the soft open-file limit (`main` raised it to the hard limit already).
    pub(super) fn of(config: &Config) -> Capacity {
        let open_file_limit = rlimit::getrlimit(rlimit::Resource::NOFILE)
            .ok()
            .map(|(soft, _)| soft);
        let database = match config.database_url {
            Some(_) => RESERVED_FOR_POSTGRES,
            None => RESERVED_FOR_SQLITE,
        };
        let metrics_listener = match config.metrics_listen {
            Some(_) => 1 + METRICS_CONNECTIONS as u64,
            None => 0,
        };
        let redirect_listener = match config.redirect_http {
            Some(_) => 1 + REDIRECT_CONNECTIONS as u64,
            None => 0,
        };
        let reserved = RESERVED_FOR_PROCESS + database + 1 + metrics_listener + redirect_listener;
        // Without a readable limit, assume the usual default soft limit.
        let max_connections = connection_budget(open_file_limit.unwrap_or(1024), reserved);
        let trusted_proxies = Arc::new(config.trusted_proxies());
        Capacity {
            public: ConnectionLimits {
                max_connections,
                max_per_ip: config.max_connections_per_ip as usize,
                trusted_proxies,
            },
            metrics: ConnectionLimits {
                max_connections: METRICS_CONNECTIONS,
                max_per_ip: METRICS_CONNECTIONS,
                trusted_proxies: Arc::default(),
            },
            redirect: ConnectionLimits {
                max_connections: REDIRECT_CONNECTIONS,
                max_per_ip: REDIRECT_CONNECTIONS_PER_IP,
                trusted_proxies: Arc::default(),
            },
            open_file_limit,
            reserved,
        }
    }

    pub(super) fn log(&self) {
        let max_connections = self.public.max_connections;
        match self.open_file_limit {
            Some(limit) => tracing::info!(
                max_connections,
                open_file_limit = limit,
                reserved = self.reserved,
                "serving at most {max_connections} connections at once (the open-file limit \
                 {limit} less {} descriptors for the database, the listeners and the logs)",
                self.reserved
            ),
            None => tracing::warn!(
                max_connections,
                "cannot read the open-file limit; serving at most {max_connections} connections"
            ),
        }
        if max_connections < 64 {
            tracing::warn!(
                max_connections,
                "the open-file limit leaves room for very few connections; raise it (ulimit -n, \
                 LimitNOFILE=)"
            );
        }
    }
}
