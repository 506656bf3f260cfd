//! One live socket, from join to close.
//!
//! The loop is generic over any `Stream + Sink` of WebSocket messages, so it does not care
//! whether the other end is a browser, a test client or an in-memory channel. It waits for a
//! join, then serves the page: saves changes (acknowledging each only after its commit), renders
//! the view again when its HTML changed, follows the session's other tabs through the hub, pings
//! an idle peer, touches the row while connected, and closes politely on shutdown.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes};
use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, MissedTickBehavior, interval_at};

use super::peer::{End, Frame, Peer, Transport, code};
use super::protocol::{ClientMessage, FieldErrors, ServerMessage};
use super::{Live, SocketPermit, SocketSlot};
use crate::clock::now_millis;
use crate::device::{Device, Handle};
use crate::limit::TokenBucket;
use crate::metrics::{Limit, Refusal, metrics};
use crate::refusals::refused;
use crate::session::{Session, SessionId};
use crate::settings::{Settings, SettingsErrors, SettingsInput};
use crate::site::presence::{Arrival, Roster};
use crate::site::room::RenderedMessage;
use crate::site::{ChangedBy, ChatPage, SessionEvent, StoreError, Subscription};
use crate::views::{
    self, ChatScreen, DevicesCard, FormState, Joined, LinkCard, Screen, View, minutes_left,
};

/// The settings form: live changes of its full state.
const SETTINGS_FORM: &str = "settings";

/// The chat composer: live posts.
const COMPOSER_FORM: &str = "composer";

mod chat;
mod join;
mod settings;
use join::join;

/// Serves one upgraded socket until it ends. `session` is the verified session of the upgrade
/// request, if its cookie was valid; `permit` the socket's place in the counts, taken before the
/// upgrade; `from` the address it came from.
pub async fn run<S: Transport>(
    socket: S,
    live: Arc<Live>,
    session: Option<Session>,
    permit: SocketPermit,
    from: IpAddr,
) {
    let mut peer = Peer::new(socket, live.config.send_timeout);
    // The join's future is boxed: it is large and lives only until the join is done, while the
    // socket's task keeps its own size for as long as the socket is open.
    let end = match Box::pin(join(&mut peer, &live, session, permit, from)).await {
        Ok(mut view) => view.serve(&mut peer, &live).await,
        Err(end) => end,
    };
    match end {
        End::Peer => tracing::debug!("live socket closed by the peer"),
        End::Closed(code, reason) => tracing::debug!(code, reason, "live socket closed"),
        End::TooSlow => {
            tracing::debug!("live socket dropped: the peer stopped reading");
            refused(Refusal::LiveTooSlow);
        }
    }
}

/// The state of a joined socket.
struct LiveView {
    id: SessionId,
    /// The session and this browser's device in it, from the upgrade request's cookie.
    session: Session,
    /// A device that joined the session while this page was open, announced until dismissed
    /// (`Some(None)`: dismissed).
    joined: Option<Option<Device>>,
    /// The client address of the upgrade request, for the limits per address.
    from: IpAddr,
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
    /// The room's new messages, on the chat view only.
    chat: Option<broadcast::Receiver<Arc<RenderedMessage>>>,
    /// This page's place in the chat's presence list, and the list's changes; on the chat view
    /// only.
    here: Option<Here>,
    /// This socket's place in the server's count of sockets.
    _slot: SocketSlot,
}

/// A chat page in the presence list.
struct Here {
    _arrival: Arrival,
    roster: watch::Receiver<Arc<Roster>>,
}

/// How many missed messages a chat page is sent one by one; past this it gets a full render.
const CATCH_UP_LIMIT: usize = 200;

