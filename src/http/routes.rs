//! The HTTP handlers. Each one is thin: it reads the session and the input, asks the site, and
//! renders a view.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, HOST};
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
use crate::link::LinkCode;
use crate::metrics::{Page, WritePath, metrics};
use crate::session::{Session, SessionId};
use crate::settings::{FieldError, Settings, SettingsChange, SettingsInput};
use crate::site::linking::Found;
use crate::site::{PostError, Shown, Site};
use crate::store::{Saved, SessionData};
use crate::views::{self, ChatScreen, FormState, FreshCode, LinkCard, LinkPage, Screen, View};

/// Refuses a form whose CSRF token is not this session's (`403`, nothing changed).
fn check_csrf(app: &Site, session: Session, token: &str) -> Result<(), AppError> {
    if app.keys.verify_csrf(session.id, token) {
        Ok(())
    } else {
        Err(AppError::BadCsrfToken)
    }
}

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

/// The query of `GET /settings`: the one-time code just made, to show it.
#[derive(Debug, Deserialize)]
pub struct SettingsQuery {
    link: Option<String>,
}

/// `GET /settings`: the form, filled from the database on this very first render. With
/// `?link=CODE` (where making a code redirects), the code is shown while it is this session's
/// and live.
pub async fn show_settings(
    State(app): State<Site>,
    session: Session,
    headers: HeaderMap,
    Query(query): Query<SettingsQuery>,
) -> Result<Response, AppError> {
    metrics().page_view(Page::Settings);
    let (saved, version) = app.settings_for(session).await?;
    if let Some(code) = query.link.as_deref().and_then(LinkCode::parse)
        && app.owns_live_link(session.id, &code).await?
    {
        let url = format!("{}/link/{}", origin(&app, &headers), code.as_str());
        let (shown, qr) = (code.to_string(), views::qr_svg(&url));
        let fresh = FreshCode {
            shown: &shown,
            url: &url,
            qr: &qr,
        };
        let page = settings_document(
            &app,
            session.id,
            &saved,
            version,
            FormState::default(),
            Some(fresh),
        );
        return Ok(page.into_response());
    }
    // A page with a live link code shows its expiry: not one for the cache.
    let cacheable = !session.is_new && app.linking.expires(session.id).is_none();
    if cacheable && let Some(html) = app.pages.get(session.id, &saved, version) {
        return Ok(Html(html).into_response());
    }
    let html = Bytes::from(
        settings_document(
            &app,
            session.id,
            &saved,
            version,
            FormState::default(),
            None,
        )
        .into_string(),
    );
    if cacheable {
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
    fresh: Option<FreshCode<'_>>,
) -> Markup {
    let link = app.linking.expires(id).map(|expires_at| LinkCard {
        fresh,
        minutes_left: views::minutes_left(expires_at),
    });
    views::document(&Screen {
        view: View::Settings,
        saved,
        version,
        csrf_token: &app.keys.csrf_token(id),
        form,
        chat: None,
        link,
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
        link: None,
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
    check_csrf(&app, session, &form.csrf)?;
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
    check_csrf(&app, session, &form.csrf)?;
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
    let page = settings_document(&app, session.id, &saved, version, form, None);
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
    check_csrf(&app, session, &form.csrf)?;
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
    check_csrf(&app, session, &form.csrf)?;
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

/// `POST /settings/link`: makes a one-time code for another device, then `303` to the settings
/// page that shows it (the code, its link and the link's QR code): a reload shows it again
/// rather than posting twice. Only this URL, in this browser, has the code: the server keeps
/// its hash, and logs paths without their query.
pub async fn make_link(
    State(app): State<Site>,
    session: Session,
    ClientAddr(from): ClientAddr,
    Form(form): Form<ForgetForm>,
) -> Result<Response, AppError> {
    check_csrf(&app, session, &form.csrf)?;
    let (code, _) = app.make_link(session.id, from).await?;
    Ok(Redirect::to(&format!("/settings?link={}", code.as_str())).into_response())
}

/// This site's origin as the browser named it (`Host`), for links to show; empty (a relative
/// link) when the header is missing or not a host.
fn origin(app: &Site, headers: &HeaderMap) -> String {
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.parse::<axum::http::uri::Authority>().is_ok());
    let scheme = if app.keys.secure() { "https" } else { "http" };
    host.map(|host| format!("{scheme}://{host}"))
        .unwrap_or_default()
}

/// `POST /settings/link/cancel`: the live code stops working.
pub async fn cancel_link(
    State(app): State<Site>,
    session: Session,
    Form(form): Form<ForgetForm>,
) -> Result<Response, AppError> {
    check_csrf(&app, session, &form.csrf)?;
    app.cancel_link(session.id).await?;
    Ok(Redirect::to("/settings").into_response())
}

/// The query of `GET /link`: a code typed into its form.
#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    code: Option<String>,
}

/// `GET /link`: the form to type a code; with a code, on to the page that says what it will do.
pub async fn link_form(
    State(app): State<Site>,
    session: Session,
    Query(query): Query<LinkQuery>,
) -> Result<Response, AppError> {
    let (mine, _) = app.settings_for(session).await?;
    let error = match query.code.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(typed) => match LinkCode::parse(typed) {
            Some(code) => {
                return Ok(Redirect::to(&format!("/link/{}", code.as_str())).into_response());
            }
            None => Some("That is not a code: it has 12 letters and digits, like ABCD-EFGH-JKMN."),
        },
    };
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        views::link_page(LinkPage::Form { error }, mine.theme),
    )
        .into_response())
}

