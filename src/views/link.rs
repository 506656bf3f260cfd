//! "Use on another device": the card on the settings page, the pages of `/link` on the other
//! browser, and the QR code of the link, drawn by the server as inline SVG.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use qrcode::{Color, QrCode};

use super::{Screen, head};
use crate::link::Unusable;
use crate::settings::{Settings, Theme};

/// A live code, as the settings page shows it.
#[derive(Debug, Clone, Copy)]
pub struct LinkCard<'a> {
    /// The code itself, right after it was made (only then: the server keeps only its hash).
    pub fresh: Option<FreshCode<'a>>,
    /// Whole minutes left, rounded up.
    pub minutes_left: u64,
}

/// A code just made: the code, its link, and the link's QR code.
#[derive(Debug, Clone, Copy)]
pub struct FreshCode<'a> {
    /// Grouped for reading: `ABCD-EFGH-JKMN`.
    pub shown: &'a str,
    /// `<origin>/link/<code>`.
    pub url: &'a str,
    /// The link's QR code, as SVG.
    pub qr: &'a str,
}

/// Whole minutes from now until `expires_at`, rounded up.
pub fn minutes_left(expires_at: crate::clock::Millis) -> u64 {
    let left = expires_at.saturating_sub(crate::clock::now_millis()).max(0);
    u64::try_from(left).unwrap_or(0).div_ceil(60_000)
}

/// The settings page's card.
pub(super) fn card(screen: &Screen<'_>) -> Markup {
    html! {
        section.card #link {
            h2 { "Use on another device" }
            @match screen.link {
                None => {
                    p { "Makes a one-time code that lets another browser (your phone, say) use this browser's name and theme, and stay in sync with it. Nothing needs an account." }
                    form method="post" action="/settings/link" {
                        input type="hidden" name="_csrf" value=(screen.csrf_token);
                        button type="submit" { "Use on another device" }
                    }
                }
                Some(card) => {
                    @if let Some(fresh) = card.fresh {
                        p { "On the other device, open " strong { "/link" } " on this site and type this code, or open the link, or scan the QR code:" }
                        p.code { code #link-code { (fresh.shown) } }
                        p { a #link-url href=(fresh.url) { (fresh.url) } }
                        div.qr role="img" aria-label="QR code of the link" { (PreEscaped(fresh.qr)) }
                    } @else {
                        p { "A code for another device is waiting to be used." }
                    }
                    p #link-expiry { "It expires in " (card.minutes_left) " min, and works once." }
                    form method="post" action="/settings/link/cancel" {
                        input type="hidden" name="_csrf" value=(screen.csrf_token);
                        button.secondary type="submit" { "Cancel the code" }
                    }
                }
            }
        }
    }
}

/// What `/link` shows on the browser that is to be linked.
#[derive(Debug, Clone, Copy)]
pub enum LinkPage<'a> {
    /// The form to type a code, with why the last one did not work.
    Form { error: Option<Unusable> },
    /// What using the code will do, and the button that does it.
    Confirm {
        /// The code, grouped, and as it goes in the URL.
        shown: &'a str,
        code: &'a str,
        /// What the other device has saved.
        theirs: &'a Settings,
        /// When the code was made.
        made_at: crate::clock::Millis,
        /// What this browser has saved now, if anything.
        mine: Option<&'a Settings>,
        csrf_token: &'a str,
    },
}

