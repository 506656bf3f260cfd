//! The per-browser settings and the rules for what may be saved.
//!
//! Everything that reaches the store has been through a `parse` constructor here, so the store and
//! the views never see an invalid username or theme. Parsing is per field: a form with a bad
//! username and a good theme still saves the theme, and the bad field keeps its saved value.

use std::fmt;

/// The longest username we accept, counted in characters (not bytes).
pub const USERNAME_MAX_CHARS: usize = 40;

/// A display name: trimmed, at most [`USERNAME_MAX_CHARS`] characters, no control characters.
/// The empty username means "anonymous", which is what a new browser has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    /// Validates user input. Surrounding whitespace is not an error: it is trimmed away.
    pub fn parse(input: &str) -> Result<Username, FieldError> {
        let trimmed = input.trim();
        if trimmed.chars().any(char::is_control) {
            return Err(FieldError::new(
                "Username",
                "may not contain control characters such as tabs or line breaks",
            ));
        }
        let chars = trimmed.chars().count();
        if chars > USERNAME_MAX_CHARS {
            return Err(FieldError::new(
                "Username",
                format!("is {chars} characters long; at most {USERNAME_MAX_CHARS} are allowed"),
            ));
        }
        Ok(Username(trimmed.to_owned()))
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
