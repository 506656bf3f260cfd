//! Who is this browser? The signed session cookie, the keys that sign it, and CSRF tokens.
//!
//! Every browser gets a random [`SessionId`] (a UUID v4: 122 random bits) in a cookie signed
//! with HMAC-SHA256 through the `cookie` crate's signed jar. The id is the only thing the browser
//! holds; its settings live in the store under that id. A cookie that is missing, malformed,
//! signed with an unknown key or tampered with is not an error: the browser simply gets a fresh
//! session, so it can never reach another session's data.
//!
//! This module is the cookie's rules only: minting, signing, verifying, rotating keys. The layer
//! that runs them in front of the page routes is `http::session`; the set of forgotten ids that
//! refuses a still valid signature is the site's (`site::Forgotten`).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use ::http::header::COOKIE;
use ::http::{HeaderMap, HeaderValue};
use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cookie::{CookieJar, Key};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

mod key_file;
mod who;
use key_file::{read_or_create_key_file, read_previous_keys};
pub use who::{Session, Who, first_device};

pub use crate::device::{DeviceId, Kind};

/// The session cookie's name over plain HTTP.
pub const COOKIE_NAME: &str = "livesession";

/// Its name when it is `Secure` (HTTPS): the `__Host-` prefix makes browsers refuse it from
/// anything but this very host, with `Path=/` and no `Domain`, so a sibling subdomain cannot set
/// one of its own that this server would read ("cookie tossing"). A cookie of the plain name is
/// still read (and moved to this name) so that turning HTTPS on signs nobody out.
pub const SECURE_COOKIE_NAME: &str = "__Host-livesession";

/// Expires a cookie of the plain name once the browser holds the `__Host-` one.
const EXPIRE_PLAIN_COOKIE: &str = "livesession=; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=0";

/// 400 days: the longest lifetime browsers keep a cookie for (longer values are capped to it).
/// The cookie is re-issued on the first page load of a day after the day it was signed on
/// ([`CookieCheck::is_due`]), so an active browser never reaches the end.
pub const COOKIE_MAX_AGE: cookie::time::Duration = cookie::time::Duration::days(400);

/// The day of `millis` (since the Unix epoch, in UTC), as a cookie's value records when it was
/// signed.
pub fn day_of(millis: crate::clock::Millis) -> u32 {
    u32::try_from(millis.max(0) / 86_400_000).unwrap_or(u32::MAX)
}

/// What follows the value in every `Set-Cookie` (`Max-Age` is [`COOKIE_MAX_AGE`] in seconds).
const COOKIE_ATTRIBUTES: &str = "; HttpOnly; SameSite=Lax; Path=/; Max-Age=34560000";
/// The same, with `Secure` (`--secure-cookies`).
const COOKIE_ATTRIBUTES_SECURE: &str = "; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=34560000";

/// The shortest signing secret we accept, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// A browser's identity: random, unguessable, and meaningless without the signature that came
/// with it. Never logged.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(Uuid);

impl SessionId {
    /// A fresh id from the operating system's random number generator.
    pub fn generate() -> SessionId {
        SessionId(Uuid::new_v4())
    }

    /// The id as it is stored and signed: the hyphenated lowercase UUID.
    pub fn to_key(self) -> String {
        self.0.hyphenated().to_string()
    }

    /// The id no browser is ever given (all zeros; issued ids are random version-4 UUIDs): the
    /// author of the messages of a browser that asked to be forgotten.
    pub const NOBODY: SessionId = SessionId(Uuid::nil());

    /// The id as a UUID, as PostgreSQL stores it.
    pub fn as_uuid(self) -> Uuid {
        self.0
    }

    /// The id a stored UUID names.
    pub fn from_uuid(uuid: Uuid) -> SessionId {
        SessionId(uuid)
    }
}

/// A string that is not a session id in the form we issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a session id")]
pub struct InvalidSessionId;

impl FromStr for SessionId {
    type Err = InvalidSessionId;

    /// Only the exact form we issue is accepted, so one id has one spelling in the database.
    fn from_str(s: &str) -> Result<SessionId, InvalidSessionId> {
        crate::device::canonical_uuid(s)
            .map(SessionId)
            .ok_or(InvalidSessionId)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Redacted, so an id never ends up in a log line by accident.
impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(..)")
    }
}

/// The length of the signature at the start of a signed cookie value (base64 of 32 bytes).
const SIGNATURE_LEN: usize = 44;

