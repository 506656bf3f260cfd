//! Fuzzes the session cookie verifier and the CSRF check.
//!
//! Input layout: byte 0 = flags, bytes 1..17 = a session id (padded with zeros), the rest = `tail`.
//!
//! 1. The whole input, split on `\n` into several `Cookie` headers, must never verify as a
//!    session (no valid signature can come from nowhere); nor may `livesession=<tail>`.
//! 2. A freshly issued, valid cookie with `tail` appended must verify as its own id (signed with
//!    the current key, or a previous one, per flag bit 0), or be refused, never as another id.
//!    Unmodified, or followed by `;...`, it must verify as its own id.
//! 3. `verify_csrf` accepts only that id's real token (current or previous key), modulo
//!    surrounding whitespace; the tail is tried alone or appended to the real token (flag bit 1).
//!
//! Nothing may panic.

#![no_main]

use std::sync::LazyLock;

use axum::http::header::COOKIE;
use axum::http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use livesession::session::{COOKIE_NAME, Keys, SessionId, Verdict};

const CURRENT: &[u8] = b"fuzz-current-secret-0123456789abcdef";
const PREVIOUS: &[u8] = b"fuzz-previous-secret-fedcba9876543210";

/// The server after one key rotation: CURRENT signs, PREVIOUS is still accepted.
static ROTATED: LazyLock<Keys> =
    LazyLock::new(|| Keys::new(CURRENT, &[PREVIOUS.to_vec()], true).expect("valid keys"));
/// The server before the rotation, to issue cookies that must verify as `Previous`.
static OLD: LazyLock<Keys> = LazyLock::new(|| Keys::new(PREVIOUS, &[], false).expect("valid keys"));

fn headers(values: &[&[u8]]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for value in values {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(COOKIE, value);
        }
    }
    headers
}

/// A deterministic id from 16 input bytes, in the one spelling `SessionId` accepts.
fn session_id(bytes: &[u8]) -> SessionId {
    let mut raw = [0u8; 16];
    raw[..bytes.len()].copy_from_slice(bytes);
    let n = u128::from_be_bytes(raw);
    let hex = format!("{n:032x}");
    let key = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    );
    key.parse().expect("a hyphenated lowercase uuid is a session id")
}

fn is_session(verdict: Verdict) -> bool {
    matches!(verdict, Verdict::Current(_) | Verdict::Previous(_))
}

fuzz_target!(|data: &[u8]| {
    let flags = data.first().copied().unwrap_or(0);
    let id_bytes = data.get(1..17.min(data.len())).unwrap_or(&[]);
    let tail = data.get(17..).unwrap_or(&[]);
    let id = session_id(id_bytes);
    let keys = &*ROTATED;

    // 1. Arbitrary header values never verify.
    let pieces: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let verdict = keys.verify(&headers(&pieces));
    assert!(!is_session(verdict), "arbitrary headers {data:?} verified: {verdict:?}");

    let mut named = format!("{COOKIE_NAME}=").into_bytes();
    named.extend_from_slice(tail);
    let verdict = keys.verify(&headers(&[&named]));
    assert!(!is_session(verdict), "{named:?} verified: {verdict:?}");

    // 2. A valid cookie with bytes appended verifies as its own id or not at all.
    let (issuer, expected) = if flags & 1 == 0 {
        (keys, Verdict::Current(id))
    } else {
        (&*OLD, Verdict::Previous(id))
    };
    let set_cookie = issuer.issue(id);
    let set_cookie = set_cookie.to_str().expect("an issued cookie is ASCII");
    let pair = set_cookie.split(';').next().expect("split yields one piece");
    let verdict = keys.verify(&headers(&[pair.as_bytes()]));
    assert_eq!(verdict, expected, "the unmodified cookie {pair:?}");

    let mut tampered = pair.as_bytes().to_vec();
    tampered.extend_from_slice(tail);
    let verdict = keys.verify(&headers(&[&tampered]));
    assert!(
        verdict == expected || !is_session(verdict),
        "{tampered:?} verified as {verdict:?}, expected {expected:?} or a refusal"
    );
    let printable = HeaderValue::from_bytes(&tampered).is_ok_and(|v| v.to_str().is_ok());
    if tail.first() == Some(&b';') && printable {
        assert_eq!(verdict, expected, "{tampered:?}: a valid first cookie was not accepted");
    }

    // 3. CSRF tokens: only the real ones.
    let real = [keys.csrf_token(id), OLD.csrf_token(id)];
    let mut token = if flags & 2 == 0 {
        String::new()
    } else {
        real[usize::from(flags & 4 != 0)].clone()
    };
    token.push_str(&String::from_utf8_lossy(tail));
    if keys.verify_csrf(id, &token) {
        assert!(
            real.iter().any(|r| r == token.trim()),
            "a forged CSRF token was accepted: {token:?}"
        );
    }
});
