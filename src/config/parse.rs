//! The values of flags as clap reads them: durations (at most [`MAX_DURATION`]), sizes,
//! networks, URLs and files, each refused with one sentence.

use std::path::PathBuf;
use std::time::Duration;

use crate::http::client::Network;
use crate::origin::PublicUrl;
use crate::store::PostgresTarget;

pub(super) fn parse_network(input: &str) -> Result<Network, String> {
    input.parse()
}

pub(super) fn parse_public_url(input: &str) -> Result<PublicUrl, String> {
    input.parse()
}

/// The longest duration a flag takes: 100 years. Longer ones mean nothing here, and past some
/// point the sums made of them (a deadline, three heartbeats) would overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

pub(super) fn parse_duration(input: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(input.trim())
        .map_err(|e| format!("{e} (write durations like 2s, 90m, 12h or 100d)"))?;
    if duration > MAX_DURATION {
        return Err("is longer than 100 years, the longest duration a flag takes".to_owned());
    }
    Ok(duration)
}

/// Accepts a `postgres://` or `postgresql://` URL the driver can read, with libpq's `sslmode`
/// and `sslrootcert` (whose file must hold CA certificates); anything else is refused here, with
/// the reason. The message never repeats the value: it may hold a password.
pub(super) fn parse_database_url(input: &str) -> Result<String, String> {
    let input = input.trim();
    if !(input.starts_with("postgres://") || input.starts_with("postgresql://")) {
        return Err("must be a PostgreSQL URL starting with postgres://".to_owned());
    }
    PostgresTarget::new(input, None)?;
    Ok(input.to_owned())
}

/// Accepts a public DNS name for a certificate: letters, digits, hyphens and dots, labels of 1
/// to 63 characters, 253 in all; not an address (ACME certificates name hosts).
pub(super) fn parse_domain(input: &str) -> Result<String, String> {
    let name = input.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) || !name.contains('.') {
        return Err(format!(
            "{input:?} is not a host name (like demo.example.com) a certificate can be issued for"
        ));
    }
    if name.parse::<std::net::IpAddr>().is_ok()
        || name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        return Err(format!(
            "{input:?} is an address; --tls-domain takes a host name"
        ));
    }
    Ok(name)
}

/// Accepts a PEM file of one or more CA certificates.
pub(super) fn parse_ca_file(input: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(input);
    PostgresTarget::check_ca_file(&path)?;
    Ok(path)
}

pub(super) fn parse_positive_duration(input: &str) -> Result<Duration, String> {
    let duration = parse_duration(input)?;
    if duration.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    Ok(duration)
}

/// A size: bytes, or a number with `KiB`, `MiB`, `GiB` or `TiB` (or `K`, `M`, `G`, `T`).
pub(super) fn parse_size(input: &str) -> Result<u64, String> {
    let input = input.trim();
    let digits = input
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(input.len());
    let (number, unit) = input.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{input:?} is not a size such as 256MiB, 1GiB or 1048576"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        _ => return Err(format!("{input:?}: the unit must be KiB, MiB, GiB or TiB")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{input:?} is too large"))
}
