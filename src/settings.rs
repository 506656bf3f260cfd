//! The per-browser settings and the rules for what may be saved.
//!
//! Everything that reaches the store has been through a `parse` constructor here, so the store and
//! the views never see an invalid username or theme. Parsing is per field: a form with a bad
//! username and a good theme still saves the theme, and the bad field keeps its saved value.

use std::fmt;

use crate::text;

/// The longest username we accept, counted in what a person sees as one character (an extended
/// grapheme cluster: "é" is one, and so is a family emoji made of five code points), not in
/// code points or bytes.
pub const USERNAME_MAX_CHARS: usize = 40;

/// A display name: trimmed, in NFC, at most [`USERNAME_MAX_CHARS`] characters, shown as itself.
/// It may not hold control characters, bidi controls, invisible characters (outside an emoji
/// sequence) or more than [`text::MAX_MARKS_PER_LETTER`] combining marks on one letter, and a
/// non-empty name has at least one letter, digit, symbol or emoji. The empty username means
/// "anonymous", which is what a new browser has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    /// Validates user input. Surrounding whitespace is not an error: it is trimmed away. The name
    /// is normalised to NFC first, so what is checked is what is stored.
    pub fn parse(input: &str) -> Result<Username, FieldError> {
        let normalized = text::nfc(input);
        let name = normalized.trim();
        let refused = |problem: &dyn fmt::Display| Err(FieldError::new("Username", problem));
        if name
            .chars()
            .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
        {
            return refused(&"may not contain control characters such as tabs or line breaks");
        }
        if let Some(c) = name.chars().find(|&c| text::is_bidi_control(c)) {
            return refused(&format_args!(
                "may not contain characters that change the direction of text (it has {})",
                text::code_point(c)
            ));
        }
        if let Some(c) = text::first_hidden(name) {
            return refused(&format_args!(
                "may not contain invisible characters such as zero-width spaces (it has {})",
                text::code_point(c)
            ));
        }
        if name.chars().next().is_some_and(text::is_mark) {
            return refused(&"may not start with an accent or other combining mark");
        }
        let marks = text::MAX_MARKS_PER_LETTER;
        if text::most_marks_on_one_letter(name) > marks {
            return refused(&format_args!(
                "may not stack more than {marks} accents or other combining marks on one letter"
            ));
        }
        let joined = text::MAX_CHARS_PER_GRAPHEME;
        if text::longest_grapheme(name) > joined {
            return refused(&format_args!(
                "may not join more than {joined} code points into one letter or emoji"
            ));
        }
        let chars = text::graphemes(name);
        if chars > USERNAME_MAX_CHARS {
            return refused(&format_args!(
                "is {chars} characters long; at most {USERNAME_MAX_CHARS} are allowed"
            ));
        }
        if !name.is_empty() && !text::has_letter_digit_symbol_or_emoji(name) {
            return refused(&"must contain at least one letter, digit, symbol or emoji");
        }
        if let Some(label) = drawn_label(name) {
            return refused(&format_args!(
                "may not be or end in \u{201c}{label}\u{201d}: the page shows that itself beside names"
            ));
        }
        Ok(Username(name.to_owned()))
    }

    /// Rebuilds a username read back from our own database, where it was validated on the way in.
    pub(crate) fn from_trusted(value: String) -> Username {
        Username(value)
    }

    /// The stored text; empty for anonymous.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when no name was chosen.
    pub fn is_anonymous(&self) -> bool {
        self.0.is_empty()
    }

    /// What to show to people: the name, or "anonymous".
    pub fn display(&self) -> &str {
        if self.is_anonymous() {
            "anonymous"
        } else {
            &self.0
        }
    }
}

/// What the pages themselves draw as or beside a name: the name of a browser without one, and the
/// markers after a name. A name that is one of the first or ends in one of the second could pass
/// for something the page says.
const NAMES_THE_PAGE_DRAWS: [&str; 2] = ["anonymous", "no name"];
const MARKERS_THE_PAGE_DRAWS: [&str; 2] = ["(you)", "(anonymous)"];

/// The label of the page that `name` is or ends in, compared as a person reads it: ignoring case,
/// spaces and compatibility forms (full-width brackets, ligatures).
fn drawn_label(name: &str) -> Option<&'static str> {
    let folded: String = text::nfkc(name)
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let squeeze = |label: &str| label.replace(' ', "");
    NAMES_THE_PAGE_DRAWS
        .into_iter()
        .find(|label| folded == squeeze(label))
        .or_else(|| {
            MARKERS_THE_PAGE_DRAWS
                .into_iter()
                .find(|label| folded.ends_with(&squeeze(label)))
        })
}

