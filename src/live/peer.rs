//! The socket as the live layer writes to it: one frame at a time in, each send bounded by
//! `--live-send-timeout` (a peer that stops reading is dropped, not buffered for), and a polite
//! close with a code and a reason.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::timeout;

use super::protocol::ServerMessage;
use crate::metrics::metrics;
use crate::site::StoreError;

/// The largest message a client may send; a bigger one closes the socket with 1009.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// How long a closing socket waits for the peer's closing frame.
const CLOSE_WAIT: Duration = Duration::from_millis(250);

/// Close codes (RFC 6455).
pub(super) mod code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const UNSUPPORTED: u16 = 1003;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const SERVICE_RESTART: u16 = 1012;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// Anything that carries WebSocket messages both ways: axum's socket, or a test's channels.
pub trait Transport:
    Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin
{
}

impl<T> Transport for T where
    T: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin
{
}

/// How a socket's life ended, for the log.
pub(super) enum End {
    /// The peer closed or vanished.
    Peer,
    /// We closed it, with this code and reason.
    Closed(u16, &'static str),
    /// A send did not complete within the send timeout: the peer is not reading.
    TooSlow,
}

/// What one frame from the peer turned out to be.
pub(super) enum Frame {
    Text(String),
    /// Ping, pong, or anything else that only proves the peer is alive.
    Alive,
    Binary,
    TooBig,
    Gone,
}

/// The socket and the rules for writing to it.
pub(super) struct Peer<S> {
    socket: S,
    send_timeout: Duration,
}

impl<S: Transport> Peer<S> {
    /// A peer on `socket` whose sends may take `send_timeout` each.
    pub(super) fn new(socket: S, send_timeout: Duration) -> Peer<S> {
        Peer {
            socket,
            send_timeout,
        }
    }

    /// The next frame from the peer.
    pub(super) async fn next(&mut self) -> Frame {
        match self.socket.next().await {
            Some(Ok(Message::Text(text))) => Frame::Text(text.as_str().to_owned()),
            Some(Ok(Message::Binary(_))) => Frame::Binary,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Frame::Alive,
            Some(Ok(Message::Close(_))) | None => Frame::Gone,
            Some(Err(e)) if is_too_big(&e) => Frame::TooBig,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "reading from a live socket failed");
                Frame::Gone
            }
        }
    }

    /// Sends one message; `Err` means the socket must be dropped.
    pub(super) async fn send(&mut self, message: Message) -> Result<(), End> {
        match timeout(self.send_timeout, self.socket.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "writing to a live socket failed");
                Err(End::Peer)
            }
            Err(_) => Err(End::TooSlow),
        }
    }

    pub(super) async fn send_json(&mut self, message: &ServerMessage<'_>) -> Result<(), End> {
        self.send(Message::text(message.to_json())).await
    }

    /// Queues a message without flushing it: the next send or flush writes both in one go.
    pub(super) async fn queue_json(&mut self, message: &ServerMessage<'_>) -> Result<(), End> {
        self.queue(Message::text(message.to_json())).await
    }

    /// Queues a frame without flushing it.
    pub(super) async fn queue(&mut self, message: Message) -> Result<(), End> {
        match timeout(self.send_timeout, self.socket.feed(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Peer),
            Err(_) => Err(End::TooSlow),
        }
    }

    /// Writes whatever is queued.
    pub(super) async fn flush(&mut self) -> Result<(), End> {
        match timeout(self.send_timeout, self.socket.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Peer),
            Err(_) => Err(End::TooSlow),
        }
    }

    /// The database failed: tell the person in words, then close with 1011 so the client
    /// reconnects (with backoff) and re-sends what was not acknowledged.
    pub(super) async fn store_failed(&mut self, doing: &str, error: &StoreError) -> End {
        metrics().database_error(error);
        let unavailable = error.unavailable();
        tracing::error!(error = %error, reason = unavailable.reason(), "live: {doing} failed");
        let _ = self
            .send_json(&ServerMessage::Error {
                message: unavailable.message(),
            })
            .await;
        self.close(code::INTERNAL, unavailable.reason()).await
    }

    /// Sends a close frame (best effort) and reports the end.
    pub(super) async fn close(&mut self, code: u16, reason: &'static str) -> End {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        if let Ok(Ok(())) = timeout(
            self.send_timeout,
            self.socket.send(Message::Close(Some(frame))),
        )
        .await
        {
            // The closing handshake: wait (briefly) for the peer's close, so the connection ends
            // cleanly and the peer reads our reason instead of a reset.
            let _ = timeout(CLOSE_WAIT, async {
                while let Some(Ok(message)) = self.socket.next().await {
                    if matches!(message, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
        End::Closed(code, reason)
    }
}

fn is_too_big(error: &axum::Error) -> bool {
    let source = std::error::Error::source(error);
    matches!(
        source.and_then(|e| e.downcast_ref::<tungstenite::Error>()),
        Some(tungstenite::Error::Capacity(_))
    )
}
