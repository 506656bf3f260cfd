//! The real binary, started as a user would start it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Browser;

pub const BIN: &str = env!("CARGO_BIN_EXE_livesession");

/// `livesession --data-dir DATA_DIR ARGS` (on port 0 unless ARGS say `--listen`), with
/// `info` logs and none of the test runner's `LIVESESSION_*` variables.
pub fn command(data_dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    if !args.contains(&"--listen") {
        command.args(["--listen", "127.0.0.1:0"]);
    }
    as_a_user_would(&mut command, data_dir, args);
    command
}

/// Adds `--data-dir DATA_DIR ARGS` to `command` (the binary, or a program that runs it), with
/// `info` logs and none of the test runner's `LIVESESSION_*` variables.
pub fn as_a_user_would(command: &mut Command, data_dir: &Path, args: &[&str]) {
    command
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("RUST_LOG", "livesession=info")
        .stdin(Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("LIVESESSION_") {
            command.env_remove(key);
        }
    }
}

/// What a process wrote to standard error, line by line as it came, and the thread reading
/// it (it ends when the process closes standard error).
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<LogState>>);

#[derive(Default)]
struct LogState {
    lines: Vec<String>,
    reader: Option<JoinHandle<()>>,
}

impl Log {
    /// The lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().lines.clone()
    }

    /// Waits (20 s at most) for a line containing `needle`, and returns it.
    pub fn wait_for(&self, needle: &str) -> String {
        let started = Instant::now();
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no line with {needle:?} in:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the process wrote, once it has exited and closed standard error.
    pub fn finished(&self) -> String {
        let reader = self.0.lock().unwrap().reader.take();
        if let Some(reader) = reader {
            reader.join().unwrap();
        }
        self.lines().join("\n")
    }
}

/// Runs the binary expecting it to stop by itself (a startup failure, a maintenance command),
/// within 10 s.
pub fn run_to_exit(data_dir: &Path, args: &[&str]) -> std::process::Output {
    let mut child = command(data_dir, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            panic!("livesession {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The same browser (same cookie) talking to another instance.
pub fn same_browser_on(browser: &Browser, server: &Server) -> Browser {
    let mut other = Browser::new(server.addr);
    other.cookie = browser.cookie.clone();
    other
}

/// Asserts a refusal: a non-zero exit, nothing on standard output, and one line on standard
/// error that says `expected`, without a panic.
pub fn assert_refused(output: &std::process::Output, expected: &str) {
    assert!(!output.status.success(), "it succeeded: {output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("livesession: "))
        .collect();
    assert_eq!(errors.len(), 1, "want one error line, got:\n{stderr}");
    assert!(
        errors[0].contains(expected),
        "{expected:?} not in {errors:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A running server process.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every line the server has logged so far.
    pub log: Log,
}

impl Server {
    /// Starts the binary and waits until it prints the URL it listens on.
    pub fn start(data_dir: &Path, args: &[&str]) -> Server {
        Server::start_logged(command(data_dir, args)).0
    }

    /// Starts `command` (see [`command`]), keeps every line it writes to standard error,
    /// and waits until it prints the URL it listens on.
    pub fn start_logged(mut command: Command) -> (Server, Log) {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let log = Log::default();
        let reader = {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in stderr.lines().map_while(Result::ok) {
                    log.0.lock().unwrap().lines.push(line);
                }
            })
        };
        log.0.lock().unwrap().reader = Some(reader);
        let line = log.wait_for("listening on http");
        let at = line.find("://").unwrap() + "://".len();
        let addr = line[at..].trim().parse().unwrap();
        (
            Server {
                child,
                addr,
                log: log.clone(),
            },
            log,
        )
    }

    /// Stops the server with SIGTERM, as systemd does, and asserts it exits with 0.
    pub fn stop(self) {
        self.signal("-TERM");
        assert!(self.wait(Duration::from_secs(10)), "exited with an error");
    }

    /// Whether the server has logged a line containing `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.log.lines().iter().any(|line| line.contains(text))
    }

    /// Sends a signal (`-TERM`, `-KILL`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`; returns whether it exited with 0.
    pub fn wait(mut self, limit: Duration) -> bool {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(started.elapsed() < limit, "still running after {limit:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A server a test did not stop (it failed, or did not need to) does not outlive it.
impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
