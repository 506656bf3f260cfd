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
        let mut argv = vec!["livesession", "--listen", "127.0.0.1:0", "--data-dir", data];
        argv.extend_from_slice(args);
        let config = Config::from_args(argv).unwrap();
        let app = App::build(config).await.unwrap();
        let addr = app.local_addr();
        let state = app.state().clone();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run(shutdown.clone()));
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
