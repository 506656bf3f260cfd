//! One live socket, from join to close.
//!
//! The loop is generic over any `Stream + Sink` of WebSocket messages, so it does not care
//! whether the other end is a browser, a test client or an in-memory channel. It waits for a
//! join, then serves the page: saves changes (acknowledging each only after its commit), renders
//! the view again when its HTML changed, follows the session's other tabs through the hub, pings
//! an idle peer, touches the row while connected, and closes politely on shutdown.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::{Instant, MissedTickBehavior, interval_at, timeout};

use super::protocol::{ClientMessage, MAX_PAGE_ID_LEN, ServerMessage};
use super::pubsub::SessionEvent;
use crate::app::AppState;
use crate::assets::LIVE_SCRIPT;
use crate::session::SessionId;
use crate::settings::{Settings, SettingsChange, SettingsErrors, SettingsInput};
use crate::store::now_millis;
use crate::views::{self, FormState, Screen, View};

/// The largest message a client may send; a bigger one closes the socket with 1009.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// How long a new socket may take to send its join.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The one form that live changes may target so far.
const SETTINGS_FORM: &str = "settings";

/// Close codes (RFC 6455).
mod code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const UNSUPPORTED: u16 = 1003;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
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
enum End {
    /// The peer closed or vanished.
    Peer,
    /// We closed it, with this code and reason.
    Closed(u16, &'static str),
    /// A send did not complete within the send timeout: the peer is not reading.
    TooSlow,
}

/// What one frame from the peer turned out to be.
enum Frame {
    Text(String),
    /// Ping, pong, or anything else that only proves the peer is alive.
    Alive,
    Binary,
    TooBig,
    Gone,
}

/// The socket and the rules for writing to it.
struct Peer<S> {
    socket: S,
    send_timeout: Duration,
}

impl<S: Transport> Peer<S> {
    async fn next(&mut self) -> Frame {
        match self.socket.next().await {
            Some(Ok(Message::Text(text))) => Frame::Text(text.as_str().to_owned()),
            Some(Ok(Message::Binary(_))) => Frame::Binary,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Frame::Alive,
            Some(Ok(Message::Close(_))) | None => Frame::Gone,
            Some(Err(e)) if is_too_big(&e) => Frame::TooBig,
            Some(Err(_)) => Frame::Gone,
        }
    }

    /// Sends one message; `Err` means the socket must be dropped.
    async fn send(&mut self, message: Message) -> Result<(), End> {
        match timeout(self.send_timeout, self.socket.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Peer),
            Err(_) => Err(End::TooSlow),
        }
    }

    async fn send_json(&mut self, message: &ServerMessage<'_>) -> Result<(), End> {
        self.send(Message::text(message.to_json())).await
    }

