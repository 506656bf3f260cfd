//! A session's devices as a person sees them: each browser's name (made from its User-Agent,
//! which the person may change), the public handle that names it on a page, how it was added,
//! and when it was last active, said coarsely.
//!
//! The device's id is in its cookie only (`session::DeviceId`); pages name a device by its
//! [`Handle`], a hash of the id that cannot be turned back into it, so a "Sign out" button
//! never carries anything that would let its reader act as that device.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::clock::Millis;
use crate::text;

/// One browser's own key to the session it belongs to: every browser of a session has its own,
/// so one can be signed out while the others go on. Random like a session id, never shown (a
/// device is named on pages by a public handle derived from it), never logged.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceId(Uuid);

impl DeviceId {
    /// A fresh id from the operating system's random number generator.
    pub fn generate() -> DeviceId {
        DeviceId(Uuid::new_v4())
    }

    /// The id as it is stored: the hyphenated lowercase UUID.
    pub fn to_key(self) -> String {
        self.0.hyphenated().to_string()
    }

    /// The id as a UUID, as PostgreSQL stores it.
    pub fn as_uuid(self) -> Uuid {
        self.0
    }

    /// The id a stored UUID names.
    pub fn from_uuid(uuid: Uuid) -> DeviceId {
        DeviceId(uuid)
    }
}

/// A string that is not a device id in the form we issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a device id")]
pub struct InvalidDeviceId;

impl FromStr for DeviceId {
    type Err = InvalidDeviceId;

    /// Only the exact form we issue (the hyphenated lowercase UUID), as for session ids.
    fn from_str(s: &str) -> Result<DeviceId, InvalidDeviceId> {
        canonical_uuid(s).map(DeviceId).ok_or(InvalidDeviceId)
    }
}

/// The UUID `s` spells in the one form ids are issued in (hyphenated, lowercase), or `None` for
/// any other text, other spellings of a UUID included. Checked byte by byte before it is parsed:
/// every cookie of every request holds two.
pub fn canonical_uuid(s: &str) -> Option<Uuid> {
    let bytes = s.as_bytes();
    let canonical = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        });
    canonical
        .then(|| Uuid::try_parse_ascii(bytes).ok())
        .flatten()
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Redacted, like a session id.
impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceId(..)")
    }
}

/// The most characters a device's name may have.
pub const NAME_MAX_CHARS: usize = 40;

/// How long after it joined a device linked by code is announced on the settings page.
pub const ANNOUNCED_FOR: Millis = 24 * 60 * 60 * 1000;

/// A device is "active now" for this long after it was last seen.
const ACTIVE_NOW: Millis = 5 * 60 * 1000;

const DAY: Millis = 24 * 60 * 60 * 1000;

/// How a device came to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The browser that first saved something under the session.
    First,
    /// A browser that joined with a one-time code.
    Code,
}

impl Added {
    /// As it is stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Added::First => "first",
            Added::Code => "code",
        }
    }

    /// What was stored (anything unknown reads as the first browser).
    pub fn parse(stored: &str) -> Added {
        match stored {
            "code" => Added::Code,
            _ => Added::First,
        }
    }

    /// How the device list says it.
    pub fn label(self) -> &'static str {
        match self {
            Added::First => "the first browser",
            Added::Code => "linked by code",
        }
    }
}

/// A device as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: DeviceId,
    /// Its name; empty for a device that has not been seen since the devices were added (it
    /// gets its User-Agent's name the next time it is).
    pub name: String,
    pub added_at: Millis,
    pub added: Added,
    /// When it was last seen, within the touch window.
    pub active_at: Millis,
}

impl Device {
    /// Its public handle.
    pub fn handle(&self) -> Handle {
        Handle::of(self.id)
    }

    /// Its name as shown.
    pub fn shown_name(&self) -> &str {
        if self.name.is_empty() {
            "A browser"
        } else {
            &self.name
        }
    }
}

