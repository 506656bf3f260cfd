use maud::{Markup, html};

use super::{Nav, layout};
use crate::settings::Settings;

/// `GET /`: the chat room's place. For now it greets the browser by its saved name.
pub fn home_page(saved: &Settings) -> Markup {
    let main = html! {
        section.card {
            h1 { "Hello, " (saved.username.display()) }
            @if saved.username.is_anonymous() {
                p { "You have no name yet. " a href="/settings" { "Choose one in the settings" } "." }
            } @else {
                p { "This browser is remembered: your name and theme come back after a reload, a browser restart or a server restart. " a href="/settings" { "Change them" } "." }
            }
        }
    };
    layout("Chat", Nav::Chat, saved, main)
}
