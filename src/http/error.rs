//! The one error type of the HTTP handlers.
//!
//! Internal failures are logged with their cause and answered with a plain message that leaks
//! nothing; refusals the client can act on say what to do. Validation problems are not errors: the
//! handlers render them next to the field.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::clock::whole_seconds;
use crate::metrics::metrics;
use crate::site::{Limited, StoreError, Unavailable, Whose};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The database failed; nothing was changed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The form's CSRF token is missing or is not this session's.
    #[error("missing or invalid CSRF token")]
    BadCsrfToken,
    /// Over a rate limit of the client's browser or address (whose); it may try again after
    /// this long.
    #[error("too many requests")]
    TooFast(std::time::Duration, Whose),
}

impl From<Limited> for AppError {
    fn from(limited: Limited) -> AppError {
        match limited {
            Limited::TooFast(wait, whose) => AppError::TooFast(wait, whose),
            Limited::Store(e) => AppError::Store(e),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::Store(e) => {
                metrics().database_error(&e);
                let unavailable = e.unavailable();
                tracing::error!(error = %e, reason = unavailable.reason(), "database request failed");
                let status = match unavailable {
                    Unavailable::DiskFull => StatusCode::INSUFFICIENT_STORAGE,
                    _ => StatusCode::SERVICE_UNAVAILABLE,
                };
                (status, unavailable.message()).into_response()
            }
            AppError::TooFast(wait, whose) => {
                let seconds = whole_seconds(wait);
                let from = match whose {
                    Whose::Browser => "this browser",
                    Whose::Network => {
                        "your network address (every browser behind it shares one allowance)"
                    }
                    Whose::Everyone => "everyone together",
                };
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(axum::http::header::RETRY_AFTER, seconds.to_string())],
                    format!(
                        "Too many requests like this one came from {from}, so nothing was \
                         done. Please try again in {seconds} s."
                    ),
                )
                    .into_response()
            }
            AppError::BadCsrfToken => (
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from this site, so nothing was changed. Reload the page and try again.",
            )
                .into_response(),
        }
    }
}
