//! A tiny "browser" that keeps the session cookie between requests the way a real one does, and
//! what tests read out of the pages it gets.

use std::net::SocketAddr;

use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::{Response, StatusCode, redirect};

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
        Browser::built(addr, reqwest::Client::builder())
    }

    /// A browser whose every connection comes from the local address `from` (another loopback
    /// address, 127.0.0.2 and up, is another client address).
    pub fn from_address(addr: SocketAddr, from: std::net::IpAddr) -> Browser {
        Browser::built(addr, reqwest::Client::builder().local_address(from))
    }

    /// A browser that says it is `user_agent`.
    pub fn with_user_agent(addr: SocketAddr, user_agent: &str) -> Browser {
        Browser::built(
            addr,
            reqwest::Client::builder().user_agent(user_agent.to_owned()),
        )
    }

    /// A browser of `builder`'s client, which follows no redirect (the tests look at each).
    fn built(addr: SocketAddr, builder: reqwest::ClientBuilder) -> Browser {
        let client = builder.redirect(redirect::Policy::none()).build().unwrap();
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

/// The ids of the chat messages in a page or fragment, in document order.
pub fn message_ids(html: &str) -> Vec<i64> {
    html.split(r#"data-id=""#)
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].parse().unwrap())
        .collect()
}

/// The `name=value` pair a browser would send for the cookie `keys` issue for `id` (as its
/// first device).
pub fn cookie_pair(
    keys: &livesession::session::Keys,
    id: livesession::session::SessionId,
) -> String {
    let who = livesession::session::Who {
        session: id,
        device: livesession::session::first_device(id),
    };
    let set_cookie = keys.issue(who);
    set_cookie
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}
