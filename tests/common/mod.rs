//! Shared test helpers: an app on port 0 with a fresh data dir, and a tiny "browser" that keeps
//! the session cookie between requests the way a real one does.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use livesession::shutdown::CancellationToken;
use livesession::{App, AppState, Config};
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::{Response, StatusCode, redirect};
use tokio::task::JoinHandle;

/// A secret for tests that need to know the key.
pub const SECRET_A: &str = "test-secret-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
/// Another one, for rotation.
pub const SECRET_B: &str = "test-secret-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// A running app and the folder it keeps its data in.
pub struct TestApp {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub state: AppState,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    _temp: Option<tempfile::TempDir>,
}

impl TestApp {
    /// Starts an app with a fresh temporary data dir and extra flags.
    pub async fn spawn(args: &[&str]) -> TestApp {
        let temp = tempfile::tempdir().unwrap();
        let mut app = TestApp::spawn_in(temp.path(), args).await;
        app._temp = Some(temp);
        app
    }

    /// Starts an app on an existing data dir (to test restarts).
    pub async fn spawn_in(data_dir: &Path, args: &[&str]) -> TestApp {
        let data = data_dir.to_str().unwrap();
        let mut argv = vec!["livesession", "--data-dir", data];
        if !args.contains(&"--listen") {
            argv.extend(["--listen", "127.0.0.1:0"]);
        }
        argv.extend_from_slice(args);
        let config = Config::from_args(argv).unwrap();
        let app = App::build(config).await.unwrap();
        let addr = app.local_addr();
        let state = app.state().clone();
        let shutdown = app.shutdown_token();
        let task = tokio::spawn(app.run());
        TestApp {
            addr,
            data_dir: data_dir.to_path_buf(),
            state,
            shutdown,
            task,
            _temp: None,
        }
    }

    /// Stops the app and waits until it has finished; returns the data dir (kept alive).
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        self.shutdown.cancel();
        (&mut self.task).await.unwrap().unwrap();
        self._temp.take()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A browser with an empty cookie jar.
    pub fn browser(&self) -> Browser {
        Browser::new(self.addr)
    }

    /// Opens the database file directly, to look behind the HTTP surface.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.data_dir.join("livesession.db")).unwrap()
    }

    /// How many settings rows there are.
    pub fn settings_rows(&self) -> i64 {
        self.db()
            .query_row("SELECT count(*) FROM settings", [], |r| r.get(0))
            .unwrap()
    }
}

/// A client that keeps the session cookie like a browser, follows no redirects (so tests see the
/// 303s), and reads CSRF tokens out of pages.
#[derive(Clone)]
pub struct Browser {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    /// `name=value` of the session cookie, if any.
    pub cookie: Option<String>,
}

impl Browser {
    pub fn new(addr: SocketAddr) -> Browser {
        let client = reqwest::Client::builder()
            .redirect(redirect::Policy::none())
            .build()
            .unwrap();
        Browser {
            addr,
            client,
            cookie: None,
        }
    }

    fn remember(&mut self, response: &Response) {
        if let Some(set) = response.headers().get(SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            self.cookie = Some(pair);
        }
    }

    pub async fn get(&mut self, path: &str) -> Response {
        let mut request = self.client.get(format!("http://{}{}", self.addr, path));
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie);
        }
        let response = request.send().await.unwrap();
        self.remember(&response);
        response
    }

    /// `GET path`, asserting 200, returning the body.
    pub async fn page(&mut self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.text().await.unwrap()
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Response {
        let mut request = self
            .client
            .post(format!("http://{}{}", self.addr, path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode_form(form));
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie);
        }
        let response = request.send().await.unwrap();
        self.remember(&response);
        response
    }

    /// The CSRF token on the settings page of this browser's session.
    pub async fn csrf_token(&mut self) -> String {
        let page = self.page("/settings").await;
        attribute_after(&page, r#"name="_csrf" value=""#).to_owned()
    }

    /// Posts a chat message through the composer form, like a person without JavaScript.
    pub async fn post_message(&mut self, body: &str) -> Response {
        let page = self.page("/").await;
        let token = attribute_after(&page, r#"name="_csrf" value=""#).to_owned();
        let nonce = attribute_after(&page, r#"name="nonce" value=""#).to_owned();
        self.post(
            "/messages",
            &[("_csrf", &token), ("nonce", &nonce), ("body", body)],
        )
        .await
    }

    /// Posts the settings form like a person pressing Save.
    pub async fn save_settings(&mut self, username: &str, theme: &str) -> Response {
        let token = self.csrf_token().await;
        self.post(
            "/settings",
            &[("_csrf", &token), ("username", username), ("theme", theme)],
        )
        .await
    }
}

pub fn encode_form(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The text after `prefix` up to the next `"`: reads one attribute value out of a page.
pub fn attribute_after<'a>(page: &'a str, prefix: &str) -> &'a str {
    let start = page
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix} not in page"))
        + prefix.len();
    let len = page[start..].find('"').unwrap();
    &page[start..start + len]
}

