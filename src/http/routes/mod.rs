//! The HTTP handlers, one file per page, as zero2prod's `routes/` has them. Each one is thin:
//! it reads the session and the input, asks the site (one method per use case, the same the
//! live socket calls), and renders a view.
//!
//! - [`chat`]: `GET /`, `POST /messages`.
//! - [`settings`]: `GET /settings` and its forms: save, forget me, sign out everywhere else,
//!   download my data, rename or sign out a device.
//! - [`link`]: one-time codes: making and cancelling one on `/settings`, using one on `/link`.
//! - [`health`]: `GET /healthz`.

pub mod chat;
pub mod health;
pub mod link;
pub mod settings;

use axum::Extension;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::error::AppError;
use super::session::ReplaceSession;
use crate::session::Session;
use crate::site::Site;
use crate::views;

pub use chat::{home, post_message};
pub use health::health;
pub use link::{cancel_link, link_form, make_link, show_link, use_link};
pub use settings::{
    export, forget, rename_device, save_settings, show_settings, sign_out_device,
    sign_out_elsewhere,
};

/// Refuses a form whose CSRF token is not this session's (`403`, nothing changed).
fn check_csrf(site: &Site, session: Session, token: &str) -> Result<(), AppError> {
    if site.verify_csrf(session.id, token) {
        Ok(())
    } else {
        Err(AppError::BadCsrfToken)
    }
}

/// The answer to a write that found its session forgotten or its device signed out while it was
/// on its way: `409` with `sentence`, and a new, empty session for the browser. Never a redirect
/// that would read as a success.
fn ended(session: Session, sentence: &str) -> Response {
    let fresh = ReplaceSession(Session::fresh(session.kind).who());
    (
        StatusCode::CONFLICT,
        Extension(fresh),
        Html(views::ended_page(sentence)),
    )
        .into_response()
}

/// A form with nothing in it but its CSRF token: a button ("forget me", "sign out everywhere
/// else", making, cancelling and using a code).
#[derive(Debug, Deserialize)]
pub struct TokenForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
}

/// Any other path.
pub async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "There is no page here.")
}
