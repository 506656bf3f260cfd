use maud::{Markup, html};

use super::Screen;
use crate::settings::{Theme, USERNAME_MAX_CHARS};

/// `/settings`: the settings form and the "forget me" button.
pub(super) fn main(screen: &Screen<'_>) -> Markup {
    html! {
        section.card {
            h1 { "Settings" }
            p.hint { "Saved in this server's database for this browser only, and shown on every page." }
            (form(screen))
        }
        (super::link::card(screen))
        section.card {
            h2 { "Your data" }
            p { "Everything this server keeps of this browser: your settings, when they were saved and last used, and every chat message you sent, as a JSON file." }
            p { a.button href="/settings/export" download="livesession-data.json" { "Download my data" } }
        }
        @if let Some(card) = &screen.devices {
            (super::devices::card(card, screen.csrf_token))
        }
        section.card {
            h2 { "Other devices" }
            p { "Signs out every other device of this session at once, and any copy of this browser's cookie: they start over with an empty session. What you saved stays here. Do it after you used this name on a device that is not yours." }
            form method="post" action="/settings/sign-out-elsewhere" {
                input type="hidden" name="_csrf" value=(screen.csrf_token);
                button.secondary type="submit" { "Sign out everywhere else" }
            }
        }
        section.card {
            h2 { "Forget this browser" }
            p { "Deletes your name and theme from the server and gives this browser a new, empty session. The chat messages you sent stay in the chat, under the names they were sent with, no longer linked to this browser." }
            form method="post" action="/settings/forget" {
                input type="hidden" name="_csrf" value=(screen.csrf_token);
                button.secondary type="submit" { "Forget me" }
            }
        }
    }
}

/// The settings form: a plain form post without JavaScript, a live form with it.
fn form(screen: &Screen<'_>) -> Markup {
    let errors = screen.form.errors;
    let username_error = errors
        .and_then(|e| e.username.as_ref())
        .map(|e| e.message());
    let theme_error = errors.and_then(|e| e.theme.as_ref()).map(|e| e.message());
    let username = screen
        .form
        .typed_username
        .unwrap_or(screen.saved.username.as_str());
    let selected = screen.saved.theme;
    html! {
        form #settings method="post" action="/settings" data-live-change {
            input type="hidden" name="_csrf" value=(screen.csrf_token);
            div.field {
                label for="username" { "Username" }
                input #username type="text" name="username" value=(username)
                    autocomplete="nickname" spellcheck="false"
                    aria-describedby="username-hint username-error"
                    aria-invalid=[username_error.map(|_| "true")];
                p.hint #username-hint { "Up to " (USERNAME_MAX_CHARS) " characters. Leave it empty to stay anonymous." }
                p.error #username-error role="alert" { @if let Some(e) = username_error { (e) } }
                p.remote #username-remote data-live-client role="status" {}
                p.remote #username-overtaken data-live-client role="status" {}
            }
            div.field {
                label for="theme" { "Theme" }
                select #theme name="theme" aria-describedby="theme-error"
                    aria-invalid=[theme_error.map(|_| "true")] {
                    @for theme in Theme::ALL {
                        option value=(theme.as_str()) selected[theme == selected] { (theme.label()) }
                    }
                }
                p.error #theme-error role="alert" { @if let Some(e) = theme_error { (e) } }
                p.remote #theme-remote data-live-client role="status" {}
                p.remote #theme-overtaken data-live-client role="status" {}
            }
            div.actions {
                button type="submit" { "Save" }
                span.status #settings-status data-live-client role="status" aria-live="polite" {}
            }
        }
    }
}
