//! Wall-clock time for what happens *at* a time (scheduled announcements, member days, digests,
//! quiet hours): one trait, so that tests drive time by hand instead of sleeping.
//!
//! Deadlines that only bound how long something may take (timeouts, leases, retry back-off)
//! keep using tokio's timers and `ids::now_ms`; only features that fire at calendar times ask
//! the shared [`Clock`] (`AppState::clock`).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::Notify;

/// Milliseconds since the Unix epoch, and a way to wait until a given one.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;

    /// Resolves once `now_ms() >= at_ms` (at once when it already is).
    fn sleep_until(&self, at_ms: i64) -> BoxFuture<'_, ()>;
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::ids::now_ms()
    }

    fn sleep_until(&self, at_ms: i64) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // The wall clock may be stepped while we sleep: wake at least once a minute to look.
            loop {
                let left = at_ms - self.now_ms();
                if left <= 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(left.min(60_000) as u64)).await;
            }
        })
    }
}

/// A clock that moves only when told to (tests, benchmarks): `set`/`advance` wake every
/// sleeper whose time has come.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
    moved: Notify,
}

impl ManualClock {
    pub fn new(now_ms: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now: AtomicI64::new(now_ms),
            moved: Notify::new(),
        })
    }

    /// Starts at an RFC 3339 instant; panics on a malformed one (for tests).
    pub fn at(rfc3339: &str) -> Arc<ManualClock> {
        let at = chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap_or_else(|e| panic!("ManualClock::at({rfc3339:?}): {e}"));
        ManualClock::new(at.timestamp_millis())
    }

    pub fn set(&self, now_ms: i64) {
        self.now.store(now_ms, Ordering::SeqCst);
        self.moved.notify_waiters();
    }

    pub fn set_rfc3339(&self, rfc3339: &str) {
        let at = chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap_or_else(|e| panic!("ManualClock::set_rfc3339({rfc3339:?}): {e}"));
        self.set(at.timestamp_millis());
    }

    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
        self.moved.notify_waiters();
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    fn sleep_until(&self, at_ms: i64) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            loop {
                // Registered before the check, so a move between the two is not missed.
                let moved = self.moved.notified();
                if self.now_ms() >= at_ms {
                    return;
                }
                moved.await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_sleeper_wakes_when_its_time_is_set() {
        let clock = ManualClock::new(1_000);
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep_until(5_000).await })
        };
        tokio::task::yield_now().await;
        clock.set(4_999);
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "woke before its time");
        clock.advance(Duration::from_millis(1));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("the sleeper wakes once the clock reaches its time")
            .expect("the sleeper does not panic");
    }
}
