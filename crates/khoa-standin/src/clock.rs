//! Time as the stand-in sees it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Time as the stand-in sees it: milliseconds since some epoch, from the test's manual clock
/// (the same clock the client under test uses), so no test waits for the real clock.
pub type Now = Arc<dyn Fn() -> u64 + Send + Sync>;

/// A clock that moves only when the test moves it. Clones share one time.
///
/// ```
/// let clock = khoa_standin::ManualClock::new(1_000);
/// let now = clock.as_now();
/// clock.advance(500);
/// assert_eq!(now(), 1_500);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    ms: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock reading `ms`.
    pub fn new(ms: u64) -> ManualClock {
        ManualClock {
            ms: Arc::new(AtomicU64::new(ms)),
        }
    }

    /// The time now, in milliseconds.
    pub fn get(&self) -> u64 {
        self.ms.load(Ordering::SeqCst)
    }

    /// Moves the clock `ms` forward.
    pub fn advance(&self, ms: u64) {
        self.ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `ms`, backwards too.
    pub fn set(&self, ms: u64) {
        self.ms.store(ms, Ordering::SeqCst);
    }

    /// This clock as the stand-in's [`Now`].
    pub fn as_now(&self) -> Now {
        let ms = self.ms.clone();
        Arc::new(move || ms.load(Ordering::SeqCst))
    }

    /// The shared counter itself, for a client under test that reads an `AtomicU64`.
    pub fn millis(&self) -> Arc<AtomicU64> {
        self.ms.clone()
    }
}
