//! `--redirect-http ADDR`: a plain HTTP listener (port 80, usually) that serves nothing but a
//! `308 Permanent Redirect` of every request to the same path on the HTTPS listener, so a
//! typed `example.com` reaches the site. A `Host` that is not a host name or address gets `400`.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{HOST, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The router of the redirect listener: every request to `https://<its host>[:https_port]`.
pub fn router(https_port: u16) -> Router {
    Router::new().fallback(redirect).with_state(https_port)
}

async fn redirect(State(https_port): State<u16>, request: Request) -> Response {
    let Some(host) = request
        .headers()
        .get(HOST)
        .and_then(|host| host.to_str().ok())
        .and_then(host_name)
    else {
        return (
            StatusCode::BAD_REQUEST,
            "A request needs the Host it is for.",
        )
            .into_response();
    };
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str());
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    match HeaderValue::try_from(format!("https://{host}{port}{path}")) {
        Ok(location) => (StatusCode::PERMANENT_REDIRECT, [(LOCATION, location)]).into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "That path cannot be redirected.").into_response(),
    }
}

/// The host part of a `Host` header (without its port), if it is a host name, an IPv4 address
/// or a bracketed IPv6 address.
fn host_name(host: &str) -> Option<&str> {
    let name = if host.starts_with('[') {
        &host[..=host.find(']')?]
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '[' | ']');
    (!name.is_empty() && name.len() <= 253 && name.chars().all(fine)).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_part_is_kept_and_anything_else_refused() {
        assert_eq!(host_name("example.com"), Some("example.com"));
        assert_eq!(host_name("example.com:80"), Some("example.com"));
        assert_eq!(host_name("[::1]:80"), Some("[::1]"));
        assert_eq!(host_name("evil.com/x"), None);
        assert_eq!(host_name("a@b"), None);
        assert_eq!(host_name(""), None);
        assert_eq!(host_name(&"a".repeat(300)), None);
    }
}
