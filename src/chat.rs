//! The chat room: what a message may contain, and what one looks like once stored. (How fast one
//! browser may send them is the site's: `site::RateLimiter`.)

use crate::clock::Millis;
use crate::session::SessionId;
use crate::settings::FieldError;
use crate::text;

/// The longest message body, in characters (Unicode code points, counted after NFC).
pub const BODY_MAX_CHARS: usize = 2000;

/// How many messages a chat page shows.
pub const RECENT_MESSAGES: usize = 50;

/// A message body: trimmed, in NFC, 1 to [`BODY_MAX_CHARS`] characters (code points), no control
/// characters except line breaks (`\r\n` and `\r` become `\n`), no bidi controls, at most
/// [`text::MAX_MARKS_PER_LETTER`] combining marks on one letter. A body with nothing visible in
/// it (only spaces and invisible characters) is empty. Invisible characters beside visible text
/// are kept: the zero-width non-joiner is part of Persian spelling, the joiner of emoji.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBody(String);

impl MessageBody {
    /// Validates user input.
    pub fn parse(input: &str) -> Result<MessageBody, FieldError> {
        let normalized = text::nfc(&input.replace("\r\n", "\n").replace('\r', "\n"));
        let trimmed = normalized.trim();
        if trimmed.chars().any(|c| c.is_control() && c != '\n') {
            return Err(FieldError::new(
                "Message",
                "may not contain control characters other than line breaks",
            ));
        }
        if let Some(c) = trimmed.chars().find(|&c| text::is_bidi_control(c)) {
            return Err(FieldError::new(
                "Message",
                format!(
                    "may not contain characters that change the direction of text (it has {})",
                    text::code_point(c)
                ),
            ));
        }
        if !trimmed.chars().any(text::is_visible) {
            return Err(FieldError::new("Message", "is empty"));
        }
        let marks = text::MAX_MARKS_PER_LETTER;
        if text::most_marks_on_one_letter(trimmed) > marks {
            return Err(FieldError::new(
                "Message",
                format!(
                    "may not stack more than {marks} accents or other combining marks on one letter"
                ),
            ));
        }
        let chars = trimmed.chars().count();
        if chars > BODY_MAX_CHARS {
            return Err(FieldError::new(
                "Message",
                format!("is {chars} characters long; at most {BODY_MAX_CHARS} are allowed"),
            ));
        }
        Ok(MessageBody(trimmed.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stored message, as pages show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Grows with every message; never reused.
    pub id: i64,
    /// Who sent it. Only ever compared with the viewer's id, never shown.
    pub author: SessionId,
    /// The author's username when it was sent (empty: anonymous).
    pub author_name: String,
    pub body: String,
    pub created_at: Millis,
}

/// A fresh random nonce for a chat form: the same author posting the same nonce twice stores
/// one message.
pub fn new_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Message {
    /// The author's name for display.
    pub fn author_display(&self) -> &str {
        if self.author_name.is_empty() {
            "anonymous"
        } else {
            &self.author_name
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_trimmed_and_keeps_its_inner_line_breaks() {
        let body = MessageBody::parse("  hello\r\nworld \n").unwrap();
        assert_eq!(body.as_str(), "hello\nworld");
    }

    #[test]
    fn an_empty_or_blank_body_is_refused() {
        for blank in ["", "   ", "\n\n"] {
            assert!(MessageBody::parse(blank).is_err(), "{blank:?}");
        }
    }

    #[test]
    fn two_thousand_characters_are_accepted_and_one_more_is_not() {
        assert!(MessageBody::parse(&"ü".repeat(2000)).is_ok());
        let err = MessageBody::parse(&"ü".repeat(2001)).unwrap_err();
        assert!(err.message().contains("2001 characters"), "{err}");
    }

    #[test]
    fn bidi_controls_are_refused_in_a_body() {
        let err = MessageBody::parse("see \u{202E}txt.exe").unwrap_err();
        assert_eq!(
            err.message(),
            "Message may not contain characters that change the direction of text (it has U+202E)."
        );
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{2066}', '\u{2067}', '\u{2068}',
            '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
        ] {
            let err = MessageBody::parse(&format!("a{c}b")).unwrap_err();
            assert!(err.message().contains(&text::code_point(c)), "{err}");
        }
    }

    #[test]
    fn a_body_made_only_of_invisible_characters_is_empty() {
        for blank in [
            "\u{200B}",
            "\u{200B}\u{200C}\u{200D}",
            "\u{3164}\u{3164}",
            "\u{FFA0}",
            "\u{115F}\u{1160}",
            "\u{FEFF}",
            "\u{00AD}",
            "\u{2060}",
            "\u{180E}",
            "\u{E0041}",
            "\u{FE0F}",
            "\u{2800}",
            " \u{200B} \n \u{3164} ",
        ] {
            let err = MessageBody::parse(blank).unwrap_err();
            assert_eq!(err.message(), "Message is empty.", "{blank:?}");
        }
    }

    #[test]
    fn invisible_characters_beside_visible_text_are_kept() {
        // The zero-width non-joiner is part of Persian spelling.
        let persian = "می\u{200C}خواهم";
        assert_eq!(MessageBody::parse(persian).unwrap().as_str(), persian);
        assert_eq!(
            MessageBody::parse("\u{2764}\u{FE0F}").unwrap().as_str(),
            "\u{2764}\u{FE0F}"
        );
        // Punctuation is a message too.
        assert_eq!(MessageBody::parse("?").unwrap().as_str(), "?");
    }

    #[test]
    fn a_body_is_stored_in_nfc_and_counted_after_it() {
        assert_eq!(MessageBody::parse("cafe\u{301}").unwrap().as_str(), "café");
        let decomposed = "u\u{308}".repeat(2000);
        assert_eq!(
            MessageBody::parse(&decomposed).unwrap().as_str(),
            "ü".repeat(2000)
        );
    }

    #[test]
    fn a_flood_of_combining_marks_is_refused_in_a_body() {
        let err = MessageBody::parse(&format!("hello a{}", "\u{301}".repeat(39))).unwrap_err();
        assert_eq!(
            err.message(),
            "Message may not stack more than 4 accents or other combining marks on one letter."
        );
        assert!(MessageBody::parse("Vie\u{323}\u{302}t Nam").is_ok());
        // Zero-width characters between the marks do not spread them over several letters.
        let hidden = format!("a{}", "\u{301}\u{302}\u{303}\u{200C}".repeat(10));
        assert!(
            MessageBody::parse(&hidden)
                .unwrap_err()
                .message()
                .contains("more than 4")
        );
    }

    #[test]
    fn line_breaks_stay_allowed_with_the_new_rules() {
        let body = MessageBody::parse("שלום\nworld").unwrap();
        assert_eq!(body.as_str(), "שלום\nworld");
    }

    #[test]
    fn control_characters_other_than_line_breaks_are_refused() {
        for bad in ["a\tb", "a\u{0}b", "a\u{1b}[31mb", "a\u{85}b"] {
            assert!(MessageBody::parse(bad).is_err(), "{bad:?}");
        }
    }
}
