//! The settings page: `GET /settings`, its form (`POST /settings`), and its buttons: "forget
//! me", "sign out everywhere else", "Download my data".

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, HeaderMap};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::Markup;
use serde::Deserialize;

use super::link::origin;
use super::{Form, TokenForm, check_csrf};
use crate::clock::now_millis;
use crate::http::client::{ClientAddr, LocalAddr};
use crate::http::error::AppError;
use crate::http::session::ReplaceSession;
use crate::link::LinkCode;
use crate::metrics::{Page, metrics};
use crate::session::{Session, SessionId};
use crate::settings::{Settings, SettingsInput};
use crate::site::{SaveOutcome, Site, Via};
use crate::views::{self, FormState, FreshCode, LinkCard, Screen, View};

/// The query of `GET /settings`: the one-time code just made, to show it.
#[derive(Debug, Deserialize)]
pub struct SettingsQuery {
    link: Option<String>,
}

/// `GET /settings`: the form, filled from the database on this very first render. With
/// `?link=CODE` (where making a code redirects), the code is shown while it is this session's
/// and live.
pub async fn show_settings(
    State(site): State<Site>,
    session: Session,
    headers: HeaderMap,
    local: Option<Extension<LocalAddr>>,
    Query(query): Query<SettingsQuery>,
) -> Result<Response, AppError> {
    metrics().page_view(Page::Settings);
    let (saved, version) = site.settings_for(session).await?;
    if let Some(code) = query.link.as_deref().and_then(LinkCode::parse)
        && site.owns_live_link(session.id, &code).await?
    {
        let url = format!(
            "{}/link/{}",
            origin(&site, &headers, local.map(|Extension(local)| local)),
            code.as_str()
        );
        let (shown, qr) = (code.to_string(), site.qr_svg(&url));
        let fresh = FreshCode {
            shown: &shown,
            url: &url,
            qr: &qr,
        };
        let page = settings_document(
            &site,
            session.id,
            &saved,
            version,
            FormState::default(),
            Some(fresh),
        );
        return Ok(page.into_response());
    }
    // A page with a live link code shows its expiry: not one for the cache.
    let cacheable = !session.is_new && site.link_expires(session.id).is_none();
    if cacheable && let Some(html) = site.pages().get(session.id, &saved, version) {
        return Ok(Html(html).into_response());
    }
    let page = settings_document(
        &site,
        session.id,
        &saved,
        version,
        FormState::default(),
        None,
    );
    let html = Bytes::from(page.into_string());
    if cacheable {
        site.pages().put(session.id, saved, version, html.clone());
    }
    Ok(Html(html).into_response())
}

/// The settings page of `id`, showing `saved` (at `version`) and the form's own state.
fn settings_document(
    site: &Site,
    id: SessionId,
    saved: &Settings,
    version: i64,
    form: FormState<'_>,
    fresh: Option<FreshCode<'_>>,
) -> Markup {
    let link = site.link_expires(id).map(|expires_at| LinkCard {
        fresh,
        minutes_left: views::minutes_left(expires_at),
    });
    views::document(&Screen {
        view: View::Settings,
        saved,
        version,
        csrf_token: &site.csrf_token(id),
        form,
        chat: None,
        link,
    })
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
    State(site): State<Site>,
    session: Session,
    ClientAddr(from): ClientAddr,
    Form(form): Form<SettingsForm>,
) -> Result<Response, AppError> {
    check_csrf(&site, session, &form.csrf)?;
    let input = SettingsInput {
        username: form.username,
        theme: form.theme,
    };
    let (outcome, errors) = site
        .save_settings(session.id, &input, from, Via::Form)
        .await?;
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    let (saved, version) = match outcome {
        SaveOutcome::Written(saved, version) => (saved, version),
        // The form comes back as it was typed, with the sentence next to the name.
        SaveOutcome::TooManyNew => {
            status = StatusCode::TOO_MANY_REQUESTS;
            site.settings_for(session).await?
        }
        SaveOutcome::NoRoom => {
            status = StatusCode::INSUFFICIENT_STORAGE;
            site.settings_for(session).await?
        }
        SaveOutcome::Nothing | SaveOutcome::Replayed => site.settings_for(session).await?,
        // Forgotten in another tab (or on another instance) meanwhile: the page starts over.
        SaveOutcome::Forgotten => return Ok(Redirect::to("/settings").into_response()),
    };
    if errors.is_empty() {
        return Ok(Redirect::to("/settings").into_response());
    }
    let form = FormState {
        typed_username: errors.username.as_ref().and(input.username.as_deref()),
        errors: Some(&errors),
    };
    let page = settings_document(&site, session.id, &saved, version, form, None);
    Ok((status, page).into_response())
}

/// `POST /settings/forget`: deletes this browser's row and moves it to a new, empty session. The
/// old cookie is worthless afterwards: its id has no row and is never issued again, and the old
/// session's live tabs are told to reload.
pub async fn forget(
    State(site): State<Site>,
    session: Session,
    ClientAddr(from): ClientAddr,
    Form(form): Form<TokenForm>,
) -> Result<Response, AppError> {
    check_csrf(&site, session, &form.csrf)?;
    site.forget(session.id, from).await?;
    let fresh = ReplaceSession(SessionId::generate());
    Ok((Extension(fresh), Redirect::to("/settings")).into_response())
}

/// `POST /settings/sign-out-elsewhere`: this browser's data moves to a new session, which its
/// cookie now names; every other device (and every open page) on the old one starts over.
pub async fn sign_out_elsewhere(
    State(site): State<Site>,
    session: Session,
    ClientAddr(from): ClientAddr,
    Form(form): Form<TokenForm>,
) -> Result<Response, AppError> {
    check_csrf(&site, session, &form.csrf)?;
    let new = site.sign_out_elsewhere(session.id, from).await?;
    Ok((Extension(ReplaceSession(new)), Redirect::to("/settings")).into_response())
}

/// `GET /settings/export`: "Download my data", a JSON file of everything this server keeps of
/// this browser (`docs/export.md`). A plain link works without JavaScript; it changes nothing,
/// so it needs no CSRF token, and another site cannot read the answer (no CORS).
pub async fn export(
    State(site): State<Site>,
    session: Session,
    ClientAddr(from): ClientAddr,
) -> Result<Response, AppError> {
    let data = site.export(session, from).await?;
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
