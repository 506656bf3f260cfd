//! The Prometheus registry: every metric of the process, encoded in the text format for
//! `/metrics` (served by `http::metrics`).
//!
//! The counters are process-wide, like the process they describe: one process is one scrape
//! target, and the code that sees an event (a handler, a live socket, the prune task) counts it
//! without a handle threaded through to it. Every series is made once, at first use, so
//! recording an event is one relaxed atomic add: no lock, no allocation, no label lookup. Two
//! metrics are read from their owners at a scrape instead, and cost nothing until then: the
//! live-socket gauge (the live layer's count) and the write-duration histogram (the store's own,
//! [`WriteTimes`]).

use std::sync::{Arc, LazyLock};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::lock::Mutex;
use crate::retention::Pruned;
use crate::store::{StoreError, Unavailable, WRITE_BUCKETS, WriteTimes, WriteTimesSnapshot};

/// The metrics of this process.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// The pages whose views are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// `GET /`.
    Chat,
    /// `GET /settings`.
    Settings,
}

/// How a settings write arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePath {
    /// A plain form post.
    Form,
    /// A change over the live socket.
    Live,
}

/// Which rate limit refused something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A browser sending chat messages too fast.
    Chat,
    /// A live socket sending messages too fast.
    Live,
    /// One address asking to be forgotten too often.
    Forget,
    /// One browser signing out its other devices too often.
    SignOut,
    /// One client address sending chat messages too fast, over its browsers together.
    ChatAddress,
    /// The whole room taking more chat messages than `--room-message-burst`.
    ChatRoom,
    /// "Download my data" asked too often by one browser or one address.
    Export,
    /// One-time codes made or tried too often.
    Link,
    /// One client address saving too many new sessions (`--new-sessions-per-ip`).
    NewSessions,
}

/// Why a connection, a request or a live socket was refused or closed early (the `reason` label of
/// `livesession_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A live socket upgrade from a foreign `Origin`.
    Origin,
    /// A connection over `--max-connections-per-ip`, closed at once.
    ConnectionsPerIp,
    /// The server held its most connections: the accept loop waited for one to close.
    Connections,
    /// A connection whose first request's headers did not arrive within `--header-timeout`.
    HeaderTimeout,
    /// A live socket over `--max-sockets`.
    Sockets,
    /// A live socket over `--max-sockets-per-ip`.
    SocketsPerIp,
    /// A live socket over `--max-sockets-per-session`.
    SocketsPerSession,
    /// A live socket that did not join within `--live-join-timeout`.
    JoinTimeout,
    /// A TLS handshake that failed (no common protocol, a certificate the client refused, not
    /// TLS at all).
    TlsHandshake,
    /// A session cookie that did not verify, or named a forgotten session: a fresh session.
    Cookie,
    /// A chat post over a rate limit (its limit is counted in `livesession_rate_limited_total`).
    ChatLimit,
    /// A live socket closed for sending over `--live-message-rate`.
    LiveRate,
    /// A live socket dropped because its peer stopped reading (`--live-send-timeout`).
    LiveTooSlow,
}

impl Refusal {
    /// Every refusal, in the order of its series.
    pub const ALL: [Refusal; 13] = [
        Refusal::Origin,
        Refusal::ConnectionsPerIp,
        Refusal::Connections,
        Refusal::HeaderTimeout,
        Refusal::Sockets,
        Refusal::SocketsPerIp,
        Refusal::SocketsPerSession,
        Refusal::JoinTimeout,
        Refusal::TlsHandshake,
        Refusal::Cookie,
        Refusal::ChatLimit,
        Refusal::LiveRate,
        Refusal::LiveTooSlow,
    ];

    /// Its `reason` label.
    pub fn label(self) -> &'static str {
        REFUSALS.1[self as usize]
    }
}

/// Every metric, each labelled series held as its own handle.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    live_sockets: Gauge,
    page_views: [Counter; 2],
    settings_writes: [Counter; 2],
    touches_skipped: Counter,
    touches: Counter,
    prune_runs: Counter,
    pruned_rows: [Counter; 3],
    write_duration: LatencyHistogram,
    database_errors: [Counter; 4],
    chat_messages: Counter,
    qr_codes_drawn: Counter,
    backups: [Counter; 2],
    live_origin_rejections: Counter,
    rate_limited: [Counter; 9],
    refused: [Counter; 13],
    connections: Gauge,
    /// Taken by a scrape while it sets the figures read from their owners and encodes them.
    scrapes: Mutex<()>,
}

