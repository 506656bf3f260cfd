//! The session cookie in front of the page routes: [`session_layer`] verifies the cookie (or
//! mints an id), hands the handler a [`Session`], and re-issues the cookie on every HTML page so
//! its 400-day lifetime slides. The cookie's rules themselves are `crate::session`'s.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, SET_COOKIE};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use crate::metrics::Refusal;
use crate::refusals::refused;
use crate::session::{Session, SessionId, Verdict};
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

/// Put into a response's extensions by a handler that replaced the session (for example
/// "forget me"): the layer issues a cookie for this id instead of the request's.
#[derive(Debug, Clone, Copy)]
pub struct ReplaceSession(pub SessionId);

/// Middleware for the page routes: verify or mint the session, then (re-)issue the cookie when the
/// response is an HTML page, when the id was new or rotated, or when the handler replaced it.
pub async fn session_layer(State(site): State<Site>, mut request: Request, next: Next) -> Response {
    let check = site.verify_session(request.headers()).await;
    let (session, must_issue) = match check.verdict {
        Verdict::Current(id) => (Session { id, is_new: false }, false),
        Verdict::Previous(id) => {
            tracing::debug!("session cookie signed with a previous key; re-issuing it");
            (Session { id, is_new: false }, true)
        }
        Verdict::Missing => (Session::fresh(), true),
        Verdict::Invalid => {
            tracing::debug!(
                "session cookie failed verification or was forgotten; starting a fresh session"
            );
            refused(Refusal::Cookie);
            (Session::fresh(), true)
        }
    };
    request.extensions_mut().insert(session);
    let mut response = next.run(request).await;
    // Room for the cookie and the security headers, so the map grows once.
    response.headers_mut().reserve(8);

    let id = match response.extensions().get::<ReplaceSession>() {
        Some(ReplaceSession(id)) => Some(*id),
        // Forgotten while this request ran (another tab): never hand the old id out again.
        None if site.is_forgotten(session.id) => None,
        None if must_issue || is_html(&response) => Some(session.id),
        None => None,
    };
    if let Some(id) = id {
        let cookie = match check.current_value {
            // The browser's own cookie, signed with the current key: send it back as it is.
            Some(value) if id == session.id => site.keys().reissue(&value),
            _ => site.keys().issue(id),
        };
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}

fn is_html(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"))
}
