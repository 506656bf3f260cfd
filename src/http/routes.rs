//! The HTTP handlers. Each one is thin: it reads the session and the input, asks the site, and
//! renders a view.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form, Json};
use maud::Markup;
use serde::Deserialize;

use super::client::ClientAddr;
use super::error::AppError;
use super::session::ReplaceSession;
use crate::chat::new_nonce;
use crate::clock::now_millis;
use crate::hub::SessionEvent;
use crate::metrics::{Page, WritePath, metrics};
use crate::session::{Session, SessionId};
use crate::settings::{FieldError, Settings, SettingsChange, SettingsInput};
use crate::site::{PostError, Shown, Site};
use crate::store::{Saved, SessionData};
use crate::views::{self, ChatScreen, FormState, Screen, View};

/// The chat's query: `?before=ID` asks for the older page that ends before message `ID`.
#[derive(Debug, Default, Deserialize)]
pub struct ChatQuery {
    before: Option<i64>,
}

/// `GET /`: the chat room, with the last messages and the composer on the first render; with
/// `?before=ID`, an older page of it (a plain page, no composer), which works without JavaScript.
pub async fn home(
    State(app): State<Site>,
    session: Session,
    Query(query): Query<ChatQuery>,
) -> Result<Markup, AppError> {
    metrics().page_view(Page::Chat);
    chat_page(&app, session, "", None, query.before).await
}

/// `GET /settings`: the form, filled from the database on this very first render.
pub async fn show_settings(
    State(app): State<Site>,
    session: Session,
) -> Result<Response, AppError> {
    metrics().page_view(Page::Settings);
    let (saved, version) = app.settings_for(session).await?;
    if let Some(html) = app.pages.get(session.id, &saved, version) {
        return Ok(Html(html).into_response());
    }
    let html = Bytes::from(
        settings_document(&app, session.id, &saved, version, FormState::default()).into_string(),
    );
    if !session.is_new {
        app.pages.put(session.id, saved, version, html.clone());
    }
    Ok(Html(html).into_response())
}

/// The settings page of `id`, showing `saved` (at `version`) and the form's own state.
fn settings_document(
    app: &Site,
    id: SessionId,
    saved: &Settings,
    version: i64,
    form: FormState<'_>,
) -> Markup {
    views::document(&Screen {
        view: View::Settings,
        saved,
        version,
        csrf_token: &app.keys.csrf_token(id),
        form,
        chat: None,
    })
}

