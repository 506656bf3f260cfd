use std::time::{Duration, UNIX_EPOCH};

use maud::{Markup, html};

use super::Screen;
use crate::chat::{BODY_MAX_CHARS, Message};
use crate::session::SessionId;
use crate::settings::FieldError;

/// What the chat page shows besides the settings.
#[derive(Debug, Clone, Copy)]
pub struct ChatScreen<'a> {
    /// The newest messages, oldest first.
    pub messages: &'a [Message],
    /// Whose page this is: their own messages are marked as theirs.
    pub viewer: SessionId,
    /// Text to put back into the composer (after a refused post without JavaScript).
    pub draft: &'a str,
    /// Why the last post was refused.
    pub error: Option<&'a FieldError>,
    /// Makes a resubmitted form store its message once.
    pub nonce: &'a str,
    /// The id the page of older messages starts before, when there are older messages.
    pub older: Option<i64>,
    /// An older page (`/?before=ID`): no composer, no live updates, a way back to the newest.
    pub history: bool,
    /// Who is here now; not on an older page.
    pub presence: Option<&'a PresenceList<'a>>,
}

/// Who has the chat open, as one page shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceList<'a> {
    /// The list's number; the page sends it back when it joins, to learn whether it is current.
    pub version: u64,
    /// The named, in the order shown: at most [`PRESENCE_NAMES`].
    pub names: Vec<&'a str>,
    /// How many more are named, not listed.
    pub more: usize,
    /// How many have no name.
    pub anonymous: usize,
}

/// Names listed at most; the rest are counted ("and 12 more").
pub const PRESENCE_NAMES: usize = 100;

/// What one name may take in the list: at most this many characters (graphemes) and bytes; a
/// longer one is cut there and ends in "…", so a name of forty 12-code-point emoji costs the
/// list what its first characters cost, not 1.9 KB.
pub const PRESENCE_NAME_CHARS: usize = 24;
pub const PRESENCE_NAME_BYTES: usize = 96;

/// The most bytes of names one list holds; names past it are counted ("and 12 more"), so a
/// list frame stays under about 8 KB however the names are made.
pub const PRESENCE_LIST_BYTES: usize = 6 * 1024;

/// The markup one listed name adds besides itself (`<li><bdi>…</bdi></li>`).
pub const PRESENCE_ITEM_OVERHEAD: usize = 20;

/// `name` as the presence list shows it: cut at a character boundary to
/// [`PRESENCE_NAME_CHARS`] and [`PRESENCE_NAME_BYTES`], with "…" when cut.
pub fn listed_name(name: &str) -> std::borrow::Cow<'_, str> {
    use unicode_segmentation::UnicodeSegmentation;
    let room = PRESENCE_NAME_BYTES - '…'.len_utf8();
    let mut end = 0;
    for (n, (at, grapheme)) in name.grapheme_indices(true).enumerate() {
        if n >= PRESENCE_NAME_CHARS || at + grapheme.len() > room {
            return format!("{}…", &name[..end]).into();
        }
        end = at + grapheme.len();
    }
    name.into()
}

/// `/`: the chat log and the composer.
pub(super) fn main(screen: &Screen<'_>, chat: &ChatScreen<'_>) -> Markup {
    let username = &screen.saved.username;
    html! {
        section.card.chat {
            h1 { "Chat" }
            @if let Some(presence) = chat.presence {
                section.presence aria-labelledby="presence-title" {
                    h2 #presence-title { "Here now" }
                    // Replaced as a whole on each change, announced politely.
                    div #presence aria-live="polite" data-version=(presence.version) {
                        (presence_items(presence))
                    }
                }
            }
            @if let Some(older) = chat.older {
                p.older { a #older href={ "/?before=" (older) } data-live-older { "Older messages" } }
            }
            // The live region is a wrapper: a list may not take the `log` role itself.
            div.log role="log" aria-live="polite" aria-label="Messages" {
                ol #messages {
                    @for message in chat.messages {
                        (message_item(message, chat.viewer))
                    }
                }
            }
            @if chat.history {
                p.newest { a href="/" { "Back to the newest messages" } }
            } @else {
            @if chat.messages.is_empty() {
                p.hint #no-messages { "No messages yet. Say hello!" }
            }
            form #composer method="post" action="/messages" data-live-submit {
                input type="hidden" name="_csrf" value=(screen.csrf_token);
                input type="hidden" name="nonce" value=(chat.nonce);
                div.field {
                    label for="body" {
                        "Message, as " bdi { strong #composer-name { (username.display()) } }
                        @if username.is_anonymous() {
                            " (" a href="/settings" { "choose a name" } ")"
                        }
                    }
                    textarea #body name="body" rows="2" required data-live-keep
                        aria-describedby="body-hint body-error"
                        aria-invalid=[chat.error.map(|_| "true")] { (chat.draft) }
                    p.hint #body-hint { "Up to " (BODY_MAX_CHARS) " characters. Enter sends, Shift+Enter starts a new line." }
                    p.error #body-error role="alert" { @if let Some(e) = chat.error { (e.message()) } }
                }
                div.actions {
                    button type="submit" { "Send" }
                    span.status #composer-status data-live-client role="status" aria-live="polite" {}
                }
            }
            }
        }
    }
}

/// The inside of the presence list: the names, each isolated, then the unnamed as a count.
pub fn presence_items(list: &PresenceList<'_>) -> Markup {
    let shown = &list.names;
    let more = list.more;
    let total = shown.len() + more + list.anonymous;
    html! {
        @if total == 0 {
            p.hint { "Nobody has the chat open." }
        } @else {
            @if !shown.is_empty() {
                ul.people {
                    @for name in shown { li { bdi { (listed_name(name)) } } }
                }
            }
            @let rest = match (more, list.anonymous) {
                (0, 0) => String::new(),
                (0, anonymous) if shown.is_empty() => format!("{anonymous} anonymous"),
                (0, anonymous) => format!("and {anonymous} anonymous"),
                (more, 0) => format!("and {more} more"),
                (more, anonymous) => format!("and {more} more and {anonymous} anonymous"),
            };
            @if !rest.is_empty() { p.anonymous { (rest) } }
        }
    }
}

/// One message in the log, as both the first render and a live append show it. The author's
/// name is isolated in a `<bdi>`, so a right-to-left name (or one ending in digits or
/// punctuation) cannot reorder the "(you)" marker or the time after it.
pub fn message_item(message: &Message, viewer: SessionId) -> Markup {
    let created =
        UNIX_EPOCH + Duration::from_millis(u64::try_from(message.created_at).unwrap_or(0));
    let stamp = humantime::format_rfc3339_seconds(created).to_string();
    let mine = message.author == viewer;
    html! {
        li.message.mine[mine] id={ "m-" (message.id) } data-id=(message.id) {
            span.author { bdi { (message.author_display()) } @if mine { span.you { " (you)" } } }
            " "
            time datetime=(stamp) { (stamp.get(11..16).unwrap_or_default()) " UTC" }
            p.body { (message.body) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_name_is_cut_in_the_list_at_a_character_with_an_ellipsis() {
        assert_eq!(listed_name("Ada"), "Ada");
        let long = "a".repeat(40);
        assert_eq!(listed_name(&long), format!("{}…", "a".repeat(24)));
        let family = "👨\u{200D}👩\u{200D}👧\u{200D}👦";
        let cut = listed_name(&family.repeat(40)).into_owned();
        assert!(cut.len() <= PRESENCE_NAME_BYTES, "{}", cut.len());
        assert_eq!(cut, format!("{}…", family.repeat(3)));
    }
}
