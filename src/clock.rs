//! Time as the database keeps it: milliseconds since the Unix epoch.
//!
//! Everything that is stored or compared with something stored (`read_at`, a message's time, when
//! a session was forgotten) is a [`Millis`] read from [`now_millis`] by the caller and passed
//! down, so the rules that depend on time can be tested with any clock.

use std::time::Duration;

/// Milliseconds since the Unix epoch: how every time is stored.
pub type Millis = i64;

/// The wall clock in [`Millis`].
pub fn now_millis() -> Millis {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Millis::try_from(since_epoch.as_millis()).unwrap_or(Millis::MAX)
}

/// A duration in [`Millis`], saturating (a duration of centuries stays comparable).
pub fn millis(duration: Duration) -> Millis {
    Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX)
}

/// `duration` in whole seconds, rounded up and at least one: how long to wait (or how long it
/// was), as a sentence for a person says it.
pub fn whole_seconds(duration: Duration) -> f64 {
    duration.as_secs_f64().ceil().max(1.0)
}
