//! The baseline of the benchmarks: a bare axum handler serving a constant page, with no cookie, no
//! database and no template, on `axum::serve`. What livesession does per request is measured
//! against this, on the same machine in the same run.
//!
//! `cargo run --release --example bare -- ADDR PAGE_BYTES`

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:4001".to_owned());
    let size: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let page: &'static str = Box::leak(
        format!(
            "<!DOCTYPE html><html><body>{}</body></html>",
            "x".repeat(size.saturating_sub(40))
        )
        .into_boxed_str(),
    );
    let app = Router::new().route(
        "/settings",
        get(move || async move { Html(page) }).post(|| async {
            (StatusCode::SEE_OTHER, [(header::LOCATION, "/settings")]).into_response()
        }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    println!(
        "bare listening on http://{}",
        listener.local_addr().unwrap()
    );
    axum::serve(listener, app).await.unwrap();
}
