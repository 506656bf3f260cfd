//! The baseline of the fan-out benchmark: the least a server can do to carry a chat message to
//! every open page. An axum WebSocket endpoint and a `tokio::sync::broadcast` channel, no
//! database, no cookie, no template: a post is acknowledged to its sender, encoded once as the
//! same `messages` frame livesession sends, and written to every socket.
//!
//! `cargo run --release --example fanout_bare -- ADDR`
//!
//! Its protocol is livesession's, cut to what the benchmark uses: a socket sends a `join` (any),
//! gets `{"t":"joined"}`; a `post` with `seq` and `body` gets an `ack` and reaches everyone.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::broadcast;

#[derive(Clone)]
struct Room {
    channel: broadcast::Sender<Utf8Bytes>,
    next_id: Arc<AtomicI64>,
}

async fn live(State(room): State<Room>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| serve(socket, room))
}

async fn serve(socket: WebSocket, room: Room) {
    let (mut sink, mut stream) = socket.split();
    let mut messages = room.channel.subscribe();
    loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
                        continue;
                    };
                    match value["t"].as_str() {
                        Some("join") => {
                            let _ = sink.send(Message::text(r#"{"t":"joined"}"#)).await;
                        }
                        Some("post") => {
                            let seq = value["seq"].as_u64().unwrap_or(0);
                            let body = value["body"].as_str().unwrap_or("");
                            let ack = format!(r#"{{"t":"ack","form":"composer","seq":{seq}}}"#);
                            if sink.send(Message::text(ack)).await.is_err() {
                                return;
                            }
                            let id = room.next_id.fetch_add(1, Ordering::Relaxed);
                            let html = format!(
                                r#"<li class="message" id="m-{id}" data-id="{id}"><span class="author">anonymous</span> <p class="body">{body}</p></li>"#
                            );
                            let frame = serde_json::json!({"t": "messages", "html": html, "last": id});
                            let _ = room.channel.send(Utf8Bytes::from(frame.to_string()));
                        }
                        _ => {}
                    }
                }
                Some(Ok(_)) => {}
                _ => return,
            },
            message = messages.recv() => match message {
                Ok(frame) => {
                    if sink.send(Message::Text(frame)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

#[tokio::main]
async fn main() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4002".to_owned());
    let room = Room {
        channel: broadcast::channel(1024).0,
        next_id: Arc::new(AtomicI64::new(1)),
    };
    let app = Router::new()
        .route("/live", get(live))
        .route("/healthz", get(|| async { r#"{"status":"ok"}"# }))
        .with_state(room);
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    println!(
        "fanout_bare listening on http://{}",
        listener.local_addr().unwrap()
    );
    axum::serve(listener, app).await.unwrap();
}
