//! The HTTP side: the handlers of the pages and forms, the layer that gives every browser its
//! session cookie, the headers every response carries, `/metrics`, and the accept loop with the
//! time limits a public server needs. The router that puts them together is `app`'s.
//!
//! - [`client`]: the address a request came from (behind a trusted proxy, the one it names),
//!   for limits per client.
//! - [`routes`]: the handlers, thin: read the session and the form, ask the site, render a view.
//! - [`session`]: the session cookie's layer in front of the page routes.
//! - [`error`]: what a failed handler answers.
//! - [`headers`]: security headers and the request log.
//! - [`metrics`]: `GET /metrics`.
//! - [`limits`]: how many connections are held, in all and per client address.
//! - [`server`]: the accept loop.
//! - [`connection`]: one accepted connection served under its idle timer.
//! - [`redirect`]: `--redirect-http`, every plain request sent to HTTPS.
//! - [`tls`]: HTTPS from certificate files (reloaded on `SIGHUP`) or ACME, HTTP/2 by ALPN.

pub mod client;
mod connection;
pub mod error;
pub mod headers;
pub mod limits;
pub mod metrics;
pub mod redirect;
pub mod routes;
pub mod server;
pub mod session;
pub mod tls;

use std::time::Duration;

/// The largest request body accepted; larger ones get `413 Payload Too Large`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The longest a request may take once its headers are in.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
