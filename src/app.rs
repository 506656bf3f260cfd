//! The application state and the router, kept apart from binding a listener so tests and the
//! binary build the very same app.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::routing::{MethodFilter, get, on, post};
use tower_http::timeout::TimeoutLayer;

use crate::http::{MAX_BODY_BYTES, REQUEST_TIMEOUT, headers, metrics, routes, session};
use crate::live::{self, Live};
use crate::site::Site;

/// What the routes share. Each handler takes the part it needs: the pages and forms the
/// [`Site`], the live socket and `/metrics` the [`Live`] layer (which holds the same site).
#[derive(Clone)]
pub struct AppState {
    /// The store, the keys and the runtime state of every request.
    pub site: Site,
    /// The live sockets.
    pub live: Arc<Live>,
}

impl FromRef<AppState> for Site {
    fn from_ref(state: &AppState) -> Site {
        state.site.clone()
    }
}

impl FromRef<AppState> for Arc<Live> {
    fn from_ref(state: &AppState) -> Arc<Live> {
        Arc::clone(&state.live)
    }
}

/// Every route of the app, behind the same layers; with `public_metrics`, `/metrics` too.
pub fn router(state: AppState, public_metrics: bool) -> Router {
    // A request with a body must be done in this long once its headers are in (the server times
    // the headers itself): a client trickling its body does not hold a worker forever.
    let timeout = || TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT);
    let body_limit = DefaultBodyLimit::max(MAX_BODY_BYTES);
    let pages = Router::new()
        .route("/", get(routes::home))
        .route(
            "/settings",
            get(routes::show_settings).post(routes::save_settings.layer(timeout())),
        )
        .route("/settings/forget", post(routes::forget.layer(timeout())))
        .route("/settings/export", get(routes::export))
        .route("/settings/link", post(routes::make_link.layer(timeout())))
        .route(
            "/settings/link/cancel",
            post(routes::cancel_link.layer(timeout())),
        )
        .route("/link", get(routes::link_form))
        .route(
            "/link/{code}",
            get(routes::show_link).post(routes::use_link.layer(timeout())),
        )
        .route(
            "/settings/sign-out-elsewhere",
            post(routes::sign_out_elsewhere.layer(timeout())),
        )
        .route(
            "/settings/devices/sign-out",
            post(routes::sign_out_device.layer(timeout())),
        )
        .route(
            "/settings/devices/rename",
            post(routes::rename_device.layer(timeout())),
        )
        .route("/messages", post(routes::post_message.layer(timeout())))
        .route_layer(
            headers::secured(body_limit).layer(session::SessionLayer::new(state.site.clone())),
        );

    let app = Router::new()
        .merge(metrics::public_routes(public_metrics))
        // GET for HTTP/1.1's upgrade, CONNECT for HTTP/2's (RFC 8441).
        .route(
            "/live",
            on(MethodFilter::GET.or(MethodFilter::CONNECT), live::endpoint),
        )
        .route("/healthz", get(routes::health))
        .route("/assets/{file}", get(crate::assets::serve))
        .route("/favicon.ico", get(crate::assets::favicon))
        .fallback(routes::not_found)
        .layer(headers::secured(body_limit))
        .merge(pages);
    headers::logged(app).with_state(state)
}
