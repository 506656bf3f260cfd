//! The session cookie in front of the page routes: [`SessionLayer`] verifies the cookie (or
//! mints an id), hands the handler a [`Session`], and re-issues the cookie on the first HTML page
//! of each day so its 400-day lifetime slides. The cookie's rules themselves are
//! `crate::session`'s.
//!
//! It is a service of its own rather than `axum::middleware::from_fn`, which for every request
//! clones the route behind it, boxes it into a `Next`, and boxes the whole future: this one calls
//! the route at once (a cookie verifies without waiting for anything) and wraps its future.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::{FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, SET_COOKIE, USER_AGENT};
use axum::http::request::Parts;
use axum::response::Response;
use futures_util::future::BoxFuture;
use tower::{Layer, Service, ServiceExt};

use crate::clock::now_millis;
use crate::metrics::Refusal;
use crate::refusals::refused;
use crate::session::{CookieCheck, Kind, Session, Verdict, Who, day_of};
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

/// The layer for the page routes: verify or mint the session, then (re-)issue the cookie when the
/// id was new or rotated, when the handler replaced it, or when the response is an HTML page and
/// the cookie was signed on an earlier day ([`CookieCheck::is_due`]: its expiry then moves by a
/// day or more). Every other response leaves the cookie as the browser has it.
#[derive(Clone)]
pub struct SessionLayer {
    site: Site,
}

impl SessionLayer {
    pub fn new(site: Site) -> SessionLayer {
        SessionLayer { site }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> SessionService<S> {
        SessionService {
            site: self.site.clone(),
            inner,
        }
    }
}

/// [`SessionLayer`] around one route.
#[derive(Clone)]
pub struct SessionService<S> {
    site: Site,
    inner: S,
}

impl<S> Service<Request> for SessionService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = futures_util::future::Either<
        WithCookie<S::Future>,
        BoxFuture<'static, Result<Response, Infallible>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let site = self.site.clone();
        let pending = match site.verify_session_at_once(request.headers()) {
            Ok(check) => {
                let issue = Issue::begin(check, &mut request);
                let route = self.inner.call(request);
                return futures_util::future::Either::Left(WithCookie {
                    route,
                    finish: Some((site, issue)),
                });
            }
            Err(pending) => pending,
        };
        // Several valid session cookies, or a database other instances share: the session
        // depends on what is stored.
        let ready = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, ready);
        futures_util::future::Either::Right(Box::pin(async move {
            let check = site.settle_session(pending, request.headers()).await;
            let issue = Issue::begin(check, &mut request);
            let response = inner.oneshot(request).await?;
            Ok(issue.finish(&site, response))
        }))
    }
}

pin_project_lite::pin_project! {
    /// The route's future, and the cookie to issue on its response.
    pub struct WithCookie<F> {
        #[pin]
        route: F,
        finish: Option<(Site, Issue)>,
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for WithCookie<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.route.poll(cx));
        let (site, issue) = this.finish.take().expect("polled after it was ready");
        Poll::Ready(Ok(issue.finish(&site, response)))
    }
}

/// A request's session, as the layer found or minted it, and what its response must carry.
struct Issue {
    check: CookieCheck,
    session: Session,
    /// New, rotated, or moved to the `__Host-` name: the cookie goes out whatever the response.
    must_issue: bool,
}

impl Issue {
    /// The session of `check` (a fresh one when it is missing or invalid), handed to the
    /// request's handler.
    fn begin(check: CookieCheck, request: &mut Request) -> Issue {
        let kind = kind_of(request);
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
        Issue {
            check,
            session,
            must_issue,
        }
    }

    /// `response`, with the cookie it must carry.
    fn finish(self, site: &Site, mut response: Response) -> Response {
        let Issue {
            check,
            session,
            must_issue,
        } = self;
        // Room for the cookie and the security headers, so the map grows once.
        response.headers_mut().reserve(8);
        let due = check.is_due(today());
        let who = match response.extensions().get::<ReplaceSession>() {
            Some(ReplaceSession(who)) => Some(*who),
            None if !(must_issue || (due && is_html(&response))) => None,
            // Forgotten or signed out while this request ran (another tab, another device):
            // never hand the old cookie out again.
            None if site.is_forgotten(session.id) || site.is_signed_out(session.device) => None,
            None => Some(session.who()),
        };
        if let Some(who) = who {
            let cookie = match check.current_value {
                // The browser's own cookie, signed today with the current key (being moved to
                // the `__Host-` name): send it back as it is.
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