/// The `value` of the username input.
pub fn username_field(page: &str) -> &str {
    attribute_after(page, r#"name="username" value=""#)
}

/// The `data-theme` of `<html>`.
pub fn html_theme(page: &str) -> &str {
    attribute_after(page, r#"<html lang="en" data-theme=""#)
}

/// The option selected in the theme select.
pub fn selected_theme(page: &str) -> &str {
    let select = &page[page.find(r#"<select id="theme""#).unwrap()..];
    let end = select.find("</select>").unwrap();
    let selected = select[..end].find(" selected>").unwrap();
    let before = &select[..selected];
    let value = before.rfind("value=\"").unwrap() + 7;
    &before[value..before.len() - 1]
}

/// A live socket as a page would open it.
pub mod live {
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use serde_json::{Value, json};
    use tokio::net::TcpStream;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::{Error, Message};
    use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

    use super::{Browser, attribute_after, message_ids};

    pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

    /// Opens `/live` with the browser's cookie and the given `Origin` (`None`: no header).
    pub async fn open(browser: &Browser, origin: Option<&str>) -> Result<Socket, Error> {
        let mut request = format!("ws://{}/live", browser.addr)
            .into_client_request()
            .unwrap();
        if let Some(cookie) = &browser.cookie {
            request
                .headers_mut()
                .insert("cookie", HeaderValue::from_str(cookie).unwrap());
        }
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", HeaderValue::from_str(origin).unwrap());
        }
        tokio_tungstenite::connect_async(request)
            .await
            .map(|(s, _)| s)
    }

    /// What a page knows: its CSRF token, build hash, version and newest message.
    pub struct PageInfo {
        pub csrf: String,
        pub build: String,
        pub version: i64,
        pub last_message: i64,
    }

    pub async fn page_info(browser: &mut Browser, path: &str) -> PageInfo {
        let page = browser.page(path).await;
        let script = attribute_after(&page, r#"<script src="/assets/live."#);
        PageInfo {
            csrf: attribute_after(&page, r#"data-live-csrf=""#).to_owned(),
            build: script.split('.').next().unwrap().to_owned(),
            version: attribute_after(&page, r#"data-live-version=""#)
                .parse()
                .unwrap(),
            last_message: message_ids(&page).last().copied().unwrap_or(0),
        }
    }

    /// A joined socket on the settings view, like a freshly loaded settings page.
    pub async fn join_settings(browser: &mut Browser, page_id: &str) -> Socket {
        join(browser, "settings", page_id, None).await
    }

    /// A joined socket on the chat view; `last_message` defaults to what the page shows.
    pub async fn join_chat(
        browser: &mut Browser,
        page_id: &str,
        last_message: Option<i64>,
    ) -> Socket {
        join(browser, "chat", page_id, last_message).await
    }

    async fn join(
        browser: &mut Browser,
        view: &str,
        page_id: &str,
        last_message: Option<i64>,
    ) -> Socket {
        let path = if view == "chat" { "/" } else { "/settings" };
        let info = page_info(browser, path).await;
        let origin = format!("http://{}", browser.addr);
        let mut socket = open(browser, Some(&origin)).await.unwrap();
        send(
            &mut socket,
            json!({"t": "join", "view": view, "csrf": info.csrf, "build": info.build,
                   "page": page_id, "version": info.version,
                   "last_message": last_message.unwrap_or(info.last_message)}),
        )
        .await;
        let joined = recv(&mut socket).await;
        assert_eq!(joined["t"], "joined", "{joined}");
        socket
    }

    pub async fn send(socket: &mut Socket, message: Value) {
        socket
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
    }

    /// Sends a chat message over the socket.
    pub async fn post(socket: &mut Socket, seq: u64, nonce: &str, body: &str) {
        send(
            socket,
            json!({"t": "post", "form": "composer", "seq": seq, "nonce": nonce, "body": body}),
        )
        .await;
    }

    pub async fn change(socket: &mut Socket, seq: u64, username: &str, theme: &str) {
        send(
            socket,
            json!({"t": "change", "form": "settings", "seq": seq,
                   "fields": {"username": username, "theme": theme}}),
        )
        .await;
    }

    /// The next JSON message, within 5 s (pings and pongs are skipped).
    pub async fn recv(socket: &mut Socket) -> Value {
        try_recv(socket, Duration::from_secs(5))
            .await
            .expect("no message within 5 s")
    }

    /// The next JSON message within `wait`, or `None`.
    pub async fn try_recv(socket: &mut Socket, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, socket.next())
                .await
                .ok()?;
            match frame {
                Some(Ok(Message::Text(text))) => return Some(serde_json::from_str(&text).unwrap()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// Reads until the server closes; returns its close frame.
    pub async fn closed(socket: &mut Socket) -> Option<CloseFrame> {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .expect("the socket was not closed within 10 s");
            match frame {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// The `name=value` pair a browser would send for the cookie `keys` issue for `id`.
pub fn cookie_pair(
    keys: &livesession::session::Keys,
    id: livesession::session::SessionId,
) -> String {
    let set_cookie = keys.issue(id);
    set_cookie
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// The ids of the chat messages in a page or fragment, in document order.
pub fn message_ids(html: &str) -> Vec<i64> {
    html.split(r#"data-id=""#)
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].parse().unwrap())
        .collect()
}

/// The real binary, started as a user would start it.
pub mod binary {
    use std::io::{BufRead, BufReader};
    use std::net::SocketAddr;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    pub const BIN: &str = env!("CARGO_BIN_EXE_livesession");

    /// `livesession --data-dir DATA_DIR ARGS` (on port 0 unless ARGS say `--listen`), with
    /// `info` logs and none of the test runner's `LIVESESSION_*` variables.
    pub fn command(data_dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        if !args.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
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
        command
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
            let url = log.wait_for("listening on http://");
            let at = url.find("listening on http://").unwrap() + "listening on http://".len();
            let addr = url[at..].trim().parse().unwrap();
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
}

/// A PostgreSQL database of the test's own, created on the server tests use and dropped after.
///
/// The server is `LIVESESSION_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`).
/// Without one, a test that needs it says it was skipped and why, unless `CI=true`: there,
/// a missing server is a failure, never a silent pass.
pub mod postgres {
    use tokio_postgres::NoTls;

    /// The server tests connect to, as an administrator able to create databases.
    pub fn admin_url() -> String {
        std::env::var("LIVESESSION_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
    }

    /// A fresh, uniquely named database; dropped (with any connection still open) on drop.
    pub struct TestDatabase {
        pub url: String,
        name: String,
    }

    impl TestDatabase {
        /// Creates the database, or returns `None` after saying why the test is skipped.
        pub async fn create(test: &str) -> Option<TestDatabase> {
            let admin = admin_url();
            let (client, connection) = match tokio_postgres::connect(&admin, NoTls).await {
                Ok(connected) => connected,
                Err(e) => {
                    if std::env::var("CI").is_ok_and(|v| v == "true") {
                        panic!("CI is set but PostgreSQL at {admin} is not reachable: {e}");
                    }
                    eprintln!(
                        "skipped {test}: no PostgreSQL at {admin} ({e}); set LIVESESSION_TEST_POSTGRES"
                    );
                    return None;
                }
            };
            tokio::spawn(connection);
            let name = format!("livesession_test_{}", uuid::Uuid::new_v4().simple());
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
            let url = with_dbname(&admin, &name);
            Some(TestDatabase { url, name })
        }

        /// A plain connection to the database, to look behind the app.
        pub async fn connect(&self) -> tokio_postgres::Client {
            let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await.unwrap();
            tokio::spawn(connection);
            client
        }
    }

    impl Drop for TestDatabase {
        fn drop(&mut self) {
            let admin = admin_url();
            let name = self.name.clone();
            // Drop runs inside the test's runtime, which cannot block on itself: use a thread.
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let (client, connection) = tokio_postgres::connect(&admin, NoTls).await?;
                    tokio::spawn(connection);
                    client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await
                })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop the test database {}", self.name);
            }
        }
    }

    /// `url` with its database name replaced by `name`.
    fn with_dbname(url: &str, name: &str) -> String {
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (url, None),
        };
        let authority_end = base
            .find("://")
            .map(|at| at + 3)
            .and_then(|start| base[start..].find('/').map(|slash| start + slash))
            .unwrap_or(base.len());
        let mut url = format!("{}/{name}", &base[..authority_end]);
        if let Some(query) = query {
            url.push('?');
            url.push_str(query);
        }
        url
    }
}
