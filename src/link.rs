//! One-time link codes ("Use on another device"): what a code looks like, how one is made, and
//! how it is known to the store (only a hash of it is kept).
//!
//! A code is 12 characters of a 31-letter alphabet with nothing that reads as another letter (no
//! 0, 1, I, L or O): about 59 random bits, shown grouped as `ABCD-EFGH-JKMN`. Typed back, case,
//! spaces and dashes do not matter.

use std::fmt;

use sha2::{Digest, Sha256};

/// The letters a code is made of.
pub const ALPHABET: &[u8; 31] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";

/// Letters per code.
pub const CODE_LEN: usize = 12;

/// The random bits in a code: `CODE_LEN * log2(31)`.
pub const CODE_BITS: f64 = 59.45;

/// A well-formed code (random, or as typed once normalised).
#[derive(Clone, PartialEq, Eq)]
pub struct LinkCode(String);

impl LinkCode {
    /// A new random code, from the operating system's generator.
    pub fn generate() -> LinkCode {
        let mut code = String::with_capacity(CODE_LEN);
        while code.len() < CODE_LEN {
            for byte in uuid::Uuid::new_v4().into_bytes() {
                // Rejection sampling: 248 = 8 * 31, so every letter is equally likely.
                if byte < 248 && code.len() < CODE_LEN {
                    code.push(char::from(ALPHABET[usize::from(byte % 31)]));
                }
            }
        }
        LinkCode(code)
    }

    /// A code as a person typed it (any case, with spaces or dashes), or `None` when it cannot
    /// be one.
    pub fn parse(typed: &str) -> Option<LinkCode> {
        if typed.len() > 64 {
            return None;
        }
        let code: String = typed
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let valid = code.len() == CODE_LEN && code.bytes().all(|b| ALPHABET.contains(&b));
        valid.then_some(LinkCode(code))
    }

    /// The code as the store knows it: the hex SHA-256 of its letters.
    pub fn hash(&self) -> String {
        Sha256::digest(self.0.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The code without dashes, for a URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Grouped by four for reading: `ABCD-EFGH-JKMN`.
impl fmt::Display for LinkCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, group) in self.0.as_bytes().chunks(4).enumerate() {
            if n > 0 {
                f.write_str("-")?;
            }
            f.write_str(std::str::from_utf8(group).unwrap_or_default())?;
        }
        Ok(())
    }
}

/// Never printed whole by accident (a code is a key to a session while it lives).
impl fmt::Debug for LinkCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkCode(..)")
    }
}

/// Why a typed code carries no session: the code page says each in a sentence of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// What was typed does not have the form of a code.
    NotACode,
    /// No such code was ever made (a typo, or a guess).
    Unknown,
    /// Its time ran out before anyone used it.
    Expired,
    /// It was used already: each code works once.
    Spent,
    /// Its session cancelled it, made a newer one, or was forgotten.
    Cancelled,
    /// Its session has its most devices (`--max-devices`) already.
    TooManyDevices,
    /// It was looked at more often than a code needs to be, so it was cancelled.
    LookedAtTooOften,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_has_twelve_unambiguous_letters_and_reads_back_however_it_is_typed() {
        let code = LinkCode::generate();
        assert_eq!(code.as_str().len(), CODE_LEN);
        assert!(code.as_str().bytes().all(|b| ALPHABET.contains(&b)));
        let shown = code.to_string();
        assert_eq!(shown.len(), CODE_LEN + 2);
        assert_eq!(LinkCode::parse(&shown), Some(code.clone()));
        assert_eq!(LinkCode::parse(&shown.to_lowercase()), Some(code.clone()));
        let spaced = shown.replace('-', " ");
        assert_eq!(LinkCode::parse(&format!("  {spaced} ")), Some(code.clone()));
        for bad in [
            "",
            "ABCD",
            "ABCD-EFGH-JKM0",
            "ABCD-EFGH-JKMNP",
            "ABCD-EFGH-JKMI",
            "é",
        ] {
            assert_eq!(LinkCode::parse(bad), None, "{bad}");
        }
        assert_eq!(code.hash().len(), 64);
        assert_ne!(code.hash(), LinkCode::generate().hash());
        assert!((CODE_BITS - CODE_LEN as f64 * 31f64.log2()).abs() < 0.01);
    }

    #[test]
    fn codes_use_every_letter_about_equally() {
        let mut counts = [0usize; 31];
        for _ in 0..2_000 {
            for b in LinkCode::generate().as_str().bytes() {
                counts[ALPHABET.iter().position(|&a| a == b).unwrap()] += 1;
            }
        }
        // 24,000 letters: about 774 each.
        assert!(
            counts.iter().all(|&n| (600..950).contains(&n)),
            "{counts:?}"
        );
    }
}
