use maud::{Markup, html};

use super::Screen;

/// `/`: the chat room's place. For now it greets the browser by its saved name.
pub(super) fn main(screen: &Screen<'_>) -> Markup {
    let username = &screen.saved.username;
    html! {
        section.card {
            h1 { "Hello, " (username.display()) }
            @if username.is_anonymous() {
                p { "You have no name yet. " a href="/settings" { "Choose one in the settings" } "." }
            } @else {
                p { "This browser is remembered: your name and theme come back after a reload, a browser restart or a server restart. " a href="/settings" { "Change them" } "." }
            }
        }
    }
}
