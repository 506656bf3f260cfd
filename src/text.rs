//! What a person sees of a piece of text: the Unicode rules behind usernames and chat messages.
//!
//! Some characters are not seen as themselves. Bidi controls reorder the text around them (a
//! right-to-left override turns "nimda" into "admin"); default-ignorable characters and fillers
//! draw nothing at all; a letter under a flood of combining marks spills out of its line. This
//! module finds them. The domain types (`settings::Username`, `chat::MessageBody`) decide which
//! to refuse and say why.
//!
//! Text is compared and stored in NFC, so "e" followed by a combining acute accent and "é" are
//! the same text, and a length is counted in extended grapheme clusters: what a person sees as
//! one character, such as a family emoji made of five code points.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{
    GeneralCategory, GeneralCategoryGroup, UnicodeEmoji, UnicodeGeneralCategory,
};
use unicode_segmentation::UnicodeSegmentation;

/// The most combining marks (accents, vowel signs) one letter may carry. Real writing needs
/// three at most (a Vietnamese or Hebrew letter, a Devanagari consonant with its vowel sign); a
/// stack of dozens is drawn far above and below its line, over the text around it.
pub const MAX_MARKS_PER_LETTER: usize = 4;

/// The most code points one grapheme cluster may hold. The longest emoji (a kiss with two skin
/// tones) needs 10; without a limit, joiners could glue any number of characters into one
/// "character" and slip past a length counted in graphemes.
pub const MAX_CHARS_PER_GRAPHEME: usize = 12;

/// The tag sequences that follow U+1F3F4 (a black flag) in the three subdivision flags Unicode
/// recommends: England, Scotland, Wales. Any other use of tag characters is invisible text.
const SUBDIVISION_FLAGS: [&str; 3] = ["gbeng", "gbsct", "gbwls"];

/// `text` in Unicode Normalization Form C.
pub fn nfc(text: &str) -> String {
    text.nfc().collect()
}

/// `text` in Unicode Normalization Form KC: compatibility forms (full-width letters, ligatures)
/// folded into the plain ones, for comparing what a person would read as the same.
pub fn nfkc(text: &str) -> String {
    text.nfkc().collect()
}

/// How many characters a person sees in `text`: its extended grapheme clusters.
pub fn graphemes(text: &str) -> usize {
    text.graphemes(true).count()
}

/// The most code points in one grapheme cluster of `text` (0 for the empty text).
pub fn longest_grapheme(text: &str) -> usize {
    text.graphemes(true)
        .map(|g| g.chars().count())
        .max()
        .unwrap_or(0)
}

/// `c` as people write a code point: `U+202E`.
pub fn code_point(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// The explicit bidi formatting characters: embeddings and overrides (U+202A–U+202E), isolates
/// (U+2066–U+2069) and the three marks (U+200E, U+200F, U+061C). Each changes the order in which
/// the text around it is drawn.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
    )
}

/// Unicode's `Default_Ignorable_Code_Point` property (DerivedCoreProperties.txt): characters a
/// renderer draws as nothing when it does not support them, and often when it does. Among them
/// the soft hyphen, the zero-width space and joiners, the Hangul fillers (which Unicode calls
/// letters), the Mongolian vowel separator, the byte-order mark, variation selectors and the
/// tag characters.
fn is_default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// True for a character that draws nothing by itself: a default-ignorable code point, any other
/// format character (general category Cf), or U+2800 (the blank braille pattern, a symbol that
/// looks like a space but is not one). Some of these have a job inside an emoji sequence; see
/// [`first_hidden`].
pub fn is_invisible(c: char) -> bool {
    is_default_ignorable(c) || c == '\u{2800}' || c.general_category() == GeneralCategory::Format
}

/// True for a combining mark (general category M): an accent, a vowel sign, an enclosing mark.
pub fn is_mark(c: char) -> bool {
    c.general_category_group() == GeneralCategoryGroup::Mark
}

/// True for a character that shows on the page by itself: anything but white space, controls,
/// invisible characters and combining marks.
pub fn is_visible(c: char) -> bool {
    !c.is_whitespace() && !c.is_control() && !is_invisible(c) && !is_mark(c)
}

/// True for a visible letter, digit or symbol (to Unicode most emoji are symbols): what a name
/// needs at least one of, where punctuation alone is not enough.
fn is_letter_digit_or_symbol(c: char) -> bool {
    matches!(
        c.general_category_group(),
        GeneralCategoryGroup::Letter | GeneralCategoryGroup::Number | GeneralCategoryGroup::Symbol
    ) && !is_invisible(c)
}

