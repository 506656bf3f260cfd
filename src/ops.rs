//! The command line beside the server: `livesession serve` (the default), and the maintenance
//! commands `backup`, `prune` and `stats`, which work on the data dir while a server runs on it.
//!
//! Every server flag is global: it may stand before or after the command's name, and its
//! `LIVESESSION_*` twin works for every command. A maintenance command reads the flags that
//! matter to it (`--data-dir`, `--busy-timeout`, and for `prune` the retention flags) and hides
//! the others from its `--help`. Each command prints a short summary, or one JSON object with
//! `--json`; the binary prints an error as one line and exits non-zero.
//!
//! The commands open the database as it is: nothing is created or upgraded, and SQLite's WAL
//! mode and busy timeout let them run beside the server. The work itself is done by [`Store`]
//! methods, so another backend can offer the same commands.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::prune::{self, Pruned};
use crate::store::{Millis, StoreStats, describe_postgres, now_millis};
use crate::{Opening, open_store};

/// The whole command line: the server's flags, and an optional command.
#[derive(Debug, Clone, Parser)]
#[command(name = "livesession", version, about, long_about = None)]
pub struct Cli {
    /// The flags, shared by every command.
    #[command(flatten)]
    pub config: Config,
    /// What to do; serving when none is given.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What the binary does.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Serve the app (what livesession does when no command is given).
    Serve,
    /// Write a consistent copy of the database to FILE while the server keeps running.
    Backup(BackupArgs),
    /// Prune once, now, by the server's rules (--stale-after, --message-retention,
    /// --message-limit, expired forgotten ids), and say how many rows went.
    Prune(PruneArgs),
    /// Say what the database holds: rows, size on disk, oldest and newest activity.
    Stats(StatsArgs),
}

/// `livesession backup`.
#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// Where to write the copy (a single SQLite file). Its folder must exist.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub output: Output,
}

/// `livesession prune`.
#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    /// Count what would be removed, and remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub output: Output,
}

/// `livesession stats`.
#[derive(Debug, Clone, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub output: Output,
}

/// How a command prints its result.
#[derive(Debug, Clone, Copy, Args)]
pub struct Output {
    /// Print one JSON object, for scripts, instead of a summary for people.
    #[arg(long)]
    pub json: bool,
}

/// Flags only the server uses: the maintenance commands accept them (so one set of flags or
/// environment works for every command) but leave them out of their `--help`.
const SERVER_ONLY: &[&str] = &[
    "listen",
    "prune_every",
    "durability",
    "secure_cookies",
    "secret_key",
    "previous_keys",
    "message_burst",
    "message_window",
    "allowed_origins",
    "live_idle_timeout",
    "live_send_timeout",
    "live_message_rate",
    "max_sockets_per_session",
    "max_sockets",
    "header_timeout",
    "shutdown_grace",
    "metrics",
    "metrics_listen",
];

/// Flags only `prune` uses among the maintenance commands.
const PRUNE_ONLY: &[&str] = &["stale_after", "message_retention", "message_limit"];

impl Cli {
    /// Parses the command line (and the environment) as the binary does.
    pub fn from_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut matches = Cli::clap_command().try_get_matches_from(args)?;
        Cli::from_arg_matches_mut(&mut matches)
    }

    /// The command line's definition: every flag global, each maintenance command's help
    /// showing only the flags it uses.
    pub fn clap_command() -> clap::Command {
        let command = Cli::command().mut_args(|arg| arg.global(true));
        let flags: Vec<clap::Arg> = command.get_arguments().cloned().collect();
        let hidden_in = |name: &str, id: &str| {
            SERVER_ONLY.contains(&id) || (name != "prune" && PRUNE_ONLY.contains(&id))
        };
        ["backup", "prune", "stats"]
            .into_iter()
            .fold(command, |command, name| {
                command.mut_subcommand(name, |sub| {
                    // A command's own copy of a global flag replaces the one it would inherit;
                    // its value still reaches the flags every command reads.
                    flags
                        .iter()
                        .filter(|flag| hidden_in(name, flag.get_id().as_str()))
                        .fold(sub, |sub, flag| sub.arg(flag.clone().hide(true)))
                })
            })
    }
}

/// Runs a maintenance command to its end; returns what it prints on standard output.
pub async fn run(command: &Command, config: &Config) -> anyhow::Result<String> {
    let (json, text) = match command {
        Command::Serve => bail!("serve is not a maintenance command"),
        Command::Backup(args) => {
            let report = backup(config, &args.file, args.force).await?;
            (
                args.output.json.then(|| to_json(&report)),
                report.to_string(),
            )
        }
        Command::Prune(args) => {
            let report = prune(config, args.dry_run).await?;
            (
                args.output.json.then(|| to_json(&report)),
                report.to_string(),
            )
        }
        Command::Stats(args) => {
            let report = stats(config).await?;
            (
                args.output.json.then(|| to_json(&report)),
                report.to_string(),
            )
        }
    };
    Ok(json.unwrap_or(text))
}

