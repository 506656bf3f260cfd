//! `GET /metrics`: every metric in the Prometheus text format, on the public listener with
//! `--metrics`, or on a listener of its own with `--metrics-listen ADDR` (the public one then
//! answers `404` there, as it does by default).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::prometheus_text;

use crate::live::Live;

/// `GET /metrics`: the registry, with the live layer's socket count and the store's write
/// times read now.
pub async fn endpoint(State(live): State<Arc<Live>>) -> Response {
    let text = live.site.metrics_text(live.open_sockets());
    ([(CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], text).into_response()
}

/// The routes the public listener adds: `/metrics` with `--metrics`, else none.
pub fn public_routes<S>(enabled: bool) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Live>: axum::extract::FromRef<S>,
{
    if enabled {
        Router::new().route("/metrics", get(endpoint))
    } else {
        Router::new()
    }
}

/// The whole app of a `--metrics-listen` listener: `/metrics`, and `404` for anything else.
pub fn router(live: Arc<Live>) -> Router {
    Router::new()
        .route("/metrics", get(endpoint))
        .fallback(super::routes::not_found)
        .with_state(live)
}
