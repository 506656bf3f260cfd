//! One-time codes for another device: making and cancelling one (buttons of `/settings`), and
//! using one: `GET /link` (type it), `GET /link/{code}` (what it will do), `POST /link/{code}`
//! (do it).

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::HOST;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{Form, TokenForm, check_csrf};
use crate::http::client::{ClientAddr, LocalAddr};
use crate::http::error::AppError;
use crate::http::session::ReplaceSession;
use crate::link::{LinkCode, Unusable};
use crate::session::Session;
use crate::settings::Theme;
use crate::site::{Found, Site};
use crate::views::{self, LinkPage};

/// `POST /settings/link`: makes a one-time code for another device, then `303` to the settings
/// page that shows it (the code, its link and the link's QR code): a reload shows it again
/// rather than posting twice. Only this URL, in this browser, has the code: the server keeps
/// its hash, and logs paths without their query.
pub async fn make_link(
    State(site): State<Site>,
    session: Session,
    ClientAddr(from): ClientAddr,
    Form(form): Form<TokenForm>,
) -> Result<Response, AppError> {
    check_csrf(&site, session, &form.csrf)?;
    let (code, _) = site.make_link(session.id, from).await?;
    Ok(Redirect::to(&format!("/settings?link={}", code.as_str())).into_response())
}

/// The origin links for another device name, for a request with these headers that came in on
/// `local` (see [`crate::origin`]): `--public-url`, the `Host` when this server answers for it,
/// else the LAN or the listening address; never a forged `Host`.
pub(super) fn origin(site: &Site, host: &RequestHost, local: Option<LocalAddr>) -> String {
    let host = host.0.as_ref().map(|h| h.as_bytes());
    site.origins()
        .for_request(host, local.map(|LocalAddr(addr)| addr))
}

/// The request's `Host` header, and nothing else of its headers: what a link's origin is made
/// of. (Taking the whole `HeaderMap` would copy every header on every page view.)
pub struct RequestHost(Option<axum::http::HeaderValue>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestHost {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<RequestHost, Self::Rejection> {
        Ok(RequestHost(parts.headers.get(HOST).cloned()))
    }
}

/// `POST /settings/link/cancel`: the live code stops working.
pub async fn cancel_link(
    State(site): State<Site>,
    session: Session,
    Form(form): Form<TokenForm>,
) -> Result<Response, AppError> {
    check_csrf(&site, session, &form.csrf)?;
    site.cancel_link(session.id).await?;
    Ok(Redirect::to("/settings").into_response())
}

/// The query of `GET /link`: a code typed into its form.
#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    code: Option<String>,
}

/// `GET /link`: the form to type a code; with a code, on to the page that says what it will do.
pub async fn link_form(
    State(site): State<Site>,
    session: Session,
    Query(query): Query<LinkQuery>,
) -> Result<Response, AppError> {
    let (mine, _) = site.settings_for_request(session).await?;
    let error = match query.code.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(typed) => match LinkCode::parse(typed) {
            Some(code) => {
                return Ok(Redirect::to(&format!("/link/{}", code.as_str())).into_response());
            }
            None => Some(Unusable::NotACode),
        },
    };
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page = views::link_page(LinkPage::Form { error }, mine.theme);
    Ok((status, page).into_response())
}

/// `GET /link/{code}`: what using the code on this browser will do, and the button that does
/// it. Looking changes nothing: a link opened by a preview bot, or by someone else, does nothing.
pub async fn show_link(
    State(site): State<Site>,
    session: Session,
    ClientAddr(from): ClientAddr,
    Path(typed): Path<String>,
) -> Result<Response, AppError> {
    let code = LinkCode::parse(&typed);
    let (mine, mine_version) = site.settings_for_request(session).await?;
    let theirs = match site.look_up_link(code.as_ref(), from).await? {
        Found::Not(why) => return Ok(refused_link(why, mine.theme)),
        Found::Live(found) => found,
    };
    let (theirs, made_at) = theirs;
    let Some(code) = code else {
        return Ok(refused_link(Unusable::Unknown, mine.theme));
    };
    let shown = code.to_string();
    let csrf_token = site.csrf_token(session.id);
    let page = LinkPage::Confirm {
        shown: &shown,
        code: code.as_str(),
        theirs: &theirs,
        made_at,
        mine: (mine_version > 0).then_some(&mine),
        csrf_token: &csrf_token,
    };
    Ok(views::link_page(page, mine.theme).into_response())
}

/// `POST /link/{code}`: this browser joins the code's session (its cookie names it from now
/// on); its own session is forgotten.
pub async fn use_link(
    State(site): State<Site>,
    session: Session,
    ClientAddr(from): ClientAddr,
    Path(typed): Path<String>,
    Form(form): Form<TokenForm>,
) -> Result<Response, AppError> {
    check_csrf(&site, session, &form.csrf)?;
    let code = LinkCode::parse(&typed);
    match site.use_link(code.as_ref(), session, from).await? {
        Found::Live(theirs) => {
            Ok((Extension(ReplaceSession(theirs)), Redirect::to("/settings")).into_response())
        }
        Found::Not(why) => {
            let (mine, _) = site.settings_for_request(session).await?;
            Ok(refused_link(why, mine.theme))
        }
    }
}

/// The code form again, with why the code did not work.
fn refused_link(why: Unusable, theme: Theme) -> Response {
    let page = views::link_page(LinkPage::Form { error: Some(why) }, theme);
    (StatusCode::NOT_FOUND, page).into_response()
}
