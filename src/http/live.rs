//! `GET /live` as the router sees it: the live layer's endpoint, given the client's address (the
//! one the accept loop recorded, the forwarded one behind a trusted proxy) for its limits per
//! address.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::HeaderMap;
use axum::response::Response;

use super::client::ClientAddr;
use crate::live::{self, Live};

/// `GET /live`: see [`live::endpoint`].
pub async fn endpoint(
    State(live): State<Arc<Live>>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    live::endpoint(live, client, headers, upgrade).await
}
