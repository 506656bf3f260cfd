//! HTML, rendered with maud. Each view is one function of plain data, used by the first static
//! render and (through the live layer) by every later update, so the two can never disagree.

mod home;
mod settings;

pub use home::home_page;
pub use settings::{SettingsView, settings_form, settings_page};

use maud::{DOCTYPE, Markup, html};

use crate::assets::STYLESHEET;
use crate::settings::{Settings, Theme};

/// Which page of the navigation is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Chat,
    Settings,
}

/// The frame of every page. `<html data-theme>` comes from the database, so the first paint
/// already has the right colours.
pub fn layout(title: &str, nav: Nav, saved: &Settings, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" data-theme=(saved.theme.as_str()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content=(color_scheme(saved.theme));
                title { (title) " · livesession" }
                link rel="stylesheet" href=(STYLESHEET.url);
            }
            body {
                a.skip-link href="#main" { "Skip to content" }
                header.site {
                    a.brand href="/" { "livesession" }
                    nav aria-label="Main" {
                        ul {
                            li { a href="/" aria-current=[(nav == Nav::Chat).then_some("page")] { "Chat" } }
                            li { a href="/settings" aria-current=[(nav == Nav::Settings).then_some("page")] { "Settings" } }
                        }
                    }
                    p.who { "You are " strong #current-username { (saved.username.display()) } }
                }
                main #main { (main) }
            }
        }
    }
}

fn color_scheme(theme: Theme) -> &'static str {
    match theme {
        Theme::System => "light dark",
        Theme::Light => "light",
        Theme::Dark => "dark",
    }
}