/// A label and its values, in the order of the metric's array of series (and of its enum).
type Label<const N: usize> = (&'static str, [&'static str; N]);

const PAGES: Label<2> = ("page", ["chat", "settings"]);
const WRITE_PATHS: Label<2> = ("path", ["form", "live"]);
const PRUNED_KINDS: Label<3> = ("kind", ["sessions", "messages", "forgotten"]);
const LIMITS: Label<9> = (
    "limit",
    [
        "chat",
        "live",
        "forget",
        "sign_out",
        "chat_address",
        "chat_room",
        "export",
        "link",
        "new_sessions",
    ],
);
const REFUSALS: Label<13> = (
    "reason",
    [
        "origin",
        "connections_per_ip",
        "connections",
        "header_timeout",
        "sockets",
        "sockets_per_ip",
        "sockets_per_session",
        "join_timeout",
        "tls_handshake",
        "invalid_cookie",
        "chat_rate_limit",
        "live_message_rate",
        "live_send_timeout",
    ],
);

/// The kinds of database failure, as [`Unavailable::reason`] names them.
const UNAVAILABLE: [Unavailable; 4] = [
    Unavailable::DiskFull,
    Unavailable::ReadOnly,
    Unavailable::Busy,
    Unavailable::Failed,
];

impl Metrics {
    /// A fresh set of metrics, all at zero. The process has one ([`metrics`]); tests make
    /// their own.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("livesession");
        let live_sockets = Gauge::default();
        registry.register(
            "live_sockets",
            "Live WebSocket connections joined right now",
            live_sockets.clone(),
        );
        let page_views = labelled(
            &mut registry,
            "page_views",
            "Pages requested with a GET, by page",
            PAGES,
        );
        let settings_writes = labelled(
            &mut registry,
            "settings_writes",
            "Settings saved, by how they arrived",
            WRITE_PATHS,
        );
        let touches_skipped = counter(
            &mut registry,
            "touches_skipped",
            "Reads of a settings row that wrote nothing, its read_at being within the touch window",
        );
        let touches = counter(
            &mut registry,
            "touches",
            "Writes of read_at alone: a read past the touch window, or an open live socket",
        );
        let prune_runs = counter(
            &mut registry,
            "prune_runs",
            "Passes of the prune task, failed ones included",
        );
        let pruned_rows = labelled(
            &mut registry,
            "pruned_rows",
            "Rows the prune task deleted, by kind",
            PRUNED_KINDS,
        );
        let write_duration = LatencyHistogram::default();
        registry.register_with_unit(
            "write_duration",
            "Database writes a request waits for (saves, touches, forget me, chat posts), \
             failed ones included, from the call until committed or failed",
            Unit::Seconds,
            write_duration.clone(),
        );
        let reasons = UNAVAILABLE.map(Unavailable::reason);
        let database_errors = labelled(
            &mut registry,
            "database_errors",
            "Database requests that failed, by kind",
            ("kind", reasons),
        );
        let chat_messages = counter(
            &mut registry,
            "chat_messages",
            "Chat messages posted (a resent one is not counted again)",
        );
        let qr_codes_drawn = counter(
            &mut registry,
            "qr_codes_drawn",
            "QR codes of one-time links drawn (each link's is drawn once, then kept)",
        );
        let backups = labelled(
            &mut registry,
            "backups",
            "Automatic backups (--backup-every) written and checked, or failed",
            ("result", ["ok", "failed"]),
        );
        let live_origin_rejections = counter(
            &mut registry,
            "live_origin_rejections",
            "Live socket upgrades refused for a foreign Origin",
        );
        let rate_limited = labelled(
            &mut registry,
            "rate_limited",
            "Requests refused by a rate limit, by limit",
            LIMITS,
        );
        let refused = labelled(
            &mut registry,
            "refused",
            "Connections, requests and live sockets refused or closed early, by reason",
            REFUSALS,
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "HTTP connections open right now (live sockets included), on every listener",
            connections.clone(),
        );
        Metrics {
            registry,
            live_sockets,
            page_views,
            settings_writes,
            touches_skipped,
            touches,
            prune_runs,
            pruned_rows,
            write_duration,
            database_errors,
            chat_messages,
            qr_codes_drawn,
            backups,
            live_origin_rejections,
            rate_limited,
            refused,
            connections,
            scrapes: Mutex::new(()),
        }
    }

    /// A page was rendered for a GET.
    pub fn page_view(&self, page: Page) {
        self.page_views[page as usize].inc();
    }

    /// Settings were saved.
    pub fn settings_written(&self, path: WritePath) {
        self.settings_writes[path as usize].inc();
    }

    /// A read found `read_at` recent enough and wrote nothing.
    pub fn touch_skipped(&self) {
        self.touches_skipped.inc();
    }

    /// A row's `read_at` was written.
    pub fn touched(&self) {
        self.touches.inc();
    }

    /// A prune pass ended: its rows, or its failure.
    pub fn prune_ran(&self, pass: &Result<Pruned, StoreError>) {
        self.prune_runs.inc();
        match pass {
            Ok(pruned) => {
                let [sessions, messages, forgotten] = &self.pruned_rows;
                sessions.inc_by(pruned.sessions as u64);
                messages.inc_by(pruned.messages as u64);
                forgotten.inc_by(pruned.forgotten as u64);
            }
            Err(e) => self.database_error(e),
        }
    }

    /// A database request failed.
    pub fn database_error(&self, error: &StoreError) {
        let kind = error.unavailable();
        let index = UNAVAILABLE.iter().position(|&k| k == kind).unwrap_or(3);
        self.database_errors[index].inc();
    }

    /// A chat message was stored.
    pub fn chat_message_posted(&self) {
        self.chat_messages.inc();
    }

    /// The QR code of a link was drawn.
    pub fn qr_code_drawn(&self) {
        self.qr_codes_drawn.inc();
    }

    /// An automatic backup was written and checked (`true`), or failed.
    pub fn backup_ran(&self, ok: bool) {
        self.backups[usize::from(!ok)].inc();
    }

    /// A live socket upgrade was refused for its Origin.
    pub fn live_origin_rejected(&self) {
        self.live_origin_rejections.inc();
    }

    /// A rate limit refused something.
    pub fn rate_limited(&self, limit: Limit) {
        self.rate_limited[limit as usize].inc();
    }

    /// Something was refused or closed early; see [`Refusal`]. (Its log lines are
    /// `crate::refusals`'.)
    pub fn refused(&self, refusal: Refusal) {
        self.refused[refusal as usize].inc();
    }

    /// How many times `refusal` happened so far.
    pub fn refusals(&self, refusal: Refusal) -> u64 {
        self.refused[refusal as usize].get()
    }

    /// A connection was accepted.
    pub fn connection_opened(&self) {
        self.connections.inc();
    }

    /// A connection was closed.
    pub fn connection_closed(&self) {
        self.connections.dec();
    }

    /// Every metric in the Prometheus text format, with `live_sockets` as the gauge's value and
    /// `writes` as the write-duration histogram.
    pub fn encode(&self, live_sockets: usize, writes: &WriteTimes) -> String {
        // Scrapes take turns, so each encodes the figures it set.
        let _turn = self.scrapes.lock();
        *self.write_duration.0.lock() = writes.snapshot();
        self.live_sockets
            .set(i64::try_from(live_sockets).unwrap_or(i64::MAX));
        let mut text = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let counter = Counter::default();
    registry.register(name, help, counter.clone());
    counter
}

