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
use crate::session::{Session, SessionId};
use crate::settings::SettingsErrors;
use crate::views::View;

/// Waits for the join and checks it; the joined socket's state, or how it ended.
pub(super) async fn join<S: Transport>(
    peer: &mut Peer<S>,
    live: &Arc<Live>,
    session: Option<SessionId>,
    permit: SocketPermit,
    from: IpAddr,
) -> Result<LiveView, End> {
    let text = match timeout(live.config.join_timeout, peer.next()).await {
        Err(_) => {
            tracing::debug!("closed a live socket that sent no join in time");
            refused(Refusal::JoinTimeout);
            return Err(refuse(peer, permit, code::POLICY, "no join message").await);
        }
        Ok(Frame::Text(text)) => text,
        Ok(Frame::TooBig) => {
            return Err(refuse(peer, permit, code::TOO_BIG, "message too big").await);
        }
        Ok(Frame::Binary) => {
            let reason = "binary messages are not supported";
            return Err(refuse(peer, permit, code::UNSUPPORTED, reason).await);
        }
        Ok(Frame::Gone) => return Err(End::Peer),
        Ok(Frame::Alive) => {
            let reason = "the first message must be a join";
            return Err(refuse(peer, permit, code::POLICY, reason).await);
        }
    };
    let Ok(ClientMessage::Join {
        view,
        csrf,
        build,
        page,
        version,
        last_message,
        presence,
    }) = serde_json::from_str(&text)
    else {
        let reason = "the first message must be a join";
        return Err(refuse(peer, permit, code::POLICY, reason).await);
    };
    let Some(id) = session else {
        let reason = "no valid session cookie; reload the page";
        return Err(refuse(peer, permit, code::POLICY, reason).await);
    };
    if !live.site.keys.verify_csrf(id, &csrf) {
        let reason = "invalid CSRF token; reload the page";
        return Err(refuse(peer, permit, code::POLICY, reason).await);
    }
    if page.is_empty() || page.len() > MAX_PAGE_ID_LEN {
        return Err(refuse(peer, permit, code::POLICY, "invalid page id").await);
    }
    if build != LIVE_SCRIPT.hash() {
        drop(permit);
        peer.send_json(&ServerMessage::Reload {
            reason: "the server runs a newer version of this page",
        })
        .await?;
        return Err(peer.close(code::NORMAL, "reload").await);
    }

    // Subscribe before reading, so a change committed meanwhile is heard (and merely re-read).
    let events = live.site.hub.subscribe(id);
    if live.site.hub.sockets_of(id) > live.config.max_sockets_per_session {
        tracing::debug!("live socket refused: too many open pages for one browser");
        refused(Refusal::SocketsPerSession);
        drop(events);
        let reason = "too many open pages for this browser";
        return Err(refuse(peer, permit, code::TRY_AGAIN_LATER, reason).await);
    }
    let slot = permit.joined();
    let chat = (view == View::Chat).then(|| live.site.room.subscribe());
    let session = Session { id, is_new: false };
    let (saved, current) = match live.site.settings_for(session).await {
        Ok(found) => found,
        Err(e) => return Err(peer.store_failed("joining", &e).await),
    };
    // Counted in the presence list; the page gets the list now if it shows an older one.
    let here = (view == View::Chat).then(|| {
        let mut roster = live.site.presence.watch();
        if roster.borrow().version != presence {
            roster.mark_changed();
        }
        Here {
            _arrival: live.site.presence.arrive(id, &saved.username),
            roster,
        }
    });
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
        here,
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
