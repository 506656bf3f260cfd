//! "Your devices" on the settings page, and the notice every page of a session shows when a new
//! device joins it.
//!
//! The contract scripts rely on: the list is `<ul id="devices">`, one `<li>` per device, the
//! current one marked `data-this-device`; each other device has a form posting to
//! `/settings/devices/sign-out` with a hidden `device` naming it by its public handle.

use maud::{Markup, html};

use crate::clock::Millis;
use crate::device::{self, Device, DeviceId, NAME_MAX_CHARS};

/// The devices card of a settings page.
#[derive(Debug, Clone, Copy)]
pub struct DevicesCard<'a> {
    /// Every device of the session, first added first.
    pub devices: &'a [Device],
    /// This browser's.
    pub this: DeviceId,
    /// The moment the page shows ("active now", "3 days ago").
    pub now: Millis,
    /// Why the last rename or sign-out was refused, if it was.
    pub error: Option<&'a str>,
}

/// A device that joined the session, announced on the other devices' pages.
#[derive(Debug, Clone, Copy)]
pub struct Joined<'a> {
    pub device: &'a Device,
    pub now: Millis,
}

/// "Your devices": each device with its name, how and when it was added, when it was last
/// active, a rename form, and a "Sign out" button for each other device.
pub(super) fn card(card: &DevicesCard<'_>, csrf_token: &str) -> Markup {
    html! {
        section.card #devices-card aria-labelledby="devices-title" {
            h2 #devices-title { "Your devices" }
            p.hint { "Every browser that uses this session. Signing one out ends its access at once: its pages start over with an empty session, and its cookie no longer works here." }
            @if let Some(error) = card.error {
                p.error role="alert" { (error) }
            }
            ul #devices {
                @for d in card.devices {
                    (item(d, card, csrf_token))
                }
            }
        }
    }
}

fn item(d: &Device, card: &DevicesCard<'_>, csrf_token: &str) -> Markup {
    let this = d.id == card.this;
    let handle = d.handle().to_string();
    let rename_id = format!("rename-{handle}");
    html! {
        li.device data-this-device[this] data-device=(handle) {
            p.device-name {
                bdi { strong { (d.shown_name()) } }
                @if this { " " span.badge { "this device" } }
            }
            p.hint {
                "Added " (device::added_label(d.added_at, card.now)) ", " (d.added.label())
                " · " @if this { "active now" } @else { "last active " (device::active_label(d.active_at, card.now)) }
            }
            details.rename {
                summary { "Rename" }
                form method="post" action="/settings/devices/rename" {
                    input type="hidden" name="_csrf" value=(csrf_token);
                    input type="hidden" name="device" value=(handle);
                    label for=(rename_id) { "New name" }
                    input id=(rename_id) type="text" name="name" value=(d.shown_name())
                        maxlength=(NAME_MAX_CHARS * 4) required autocomplete="off";
                    button.secondary type="submit" { "Rename" }
                }
            }
            @if !this {
                (sign_out_form(&handle, csrf_token, "Sign out"))
            }
        }
    }
}

/// The form that signs out the device of `handle`.
fn sign_out_form(handle: &str, csrf_token: &str, label: &str) -> Markup {
    html! {
        form.sign-out method="post" action="/settings/devices/sign-out" {
            input type="hidden" name="_csrf" value=(csrf_token);
            input type="hidden" name="device" value=(handle);
            button.secondary type="submit" { (label) }
        }
    }
}

/// "A new device joined: Chrome on Android, just now. Not you? Sign it out.", with the button,
/// and one that dismisses the notice on this page.
pub(super) fn joined_notice(joined: &Joined<'_>, csrf_token: &str) -> Markup {
    let d = joined.device;
    let handle = d.handle().to_string();
    html! {
        aside.notice #new-device role="status" {
            p {
                "A new device joined: " bdi { strong { (d.shown_name()) } } ", "
                (device::added_label(d.added_at, joined.now)) ". Not you? Sign it out."
            }
            div.actions {
                (sign_out_form(&handle, csrf_token, "Sign it out"))
                button.secondary type="button" data-live-dismiss="new-device" { "Dismiss" }
            }
        }
    }
}
