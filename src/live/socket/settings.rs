//! The settings view of a socket: a change of the form, saved and acknowledged after its commit.

use super::{LiveView, SETTINGS_FORM, ack, reload_forgotten};
use crate::live::Live;
use crate::live::peer::{End, Peer, Transport};
use crate::live::protocol::{FieldErrors, ServerMessage};
use crate::settings::{SettingsErrors, SettingsInput};
use crate::site::{SaveOutcome, Via};

impl LiveView {
    pub(super) async fn on_settings_change<S: Transport>(
        &mut self,
        peer: &mut Peer<S>,
        live: &Live,
        seq: u64,
        input: SettingsInput,
    ) -> Result<(), End> {
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
        peer.queue_json(&ServerMessage::Ack {
            form: SETTINGS_FORM,
            seq,
            errors,
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