/// A whole page of `/link`, in this browser's theme.
pub fn link_page(page: LinkPage<'_>, theme: Theme) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" data-theme=(theme.as_str()) {
            (head("Use a code", theme))
            body {
                header.site { a.brand href="/" { "livesession" } }
                main #main {
                    section.card {
                        h1 { "Use this browser with your other device" }
                        @match page {
                            LinkPage::Form { error } => {
                                form method="get" action="/link" {
                                    div.field {
                                        label for="code" { "The code your other device shows" }
                                        input #code type="text" name="code" autocomplete="one-time-code"
                                            autocapitalize="characters" spellcheck="false"
                                            aria-describedby="code-error" aria-invalid=[error.map(|_| "true")];
                                        p.error #code-error role="alert" { @if let Some(why) = error { (super::unusable_code(why)) } }
                                    }
                                    div.actions { button type="submit" { "Continue" } }
                                }
                            }
                            LinkPage::Confirm { shown, code, theirs, made_at, mine, csrf_token } => {
                                // Whose session it is, first: an attacker's code, once confirmed,
                                // would hand them what this browser does next.
                                p.warning #link-whose role="note" {
                                    "This browser will become part of the session "
                                    @if theirs.username.is_anonymous() { "with no name" }
                                    @else { "named " bdi { strong { (theirs.username.as_str()) } } }
                                    ", made on another device "
                                    (crate::device::added_label(made_at, crate::clock::now_millis()))
                                    ". Only continue if that device is yours."
                                }
                                p #link-summary {
                                    "This browser will use "
                                    @if theirs.username.is_anonymous() { "no name (anonymous)" }
                                    @else { "the name " bdi { strong { (theirs.username.as_str()) } } }
                                    " and the " (theirs.theme.label().to_lowercase()) " theme from your other device"
                                    @match mine {
                                        Some(mine) if !mine.username.is_anonymous() => {
                                            "; what this browser has saved now, " bdi { strong { (mine.username.as_str()) } } ", will be replaced."
                                        }
                                        Some(_) => "; what this browser has saved now will be replaced.",
                                        None => ".",
                                    }
                                }
                                p.hint { "Both will then be one: a change on either shows on the other. Code " code { (shown) } "." }
                                form method="post" action={ "/link/" (code) } {
                                    input type="hidden" name="_csrf" value=(csrf_token);
                                    div.actions { button type="submit" { "Use it on this browser" } }
                                }
                                p { a href="/" { "Not now" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The QR code of `text` as an SVG image: one square per dark module, on a white background
/// with the four-module quiet zone the standard asks for.
pub fn qr_svg(text: &str) -> String {
    let Ok(code) = QrCode::new(text.as_bytes()) else {
        return String::new();
    };
    let width = code.width();
    let size = width + 8;
    let mut path = String::new();
    for (n, color) in code.to_colors().iter().enumerate() {
        if *color == Color::Dark {
            let (x, y) = (n % width + 4, n / width + 4);
            path.push_str(&format!("M{x} {y}h1v1h-1z"));
        }
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" width="{px}" height="{px}" shape-rendering="crispEdges"><rect width="{size}" height="{size}" fill="#fff"/><path fill="#000" d="{path}"/></svg>"##,
        px = size * 5
    )
}

/// A page that says this browser's session ended while a form was on its way, and links back to
/// the settings page of its new one.
pub fn ended_page(sentence: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" data-theme="system" {
            (head("Not saved", Theme::System))
            body {
                header.site { a.brand href="/" { "livesession" } }
                main #main {
                    section.card {
                        h1 { "Not saved" }
                        p role="alert" { (sentence) }
                        p { a href="/settings" { "Go to the settings of this browser's new session" } }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The modules an SVG of [`qr_svg`] draws, read back from its path.
    fn modules(svg: &str) -> (usize, Vec<(usize, usize)>) {
        let size: usize = svg
            .split("viewBox=\"0 0 ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let path = svg
            .split(" d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let dark = path
            .split('M')
            .filter(|s| !s.is_empty())
            .map(|s| {
                let xy = s.split('h').next().unwrap();
                let mut parts = xy.split(' ').map(|n| n.parse::<usize>().unwrap());
                (parts.next().unwrap(), parts.next().unwrap())
            })
            .collect();
        (size, dark)
    }

    #[test]
    fn the_qr_svg_draws_exactly_the_encoder_s_matrix_of_the_link() {
        let url = "https://chat.example/link/ABCDEFGHJKMN";
        let svg = qr_svg(url);
        let (size, dark) = modules(&svg);
        let code = QrCode::new(url.as_bytes()).unwrap();
        let width = code.width();
        assert_eq!(size, width + 8, "a four-module quiet zone each side");
        let expected: Vec<(usize, usize)> = code
            .to_colors()
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == Color::Dark)
            .map(|(n, _)| (n % width + 4, n / width + 4))
            .collect();
        assert_eq!(dark, expected);
        // The matrix is the link's: the encoder reads it back as a valid code of that data.
        let again = QrCode::with_version(
            url.as_bytes(),
            code.version(),
            code.error_correction_level(),
        )
        .unwrap();
        assert_eq!(again.to_colors(), code.to_colors());
        assert!(
            !svg.contains("style"),
            "no inline style: the CSP forbids it"
        );
    }
}
