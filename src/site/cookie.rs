//! Which session a request's cookie names: verified, chosen among several valid ones, and
//! refused when its session was forgotten or its device signed out, here or (on a database other
//! instances share) on another instance a moment ago ([`super::ended`]).

use axum::http::HeaderMap;

use super::Site;
use crate::session::{CookieCheck, Verdict};

impl Site {
    /// The session a request's cookie names, with forgotten sessions treated as invalid, and
    /// the cookie's value when it can be re-issued as it is (see
    /// [`Keys::verify_cookie`](crate::session::Keys::verify_cookie)). Of several valid session
    /// cookies, the first whose session has saved settings wins (else the first): a stray cookie
    /// never hides a browser's data. On a database other instances share, a cookie accepted here
    /// is checked against the database too, so one signed out or forgotten on another instance a
    /// moment ago is refused (see [`super::ended`]); on SQLite one cookie costs no lookup.
    pub async fn verify_session(&self, headers: &HeaderMap) -> CookieCheck {
        let check = self.choose_cookie(headers).await;
        match check.verdict.who() {
            Some(who) if self.0.store.is_shared() => {
                self.check_not_ended(who).await;
                self.unless_forgotten(check)
            }
            _ => check,
        }
    }

    /// The cookie [`Site::verify_session`] goes by, as this instance's memory judges it.
    async fn choose_cookie(&self, headers: &HeaderMap) -> CookieCheck {
        let check = self.0.keys.verify_cookie(headers);
        if !check.more_valid {
            return self.unless_forgotten(check);
        }
        let check = self.0.keys.verify_cookie(headers);
        let candidates: Vec<CookieCheck> = self
            .0
            .keys
            .valid_cookies(headers)
            .into_iter()
            .map(|check| self.unless_forgotten(check))
            .filter(|check| check.verdict.id().is_some())
            .collect();
        for candidate in &candidates {
            if let Some(id) = candidate.verdict.id()
                && let Ok(Some(_)) = self.0.store.load(id).await
            {
                return candidate.clone();
            }
        }
        candidates
            .into_iter()
            .next()
            .unwrap_or_else(|| self.unless_forgotten(check))
    }

    /// [`Site::verify_session`] when it needs no lookup (then `None`): a request with several
    /// valid session cookies needs one, and so, on a database other instances share, does every
    /// cookie that memory accepts (it may have been signed out on another instance a moment
    /// ago: see [`super::ended`]).
    pub fn verify_session_at_once(&self, headers: &HeaderMap) -> Option<CookieCheck> {
        let check = self.0.keys.verify_cookie(headers);
        if check.more_valid {
            return None;
        }
        let check = self.unless_forgotten(check);
        match check.verdict.who() {
            Some(_) if self.0.store.is_shared() => None,
            _ => Some(check),
        }
    }

    /// `check`, or an invalid cookie when it names a forgotten session or a signed out device.
    fn unless_forgotten(&self, check: CookieCheck) -> CookieCheck {
        match check.verdict.who() {
            Some(who) if self.is_forgotten(who.session) || self.is_signed_out(who.device) => {
                CookieCheck::from(Verdict::Invalid)
            }
            _ => check,
        }
    }
}