/// True when `text` shows at least one letter, digit, symbol or emoji. The emoji that are
/// punctuation to Unicode (a keycap "#️⃣", "‼️") count by their emoji presentation selector
/// (U+FE0F) or keycap mark (U+20E3).
pub fn has_letter_digit_symbol_or_emoji(text: &str) -> bool {
    text.chars()
        .any(|c| is_letter_digit_or_symbol(c) || matches!(c, '\u{FE0F}' | '\u{20E3}'))
}

/// The first invisible character of `text` that is not doing a job in an emoji sequence, if
/// any. Allowed are: a text or emoji presentation selector (U+FE0E, U+FE0F) directly after a
/// character that has an emoji form ("❤️"); a zero-width joiner (U+200D) between two emoji,
/// across a presentation selector ("👨‍👩‍👧", "🏳️‍🌈"); and the tags of the England, Scotland and Wales
/// flags after their black flag. Everything else [`is_invisible`] names is reported.
pub fn first_hidden(text: &str) -> Option<char> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c == '\u{1F3F4}' {
            let tags = subdivision_flag_tags(chars.get(i + 1..).unwrap_or_default());
            i += 1 + tags;
            continue;
        }
        if is_invisible(c) && !joins_emoji(&chars, i) {
            return Some(c);
        }
        i += 1;
    }
    None
}

/// How many tag characters after a black flag spell one of [`SUBDIVISION_FLAGS`], with the
/// cancel tag that ends it; 0 when they do not.
fn subdivision_flag_tags(after_flag: &[char]) -> usize {
    SUBDIVISION_FLAGS
        .iter()
        .find(|flag| {
            let tags = flag
                .chars()
                .map(|letter| char::from_u32(0xE0000 + u32::from(letter)))
                .chain([Some('\u{E007F}')]);
            after_flag.len() > flag.len() && tags.zip(after_flag).all(|(tag, &c)| tag == Some(c))
        })
        .map_or(0, |flag| flag.len() + 1)
}

/// True when the invisible character at `chars[i]` is a presentation selector or a joiner in
/// its place in an emoji sequence.
fn joins_emoji(chars: &[char], i: usize) -> bool {
    let at = |j: Option<usize>| j.and_then(|j| chars.get(j)).copied();
    let previous = at(i.checked_sub(1));
    match chars.get(i) {
        Some('\u{FE0E}' | '\u{FE0F}') => previous.is_some_and(|p| p.is_emoji_char()),
        Some('\u{200D}') => {
            let before = match previous {
                Some('\u{FE0F}') => at(i.checked_sub(2)),
                other => other,
            };
            before.is_some_and(is_pictograph) && at(Some(i + 1)).is_some_and(is_pictograph)
        }
        _ => false,
    }
}

/// An emoji that may stand in a zero-width-joiner sequence: one with an emoji form, other than
/// the digits, `#` and `*` (which take part only in keycaps).
fn is_pictograph(c: char) -> bool {
    !c.is_ascii() && c.is_emoji_char()
}

