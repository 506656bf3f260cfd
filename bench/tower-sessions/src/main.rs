//! The tower-sessions baseline of `bench/run`: livesession's settings page (a username and a theme
//! per browser, kept in SQLite under a signed session cookie) written the way a typical axum user
//! would write it with tower-sessions and its SQLite store (tower-sessions-sqlx-store).
//!
//! `tower-sessions-baseline --listen 127.0.0.1:4452 --db /tmp/sessions.db`
//!
//! - `GET /settings` reads `username` and `theme` from the session and renders the page.
//! - `POST /settings` (form fields `username`, `theme`; anything else, such as `_csrf`, is ignored)
//!   writes them into the session and answers `303 See Other` to `/settings`. tower-sessions saves
//!   a modified session to the store before the response goes out: one SQLite write per change.
//!
//! The database is in WAL mode with `synchronous=FULL`, like livesession's `--durability full`.

use axum::Router;
use axum::extract::Form;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use tower_sessions::cookie::{Key, SameSite, time::Duration};
use tower_sessions::session_store::ExpiredDeletion;
use tower_sessions::{Expiry, Session, SessionManagerLayer};
use tower_sessions_sqlx_store::SqliteStore;
use tower_sessions_sqlx_store::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};

const THEMES: [(&str, &str); 3] = [
    ("system", "Same as my system"),
    ("light", "Light"),
    ("dark", "Dark"),
];

#[derive(Deserialize)]
struct SettingsForm {
    username: String,
    theme: String,
}

async fn show(session: Session) -> Result<Markup, StatusCode> {
    // The first `get` loads the session's record from the store; the second reads the same copy.
    let username: String = session
        .get("username")
        .await
        .map_err(internal)?
        .unwrap_or_default();
    let theme: String = session
        .get("theme")
        .await
        .map_err(internal)?
        .unwrap_or_else(|| "system".into());
    let shown = if username.is_empty() {
        "anonymous"
    } else {
        &username
    };
    Ok(html! {
        (DOCTYPE)
        html lang="en" data-theme=(theme) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                meta name="description" content="Your name and theme, saved on this server for this browser.";
                title { "Settings · livesession" }
                link rel="icon" href="/assets/icon.3026eb8e3ca2.svg" type="image/svg+xml";
                link rel="stylesheet" href="/assets/app.425e85926420.css";
                script src="/assets/app.251ba1b02b63.js" defer {}
            }
            body {
                a.skip-link href="#main" { "Skip to content" }
                header.site {
                    a.brand href="/" { "livesession" }
                    nav aria-label="Main" { ul {
                        li { a href="/" { "Chat" } }
                        li { a href="/settings" aria-current="page" { "Settings" } }
                    } }
                    p.who { "You are " strong #current-username { (shown) } }
                    p #status role="status" aria-live="polite" {}
                }
                main #main {
                    section.card {
                        h1 { "Settings" }
                        p.hint { "Saved in this server's database for this browser only, and shown on every page." }
                        form #settings method="post" action="/settings" {
                            div.field {
                                label for="username" { "Username" }
                                input #username type="text" name="username" value=(username)
                                    autocomplete="nickname" spellcheck="false"
                                    aria-describedby="username-hint username-error";
                                p.hint #username-hint { "Up to 40 characters. Leave it empty to stay anonymous." }
                                p.error #username-error role="alert" {}
                            }
                            div.field {
                                label for="theme" { "Theme" }
                                select #theme name="theme" aria-describedby="theme-hint theme-error" {
                                    @for (value, label) in THEMES {
                                        option value=(value) selected[value == theme] { (label) }
                                    }
                                }
                                p.hint #theme-hint { "Applies to every page of this site, in every tab of this browser." }
                                p.error #theme-error role="alert" {}
                            }
                            div.actions {
                                button type="submit" { "Save" }
                                span.status #settings-status role="status" aria-live="polite" {}
                            }
                        }
                    }
                    section.card {
                        h2 { "Forget this browser" }
                        p { "Deletes your name and theme from the server and gives this browser a new, empty session." }
                        form method="post" action="/settings/forget" {
                            button.secondary type="submit" { "Forget me" }
                        }
                    }
                }
                footer.site {
                    p { "Settings are kept for 400 days after your last visit; forgetting this browser deletes them at once. "
                        a href="/privacy" { "Privacy" } }
                }
            }
        }
    })
}

async fn save(session: Session, Form(form): Form<SettingsForm>) -> Result<Response, StatusCode> {
    // The same rules as livesession's: at most 40 characters, one of the three themes.
    if form.username.chars().count() > 40 || !THEMES.iter().any(|(v, _)| *v == form.theme) {
        return Err(StatusCode::UNPROCESSABLE_ENTITY);
    }
    session
        .insert("username", form.username)
        .await
        .map_err(internal)?;
    session
        .insert("theme", form.theme)
        .await
        .map_err(internal)?;
    Ok(Redirect::to("/settings").into_response()) // 303 See Other
}

fn internal(err: impl std::fmt::Display) -> StatusCode {
    eprintln!("session error: {err}");
    StatusCode::INTERNAL_SERVER_ERROR
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut listen, mut db) = ("127.0.0.1:4452".to_owned(), "sessions.db".to_owned());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(value)) => listen = value,
            ("--db", Some(value)) => db = value,
            _ => return Err("usage: tower-sessions-baseline [--listen ADDR] [--db PATH]".into()),
        }
    }

    // sqlx's default pool (up to 10 connections), each connection in WAL mode with synchronous=FULL.
    let options = SqliteConnectOptions::new()
        .filename(&db)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let pool = SqlitePoolOptions::new().connect_with(options).await?;
    let store = SqliteStore::new(pool);
    store.migrate().await?;
    // As the store's own example does: expired sessions deleted once a minute.
    tokio::spawn(
        store
            .clone()
            .continuously_delete_expired(tokio::time::Duration::from_secs(60)),
    );

    // A signed cookie like livesession's (HttpOnly, SameSite=Lax, 400 days, plain HTTP on loopback).
    // The key is new at every start here; a deployment would load it from its configuration.
    let sessions = SessionManagerLayer::new(store)
        .with_secure(false)
        .with_same_site(SameSite::Lax)
        .with_expiry(Expiry::OnInactivity(Duration::days(400)))
        .with_signed(Key::generate());

    let app = Router::new()
        .route("/settings", get(show).post(save))
        .layer(sessions);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!(
        "tower-sessions baseline listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
