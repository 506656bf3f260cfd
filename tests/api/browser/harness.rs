//! Drives a real headless Chromium through ChromeDriver (WebDriver), one browser per test.
//!
//! Chromium and ChromeDriver come from the system (`/usr/bin/chromium`, `/usr/bin/chromedriver`,
//! or `LIVESESSION_CHROMIUM` / `LIVESESSION_CHROMEDRIVER`). Without them the tests say so on the
//! terminal and return; with `CI=true` a missing browser fails the run instead.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// A running ChromeDriver and one browser session on it. Dropping it ends both.
pub struct Chrome {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn tool(env: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    path.exists().then_some(path)
}

impl Chrome {
    /// Starts a headless browser, or returns `None` (after saying why) when there is none here.
    pub async fn start(test: &str) -> Option<Chrome> {
        Chrome::start_with(test, &[]).await
    }

    /// [`Chrome::start`] with `extra` command-line arguments for Chromium, after the usual ones.
    pub async fn start_with(test: &str, extra: &[String]) -> Option<Chrome> {
        let (Some(chromium), Some(driver)) = (
            tool("LIVESESSION_CHROMIUM", "/usr/bin/chromium"),
            tool("LIVESESSION_CHROMEDRIVER", "/usr/bin/chromedriver"),
        ) else {
            return crate::common::skip(
                &format!("browser test {test}"),
                "Chromium or ChromeDriver not found (install the chromium and chromium-driver packages, \
                 or set LIVESESSION_CHROMIUM and LIVESESSION_CHROMEDRIVER)",
            );
        };

        let port = crate::common::free_port();
        // Its own process group, so that dropping `Chrome` after a failed test can end the
        // browser processes ChromeDriver started, not just ChromeDriver.
        let driver = Command::new(driver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let mut capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-quic",
                    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                    "--disable-backgrounding-occluded-windows",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            },
            "goog:loggingPrefs": { "browser": "ALL" },
            // A page with edits not yet saved asks before it goes (beforeunload): leaving it,
            // as a test does, is what a person who answers "Leave" does.
            "unhandledPromptBehavior": "accept"
        });
        capabilities["goog:chromeOptions"]["args"]
            .as_array_mut()
            .unwrap()
            .extend(extra.iter().cloned().map(Value::String));
        let capabilities = capabilities.as_object().unwrap().clone();
        let url = format!("http://127.0.0.1:{port}");
        let mut last_error = None;
        for _ in 0..100 {
            let mut builder =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            match builder
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Some(Chrome {
                        client,
                        driver,
                        _profile: profile,
                    });
                }
                Err(e) => last_error = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("could not start a browser session: {last_error:?}");
    }

    /// Ends the browser session (and the browser) cleanly.
    pub async fn quit(self) {
        let _ = self.client.clone().close().await;
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Runs `script` in the page and returns its result.
    pub async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Waits (up to 10 s) until `script` returns `true`.
    pub async fn until(&self, what: &str, script: &str) {
        for _ in 0..200 {
            if self.client.execute(script, vec![]).await.ok() == Some(Value::Bool(true)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting until {what} ({script})");
    }

    /// Types into the element matching `css`, like a person on a keyboard.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.client.find(Locator::Css(css)).await.unwrap();
        element.send_keys(text).await.unwrap();
    }

    /// The `value` property of the element matching `css`.
    pub async fn value(&self, css: &str) -> String {
        let element = self.client.find(Locator::Css(css)).await.unwrap();
        element.prop("value").await.unwrap().unwrap_or_default()
    }

    /// The session cookie as a `name=value` pair, for looking at the static HTML over plain HTTP.
    pub async fn session_cookie(&self) -> String {
        let cookie = self.client.get_named_cookie("livesession").await.unwrap();
        format!("{}={}", cookie.name(), cookie.value())
    }

    /// Console messages (errors, warnings, CSP violations) logged so far, as `level: text`.
    pub async fn console(&self) -> Vec<String> {
        let entries = self.client.issue_cmd(BrowserLog).await.unwrap();
        entries
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| format!("{}: {}", e["level"].as_str().unwrap_or("?"), e["message"]))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asserts the console holds no error (a CSP violation is logged as one).
    pub async fn assert_clean_console(&self) {
        let problems: Vec<String> = self
            .console()
            .await
            .into_iter()
            .filter(|line| line.starts_with("SEVERE") || line.contains("Content Security Policy"))
            .collect();
        assert!(problems.is_empty(), "console errors: {problems:#?}");
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}

/// ChromeDriver's log endpoint, which WebDriver itself lacks.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}