fn to_json(report: &impl Serialize) -> String {
    // The reports are plain structs of numbers and strings: they always serialize.
    serde_json::to_string(report).unwrap_or_default()
}

/// What `backup` did.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// The database copied.
    pub database: PathBuf,
    /// The copy.
    pub file: PathBuf,
    /// The copy's size.
    pub bytes: u64,
    /// What `PRAGMA integrity_check` said of the copy.
    pub integrity: String,
}

impl std::fmt::Display for BackupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "backed up {} to {}: {} bytes ({}), integrity check {}",
            self.database.display(),
            self.file.display(),
            self.bytes,
            human_bytes(self.bytes),
            self.integrity
        )
    }
}

/// Writes a copy of the database to `file` through a temporary file beside it, renamed into
/// place only once the copy is complete and passes an integrity check.
async fn backup(config: &Config, file: &Path, force: bool) -> anyhow::Result<BackupReport> {
    if let Some(url) = &config.database_url {
        bail!(
            "backup copies the SQLite database; the PostgreSQL database at {} is backed up with \
             pg_dump (for example: pg_dump --format=custom --file=FILE URL)",
            describe_postgres(url)
        );
    }
    let database = config.database_path();
    let temporary = backup_target(file, &database, force)?;
    let store = open_store(config, Opening::AsItIs { accept_older: true }).await?;
    let partial = Partial::create(temporary)
        .with_context(|| format!("cannot write the backup beside {}", file.display()))?;
    let integrity = store
        .backup_into(&partial.path)
        .await
        .with_context(|| format!("cannot back up {}", database.display()))?;
    if integrity != "ok" {
        bail!(
            "the copy of {} failed its integrity check, so {} was not written: {integrity}",
            database.display(),
            file.display()
        );
    }
    let bytes = partial
        .finish(file)
        .with_context(|| format!("cannot write the backup to {}", file.display()))?;
    Ok(BackupReport {
        database,
        file: file.to_path_buf(),
        bytes,
        integrity,
    })
}

/// Checks that `file` may receive a backup of `database`, and names the temporary file to
/// write first: beside `file`, so the final rename stays on one filesystem.
fn backup_target(file: &Path, database: &Path, force: bool) -> anyhow::Result<PathBuf> {
    let Some(name) = file.file_name() else {
        bail!("{} does not name a file to write", file.display());
    };
    let folder = match file.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    match std::fs::metadata(folder) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => bail!(
            "cannot write the backup to {}: {} is not a folder",
            file.display(),
            folder.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "cannot write the backup to {}: the folder {} does not exist",
            file.display(),
            folder.display()
        ),
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot write the backup to {}: cannot read the folder {}",
                    file.display(),
                    folder.display()
                )
            });
        }
    }
    if let Ok(existing) = std::fs::metadata(file) {
        if existing.is_dir() {
            bail!("{} is a folder; name a file to write", file.display());
        }
        let live = ["", "-wal", "-shm"].iter().any(|suffix| {
            let mut path = database.as_os_str().to_owned();
            path.push(suffix);
            std::fs::metadata(path)
                .is_ok_and(|m| (m.dev(), m.ino()) == (existing.dev(), existing.ino()))
        });
        if live {
            bail!(
                "{} is the database itself; write the backup to another file",
                file.display()
            );
        }
        if !force {
            bail!(
                "{} exists already; pass --force to replace it",
                file.display()
            );
        }
    }
    let mut temporary = std::ffi::OsString::from(".");
    temporary.push(name);
    temporary.push(format!(".partial-{}", uuid::Uuid::new_v4().simple()));
    Ok(folder.join(temporary))
}

/// A temporary file that is deleted unless it is renamed into place.
struct Partial {
    path: PathBuf,
    kept: bool,
}

impl Partial {
    /// Creates the file, empty, readable by its owner only (the copy holds session ids).
    fn create(path: PathBuf) -> std::io::Result<Partial> {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(Partial { path, kept: false })
    }