/// The chat page, with `draft` in the composer and `error` next to it; or, `before` a message, an
/// older page of it.
async fn chat_page(
    app: &Site,
    session: Session,
    draft: &str,
    error: Option<&FieldError>,
    before: Option<i64>,
) -> Result<Markup, AppError> {
    let (saved, version) = app.settings_for(session).await?;
    let page = app.chat_page(before).await?;
    let roster = app.presence.roster();
    let presence = roster.list_with(session.id, &saved.username);
    Ok(views::document(&Screen {
        view: View::Chat,
        saved: &saved,
        version,
        csrf_token: &app.keys.csrf_token(session.id),
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
    State(app): State<Site>,
    session: Session,
    ClientAddr(from): ClientAddr,
    Form(form): Form<MessageForm>,
) -> Result<Response, AppError> {
    if !app.keys.verify_csrf(session.id, &form.csrf) {
        return Err(AppError::BadCsrfToken);
    }
    let (status, refusal) = match app
        .post_message(
            session.id,
            from,
            &form.body,
            &form.nonce,
            Shown::OnTheNextPage,
        )
        .await
    {
        Ok(_) => return Ok(Redirect::to("/").into_response()),
        Err(PostError::Invalid(refusal)) => (StatusCode::UNPROCESSABLE_ENTITY, refusal),
        Err(PostError::TooFast(refusal)) => (StatusCode::TOO_MANY_REQUESTS, refusal),
        Err(PostError::Store(e)) => return Err(e.into()),
    };
    let page = chat_page(&app, session, &form.body, Some(&refusal), None).await?;
    Ok((status, page).into_response())
}

/// The settings form as posted.
#[derive(Debug, Deserialize)]
pub struct SettingsForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    username: Option<String>,
    theme: Option<String>,
}

/// `POST /settings`: saves every valid field, then `303` back to the form; when a field was
/// refused, `422` with the form showing what was typed and why it was refused. Live tabs of the
/// session are told, so they show the change too.
pub async fn save_settings(
    State(app): State<Site>,
    session: Session,
    Form(form): Form<SettingsForm>,
) -> Result<Response, AppError> {
    if !app.keys.verify_csrf(session.id, &form.csrf) {
        return Err(AppError::BadCsrfToken);
    }
    let input = SettingsInput {
        username: form.username,
        theme: form.theme,
    };
    let (change, errors) = SettingsChange::parse(&input);
    let (saved, version) = if change.is_empty() {
        app.settings_for(session).await?
    } else {
        match app.store.save(session.id, change, now_millis()).await? {
            Saved::Applied(saved) => {
                metrics().settings_written(WritePath::Form);
                app.hub.publish(
                    session.id,
                    SessionEvent::SettingsChanged {
                        version: saved.version,
                        origin: 0,
                    },
                );
                (saved.settings, saved.version)
            }
            Saved::Forgotten => {
                // Forgotten in another tab (or on another instance) meanwhile: nothing is saved
                // under the dead id, and from now on its cookie is refused here too.
                app.found_forgotten(session.id);
                return Ok(Redirect::to("/settings").into_response());
            }
            // Only a live page's change can be a replay (a form post names no page); were it
            // one, nothing changed: show what is saved.
            Saved::Replayed => app.settings_for(session).await?,
        }
    };
    if errors.is_empty() {
        return Ok(Redirect::to("/settings").into_response());
    }

    let form = FormState {
        typed_username: errors.username.as_ref().and(input.username.as_deref()),
        errors: Some(&errors),
    };
    let page = settings_document(&app, session.id, &saved, version, form);
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
}

/// The "forget me" form as posted.
#[derive(Debug, Deserialize)]
pub struct ForgetForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
}

/// `POST /settings/forget`: deletes this browser's row and moves it to a new, empty session. The
/// old cookie is worthless afterwards: its id has no row and is never issued again, and the old
/// session's live tabs are told to reload.
pub async fn forget(
    State(app): State<Site>,
    session: Session,
    ClientAddr(from): ClientAddr,
    Form(form): Form<ForgetForm>,
) -> Result<Response, AppError> {
    if !app.keys.verify_csrf(session.id, &form.csrf) {
        return Err(AppError::BadCsrfToken);
    }
    app.forget(session.id, from).await?;
    Ok((
        Extension(ReplaceSession(SessionId::generate())),
        Redirect::to("/settings"),
    )
        .into_response())
}

/// `POST /settings/sign-out-elsewhere`: this browser's data moves to a new session, which its
/// cookie now names; every other device (and every open page) on the old one starts over.
pub async fn sign_out_elsewhere(
    State(app): State<Site>,
    session: Session,
    ClientAddr(from): ClientAddr,
    Form(form): Form<ForgetForm>,
) -> Result<Response, AppError> {
    if !app.keys.verify_csrf(session.id, &form.csrf) {
        return Err(AppError::BadCsrfToken);
    }
    let new = app.sign_out_elsewhere(session.id, from).await?;
    Ok((Extension(ReplaceSession(new)), Redirect::to("/settings")).into_response())
}

/// `GET /settings/export`: "Download my data", a JSON file of everything this server keeps of
/// this browser (`docs/export.md`). A plain link works without JavaScript; it changes nothing,
/// so it needs no CSRF token, and another site cannot read the answer (no CORS).
pub async fn export(
    State(app): State<Site>,
    session: Session,
    ClientAddr(from): ClientAddr,
) -> Result<Response, AppError> {
    let data = if session.is_new {
        // A browser with no session yet has nothing kept: no lookup.
        SessionData::default()
    } else {
        app.export(session.id, from).await?
    };
    let disposition = format!("attachment; filename=\"{}\"", views::EXPORT_FILE_NAME);
    Ok((
        [
            (CONTENT_TYPE, "application/json; charset=utf-8".to_owned()),
            (CONTENT_DISPOSITION, disposition),
        ],
        views::export_json(&data, now_millis()),
    )
        .into_response())
}

/// `GET /healthz`: `200 {"status":"ok"}` when the database answers and takes a write, `503`
/// with the reason otherwise.
pub async fn health(State(app): State<Site>) -> Response {
    let check = tokio::time::timeout(std::time::Duration::from_secs(2), app.store.ping()).await;
    match check {
        Ok(Ok(())) => Json(serde_json::json!({ "status": "ok" })).into_response(),
        Ok(Err(e)) => {
            metrics().database_error(&e);
            tracing::warn!(error = %e, "health check: the database did not answer");
            unavailable(e.unavailable().reason())
        }
        Err(_) => unavailable("database timed out"),
    }
}

fn unavailable(reason: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({ "status": "unavailable", "reason": reason })),
    )
        .into_response()
}

/// Any other path.
pub async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "There is no page here.")
}
