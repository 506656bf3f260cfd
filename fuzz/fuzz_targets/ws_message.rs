//! Fuzzes what a browser can send on `/live`: the JSON `ClientMessage` and the validators its
//! fields go through (`MessageBody`, `Username`, `Theme`). Nothing may panic, and whatever a
//! validator accepts must keep its documented promises.

#![no_main]

use libfuzzer_sys::fuzz_target;
use livesession::chat::{BODY_MAX_CHARS, MessageBody};
use livesession::live::protocol::ClientMessage;
use livesession::settings::{Theme, USERNAME_MAX_CHARS, Username};
use livesession::text;

/// Trimmed, in NFC, 1..=BODY_MAX_CHARS characters, no control characters but `\n` (so no `\r`),
/// no bidi controls, something visible.
fn check_body(input: &str) {
    if let Ok(body) = MessageBody::parse(input) {
        let s = body.as_str();
        assert!(!s.is_empty(), "empty body accepted from {input:?}");
        assert_eq!(s, s.trim(), "untrimmed body from {input:?}");
        assert!(s.chars().count() <= BODY_MAX_CHARS, "overlong body from {input:?}");
        assert!(
            !s.chars().any(|c| c.is_control() && c != '\n'),
            "control character in body {s:?}"
        );
        assert!(!s.chars().any(text::is_bidi_control), "bidi control in body {s:?}");
        assert!(s.chars().any(text::is_visible), "nothing visible in body {s:?}");
        assert_eq!(text::nfc(s), s, "body not in NFC: {s:?}");
        assert_eq!(MessageBody::parse(s).as_ref(), Ok(&body), "not idempotent: {s:?}");
    }
}

/// Trimmed, in NFC, at most USERNAME_MAX_CHARS graphemes, no control characters, no bidi controls,
/// no invisible characters outside an emoji sequence.
fn check_username(input: &str) {
    if let Ok(name) = Username::parse(input) {
        let s = name.as_str();
        assert_eq!(s, s.trim(), "untrimmed username from {input:?}");
        assert!(text::graphemes(s) <= USERNAME_MAX_CHARS, "overlong username from {input:?}");
        assert!(!s.chars().any(char::is_control), "control character in username {s:?}");
        assert!(!s.chars().any(text::is_bidi_control), "bidi control in username {s:?}");
        assert_eq!(text::first_hidden(s), None, "invisible character in username {s:?}");
        assert_eq!(text::nfc(s), s, "username not in NFC: {s:?}");
        assert_eq!(Username::parse(s).as_ref(), Ok(&name), "not idempotent: {s:?}");
    }
}

/// Exactly the three form values.
fn check_theme(input: &str) {
    if let Ok(theme) = Theme::parse(input) {
        assert_eq!(theme.as_str(), input, "theme accepted from {input:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match serde_json::from_str::<ClientMessage>(text) {
        Ok(ClientMessage::Join {
            csrf, build, page, ..
        }) => {
            for s in [&csrf, &build, &page] {
                check_username(s);
            }
        }
        Ok(ClientMessage::Change { fields, .. }) => {
            for (name, value) in &fields {
                check_username(name);
                check_username(value);
                check_theme(value);
            }
        }
        Ok(ClientMessage::Post { form, nonce, body, .. }) => {
            check_body(&body);
            check_body(&form);
            check_body(&nonce);
        }
        Err(_) => {}
    }
    check_body(text);
    check_username(text);
    check_theme(text);
});
