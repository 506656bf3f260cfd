//! The `livesession` binary: parse the configuration, set up logging, serve until SIGINT/SIGTERM.

use std::process::ExitCode;

use clap::error::ErrorKind;
use livesession::{App, Config, shutdown};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let config = match Config::from_args(std::env::args_os()) {
        Ok(config) => config,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's message is one line followed by a usage hint; the line is what matters.
            let rendered = e.to_string();
            let line = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            eprintln!("livesession: {}", line.trim_start_matches("error: "));
            eprintln!("Run `livesession --help` to see every flag.");
            return ExitCode::from(2);
        }
    };

    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("livesession=info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("livesession: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let app = App::build(config).await?;
        let token = shutdown::CancellationToken::new();
        let on_signal = token.clone();
        tokio::spawn(async move {
            shutdown::signal().await;
            on_signal.cancel();
        });
        app.run(token).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("livesession: {e:#}");
            ExitCode::FAILURE
        }
    }
}
