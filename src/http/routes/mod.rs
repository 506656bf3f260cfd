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
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;

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

/// The headers a page can carry on its way out: its type, the security headers, HSTS, and a
/// cookie or two.
const PAGE_HEADERS: usize = 12;

/// An HTML page whose header map is sized for [`PAGE_HEADERS`] at once, instead of growing as
/// the layers add theirs.
fn html_page(body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    *headers = HeaderMap::with_capacity(PAGE_HEADERS);
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// Any other path.
pub async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "There is no page here.")
}

/// What a form whose text is not UTF-8 is answered.
pub const NOT_UTF8: &str = "This form was not sent as UTF-8 text, so nothing was changed. \
                            Reload the page and try again.";

/// A posted form, as axum's `Form` reads it, except that a body whose text (once its `%XX`
/// escapes are decoded) is not UTF-8 is refused with `400` and [`NOT_UTF8`] instead of having
/// the bad bytes silently replaced with U+FFFD.
pub struct Form<T>(pub T);

impl<T, S> FromRequest<S> for Form<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let (parts, body) = request.into_parts();
        let is_form = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| {
                value
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            });
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        if is_form && !is_utf8_form(&bytes) {
            return Err((StatusCode::BAD_REQUEST, NOT_UTF8).into_response());
        }
        let request = Request::from_parts(parts, Body::from(bytes));
        axum::Form::<T>::from_request(request, state)
            .await
            .map(|axum::Form(value)| Form(value))
            .map_err(IntoResponse::into_response)
    }
}

/// True when the text of a form body, its `%XX` escapes decoded, is UTF-8. (`&`, `=` and `+`
/// are ASCII, so the whole body is valid exactly when every name and value is.)
fn is_utf8_form(body: &[u8]) -> bool {
    percent_encoding::percent_decode(body).decode_utf8().is_ok()
}

#[cfg(test)]
mod tests {
    use super::is_utf8_form;

    #[test]
    fn a_form_is_utf8_only_when_its_decoded_text_is() {
        assert!(is_utf8_form(b"_csrf=x&username=Ren%C3%A9e+B&theme=dark"));
        assert!(is_utf8_form("username=Renée".as_bytes()));
        assert!(is_utf8_form(b"username=100%25&x=%"));
        assert!(!is_utf8_form(b"username=%FF"));
        assert!(!is_utf8_form(b"username=a\xffb"));
        assert!(!is_utf8_form(b"username=%C3&theme=%A9"));
        assert!(!is_utf8_form(b"user%C3=x"));
    }
}
