//! How late windowed results are, when event time is processing time.
//!
//! A latency run anchors the generator's rate-limited schedule at the
//! instant its event time starts (`GeneratorSource::with_rate_from`), so that
//! an event is due when its event time comes. A window's result is then due
//! at the event time at which the watermark passes the window's timer: with
//! bounded out-of-orderness `d`, when an event at `timer + d + 1` arrives. A
//! result's latency is the wall-clock time it reaches the sink minus that
//! instant: what the engine adds, from the watermark's period to the result
//! at the sink, whatever out-of-orderness bound the user chose. Hazelcast
//! Jet's Nexmark q5 latency is measured the same way.

use std::sync::{Arc, Mutex};

use brisk::clock::wall_us;
use hdrhistogram::Histogram;

/// A result row that knows when its window closed.
pub trait Windowed {
    /// The event time (ms) at which this row's window closed: the first
    /// event time at which the watermark passes its timer.
    fn closes_at_ms(&self) -> i64;
}

/// The latencies of windowed results, from every core.
///
/// Rows are few (a handful per window), so one lock held for a histogram
/// update per row costs the cores nothing measurable.
/// Rows that reach the sink before their window closed were fired by the
/// end of input (its final watermark), not by time: they are counted apart.
#[derive(Clone)]
pub struct WindowLatency(Arc<Mutex<(Histogram<u64>, u64)>>);

impl Default for WindowLatency {
    fn default() -> Self {
        // 1 µs to an hour, 3 significant digits: the bounds are valid.
        let h = Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        Self(Arc::new(Mutex::new((h, 0))))
    }
}

impl WindowLatency {
    /// Records that `row` reached the sink now.
    pub fn record(&self, row: &impl Windowed) {
        let late_us = wall_us() - row.closes_at_ms().saturating_mul(1000);
        if let Ok(mut l) = self.0.lock() {
            match late_us {
                ..0 => l.1 += 1,
                late => l.0.saturating_record(late.max(1) as u64),
            }
        }
    }

    /// `window latency: p50 .. ms, p99 .. ms, p99.9 .. ms, max .. ms (N results;
    /// M fired by the end of input, not counted)`, or `None` before any result.
    pub fn summary(&self) -> Option<String> {
        let l = self.0.lock().ok()?;
        let (h, early) = (&l.0, l.1);
        if h.is_empty() && early == 0 {
            return None;
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Some(format!(
            "window latency: p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms \
             ({} results; {early} fired by the end of input, not counted)",
            ms(0.5),
            ms(0.99),
            ms(0.999),
            h.max() as f64 / 1000.0,
            h.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Row(i64);
    impl Windowed for Row {
        fn closes_at_ms(&self) -> i64 {
            self.0
        }
    }

    #[test]
    fn a_result_is_as_late_as_the_time_since_its_window_closed() {
        let l = WindowLatency::default();
        let now_ms = wall_us() / 1000;
        l.record(&Row(now_ms - 2_000));
        l.record(&Row(now_ms - 3_000));
        // A window that closes in an hour, fired early by the end of input.
        l.record(&Row(now_ms + 3_600_000));
        let guard = l.0.lock().unwrap();
        let (h, early) = (&guard.0, guard.1);
        assert_eq!((h.len(), early), (2, 1));
        // At least 2 s and 3 s late, and not an hour more.
        assert!(h.min() >= 1_990_000 && h.max() >= 2_990_000 && h.max() < 3_600_000_000, "{h:?}");
        drop(guard);
        assert!(l.summary().unwrap().ends_with("(2 results; 1 fired by the end of input, not counted)"));
        assert!(WindowLatency::default().summary().is_none());
    }
}
