//! The chat room: what a message may contain, and what one looks like once stored. (How fast one
//! browser may send them is the site's: `site::RateLimiter`.)

use crate::clock::Millis;
use crate::session::SessionId;
use crate::settings::FieldError;

/// The longest message body, in characters.
pub const BODY_MAX_CHARS: usize = 2000;

/// How many messages a chat page shows.
pub const RECENT_MESSAGES: usize = 50;

/// A message body: trimmed, 1 to [`BODY_MAX_CHARS`] characters, no control characters except line
/// breaks (`\r\n` and `\r` become `\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBody(String);

impl MessageBody {
    /// Validates user input.
    pub fn parse(input: &str) -> Result<MessageBody, FieldError> {
        let normalized = input.replace("\r\n", "\n").replace('\r', "\n");
        let trimmed = normalized.trim();
        if trimmed.is_empty() {
            return Err(FieldError::new("Message", "is empty"));
        }
        if trimmed.chars().any(|c| c.is_control() && c != '\n') {
            return Err(FieldError::new(
                "Message",
                "may not contain control characters other than line breaks",
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
    fn control_characters_other_than_line_breaks_are_refused() {
        for bad in ["a\tb", "a\u{0}b", "a\u{1b}[31mb", "a\u{85}b"] {
            assert!(MessageBody::parse(bad).is_err(), "{bad:?}");
        }
    }
}