/// One signing secret, expanded into the keys derived from it. The HMACs are kept keyed, so each
/// use only clones their state.
#[derive(Clone)]
struct SigningKey {
    cookie: Key,
    signing: Hmac<Sha256>,
    csrf: Hmac<Sha256>,
}

impl SigningKey {
    fn from_secret(secret: &[u8]) -> anyhow::Result<SigningKey> {
        if secret.len() < MIN_SECRET_LEN {
            bail!(
                "is too short ({} bytes; at least {MIN_SECRET_LEN} are needed)",
                secret.len()
            );
        }
        let mut mac = <Hmac<Sha256>>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(b"livesession csrf v1");
        let csrf_key = mac.finalize().into_bytes();
        let cookie = Key::derive_from(secret);
        Ok(SigningKey {
            signing: <Hmac<Sha256>>::new_from_slice(cookie.signing())
                .expect("HMAC takes any key length"),
            csrf: <Hmac<Sha256>>::new_from_slice(&csrf_key).expect("HMAC takes any key length"),
            cookie,
        })
    }

    fn csrf_mac(&self, id: SessionId) -> Hmac<Sha256> {
        let mut mac = self.csrf.clone();
        let mut text = Uuid::encode_buffer();
        mac.update(id.0.hyphenated().encode_lower(&mut text).as_bytes());
        mac
    }

    /// The session and device in a signed cookie value, and the day it was signed on when the
    /// value says, if its signature is this key's.
    fn verify_value(&self, value: &str) -> Option<(Who, Option<u32>)> {
        if !value.is_char_boundary(SIGNATURE_LEN) {
            return None;
        }
        let (signature, id) = value.split_at(SIGNATURE_LEN);
        let mut tag = [0u8; 48];
        let len = STANDARD.decode_slice(signature, &mut tag).ok()?;
        let mut mac = self.signing.clone();
        mac.update(id.as_bytes());
        mac.verify_slice(&tag[..len]).ok()?;
        Who::from_value(id)
    }
}

/// What the cookie on a request turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Signed with the current key.
    Current(Who),
    /// Signed with a previous key: valid, but re-issue it under the current one.
    Previous(Who),
    /// No session cookie at all.
    Missing,
    /// A session cookie that does not verify, or does not hold an id. (A valid cookie of a
    /// forgotten session verifies here; the site refuses it.)
    Invalid,
}

/// What [`Keys::verify_cookie`] found on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieCheck {
    /// The session the cookie names, if any.
    pub verdict: Verdict,
    /// For a cookie signed with the current key under the plain name where the `__Host-` one
    /// is due ([`CookieCheck::old_name`]), its value: it can be sent back under the new name as
    /// it is, without signing it again. `None` for every other cookie.
    pub current_value: Option<String>,
    /// Another `livesession` cookie of the request verifies too (a browser may hold one from an
    /// older path or domain): which session to use is for the caller who can look at the data
    /// ([`Keys::valid_cookies`] lists them).
    pub more_valid: bool,
    /// The cookie had the plain name where a `Secure` cookie has the `__Host-` one: re-issue it
    /// under the new name, and expire the old.
    pub old_name: bool,
    /// For a cookie signed with the current key, the day it was signed on ([`day_of`]); `None`
    /// for a value of the older forms, which record no day.
    pub signed_on: Option<u32>,
}

/// A check that found `verdict` and nothing more: no value to send back as it is, no day.
impl From<Verdict> for CookieCheck {
    fn from(verdict: Verdict) -> CookieCheck {
        CookieCheck {
            verdict,
            current_value: None,
            more_valid: false,
            old_name: false,
            signed_on: None,
        }
    }
}

impl CookieCheck {
    /// Whether this cookie, given back on a page `today`, should be signed anew with today's
    /// day: when it was signed on an earlier day (its 400 days would move by a day or more), or
    /// says no day, or was signed with a previous key. A cookie signed today is left as the
    /// browser has it: the page's response carries no `Set-Cookie`.
    pub fn is_due(&self, today: u32) -> bool {
        match (self.verdict, self.signed_on) {
            (Verdict::Current(_), Some(day)) => today > day,
            _ => true,
        }
    }
}

impl Verdict {
    /// The session a valid cookie names.
    pub fn id(self) -> Option<SessionId> {
        self.who().map(|who| who.session)
    }

    /// The session and device a valid cookie names.
    pub fn who(self) -> Option<Who> {
        match self {
            Verdict::Current(who) | Verdict::Previous(who) => Some(who),
            Verdict::Missing | Verdict::Invalid => None,
        }
    }
}