/// `GET /link/{code}`: what using the code on this browser will do, and the button that does
/// it. Looking changes nothing: a link opened by a preview bot, or by someone else, does nothing.
pub async fn show_link(
    State(app): State<Site>,
    session: Session,
    ClientAddr(from): ClientAddr,
    Path(typed): Path<String>,
) -> Result<Response, AppError> {
    let code = LinkCode::parse(&typed);
    let (mine, mine_version) = app.settings_for(session).await?;
    match app.look_up_link(code.as_ref(), from).await? {
        Found::Not(sentence) => Ok(refused_link(sentence, mine.theme)),
        Found::Live(theirs) => {
            let theirs = app.store.load(theirs).await?.unwrap_or_default().settings;
            let code = code.expect("a live code parsed");
            let shown = code.to_string();
            let csrf_token = app.keys.csrf_token(session.id);
            let page = LinkPage::Confirm {
                shown: &shown,
                code: code.as_str(),
                theirs: &theirs,
                mine: (mine_version > 0).then_some(&mine),
                csrf_token: &csrf_token,
            };
            Ok(views::link_page(page, mine.theme).into_response())
        }
    }
}

/// `POST /link/{code}`: this browser joins the code's session (its cookie names it from now
/// on); its own session is forgotten.
pub async fn use_link(
    State(app): State<Site>,
    session: Session,
    ClientAddr(from): ClientAddr,
    Path(typed): Path<String>,
    Form(form): Form<ForgetForm>,
) -> Result<Response, AppError> {
    check_csrf(&app, session, &form.csrf)?;
    let code = LinkCode::parse(&typed);
    match app.use_link(code.as_ref(), session.id, from).await? {
        Found::Live(theirs) => {
            Ok((Extension(ReplaceSession(theirs)), Redirect::to("/settings")).into_response())
        }
        Found::Not(sentence) => {
            let (mine, _) = app.settings_for(session).await?;
            Ok(refused_link(sentence, mine.theme))
        }
    }
}

/// The code form again, with why the code did not work.
fn refused_link(sentence: &'static str, theme: crate::settings::Theme) -> Response {
    let page = views::link_page(
        LinkPage::Form {
            error: Some(sentence),
        },
        theme,
    );
    (StatusCode::NOT_FOUND, page).into_response()
}
