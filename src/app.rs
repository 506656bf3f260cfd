//! The application state and the router, kept apart from binding a listener so tests and the
//! binary build the very same app.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tower_http::timeout::TimeoutLayer;

use std::time::{Duration, Instant};

use crate::chat::{Message, MessageBody, RateLimiter, rate_limited_message};
use crate::live::{self, Live};
use crate::prune::Retention;
use crate::routes;
use crate::session::{Forgotten, SessionId, Verdict};
use crate::session::{Keys, Session, session_layer};
use crate::settings::FieldError;
use crate::settings::Settings;
use crate::store::{Store, StoreError, now_millis};

/// The largest request body accepted; larger ones get `413 Payload Too Large`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The longest a request may take once its headers are in.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
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
}

impl AppState {
    /// The session a request's cookie names, with forgotten sessions treated as invalid.
    pub fn verify_session(&self, headers: &HeaderMap) -> Verdict {
        match self.keys.verify(headers) {
            Verdict::Current(id) | Verdict::Previous(id) if self.forgotten.contains(id) => {
                Verdict::Invalid
            }
            verdict => verdict,
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
            match self.store.touch(session.id, now).await? {
                Some(touched) => stored = touched,
                None => return Ok((Settings::default(), 0)),
            }
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
            self.live.hub.publish_message(posted.message.id);
        }
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
    let pages = Router::new()
        .route("/", get(routes::home))
        .route(
            "/settings",
            get(routes::show_settings).post(routes::save_settings),
        )
        .route("/settings/forget", post(routes::forget))
        .route("/messages", post(routes::post_message))
        .route_layer(middleware::from_fn_with_state(state.clone(), session_layer));

    Router::new()
        .merge(pages)
        .route("/live", get(live::endpoint))
        .route("/healthz", get(routes::health))
        .route("/assets/{file}", get(crate::assets::serve))
        .route("/favicon.ico", get(crate::assets::favicon))
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // A request (headers aside, which the server times itself) must be done in this long: a
        // client trickling its body does not hold a worker forever.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// Headers that make every response harder to abuse: no inline or foreign scripts, no framing,
/// no MIME sniffing, no referrer leaking the path elsewhere.
async fn security_headers(request: Request, next: Next) -> Response {
    const HEADERS: [(HeaderName, &str); 4] = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; object-src 'none'; base-uri 'none'; \
             frame-ancestors 'none'; form-action 'self'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in HEADERS {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