/// The most combining marks on one letter of `text`: the longest run of marks in its canonical
/// decomposition (NFD), so an accent that NFC folds into its letter ("á") still counts.
/// Invisible characters do not end a run: marks after a zero-width character are drawn on the
/// letter before it.
pub fn most_marks_on_one_letter(text: &str) -> usize {
    let mut most = 0;
    let mut run = 0;
    for c in text.nfd() {
        if is_mark(c) {
            run += 1;
            most = most.max(run);
        } else if !is_invisible(c) {
            run = 0;
        }
    }
    most
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfc_composes_a_letter_and_its_accent() {
        assert_eq!(nfc("e\u{301}"), "é");
        assert_eq!(nfc("é"), "é");
    }

    #[test]
    fn a_family_emoji_is_one_grapheme_of_five_code_points() {
        let family = "👨\u{200D}👩\u{200D}👧";
        assert_eq!(family.chars().count(), 5);
        assert_eq!(graphemes(family), 1);
        assert_eq!(longest_grapheme(family), 5);
        assert_eq!(first_hidden(family), None);
    }

    #[test]
    fn the_bidi_controls_are_exactly_the_explicit_formatting_characters() {
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
        ] {
            assert!(is_bidi_control(c), "{}", code_point(c));
            assert!(is_invisible(c), "{}", code_point(c));
        }
        for c in ['a', 'א', '\u{200B}', '\u{2065}', '\u{2029}'] {
            assert!(!is_bidi_control(c), "{}", code_point(c));
        }
    }

    #[test]
    fn invisible_characters_are_found_wherever_they_are() {
        for c in [
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{2060}',
            '\u{3164}',
            '\u{FFA0}',
            '\u{115F}',
            '\u{1160}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{180E}',
            '\u{E0001}',
            '\u{E0041}',
            '\u{FE0F}',
            '\u{FE00}',
            '\u{E0100}',
            '\u{034F}',
            '\u{2800}',
            '\u{2064}',
            '\u{1D173}',
        ] {
            assert!(is_invisible(c), "{}", code_point(c));
            assert!(!is_visible(c), "{}", code_point(c));
            assert_eq!(
                first_hidden(&format!("a{c}b")),
                Some(c),
                "{}",
                code_point(c)
            );
        }
        for c in ['a', '1', '!', '€', '❤', 'é', ' ', 'ㄱ'] {
            assert!(!is_invisible(c), "{}", code_point(c));
        }
    }

    #[test]
    fn emoji_sequences_keep_their_joiners_selectors_and_tags() {
        for emoji in [
            "❤\u{FE0F}",
            "☺\u{FE0E}",
            "#\u{FE0F}\u{20E3}",
            "👩\u{1F3FD}\u{200D}💻",
            "🏳\u{FE0F}\u{200D}🌈",
            "🏴\u{200D}☠\u{FE0F}",
            "❤\u{FE0F}\u{200D}🔥",
            "🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}",
        ] {
            assert_eq!(first_hidden(emoji), None, "{emoji:?}");
            assert_eq!(graphemes(emoji), 1, "{emoji:?}");
        }
    }

    #[test]
    fn joiners_selectors_and_tags_outside_an_emoji_sequence_are_hidden() {
        for (text, hidden) in [
            ("a\u{200D}b", '\u{200D}'),
            ("1\u{200D}2", '\u{200D}'),
            ("❤\u{200D}", '\u{200D}'),
            ("\u{200D}❤", '\u{200D}'),
            ("a\u{FE0F}", '\u{FE0F}'),
            ("\u{FE0F}", '\u{FE0F}'),
            ("❤\u{FE0F}\u{FE0F}", '\u{FE0F}'),
            ("🏴\u{E0061}\u{E0062}\u{E007F}", '\u{E0061}'),
            (
                "🏴\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}",
                '\u{E0067}',
            ),
            (
                "x\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}",
                '\u{E0067}',
            ),
        ] {
            assert_eq!(first_hidden(text), Some(hidden), "{text:?}");
        }
    }

    #[test]
    fn marks_are_counted_per_letter() {
        assert_eq!(most_marks_on_one_letter("abc"), 0);
        assert_eq!(
            most_marks_on_one_letter("Việt"),
            2,
            "ệ is e, a dot below and a circumflex"
        );
        assert_eq!(most_marks_on_one_letter("ᾧ"), 3);
        assert_eq!(most_marks_on_one_letter("a\u{301}\u{302}b\u{303}"), 2);
        assert_eq!(
            most_marks_on_one_letter(&format!("a{}", "\u{301}".repeat(39))),
            39
        );
        let hidden_breaks = "\u{301}\u{302}\u{303}\u{200C}".repeat(10);
        assert_eq!(most_marks_on_one_letter(&format!("a{hidden_breaks}")), 30);
        // लक्ष्मी: each consonant carries its own sign.
        assert_eq!(most_marks_on_one_letter("लक्ष्मी"), 1);
    }

    #[test]
    fn punctuation_is_visible_but_not_a_letter_digit_or_symbol() {
        assert!(is_visible('.'));
        assert!(!is_letter_digit_or_symbol('.'));
        for c in ['a', 'ש', '7', '€', '❤', '😀', '\u{1F1E9}'] {
            assert!(is_letter_digit_or_symbol(c), "{}", code_point(c));
        }
        for c in ['\u{3164}', '\u{2800}', '\u{301}', ' '] {
            assert!(!is_letter_digit_or_symbol(c), "{}", code_point(c));
        }
        for emoji in ["#\u{FE0F}\u{20E3}", "\u{203C}\u{FE0F}", "x"] {
            assert!(has_letter_digit_symbol_or_emoji(emoji), "{emoji:?}");
        }
        for text in ["#", "...", "\u{3164}", ""] {
            assert!(!has_letter_digit_symbol_or_emoji(text), "{text:?}");
        }
    }
}
