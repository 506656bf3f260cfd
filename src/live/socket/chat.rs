//! The chat view of a socket: posting from the composer, the room's messages as they come, and
//! catching up with what the page missed.

use axum::extract::ws::Message;
use tokio::sync::broadcast::error::TryRecvError;

use super::{CATCH_UP_LIMIT, COMPOSER_FORM, LiveView, ack};
use crate::live::Live;
use crate::live::peer::{End, Peer, Transport};
use crate::live::protocol::{FieldErrors, ServerMessage};
use crate::site::room::RenderedMessage;
use crate::site::{Missed, PostError, Via};
use crate::views;

impl LiveView {
    pub(super) async fn on_post<S: Transport>(
        &mut self,
        peer: &mut Peer<S>,
        live: &Live,
        seq: u64,
        nonce: &str,
        body: &str,
    ) -> Result<(), End> {
        let via = Via::Page {
            page: &self.page,
            form: COMPOSER_FORM,
            seq,
            socket: self.socket_id,
        };
        match live
            .site
            .post_message(self.session, self.from, body, nonce, via)
            .await
        {
            Ok(Some(message)) => {
                let acked = ack(peer, COMPOSER_FORM, seq, None).await;
                // The room takes it now, in this task: the next frame of this page waits for
                // that, so a page posting flat out is paced by the fan-out.
                live.site.announce(message).await;
                acked
            }
            // Acknowledged before: a resend after a reconnect.
            Ok(None) => ack(peer, COMPOSER_FORM, seq, None).await,
            Err(PostError::Invalid(refusal) | PostError::TooFast(refusal)) => {
                let refused = FieldErrors::from([("body", refusal.message())]);
                ack(peer, COMPOSER_FORM, seq, Some(refused)).await
            }
            Err(PostError::Store(e)) => Err(peer.store_failed("posting a message", &e).await),
            // Not acknowledged: the page reloads into its new session.
            Err(PostError::Ended) => Err(super::reload_forgotten(peer).await),
        }
    }

    /// A message the room took, and every other one the room has already sent this page: each
    /// written as it was rendered, once for every page, unless the page has it already, and all of
    /// them in one write. A page that fell behind a busy room so catches up with one system call
    /// instead of one per message, and the busier the room, the fewer writes each message costs.
    pub(super) async fn on_message<S: Transport>(
        &mut self,
        peer: &mut Peer<S>,
        live: &Live,
        posted: &RenderedMessage,
    ) -> Result<(), End> {
        let mut queued = self.queue_message(peer, posted).await?;
        for _ in 1..DRAIN_AT_MOST {
            let Some(chat) = &mut self.chat else {
                break;
            };
            match chat.try_recv() {
                Ok(next) => queued |= self.queue_message(peer, &next).await?,
                Err(TryRecvError::Lagged(_)) => {
                    if queued {
                        peer.flush().await?;
                    }
                    return Box::pin(self.catch_up(peer, live)).await;
                }
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        if queued { peer.flush().await } else { Ok(()) }
    }

    /// Queues `posted` for the page unless it has it; whether it did.
    async fn queue_message<S: Transport>(
        &mut self,
        peer: &mut Peer<S>,
        posted: &RenderedMessage,
    ) -> Result<bool, End> {
        if posted.message.id <= self.last_message {
            return Ok(false);
        }
        self.last_message = posted.message.id;
        peer.queue(Message::Text(posted.frame_for(self.id).clone()))
            .await?;
        Ok(true)
    }

    /// Sends the page the messages stored after the newest one it has: from the room's log, or,
    /// when the page is older than the log, from the database (one by one when they are few, as
    /// a full render when the page missed too many).
    pub(super) async fn catch_up<S: Transport>(
        &mut self,
        peer: &mut Peer<S>,
        live: &Live,
    ) -> Result<(), End> {
        let missed = match live.site.catch_up(self.last_message, CATCH_UP_LIMIT).await {
            Ok(missed) => missed,
            Err(e) => return Err(peer.store_failed("loading messages", &e).await),
        };
        let items = match missed {
            Missed::Logged(missed) => {
                if let [one] = missed.as_slice() {
                    self.last_message = one.message.id;
                    return peer
                        .send(Message::Text(one.frame_for(self.id).clone()))
                        .await;
                }
                missed
                    .iter()
                    .map(|p| (p.message.id, p.html_for(self.id).to_owned()))
                    .collect::<Vec<_>>()
            }
            Missed::Stored(missed) => missed
                .iter()
                .map(|m| (m.id, views::message_item(m, self.id).into_string()))
                .collect(),
            Missed::TooMany => {
                self.shown = 0;
                return self.render_if_changed(peer, live).await;
            }
        };
        let Some(&(newest, _)) = items.last() else {
            return Ok(());
        };
        self.last_message = newest;
        send_batches(peer, items).await
    }
}

/// The most messages one write to a page carries when it fell behind the room: the rest wait for
/// the next turn of its loop, so one page's catch-up does not hold its task for long.
const DRAIN_AT_MOST: usize = 64;

/// The most HTML one catch-up frame carries; more goes in the frames after it. A frame must fit
/// the socket's write buffer whole ([`crate::live::MAX_WRITE_BUFFER`]), and a page that missed a few
/// hundred long messages would exceed it in one.
const BATCH_BYTES: usize = 32 * 1024;

/// Sends `items` (id and `<li>`, in id order) as `messages` frames of about [`BATCH_BYTES`] each.
async fn send_batches<S: Transport>(
    peer: &mut Peer<S>,
    items: Vec<(i64, String)>,
) -> Result<(), End> {
    let mut html = String::new();
    let mut items = items.into_iter().peekable();
    while let Some((id, item)) = items.next() {
        html.push_str(&item);
        if html.len() >= BATCH_BYTES || items.peek().is_none() {
            peer.send_json(&ServerMessage::Messages {
                html: &html,
                last: id,
            })
            .await?;
            html.clear();
        }
    }
    Ok(())
}
