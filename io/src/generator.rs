//! A source that makes record `i` from its index `i`.
//!
//! A bounded generator of `n` records splits `0..n` in contiguous ranges, one
//! per split; an unbounded one gives split `s` of `k` the indices
//! `s, s + k, s + 2k, ...`. With a rate limit, each split emits its share of
//! the total rate, record by record on a schedule (`start + j / rate`), so a
//! slow consumer shows as lag behind the schedule rather than a lower rate.

use std::time::Duration;

use std::sync::Arc;

use brisk_engine::{Clock, Source, SourceContext, SourceError, SourceOutput, SourceReader, SourceStatus};

/// Records from a function of their index.
#[derive(Clone)]
pub struct GeneratorSource<F> {
    count: Option<u64>,
    f: F,
    rate_per_s: Option<f64>,
}

impl<F> GeneratorSource<F> {
    /// `count` records: `f(0)`, ..., `f(count - 1)`.
    pub fn new(count: u64, f: F) -> Self {
        Self { count: Some(count), f, rate_per_s: None }
    }

    /// Records without end.
    pub fn unbounded(f: F) -> Self {
        Self { count: None, f, rate_per_s: None }
    }

    /// Emits at most `events_per_s` records per second in total (shared
    /// evenly by the splits). Must be positive.
    pub fn with_rate(mut self, events_per_s: f64) -> Self {
        self.rate_per_s = Some(events_per_s);
        self
    }
}

impl<T: 'static, F: Fn(u64) -> T + Clone + Send + 'static> Source<T> for GeneratorSource<F> {
    type Reader = GeneratorReader<F>;

    fn name(&self) -> String {
        "generator".into()
    }

    fn is_bounded(&self) -> bool {
        self.count.is_some()
    }

    fn create_reader(&self, ctx: &SourceContext) -> Result<Self::Reader, SourceError> {
        let (s, k) = (ctx.split() as u64, ctx.splits() as u64);
        let (next, end, stride) = match self.count {
            Some(n) => (n * s / k, n * (s + 1) / k, 1),
            None => (s, u64::MAX, k),
        };
        let rate = match self.rate_per_s {
            None => None,
            Some(r) if r > 0.0 && r.is_finite() => Some(r / k as f64),
            Some(r) => {
                return Err(SourceError(format!(
                    "generator rate = {r}: must be a positive number of events per second"
                )));
            }
        };
        Ok(GeneratorReader {
            f: self.f.clone(),
            next,
            end,
            stride,
            rate,
            emitted: 0,
            start_ns: None,
            clock: ctx.clock(),
        })
    }
}

/// One split of a [`GeneratorSource`].
pub struct GeneratorReader<F> {
    f: F,
    next: u64,
    end: u64,
    stride: u64,
    rate: Option<f64>,
    emitted: u64,
    start_ns: Option<u64>,
    clock: Arc<dyn Clock>,
}

/// How many records a rate-limited split may have emitted by `elapsed_ns`,
/// and how long until the next one is due once that many are out.
pub(crate) fn schedule(rate_per_s: f64, elapsed_ns: u64, emitted: u64) -> (u64, Duration) {
    let due = (elapsed_ns as f64 * rate_per_s / 1e9).floor() as u64 + 1;
    let next_at_ns = (emitted as f64 * 1e9 / rate_per_s).ceil() as u64;
    (due, Duration::from_nanos(next_at_ns.saturating_sub(elapsed_ns)))
}

impl<T: 'static, F: Fn(u64) -> T + 'static> SourceReader<T> for GeneratorReader<F> {
    async fn next_batch(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourceStatus, SourceError> {
        if self.next >= self.end {
            return Ok(SourceStatus::Done);
        }
        let mut allowed = out.remaining() as u64;
        if let Some(rate) = self.rate {
            // The schedule runs on the job's injected clock.
            let now = self.clock.monotonic_ns();
            let start = *self.start_ns.get_or_insert(now);
            let (due, wait) = schedule(rate, now - start, self.emitted);
            allowed = allowed.min(due.saturating_sub(self.emitted));
            if allowed == 0 {
                return Ok(SourceStatus::Wait(wait.max(Duration::from_micros(10))));
            }
        }
        let left = (self.end - self.next).div_ceil(self.stride);
        for _ in 0..allowed.min(left) {
            out.collect((self.f)(self.next));
            self.next = self.next.saturating_add(self.stride);
        }
        self.emitted += allowed.min(left);
        Ok(if self.next >= self.end { SourceStatus::Done } else { SourceStatus::More })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_allows_rate_times_elapsed() {
        // 1000/s: at t=0 one record is due, at 1 ms two, at 10.5 ms eleven.
        assert_eq!(schedule(1000.0, 0, 0).0, 1);
        assert_eq!(schedule(1000.0, 1_000_000, 0).0, 2);
        assert_eq!(schedule(1000.0, 10_500_000, 0).0, 11);
        // With 11 out at 10.5 ms, the 12th is due at 11 ms: wait 0.5 ms.
        assert_eq!(schedule(1000.0, 10_500_000, 11).1, Duration::from_micros(500));
    }
}