impl LiveView {
    async fn serve<S: Transport>(&mut self, peer: &mut Peer<S>, live: &Live) -> End {
        let idle_timeout = live.config.idle_timeout;
        let rate = f64::from(live.config.message_rate);
        let burst = 2.0 * rate;
        let mut allowance = TokenBucket::full(burst, std::time::Instant::now());
        let mut pings = interval_at(Instant::now() + idle_timeout / 3, idle_timeout / 3);
        pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // An open socket counts as use: touch the row about once per touch window.
        let touch_every = live
            .site
            .retention()
            .touch_window
            .max(Duration::from_millis(100));
        let mut touches = interval_at(Instant::now() + touch_every, touch_every);
        touches.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let shutdown = live.shutdown.clone();

        loop {
            let step = tokio::select! {
                frame = peer.next() => {
                    last_heard = Instant::now();
                    match frame {
                        Frame::Text(_) if allowance.take(burst, rate, std::time::Instant::now()).is_err() => {
                            tracing::debug!("live socket closed: over the message rate limit");
                            refused(Refusal::LiveRate);
                            metrics().rate_limited(Limit::Live);
                            Err(peer.close(code::POLICY, "too many messages").await)
                        }
                        // What a frame or an event sets off is boxed: an idle socket's task then
                        // holds a pointer's worth for each, not the largest of their futures.
                        Frame::Text(text) => Box::pin(self.on_text(peer, live, &text)).await,
                        Frame::Alive => Ok(()),
                        Frame::Binary => Err(peer.close(code::UNSUPPORTED, "binary messages are not supported").await),
                        Frame::TooBig => Err(peer.close(code::TOO_BIG, "message too big").await),
                        Frame::Gone => Err(End::Peer),
                    }
                }
                event = self.events.recv() => Box::pin(self.on_event(peer, live, event)).await,
                frame = next_roster(&mut self.here) => peer.send(Message::Text(frame)).await,
                // A live link code ran out: the settings page stops showing it.
                () = link_expiry(live, self.id, self.view) => Box::pin(self.render_if_changed(peer, live)).await,
                posted = next_message(&mut self.chat) => match posted {
                    Ok(posted) => self.on_message(peer, live, &posted).await,
                    // Fell behind the room: what it missed is in the log (or the database).
                    Err(broadcast::error::RecvError::Lagged(_)) => Box::pin(self.catch_up(peer, live)).await,
                    Err(broadcast::error::RecvError::Closed) => Ok(()),
                },
                _ = pings.tick() => {
                    if last_heard.elapsed() > idle_timeout {
                        Err(peer.close(code::GOING_AWAY, "idle timeout").await)
                    } else {
                        peer.send(Message::Ping(Default::default())).await
                    }
                }
                _ = touches.tick() => {
                    Box::pin(live.site.touch(self.session)).await;
                    Ok(())
                }
                () = shutdown.cancelled() => Err(peer.close(code::SERVICE_RESTART, "server restarting").await),
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    async fn on_text<S: Transport>(
        &mut self,
        peer: &mut Peer<S>,
        live: &Live,
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
            ClientMessage::Change {
                form,
                seq,
                fields,
                late,
            } if form == SETTINGS_FORM => {
                let input = SettingsInput {
                    username: fields.get("username").cloned(),
                    theme: fields.get("theme").cloned(),
                };
                self.on_settings_change(peer, live, seq, input, late.as_ref())
                    .await
            }
            ClientMessage::Post {
                form,
                seq,
                nonce,
                body,
            } if form == COMPOSER_FORM && self.view == View::Chat => {
                self.on_post(peer, live, seq, &nonce, &body).await
            }
            ClientMessage::Dismiss => {
                self.joined = Some(None);
                self.render_if_changed(peer, live).await
            }
            ClientMessage::Change { form, .. } | ClientMessage::Post { form, .. } => {
                let message = format!("unknown form {form:?}");
                peer.send_json(&ServerMessage::Error { message: &message })
                    .await
            }
        }
    }

    async fn on_event<S: Transport>(
        &mut self,
        peer: &mut Peer<S>,
        live: &Live,
        event: SessionEvent,
    ) -> Result<(), End> {
        // Whatever the event (a lagged subscription hears only "read again"), a page of a
        // session or device that was ended starts over.
        if live.site.is_forgotten(self.id) || live.site.is_signed_out(self.session.device) {
            return Err(reload_forgotten(peer).await);
        }
        match event {
            SessionEvent::SettingsChanged { version, by } => {
                if by == ChangedBy::Socket(self.socket_id) || version <= self.version {
                    return Ok(());
                }
                self.reread(peer, live).await
            }
            SessionEvent::Reread => self.reread(peer, live).await,
            SessionEvent::LinkChanged => self.render_if_changed(peer, live).await,
            SessionEvent::Forgotten => Err(reload_forgotten(peer).await),
            SessionEvent::SignedOut(device) if device == self.session.device => {
                Err(reload_forgotten(peer).await)
            }
            SessionEvent::SignedOut(_) | SessionEvent::DevicesChanged => {
                self.render_if_changed(peer, live).await
            }
            SessionEvent::Joined(device) if device == self.session.device => Ok(()),
            SessionEvent::Joined(device) => {
                match live.site.device_named(self.id, Handle::of(device)).await {
                    Ok(Some(device)) => self.joined = Some(Some(device)),
                    Ok(None) => {}
                    Err(e) => return Err(peer.store_failed("reading the devices", &e).await),
                }
                self.render_if_changed(peer, live).await
            }
        }
    }

    /// Reads the settings again, and renders when they changed: a re-read of unknown cause
    /// (after lagging, or after another instance reconnected) that finds nothing new sends
    /// nothing.
    async fn reread<S: Transport>(&mut self, peer: &mut Peer<S>, live: &Live) -> Result<(), End> {
        match live.site.reread_settings(self.id).await {
            Ok((settings, version)) => {
                if version == self.version && settings == self.saved {
                    return Ok(());
                }
                self.saved = settings;
                self.version = version;
                self.render_if_changed(peer, live).await
            }
            Err(e) => Err(peer.store_failed("loading settings", &e).await),
        }
    }

    /// The page's `<body>` as it should be now, and the newest message in it.
    async fn render(&self, live: &Live) -> Result<(String, i64), StoreError> {
        let page = match self.view {
            View::Chat => live.site.chat_page(None).await?,
            View::Settings => ChatPage::default(),
        };
        let messages = page.messages;
        let newest = messages.last().map_or(0, |m| m.id);
        let roster = live.site.roster();
        // A live code shows without itself (only the page that made it has the code).
        let link = match self.view {
            View::Settings => live.site.live_link(self.id).await?,
            View::Chat => None,
        };
        let link_card = link.map(|expires_at| LinkCard {
            fresh: None,
            minutes_left: minutes_left(expires_at),
        });
        let presence = roster.list_with(self.id, &self.saved.username);
        let now = now_millis();
        let devices = match self.view {
            View::Settings => Some(live.site.devices_of(self.session).await?),
            View::Chat => None,
        };
        // The page announces the device that joined while it was open, else (on the settings
        // page) the one that joined within a day; not once dismissed.
        let joined = match &self.joined {
            Some(dismissed_or_joined) => dismissed_or_joined.as_ref(),
            None => devices.as_ref().and_then(|list| list.joined.as_ref()),
        };
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
                older: page.older,
                history: false,
                presence: Some(&presence),
            }),
            link: link_card,
            devices: devices.as_ref().map(|list| DevicesCard {
                devices: &list.devices,
                this: self.session.device,
                now,
                error: None,
            }),
            joined: joined.map(|device| Joined { device, now }),
        };
        Ok((views::body(&screen).into_string(), newest))
    }

    /// Renders the page's `<body>`, and sends it when it differs from what the page has.
    async fn render_if_changed<S: Transport>(
        &mut self,
        peer: &mut Peer<S>,
        live: &Live,
    ) -> Result<(), End> {
        let (html, newest) = match self.render(live).await {
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

/// The room's next message, or never on a view without chat.
async fn next_message(
    chat: &mut Option<broadcast::Receiver<Arc<RenderedMessage>>>,
) -> Result<Arc<RenderedMessage>, broadcast::error::RecvError> {
    match chat {
        Some(chat) => chat.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the live link code of session `id` (made on this instance) expires; never on
/// a view that does not show it, or without one.
async fn link_expiry(live: &Live, id: SessionId, view: View) {
    let left = (view == View::Settings)
        .then(|| live.site.link_expires(id))
        .flatten()
        .map(|at| at.saturating_sub(now_millis()));
    match left {
        Some(left) => {
            let left = u64::try_from(left).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(left + 1)).await;
        }
        None => std::future::pending().await,
    }
}

/// The presence list's next frame, or never on a view without chat.
async fn next_roster(here: &mut Option<Here>) -> Utf8Bytes {
    let Some(here) = here else {
        return std::future::pending().await;
    };
    if here.roster.changed().await.is_err() {
        return std::future::pending().await;
    }
    here.roster.borrow_and_update().frame().clone()
}

/// Tells the page its session was forgotten (it reloads into a fresh one), then closes.
async fn reload_forgotten<S: Transport>(peer: &mut Peer<S>) -> End {
    let told = peer
        .send_json(&ServerMessage::Reload {
            reason: "this browser was forgotten",
        })
        .await;
    match told {
        Ok(()) => peer.close(code::NORMAL, "session ended").await,
        Err(end) => end,
    }
}

async fn ack<S: Transport>(
    peer: &mut Peer<S>,
    form: &str,
    seq: u64,
    errors: Option<FieldErrors<'_>>,
) -> Result<(), End> {
    let errors = errors.filter(|e| !e.is_empty());
    peer.send_json(&ServerMessage::Ack {
        form,
        seq,
        errors,
        overtaken: BTreeMap::new(),
    })
    .await
}

fn hash(html: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    html.hash(&mut hasher);
    hasher.finish()
}
