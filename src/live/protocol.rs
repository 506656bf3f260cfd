//! The messages of `/live`: JSON text frames, tagged by `"t"`. See `docs/protocol.md`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::views::View;

/// The longest page id a client may choose (it picks 24 hex digits).
pub const MAX_PAGE_ID_LEN: usize = 64;

/// What a browser sends.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// The first message on every socket: which view, proof the page came from us, which build
    /// of the client, which page (stable across reconnects), and the version the page shows.
    Join {
        view: View,
        csrf: String,
        build: String,
        page: String,
        #[serde(default)]
        version: i64,
        /// On the chat view: the id of the newest message the page shows (0 for none).
        #[serde(default)]
        last_message: i64,
        /// On the chat view: the version of the presence list the page shows.
        #[serde(default)]
        presence: u64,
    },
    /// The full state of one form. `seq` grows by one per change on a page; the server saves
    /// only a `seq` above the last one it acknowledged for that page, so replays change nothing.
    Change {
        form: String,
        seq: u64,
        fields: HashMap<String, String>,
        /// Sent when the change was typed while the page could not reach the server (it comes
        /// after a reconnect, or from an earlier page of the browser): what the page knew when
        /// it was typed, for the rule on late edits.
        #[serde(default)]
        late: Option<Late>,
    },
    /// A chat message. `nonce` is chosen by the page per message, so a resend after a
    /// reconnect stores it once; `seq` is numbered with the page's changes.
    Post {
        form: String,
        seq: u64,
        nonce: String,
        body: String,
    },
    /// The person dismissed the notice of a new device: this page stops showing it.
    Dismiss,
}

/// What a page says of a change it sends late (see `site::LateEdit`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Late {
    /// Each field's value on the page when the change was typed: the value last saved, as far
    /// as the page knew.
    pub base: HashMap<String, String>,
    /// How long before sending it the change was typed, by the page's clock.
    pub typed_ago_ms: u64,
}

/// A field of a late change that was not applied: it was saved as `value` from elsewhere at
/// `at` (milliseconds since the Unix epoch), after the change was typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overtaken<'a> {
    pub value: &'a str,
    pub at: i64,
}

/// Messages for fields that were refused, by field name.
pub type FieldErrors<'a> = BTreeMap<&'static str, &'a str>;

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ServerMessage<'a> {
    /// The join was accepted; changes may follow. When the server restarts it closes the
    /// socket with 1012, and the page reconnects after a random delay of up to
    /// `restart_spread_ms`, so the pages of a server do not all come back at once.
    Joined { restart_spread_ms: u64 },
    /// Change `seq` of `form` (and every earlier one) is committed. `errors` lists the fields
    /// that were refused and kept their saved value; `overtaken` the fields of a late change
    /// that were saved from elsewhere after it was typed, and kept that newer value.
    Ack {
        form: &'a str,
        seq: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        errors: Option<FieldErrors<'a>>,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        overtaken: BTreeMap<&'static str, Overtaken<'a>>,
    },
    /// New contents for `<body>`, and the theme for `<html data-theme>`.
    Render {
        version: i64,
        theme: &'a str,
        color_scheme: &'a str,
        html: &'a str,
    },
    /// New chat messages (`<li>` items, oldest first) to add to the log, skipping any the page
    /// already has; `last` is the newest id among them.
    Messages { html: &'a str, last: i64 },
    /// The page cannot be brought back to life (for example, the server runs a newer build):
    /// load it again.
    Reload { reason: &'a str },
    /// A message was not understood; the socket stays open.
    Error { message: &'a str },
}

impl ServerMessage<'_> {
    /// The JSON text of the message.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_is_read_with_its_fields() {
        let json =
            r#"{"t":"join","view":"settings","csrf":"c","build":"b","page":"p","version":3}"#;
        let message: ClientMessage = serde_json::from_str(json).unwrap();
        assert_eq!(
            message,
            ClientMessage::Join {
                view: View::Settings,
                csrf: "c".into(),
                build: "b".into(),
                page: "p".into(),
                version: 3,
                last_message: 0,
                presence: 0,
            }
        );
    }

    #[test]
    fn unknown_types_and_fields_are_refused() {
        for json in [
            r#"{"t":"explode"}"#,
            r#"{"t":"join","view":"settings","csrf":"c","build":"b","page":"p","admin":true}"#,
            r#"{"t":"change","form":"settings","seq":-1,"fields":{}}"#,
            r#"{"t":"change","form":"settings","seq":1,"fields":{"username":7}}"#,
            r#"{"t":"change","form":"settings","seq":1,"fields":{},"late":{"base":{}}}"#,
            r#"{"t":"change","form":"settings","seq":1,"fields":{},"late":{"base":{},"typed_ago_ms":-5}}"#,
            r#"[]"#,
        ] {
            assert!(
                serde_json::from_str::<ClientMessage>(json).is_err(),
                "{json}"
            );
        }
    }

    #[test]
    fn an_ack_without_errors_has_no_errors_field() {
        let ack = ServerMessage::Ack {
            form: "settings",
            seq: 4,
            errors: None,
            overtaken: BTreeMap::new(),
        };
        assert_eq!(ack.to_json(), r#"{"t":"ack","form":"settings","seq":4}"#);
    }
}