/// The colour scheme of every page. `System` follows the operating system's preference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Theme {
    #[default]
    System,
    Light,
    Dark,
}

impl Theme {
    /// Every theme, in the order the settings form offers them.
    pub const ALL: [Theme; 3] = [Theme::System, Theme::Light, Theme::Dark];

    /// Accepts exactly the values of the settings form's `<select>`.
    pub fn parse(input: &str) -> Result<Theme, FieldError> {
        match input {
            "system" => Ok(Theme::System),
            "light" => Ok(Theme::Light),
            "dark" => Ok(Theme::Dark),
            _ => Err(FieldError::new(
                "Theme",
                "must be one of system, light or dark",
            )),
        }
    }

    /// The value used in forms, in the database and in `<html data-theme>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Theme::System => "system",
            Theme::Light => "light",
            Theme::Dark => "dark",
        }
    }

    /// The label shown in the settings form.
    pub fn label(self) -> &'static str {
        match self {
            Theme::System => "Same as my system",
            Theme::Light => "Light",
            Theme::Dark => "Dark",
        }
    }
}

impl fmt::Display for Theme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One browser's settings. `Settings::default()` is the "null object" shown to a browser that has
/// never saved anything: no row exists for it, and none is written by looking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub username: Username,
    pub theme: Theme,
}

/// A validated change to some of the settings. `None` leaves the saved value as it is, so a
/// field that failed validation (or was not sent) never overwrites what was saved before.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsChange {
    pub username: Option<Username>,
    pub theme: Option<Theme>,
}

/// The raw text of the settings form, as a browser sends it. Missing fields are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct SettingsInput {
    pub username: Option<String>,
    pub theme: Option<String>,
}

/// Validation messages, per field, for display next to the field.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SettingsErrors {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<FieldError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub theme: Option<FieldError>,
}

impl SettingsErrors {
    /// True when every field was valid.
    pub fn is_empty(&self) -> bool {
        self.username.is_none() && self.theme.is_none()
    }
}

impl SettingsChange {
    /// Validates each field on its own: the valid ones become the change, the invalid ones become
    /// messages. Both halves are returned so a caller can save the good part and show the bad.
    pub fn parse(input: &SettingsInput) -> (SettingsChange, SettingsErrors) {
        let mut change = SettingsChange::default();
        let mut errors = SettingsErrors::default();
        match input.username.as_deref().map(Username::parse) {
            Some(Ok(username)) => change.username = Some(username),
            Some(Err(e)) => errors.username = Some(e),
            None => {}
        }
        match input.theme.as_deref().map(Theme::parse) {
            Some(Ok(theme)) => change.theme = Some(theme),
            Some(Err(e)) => errors.theme = Some(e),
            None => {}
        }
        (change, errors)
    }

    /// True when there is nothing to save.
    pub fn is_empty(&self) -> bool {
        self.username.is_none() && self.theme.is_none()
    }
}

/// Why one field was refused, phrased for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct FieldError(String);

impl FieldError {
    pub(crate) fn new(field: &str, problem: impl fmt::Display) -> FieldError {
        FieldError(format!("{field} {problem}."))
    }

