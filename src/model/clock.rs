//! Owns the [`Clock`] abstraction: where "now" comes from, so that code stamping events can be
//! driven by the wall clock in production ([`SystemClock`]) and by hand in tests
//! ([`ManualClock`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use super::timestamp::Timestamp;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

/// The operating system's wall clock ([`std::time::SystemTime`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to, for deterministic tests.
///
/// Clones share the same time (the value lives behind an `Arc`), so a test can keep one handle
/// and give another to the code under test.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock {
            nanos: Arc::new(AtomicI64::new(start.as_unix_nanos())),
        }
    }

    /// Sets the time to `t` (it may move backwards).
    pub fn set(&self, t: Timestamp) {
        self.nanos.store(t.as_unix_nanos(), Ordering::SeqCst);
    }

    /// Moves the time by `nanos` (negative moves it back), saturating at the representable
    /// range, and returns the new time.
    pub fn advance_nanos(&self, nanos: i64) -> Timestamp {
        let mut current = self.nanos.load(Ordering::SeqCst);
        loop {
            let next = current.saturating_add(nanos);
            match self.nanos.compare_exchange_weak(
                current,
                next,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Timestamp::from_unix_nanos(next),
                Err(actual) => current = actual,
            }
        }
    }

    /// Moves the time forward by `d` (saturating) and returns the new time.
    pub fn advance(&self, d: std::time::Duration) -> Timestamp {
        self.advance_nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_is_shared_and_moves_only_when_told() {
        let clock = ManualClock::new(Timestamp::from_unix_nanos(1_000));
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        assert_eq!(shared.now().as_unix_nanos(), 1_000);
        assert_eq!(clock.advance_nanos(500).as_unix_nanos(), 1_500);
        assert_eq!(shared.now().as_unix_nanos(), 1_500);
        clock.set(Timestamp::from_unix_nanos(7));
        assert_eq!(shared.now().as_unix_nanos(), 7);
        assert_eq!(
            clock
                .advance(std::time::Duration::from_micros(1))
                .as_unix_nanos(),
            1_007
        );
        clock.set(Timestamp::MAX);
        assert_eq!(clock.advance_nanos(1), Timestamp::MAX);
    }

    #[test]
    fn system_clock_moves() {
        let a = SystemClock.now();
        let b = SystemClock.now();
        assert!(b >= a);
    }
}
