//! A source that makes record `i` from its index `i`.
//!
//! A bounded generator of `n` records splits `0..n` in contiguous ranges, one
//! per split (as Flink's `fromSequence` does), unless
//! [interleaved](GeneratorSource::interleaved); an unbounded or interleaved one gives split
//! `s` of `k` the indices `s, s + k, s + 2k, ...`. With a rate limit, each split emits its share of
//! the total rate, on a schedule (record `j` is due at `start + j / rate`),
//! in batches of at least 100 µs of it so that the core pauses between
//! them; a slow consumer shows as lag behind the schedule rather than a
//! lower rate.
//! The schedule starts at the first batch, or at a given wall-clock instant
//! ([`GeneratorSource::with_rate_from`]).

use std::time::Duration;

use std::sync::Arc;

use brisk_engine::{Clock, Source, SourceContext, SourceError, SourceOutput, SourceReader, SourceStatus};

/// Records from a function of their index.
#[derive(Clone)]
pub struct GeneratorSource<F> {
    count: Option<u64>,
    f: F,
    rate_per_s: Option<f64>,
    /// Wall-clock microseconds at which a rate-limited schedule starts.
    schedule_from_us: Option<i64>,
    splits: Option<usize>,
    interleaved: bool,
}

impl<F> GeneratorSource<F> {
    /// `count` records: `f(0)`, ..., `f(count - 1)`.
    pub fn new(count: u64, f: F) -> Self {
        Self {
            count: Some(count),
            f,
            rate_per_s: None,
            schedule_from_us: None,
            splits: None,
            interleaved: false,
        }
    }

    /// Records without end.
    pub fn unbounded(f: F) -> Self {
        Self { count: None, f, rate_per_s: None, schedule_from_us: None, splits: None, interleaved: false }
    }

    /// Divides the indices into `splits` splits (like the partitions of a
    /// topic), dealt round-robin to the cores; a reader with several splits
    /// interleaves them chunk by chunk, each tagged with its split (see
    /// `from_source_with_watermarks`). Default: one split per core.
    pub fn with_splits(mut self, splits: usize) -> Self {
        self.splits = Some(splits);
        self
    }

    /// Gives split `s` of `k` the indices `s, s + k, s + 2k, ...` of a
    /// bounded generator instead of a contiguous range, so that splits
    /// advance through the indices together. Where a record's event time
    /// grows with its index, contiguous ranges put the later splits far
    /// ahead of the watermark (the minimum over splits): everything they
    /// emit waits in state, and state grows with the run's length.
    /// Interleaved splits model partitions that advance in step, as a
    /// steady stream's do.
    pub fn interleaved(mut self) -> Self {
        self.interleaved = true;
        self
    }

    /// Emits at most `events_per_s` records per second in total (shared
    /// evenly by the splits). Must be positive.
    pub fn with_rate(mut self, events_per_s: f64) -> Self {
        self.rate_per_s = Some(events_per_s);
        self
    }

    /// As [`with_rate`](Self::with_rate), with the schedule anchored at
    /// `start_us` (wall-clock microseconds since the Unix epoch, on the job's
    /// clock) rather than at the first batch: record `j` of a split is due
    /// at `start_us + j / rate` however long the job took to start, and a
    /// source that starts late first catches up. A future anchor holds the
    /// records until it comes. With a generator whose
    /// event time is `start + index / rate`, a record is due when its event
    /// time comes, so event time is processing time, and how late a
    /// result is can be read off its event time (latency benchmarks).
    pub fn with_rate_from(mut self, events_per_s: f64, start_us: i64) -> Self {
        self.rate_per_s = Some(events_per_s);
        self.schedule_from_us = Some(start_us);
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
        let readers = ctx.splits();
        let total = self.splits.unwrap_or(readers);
        if total == 0 {
            return Err(SourceError("generator splits = 0: must be at least 1".into()));
        }
        let k = total as u64;
        // A checkpoint's position: `(splits, split, next index)` of every
        // split not yet exhausted.
        let restored: Option<Vec<(u64, u64, u64)>> = match ctx.restored_positions() {
            None => None,
            Some(positions) => {
                let mut all = Vec::new();
                for p in positions {
                    let v: Vec<(u64, u64, u64)> = postcard::from_bytes(&p.position)
                        .map_err(|e| SourceError(format!("generator: restored position is not one: {e}")))?;
                    if v.iter().any(|&(splits, _, _)| splits != k) {
                        return Err(SourceError(format!(
                            "generator: the checkpoint was taken with another number of splits than {k}; \
                             fix the splits with with_splits to restore at another core count"
                        )));
                    }
                    all.extend(v);
                }
                Some(all)
            }
        };
        // Splits s ≡ this reader's index (mod readers) belong to this reader.
        let ranges: Vec<SplitRange> = (ctx.split()..total)
            .step_by(readers)
            .filter_map(|s| {
                let s = s as u64;
                let mut range = match self.count {
                    Some(n) if self.interleaved => SplitRange { id: s, next: s, end: n, stride: k },
                    Some(n) => SplitRange { id: s, next: n * s / k, end: n * (s + 1) / k, stride: 1 },
                    None => SplitRange { id: s, next: s, end: u64::MAX, stride: k },
                };
                if let Some(r) = &restored {
                    // Absent from the checkpoint: the split was exhausted.
                    range.next = r.iter().find(|p| p.1 == s)?.2;
                }
                Some(range)
            })
            .collect();
        let rate = match self.rate_per_s {
            None => None,
            Some(r) if r > 0.0 && r.is_finite() => Some(r * ranges.len() as f64 / k as f64),
            Some(r) => {
                return Err(SourceError(format!(
                    "generator rate = {r}: must be a positive number of events per second"
                )));
            }
        };
        let total = ranges.iter().map(SplitRange::remaining).sum();
        Ok(GeneratorReader {
            total,
            f: self.f.clone(),
            ranges,
            current: 0,
            splits: k,
            rate,
            schedule_from_us: self.schedule_from_us,
            emitted: 0,
            start_ns: None,
            clock: ctx.clock(),
        })
    }
}

