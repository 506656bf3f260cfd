//! "Download my data": what the store holds of one session, as a JSON document whose shape is
//! documented in `docs/export.md` and versioned by its `version` field.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::clock::Millis;
use crate::store::SessionData;

/// The version of the export's shape; bumped by any change a reader could notice.
pub const EXPORT_VERSION: u32 = 2;

/// The file name a browser saves the export under.
pub const EXPORT_FILE_NAME: &str = "livesession-data.json";

/// The export of `data`, made at `now`, pretty-printed.
pub fn export_json(data: &SessionData, now: Millis) -> String {
    let settings = data.settings.as_ref().map(|row| {
        json!({
            "username": row.settings.username.as_str(),
            "theme": row.settings.theme.as_str(),
            "created_at": time(row.inserted_at),
            "updated_at": time(row.updated_at),
            "last_used_at": time(row.read_at),
        })
    });
    let messages: Vec<Value> = data
        .messages
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "sent_at": time(m.created_at),
                "name": m.author_name,
                "body": m.body,
            })
        })
        .collect();
    // A device by what a person sees of it: never its id, nor the handle pages name it by.
    let devices: Vec<Value> = data
        .devices
        .iter()
        .map(|d| {
            json!({
                "name": d.shown_name(),
                "added_at": time(d.added_at),
                "added": d.added.as_str(),
                "last_active_at": time(d.active_at),
            })
        })
        .collect();
    let document = json!({
        "format": "livesession export",
        "version": EXPORT_VERSION,
        "exported_at": time(now),
        "settings": settings,
        "devices": devices,
        "messages": messages,
    });
    serde_json::to_string_pretty(&document).unwrap_or_else(|_| "{}".to_owned())
}

/// A time as RFC 3339 in UTC, to the millisecond.
fn time(at: Millis) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(at).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Message;
    use crate::session::SessionId;
    use crate::settings::{Settings, Theme, Username};
    use crate::store::SettingsRow;

    #[test]
    fn the_export_names_its_version_and_carries_every_field() {
        let data = SessionData {
            settings: Some(SettingsRow {
                settings: Settings {
                    username: Username::parse("Ada").unwrap(),
                    theme: Theme::Dark,
                },
                inserted_at: 1_000,
                updated_at: 2_000,
                read_at: 3_000,
            }),
            messages: vec![Message {
                id: 7,
                author: SessionId::generate(),
                author_name: "Ada".into(),
                body: "hello \"there\"".into(),
                created_at: 1_500,
            }],
            devices: vec![crate::device::Device {
                id: crate::device::DeviceId::generate(),
                name: "Firefox on Linux".into(),
                added_at: 1_000,
                added: crate::device::Added::First,
                active_at: 3_000,
            }],
        };
        let parsed: Value = serde_json::from_str(&export_json(&data, 4_000)).unwrap();
        assert_eq!(parsed["version"], EXPORT_VERSION);
        assert_eq!(parsed["exported_at"], "1970-01-01T00:00:04.000Z");
        assert_eq!(parsed["settings"]["username"], "Ada");
        assert_eq!(parsed["settings"]["theme"], "dark");
        assert_eq!(parsed["settings"]["created_at"], "1970-01-01T00:00:01.000Z");
        assert_eq!(parsed["messages"][0]["body"], "hello \"there\"");
        assert_eq!(parsed["messages"][0]["id"], 7);
        assert_eq!(parsed["devices"][0]["name"], "Firefox on Linux");
        assert_eq!(parsed["devices"][0]["added"], "first");
        assert_eq!(
            parsed["devices"][0]["last_active_at"],
            "1970-01-01T00:00:03.000Z"
        );
        let device = data.devices[0].id;
        assert!(
            !export_json(&data, 4_000).contains(&device.to_key()),
            "no device id"
        );
        assert!(
            parsed["messages"][0].get("author").is_none(),
            "no session id"
        );
        let empty: Value = serde_json::from_str(&export_json(&SessionData::default(), 0)).unwrap();
        assert!(empty["settings"].is_null());
        assert_eq!(empty["messages"], json!([]));
    }
}
