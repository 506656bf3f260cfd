//! The start of a socket's life: the join message, checked (session, CSRF token, page id, the
//! client's build), then the socket counted in (server and per-session limits), subscribed, and
//! brought up to date with what the page shows.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::time::timeout;

use super::{JOIN_TIMEOUT, LiveView, hash};
use crate::assets::LIVE_SCRIPT;
use crate::chat::new_nonce;
use crate::live::Live;
use crate::live::peer::{End, Frame, Peer, Transport, code};
use crate::live::protocol::{ClientMessage, MAX_PAGE_ID_LEN, ServerMessage};
use crate::session::{Session, SessionId};
use crate::settings::SettingsErrors;
use crate::views::View;

/// Waits for the join and checks it; the joined socket's state, or how it ended.
pub(super) async fn join<S: Transport>(
    peer: &mut Peer<S>,
    live: &Arc<Live>,
    session: Option<SessionId>,
    from: IpAddr,
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
    if !live.site.keys.verify_csrf(id, &csrf) {
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
    let events = live.site.hub.subscribe(id);
    let Some(slot) = live.admit() else {
        tracing::warn!(
            limit = live.config.max_sockets,
            "live socket refused: the server is full"
        );
        drop(events);
        return Err(peer
            .close(code::TRY_AGAIN_LATER, "the server is full")
            .await);
    };
    if live.site.hub.sockets_of(id) > live.config.max_sockets_per_session {
        tracing::info!("live socket refused: too many open pages for one browser");
        drop((slot, events));
        return Err(peer
            .close(
                code::TRY_AGAIN_LATER,
                "too many open pages for this browser",
            )
            .await);
    }
    let chat = (view == View::Chat).then(|| live.site.room.subscribe());
    let session = Session { id, is_new: false };
    let (saved, current) = match live.site.settings_for(session).await {
        Ok(found) => found,
        Err(e) => return Err(peer.store_failed("joining", &e).await),
    };
    let mut view = LiveView {
        id,
        from,
        socket_id: live.next_socket_id(),
        view,
        page,
        csrf_token: live.site.keys.csrf_token(id),
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
    Ok(view)
}