struct SplitRange {
    id: u64,
    next: u64,
    end: u64,
    stride: u64,
}

impl SplitRange {
    /// Records still to emit.
    fn remaining(&self) -> u64 {
        self.end.saturating_sub(self.next).div_ceil(self.stride.max(1))
    }
}

/// The least a rate-limited reader emits at a time, in ns of its schedule
/// (fewer only when fewer are left or fit in the batch).
const RATE_BATCH_NS: u64 = 100_000;

/// Records interleaved from one split to the next.
const SPLIT_CHUNK_RECORDS: u64 = 256;

/// The splits of a [`GeneratorSource`] one core reads.
pub struct GeneratorReader<F> {
    f: F,
    ranges: Vec<SplitRange>,
    current: usize,
    /// Total splits of the source.
    splits: u64,
    rate: Option<f64>,
    schedule_from_us: Option<i64>,
    emitted: u64,
    /// When the schedule started, on the monotonic clock (negative if
    /// before the clock's origin).
    start_ns: Option<i64>,
    clock: Arc<dyn Clock>,
    /// Records this reader had to emit when it started (progress).
    total: u64,
}

/// Where a split's schedule starts on the monotonic clock, which reads
/// `now_ns` while the wall clock reads `now_us`: at the first batch, or at
/// the wall-clock anchor `from_us` (possibly before the monotonic clock's
/// origin, or in the future).
fn schedule_start(now_ns: i64, now_us: i64, from_us: Option<i64>) -> i64 {
    match from_us {
        Some(from_us) => now_ns.saturating_sub(now_us.saturating_sub(from_us).saturating_mul(1000)),
        None => now_ns,
    }
}

/// How many records a rate-limited split may have emitted by `elapsed_ns`,
/// and how long until the next one is due once that many are out.
pub(crate) fn schedule(rate_per_s: f64, elapsed_ns: u64, emitted: u64) -> (u64, Duration) {
    let due = (elapsed_ns as f64 * rate_per_s / 1e9).floor() as u64 + 1;
    let next_at_ns = (emitted as f64 * 1e9 / rate_per_s).ceil() as u64;
    (due, Duration::from_nanos(next_at_ns.saturating_sub(elapsed_ns)))
}

/// The fewest records a rate-limited reader emits at once: `RATE_BATCH_NS`
/// of its schedule, but at least one, and no more than fit in the batch
/// (`room`) or are left.
pub(crate) fn rate_batch(rate_per_s: f64, room: u64, left: u64) -> u64 {
    ((rate_per_s * RATE_BATCH_NS as f64 / 1e9) as u64).clamp(1, room.min(left).max(1))
}

