//! The settings page: `GET /settings`, its form (`POST /settings`), and its buttons: "forget
//! me", "sign out everywhere else", "Download my data", and each device's rename and sign out.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Redirect, Response};
use maud::Markup;
use serde::Deserialize;

use super::link::{RequestHost, origin};
use super::{Form, TokenForm, check_csrf, ended, html_page};
use crate::clock::Millis;
use crate::clock::now_millis;
use crate::device::{self, Handle};
use crate::http::client::{ClientAddr, LocalAddr};
use crate::http::error::AppError;
use crate::http::session::ReplaceSession;
use crate::link::LinkCode;
use crate::metrics::{Page, metrics};
use crate::session::Session;
use crate::settings::{Settings, SettingsInput};
use crate::site::{DeviceChange, DeviceList, SaveOutcome, Site, Via};
use crate::views::{self, DevicesCard, FormState, FreshCode, Joined, LinkCard, Screen, View};
use std::hash::{DefaultHasher, Hash, Hasher};

/// The query of `GET /settings`: the one-time code just made, to show it.
#[derive(Debug, Deserialize)]
pub struct SettingsQuery {
    link: Option<String>,
}

/// `GET /settings`: the form, filled from the database on this very first render, and the
/// session's devices. With `?link=CODE` (where making a code redirects), the code is shown while
/// it is this session's and live.
pub async fn show_settings(
    State(site): State<Site>,
    session: Session,
    host: RequestHost,
    local: Option<Extension<LocalAddr>>,
    Query(query): Query<SettingsQuery>,
) -> Result<Response, AppError> {
    metrics().page_view(Page::Settings);
    let (saved, version) = site.settings_for_request(session).await?;
    let mut page = SettingsPage::of(&site, session, saved, version).await?;
    if let Some(code) = query.link.as_deref().and_then(LinkCode::parse)
        && let Some(expires_at) = site.owns_live_link(session.id, &code).await?
    {
        page.link = Some(expires_at);
        let url = format!(
            "{}/link/{}",
            origin(&site, &host, local.map(|Extension(local)| local)),
            code.as_str()
        );
        let (shown, qr) = (code.to_string(), site.qr_svg(&url));
        let fresh = FreshCode {
            shown: &shown,
            url: &url,
            qr: &qr,
        };
        return Ok(page
            .render(FormState::default(), Some(fresh), None)
            .into_response());
    }
    // A page with a live link code shows its expiry: not one for the cache. The list of
    // devices says "3 days ago": a cached page is one of the same list said the same way.
    let cacheable = !session.is_new && page.link.is_none();
    let stamp = devices_stamp(&page.devices, session, page.now);
    if cacheable && let Some(html) = site.pages().get(session.id, &page.saved, version, stamp) {
        return Ok(html_page(html));
    }
    let html = Bytes::from(page.render(FormState::default(), None, None).into_string());
    if cacheable {
        site.pages()
            .put(session.id, page.saved, version, stamp, html.clone());
    }
    Ok(html_page(html))
}

/// What the devices part of a settings page shows, as one number: equal for two renders that
/// show the same list the same way.
fn devices_stamp(list: &DeviceList, session: Session, now: Millis) -> u64 {
    let mut hasher = DefaultHasher::new();
    session.device.hash(&mut hasher);
    for d in list.devices.iter() {
        d.id.hash(&mut hasher);
        d.name.hash(&mut hasher);
        device::added_label(d.added_at, now).hash(&mut hasher);
        device::active_label(d.active_at, now).hash(&mut hasher);
    }
    list.joined.as_ref().map(|d| d.id).hash(&mut hasher);
    hasher.finish()
}

/// A settings page of one session, as a form post or a page view renders it.
struct SettingsPage<'a> {
    site: &'a Site,
    session: Session,
    saved: Settings,
    version: i64,
    devices: DeviceList,
    /// When the session's live code expires, if it has one.
    link: Option<Millis>,
    now: Millis,
}

