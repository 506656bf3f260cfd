//! livesession: a live, server-rendered web app whose per-browser data survives reloads, browser
//! restarts and server restarts.
//!
//! Every browser gets a random session id in a signed, long-lived cookie on its first request;
//! its settings live in a database table keyed by that id: a SQLite file in the data dir, or one
//! PostgreSQL database that several instances share. They are loaded for the very first static
//! render (no flash of the wrong name or theme), written from form posts and live events, and rows
//! nobody has used for `--stale-after` are pruned in the background.
//!
//! [`App::build`] opens everything a [`Config`] names; [`App::run`] serves until a shutdown token
//! is cancelled. The binary (`main.rs`) is a thin wrapper around the two and [`cli`].
//!
//! # Layers
//!
//! Each module imports only from the layers below its own. Within a layer a module may use
//! another of the same layer (`chat` uses `session`), never in a loop. The last column names, in
//! backticks, modules that a layer's modules never import, whatever the direction allows: `live`
//! and `http` reach the store and the hub only through `site`, so they import `site`, `views`,
//! `session` and the protocol types, never `store` or `hub`; `views` never imports `site`; and
//! `store` imports nothing above its layer (the direction says that much already).
//! `tests/layers.rs` reads this table and parses the sources, and fails on an upward import, an
//! import the last column rules out, or a loop.
//!
//! | layer | modules | may import | may not import |
//! | --- | --- | --- | --- |
//! | ground | `address`, `clock`, `limit`, `lock`, `origin`, `shutdown`, `text`, `untrusted` | std and crates only | — |
//! | domain | `device`, `session`, `settings`, `chat`, `retention`, `link` | ground (no axum, no shared state) | — |
//! | storage | `store` | domain, ground | anything above its layer |
//! | telemetry | `metrics`, `refusals` | storage, domain, ground | — |
//! | presentation | `assets`, `views` | telemetry and below | `site` |
//! | serving core | `hub`, `site` | presentation and below | — |
//! | serving | `live`, `http` | serving core and below | `store`, `hub` |
//! | wiring | `config`, `prune`, `backups`, `cluster`, `app`, `startup` | serving and below | — |
//! | entry | `cli`, `main.rs` | everything | — |
//!
//! # Modules
//!
//! - [`address`]: client addresses as limits per address count them.
//! - [`clock`]: `Millis`, the wall clock every stored time is read from.
//! - [`limit`]: rate limits, and the token bucket behind each.
//! - [`lock`]: the one lock policy: locks that a panic does not poison.
//! - [`origin`]: the origin links for another device name (`--public-url`, the `Host` when
//!   this server answers for it, the LAN address), and where the server is reached.
//! - [`shutdown`]: the shutdown signal.
//! - [`text`]: what a person sees of a piece of text: NFC, graphemes, bidi controls, invisible
//!   characters, combining marks.
//! - [`untrusted`]: client-supplied text as a log line shows it: escaped and cut short.
//! - [`device`]: a session's devices: ids, names from the User-Agent, public handles, how
//!   recently each was active.
//! - [`session`]: session ids, the signed cookie, signing keys and CSRF tokens.
//! - [`settings`]: the validated settings: usernames, themes, per-field changes.
//! - [`chat`]: chat messages: what a body may contain, what a stored message is.
//! - [`retention`]: when a row is stale, and what a prune pass removed.
//! - [`link`]: one-time codes that carry a session to another device.
//! - [`store`]: the database behind a narrow interface (SQLite, or PostgreSQL for several
//!   instances), with its own types and errors.
//! - [`metrics`]: the Prometheus registry: counters any layer above the store bumps.
//! - [`refusals`]: refused connections and sockets: counted, and summarised in the log.
//! - [`assets`]: the embedded, content-hashed static files.
//! - [`views`]: the maud pages, and the cache of rendered settings pages.
//! - [`hub`]: the in-process pub/sub of session events: a change to a session's other tabs.
//!   (Chat messages reach every chat page through the site's room, rendered once.)
//! - [`site`]: the only door from the transports down: one method per use case (save settings,
//!   post a message, forget a browser, link a device, catch a page up), which a form post and a
//!   live event both call; its state (the store, the hub, the room, the limits) is private.
//! - [`live`]: the `/live` WebSocket: protocol, the socket loop.
//! - [`http`]: the HTTP handlers, the session cookie layer, security headers, `/metrics`,
//!   the accept loop.
//! - [`config`]: flags and `LIVESESSION_*` environment variables.
//! - [`prune`]: the background task that deletes stale rows.
//! - [`cluster`]: how instances sharing a PostgreSQL database hear each other's writes.
//! - [`app`]: the shared [`AppState`] and the router.
//! - [`startup`]: [`App`]: bind, open, serve, shut down.
//! - [`cli`]: the command line: `serve`, and the maintenance commands `backup`, `prune`, `stats`.

#![forbid(unsafe_code)]

pub mod address;
pub mod app;
pub mod assets;
pub mod backups;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod device;
pub mod http;
pub mod hub;
pub mod limit;
pub mod link;
pub mod live;
pub mod lock;
pub mod metrics;
pub mod origin;
pub mod prune;
pub mod refusals;
pub mod retention;
pub mod session;
pub mod settings;
pub mod shutdown;
pub mod site;
pub mod startup;
pub mod store;
pub mod text;
pub mod untrusted;
pub mod views;

pub use app::AppState;
pub use config::Config;
pub use startup::App;
