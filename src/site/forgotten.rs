//! The sessions "forget me" ended, refused from then on.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::clock::Millis;
use crate::session::SessionId;

/// Session ids deleted by "forget me". Their cookies still carry a valid signature, so they are
/// refused here until the cookie would have expired anyway ([`COOKIE_MAX_AGE`](crate::session::COOKIE_MAX_AGE)): such a request
/// gets a fresh session, and the old id is never re-issued.
pub struct Forgotten {
    ids: RwLock<HashMap<SessionId, Millis>>,
    /// True while `ids` is empty: the usual case costs one atomic load per request.
    none: AtomicBool,
}

impl Default for Forgotten {
    fn default() -> Forgotten {
        Forgotten {
            ids: RwLock::default(),
            none: AtomicBool::new(true),
        }
    }
}

impl Forgotten {
    /// True when `id` was forgotten.
    pub fn contains(&self, id: SessionId) -> bool {
        !self.none.load(Ordering::Acquire)
            && self.ids.read().expect("forgotten lock").contains_key(&id)
    }

    /// Remembers that `id` was forgotten at `at`.
    pub fn insert(&self, id: SessionId, at: Millis) {
        let mut ids = self.ids.write().expect("forgotten lock");
        ids.insert(id, at);
        self.none.store(false, Ordering::Release);
    }

    /// Stops remembering ids forgotten before `before`.
    pub fn forget_before(&self, before: Millis) {
        let mut ids = self.ids.write().expect("forgotten lock");
        ids.retain(|_, at| *at >= before);
        self.none.store(ids.is_empty(), Ordering::Release);
    }
}
