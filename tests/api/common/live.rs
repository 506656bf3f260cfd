//! A live socket as a page would open it.

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

/// What a page knows: its CSRF token, build hash, version, newest message and, on the chat, the
/// version of its presence list.
pub struct PageInfo {
    pub csrf: String,
    pub build: String,
    pub version: i64,
    pub last_message: i64,
    pub presence: u64,
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
        presence: page
            .contains(r#"id="presence""#)
            .then(|| attribute_after(&page, r#"id="presence" aria-live="polite" data-version=""#))
            .map_or(0, |v| v.parse().unwrap()),
    }
}

/// A joined socket on the settings view, like a freshly loaded settings page.
pub async fn join_settings(browser: &mut Browser, page_id: &str) -> Socket {
    join(browser, "settings", page_id, None).await
}

/// A joined socket on the chat view; `last_message` defaults to what the page shows.
pub async fn join_chat(browser: &mut Browser, page_id: &str, last_message: Option<i64>) -> Socket {
    join(browser, "chat", page_id, last_message).await
}

async fn join(
    browser: &mut Browser,
    view: &str,
    page_id: &str,
    last_message: Option<i64>,
) -> Socket {
    let path = if view == "chat" { "/" } else { "/settings" };
    let mut info = page_info(browser, path).await;
    if let Some(last_message) = last_message {
        info.last_message = last_message;
    }
    let origin = format!("http://{}", browser.addr);
    let mut socket = open(browser, Some(&origin)).await.unwrap();
    send_join(&mut socket, view, page_id, &info).await;
    let joined = recv(&mut socket).await;
    assert_eq!(joined["t"], "joined", "{joined}");
    socket
}

/// Sends the join a page described by `info` sends, on `view` as page `page_id`.
pub async fn send_join(socket: &mut Socket, view: &str, page_id: &str, info: &PageInfo) {
    send(
        socket,
        json!({"t": "join", "view": view, "csrf": info.csrf, "build": info.build,
               "page": page_id, "version": info.version, "last_message": info.last_message,
               "presence": info.presence}),
    )
    .await;
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

/// The next JSON message within `wait`, or `None`. The chat's presence frames, which come
/// whenever someone arrives or leaves, are skipped: [`presence`] reads those.
pub async fn try_recv(socket: &mut Socket, wait: Duration) -> Option<Value> {
    try_recv_where(socket, wait, |m| m["t"] != "presence").await
}

/// The next presence frame within 5 s (other messages are skipped).
pub async fn presence(socket: &mut Socket) -> Value {
    try_presence(socket, Duration::from_secs(5))
        .await
        .expect("no presence frame within 5 s")
}

/// The next presence frame within `wait`, or `None` (other messages are skipped).
pub async fn try_presence(socket: &mut Socket, wait: Duration) -> Option<Value> {
    try_recv_where(socket, wait, |m| m["t"] == "presence").await
}

/// Reads presence frames until one's HTML satisfies `wanted`, within 5 s; returns that HTML.
pub async fn presence_until(socket: &mut Socket, wanted: impl Fn(&str) -> bool) -> String {
    let frame = try_recv_where(socket, Duration::from_secs(5), |m| {
        m["t"] == "presence" && wanted(m["html"].as_str().unwrap_or(""))
    })
    .await
    .expect("the awaited presence list never came");
    frame["html"].as_str().unwrap().to_owned()
}

/// The next JSON message that satisfies `wanted` within `wait`, or `None`; the others are
/// skipped.
async fn try_recv_where(
    socket: &mut Socket,
    wait: Duration,
    wanted: impl Fn(&Value) -> bool,
) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let message = try_recv_any(socket, left).await?;
        if wanted(&message) {
            return Some(message);
        }
    }
}

/// The next JSON message of any kind within `wait`, or `None` (pings and pongs are skipped).
async fn try_recv_any(socket: &mut Socket, wait: Duration) -> Option<Value> {
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

/// Reads messages until one satisfies `wanted`, within 5 s.
pub async fn recv_until(socket: &mut Socket, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let message = try_recv(socket, left)
            .await
            .expect("the awaited message never came");
        if wanted(&message) {
            return message;
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
