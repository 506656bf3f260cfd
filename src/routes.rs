//! The HTTP handlers. Each one is thin: it reads the session and the input, asks the store, and
//! renders a view.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::Markup;
use serde::Deserialize;

use crate::app::AppState;
use crate::error::AppError;
use crate::session::{ReplaceSession, Session, SessionId};
use crate::settings::{SettingsChange, SettingsErrors, SettingsInput};
use crate::store::now_millis;
use crate::views::{self, SettingsView};

/// `GET /`.
pub async fn home(State(app): State<AppState>, session: Session) -> Result<Markup, AppError> {
    let saved = app.settings_for(session).await?;
    Ok(views::home_page(&saved))
}

/// `GET /settings`: the form, filled from the database on this very first render.
pub async fn show_settings(
    State(app): State<AppState>,
    session: Session,
) -> Result<Markup, AppError> {
    let saved = app.settings_for(session).await?;
    let csrf_token = app.keys.csrf_token(session.id);
    let view = SettingsView {
        username: saved.username.as_str(),
        theme: saved.theme,
        errors: &SettingsErrors::default(),
        csrf_token: &csrf_token,
    };
    Ok(views::settings_page(&saved, &view))
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
/// refused, `422` with the form showing what was typed and why it was refused.
pub async fn save_settings(
    State(app): State<AppState>,
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
    let saved = if change.is_empty() {
        app.settings_for(session).await?
    } else {
        app.store
            .save(session.id, change, now_millis())
            .await?
            .settings
    };
    if errors.is_empty() {
        return Ok(Redirect::to("/settings").into_response());
    }

    let csrf_token = app.keys.csrf_token(session.id);
    let typed_username = input.username.as_deref();
    let view = SettingsView {
        username: match &errors.username {
            Some(_) => typed_username.unwrap_or_default(),
            None => saved.username.as_str(),
        },
        theme: saved.theme,
        errors: &errors,
        csrf_token: &csrf_token,
    };
    Ok((
        StatusCode::UNPROCESSABLE_ENTITY,
        views::settings_page(&saved, &view),
    )
        .into_response())
}

/// The "forget me" form as posted.
#[derive(Debug, Deserialize)]
pub struct ForgetForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
}

/// `POST /settings/forget`: deletes this browser's row and moves it to a new, empty session. The
/// old cookie is worthless afterwards: its id has no row and is never issued again.
pub async fn forget(
    State(app): State<AppState>,
    session: Session,
    Form(form): Form<ForgetForm>,
) -> Result<Response, AppError> {
    if !app.keys.verify_csrf(session.id, &form.csrf) {
        return Err(AppError::BadCsrfToken);
    }
    app.store.forget(session.id).await?;
    tracing::info!("a browser asked to be forgotten; its settings were deleted");
    Ok((
        Extension(ReplaceSession(SessionId::generate())),
        Redirect::to("/settings"),
    )
        .into_response())
}

/// `GET /healthz`: `200 {"status":"ok"}` when the database answers, `503` otherwise.
pub async fn health(State(app): State<AppState>) -> Response {
    let check = tokio::time::timeout(std::time::Duration::from_secs(2), app.store.ping()).await;
    match check {
        Ok(Ok(())) => Json(serde_json::json!({ "status": "ok" })).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check: the database did not answer");
            unavailable("database error")
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
