//! The chat room: what a message may contain, what one looks like once stored, and how fast one
//! browser may send them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::limit::TokenBucket;
use crate::session::SessionId;
use crate::settings::FieldError;
use crate::store::Millis;

/// The longest message body, in characters.
pub const BODY_MAX_CHARS: usize = 2000;

/// How many messages a chat page shows.
pub const RECENT_MESSAGES: usize = 50;

/// A message body: trimmed, 1 to [`BODY_MAX_CHARS`] characters, no control characters except line
/// breaks (`\r\n` and `\r` become `\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBody(String);

impl MessageBody {
    /// Validates user input.
    pub fn parse(input: &str) -> Result<MessageBody, FieldError> {
        let normalized = input.replace("\r\n", "\n").replace('\r', "\n");
        let trimmed = normalized.trim();
        if trimmed.is_empty() {
            return Err(FieldError::new("Message", "is empty"));
        }
        if trimmed.chars().any(|c| c.is_control() && c != '\n') {
            return Err(FieldError::new(
                "Message",
                "may not contain control characters other than line breaks",
            ));
        }
        let chars = trimmed.chars().count();
        if chars > BODY_MAX_CHARS {
            return Err(FieldError::new(
                "Message",
                format!("is {chars} characters long; at most {BODY_MAX_CHARS} are allowed"),
            ));
        }
        Ok(MessageBody(trimmed.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stored message, as pages show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Grows with every message; never reused.
    pub id: i64,
    /// Who sent it. Only ever compared with the viewer's id, never shown.
    pub author: SessionId,
    /// The author's username when it was sent (empty: anonymous).
    pub author_name: String,
    pub body: String,
    pub created_at: Millis,
}

impl Message {
    /// The author's name for display.
    pub fn author_display(&self) -> &str {
        if self.author_name.is_empty() {
            "anonymous"
        } else {
            &self.author_name
        }
    }
}

/// The chat's rate limit: at most `burst` messages in any `window`, per session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub burst: u32,
    pub window: Duration,
}

/// A token bucket per session: `burst` tokens, refilled evenly over `window`.
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<SessionId, TokenBucket>>,
}

/// Forget full buckets once the map is this big, so it stays small.
const SWEEP_ABOVE: usize = 10_000;

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The limit this limiter enforces.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    fn burst(&self) -> f64 {
        f64::from(self.limit.burst)
    }

    /// Takes one message's worth for `id` at `now`, or says how long until one is available.
    pub fn try_acquire(&self, id: SessionId, now: Instant) -> Result<(), Duration> {
        let burst = self.burst();
        let per_second = burst / self.limit.window.as_secs_f64();
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        if buckets.len() > SWEEP_ABOVE {
            // A bucket idle for a whole window is full again: forgetting it changes nothing.
            let window = self.limit.window;
            buckets.retain(|_, b| now.duration_since(b.last_used()) < window);
        }
        buckets
            .entry(id)
            .or_insert_with(|| TokenBucket::full(burst, now))
            .take(burst, per_second, now)
    }

    /// Gives back what `try_acquire` took, for a message that turned out to be a resend.
    pub fn refund(&self, id: SessionId) {
        let burst = self.burst();
        if let Some(bucket) = self.buckets.lock().expect("rate limiter lock").get_mut(&id) {
            bucket.give_back(burst);
        }
    }
}

/// The message shown to someone over the rate limit.
pub fn rate_limited_message(wait: Duration, limit: RateLimit) -> FieldError {
    let seconds = wait.as_secs_f64().ceil().max(1.0);
    FieldError::new(
        "Message",
        format!(
            "was not sent: you can send {} messages every {}; try again in {seconds} s",
            limit.burst,
            humantime::format_duration(limit.window)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_trimmed_and_keeps_its_inner_line_breaks() {
        let body = MessageBody::parse("  hello\r\nworld \n").unwrap();
        assert_eq!(body.as_str(), "hello\nworld");
    }

    #[test]
    fn an_empty_or_blank_body_is_refused() {
        for blank in ["", "   ", "\n\n"] {
            assert!(MessageBody::parse(blank).is_err(), "{blank:?}");
        }
    }

    #[test]
    fn two_thousand_characters_are_accepted_and_one_more_is_not() {
        assert!(MessageBody::parse(&"ü".repeat(2000)).is_ok());
        let err = MessageBody::parse(&"ü".repeat(2001)).unwrap_err();
        assert!(err.message().contains("2001 characters"), "{err}");
    }

    #[test]
    fn control_characters_other_than_line_breaks_are_refused() {
        for bad in ["a\tb", "a\u{0}b", "a\u{1b}[31mb", "a\u{85}b"] {
            assert!(MessageBody::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_rate_limit_allows_a_burst_then_refills_over_the_window() {
        let limit = RateLimit {
            burst: 5,
            window: Duration::from_secs(10),
        };
        let limiter = RateLimiter::new(limit);
        let id = SessionId::generate();
        let start = Instant::now();
        for _ in 0..5 {
            limiter.try_acquire(id, start).unwrap();
        }
        let wait = limiter.try_acquire(id, start).unwrap_err();
        assert!(
            wait <= Duration::from_secs(2) && wait > Duration::from_millis(1900),
            "{wait:?}"
        );
        // Another session is not affected.
        limiter.try_acquire(SessionId::generate(), start).unwrap();
        // Two seconds later one message's worth has come back.
        limiter
            .try_acquire(id, start + Duration::from_secs(2))
            .unwrap();
        assert!(
            limiter
                .try_acquire(id, start + Duration::from_secs(2))
                .is_err()
        );
    }

    #[test]
    fn a_refund_gives_a_message_back() {
        let limiter = RateLimiter::new(RateLimit {
            burst: 1,
            window: Duration::from_secs(60),
        });
        let id = SessionId::generate();
        let now = Instant::now();
        limiter.try_acquire(id, now).unwrap();
        limiter.refund(id);
        limiter.try_acquire(id, now).unwrap();
    }
}
