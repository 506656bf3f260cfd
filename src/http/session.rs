//! The session cookie in front of the page routes: [`session_layer`] verifies the cookie (or
//! mints an id), hands the handler a [`Session`], and re-issues the cookie on the first HTML page
//! of each day so its 400-day lifetime slides. The cookie's rules themselves are
//! `crate::session`'s.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, SET_COOKIE, USER_AGENT};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use crate::clock::now_millis;
use crate::metrics::Refusal;
use crate::refusals::refused;
use crate::session::{Kind, Session, Verdict, Who, day_of};
use crate::site::Site;

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Session, Self::Rejection> {
        parts.extensions.get::<Session>().copied().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "this route is not behind the session layer",
        ))
    }
}

/// Put into a response's extensions by a handler that replaced the session or the device (for
/// example "forget me", or a code used): the layer issues a cookie for this instead of the
/// request's.
#[derive(Debug, Clone, Copy)]
pub struct ReplaceSession(pub Who);

/// What kind of browser the request's User-Agent names.
fn kind_of(request: &Request) -> Kind {
    request
        .headers()
        .get(USER_AGENT)
        .and_then(|ua| ua.to_str().ok())
        .map(Kind::of)
        .unwrap_or_default()
}

/// Middleware for the page routes: verify or mint the session, then (re-)issue the cookie when the
/// id was new or rotated, when the handler replaced it, or when the response is an HTML page and
/// the cookie was signed on an earlier day ([`crate::session::CookieCheck::is_due`]: its expiry
/// then moves by a day or more). Every other response leaves the cookie as the browser has it.
pub async fn session_layer(State(site): State<Site>, mut request: Request, next: Next) -> Response {
    let check = site.verify_session(request.headers()).await;
    let kind = kind_of(&request);
    let (session, mut must_issue) = match check.verdict {
        Verdict::Current(who) => (Session::known(who, kind), false),
        Verdict::Previous(who) => {
            tracing::debug!("session cookie signed with a previous key; re-issuing it");
            (Session::known(who, kind), true)
        }
        Verdict::Missing => (Session::fresh(kind), true),
        Verdict::Invalid => {
            tracing::debug!(
                "session cookie failed verification, was forgotten or signed out; starting a fresh session"
            );
            refused(Refusal::Cookie);
            (Session::fresh(kind), true)
        }
    };
    // A cookie of the plain name where the `__Host-` one is due: moved over on this response.
    must_issue |= check.old_name;
    request.extensions_mut().insert(session);
    let mut response = next.run(request).await;
    // Room for the cookie and the security headers, so the map grows once.
    response.headers_mut().reserve(8);

    let due = check.is_due(today());
    let who = match response.extensions().get::<ReplaceSession>() {
        Some(ReplaceSession(who)) => Some(*who),
        None if !(must_issue || (due && is_html(&response))) => None,
        // Forgotten or signed out while this request ran (another tab, another device): never
        // hand the old cookie out again.
        None if site.is_forgotten(session.id) || site.is_signed_out(session.device) => None,
        None => Some(session.who()),
    };
    if let Some(who) = who {
        let cookie = match check.current_value {
            // The browser's own cookie, signed today with the current key (being moved to the
            // `__Host-` name): send it back as it is.
            Some(value) if who == session.who() && !due => site.keys().reissue(&value),
            _ => site.keys().issue(who),
        };
        response.headers_mut().append(SET_COOKIE, cookie);
        if check.old_name {
            response
                .headers_mut()
                .append(SET_COOKIE, site.keys().expire_old_name());
        }
    }
    response
}

/// Today, as a cookie's signing day ([`day_of`]).
fn today() -> u32 {
    day_of(now_millis())
}

fn is_html(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"))
}
