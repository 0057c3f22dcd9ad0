//! Time, injected: the source decides when a token is fresh, stale or expired by a [`Clock`],
//! so that tests move time instead of waiting for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// Milliseconds since the Unix epoch, and a way to wait for one.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;

    /// Resolves once [`Clock::now_ms`] has reached `at_ms` (at once if it has).
    fn sleep_until(&self, at_ms: u64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn sleep_until(&self, at_ms: u64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let wait = at_ms.saturating_sub(self.now_ms());
        Box::pin(tokio::time::sleep(Duration::from_millis(wait)))
    }
}

/// A clock that only moves when told to, for tests. Clones share the time.
///
/// # Examples
///
/// ```
/// use khoa_client::{Clock, ManualClock};
///
/// let clock = ManualClock::new(1_000);
/// clock.advance_ms(250);
/// assert_eq!(clock.now_ms(), 1_250);
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
    moved: Arc<watch::Sender<u64>>,
}

impl ManualClock {
    pub fn new(start_ms: u64) -> Self {
        ManualClock {
            now: Arc::new(AtomicU64::new(start_ms)),
            moved: Arc::new(watch::Sender::new(start_ms)),
        }
    }

    pub fn advance_ms(&self, ms: u64) {
        let now = self.now.fetch_add(ms, Ordering::SeqCst) + ms;
        self.moved.send_replace(now);
    }

    /// The time as a function, for a stand-in server that must see the same clock.
    pub fn reader(&self) -> Arc<dyn Fn() -> u64 + Send + Sync> {
        let now = self.now.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }

    fn sleep_until(&self, at_ms: u64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut moved = self.moved.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock, which this future borrows.
            let _ = moved.wait_for(|now| *now >= at_ms).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sleeper_wakes_when_the_manual_clock_passes_its_time() {
        let clock = ManualClock::new(0);
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep_until(1_000).await })
        };
        tokio::task::yield_now().await;
        clock.advance_ms(999);
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance_ms(1);
        sleeper.await.unwrap();
    }
}
