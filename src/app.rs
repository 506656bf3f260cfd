//! The application state and the router, kept apart from binding a listener so tests and the
//! binary build the very same app.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::routing::{get, post};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{MakeSpan, OnResponse, TraceLayer};
use tracing::Span;

use std::time::{Duration, Instant};

use crate::chat::{Message, MessageBody, RateLimiter, rate_limited_message};
use crate::live::{self, Live};
use crate::metrics::{Limit, metrics};
use crate::prune::Retention;
use crate::routes;
use crate::session::{Forgotten, SessionId, Verdict};
use crate::session::{Keys, Session, session_layer};
use crate::settings::FieldError;
use crate::settings::Settings;
use crate::store::{Store, StoreError, now_millis};
use crate::views::PageCache;

/// The largest request body accepted; larger ones get `413 Payload Too Large`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The longest a request may take once its headers are in.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What every handler shares: one pointer, so the clone axum makes for every request and every
/// layer is a single reference count.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Shares `shared` with every handler.
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    /// Where settings live.
    pub store: Store,
    /// Signs session cookies and derives CSRF tokens.
    pub keys: Arc<Keys>,
    /// When rows go stale, and how often reads may write.
    pub retention: Retention,
    /// The live sockets and what they share.
    pub live: Arc<Live>,
    /// How fast each browser may send chat messages.
    pub chat_limit: Arc<RateLimiter>,
    /// Sessions deleted by "forget me", refused from now on.
    pub forgotten: Arc<Forgotten>,
    /// Rendered settings pages of recent visitors.
    pub pages: PageCache,
}

impl AppState {
    /// The session a request's cookie names, with forgotten sessions treated as invalid, and
    /// the cookie's value when it can be re-issued as it is (see [`Keys::verify_cookie`]).
    pub fn verify_session(&self, headers: &HeaderMap) -> (Verdict, Option<String>) {
        match self.keys.verify_cookie(headers) {
            (Verdict::Current(id) | Verdict::Previous(id), _) if self.forgotten.contains(id) => {
                (Verdict::Invalid, None)
            }
            verified => verified,
        }
    }

    /// The settings to show to `session` and their version (defaults and 0 without a row): one
    /// lookup, and a write only when `read_at` is older than the touch window. A new session has
    /// no row, so it costs nothing at all.
    ///
    /// When a touch is due, what is shown is what the touch returned: a row pruned between the
    /// lookup and the touch is shown as gone, never as data that no longer exists.
    pub async fn settings_for(&self, session: Session) -> Result<(Settings, i64), StoreError> {
        if session.is_new {
            return Ok((Settings::default(), 0));
        }
        let Some(mut stored) = self.store.load(session.id).await? else {
            return Ok((Settings::default(), 0));
        };
        let now = now_millis();
        if stored.read_at < self.retention.touch_before(now) {
            metrics().touched();
            match self.store.touch(session.id, now).await? {
                Some(touched) => stored = touched,
                None => return Ok((Settings::default(), 0)),
            }
        } else {
            metrics().touch_skipped();
        }
        Ok((stored.settings, stored.version))
    }

    /// Posts a chat message for `author`, once per `nonce`, and tells every chat page. The inner
    /// `Err` is a refusal the author should see: an invalid body, or too many messages too fast.
    pub async fn post_message(
        &self,
        author: SessionId,
        body: &str,
        nonce: &str,
    ) -> Result<Result<Message, Refusal>, StoreError> {
        let body = match MessageBody::parse(body) {
            Ok(body) => body,
            Err(error) => return Ok(Err(Refusal::Invalid(error))),
        };
        let nonce = if (1..=64).contains(&nonce.len()) {
            nonce.to_owned()
        } else {
            new_nonce()
        };
        if let Err(wait) = self.chat_limit.try_acquire(author, Instant::now()) {
            tracing::info!("chat rate limit reached by a session");
            metrics().rate_limited(Limit::Chat);
            let error = rate_limited_message(wait, self.chat_limit.limit());
            return Ok(Err(Refusal::TooFast(error)));
        }
        let posted = match self
            .store
            .post_message(author, body, nonce, now_millis())
            .await
        {
            Ok(posted) => posted,
            Err(e) => {
                self.chat_limit.refund(author);
                return Err(e);
            }
        };
        if posted.duplicate {
            self.chat_limit.refund(author);
        } else {
            metrics().chat_message_posted();
        }
        // Even a duplicate: the first try may have been stored without anyone being told (its
        // answer lost with a dropped database connection). Pages that have it ignore it.
        self.live.hub.publish_message(posted.message.id);
        Ok(Ok(posted.message))
    }
}

/// Why a chat message was not posted, in words for its author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The body is empty, too long or has control characters.
    Invalid(FieldError),
    /// The author is over the rate limit.
    TooFast(FieldError),
}

impl Refusal {
    /// The message to show next to the composer.
    pub fn error(&self) -> &FieldError {
        match self {
            Refusal::Invalid(e) | Refusal::TooFast(e) => e,
        }
    }
}

/// A fresh random nonce for a chat form.
pub fn new_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Every route of the app.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// Every route of the app and the `extra` ones (the public `/metrics`), behind the same layers.
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    // A request with a body must be done in this long once its headers are in (the server times
    // the headers itself): a client trickling its body does not hold a worker forever.
    let timeout = || TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT);
    let pages = Router::new()
        .route("/", get(routes::home))
        .route(
            "/settings",
            get(routes::show_settings).post(routes::save_settings.layer(timeout())),
        )
        .route("/settings/forget", post(routes::forget.layer(timeout())))
        .route("/messages", post(routes::post_message.layer(timeout())))
        .route_layer(middleware::from_fn_with_state(state.clone(), session_layer));

    let header =
        |name, value| SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value));
    Router::new()
        .merge(pages)
        .merge(extra)
        .route("/live", get(live::endpoint))
        .route("/healthz", get(routes::health))
        .route("/assets/{file}", get(crate::assets::serve))
        .route("/favicon.ico", get(crate::assets::favicon))
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Headers that make every response harder to abuse: no inline or foreign scripts, no
        // framing, no MIME sniffing, no referrer leaking the path elsewhere, nothing cached that
        // did not ask to be (assets do).
        .layer(header(
            header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY,
        ))
        .layer(header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header(header::REFERRER_POLICY, "same-origin"))
        .layer(header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header(header::CACHE_CONTROL, "no-store"))
        .layer(request_log())
        .with_state(state)
}

/// One `debug` line per request, once its response is ready: method, path (never the query
/// string), status and latency. Nothing else about the request is logged: not its cookie, not its
/// body. With `debug` off (the default), a request costs a disabled-level check and a clock read.
fn request_log()
-> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan, (), Served, (), (), ()> {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan)
        .on_request(())
        .on_response(Served)
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

/// The span each request's log line is written in: its method and path.
#[derive(Debug, Clone, Copy)]
struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> Span {
        tracing::debug_span!(
            "request",
            method = %request.method(),
            path = %request.uri().path()
        )
    }
}

/// Logs the response's status and how long it took.
#[derive(Debug, Clone, Copy)]
struct Served;

impl<B> OnResponse<B> for Served {
    fn on_response(self, response: &axum::http::Response<B>, latency: Duration, _: &Span) {
        tracing::debug!(
            status = response.status().as_u16(),
            latency_ms = %format_args!("{:.3}", latency.as_secs_f64() * 1000.0),
            "served"
        );
    }
}

/// The Content-Security-Policy of every response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'; form-action 'self'";
