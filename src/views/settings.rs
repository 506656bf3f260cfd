use maud::{Markup, html};

use super::{Nav, layout};
use crate::settings::{Settings, SettingsErrors, Theme, USERNAME_MAX_CHARS};

/// What the settings form shows: the values in its fields (what was typed, when that was refused,
/// otherwise what is saved) and a message per refused field.
#[derive(Debug, Clone)]
pub struct SettingsView<'a> {
    /// The text in the username field.
    pub username: &'a str,
    /// The selected theme.
    pub theme: Theme,
    /// Messages shown next to their fields.
    pub errors: &'a SettingsErrors,
    /// This session's CSRF token, sent back with the form.
    pub csrf_token: &'a str,
}

/// `GET /settings`: the whole page around [`settings_form`].
pub fn settings_page(saved: &Settings, view: &SettingsView<'_>) -> Markup {
    let main = html! {
        section.card {
            h1 { "Settings" }
            p.hint { "Saved in this server's database for this browser only, and shown on every page." }
            (settings_form(view))
        }
        section.card {
            h2 { "Forget this browser" }
            p { "Deletes your name and theme from the server and gives this browser a new, empty session." }
            form method="post" action="/settings/forget" {
                input type="hidden" name="_csrf" value=(view.csrf_token);
                button.secondary type="submit" { "Forget me" }
            }
        }
    };
    layout("Settings", Nav::Settings, saved, main)
}

/// The settings form itself: a plain form post that works without JavaScript.
pub fn settings_form(view: &SettingsView<'_>) -> Markup {
    let username_error = view.errors.username.as_ref().map(|e| e.message());
    let theme_error = view.errors.theme.as_ref().map(|e| e.message());
    html! {
        form #settings method="post" action="/settings" data-live-change {
            input type="hidden" name="_csrf" value=(view.csrf_token);
            div.field {
                label for="username" { "Username" }
                input #username type="text" name="username" value=(view.username)
                    autocomplete="nickname" spellcheck="false"
                    aria-describedby="username-hint username-error"
                    aria-invalid=[username_error.map(|_| "true")];
                p.hint #username-hint { "Up to " (USERNAME_MAX_CHARS) " characters. Leave it empty to stay anonymous." }
                p.error #username-error role="alert" { @if let Some(e) = username_error { (e) } }
            }
            div.field {
                label for="theme" { "Theme" }
                select #theme name="theme" aria-describedby="theme-error"
                    aria-invalid=[theme_error.map(|_| "true")] {
                    @for theme in Theme::ALL {
                        option value=(theme.as_str()) selected[theme == view.theme] { (theme.label()) }
                    }
                }
                p.error #theme-error role="alert" { @if let Some(e) = theme_error { (e) } }
            }
            button type="submit" { "Save" }
        }
    }
}
