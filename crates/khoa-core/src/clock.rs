//! Time and randomness, injected so that expiry and rotation are testable without sleeping.

use rand::RngCore;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::model::UnixTime;

pub trait Clock: Send + Sync {
    fn now(&self) -> UnixTime;

    /// Milliseconds since the epoch, for what only needs order, never expiry: the time-ordered
    /// prefix of stored tokens ([`crate::secret::generate_stored_token`]).
    fn now_millis(&self) -> i64 {
        self.now().saturating_mul(1000)
    }
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }

    fn now_millis(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to; for tests.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: UnixTime) -> Self {
        ManualClock(AtomicI64::new(start))
    }
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        self.0.load(Ordering::SeqCst)
    }
}

/// The wall clock moved forward by an offset that only grows: what the integration tests
/// advance instead of sleeping until a token expires or a lock passes. Time still runs, so
/// a test that needs none of it reads the same as against the wall clock.
#[derive(Debug, Default)]
pub struct AdvancedClock {
    offset_secs: AtomicI64,
}

impl AdvancedClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock `secs` forward.
    pub fn advance(&self, secs: i64) {
        self.offset_secs.fetch_add(secs, Ordering::SeqCst);
    }

    /// Sets how far ahead of the wall clock this clock runs.
    pub fn set_offset(&self, secs: i64) {
        self.offset_secs.store(secs, Ordering::SeqCst);
    }

    fn offset(&self) -> i64 {
        self.offset_secs.load(Ordering::SeqCst)
    }
}

impl Clock for AdvancedClock {
    fn now(&self) -> UnixTime {
        SystemClock.now() + self.offset()
    }

    fn now_millis(&self) -> i64 {
        SystemClock.now_millis() + self.offset() * 1000
    }
}

/// Source of secret randomness (tokens, keys, nonces).
pub trait Random: Send + Sync {
    fn fill(&self, buf: &mut [u8]);
}

/// The operating system's CSPRNG.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&self, buf: &mut [u8]) {
        rand::rngs::OsRng.fill_bytes(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_advanced_clock_keeps_running_ahead_by_what_it_was_advanced() {
        let c = AdvancedClock::new();
        let before = SystemClock.now();
        c.advance(3600);
        let now = c.now();
        assert!(
            (before + 3600..=SystemClock.now() + 3600).contains(&now),
            "{now}"
        );
        assert!(c.now_millis() >= (before + 3600) * 1000);
    }
}