    /// Flushes the file to disk, renames it to `file` and flushes the folder, so the copy
    /// survives a crash right after; returns its size.
    fn finish(mut self, file: &Path) -> std::io::Result<u64> {
        let copy = std::fs::File::open(&self.path)?;
        copy.sync_all()?;
        let bytes = copy.metadata()?.len();
        std::fs::rename(&self.path, file)?;
        self.kept = true;
        if let Some(folder) = self.path.parent() {
            let folder = if folder.as_os_str().is_empty() {
                Path::new(".")
            } else {
                folder
            };
            std::fs::File::open(folder)?.sync_all()?;
        }
        Ok(bytes)
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

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
            "{verb} {} stale {}, {} old {} and {} expired forgotten {}",
            self.sessions,
            plural(self.sessions, "session", "sessions"),
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
async fn prune(config: &Config, dry_run: bool) -> anyhow::Result<PruneReport> {
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
        prune::count_pass(&store, retention, now).await
    } else {
        prune::prune_pass(&store, retention, now, &CancellationToken::new()).await
    };
    let Pruned {
        sessions,
        messages,
        forgotten,
    } = pruned.context("pruning failed")?;
    Ok(PruneReport {
        dry_run,
        sessions,
        messages,
        forgotten,
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

async fn stats(config: &Config) -> anyhow::Result<StatsReport> {
    let store = open_store(
        config,
        Opening::AsItIs {
            accept_older: false,
        },
    )
    .await?;
    let stats = store
        .stats()
        .await
        .context("cannot read the database's figures")?;
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
fn human_bytes(bytes: u64) -> String {
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

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::from_args(std::iter::once("livesession").chain(args.iter().copied()))
    }

    #[test]
    fn no_command_means_serve_with_every_flag_as_before() {
        let cli = parse(&["--listen", "0.0.0.0:80", "--stale-after", "2d"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.config.listen, "0.0.0.0:80");
        assert_eq!(cli.config.stale_after, Duration::from_secs(2 * 86400));
    }

    #[test]
    fn flags_may_stand_before_or_after_the_command() {
        let before = parse(&["--data-dir", "/srv/a", "serve", "--listen", "[::1]:9"]).unwrap();
        assert!(matches!(before.command, Some(Command::Serve)));
        assert_eq!(before.config.data_dir, PathBuf::from("/srv/a"));
        assert_eq!(before.config.listen, "[::1]:9");

        let after = parse(&[
            "prune",
            "--dry-run",
            "--stale-after",
            "3h",
            "--data-dir",
            "d",
        ])
        .unwrap();
        assert!(matches!(
            after.command,
            Some(Command::Prune(PruneArgs { dry_run: true, .. }))
        ));
        assert_eq!(after.config.stale_after, Duration::from_secs(3 * 3600));
        assert_eq!(after.config.data_dir, PathBuf::from("d"));

        let mixed = parse(&["--data-dir", "d", "backup", "out.db", "--force", "--json"]).unwrap();
        let Some(Command::Backup(args)) = mixed.command else {
            panic!("not a backup: {mixed:?}");
        };
        assert_eq!(args.file, PathBuf::from("out.db"));
        assert!(args.force && args.output.json);
        assert_eq!(mixed.config.data_dir, PathBuf::from("d"));
    }

    #[test]
    fn a_flag_after_the_command_wins_over_the_same_flag_before_it() {
        let cli = parse(&["--data-dir", "first", "stats", "--data-dir", "second"]).unwrap();
        assert_eq!(cli.config.data_dir, PathBuf::from("second"));
    }

    #[test]
    fn a_bad_flag_value_is_refused_after_a_command_too() {
        let err = parse(&["prune", "--stale-after", "soon"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--stale-after"), "{err}");
        assert!(parse(&["backup"]).is_err(), "FILE is required");
        assert!(parse(&["stats", "--dry-run"]).is_err());
    }

    #[test]
    fn maintenance_help_shows_only_the_flags_each_command_uses() {
        let mut command = Cli::clap_command();
        command.build();
        let help = |name: &str| {
            let mut sub = command.find_subcommand(name).unwrap().clone();
            sub.render_long_help().to_string()
        };
        for name in ["backup", "prune", "stats"] {
            let text = help(name);
            assert!(text.contains("--data-dir"), "{name}: {text}");
            assert!(text.contains("--busy-timeout"), "{name}: {text}");
            assert!(text.contains("--json"), "{name}: {text}");
            assert!(!text.contains("--listen"), "{name}: {text}");
            assert!(!text.contains("--secret-key"), "{name}: {text}");
        }
        assert!(help("prune").contains("--stale-after"));
        assert!(!help("stats").contains("--stale-after"));
        assert!(help("serve").contains("--listen"));
    }

    #[test]
    fn every_hidden_flag_is_a_real_flag() {
        let command = Cli::command();
        let ids: Vec<&str> = command
            .get_arguments()
            .map(|a| a.get_id().as_str())
            .collect();
        for id in SERVER_ONLY.iter().chain(PRUNE_ONLY) {
            assert!(ids.contains(id), "{id} is not a flag of Config");
        }
    }

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
        };
        assert_eq!(
            report.to_string(),
            "would remove 1 stale session, 2 old messages and 0 expired forgotten ids \
             (dry run: nothing was deleted)"
        );
    }

    #[test]
    fn a_backup_target_in_a_missing_folder_or_existing_without_force_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("livesession.db");
        std::fs::write(&database, b"").unwrap();
        let missing = dir.path().join("nope").join("copy.db");
        let err = backup_target(&missing, &database, false).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");

        let existing = dir.path().join("copy.db");
        std::fs::write(&existing, b"old").unwrap();
        let err = backup_target(&existing, &database, false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        let temporary = backup_target(&existing, &database, true).unwrap();
        assert_eq!(temporary.parent(), Some(dir.path()));
        assert!(!temporary.exists());

        let err = backup_target(&database, &database, true).unwrap_err();
        assert!(err.to_string().contains("the database itself"), "{err}");
        let err = backup_target(dir.path(), &database, true).unwrap_err();
        assert!(err.to_string().contains("is a folder"), "{err}");
    }
}