    /// Sends a close frame (best effort) and reports the end.
    async fn close(&mut self, code: u16, reason: &'static str) -> End {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = timeout(
            self.send_timeout,
            self.socket.send(Message::Close(Some(frame))),
        )
        .await;
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

/// Serves one upgraded socket until it ends. `session` is the verified session of the upgrade
/// request, if its cookie was valid.
pub async fn run<S: Transport>(socket: S, app: AppState, session: Option<SessionId>) {
    let mut peer = Peer {
        socket,
        send_timeout: app.live.send_timeout,
    };
    let end = match join(&mut peer, &app, session).await {
        Ok(mut live) => live.serve(&mut peer, &app).await,
        Err(end) => end,
    };
    match end {
        End::Peer => tracing::debug!("live socket closed by the peer"),
        End::Closed(code, reason) => tracing::debug!(code, reason, "live socket closed"),
        End::TooSlow => tracing::info!("live socket dropped: the peer stopped reading"),
    }
}

/// The state of a joined socket.
struct LiveView {
    id: SessionId,
    socket_id: u64,
    view: View,
    page: String,
    csrf_token: String,
    saved: Settings,
    version: i64,
    /// A refused username, shown back in its field.
    typed_username: Option<String>,
    errors: SettingsErrors,
    /// A hash of the last `<body>` HTML this page has, to send nothing when nothing changed.
    shown: u64,
}

async fn join<S: Transport>(
    peer: &mut Peer<S>,
    app: &AppState,
    session: Option<SessionId>,
) -> Result<LiveView, End> {
    let text = match timeout(JOIN_TIMEOUT, peer.next()).await {
        Err(_) => return Err(peer.close(code::POLICY, "no join message").await),
        Ok(Frame::Text(text)) => text,
        Ok(Frame::TooBig) => return Err(peer.close(code::TOO_BIG, "message too big").await),
        Ok(Frame::Binary) => {
            return Err(peer
                .close(code::UNSUPPORTED, "binary messages are not supported")
                .await);
        }
        Ok(Frame::Gone) => return Err(End::Peer),
        Ok(Frame::Alive) => {
            return Err(peer
                .close(code::POLICY, "the first message must be a join")
                .await);
        }
    };
    let Ok(ClientMessage::Join {
        view,
        csrf,
        build,
        page,
        version,
    }) = serde_json::from_str(&text)
    else {
        return Err(peer
            .close(code::POLICY, "the first message must be a join")
            .await);
    };
    let Some(id) = session else {
        return Err(peer
            .close(code::POLICY, "no valid session cookie; reload the page")
            .await);
    };
    if !app.keys.verify_csrf(id, &csrf) {
        return Err(peer
            .close(code::POLICY, "invalid CSRF token; reload the page")
            .await);
    }
    if page.is_empty() || page.len() > MAX_PAGE_ID_LEN {
        return Err(peer.close(code::POLICY, "invalid page id").await);
    }
    if build != LIVE_SCRIPT.hash() {
        peer.send_json(&ServerMessage::Reload {
            reason: "the server runs a newer version of this page",
        })
        .await?;
        return Err(peer.close(code::NORMAL, "reload").await);
    }

    let (saved, current) = match load(app, id, true).await {
        Ok(found) => found,
        Err(()) => return Err(peer.close(code::INTERNAL, "database unavailable").await),
    };
    let mut live = LiveView {
        id,
        socket_id: app.live.next_socket_id(),
        view,
        page,
        csrf_token: app.keys.csrf_token(id),
        saved,
        version: current,
        typed_username: None,
        errors: SettingsErrors::default(),
        shown: 0,
    };
    peer.send_json(&ServerMessage::Joined).await?;
    let html = live.render();
    live.shown = hash(&html);
    if current != version {
        live.send_render(peer, &html).await?;
    }
    Ok(live)
}

/// The settings and version of `id` (defaults and 0 without a row); touches the row on a join.
async fn load(app: &AppState, id: SessionId, touch: bool) -> Result<(Settings, i64), ()> {
    let stored = app.store.load(id).await.map_err(|e| {
        tracing::error!(error = %e, "live: loading settings failed");
    })?;
    let Some(stored) = stored else {
        return Ok((Settings::default(), 0));
    };
    if touch {
        touch_row(app, id).await;
    }
    Ok((stored.settings, stored.version))
}

async fn touch_row(app: &AppState, id: SessionId) {
    let now = now_millis();
    if let Err(e) = app
        .store
        .touch(id, now, app.retention.touch_before(now))
        .await
    {
        tracing::warn!(error = %e, "live: touching the session failed");
    }
}

impl LiveView {
    async fn serve<S: Transport>(&mut self, peer: &mut Peer<S>, app: &AppState) -> End {
        let mut events = app.live.hub.subscribe(self.id);
        let idle_timeout = app.live.idle_timeout;
        let mut pings = interval_at(Instant::now() + idle_timeout / 3, idle_timeout / 3);
        pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // An open socket counts as use: touch the row about once per touch window.
        let touch_every = app.retention.touch_window.max(Duration::from_millis(100));
        let mut touches = interval_at(Instant::now() + touch_every, touch_every);
        touches.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let shutdown = app.live.shutdown.clone();

        loop {
            let step = tokio::select! {
                frame = peer.next() => {
                    last_heard = Instant::now();
                    match frame {
                        Frame::Text(text) => self.on_text(peer, app, &text).await,
                        Frame::Alive => Ok(()),
                        Frame::Binary => Err(peer.close(code::UNSUPPORTED, "binary messages are not supported").await),
                        Frame::TooBig => Err(peer.close(code::TOO_BIG, "message too big").await),
                        Frame::Gone => Err(End::Peer),
                    }
                }
                event = events.recv() => self.on_event(peer, app, event).await,
                _ = pings.tick() => {
                    if last_heard.elapsed() > idle_timeout {
                        Err(peer.close(code::GOING_AWAY, "idle timeout").await)
                    } else {
                        peer.send(Message::Ping(Default::default())).await
                    }
                }
                _ = touches.tick() => {
                    touch_row(app, self.id).await;
                    Ok(())
                }
                () = shutdown.cancelled() => Err(peer.close(code::GOING_AWAY, "server restarting").await),
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    async fn on_text<S: Transport>(
        &mut self,
        peer: &mut Peer<S>,
        app: &AppState,
        text: &str,
    ) -> Result<(), End> {
        let message = match serde_json::from_str::<ClientMessage>(text) {
            Ok(message) => message,
            Err(e) => {
                let message = format!("message not understood: {e}");
                return peer
                    .send_json(&ServerMessage::Error { message: &message })
                    .await;
            }
        };
        match message {
            ClientMessage::Join { .. } => {
                peer.send_json(&ServerMessage::Error {
                    message: "this socket has joined already",
                })
                .await
            }
            ClientMessage::Change { form, seq, fields } => {
                if form != SETTINGS_FORM {
                    let message = format!("unknown form {form:?}");
                    return peer
                        .send_json(&ServerMessage::Error { message: &message })
                        .await;
                }
                let input = SettingsInput {
                    username: fields.get("username").cloned(),
                    theme: fields.get("theme").cloned(),
                };
                self.on_settings_change(peer, app, seq, input).await
            }
        }
    }

    async fn on_settings_change<S: Transport>(
        &mut self,
        peer: &mut Peer<S>,
        app: &AppState,
        seq: u64,
        input: SettingsInput,
    ) -> Result<(), End> {
        let hub = &app.live.hub;
        if seq <= hub.acked_seq(self.id, &self.page) {
            // Already committed: a replay after a reconnect. Acknowledge it again, change nothing.
            return peer
                .send_json(&ServerMessage::Ack {
                    form: SETTINGS_FORM,
                    seq,
                    errors: None,
                })
                .await;
        }
        let (change, errors) = SettingsChange::parse(&input);
        if !change.is_empty() {
            match app.store.save(self.id, change, now_millis()).await {
                Ok(saved) => {
                    if saved.version != self.version {
                        hub.publish(
                            self.id,
                            SessionEvent::SettingsChanged {
                                version: saved.version,
                                origin: self.socket_id,
                            },
                        );
                    }
                    self.saved = saved.settings;
                    self.version = saved.version;
                }
                Err(e) => {
                    // Not acknowledged: the client keeps the change and sends it again after it
                    // reconnects.
                    tracing::error!(error = %e, "live: saving settings failed");
                    return Err(peer.close(code::INTERNAL, "database unavailable").await);
                }
            }
        }
        hub.record_ack(self.id, &self.page, seq);
        self.typed_username = errors.username.as_ref().and(input.username);
        self.errors = errors;
        let errors = (!self.errors.is_empty()).then_some(&self.errors);
        peer.send_json(&ServerMessage::Ack {
            form: SETTINGS_FORM,
            seq,
            errors,
        })
        .await?;
        self.render_if_changed(peer).await
    }

    async fn on_event<S: Transport>(
        &mut self,
        peer: &mut Peer<S>,
        app: &AppState,
        event: SessionEvent,
    ) -> Result<(), End> {
        match event {
            SessionEvent::SettingsChanged { version, origin } => {
                if origin == self.socket_id || version <= self.version {
                    return Ok(());
                }
                match load(app, self.id, false).await {
                    Ok((saved, version)) => {
                        self.saved = saved;
                        self.version = version;
                        self.render_if_changed(peer).await
                    }
                    Err(()) => Err(peer.close(code::INTERNAL, "database unavailable").await),
                }
            }
            SessionEvent::Forgotten => {
                peer.send_json(&ServerMessage::Reload {
                    reason: "this browser was forgotten",
                })
                .await?;
                Err(peer.close(code::NORMAL, "session ended").await)
            }
        }
    }

    fn render(&self) -> String {
        let screen = Screen {
            view: self.view,
            saved: &self.saved,
            version: self.version,
            csrf_token: &self.csrf_token,
            form: FormState {
                typed_username: self.typed_username.as_deref(),
                errors: (!self.errors.is_empty()).then_some(&self.errors),
            },
        };
        views::body(&screen).into_string()
    }

    async fn render_if_changed<S: Transport>(&mut self, peer: &mut Peer<S>) -> Result<(), End> {
        let html = self.render();
        let digest = hash(&html);
        if digest == self.shown {
            return Ok(());
        }
        self.shown = digest;
        self.send_render(peer, &html).await
    }

    async fn send_render<S: Transport>(&self, peer: &mut Peer<S>, html: &str) -> Result<(), End> {
        peer.send_json(&ServerMessage::Render {
            version: self.version,
            theme: self.saved.theme.as_str(),
            color_scheme: views::color_scheme(self.saved.theme),
            html,
        })
        .await
    }
}

fn hash(html: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    html.hash(&mut hasher);
    hasher.finish()
}
