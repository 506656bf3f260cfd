//! The chat page: `GET /` (and its older pages) and `POST /messages`.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::Markup;
use serde::Deserialize;

use super::{Form, check_csrf, ended};
use crate::chat::new_nonce;
use crate::http::client::ClientAddr;
use crate::http::error::AppError;
use crate::metrics::{Page, metrics};
use crate::session::Session;
use crate::settings::FieldError;
use crate::site::{PostError, Site, Via};
use crate::views::{self, ChatScreen, FormState, Screen, View};

/// The chat's query: `?before=ID` asks for the older page that ends before message `ID`.
#[derive(Debug, Default, Deserialize)]
pub struct ChatQuery {
    before: Option<i64>,
    /// A message the browser was just told was posted (the redirect after a post names it): the
    /// page shows it even from an instance that has not heard of it yet.
    seen: Option<i64>,
}

/// `GET /`: the chat room, with the last messages and the composer on the first render; with
/// `?before=ID`, an older page of it (a plain page, no composer), which works without JavaScript.
pub async fn home(
    State(site): State<Site>,
    session: Session,
    Query(query): Query<ChatQuery>,
) -> Result<Markup, AppError> {
    metrics().page_view(Page::Chat);
    if let (Some(seen), None) = (query.seen, query.before) {
        site.show_posted(seen).await?;
    }
    chat_page(&site, session, "", None, query.before).await
}

/// The chat page, with `draft` in the composer and `error` next to it; or, `before` a message, an
/// older page of it.
async fn chat_page(
    site: &Site,
    session: Session,
    draft: &str,
    error: Option<&FieldError>,
    before: Option<i64>,
) -> Result<Markup, AppError> {
    let (saved, version) = site.settings_for_request(session).await?;
    let page = site.chat_page(before).await?;
    let roster = site.roster();
    let presence = roster.list_with(session.id, &saved.username);
    Ok(views::document(&Screen {
        view: View::Chat,
        saved: &saved,
        version,
        csrf_token: &site.csrf_token(session.id),
        form: FormState::default(),
        chat: Some(ChatScreen {
            messages: &page.messages,
            viewer: session.id,
            draft,
            error,
            nonce: &new_nonce(),
            older: page.older,
            history: before.is_some(),
            presence: before.is_none().then_some(&presence),
        }),
        link: None,
        devices: None,
        joined: None,
    }))
}

/// The chat composer as posted.
#[derive(Debug, Deserialize)]
pub struct MessageForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    nonce: String,
}

/// `POST /messages`: posts a chat message, then `303` back to the chat. A refused message comes
/// back in the composer with the reason: `422` when it is invalid, `429` when too many were sent.
pub async fn post_message(
    State(site): State<Site>,
    session: Session,
    ClientAddr(from): ClientAddr,
    Form(form): Form<MessageForm>,
) -> Result<Response, AppError> {
    check_csrf(&site, session, &form.csrf)?;
    let posted = site
        .post_message(session, from, &form.body, &form.nonce, Via::Form)
        .await;
    let (status, refusal) = match posted {
        // The next page names the message, so whichever instance serves it shows it.
        Ok(Some(message)) => {
            return Ok(Redirect::to(&format!("/?seen={}", message.id)).into_response());
        }
        Ok(None) => return Ok(Redirect::to("/").into_response()),
        Err(PostError::Invalid(refusal)) => (StatusCode::UNPROCESSABLE_ENTITY, refusal),
        Err(PostError::TooFast(refusal)) => (StatusCode::TOO_MANY_REQUESTS, refusal),
        Err(PostError::Store(e)) => return Err(e.into()),
        // Never a redirect for a message that went nowhere: the browser starts over.
        Err(PostError::Ended) => {
            let sentence = "Not sent: this browser was signed out or forgotten from another tab \
                            or device while the message was on its way. It now has a new, \
                            empty session.";
            return Ok(ended(session, sentence));
        }
    };
    let page = chat_page(&site, session, &form.body, Some(&refusal), None).await?;
    Ok((status, page).into_response())
}
