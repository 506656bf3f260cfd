//! The `livesession` binary: parse the command line, set up logging, then serve until
//! SIGINT/SIGTERM, or run one maintenance command (`backup`, `prune`, `stats`) and print its
//! result.

#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::error::ErrorKind;
use livesession::cli::{self, Cli, Command};
use livesession::config::LogFormat;
use livesession::{App, Config, shutdown};
use tokio::runtime::Runtime;
use tracing_subscriber::EnvFilter;

/// clap's message for `e`, without the value when the flag holds a secret (a database URL may
/// carry a password; the signing secret is one).
fn redact_secrets(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let rendered = e.to_string();
    let secret_flag = matches!(
        e.get(ContextKind::InvalidArg),
        Some(ContextValue::String(arg))
            if arg.starts_with("--database-url") || arg.starts_with("--secret-key")
    );
    match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) if secret_flag && !value.is_empty() => {
            rendered.replace(value.as_str(), "(hidden)")
        }
        _ => rendered,
    }
}

/// mimalloc: measurably faster than the system allocator for a server that allocates a few
/// short-lived strings per request (see BENCHMARKS.md). With its `override` feature it also
/// serves the C code's `malloc` (SQLite): glibc's allocator gave the writer thread an arena of
/// its own and gave memory back to the kernel after each savepoint, a TLB flush on every core
/// each time (17% of the server's time under durable writes).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let Cli { config, command } = match Cli::from_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's message is a paragraph followed by hints; the paragraph is what matters.
            let rendered = redact_secrets(&e);
            let paragraph: Vec<&str> = rendered
                .lines()
                .map(str::trim)
                .skip_while(|l| l.is_empty())
                .take_while(|l| !l.is_empty())
                .collect();
            let line = match paragraph.join(" ") {
                line if line.is_empty() => "invalid arguments".to_owned(),
                line => line,
            };
            eprintln!(
                "livesession: {} (see --help)",
                line.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };

    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("livesession=info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("livesession: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match command {
        None | Some(Command::Serve) => serve(runtime, config),
        Some(command) => maintain(runtime, &command, &config),
    }
}

/// Serves until SIGINT or SIGTERM.
fn serve(runtime: Runtime, config: Config) -> ExitCode {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %config.data_dir.display(),
        "starting livesession"
    );
    // Every live socket is a file descriptor: allow as many as the system lets this process have.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open-file limit raised to the hard limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }

    let result = runtime.block_on(async {
        let app = App::build(config).await?;
        let token = app.shutdown_token();
        tokio::spawn(async move {
            shutdown::signal().await;
            token.cancel();
        });
        app.run().await
    });
    // A database call still stuck past the grace (a lock another process holds) must not keep
    // the process from exiting: stop waiting for blocking work after a moment.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failed(&e),
    }
}

/// Runs one maintenance command and prints its result on standard output.
fn maintain(runtime: Runtime, command: &Command, config: &Config) -> ExitCode {
    match runtime.block_on(cli::run(command, config)) {
        Ok(output) => {
            // A closed standard output (`| head`) is the reader's choice, not a failure.
            let _ = writeln!(std::io::stdout(), "{output}");
            ExitCode::SUCCESS
        }
        Err(e) => failed(&e),
    }
}

/// Says what went wrong, on one line of standard error.
fn failed(error: &anyhow::Error) -> ExitCode {
    eprintln!("livesession: {}", one_line(error));
    ExitCode::FAILURE
}

/// The error and its causes on one line, skipping a cause that only repeats the line so far
/// (SQLite errors carry their message twice).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let text = text
            .strip_prefix("Error code ")
            .and_then(|rest| rest.split_once(": "))
            .map_or(text.as_str(), |(_, msg)| msg);
        if line.contains(text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(text);
    }
    line
}
