//! `GET /healthz`, for load balancers and monitors.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::site::{Health, Site};

/// `GET /healthz`: `200 {"status":"ok"}` when the database answers and takes a write (with
/// `"disk":"low"` while free space is under `--min-free-disk`), `503` with the reason otherwise.
pub async fn health(State(site): State<Site>) -> Response {
    match site.health().await {
        Health::Ok => Json(serde_json::json!({ "status": "ok" })).into_response(),
        // Still serving everyone who has saved before: not a reason to take the server out.
        Health::LowDisk => Json(serde_json::json!({
            "status": "ok",
            "disk": "low",
            "new_sessions": "not saved: free disk space is under --min-free-disk",
        }))
        .into_response(),
        Health::Unavailable(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "unavailable", "reason": reason })),
        )
            .into_response(),
    }
}
