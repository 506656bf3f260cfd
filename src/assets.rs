//! Static files compiled into the binary, served under content-hashed names.
//!
//! A file's URL carries a hash of its bytes, so browsers may cache it forever: a new build with a
//! changed file has a new URL. Nothing is fetched from anywhere else, so the app works offline.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One embedded file.
pub struct Asset {
    /// The URL it is served at, with its content hash: `/assets/app.1a2b3c4d5e6f.css`.
    pub url: String,
    body: &'static str,
    content_type: &'static str,
}

impl Asset {
    fn new(stem: &str, extension: &str, content_type: &'static str, body: &'static str) -> Asset {
        let digest = Sha256::digest(body.as_bytes());
        let hash: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        Asset {
            url: format!("/assets/{stem}.{hash}.{extension}"),
            body,
            content_type,
        }
    }
}

/// The stylesheet of every page.
pub static STYLESHEET: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "app",
        "css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    )
});

/// The live client. Its hash doubles as the build id of the live protocol: a page whose script
/// hash is not the server's is told to reload.
pub static LIVE_SCRIPT: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "live",
        "js",
        "text/javascript; charset=utf-8",
        include_str!("assets/live.js"),
    )
});

impl Asset {
    /// The content hash in the file name.
    pub fn hash(&self) -> &str {
        let (_, rest) = self.url.rsplit_once('/').expect("asset URLs have a path");
        rest.split('.')
            .nth(1)
            .expect("asset names are stem.hash.ext")
    }
}

/// The page icon (also answered at `/favicon.ico`, where browsers look without being told).
pub static ICON: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "icon",
        "svg",
        "image/svg+xml",
        include_str!("assets/icon.svg"),
    )
});

fn all() -> [&'static Asset; 3] {
    [&STYLESHEET, &LIVE_SCRIPT, &ICON]
}

/// `GET /favicon.ico`: the icon, for browsers and tools that ask for it by its old name.
pub async fn favicon() -> Response {
    respond(&ICON)
}

/// `GET /assets/{file}`: the embedded file of that exact hashed name, cached for a year.
pub async fn serve(Path(file): Path<String>) -> Response {
    let wanted = format!("/assets/{file}");
    match all().into_iter().find(|asset| asset.url == wanted) {
        Some(asset) => respond(asset),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

fn respond(asset: &Asset) -> Response {
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        ),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        ),
    ];
    (headers, asset.body).into_response()
}
