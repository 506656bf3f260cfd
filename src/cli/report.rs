//! `livesession prune` and `livesession stats`: what they do, and how their reports read for
//! people (`Display`) and for scripts (`--json`).

use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::clock::{Millis, now_millis};
use crate::config::Config;
use crate::prune::{count_pass, prune_pass};
use crate::retention::Pruned;
use crate::startup::{Opening, open_store};
use crate::store::{StoreStats, describe_postgres};

/// What `prune` removed, or would remove.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PruneReport {
    /// Nothing was removed: these are counts.
    pub dry_run: bool,
    /// Stale settings rows.
    pub sessions: usize,
    /// Old chat messages.
    pub messages: usize,
    /// Expired forgotten ids.
    pub forgotten: usize,
    /// Devices not seen for `--stale-after`, signed out.
    pub devices: usize,
}

impl std::fmt::Display for PruneReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        write!(
            f,
            "{verb} {} stale {}, {} idle {}, {} old {} and {} expired forgotten {}",
            self.sessions,
            plural(self.sessions, "session", "sessions"),
            self.devices,
            plural(self.devices, "device", "devices"),
            self.messages,
            plural(self.messages, "message", "messages"),
            self.forgotten,
            plural(self.forgotten, "id", "ids"),
        )?;
        if self.dry_run {
            write!(f, " (dry run: nothing was deleted)")?;
        }
        Ok(())
    }
}

/// One pass of pruning, as the server's background task runs it, or its dry run.
pub(super) async fn prune(config: &Config, dry_run: bool) -> anyhow::Result<PruneReport> {
    let store = open_store(
        config,
        Opening::AsItIs {
            accept_older: false,
        },
    )
    .await?;
    let retention = config.retention();
    let now = now_millis();
    let pruned = if dry_run {
        count_pass(&store, retention, now).await
    } else {
        prune_pass(&store, retention, now, &CancellationToken::new(), |_| {}).await
    };
    store.close().await;
    let Pruned {
        sessions,
        messages,
        forgotten,
        devices,
    } = pruned.context("pruning failed")?;
    Ok(PruneReport {
        dry_run,
        sessions,
        messages,
        forgotten,
        devices,
    })
}

/// What `stats` found.
#[derive(Debug, Clone, Serialize)]
pub struct StatsReport {
    /// The database: its file, or where the PostgreSQL database is.
    pub database: String,
    /// Its size on disk with its write-ahead log.
    pub size_bytes: u64,
    /// The part of it in the write-ahead log.
    pub wal_bytes: u64,
    /// Settings rows.
    pub sessions: u64,
    /// Chat messages.
    pub messages: u64,
    /// Forgotten ids still remembered.
    pub forgotten: u64,
    /// The least and most recent use of a settings row, and when the oldest and newest kept
    /// messages were posted (Unix milliseconds and RFC 3339).
    pub oldest_activity_ms: Option<Millis>,
    pub oldest_activity: Option<String>,
    pub newest_activity_ms: Option<Millis>,
    pub newest_activity: Option<String>,
    pub oldest_message_ms: Option<Millis>,
    pub oldest_message: Option<String>,
    pub newest_message_ms: Option<Millis>,
    pub newest_message: Option<String>,
    /// When the figures were taken, for the "ago"s of the summary.
    #[serde(skip)]
    pub now: Millis,
}

impl StatsReport {
    fn new(database: String, stats: StoreStats, now: Millis) -> StatsReport {
        let rfc3339 = |at: Option<Millis>| at.map(timestamp);
        StatsReport {
            database,
            size_bytes: stats.database_bytes + stats.wal_bytes,
            wal_bytes: stats.wal_bytes,
            sessions: stats.sessions,
            messages: stats.messages,
            forgotten: stats.forgotten,
            oldest_activity_ms: stats.oldest_activity,
            oldest_activity: rfc3339(stats.oldest_activity),
            newest_activity_ms: stats.newest_activity,
            newest_activity: rfc3339(stats.newest_activity),
            oldest_message_ms: stats.oldest_message,
            oldest_message: rfc3339(stats.oldest_message),
            newest_message_ms: stats.newest_message,
            newest_message: rfc3339(stats.newest_message),
            now,
        }
    }
}

