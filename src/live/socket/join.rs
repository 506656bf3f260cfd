//! The start of a socket's life: the join message, within `--live-join-timeout`, checked
//! (session, CSRF token, page id, the client's build), then the socket counted in (the
//! per-session limit; the server's and the address's were taken before the upgrade),
//! subscribed, and brought up to date with what the page shows. A refused socket gives its place
//! back before its closing handshake, so the next one may take it at once.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::time::timeout;

use super::{Here, LiveView, hash};
use crate::assets::LIVE_SCRIPT;
use crate::chat::new_nonce;
use crate::live::peer::{End, Frame, Peer, Transport, code};
use crate::live::protocol::{ClientMessage, MAX_PAGE_ID_LEN, ServerMessage};
use crate::live::{Live, SocketPermit};
use crate::metrics::Refusal;
use crate::refusals::refused;
use crate::session::Session;
use crate::settings::SettingsErrors;
use crate::views::View;

/// What a page says of itself in its join message, once checked.
struct Joining {
    session: Session,
    view: View,
    page: String,
    /// The settings version the page shows.
    version: i64,
    /// The newest chat message the page shows.
    last_message: i64,
    /// The presence list's version the page shows.
    presence: u64,
}

/// Waits for the join and checks it; the joined socket's state, or how it ended. The steps:
/// read the join, check it, count the socket in, then bring the page up to date.
pub(super) async fn join<S: Transport>(
    peer: &mut Peer<S>,
    live: &Arc<Live>,
    session: Option<Session>,
    permit: SocketPermit,
    from: IpAddr,
) -> Result<LiveView, End> {
    let text = match read_join(peer, live).await {
        Ok(text) => text,
        Err(None) => return Err(End::Peer),
        Err(Some((code, reason))) => return Err(refuse(peer, permit, code, reason).await),
    };
    let joining = match check(&text, session, live) {
        Ok(joining) => joining,
        Err(Refused::Close(code, reason)) => return Err(refuse(peer, permit, code, reason).await),
        Err(Refused::Outdated) => {
            drop(permit);
            peer.send_json(&ServerMessage::Reload {
                reason: "the server runs a newer version of this page",
            })
            .await?;
            return Err(peer.close(code::NORMAL, "reload").await);
        }
    };
    let mut view = match count_in(peer, live, &joining, permit, from).await {
        Ok(view) => view,
        Err(end) => return Err(end),
    };
    let restart_spread_ms =
        u64::try_from(live.config.reconnect_spread.as_millis()).unwrap_or(u64::MAX);
    peer.send_json(&ServerMessage::Joined { restart_spread_ms })
        .await?;
    bring_up_to_date(&mut view, peer, live, &joining).await?;
    Ok(view)
}

/// The join message's text, within `--live-join-timeout`; or the close code and reason to
/// refuse the socket with (`None`: the peer left).
async fn read_join<S: Transport>(
    peer: &mut Peer<S>,
    live: &Live,
) -> Result<String, Option<(u16, &'static str)>> {
    match timeout(live.config.join_timeout, peer.next()).await {
        Err(_) => {
            tracing::debug!("closed a live socket that sent no join in time");
            refused(Refusal::JoinTimeout);
            Err(Some((code::POLICY, "no join message")))
        }
        Ok(Frame::Text(text)) => Ok(text),
        Ok(Frame::TooBig) => Err(Some((code::TOO_BIG, "message too big"))),
        Ok(Frame::Binary) => Err(Some((
            code::UNSUPPORTED,
            "binary messages are not supported",
        ))),
        Ok(Frame::Gone) => Err(None),
        Ok(Frame::Alive) => Err(Some((code::POLICY, "the first message must be a join"))),
    }
}

