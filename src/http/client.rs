//! The address a request came from: the site's [`ClientAddr`], which the accept loop records in
//! every request's extensions.

pub use crate::site::ClientAddr;
