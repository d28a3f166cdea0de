//! Injected time. Engine code reads processing time only through a [`Clock`],
//! so tests and simulations control it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A source of processing time, shared read-only by all cores.
pub trait Clock: Send + Sync + 'static {
    /// Wall-clock processing time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Monotonic nanoseconds since an arbitrary origin fixed for the clock's
    /// lifetime (for rates, deadlines and latency).
    fn monotonic_ns(&self) -> u64;
    /// Wall-clock processing time in microseconds since the Unix epoch
    /// (by default [`Clock::now_ms`] in microseconds).
    fn now_us(&self) -> i64 {
        self.now_ms().saturating_mul(1000)
    }
}

/// Wall-clock time in microseconds since the Unix epoch, whatever the job's
/// clock: latency is measured in real time (markers, sinks, the monitor).
pub fn wall_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// The real clock.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self { origin: Instant::now() }
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
    }
    fn monotonic_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
    fn now_us(&self) -> i64 {
        wall_us()
    }
}

/// A clock that moves only when told to: for deterministic tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ns: AtomicI64,
}

impl ManualClock {
    /// A manual clock at `start_ms` milliseconds.
    pub fn new(start_ms: i64) -> Arc<Self> {
        Arc::new(Self { now_ns: AtomicI64::new(start_ms.saturating_mul(1_000_000)) })
    }

    /// Moves time forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: i64) {
        self.now_ns.fetch_add(ms.saturating_mul(1_000_000), Ordering::SeqCst);
    }

    /// Sets the time to `ms`; time never moves backwards.
    pub fn set_ms(&self, ms: i64) {
        self.now_ns.fetch_max(ms.saturating_mul(1_000_000), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ns.load(Ordering::SeqCst) / 1_000_000
    }
    fn monotonic_ns(&self) -> u64 {
        self.now_ns.load(Ordering::SeqCst).max(0) as u64
    }
    fn now_us(&self) -> i64 {
        self.now_ns.load(Ordering::SeqCst) / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_forward() {
        let c = ManualClock::new(1_000);
        assert_eq!(c.now_ms(), 1_000);
        c.advance_ms(5);
        assert_eq!(c.now_ms(), 1_005);
        c.set_ms(10);
        assert_eq!(c.now_ms(), 1_005);
        c.set_ms(2_000);
        assert_eq!(c.monotonic_ns(), 2_000_000_000);
    }
}