/// Why a join was refused.
enum Refused {
    /// Closed with this code and reason.
    Close(u16, &'static str),
    /// The page runs an older client script: it must reload.
    Outdated,
}

/// Checks the join: a join message, a valid session cookie on the upgrade, this session's CSRF
/// token, a page id of a sane length, the client script of this build.
fn check(text: &str, session: Option<Session>, live: &Live) -> Result<Joining, Refused> {
    let Ok(ClientMessage::Join {
        view,
        csrf,
        build,
        page,
        version,
        last_message,
        presence,
    }) = serde_json::from_str(text)
    else {
        return Err(Refused::Close(
            code::POLICY,
            "the first message must be a join",
        ));
    };
    let Some(session) = session else {
        let reason = "no valid session cookie; reload the page";
        return Err(Refused::Close(code::POLICY, reason));
    };
    if !live.site.verify_csrf(session.id, &csrf) {
        let reason = "invalid CSRF token; reload the page";
        return Err(Refused::Close(code::POLICY, reason));
    }
    if page.is_empty() || page.len() > MAX_PAGE_ID_LEN {
        return Err(Refused::Close(code::POLICY, "invalid page id"));
    }
    if build != LIVE_SCRIPT.hash() {
        return Err(Refused::Outdated);
    }
    Ok(Joining {
        session,
        view,
        page,
        version,
        last_message: last_message.max(0),
        presence,
    })
}

/// Counts the socket in (the per-session limit), subscribes it to its session's events and, on
/// the chat, to the room and the presence list; reads what the page is to show.
async fn count_in<S: Transport>(
    peer: &mut Peer<S>,
    live: &Live,
    joining: &Joining,
    permit: SocketPermit,
    from: IpAddr,
) -> Result<LiveView, End> {
    let session = joining.session;
    let id = session.id;
    // Subscribe before reading, so a change committed meanwhile is heard (and merely re-read).
    let events = live.site.subscribe(id);
    if live.site.sockets_of(id) > live.config.max_sockets_per_session {
        tracing::debug!("live socket refused: too many open pages for one browser");
        refused(Refusal::SocketsPerSession);
        drop(events);
        let reason = "too many open pages for this browser";
        return Err(refuse(peer, permit, code::TRY_AGAIN_LATER, reason).await);
    }
    let slot = permit.joined();
    let on_chat = joining.view == View::Chat;
    let chat = on_chat.then(|| live.site.room_feed());
    let (saved, current) = match live.site.settings_for(session).await {
        Ok(found) => found,
        Err(e) => return Err(peer.store_failed("joining", &e).await),
    };
    // Counted in the presence list; the page gets the list now if it shows an older one.
    let here = if on_chat {
        let mut roster = live.site.watch_roster();
        if roster.borrow().version != joining.presence {
            roster.mark_changed();
        }
        Some(Here {
            _arrival: live.site.arrive(session, &saved.username, from).await,
            roster,
        })
    } else {
        None
    };
    Ok(LiveView {
        id,
        session,
        joined: None,
        from,
        socket_id: live.next_socket_id(),
        view: joining.view,
        page: joining.page.clone(),
        csrf_token: live.site.csrf_token(id),
        nonce: new_nonce(),
        saved,
        version: current,
        typed_username: None,
        errors: SettingsErrors::default(),
        shown: 0,
        last_message: joining.last_message,
        events,
        chat,
        here,
        _slot: slot,
    })
}

/// Sends the page what changed since it was rendered: nothing when it shows this version
/// already (its HTML is remembered), else a render; and on the chat, the messages it missed.
async fn bring_up_to_date<S: Transport>(
    view: &mut LiveView,
    peer: &mut Peer<S>,
    live: &Live,
    joining: &Joining,
) -> Result<(), End> {
    if view.version == joining.version {
        match view.render(live).await {
            Ok((html, _)) => view.shown = hash(&html),
            Err(e) => return Err(peer.store_failed("rendering", &e).await),
        }
    } else {
        view.render_if_changed(peer, live).await?;
    }
    if view.chat.is_some() {
        view.catch_up(peer, live).await?;
    }
    Ok(())
}

/// Gives the socket's place back, then closes it with `code` and `reason`.
async fn refuse<S: Transport>(
    peer: &mut Peer<S>,
    permit: SocketPermit,
    code: u16,
    reason: &'static str,
) -> End {
    drop(permit);
    peer.close(code, reason).await
}
