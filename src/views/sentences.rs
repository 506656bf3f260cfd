//! The sentences a refusal is shown as: what the person reads next to the field or on the page,
//! kept with the pages rather than with the rules that refuse.

use std::time::Duration;

use crate::clock::whole_seconds;
use crate::limit::RateLimit;
use crate::link::Unusable;
use crate::metrics::Limit;
use crate::settings::FieldError;

/// Why a chat message was not sent, for the composer: `limit` names the bucket that refused it
/// (this browser's, its network's or the room's), `rate` its size, `wait` how long until it
/// takes one more.
pub fn chat_too_fast(limit: Limit, rate: RateLimit, wait: Duration) -> FieldError {
    let seconds = whole_seconds(wait);
    let window = humantime::format_duration(rate.window);
    let sentence = match limit {
        Limit::ChatAddress => format!(
            "was not sent: {} messages every {window} may come from one network, and yours has \
             sent them; try again in {seconds} s",
            rate.burst
        ),
        Limit::ChatRoom => format!(
            "was not sent: the room is taking too many messages right now; try again in \
             {seconds} s"
        ),
        _ => format!(
            "was not sent: you can send {} messages every {window}; try again in {seconds} s",
            rate.burst
        ),
    };
    FieldError::new("Message", sentence)
}

/// Why a typed code did not work, and what to do instead.
pub fn unusable_code(why: Unusable) -> &'static str {
    match why {
        Unusable::NotACode => {
            "That is not a code: it has 12 letters and digits, like ABCD-EFGH-JKMN."
        }
        Unusable::Unknown => {
            "That code is not right: check it against your other device and type it again."
        }
        Unusable::Expired => "That code has expired: make a new one on your other device.",
        Unusable::Spent => {
            "That code was used already: each code works once. Make a new one on your other device."
        }
        Unusable::Cancelled => {
            "That code was cancelled on your other device: make a new one there."
        }
        Unusable::TooManyDevices => {
            "That session has as many devices as it may have: sign one out on your other device's settings page, then make a new code."
        }
        Unusable::LookedAtTooOften => {
            "That code was tried too many times, so it no longer works: make a new one on your other device."
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_chat_limit_says_whose_allowance_ran_out() {
        let rate = RateLimit {
            burst: 20,
            window: Duration::from_secs(60),
        };
        let wait = Duration::from_millis(2500);
        let mine = chat_too_fast(Limit::Chat, rate, wait);
        assert!(mine.message().contains("you can send 20 messages every 1m"));
        assert!(
            mine.message().contains("try again in 3 s"),
            "{}",
            mine.message()
        );
        let network = chat_too_fast(Limit::ChatAddress, rate, wait);
        assert!(network.message().contains("from one network"));
        let room = chat_too_fast(Limit::ChatRoom, rate, wait);
        assert!(room.message().contains("the room is taking too many"));
    }
}