impl<'a> SettingsPage<'a> {
    /// The page of `session`, showing `saved` (at `version`) and its devices as they are now.
    async fn of(
        site: &'a Site,
        session: Session,
        saved: Settings,
        version: i64,
    ) -> Result<SettingsPage<'a>, AppError> {
        Ok(SettingsPage {
            site,
            session,
            saved,
            version,
            devices: site.devices_of(session).await?,
            link: site.live_link(session.id).await?,
            now: now_millis(),
        })
    }

    /// The page, with the form's own state, a code just made, and why a device change was
    /// refused.
    fn render(
        &self,
        form: FormState<'_>,
        fresh: Option<FreshCode<'_>>,
        device_error: Option<&str>,
    ) -> Markup {
        let id = self.session.id;
        let link = self.link.map(|expires_at| LinkCard {
            fresh,
            minutes_left: views::minutes_left(expires_at),
        });
        views::document(&Screen {
            view: View::Settings,
            saved: &self.saved,
            version: self.version,
            csrf_token: &self.site.csrf_token(id),
            form,
            chat: None,
            link,
            devices: Some(DevicesCard {
                devices: &self.devices.devices,
                this: self.session.device,
                now: self.now,
                error: device_error,
            }),
            joined: self.devices.joined.as_ref().map(|device| Joined {
                device,
                now: self.now,
            }),
        })
    }
}

/// The settings form as posted.
#[derive(Debug, Deserialize)]
pub struct SettingsForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    username: Option<String>,
    theme: Option<String>,
}

/// `POST /settings`: saves every valid field, then `303` back to the form; when a field was
/// refused, `422` with the form showing what was typed and why it was refused. Live tabs of the
/// session are told, so they show the change too.
pub async fn save_settings(
    State(site): State<Site>,
    session: Session,
    ClientAddr(from): ClientAddr,
    Form(form): Form<SettingsForm>,
) -> Result<Response, AppError> {
    check_csrf(&site, session, &form.csrf)?;
    let input = SettingsInput {
        username: form.username,
        theme: form.theme,
    };
    let (outcome, errors) = site.save_settings(session, &input, from, Via::Form).await?;
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    let (saved, version) = match outcome {
        SaveOutcome::Written(saved, version) => (saved, version),
        // The form comes back as it was typed, with the sentence next to the name.
        SaveOutcome::TooManyNew => {
            status = StatusCode::TOO_MANY_REQUESTS;
            site.settings_for_request(session).await?
        }
        SaveOutcome::NoRoom => {
            status = StatusCode::INSUFFICIENT_STORAGE;
            site.settings_for_request(session).await?
        }
        SaveOutcome::Nothing | SaveOutcome::Replayed => site.settings_for_request(session).await?,
        // Forgotten or signed out in another tab (or on another instance) meanwhile: nothing
        // was saved, and the browser starts over with a new, empty session. Never a redirect
        // that would read as a success.
        SaveOutcome::Forgotten => {
            let sentence = "Not saved: this browser was signed out or forgotten from another \
                            tab or device while the form was on its way. It now has a new, \
                            empty session.";
            return Ok(ended(session, sentence));
        }
    };
    if errors.is_empty() {
        return Ok(Redirect::to("/settings").into_response());
    }
    let form = FormState {
        typed_username: errors.username.as_ref().and(input.username.as_deref()),
        errors: Some(&errors),
    };
    let page = SettingsPage::of(&site, session, saved, version).await?;
    Ok((status, page.render(form, None, None)).into_response())
}

/// `POST /settings/forget`: deletes this browser's row and moves it to a new, empty session. The
/// old cookie is worthless afterwards: its id has no row and is never issued again, and the old
/// session's live tabs are told to reload.
pub async fn forget(
    State(site): State<Site>,
    session: Session,
    ClientAddr(from): ClientAddr,
    Form(form): Form<TokenForm>,
) -> Result<Response, AppError> {
    check_csrf(&site, session, &form.csrf)?;
    site.forget(session.id, from).await?;
    let fresh = ReplaceSession(Session::fresh(session.kind).who());
    Ok((Extension(fresh), Redirect::to("/settings")).into_response())
}

