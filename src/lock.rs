//! The crate's one lock policy: a lock is never poisoned.
//!
//! `std::sync::Mutex` marks itself poisoned when a thread panics while holding it, and every
//! later `lock()` returns an error; with `.expect()` at the call site, one panic in one request
//! would turn into a panic in every request after it. Every critical section in this crate is a
//! few map operations that leave the map whole whatever point they stop at (an insert, a remove,
//! a count), so the data behind a lock is always fit to use: these wrappers take the guard
//! whether or not the lock was poisoned, so a caller cannot forget to.

use std::sync::{MutexGuard, PoisonError, RwLockReadGuard, RwLockWriteGuard};

/// A mutex whose [`lock`](Mutex::lock) always succeeds.
#[derive(Debug, Default)]
pub struct Mutex<T>(std::sync::Mutex<T>);

impl<T> Mutex<T> {
    /// A lock around `value`.
    pub const fn new(value: T) -> Mutex<T> {
        Mutex(std::sync::Mutex::new(value))
    }

    /// Waits for the lock and holds it until the guard is dropped; a panic of an earlier holder
    /// does not stop the next one.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A readers-writer lock whose [`read`](RwLock::read) and [`write`](RwLock::write) always
/// succeed.
#[derive(Debug, Default)]
pub struct RwLock<T>(std::sync::RwLock<T>);

impl<T> RwLock<T> {
    /// A lock around `value`.
    pub const fn new(value: T) -> RwLock<T> {
        RwLock(std::sync::RwLock::new(value))
    }

    /// Shared access, for as long as the guard lives.
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Exclusive access, for as long as the guard lives.
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_whose_holder_panicked_is_still_usable() {
        let lock = std::sync::Arc::new(Mutex::new(vec![1]));
        let held = std::sync::Arc::clone(&lock);
        let panicked = std::thread::spawn(move || {
            let mut guard = held.lock();
            guard.push(2);
            panic!("a holder panics");
        })
        .join();
        assert!(panicked.is_err());
        assert_eq!(*lock.lock(), vec![1, 2]);

        let rw = std::sync::Arc::new(RwLock::new(0));
        let held = std::sync::Arc::clone(&rw);
        let _ = std::thread::spawn(move || {
            *held.write() += 1;
            panic!("a writer panics");
        })
        .join();
        assert_eq!(*rw.read(), 1);
    }
}