/// The public name of a device on a page: 16 characters of a SHA-256 of its id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handle([u8; 8]);

impl Handle {
    /// The handle of device `id`.
    pub fn of(id: DeviceId) -> Handle {
        let mut hash = Sha256::new();
        hash.update(b"livesession device handle v1 ");
        hash.update(id.as_uuid().as_bytes());
        let digest = hash.finalize();
        let mut handle = [0u8; 8];
        handle.copy_from_slice(&digest[..8]);
        Handle(handle)
    }

    /// A handle as a form sent it: 16 lowercase hex digits, else `None`.
    pub fn parse(text: &str) -> Option<Handle> {
        let text = text.trim();
        if text.len() != 16 {
            return None;
        }
        let mut handle = [0u8; 8];
        for (i, byte) in handle.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        (Handle(handle).to_string() == text).then_some(Handle(handle))
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handle({self})")
    }
}

/// A device name a person typed, checked: trimmed, NFC, 1 to [`NAME_MAX_CHARS`] characters, no
/// control or invisible characters (the same rules as a username's text).
pub fn parse_name(typed: &str) -> Result<String, &'static str> {
    let name = text::nfc(typed.trim());
    if name.is_empty() || !text::has_letter_digit_symbol_or_emoji(&name) {
        return Err("Give the device a name.");
    }
    if text::graphemes(&name) > NAME_MAX_CHARS {
        return Err("A device name has at most 40 characters.");
    }
    let hidden = |c: char| c.is_control() || text::is_bidi_control(c);
    if name.chars().any(hidden)
        || text::first_hidden(&name).is_some()
        || text::most_marks_on_one_letter(&name) > 3
    {
        return Err("A device name cannot contain control or invisible characters.");
    }
    Ok(name)
}

/// The browsers a device's name knows, in the order a User-Agent is checked for them (Edge and
/// Opera say "Chrome", Chrome says "Safari").
const BROWSERS: &[(&str, &[&str])] = &[
    ("Edge", &["Edg/", "EdgA/", "EdgiOS/"]),
    ("Opera", &["OPR/", "Opera"]),
    ("Samsung Internet", &["SamsungBrowser/"]),
    ("Firefox", &["Firefox/", "FxiOS/"]),
    ("Chrome", &["Chrome/", "CriOS/", "Chromium/"]),
    ("Safari", &["Version/"]),
];

/// The systems, likewise (Android says "Linux", iPhone says "Mac OS X").
const SYSTEMS: &[(&str, &[&str])] = &[
    ("iPhone", &["iPhone"]),
    ("iPad", &["iPad"]),
    ("Android", &["Android"]),
    ("ChromeOS", &["CrOS"]),
    ("Windows", &["Windows"]),
    ("macOS", &["Mac OS X", "Macintosh"]),
    ("Linux", &["Linux", "X11"]),
];

/// What kind of browser a request came from, as far as its User-Agent says: which of the
/// common browsers, on which system. Two bytes, so a request's session carries it for the
/// device's name at no cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kind {
    /// 1 + an index into `BROWSERS`, or 0 for unknown.
    browser: u8,
    /// 1 + an index into `SYSTEMS`, or 0 for unknown.
    system: u8,
}

impl Kind {
    /// The kind a User-Agent names (a small table of the common browsers and systems).
    pub fn of(user_agent: &str) -> Kind {
        let find = |table: &[(&str, &[&str])]| {
            table
                .iter()
                .position(|(_, marks)| marks.iter().any(|mark| user_agent.contains(mark)))
                .map_or(0, |i| u8::try_from(i + 1).unwrap_or(0))
        };
        let mut kind = Kind {
            browser: find(BROWSERS),
            system: find(SYSTEMS),
        };
        // "Version/" alone is Safari only with Safari's own mark.
        if kind.browser == 6 && !user_agent.contains("Safari/") {
            kind.browser = 0;
        }
        kind
    }