/// `POST /settings/sign-out-elsewhere`: every other device of the session is signed out (and any
/// copy of this browser's cookie: this browser gets a new device id); the data stays.
pub async fn sign_out_elsewhere(
    State(site): State<Site>,
    session: Session,
    Form(form): Form<TokenForm>,
) -> Result<Response, AppError> {
    check_csrf(&site, session, &form.csrf)?;
    let new = site.sign_out_elsewhere(session).await?;
    Ok((Extension(ReplaceSession(new)), Redirect::to("/settings")).into_response())
}

/// A form about one device: which, by its public handle, and for renaming, the new name.
#[derive(Debug, Deserialize)]
pub struct DeviceForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    device: String,
    name: Option<String>,
}

/// `POST /settings/devices/sign-out`: signs out another device of this session; `303` back to
/// the settings page, or `422` with the page saying why not (no such device, or this one).
pub async fn sign_out_device(
    State(site): State<Site>,
    session: Session,
    Form(form): Form<DeviceForm>,
) -> Result<Response, AppError> {
    check_csrf(&site, session, &form.csrf)?;
    let change = match Handle::parse(&form.device) {
        Some(handle) => site.sign_out_device(session, handle).await?,
        None => DeviceChange::NoSuchDevice,
    };
    device_changed(&site, session, change).await
}

/// `POST /settings/devices/rename`: renames a device of this session; `303` back, or `422` with
/// the page saying why the name was refused.
pub async fn rename_device(
    State(site): State<Site>,
    session: Session,
    Form(form): Form<DeviceForm>,
) -> Result<Response, AppError> {
    check_csrf(&site, session, &form.csrf)?;
    let Some(handle) = Handle::parse(&form.device) else {
        return device_changed(&site, session, DeviceChange::NoSuchDevice).await;
    };
    let name = match device::parse_name(form.name.as_deref().unwrap_or("")) {
        Ok(name) => name,
        Err(why) => return refused_device(&site, session, why).await,
    };
    let change = site.rename_device(session.id, handle, name).await?;
    device_changed(&site, session, change).await
}

/// The answer to a device change: back to the settings page, or the page with why not.
async fn device_changed(
    site: &Site,
    session: Session,
    change: DeviceChange,
) -> Result<Response, AppError> {
    match change {
        DeviceChange::Done => Ok(Redirect::to("/settings").into_response()),
        DeviceChange::NoSuchDevice => {
            let why = "That device is not one of this session's any more: it may have been signed out already.";
            refused_device(site, session, why).await
        }
        DeviceChange::ThisDevice => {
            let why = "This is the browser you are using: to end its session, use \"Forget me\".";
            refused_device(site, session, why).await
        }
    }
}

/// The settings page with `why` over the devices list, as `422`.
async fn refused_device(site: &Site, session: Session, why: &str) -> Result<Response, AppError> {
    let (saved, version) = site.settings_for_request(session).await?;
    let page = SettingsPage::of(site, session, saved, version).await?;
    let html = page.render(FormState::default(), None, Some(why));
    Ok((StatusCode::UNPROCESSABLE_ENTITY, html).into_response())
}

/// `GET /settings/export`: "Download my data", a JSON file of everything this server keeps of
/// this browser (`docs/export.md`). A plain link works without JavaScript; it changes nothing,
/// so it needs no CSRF token, and another site cannot read the answer (no CORS).
pub async fn export(
    State(site): State<Site>,
    session: Session,
    ClientAddr(from): ClientAddr,
) -> Result<Response, AppError> {
    let data = site.export(session, from).await?;
    let disposition = format!("attachment; filename=\"{}\"", views::EXPORT_FILE_NAME);
    Ok((
        [
            (CONTENT_TYPE, "application/json; charset=utf-8".to_owned()),
            (CONTENT_DISPOSITION, disposition),
        ],
        views::export_json(&data, now_millis()),
    )
        .into_response())
}