/// The values of every cookie named `name` in the request's `Cookie` headers, read cookie by
/// cookie from the raw bytes: a pair with bytes that are not text is skipped, not the header.
fn session_cookie_values<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
) -> impl Iterator<Item = &'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|header| header.as_bytes().split(|&b| b == b';'))
        .filter_map(move |pair| {
            let value = pair
                .trim_ascii()
                .strip_prefix(name.as_bytes())?
                .strip_prefix(b"=")?;
            std::str::from_utf8(value).ok()
        })
}

/// The current signing key and the previous ones still accepted after a rotation.
#[derive(Clone)]
pub struct Keys {
    current: SigningKey,
    previous: Vec<SigningKey>,
    secure: bool,
}

impl Keys {
    /// Builds keys from secrets already in hand. `secure` marks issued cookies `Secure`.
    pub fn new(current: &[u8], previous: &[Vec<u8>], secure: bool) -> anyhow::Result<Keys> {
        let current = SigningKey::from_secret(current).context("the signing secret")?;
        let previous = previous
            .iter()
            .enumerate()
            .map(|(n, secret)| {
                SigningKey::from_secret(secret).with_context(|| format!("previous key {}", n + 1))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Keys {
            current,
            previous,
            secure,
        })
    }

    /// Loads the keys: the current `secret` when one is given (from the environment), else the
    /// one in `key_file` (created with mode 0600 on first run), and the secrets of the
    /// `previous_keys` file. `secure` marks issued cookies `Secure`.
    pub fn load(
        secret: Option<&str>,
        key_file: &Path,
        previous_keys: Option<&Path>,
        secure: bool,
    ) -> anyhow::Result<Keys> {
        let current = match secret {
            Some(secret) => secret.trim().as_bytes().to_vec(),
            None => read_or_create_key_file(key_file)?,
        };
        let previous = match previous_keys {
            Some(path) => read_previous_keys(path)?,
            None => Vec::new(),
        };
        Keys::new(&current, &previous, secure)
    }

    /// Checks the session cookie among the request's cookies.
    pub fn verify(&self, headers: &HeaderMap) -> Verdict {
        self.verify_cookie(headers).verdict
    }

    /// Like [`Keys::verify`], and for a cookie signed with the current key also its value, which
    /// can be sent back as it is: re-issuing it needs no new signature.
    ///
    /// This runs on every request, so it reads the cookie jar's signed format (44 characters of
    /// base64 HMAC-SHA256 of the value, then the value) straight from the header, without the
    /// allocations of a parsed jar; a unit test holds it to the jar's own output. The header is
    /// read leniently, cookie by cookie: another cookie's bytes (another app on the same host may
    /// set `z=café`) never hide ours.
    ///
    /// Served over HTTPS, a valid `__Host-` cookie wins over every cookie of the plain name,
    /// whatever their order: one set by a sibling or parent domain cannot take its place. A
    /// browser with only the plain name's cookie (from before HTTPS) keeps its session, moved to
    /// the new name ([`CookieCheck::old_name`]).
    pub fn verify_cookie(&self, headers: &HeaderMap) -> CookieCheck {
        let mut found = false;
        for &(name, old_name) in self.names_read() {
            let mut first: Option<CookieCheck> = None;
            for value in session_cookie_values(headers, name) {
                found = true;
                let Some(check) = self.check_value(value, old_name) else {
                    continue;
                };
                match &mut first {
                    None => first = Some(check),
                    Some(first) => {
                        first.more_valid = true;
                        break;
                    }
                }
            }
            if let Some(first) = first {
                return first;
            }
        }
        CookieCheck::from(if found {
            Verdict::Invalid
        } else {
            Verdict::Missing
        })
    }

    /// The cookie names read, in the order they win, each with whether it is the old one.
    fn names_read(&self) -> &'static [(&'static str, bool)] {
        if self.secure {
            &[(SECURE_COOKIE_NAME, false), (COOKIE_NAME, true)]
        } else {
            &[(COOKIE_NAME, false)]
        }
    }

    /// Every session cookie of the request that verifies, of the name that wins (see
    /// [`Keys::verify_cookie`]), in the order they came: for the rare request that carries
    /// several (see [`CookieCheck::more_valid`]).
    pub fn valid_cookies(&self, headers: &HeaderMap) -> Vec<CookieCheck> {
        for &(name, old_name) in self.names_read() {
            let valid: Vec<CookieCheck> = session_cookie_values(headers, name)
                .filter_map(|value| self.check_value(value, old_name))
                .collect();
            if !valid.is_empty() {
                return valid;
            }
        }
        Vec::new()
    }

    /// What one value of our cookie is, if it verifies under the current or a previous key;
    /// `old_name`: it came under the plain name where the `__Host-` one is due.
    fn check_value(&self, value: &str, old_name: bool) -> Option<CookieCheck> {
        if let Some((who, signed_on)) = self.current.verify_value(value) {
            return Some(CookieCheck {
                verdict: Verdict::Current(who),
                // Only a cookie moved to the other name is sent back as it is: no copy of the
                // value for every other request.
                current_value: old_name.then(|| value.to_owned()),
                more_valid: false,
                old_name,
                signed_on,
            });
        }
        let (who, _) = self
            .previous
            .iter()
            .find_map(|key| key.verify_value(value))?;
        Some(CookieCheck {
            old_name,
            ..CookieCheck::from(Verdict::Previous(who))
        })
    }

    /// Short public fingerprints of the current key and of each previous one: equal for equal
    /// secrets, and telling nothing about them (an HMAC of a fixed label under the signing key).
    /// Instances sharing a database compare them to find one started with another key.
    pub fn fingerprints(&self) -> (String, Vec<String>) {
        let fingerprint = |key: &SigningKey| {
            let mut mac = key.signing.clone();
            mac.update(b"livesession key fingerprint v1");
            let tag = mac.finalize().into_bytes();
            URL_SAFE_NO_PAD.encode(&tag[..12])
        };
        (
            fingerprint(&self.current),
            self.previous.iter().map(fingerprint).collect(),
        )
    }

    /// The `Set-Cookie` value that gives the browser `who`, signed today with the current key.
    pub fn issue(&self, who: Who) -> HeaderValue {
        self.issue_on(who, day_of(crate::clock::now_millis()))
    }

    /// [`Keys::issue`] as signed on `day` ([`day_of`]).
    pub fn issue_on(&self, who: Who, day: u32) -> HeaderValue {
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.current.cookie)
            .add((COOKIE_NAME, who.to_value(day)));
        let signed = jar.get(COOKIE_NAME).expect("the cookie was just added");
        self.reissue(signed.value())
    }

    /// The cookie's name as issued: `__Host-livesession` when `Secure`, else `livesession`.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure {
            SECURE_COOKIE_NAME
        } else {
            COOKIE_NAME
        }
    }

    /// The `Set-Cookie` value that deletes a cookie of the plain name, for a browser moved to the
    /// `__Host-` one.
    pub fn expire_old_name(&self) -> HeaderValue {
        HeaderValue::from_static(EXPIRE_PLAIN_COOKIE)
    }

    /// The `Set-Cookie` value for an already signed cookie value: the attributes of the contract
    /// (`HttpOnly`, `SameSite=Lax`, `Path=/`, 400 days, `Secure` when configured), no `Domain`.
    pub fn reissue(&self, signed_value: &str) -> HeaderValue {
        let attributes = if self.secure {
            COOKIE_ATTRIBUTES_SECURE
        } else {
            COOKIE_ATTRIBUTES
        };
        let name = self.cookie_name();
        let mut header =
            String::with_capacity(name.len() + 1 + signed_value.len() + attributes.len());
        header.push_str(name);
        header.push('=');
        header.push_str(signed_value);
        header.push_str(attributes);
        HeaderValue::try_from(header).expect("a signed cookie is a valid header")
    }

    /// Whether cookies are issued `Secure` (`--secure-cookies`): the site is served over HTTPS.
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// The CSRF token for forms and live joins of this session: an HMAC of the id, so it needs no
    /// storage and is worthless for any other session.
    pub fn csrf_token(&self, id: SessionId) -> String {
        URL_SAFE_NO_PAD.encode(self.current.csrf_mac(id).finalize().into_bytes())
    }

    /// True when `token` is this session's CSRF token under the current or a previous key (a page
    /// rendered just before a key rotation still submits).
    pub fn verify_csrf(&self, id: SessionId, token: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(token.trim()) else {
            return false;
        };
        std::iter::once(&self.current)
            .chain(&self.previous)
            .any(|key| key.csrf_mac(id).verify_slice(&tag).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OTHER: &[u8] = b"fedcba9876543210fedcba9876543210";

    #[test]
    fn the_cookie_attributes_say_the_contract_s_lifetime() {
        let max_age = format!("Max-Age={}", COOKIE_MAX_AGE.whole_seconds());
        for attributes in [COOKIE_ATTRIBUTES, COOKIE_ATTRIBUTES_SECURE] {
            assert!(attributes.ends_with(&max_age), "{attributes}");
        }
        let keys = Keys::new(SECRET, &[], true).unwrap();
        let cookie = keys.issue(Session::fresh(Kind::default()).who());
        assert!(cookie.to_str().unwrap().contains("; Secure;"));
    }

    fn request_with(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
        headers
    }

    fn cookie_value(set_cookie: &HeaderValue) -> String {
        let cookie = cookie::Cookie::parse(set_cookie.to_str().unwrap().to_owned()).unwrap();
        format!("{}={}", cookie.name(), cookie.value())
    }

    #[test]
    fn an_issued_cookie_verifies_as_the_same_session_and_device() {
        let keys = Keys::new(SECRET, &[], false).unwrap();
        let who = Session::fresh(Kind::default()).who();
        let headers = request_with(&cookie_value(&keys.issue(who)));
        assert_eq!(keys.verify(&headers), Verdict::Current(who));
    }

    /// A cookie signed before browsers had devices of their own names its session only: it
    /// stays valid, as that session's first device.
    #[test]
    fn an_older_cookie_naming_only_its_session_is_its_first_device() {
        let keys = Keys::new(SECRET, &[], false).unwrap();
        let id = SessionId::generate();
        let mut jar = CookieJar::new();
        jar.signed_mut(&keys.current.cookie)
            .add((COOKIE_NAME, id.to_key()));
        let old = jar.get(COOKIE_NAME).unwrap();
        let headers = request_with(&format!("{COOKIE_NAME}={}", old.value()));
        let who = Who {
            session: id,
            device: first_device(id),
        };
        assert_eq!(keys.verify(&headers), Verdict::Current(who));
    }

    /// The signed value records its day; a page view re-signs it only on a later day, and
    /// always when it says no day or was signed with a previous key.
    #[test]
    fn a_cookie_is_due_to_be_signed_anew_only_on_a_day_after_its_own() {
        let keys = Keys::new(SECRET, &[], false).unwrap();
        let who = Session::fresh(Kind::default()).who();
        let check = keys.verify_cookie(&request_with(&cookie_value(&keys.issue_on(who, 20_000))));
        assert_eq!(check.verdict, Verdict::Current(who));
        assert_eq!(check.signed_on, Some(20_000));
        assert!(!check.is_due(20_000));
        assert!(!check.is_due(19_999), "a clock set back does not re-sign");
        assert!(check.is_due(20_001));

        let mut jar = CookieJar::new();
        jar.signed_mut(&keys.current.cookie)
            .add((COOKIE_NAME, format!("{}.{}", who.session, who.device)));
        let older = jar.get(COOKIE_NAME).unwrap().value().to_owned();
        let check = keys.verify_cookie(&request_with(&format!("{COOKIE_NAME}={older}")));
        assert_eq!(
            (check.verdict, check.signed_on),
            (Verdict::Current(who), None)
        );
        assert!(check.is_due(0));

        let rotated = Keys::new(OTHER, &[SECRET.to_vec()], false).unwrap();
        let check =
            rotated.verify_cookie(&request_with(&cookie_value(&keys.issue_on(who, 20_000))));
        assert_eq!(check.verdict, Verdict::Previous(who));
        assert!(check.is_due(20_000));
    }

    #[test]
    fn a_day_is_only_the_digits_a_day_prints_as() {
        let keys = Keys::new(SECRET, &[], false).unwrap();
        let who = Session::fresh(Kind::default()).who();
        for day in ["", "x", "-1", "+1", "01", "1234567", "1 ", "1.2", "٣"] {
            let mut jar = CookieJar::new();
            jar.signed_mut(&keys.current.cookie)
                .add((COOKIE_NAME, format!("{}.{}.{day}", who.session, who.device)));
            let forged = jar.get(COOKIE_NAME).unwrap().value().to_owned();
            let headers = request_with(&format!("{COOKIE_NAME}={forged}"));
            assert_eq!(keys.verify(&headers), Verdict::Invalid, "day {day:?}");
        }
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(86_400_000 * 3 + 1), 3);
        assert_eq!(day_of(-5), 0);
    }

    #[test]
    fn a_value_with_a_malformed_device_is_invalid() {
        let keys = Keys::new(SECRET, &[], false).unwrap();
        for value in [
            format!("{}.", SessionId::generate()),
            format!("{}.x", SessionId::generate()),
            format!(
                "{}.{}.{}",
                SessionId::generate(),
                SessionId::generate(),
                SessionId::generate()
            ),
        ] {
            let mut jar = CookieJar::new();
            jar.signed_mut(&keys.current.cookie)
                .add((COOKIE_NAME, value));
            let forged = jar.get(COOKIE_NAME).unwrap();
            let headers = request_with(&format!("{COOKIE_NAME}={}", forged.value()));
            assert_eq!(keys.verify(&headers), Verdict::Invalid);
        }
    }

    #[test]
    fn a_cookie_signed_with_another_key_is_invalid() {
        let ours = Keys::new(SECRET, &[], false).unwrap();
        let theirs = Keys::new(OTHER, &[], false).unwrap();
        let headers = request_with(&cookie_value(
            &theirs.issue(Session::fresh(Kind::default()).who()),
        ));
        assert_eq!(ours.verify(&headers), Verdict::Invalid);
    }

    #[test]
    fn a_cookie_signed_with_a_previous_key_is_accepted_for_rotation() {
        let old = Keys::new(OTHER, &[], false).unwrap();
        let rotated = Keys::new(SECRET, &[OTHER.to_vec()], false).unwrap();
        let who = Session::fresh(Kind::default()).who();
        let headers = request_with(&cookie_value(&old.issue(who)));
        assert_eq!(rotated.verify(&headers), Verdict::Previous(who));
    }

    #[test]
    fn other_cookies_are_ignored() {
        let keys = Keys::new(SECRET, &[], false).unwrap();
        assert_eq!(
            keys.verify(&request_with("theme=dark; x=1")),
            Verdict::Missing
        );
    }

    #[test]
    fn a_signed_value_that_is_not_an_id_is_invalid() {
        let keys = Keys::new(SECRET, &[], false).unwrap();
        let mut jar = CookieJar::new();
        jar.signed_mut(&keys.current.cookie)
            .add((COOKIE_NAME, "admin"));
        let forged = jar.get(COOKIE_NAME).unwrap();
        let headers = request_with(&format!("{COOKIE_NAME}={}", forged.value()));
        assert_eq!(keys.verify(&headers), Verdict::Invalid);
    }

    #[test]
    fn a_short_secret_is_refused() {
        let err = Keys::new(b"short", &[], false).err().unwrap();
        assert!(format!("{err:#}").contains("too short"), "{err:#}");
    }

    #[test]
    fn a_csrf_token_is_bound_to_its_session() {
        let keys = Keys::new(SECRET, &[], false).unwrap();
        let (a, b) = (SessionId::generate(), SessionId::generate());
        let token = keys.csrf_token(a);
        assert!(keys.verify_csrf(a, &token));
        assert!(!keys.verify_csrf(b, &token));
        assert!(!keys.verify_csrf(a, ""));
        assert!(!keys.verify_csrf(a, "not base64 !!"));
    }

    #[test]
    fn only_the_canonical_spelling_of_an_id_is_accepted() {
        let id = SessionId::generate();
        assert_eq!(id.to_key().parse::<SessionId>().unwrap(), id);
        assert!(id.to_key().to_uppercase().parse::<SessionId>().is_err());
        assert!(id.to_key().replace('-', "").parse::<SessionId>().is_err());
        let key = id.to_key();
        for other in [
            format!("{{{key}}}"),
            format!("urn:uuid:{key}"),
            format!("{key} "),
            key.replacen(|c: char| c.is_ascii_lowercase(), "A", 1),
            key.replacen('-', "0", 1),
            key.replacen(|c: char| c.is_ascii_hexdigit(), "g", 1),
            key.replacen(|c: char| c.is_ascii_hexdigit(), "é", 1),
            String::new(),
        ] {
            assert!(other.parse::<SessionId>().is_err(), "{other:?}");
            assert!(other.parse::<DeviceId>().is_err(), "{other:?}");
        }
        for _ in 0..100 {
            let id = SessionId::generate();
            assert_eq!(id.to_key().parse::<SessionId>().unwrap(), id);
            let device = DeviceId::generate();
            assert_eq!(device.to_string().parse::<DeviceId>().unwrap(), device);
        }
    }

    #[test]
    fn the_debug_form_of_an_id_hides_it() {
        let id = SessionId::generate();
        assert!(!format!("{id:?}").contains(&id.to_key()));
    }
}
