//! The rules of staleness: when a settings row, a message or a forgotten id is old enough to go,
//! and how often a read may write `read_at`. Pure functions of the time they are given; the prune
//! task (`prune`) and the maintenance command apply them.

use std::time::Duration;

use crate::clock::{Millis, millis};
use crate::session::COOKIE_MAX_AGE;

/// What is kept, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// A settings row unused for this long is deleted.
    pub stale_after: Duration,
    /// Reads bump `read_at` at most once per window, so `read_at` may lag the last read by this
    /// much; the cutoff allows for it, so a row read within `stale_after` is never deleted.
    pub touch_window: Duration,
    /// Chat messages older than this are deleted.
    pub message_retention: Duration,
    /// At most this many chat messages are kept, the newest.
    pub message_limit: usize,
}

/// What one prune pass removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Stale settings rows.
    pub sessions: usize,
    /// Chat messages past the retention or beyond the newest `message_limit`.
    pub messages: usize,
    /// Forgotten ids whose cookies have expired, so they need no remembering.
    pub forgotten: usize,
    /// Devices not seen for `--stale-after`, signed out.
    pub devices: usize,
}

impl Pruned {
    /// True when nothing was (or would be) removed.
    pub fn is_empty(&self) -> bool {
        *self == Pruned::default()
    }
}

/// Where one prune pass at a given time draws its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// Settings rows last used before this are stale.
    pub stale_before: Millis,
    /// Messages posted before this are past the retention.
    pub messages_before: Millis,
    /// Only this many of the newest messages are kept.
    pub keep_messages: usize,
    /// Ids forgotten before this are remembered no more: every cookie holding one has expired.
    pub forgotten_before: Millis,
}

impl Retention {
    /// Rows whose `read_at` is before this are stale at `now`.
    pub fn cutoff(&self, now: Millis) -> Millis {
        now.saturating_sub(millis(self.stale_after))
            .saturating_sub(millis(self.touch_window))
    }

    /// A read at `now` must bump `read_at` when it is older than this.
    pub fn touch_before(&self, now: Millis) -> Millis {
        now.saturating_sub(millis(self.touch_window))
    }

    /// The lines a prune pass at `now` draws: one definition for the real pass and the dry run.
    pub fn cutoffs(&self, now: Millis) -> Cutoffs {
        Cutoffs {
            stale_before: self.cutoff(now),
            messages_before: now.saturating_sub(millis(self.message_retention)),
            keep_messages: self.message_limit,
            forgotten_before: now.saturating_sub(millis(COOKIE_MAX_AGE.unsigned_abs())),
        }
    }
}

/// How long the change numbers pages had applied are remembered: pages resend an unacknowledged
/// change within seconds of reconnecting, so an hour is plenty.
pub const PAGE_ACK_MEMORY: Duration = Duration::from_secs(60 * 60);

impl Retention {
    /// Change numbers of pages acknowledged before this are forgotten at `now`.
    pub fn page_acks_before(&self, now: Millis) -> Millis {
        now.saturating_sub(millis(PAGE_ACK_MEMORY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_allows_for_the_touch_window() {
        let retention = Retention {
            stale_after: Duration::from_secs(100),
            touch_window: Duration::from_secs(1),
            message_retention: Duration::from_secs(1000),
            message_limit: 10,
        };
        assert_eq!(retention.cutoff(1_000_000), 1_000_000 - 101_000);
        assert_eq!(retention.touch_before(1_000_000), 999_000);
    }
}
