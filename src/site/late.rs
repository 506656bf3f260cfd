//! The rule for offline edits that arrive late: an edit typed while the page could not reach the
//! server is sent once it can (after a reconnect, or by the next page of the browser). When the
//! same field was saved with another value from elsewhere (another device or tab) after the edit
//! was typed, the newer value stays, and the page is told which fields were left and why.
//!
//! What the page says of an edit: the value each field had on the page when it was typed (the
//! value last saved, as far as the page knew), and how long ago it was typed, by the page's own
//! clock. The server turns "how long ago" into a time on its own clock, so a device whose clock
//! is wrong is judged right. A field counts as changed elsewhere when the saved value is neither
//! the one the page knew nor the edit's own; it counts as changed after the edit when the row
//! was last written after the edit was typed. The row has one time for all its fields, so a field
//! changed elsewhere before the edit, followed by another field changed after it, is held back
//! too: the page then offers to apply it anyway, which is a plain change.
//!
//! The check and the save are two steps: a save from another device landing in the moment
//! between them is overwritten by the late edit, as it would be by any edit.

use std::collections::HashMap;
use std::time::Duration;

use super::Site;
use crate::clock::{Millis, millis, now_millis};
use crate::session::SessionId;
use crate::settings::{Settings, SettingsChange, SettingsInput};
use crate::store::StoreError;

/// What a page says of an edit it sends late.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LateEdit<'a> {
    /// Each field's value on the page when the edit was typed, by field name.
    pub base: &'a HashMap<String, String>,
    /// How long before sending it the edit was typed.
    pub typed_ago: Duration,
}

/// A field of a late edit that was not applied: it was saved as `value` at `at`, after the
/// edit was typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overtaken {
    pub field: &'static str,
    pub value: String,
    pub at: Millis,
}

impl Site {
    /// Takes out of `input` each field that a save from elsewhere overtook (see the module's
    /// rule), and returns them; the rest of `input` is for the usual save. Costs a read of the
    /// row (cached), and a query only when a field differs from what the page knew.
    pub async fn hold_back_overtaken(
        &self,
        id: SessionId,
        input: &mut SettingsInput,
        late: LateEdit<'_>,
    ) -> Result<Vec<Overtaken>, StoreError> {
        let now = now_millis();
        let Some(row) = self.0.store.load(id).await? else {
            return Ok(Vec::new());
        };
        let (change, _) = SettingsChange::parse(input);
        let changed = changed_elsewhere(&row.settings, &change, late.base);
        if changed.is_empty() {
            return Ok(Vec::new());
        }
        let Some(updated_at) = self.0.store.updated_at(id).await? else {
            return Ok(Vec::new());
        };
        let typed_at = now.saturating_sub(millis(late.typed_ago));
        if updated_at <= typed_at {
            return Ok(Vec::new());
        }
        Ok(changed
            .into_iter()
            .map(|field| {
                match field {
                    "username" => input.username = None,
                    _ => input.theme = None,
                }
                Overtaken {
                    field,
                    value: saved_text(&row.settings, field).to_owned(),
                    at: updated_at,
                }
            })
            .collect())
    }
}

/// The fields of `change` whose saved value (in `saved`) is neither the value the page knew
/// (`base`) nor the change's own. A field the page said nothing of, or whose value is refused
/// anyway, is not among them.
fn changed_elsewhere(
    saved: &Settings,
    change: &SettingsChange,
    base: &HashMap<String, String>,
) -> Vec<&'static str> {
    let typed = [
        ("username", change.username.as_ref().map(|u| u.as_str())),
        ("theme", change.theme.map(|t| t.as_str())),
    ];
    typed
        .into_iter()
        .filter_map(|(field, typed)| {
            let (typed, known) = (typed?, base.get(field)?);
            let now = saved_text(saved, field);
            (now != known && now != typed).then_some(field)
        })
        .collect()
}

/// A saved field's value as the form shows it.
fn saved_text<'s>(saved: &'s Settings, field: &str) -> &'s str {
    match field {
        "username" => saved.username.as_str(),
        _ => saved.theme.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(username: &str, theme: &str) -> SettingsInput {
        SettingsInput {
            username: Some(username.into()),
            theme: Some(theme.into()),
        }
    }

    fn saved(username: &str, theme: &str) -> Settings {
        let (change, _) = SettingsChange::parse(&input(username, theme));
        Settings {
            username: change.username.unwrap(),
            theme: change.theme.unwrap(),
        }
    }

    fn base(username: &str, theme: &str) -> HashMap<String, String> {
        HashMap::from([
            ("username".to_owned(), username.to_owned()),
            ("theme".to_owned(), theme.to_owned()),
        ])
    }

    #[test]
    fn only_a_field_saved_elsewhere_with_a_third_value_is_held_back() {
        let (edit, _) = SettingsChange::parse(&input("Offline", "dark"));
        // Nothing saved since the page knew it.
        assert!(changed_elsewhere(&saved("Ada", "light"), &edit, &base("Ada", "light")).is_empty());
        // The name was saved elsewhere; the theme was not.
        assert_eq!(
            changed_elsewhere(&saved("Newer", "light"), &edit, &base("Ada", "light")),
            ["username"]
        );
        // Saved elsewhere as this very edit: nothing to hold back.
        assert!(
            changed_elsewhere(&saved("Offline", "dark"), &edit, &base("Ada", "light")).is_empty()
        );
        // A page that said nothing of the field it knew.
        assert!(changed_elsewhere(&saved("Newer", "dark"), &edit, &HashMap::new()).is_empty());
        assert_eq!(
            changed_elsewhere(&saved("Newer", "system"), &edit, &base("Ada", "light")),
            ["username", "theme"]
        );
    }

    #[test]
    fn a_refused_value_is_not_held_back_it_is_refused() {
        let (edit, errors) = SettingsChange::parse(&input("\u{7}", "purple"));
        assert!(errors.username.is_some());
        assert!(errors.theme.is_some());
        assert!(
            changed_elsewhere(&saved("Newer", "dark"), &edit, &base("Ada", "light")).is_empty()
        );
    }
}