    /// The device's name: "Firefox on Linux", "Safari on iPhone"; "A browser", or whichever half
    /// is known, for anything else.
    pub fn name(self) -> String {
        let pick = |table: &[(&'static str, &[&str])], n: u8| {
            usize::from(n)
                .checked_sub(1)
                .and_then(|i| table.get(i))
                .map(|(name, _)| *name)
        };
        match (pick(BROWSERS, self.browser), pick(SYSTEMS, self.system)) {
            (Some(browser), Some(system)) => format!("{browser} on {system}"),
            (Some(browser), None) => browser.to_owned(),
            (None, Some(system)) => format!("A browser on {system}"),
            (None, None) => "A browser".to_owned(),
        }
    }
}

/// A device's name made from its User-Agent (see [`Kind`]).
pub fn name_from_user_agent(user_agent: &str) -> String {
    Kind::of(user_agent).name()
}

/// When a device was last active, as the list says it: "active now", "today", "yesterday",
/// "3 days ago".
pub fn active_label(active_at: Millis, now: Millis) -> Cow<'static, str> {
    let ago = now.saturating_sub(active_at);
    if ago < ACTIVE_NOW {
        "active now".into()
    } else if ago < DAY {
        "today".into()
    } else if ago < 2 * DAY {
        "yesterday".into()
    } else {
        format!("{} days ago", ago / DAY).into()
    }
}

/// When a device was added, as the list and the notice say it: "just now", "12 minutes ago",
/// "today", then as [`active_label`] does.
pub fn added_label(added_at: Millis, now: Millis) -> Cow<'static, str> {
    let ago = now.saturating_sub(added_at);
    let minutes = ago / 60_000;
    match minutes {
        0 => "just now".into(),
        1 => "a minute ago".into(),
        2..60 => format!("{minutes} minutes ago").into(),
        _ if ago < DAY => "today".into(),
        _ if ago < 2 * DAY => "yesterday".into(),
        _ => format!("{} days ago", ago / DAY).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_browsers_get_their_names() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                "Firefox on Linux",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                "Safari on iPhone",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
                "Safari on macOS",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36",
                "Chrome on Linux",
            ),
            ("curl/8.5.0", "A browser"),
            ("", "A browser"),
        ];
        for (ua, name) in cases {
            assert_eq!(name_from_user_agent(ua), name, "{ua}");
        }
    }

    #[test]
    fn a_handle_is_stable_public_and_parses_back() {
        let id = DeviceId::generate();
        let handle = Handle::of(id);
        assert_eq!(Handle::of(id), handle);
        assert_ne!(Handle::of(DeviceId::generate()), handle);
        let text = handle.to_string();
        assert_eq!(text.len(), 16);
        assert!(!id.to_key().contains(&text));
        assert_eq!(Handle::parse(&text), Some(handle));
        assert_eq!(Handle::parse(&text.to_uppercase()), None);
        assert_eq!(Handle::parse("zz"), None);
        assert_eq!(Handle::parse("ééééééééé"), None);
    }

    #[test]
    fn activity_is_said_coarsely() {
        let now = 100 * DAY;
        assert_eq!(active_label(now - 1000, now), "active now");
        assert_eq!(active_label(now - 3 * 60 * 60 * 1000, now), "today");
        assert_eq!(active_label(now - DAY - 1, now), "yesterday");
        assert_eq!(active_label(now - 3 * DAY - 1, now), "3 days ago");
        assert_eq!(added_label(now, now), "just now");
        assert_eq!(added_label(now - 12 * 60_000, now), "12 minutes ago");
    }

    #[test]
    fn a_typed_name_is_checked() {
        assert_eq!(parse_name("  Work laptop ").unwrap(), "Work laptop");
        assert!(parse_name("   ").is_err());
        assert!(parse_name(&"x".repeat(41)).is_err());
        assert!(parse_name("a\u{200b}b").is_err());
    }
}
