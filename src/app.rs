//! The application state and the router, kept apart from binding a listener so tests and the
//! binary build the very same app.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use crate::live::{self, Live};
use crate::prune::Retention;
use crate::routes;
use crate::session::{Keys, Session, session_layer};
use crate::settings::Settings;
use crate::store::{Store, StoreError, now_millis};

/// The largest request body accepted; larger ones get `413 Payload Too Large`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

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
}

impl AppState {
    /// The settings to show to `session` and their version (defaults and 0 without a row): one
    /// lookup, and a write only when `read_at` is older than the touch window. A new session has
    /// no row, so it costs nothing at all.
    pub async fn settings_for(&self, session: Session) -> Result<(Settings, i64), StoreError> {
        if session.is_new {
            return Ok((Settings::default(), 0));
        }
        let Some(stored) = self.store.load(session.id).await? else {
            return Ok((Settings::default(), 0));
        };
        let now = now_millis();
        let touch_before = self.retention.touch_before(now);
        if stored.read_at < touch_before {
            self.store.touch(session.id, now, touch_before).await?;
        }
        Ok((stored.settings, stored.version))
    }
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
        .route_layer(middleware::from_fn_with_state(state.clone(), session_layer));

    Router::new()
        .merge(pages)
        .route("/live", get(live::endpoint))
        .route("/healthz", get(routes::health))
        .route("/assets/{file}", get(crate::assets::serve))
        .route("/favicon.ico", get(crate::assets::favicon))
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
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
             connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; \
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
