//! Text a client sent, as a log line may show it: escaped, so it cannot forge a line or carry
//! terminal control codes, and cut to [`MAX_LOGGED_BYTES`], so a 60 KB header costs the log a
//! few hundred bytes, not 60 KB.

use std::fmt;

/// The most bytes of one client-supplied value a log line shows.
pub const MAX_LOGGED_BYTES: usize = 200;

/// Client-supplied bytes for a log line: shown with `{}`, escaped like Rust's `{:?}` (`\n`,
/// `\t`, `\u{202e}`, bytes that are not UTF-8 as `\xff`), at most [`MAX_LOGGED_BYTES`] of them,
/// the rest counted: `…(61440 bytes cut)`.
#[derive(Clone, Copy)]
pub struct Untrusted<'a>(&'a [u8]);

impl<'a> Untrusted<'a> {
    /// Client-supplied text.
    pub fn str(text: &'a str) -> Untrusted<'a> {
        Untrusted(text.as_bytes())
    }

    /// Client-supplied bytes (a header value need not be UTF-8).
    pub fn bytes(bytes: &'a [u8]) -> Untrusted<'a> {
        Untrusted(bytes)
    }
}

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.0[..self.0.len().min(MAX_LOGGED_BYTES)];
        for chunk in shown.utf8_chunks() {
            for c in chunk.valid().chars() {
                // Quotes are harmless in a log line; everything else Debug would escape is not.
                match c {
                    '"' | '\'' => f.write_fmt(format_args!("{c}"))?,
                    c => f.write_fmt(format_args!("{}", c.escape_debug()))?,
                }
            }
            for byte in chunk.invalid() {
                f.write_fmt(format_args!("\\x{byte:02x}"))?;
            }
        }
        let cut = self.0.len() - shown.len();
        if cut > 0 {
            f.write_fmt(format_args!("…({cut} bytes cut)"))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_shown_as_it_is() {
        assert_eq!(
            Untrusted::str("/settings/forget").to_string(),
            "/settings/forget"
        );
        assert_eq!(
            Untrusted::str("http://evil.example").to_string(),
            "http://evil.example"
        );
    }

    #[test]
    fn control_characters_newlines_and_bidi_overrides_are_escaped() {
        let shown = Untrusted::str("a\nb\r\tc\u{1b}[31m\u{202e}d\u{200b}").to_string();
        assert_eq!(shown, "a\\nb\\r\\tc\\u{1b}[31m\\u{202e}d\\u{200b}");
        assert!(!shown.chars().any(char::is_control), "{shown}");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_shown_as_hex() {
        assert_eq!(Untrusted::bytes(b"a\xffb\xc3").to_string(), "a\\xffb\\xc3");
        assert_eq!(Untrusted::bytes("é".as_bytes()).to_string(), "é");
    }

    #[test]
    fn a_long_value_is_cut_and_says_how_much_was_cut() {
        let long = "x".repeat(61_640);
        let shown = Untrusted::str(&long).to_string();
        assert!(shown.starts_with(&"x".repeat(MAX_LOGGED_BYTES)), "{shown}");
        assert!(shown.ends_with("…(61440 bytes cut)"), "{shown}");
        assert!(shown.len() < 300, "{}", shown.len());
        // Escaping cannot make it grow past a bound either: at most 10 bytes per byte shown.
        let controls = "\u{1}".repeat(10_000);
        assert!(Untrusted::str(&controls).to_string().len() < 10 * MAX_LOGGED_BYTES + 30);
    }
}
