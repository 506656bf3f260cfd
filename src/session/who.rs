//! What a valid cookie names, and the session of a request as handlers see it: the session id
//! and this browser's device in it.

use super::SessionId;
use crate::device::{DeviceId, Kind};

/// The device of a cookie that names only its session (issued before browsers had devices of
/// their own), and of the row each such session got when the devices were added: its id is the
/// session's, so the cookie keeps working as the same device.
pub fn first_device(session: SessionId) -> DeviceId {
    DeviceId::from_uuid(session.as_uuid())
}

/// What a valid cookie names: the session, and the device of that session this browser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Who {
    pub session: SessionId,
    pub device: DeviceId,
}

impl Who {
    /// The signed value: `<session>.<device>.<day>`, `day` being the day it is signed on
    /// (days since the Unix epoch), so a page view can tell whether re-issuing it would move its
    /// expiry.
    pub(super) fn to_value(self, day: u32) -> String {
        format!("{}.{}.{day}", self.session, self.device)
    }

    /// A signed value, with the day it was signed on when it says: `<session>.<device>.<day>`,
    /// or the older forms without a day, `<session>.<device>` and a bare `<session>` (its
    /// session's first device).
    pub(super) fn from_value(value: &str) -> Option<(Who, Option<u32>)> {
        let mut parts = value.splitn(4, '.');
        let session = parts.next()?.parse().ok()?;
        let Some(device) = parts.next() else {
            let who = Who {
                session,
                device: first_device(session),
            };
            return Some((who, None));
        };
        let who = Who {
            session,
            device: device.parse().ok()?,
        };
        let day = match parts.next() {
            None => None,
            Some(day) => Some(parse_day(day)?),
        };
        if parts.next().is_some() {
            return None;
        }
        Some((who, day))
    }
}

/// A day as signed: decimal digits only, no sign and no leading zero, as `u32` prints it.
fn parse_day(text: &str) -> Option<u32> {
    let canonical = !text.is_empty()
        && text.len() <= 6
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical { text.parse().ok() } else { None }
}

/// The session of the current request, as handlers see it.
#[derive(Debug, Clone, Copy)]
pub struct Session {
    /// The verified (or just minted) id.
    pub id: SessionId,
    /// This browser among the session's devices.
    pub device: DeviceId,
    /// What kind of browser it is, from its User-Agent: its device's name.
    pub kind: Kind,
    /// True when the id was minted for this request: nothing can be saved under it yet.
    pub is_new: bool,
}

impl Session {
    /// A session minted for this request: a fresh id and device, nothing saved under them.
    pub fn fresh(kind: Kind) -> Session {
        Session {
            id: SessionId::generate(),
            device: DeviceId::generate(),
            kind,
            is_new: true,
        }
    }

    /// The session and device a valid cookie names.
    pub fn known(who: Who, kind: Kind) -> Session {
        Session {
            id: who.session,
            device: who.device,
            kind,
            is_new: false,
        }
    }

    /// What the cookie of this session names.
    pub fn who(self) -> Who {
        Who {
            session: self.id,
            device: self.device,
        }
    }
}
