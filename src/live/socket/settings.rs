//! The settings view of a socket: a change of the form, saved and acknowledged after its commit.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{LiveView, SETTINGS_FORM, ack, reload_forgotten};
use crate::live::Live;
use crate::live::peer::{End, Peer, Transport};
use crate::live::protocol::{FieldErrors, Late, Overtaken, ServerMessage};
use crate::settings::{SettingsErrors, SettingsInput};
use crate::site::{LateEdit, SaveOutcome, Via};

impl LiveView {
    pub(super) async fn on_settings_change<S: Transport>(
        &mut self,
        peer: &mut Peer<S>,
        live: &Live,
        seq: u64,
        mut input: SettingsInput,
        late: Option<&Late>,
    ) -> Result<(), End> {
        // A change typed while the page was offline: the fields saved from elsewhere since it
        // was typed keep that newer value (`site::late`).
        let held_back = match late {
            Some(late) => {
                let edit = LateEdit {
                    base: &late.base,
                    typed_ago: Duration::from_millis(late.typed_ago_ms),
                };
                match live
                    .site
                    .hold_back_overtaken(self.id, &mut input, edit)
                    .await
                {
                    Ok(held_back) => held_back,
                    Err(e) => return Err(peer.store_failed("saving settings", &e).await),
                }
            }
            None => Vec::new(),
        };
        let via = Via::Page {
            page: &self.page,
            form: SETTINGS_FORM,
            seq,
            socket: self.socket_id,
        };
        let (outcome, errors) = match live
            .site
            .save_settings(self.session, &input, self.from, via)
            .await
        {
            Ok(saved) => saved,
            // Not acknowledged: the client keeps the change and sends it again after it
            // reconnects.
            Err(e) => return Err(peer.store_failed("saving settings", &e).await),
        };
        match outcome {
            SaveOutcome::Written(saved, version) => {
                self.saved = saved;
                self.version = version;
            }
            // Too many new sessions from this address: the page keeps what was typed and shows
            // why next to the name.
            SaveOutcome::Nothing | SaveOutcome::TooManyNew | SaveOutcome::NoRoom => {}
            // Committed before: acknowledge it again, change nothing.
            SaveOutcome::Replayed => {
                return ack(peer, SETTINGS_FORM, seq, Some(refused_fields(&errors))).await;
            }
            // Forgotten in another tab (or on another instance): this page must start over
            // with a new session.
            SaveOutcome::Forgotten => return Err(reload_forgotten(peer).await),
        }
        self.typed_username = errors.username.as_ref().and(input.username);
        self.errors = errors;
        let refused = refused_fields(&self.errors);
        // The ack and the render it brings go out in one write.
        let errors = (!refused.is_empty()).then_some(refused);
        let overtaken = held_back
            .iter()
            .map(|o| {
                let (value, at) = (o.value.as_str(), o.at);
                (o.field, Overtaken { value, at })
            })
            .collect::<BTreeMap<_, _>>();
        peer.queue_json(&ServerMessage::Ack {
            form: SETTINGS_FORM,
            seq,
            errors,
            overtaken,
        })
        .await?;
        self.render_if_changed(peer, live).await?;
        peer.flush().await
    }
}

/// The refused fields of a settings change, as an ack names them.
fn refused_fields(errors: &SettingsErrors) -> FieldErrors<'_> {
    let mut refused = FieldErrors::new();
    if let Some(e) = &errors.username {
        refused.insert("username", e.message());
    }
    if let Some(e) = &errors.theme {
        refused.insert("theme", e.message());
    }
    refused
}
