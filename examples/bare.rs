//! The baseline of the benchmarks: a bare axum handler serving a constant page, with no cookie, no
//! database and no template, on `axum::serve`. What livesession does per request is measured
//! against this, on the same machine in the same run.
//!
//! `cargo run --release --example bare -- ADDR PAGE_BYTES [CERT KEY]`
//!
//! With `CERT KEY` (PEM files) it serves HTTPS instead, with the TLS choices livesession makes
//! (src/http/tls.rs: rustls with the ring provider, TLS 1.2 and 1.3 at their safe defaults, ALPN
//! `http/1.1`) and HTTP/1.1 connections on hyper as livesession serves them, with no connection
//! limit, timeout or upgrade: the cost of TLS and nothing else.

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:4001".to_owned());
    let size: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let tls = args.next().zip(args.next());
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
    let Some((cert, key)) = tls else {
        println!(
            "bare listening on http://{}",
            listener.local_addr().unwrap()
        );
        axum::serve(listener, app).await.unwrap();
        return;
    };

    let chain = CertificateDer::pem_file_iter(&cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    println!(
        "bare listening on https://{}",
        listener.local_addr().unwrap()
    );
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, service) = (acceptor.clone(), TowerToHyperService::new(app.clone()));
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