impl std::fmt::Display for StatsReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let when = |at: Option<Millis>| match at {
            Some(at) => format!("{} ({})", timestamp(at), ago(self.now, at)),
            None => "none".to_owned(),
        };
        writeln!(f, "database         {}", self.database)?;
        if self.database.starts_with("postgres://") {
            writeln!(
                f,
                "size             {} bytes ({})",
                self.size_bytes,
                human_bytes(self.size_bytes),
            )?;
        } else {
            writeln!(
                f,
                "size             {} bytes ({}), of which {} bytes in the WAL",
                self.size_bytes,
                human_bytes(self.size_bytes),
                self.wal_bytes
            )?;
        }
        writeln!(f, "sessions         {}", self.sessions)?;
        writeln!(f, "messages         {}", self.messages)?;
        writeln!(f, "forgotten ids    {}", self.forgotten)?;
        writeln!(f, "oldest activity  {}", when(self.oldest_activity_ms))?;
        writeln!(f, "newest activity  {}", when(self.newest_activity_ms))?;
        writeln!(f, "oldest message   {}", when(self.oldest_message_ms))?;
        write!(f, "newest message   {}", when(self.newest_message_ms))
    }
}

pub(super) async fn stats(config: &Config) -> anyhow::Result<StatsReport> {
    let store = open_store(
        config,
        Opening::AsItIs {
            accept_older: false,
        },
    )
    .await?;
    let stats = store.stats().await;
    store.close().await;
    let stats = stats.context("cannot read the database's figures")?;
    let database = match &config.database_url {
        Some(url) => format!("postgres://{}", describe_postgres(url)),
        None => config.database_path().display().to_string(),
    };
    Ok(StatsReport::new(database, stats, now_millis()))
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

/// `at` in RFC 3339, to the second, in UTC.
fn timestamp(at: Millis) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(at.max(0).unsigned_abs());
    humantime::format_rfc3339_seconds(at).to_string()
}

/// How long before `now` the time `at` was, roughly: "3 days ago".
fn ago(now: Millis, at: Millis) -> String {
    let Some(seconds) = now.checked_sub(at).map(|ms| ms / 1000) else {
        return "in the future".to_owned();
    };
    let (n, unit) = match seconds {
        ..0 => return "in the future".to_owned(),
        0..60 => return "just now".to_owned(),
        60..3600 => (seconds / 60, "minute"),
        3600..86400 => (seconds / 3600, "hour"),
        _ => (seconds / 86400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// A size for people: `512 bytes`, `1.5 KiB`, `12.0 MiB`.
pub(super) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut size = bytes as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit < UNITS.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_rounded_down_to_the_largest_unit() {
        let now = 100 * 86_400_000;
        assert_eq!(ago(now, now - 5_000), "just now");
        assert_eq!(ago(now, now - 60_000), "1 minute ago");
        assert_eq!(ago(now, now - 3 * 3_600_000 - 1), "3 hours ago");
        assert_eq!(ago(now, now - 86_400_000), "1 day ago");
        assert_eq!(ago(now, now - 40 * 86_400_000), "40 days ago");
        assert_eq!(ago(now, now + 60_000), "in the future");
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human_bytes(0), "0 bytes");
        assert_eq!(human_bytes(1023), "1023 bytes");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(12 * 1024 * 1024), "12.0 MiB");
    }

    #[test]
    fn a_dry_run_says_nothing_was_deleted() {
        let report = PruneReport {
            dry_run: true,
            sessions: 1,
            messages: 2,
            forgotten: 0,
            devices: 1,
        };
        assert_eq!(
            report.to_string(),
            "would remove 1 stale session, 1 idle device, 2 old messages and 0 expired forgotten ids \
             (dry run: nothing was deleted)"
        );
    }
}
