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

use super::SocketSlot;
use super::protocol::{ClientMessage, FieldErrors, MAX_PAGE_ID_LEN, ServerMessage};
use super::pubsub::{ChatSubscription, SessionEvent, Subscription};
use crate::app::{AppState, new_nonce};
use crate::assets::LIVE_SCRIPT;
use crate::chat::RECENT_MESSAGES;
use crate::limit::TokenBucket;
use crate::metrics::{Limit, WritePath, metrics};
use crate::session::{Session, SessionId};
use crate::settings::{Settings, SettingsChange, SettingsErrors, SettingsInput};
use crate::store::{PageChange, PageSave, StoreError, now_millis};
use crate::views::{self, ChatScreen, FormState, Screen, View};

/// The largest message a client may send; a bigger one closes the socket with 1009.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// How long a closing socket waits for the peer's closing frame.
const CLOSE_WAIT: Duration = Duration::from_millis(250);

/// How long a new socket may take to send its join.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The settings form: live changes of its full state.
const SETTINGS_FORM: &str = "settings";

/// The chat composer: live posts.
const COMPOSER_FORM: &str = "composer";

/// Close codes (RFC 6455).
mod code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const UNSUPPORTED: u16 = 1003;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
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

    /// Queues a message without flushing it: the next send or flush writes both in one go.
    async fn queue_json(&mut self, message: &ServerMessage<'_>) -> Result<(), End> {
        let message = Message::text(message.to_json());
        match timeout(self.send_timeout, self.socket.feed(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Peer),
            Err(_) => Err(End::TooSlow),
        }
    }

    /// Writes whatever is queued.
    async fn flush(&mut self) -> Result<(), End> {
        match timeout(self.send_timeout, self.socket.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Peer),
            Err(_) => Err(End::TooSlow),
        }
    }

    /// The database failed: tell the person in words, then close with 1011 so the client
    /// reconnects (with backoff) and re-sends what was not acknowledged.
    async fn store_failed(&mut self, doing: &str, error: &StoreError) -> End {
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
    async fn close(&mut self, code: u16, reason: &'static str) -> End {
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

/// Serves one upgraded socket until it ends. `session` is the verified session of the upgrade
/// request, if its cookie was valid.
pub async fn run<S: Transport>(socket: S, app: AppState, session: Option<SessionId>) {
    let mut peer = Peer {
        socket,
        send_timeout: app.live.config.send_timeout,
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
    /// The nonce in the page's non-JavaScript composer; fixed per socket so renders compare.
    nonce: String,
    saved: Settings,
    version: i64,
    /// A refused username, shown back in its field.
    typed_username: Option<String>,
    errors: SettingsErrors,
    /// A hash of the last `<body>` HTML this page has, to send nothing when nothing changed.
    shown: u64,
    /// The newest chat message the page has.
    last_message: i64,
    events: Subscription,
    /// New-message events, on the chat view only.
    chat: Option<ChatSubscription>,
    /// This socket's place in the server's count of sockets.
    _slot: SocketSlot,
}

/// How many missed messages a chat page is sent one by one; past this it gets a full render.
const CATCH_UP_LIMIT: usize = 200;

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
        last_message,
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

    // Subscribe before reading, so a change committed meanwhile is heard (and merely re-read).
    let events = app.live.hub.subscribe(id);
    let Some(slot) = app.live.admit() else {
        tracing::warn!(
            limit = app.live.config.max_sockets,
            "live socket refused: the server is full"
        );
        drop(events);
        return Err(peer
            .close(code::TRY_AGAIN_LATER, "the server is full")
            .await);
    };
    if app.live.hub.sockets_of(id) > app.live.config.max_sockets_per_session {
        tracing::info!("live socket refused: too many open pages for one browser");
        drop((slot, events));
        return Err(peer
            .close(
                code::TRY_AGAIN_LATER,
                "too many open pages for this browser",
            )
            .await);
    }
    let chat = (view == View::Chat).then(|| app.live.hub.subscribe_chat());
    let session = Session { id, is_new: false };
    let (saved, current) = match app.settings_for(session).await {
        Ok(found) => found,
        Err(e) => return Err(peer.store_failed("joining", &e).await),
    };
    let mut live = LiveView {
        id,
        socket_id: app.live.next_socket_id(),
        view,
        page,
        csrf_token: app.keys.csrf_token(id),
        nonce: new_nonce(),
        saved,
        version: current,
        typed_username: None,
        errors: SettingsErrors::default(),
        shown: 0,
        last_message: last_message.max(0),
        events,
        chat,
        _slot: slot,
    };
    peer.send_json(&ServerMessage::Joined).await?;
    if current == version {
        // The page shows this state already: remember its HTML, send nothing.
        match live.render(app).await {
            Ok((html, _)) => live.shown = hash(&html),
            Err(e) => return Err(peer.store_failed("rendering", &e).await),
        }
    } else {
        live.render_if_changed(peer, app).await?;
    }
    if live.chat.is_some() {
        live.catch_up(peer, app).await?;
    }
    Ok(live)
}

impl LiveView {
    async fn serve<S: Transport>(&mut self, peer: &mut Peer<S>, app: &AppState) -> End {
        let idle_timeout = app.live.config.idle_timeout;
        let rate = f64::from(app.live.config.message_rate);
        let burst = 2.0 * rate;
        let mut allowance = TokenBucket::full(burst, std::time::Instant::now());
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
                        Frame::Text(_) if allowance.take(burst, rate, std::time::Instant::now()).is_err() => {
                            tracing::info!("live socket closed: over the message rate limit");
                            metrics().rate_limited(Limit::Live);
                            Err(peer.close(code::POLICY, "too many messages").await)
                        }
                        Frame::Text(text) => self.on_text(peer, app, &text).await,
                        Frame::Alive => Ok(()),
                        Frame::Binary => Err(peer.close(code::UNSUPPORTED, "binary messages are not supported").await),
                        Frame::TooBig => Err(peer.close(code::TOO_BIG, "message too big").await),
                        Frame::Gone => Err(End::Peer),
                    }
                }
                event = self.events.recv() => self.on_event(peer, app, event).await,
                newest = next_message(&mut self.chat) => {
                    if newest > self.last_message {
                        self.catch_up(peer, app).await
                    } else {
                        Ok(())
                    }
                }
                _ = pings.tick() => {
                    if last_heard.elapsed() > idle_timeout {
                        Err(peer.close(code::GOING_AWAY, "idle timeout").await)
                    } else {
                        peer.send(Message::Ping(Default::default())).await
                    }
                }
                _ = touches.tick() => {
                    metrics().touched();
                    if let Err(e) = app.store.touch(self.id, now_millis()).await {
                        metrics().database_error(&e);
                        tracing::warn!(error = %e, "live: touching the session failed");
                    }
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
            ClientMessage::Change { form, seq, fields } if form == SETTINGS_FORM => {
                let input = SettingsInput {
                    username: fields.get("username").cloned(),
                    theme: fields.get("theme").cloned(),
                };
                self.on_settings_change(peer, app, seq, input).await
            }
            ClientMessage::Post {
                form,
                seq,
                nonce,
                body,
            } if form == COMPOSER_FORM && self.view == View::Chat => {
                self.on_post(peer, app, seq, &nonce, &body).await
            }
            ClientMessage::Change { form, .. } | ClientMessage::Post { form, .. } => {
                let message = format!("unknown form {form:?}");
                peer.send_json(&ServerMessage::Error { message: &message })
                    .await
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
        let (change, errors) = SettingsChange::parse(&input);
        if seq <= hub.acked_seq(self.id, &self.page, SETTINGS_FORM) {
            // Already committed: a replay after a reconnect. Acknowledge it again, change
            // nothing; the fields it refused the first time are refused again (checking is pure).
            return ack(peer, SETTINGS_FORM, seq, Some(refused_fields(&errors))).await;
        }
        if !change.is_empty() {
            let from = PageChange {
                page: self.page.clone(),
                form: SETTINGS_FORM,
                seq,
            };
            match app
                .store
                .save_from_page(self.id, change, now_millis(), from)
                .await
            {
                Ok(PageSave::Replayed) => {
                    // Applied before, by another instance or before a restart, and its
                    // acknowledgement lost: acknowledge it again, change nothing.
                    hub.record_ack(self.id, &self.page, SETTINGS_FORM, seq);
                    return ack(peer, SETTINGS_FORM, seq, Some(refused_fields(&errors))).await;
                }
                Ok(PageSave::Forgotten) => {
                    // Forgotten in another tab (or on another instance): this page must start
                    // over with a new session, and the id's cookie is refused from now on.
                    app.forgotten.insert(self.id, now_millis());
                    peer.send_json(&ServerMessage::Reload {
                        reason: "this browser was forgotten",
                    })
                    .await?;
                    return Err(peer.close(code::NORMAL, "session ended").await);
                }
                Ok(PageSave::Saved(saved)) => {
                    metrics().settings_written(WritePath::Live);
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
                    return Err(peer.store_failed("saving settings", &e).await);
                }
            }
        }
        hub.record_ack(self.id, &self.page, SETTINGS_FORM, seq);
        self.typed_username = errors.username.as_ref().and(input.username);
        self.errors = errors;
        let refused = refused_fields(&self.errors);
        // The ack and the render it brings go out in one write.
        let errors = (!refused.is_empty()).then_some(refused);
        peer.queue_json(&ServerMessage::Ack {
            form: SETTINGS_FORM,
            seq,
            errors,
        })
        .await?;
        self.render_if_changed(peer, app).await?;
        peer.flush().await
    }

    async fn on_post<S: Transport>(
        &mut self,
        peer: &mut Peer<S>,
        app: &AppState,
        seq: u64,
        nonce: &str,
        body: &str,
    ) -> Result<(), End> {
        let hub = &app.live.hub;
        if seq <= hub.acked_seq(self.id, &self.page, COMPOSER_FORM) {
            return ack(peer, COMPOSER_FORM, seq, None).await;
        }
        match app.post_message(self.id, body, nonce).await {
            Ok(Ok(_)) => {
                hub.record_ack(self.id, &self.page, COMPOSER_FORM, seq);
                ack(peer, COMPOSER_FORM, seq, None).await
            }
            Ok(Err(refusal)) => {
                let refused = FieldErrors::from([("body", refusal.error().message())]);
                ack(peer, COMPOSER_FORM, seq, Some(refused)).await
            }
            Err(e) => Err(peer.store_failed("posting a message", &e).await),
        }
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
                match app.store.load(self.id).await {
                    Ok(stored) => {
                        let stored = stored.unwrap_or_default();
                        // A re-read of unknown cause (after lagging, or after another instance
                        // reconnected) that finds nothing new sends nothing.
                        if stored.version == self.version && stored.settings == self.saved {
                            return Ok(());
                        }
                        self.saved = stored.settings;
                        self.version = stored.version;
                        self.render_if_changed(peer, app).await
                    }
                    Err(e) => Err(peer.store_failed("loading settings", &e).await),
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

    /// Sends the page the messages stored after the newest one it has: one by one when they
    /// are few, as a full render when the page missed too many.
    async fn catch_up<S: Transport>(
        &mut self,
        peer: &mut Peer<S>,
        app: &AppState,
    ) -> Result<(), End> {
        let missed = match app
            .store
            .messages_after(self.last_message, CATCH_UP_LIMIT)
            .await
        {
            Ok(missed) => missed,
            Err(e) => return Err(peer.store_failed("loading messages", &e).await),
        };
        let Some(newest) = missed.last().map(|m| m.id) else {
            return Ok(());
        };
        if missed.len() == CATCH_UP_LIMIT {
            self.shown = 0;
            return self.render_if_changed(peer, app).await;
        }
        let mut html = String::new();
        for message in &missed {
            html.push_str(&views::message_item(message, self.id).into_string());
        }
        self.last_message = newest;
        peer.send_json(&ServerMessage::Messages {
            html: &html,
            last: newest,
        })
        .await
    }

    /// The page's `<body>` as it should be now, and the newest message in it.
    async fn render(&self, app: &AppState) -> Result<(String, i64), StoreError> {
        let messages = match self.view {
            View::Chat => app.store.recent_messages(RECENT_MESSAGES).await?,
            View::Settings => Vec::new(),
        };
        let newest = messages.last().map_or(0, |m| m.id);
        let screen = Screen {
            view: self.view,
            saved: &self.saved,
            version: self.version,
            csrf_token: &self.csrf_token,
            form: FormState {
                typed_username: self.typed_username.as_deref(),
                errors: (!self.errors.is_empty()).then_some(&self.errors),
            },
            chat: (self.view == View::Chat).then_some(ChatScreen {
                messages: &messages,
                viewer: self.id,
                draft: "",
                error: None,
                nonce: &self.nonce,
            }),
        };
        Ok((views::body(&screen).into_string(), newest))
    }

    /// Renders the page's `<body>`, and sends it when it differs from what the page has.
    async fn render_if_changed<S: Transport>(
        &mut self,
        peer: &mut Peer<S>,
        app: &AppState,
    ) -> Result<(), End> {
        let (html, newest) = match self.render(app).await {
            Ok(rendered) => rendered,
            Err(e) => return Err(peer.store_failed("rendering", &e).await),
        };
        let digest = hash(&html);
        if digest == self.shown {
            return Ok(());
        }
        self.shown = digest;
        // The page's log is replaced by this render's: it now has everything up to its newest.
        self.last_message = self.last_message.max(newest);
        peer.send_json(&ServerMessage::Render {
            version: self.version,
            theme: self.saved.theme.as_str(),
            color_scheme: views::color_scheme(self.saved.theme),
            html: &html,
        })
        .await
    }
}

/// The next new-message event, or never on a view without chat.
async fn next_message(chat: &mut Option<ChatSubscription>) -> i64 {
    match chat {
        Some(chat) => chat.recv().await,
        None => std::future::pending().await,
    }
}

/// The refused fields of a settings change, as an ack names them.
fn refused_fields(errors: &SettingsErrors) -> FieldErrors<'_> {
    let mut refused = FieldErrors::new();
    if let Some(e) = &errors.username {
        refused.insert("username", e.message());
    }
    if let Some(e) = &errors.theme {
        refused.insert("theme", e.message());
    }
    refused
}

async fn ack<S: Transport>(
    peer: &mut Peer<S>,
    form: &str,
    seq: u64,
    errors: Option<FieldErrors<'_>>,
) -> Result<(), End> {
    let errors = errors.filter(|e| !e.is_empty());
    peer.send_json(&ServerMessage::Ack { form, seq, errors })
        .await
}

fn hash(html: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    html.hash(&mut hasher);
    hasher.finish()
}
