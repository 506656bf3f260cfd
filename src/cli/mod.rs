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
//! mode and busy timeout let them run beside the server. The work itself is done by `Store`
//! methods, so both backends offer the same commands (`backup` says to use `pg_dump` on
//! PostgreSQL).
//!
//! - [`backup`]: `livesession backup FILE`, through a temporary file renamed into place.
//! - [`report`]: `prune` and `stats`, and how their reports read.

mod backup;
mod report;
mod restore;

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::Serialize;

use crate::config::Config;
use backup::backup;
use report::{prune, stats};
use restore::restore;

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
    /// Put the backup FILE in place of the database, while no server runs on the data dir (the
    /// database it replaces is kept beside it).
    Restore(RestoreArgs),
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

/// `livesession restore`.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The backup to put in place (a file `livesession backup` or --backup-every wrote).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
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
    "tls_cert",
    "tls_key",
    "tls_domain",
    "reconnect_spread",
    "backup_every",
    "backup_keep",
    "backup_dir",
    "reuse_port",
    "acme_directory",
    "acme_email",
    "acme_ca",
    "hsts_max_age",
    "redirect_http",
    "secret_key",
    "previous_keys",
    "message_burst",
    "message_window",
    "message_burst_per_ip",
    "new_sessions_per_ip",
    "min_free_disk",
    "room_message_burst",
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
    "max_connections_per_ip",
    "trusted_proxies",
    "max_sockets_per_ip",
    "live_join_timeout",
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
        ["backup", "restore", "prune", "stats"]
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
        Command::Restore(args) => {
            let report = restore(config, &args.file)?;
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
        for name in ["backup", "restore", "prune", "stats"] {
            let text = help(name);
            assert!(text.contains("--data-dir"), "{name}: {text}");
            assert!(text.contains("--busy-timeout"), "{name}: {text}");
            assert!(text.contains("--database-url"), "{name}: {text}");
            assert!(text.contains("--database-ca"), "{name}: {text}");
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
}