impl<T: 'static, F: Fn(u64) -> T + 'static> SourceReader<T> for GeneratorReader<F> {
    async fn next_batch(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourceStatus, SourceError> {
        self.ranges.retain(|r| r.next < r.end);
        if self.ranges.is_empty() {
            return Ok(SourceStatus::Done);
        }
        let mut allowed = out.remaining() as u64;
        if let Some(rate) = self.rate {
            // The schedule runs on the job's injected clock.
            let now = self.clock.monotonic_ns() as i64;
            let from_us = self.schedule_from_us;
            let start =
                *self.start_ns.get_or_insert_with(|| schedule_start(now, self.clock.now_us(), from_us));
            if now < start {
                // Polled again within 10 ms: a manual clock may jump.
                let wait = Duration::from_nanos(start.abs_diff(now)).min(Duration::from_millis(10));
                return Ok(SourceStatus::Wait(wait));
            }
            let elapsed_ns = now.abs_diff(start);
            let (due, wait) = schedule(rate, elapsed_ns, self.emitted);
            let ready = due.saturating_sub(self.emitted);
            // Records go out in batches of at least RATE_BATCH_NS of the
            // schedule (or what is left): emitting the one or two records
            // due at each turn keeps the core busy without a pause, and the
            // core's other tasks (periodic watermarks, processing-time
            // timers) wait for glommio's preemption (100 ms).
            let left: u64 = self.ranges.iter().map(SplitRange::remaining).sum();
            let batch = rate_batch(rate, allowed, left);
            if ready < batch {
                let at_ns = ((self.emitted + batch - 1) as f64 * 1e9 / rate).ceil() as u64;
                let until = Duration::from_nanos(at_ns.saturating_sub(elapsed_ns));
                return Ok(SourceStatus::Wait(until.max(wait).max(Duration::from_micros(10))));
            }
            allowed = allowed.min(ready);
        }
        let several = self.ranges.len() > 1;
        let mut produced = 0;
        while produced < allowed && !self.ranges.is_empty() {
            self.current %= self.ranges.len();
            let range = &mut self.ranges[self.current];
            let chunk =
                if several { SPLIT_CHUNK_RECORDS.min(allowed - produced) } else { allowed - produced };
            let left = (range.end - range.next).div_ceil(range.stride);
            for _ in 0..chunk.min(left) {
                let record = (self.f)(range.next);
                if several {
                    out.collect_from_split(self.current, record);
                } else {
                    out.collect(record);
                }
                range.next = range.next.saturating_add(range.stride);
            }
            produced += chunk.min(left);
            if range.next >= range.end {
                self.ranges.remove(self.current);
            } else {
                self.current += 1;
            }
            if several {
                break;
            }
        }
        self.emitted += produced;
        if let (Some(rate), Some(start), true) = (self.rate, self.start_ns, produced > 0) {
            // The newest record's scheduled time, as wall-clock time: how
            // far behind its schedule the source is counts as latency
            // (no coordinated omission).
            let scheduled = start.saturating_add(((self.emitted - 1) as f64 * 1e9 / rate) as i64);
            let behind_us = (self.clock.monotonic_ns() as i64).saturating_sub(scheduled).max(0) / 1000;
            out.created_at(brisk_engine::clock::wall_us() - behind_us);
        }
        Ok(if self.ranges.is_empty() { SourceStatus::Done } else { SourceStatus::More })
    }

    fn progress(&self) -> Option<(u64, u64)> {
        let left: u64 = self.ranges.iter().map(SplitRange::remaining).sum();
        Some((self.total - left.min(self.total), self.total))
    }

    fn position(&self) -> Option<Vec<u8>> {
        let v: Vec<(u64, u64, u64)> =
            self.ranges.iter().filter(|r| r.next < r.end).map(|r| (self.splits, r.id, r.next)).collect();
        postcard::to_stdvec(&v).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_schedule_goes_out_in_batches_of_100_us() {
        // 4 M/s: 400 records per 100 µs; a slow schedule: one at a time.
        assert_eq!(rate_batch(4e6, 1024, u64::MAX), 400);
        assert_eq!(rate_batch(1000.0, 1024, u64::MAX), 1);
        // Never more than fit in the batch or are left, never none.
        assert_eq!(rate_batch(1e9, 1024, u64::MAX), 1024);
        assert_eq!(rate_batch(4e6, 1024, 7), 7);
        assert_eq!(rate_batch(4e6, 0, 0), 1);
    }

    #[test]
    fn the_schedule_starts_at_its_anchor_past_or_future() {
        // The monotonic clock reads 5 s while the wall clock reads 100 s.
        let (now_ns, now_us) = (5_000_000_000, 100_000_000);
        assert_eq!(schedule_start(now_ns, now_us, None), now_ns);
        // Anchored 2 s ago on the wall clock: 3 s on the monotonic one.
        assert_eq!(schedule_start(now_ns, now_us, Some(98_000_000)), 3_000_000_000);
        // Anchored 7 s ago: before the monotonic clock's origin.
        assert_eq!(schedule_start(now_ns, now_us, Some(93_000_000)), -2_000_000_000);
        // Anchored 250 ms ahead: the schedule starts then.
        assert_eq!(schedule_start(now_ns, now_us, Some(100_250_000)), 5_250_000_000);
    }

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