/// Registers a counter with one label and makes its series, one per value, in order.
fn labelled<const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    (key, values): Label<N>,
) -> [Counter; N] {
    let family = Family::<[(&'static str, &'static str); 1], Counter>::default();
    registry.register(name, help, family.clone());
    std::array::from_fn(|i| family.get_or_create(&[(key, values[i])]).clone())
}

/// The write-duration histogram as the last scrape read it from the store: encoding reads it,
/// [`Metrics::encode`] sets it.
#[derive(Debug, Clone, Default)]
struct LatencyHistogram(Arc<Mutex<WriteTimesSnapshot>>);

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = *self.0.lock();
        let mut buckets = [(f64::INFINITY, 0); WRITE_BUCKETS.len() + 1];
        for (i, bucket) in buckets.iter_mut().enumerate() {
            *bucket = (
                WRITE_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY),
                snapshot.counts[i],
            );
        }
        let count = buckets.iter().map(|&(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(snapshot.sum_seconds, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The value of the sample line that starts with `series ` in `text`.
    fn sample(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn every_series_shows_at_zero_before_anything_happens() {
        let text = Metrics::new().encode(0, &WriteTimes::default());
        for series in [
            "livesession_live_sockets",
            r#"livesession_page_views_total{page="chat"}"#,
            r#"livesession_settings_writes_total{path="live"}"#,
            "livesession_touches_skipped_total",
            "livesession_touches_total",
            "livesession_prune_runs_total",
            r#"livesession_pruned_rows_total{kind="forgotten"}"#,
            "livesession_write_duration_seconds_count",
            r#"livesession_database_errors_total{kind="disk full"}"#,
            "livesession_chat_messages_total",
            "livesession_live_origin_rejections_total",
            r#"livesession_rate_limited_total{limit="chat"}"#,
            r#"livesession_rate_limited_total{limit="forget"}"#,
            r#"livesession_refused_total{reason="origin"}"#,
            r#"livesession_refused_total{reason="join_timeout"}"#,
            "livesession_connections",
        ] {
            assert_eq!(sample(&text, series), 0.0, "{series}");
        }
    }

    #[test]
    fn each_event_moves_its_own_series_only() {
        let metrics = Metrics::new();
        metrics.page_view(Page::Settings);
        metrics.page_view(Page::Settings);
        metrics.settings_written(WritePath::Live);
        metrics.rate_limited(Limit::Live);
        metrics.prune_ran(&Ok(Pruned {
            sessions: 3,
            messages: 2,
            forgotten: 1,
            devices: 0,
        }));
        let text = metrics.encode(7, &WriteTimes::default());
        for (series, expected) in [
            ("livesession_live_sockets", 7.0),
            (r#"livesession_page_views_total{page="settings"}"#, 2.0),
            (r#"livesession_page_views_total{page="chat"}"#, 0.0),
            (r#"livesession_settings_writes_total{path="live"}"#, 1.0),
            (r#"livesession_settings_writes_total{path="form"}"#, 0.0),
            (r#"livesession_rate_limited_total{limit="live"}"#, 1.0),
            ("livesession_prune_runs_total", 1.0),
            (r#"livesession_pruned_rows_total{kind="sessions"}"#, 3.0),
            (r#"livesession_pruned_rows_total{kind="forgotten"}"#, 1.0),
        ] {
            assert_eq!(sample(&text, series), expected, "{series}");
        }
    }

    #[test]
    fn a_failed_prune_counts_as_a_run_and_a_database_error_of_its_kind() {
        let metrics = Metrics::new();
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        metrics.prune_ran(&Err(StoreError::Sqlite(busy)));
        let text = metrics.encode(0, &WriteTimes::default());
        assert_eq!(sample(&text, "livesession_prune_runs_total"), 1.0);
        assert_eq!(
            sample(
                &text,
                r#"livesession_database_errors_total{kind="database locked"}"#
            ),
            1.0
        );
    }

    #[test]
    fn write_durations_land_in_cumulative_buckets() {
        let writes = WriteTimes::default();
        writes.observe(Duration::from_micros(50));
        writes.observe(Duration::from_millis(3));
        writes.observe(Duration::from_secs(60));
        let text = Metrics::new().encode(0, &writes);
        let bucket = |le: &str| {
            sample(
                &text,
                &format!(r#"livesession_write_duration_seconds_bucket{{le="{le}"}}"#),
            )
        };
        assert_eq!(bucket("0.0001"), 1.0);
        assert_eq!(bucket("0.0025"), 1.0);
        assert_eq!(bucket("0.005"), 2.0);
        assert_eq!(bucket("5"), 2.0);
        assert_eq!(bucket("+Inf"), 3.0);
        assert_eq!(
            sample(&text, "livesession_write_duration_seconds_count"),
            3.0
        );
        let sum = sample(&text, "livesession_write_duration_seconds_sum");
        assert!((sum - 60.00305).abs() < 1e-9, "{sum}");
    }
}