    /// The message, a full sentence.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_the_page_draws_itself_is_refused() {
        for bad in [
            "anonymous",
            "Anonymous",
            " ANONYMOUS ",
            "ano nymous",
            "No name",
            "Bob (you)",
            "Bob(you)",
            "Bob (YOU)",
            "Bob \u{ff08}you\u{ff09}",
            "(you)",
            "Bob (anonymous)",
        ] {
            let message = refusal(bad);
            assert!(
                message.contains("the page shows that itself beside names"),
                "{bad:?}: {message}"
            );
        }
        for fine in [
            "anonymous fan",
            "Bob you",
            "you",
            "(you) Bob",
            "Bob (yours)",
        ] {
            assert!(Username::parse(fine).is_ok(), "{fine:?} was refused");
        }
    }

    #[test]
    fn a_username_is_trimmed() {
        assert_eq!(Username::parse("  ada \t").unwrap().as_str(), "ada");
    }

    #[test]
    fn an_empty_username_means_anonymous() {
        let name = Username::parse("   ").unwrap();
        assert!(name.is_anonymous());
        assert_eq!(name.display(), "anonymous");
    }

    #[test]
    fn forty_characters_are_accepted_even_when_they_take_more_bytes() {
        let name = "é".repeat(40);
        assert_eq!(name.len(), 80);
        assert_eq!(Username::parse(&name).unwrap().as_str(), name);
    }

    #[test]
    fn forty_one_characters_are_refused_with_the_count() {
        let err = Username::parse(&"a".repeat(41)).unwrap_err();
        assert!(err.message().contains("41 characters"), "{err}");
        assert!(err.message().contains("at most 40"), "{err}");
    }

    #[test]
    fn control_characters_inside_a_username_are_refused() {
        for bad in ["a\nb", "a\tb", "a\u{7}b", "a\u{0}b", "a\u{9b}b"] {
            assert!(Username::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    /// The sentence a refused name gets.
    fn refusal(input: &str) -> String {
        match Username::parse(input) {
            Ok(name) => panic!("{input:?} was accepted as {:?}", name.as_str()),
            Err(e) => e.message().to_owned(),
        }
    }

    #[test]
    fn line_and_paragraph_separators_are_line_breaks() {
        for bad in ["a\u{2028}b", "a\u{2029}b"] {
            assert_eq!(
                refusal(bad),
                "Username may not contain control characters such as tabs or line breaks."
            );
        }
    }

    #[test]
    fn a_right_to_left_override_is_refused() {
        assert_eq!(
            refusal("\u{202E}nimda"),
            "Username may not contain characters that change the direction of text (it has U+202E)."
        );
    }

    #[test]
    fn every_bidi_control_is_refused_wherever_it_is() {
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
        ] {
            for name in [format!("{c}ada"), format!("ad{c}a"), format!("ada{c}")] {
                let message = refusal(&name);
                assert!(
                    message.contains("change the direction of text"),
                    "{message}"
                );
                assert!(message.contains(&text::code_point(c)), "{message}");
            }
        }
    }

    #[test]
    fn names_made_only_of_invisible_characters_are_refused() {
        for (name, c) in [
            ("\u{200B}", "U+200B"),
            ("\u{200B}\u{200B}\u{200B}", "U+200B"),
            ("\u{200C}", "U+200C"),
            ("\u{200D}", "U+200D"),
            ("\u{2060}", "U+2060"),
            ("\u{3164}", "U+3164"),
            ("\u{3164}\u{3164}", "U+3164"),
            ("\u{FFA0}", "U+FFA0"),
            ("\u{115F}", "U+115F"),
            ("\u{1160}", "U+1160"),
            ("\u{FEFF}", "U+FEFF"),
            ("\u{00AD}", "U+00AD"),
            ("\u{180E}", "U+180E"),
            ("\u{E0041}\u{E0042}", "U+E0041"),
            ("\u{FE0F}", "U+FE0F"),
            ("\u{2800}", "U+2800"),
        ] {
            assert_eq!(
                refusal(name),
                format!(
                    "Username may not contain invisible characters such as zero-width spaces (it has {c})."
                ),
                "{name:?}"
            );
        }
    }

    #[test]
    fn invisible_characters_beside_visible_ones_are_refused_too() {
        for name in [
            "ad\u{200B}min",
            "admin\u{3164}",
            "a\u{200D}b",
            "\u{FEFF}ada",
            "ada\u{E0001}",
            "ada\u{FE0F}",
        ] {
            assert!(refusal(name).contains("invisible characters"), "{name:?}");
        }
    }

    #[test]
    fn the_hangul_filler_is_refused_although_unicode_calls_it_a_letter() {
        assert!(refusal("\u{3164}").contains("(it has U+3164)"));
        assert!(refusal("ㅎ\u{3164}").contains("(it has U+3164)"));
        // The Hangul letters themselves are names like any other.
        assert_eq!(Username::parse("한글").unwrap().as_str(), "한글");
    }

    #[test]
    fn a_letter_under_a_flood_of_combining_marks_is_refused() {
        let flood = format!("a{}", "\u{301}".repeat(39));
        assert_eq!(
            refusal(&flood),
            "Username may not stack more than 4 accents or other combining marks on one letter."
        );
        // Four marks on one letter are allowed, and so are marks spread over several letters.
        let four = format!("a{}", "\u{301}\u{302}\u{303}\u{304}");
        assert!(Username::parse(&four).is_ok());
        // Counted in the decomposed form: "á" is a letter and one mark.
        assert!(refusal(&format!("á{}", "\u{302}\u{303}\u{304}\u{305}")).contains("more than 4"));
        assert!(Username::parse("a\u{323}\u{302}b\u{323}\u{302}").is_ok());
        assert!(
            refusal(&format!("a{}", "\u{301}\u{302}\u{303}\u{304}\u{305}")).contains("more than 4")
        );
    }

    #[test]
    fn a_name_may_not_start_with_a_combining_mark() {
        assert_eq!(
            refusal("\u{301}ada"),
            "Username may not start with an accent or other combining mark."
        );
        assert!(refusal("\u{301}").contains("may not start with an accent"));
    }

    #[test]
    fn a_name_needs_a_letter_digit_symbol_or_emoji() {
        for name in [".", "...", "-_-", "“”", "!?"] {
            assert_eq!(
                refusal(name),
                "Username must contain at least one letter, digit, symbol or emoji.",
                "{name:?}"
            );
        }
        for name in ["a.", "7", "€", "😀", "ש", "..x.."] {
            assert!(Username::parse(name).is_ok(), "{name:?}");
        }
    }

    #[test]
    fn the_length_counts_graphemes_so_a_family_emoji_is_one_character() {
        let family = "👨\u{200D}👩\u{200D}👧";
        assert_eq!(family.chars().count(), 5);
        let forty = family.repeat(40);
        assert_eq!(Username::parse(&forty).unwrap().as_str(), forty);
        assert_eq!(
            refusal(&family.repeat(41)),
            "Username is 41 characters long; at most 40 are allowed."
        );
    }

    #[test]
    fn forty_decomposed_accented_letters_are_forty_characters() {
        let decomposed = "e\u{301}".repeat(40);
        assert_eq!(decomposed.chars().count(), 80);
        assert_eq!(
            Username::parse(&decomposed).unwrap().as_str(),
            "é".repeat(40)
        );
        assert!(refusal(&"e\u{301}".repeat(41)).contains("41 characters"));
    }

    #[test]
    fn a_name_is_stored_in_nfc() {
        assert_eq!(Username::parse("e\u{301}").unwrap().as_str(), "é");
        assert_eq!(
            Username::parse("  Rene\u{301}e ").unwrap().as_str(),
            "Renée"
        );
        // Already composed: unchanged.
        assert_eq!(Username::parse("Renée").unwrap().as_str(), "Renée");
    }

    #[test]
    fn a_heart_with_its_emoji_selector_and_other_emoji_sequences_are_accepted() {
        for name in [
            "\u{2764}\u{FE0F}",
            "Ada \u{2764}\u{FE0F}",
            "👩\u{1F3FD}\u{200D}💻",
            "🏳\u{FE0F}\u{200D}🌈",
            "#\u{FE0F}\u{20E3}",
            "🇩🇪",
            "🏴\u{E0067}\u{E0062}\u{E0077}\u{E006C}\u{E0073}\u{E007F}",
        ] {
            assert_eq!(Username::parse(name).unwrap().as_str(), name, "{name:?}");
        }
    }

    #[test]
    fn a_grapheme_glued_from_too_many_code_points_is_refused() {
        let chain = ["👨"; 8].join("\u{200D}");
        assert_eq!(text::graphemes(&chain), 1);
        assert_eq!(
            refusal(&chain),
            "Username may not join more than 12 code points into one letter or emoji."
        );
        // The longest emoji there is: a kiss with two skin tones, 10 code points.
        let kiss = "👩\u{1F3FB}\u{200D}\u{2764}\u{FE0F}\u{200D}💋\u{200D}👨\u{1F3FC}";
        assert_eq!(kiss.chars().count(), 10);
        assert!(Username::parse(kiss).is_ok());
    }

    #[test]
    fn right_to_left_and_other_scripts_are_names_like_any_other() {
        for name in ["שלום", "سلام", "Zoë", "Nguyễn", "लक्ष्मी", "山田太郎", "Ελένη"]
        {
            assert_eq!(Username::parse(name).unwrap().as_str(), name, "{name:?}");
        }
    }

    #[test]
    fn markup_in_a_username_is_just_text() {
        let name = Username::parse("<img src=x onerror=alert(1)>").unwrap();
        assert_eq!(name.as_str(), "<img src=x onerror=alert(1)>");
    }

    #[test]
    fn only_the_three_themes_are_accepted() {
        for theme in Theme::ALL {
            assert_eq!(Theme::parse(theme.as_str()).unwrap(), theme);
        }
        for bad in ["", "Dark", "blue", "dark "] {
            assert!(Theme::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_bad_field_does_not_stop_a_good_one_from_being_saved() {
        let input = SettingsInput {
            username: Some("x".repeat(50)),
            theme: Some("dark".into()),
        };
        let (change, errors) = SettingsChange::parse(&input);
        assert_eq!(change.username, None);
        assert_eq!(change.theme, Some(Theme::Dark));
        assert!(errors.username.is_some());
        assert!(errors.theme.is_none());
    }

    #[test]
    fn a_missing_field_is_left_as_it_was() {
        let input = SettingsInput {
            username: None,
            theme: Some("dark".into()),
        };
        let (change, errors) = SettingsChange::parse(&input);
        assert!(errors.is_empty());
        // The store keeps the saved value of a field the change does not name
        // (`tests/store`: a partial change keeps the other field).
        assert_eq!(change.username, None);
        assert_eq!(change.theme, Some(Theme::Dark));
    }
}
