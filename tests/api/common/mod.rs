//! Shared test helpers: an app on port 0 with a fresh data dir, and a tiny "browser" that keeps
//! the session cookie between requests the way a real one does.

mod app;
pub mod binary;
mod browser;
pub mod live;
pub mod postgres;
mod skip;
pub mod tls;

pub use app::{SECRET_A, SECRET_B, TestApp};
pub use browser::{
    Browser, attribute_after, cookie_pair, encode_form, html_theme, message_ids, selected_theme,
    username_field,
};
pub use skip::skip;

/// A free loopback port: free when asked, so the test binds it (or has a process bind it) at
/// once.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
