//! Who is at the other end of a connection, as far as limits per client address are concerned.
//!
//! The accept loop (`http::server`) puts a [`ClientAddr`] into every request's extensions: the
//! address of the socket's peer. Handlers and the live endpoint take it as an extractor, so a
//! limit per address (chat messages, "forget me") counts one client however many sessions it
//! makes.

use std::net::{IpAddr, Ipv4Addr};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// The address a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    /// The address the accept loop recorded; a request that did not come through it (a test
    /// calling the router directly) counts as the unspecified address.
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientAddr, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientAddr>()
            .copied()
            .unwrap_or(ClientAddr(IpAddr::V4(Ipv4Addr::UNSPECIFIED))))
    }
}
