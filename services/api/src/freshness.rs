//! When an in-process view last caught up with the database, and whether that is recent enough
//! to trust it. The session view and the group view share the bound
//! (`auth.session_max_staleness_millis`; 0 means never fresh, i.e. the views are off).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

pub struct SyncClock {
    started: Instant,
    /// Milliseconds after `started` of the last successful sync (-1 = never).
    synced_ms: AtomicI64,
    max_staleness: Duration,
}

impl SyncClock {
    pub fn new(max_staleness: Duration) -> Self {
        Self {
            started: Instant::now(),
            synced_ms: AtomicI64::new(-1),
            max_staleness,
        }
    }

    /// Milliseconds since this clock was made.
    pub fn now_ms(&self) -> i64 {
        self.started.elapsed().as_millis() as i64
    }

    /// True when a sync succeeded less than the staleness bound ago.
    pub fn is_fresh(&self) -> bool {
        let synced = self.synced_ms.load(Ordering::Acquire);
        synced >= 0 && self.now_ms() - synced < self.max_staleness.as_millis() as i64
    }

    /// Records a successful sync that began at `at_ms` (from [`SyncClock::now_ms`]).
    pub fn synced_at(&self, at_ms: i64) {
        self.synced_ms.store(at_ms, Ordering::Release);
    }
}
