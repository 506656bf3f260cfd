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
        match self.verify_session_at_once(headers) {
            Ok(check) => check,
            Err(pending) => self.settle_session(pending, headers).await,
        }
    }

    /// [`Site::verify_session`] as far as it goes without a lookup: `Ok` when that is all of
    /// it; else `Err` with what memory found, for [`Site::settle_session`] to finish. A request
    /// with several valid session cookies needs a lookup, and so, on a database other instances
    /// share, does every cookie that memory accepts (it may have been signed out on another
    /// instance a moment ago: see [`super::ended`]).
    pub fn verify_session_at_once(&self, headers: &HeaderMap) -> Result<CookieCheck, CookieCheck> {
        let check = self.0.keys.verify_cookie(headers);
        if check.more_valid {
            return Err(check);
        }
        let check = self.unless_forgotten(check);
        match check.verdict.who() {
            Some(_) if self.0.store.is_shared() => Err(check),
            _ => Ok(check),
        }
    }

    /// Finishes [`Site::verify_session`] from what [`Site::verify_session_at_once`] found
    /// (`check`), with the lookups it needs: the cookie chosen among several, then, on a shared
    /// database, the check that it was not ended elsewhere.
    pub async fn settle_session(&self, check: CookieCheck, headers: &HeaderMap) -> CookieCheck {
        let check = match check.more_valid {
            true => self.choose_cookie(check, headers).await,
            false => check,
        };
        match check.verdict.who() {
            Some(who) if self.0.store.is_shared() => {
                self.check_not_ended(who).await;
                self.unless_forgotten(check)
            }
            _ => check,
        }
    }

    /// Of the request's several valid session cookies (`first` being the first of them), the
    /// one [`Site::verify_session`] goes by, as this instance's memory judges it.
    async fn choose_cookie(&self, first: CookieCheck, headers: &HeaderMap) -> CookieCheck {
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
            .unwrap_or_else(|| self.unless_forgotten(first))
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
