//! HTML, rendered with maud. A page is a [`Screen`]: plain data about one session at one moment.
//! [`document`] renders the whole page for the first, static response; [`body`] renders the part
//! the live layer sends after a change. `document` is `body` inside the `<html>` frame, so the
//! static and live paths can never disagree.

mod cache;
mod chat;
mod devices;
mod export;
mod link;
mod sentences;
mod settings;

pub use cache::{PageCache, QrCache};
pub use chat::{
    ChatScreen, PRESENCE_ITEM_OVERHEAD, PRESENCE_LIST_BYTES, PRESENCE_NAMES, PresenceList,
    listed_name, message_item, presence_items,
};
pub use devices::{DevicesCard, Joined};
pub use export::{EXPORT_FILE_NAME, EXPORT_VERSION, export_json};
pub use link::{FreshCode, LinkCard, LinkPage, ended_page, link_page, minutes_left, qr_svg};
pub use sentences::{chat_too_fast, unusable_code};

use maud::{DOCTYPE, Markup, html};

use crate::assets::{ICON, LIVE_SCRIPT, STYLESHEET};
use crate::settings::{Settings, SettingsErrors, Theme};

/// The pages that have a live view. The name travels in the join message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum View {
    /// `/`: the chat room.
    Chat,
    /// `/settings`.
    Settings,
}

impl View {
    /// The name used in `data-live-view` and in the join message.
    pub fn as_str(self) -> &'static str {
        match self {
            View::Chat => "chat",
            View::Settings => "settings",
        }
    }

    fn title(self) -> &'static str {
        match self {
            View::Chat => "Chat",
            View::Settings => "Settings",
        }
    }
}

/// The settings form's own state, when it differs from what is saved: what was typed into a field
/// that was refused, and why.
#[derive(Debug, Clone, Copy, Default)]
pub struct FormState<'a> {
    /// The refused username, shown back in its field instead of the saved one.
    pub typed_username: Option<&'a str>,
    /// Messages shown next to their fields.
    pub errors: Option<&'a SettingsErrors>,
}

/// Everything one page shows to one session.
#[derive(Debug, Clone, Copy)]
pub struct Screen<'a> {
    pub view: View,
    /// The saved settings (or the defaults).
    pub saved: &'a Settings,
    /// The saved row's version (0 when there is no row); lets the live client skip a redundant
    /// first render.
    pub version: i64,
    /// This session's CSRF token, for forms and the live join.
    pub csrf_token: &'a str,
    /// The settings form's unsaved state.
    pub form: FormState<'a>,
    /// The chat room, on the chat view.
    pub chat: Option<ChatScreen<'a>>,
    /// The session's one-time link code, on the settings view, when it has a live one.
    pub link: Option<LinkCard<'a>>,
    /// The session's devices, on the settings view.
    pub devices: Option<DevicesCard<'a>>,
    /// A device that joined the session lately, announced at the top of the page.
    pub joined: Option<Joined<'a>>,
}

/// The whole page: the first, static render.
pub fn document(screen: &Screen<'_>) -> Markup {
    let theme = screen.saved.theme;
    html! {
        (DOCTYPE)
        html lang="en" data-theme=(theme.as_str()) class="live-static" {
            (head(screen.view.title(), theme))
            // An older page of the chat is a plain page: nothing live on it.
            body data-live-view=[(!screen.chat.is_some_and(|c| c.history)).then(|| screen.view.as_str())]
                data-live-csrf=(screen.csrf_token)
                data-live-version=(screen.version) {
                (body(screen))
            }
        }
    }
}

/// The `<head>` of every page.
fn head(title: &str, theme: Theme) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="color-scheme" content=(color_scheme(theme));
            title { (title) " · livesession" }
            link rel="icon" href=(ICON.url) type="image/svg+xml";
            link rel="stylesheet" href=(STYLESHEET.url);
            script src=(LIVE_SCRIPT.url) defer {}
        }
    }
}

/// The contents of `<body>`: what the live layer re-renders and the client morphs into place.
pub fn body(screen: &Screen<'_>) -> Markup {
    let main = match (screen.view, &screen.chat) {
        (View::Chat, Some(chat)) => chat::main(screen, chat),
        (View::Chat, None) => {
            debug_assert!(false, "the chat view is rendered with its chat screen");
            html! {}
        }
        (View::Settings, _) => settings::main(screen),
    };
    let nav = screen.view;
    html! {
        a.skip-link href="#main" { "Skip to content" }
        header.site {
            a.brand href="/" { "livesession" }
            nav aria-label="Main" {
                ul {
                    li { a href="/" aria-current=[(nav == View::Chat).then_some("page")] { "Chat" } }
                    li { a href="/settings" aria-current=[(nav == View::Settings).then_some("page")] { "Settings" } }
                }
            }
            // Every name is isolated in a `<bdi>`: its direction cannot reorder the text around it.
            p.who { "You are " bdi { strong #current-username { (screen.saved.username.display()) } } }
            // Owned by the client script (it shows the connection state); never patched.
            p #live-status data-live-client role="status" aria-live="polite" {}
            // Owned by the client script too: how many edits are not saved yet ("2 changes not
            // yet saved"), empty when none.
            p #unsaved data-live-client role="status" aria-live="polite" {}
        }
        main #main {
            @if let Some(joined) = &screen.joined {
                (devices::joined_notice(joined, screen.csrf_token))
            }
            (main)
        }
    }
}

/// The `color-scheme` for a theme, so form controls and scrollbars match on the first paint.
pub fn color_scheme(theme: Theme) -> &'static str {
    match theme {
        Theme::System => "light dark",
        Theme::Light => "light",
        Theme::Dark => "dark",
    }
}
