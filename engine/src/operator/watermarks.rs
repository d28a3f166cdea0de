//! Timestamp assignment and watermark generation (Flink's
//! `WatermarkStrategy` and `TimestampsAndWatermarksOperator`).
//!
//! A [`WatermarkStrategy`] says how to read each record's event time
//! (the timestamp assigner) and how to derive watermarks from it (a
//! [`WatermarkGenerator`]). `assign_timestamps_and_watermarks` runs it on every
//! core: each record gets its timestamp; the generator sees every event, and is
//! asked for a watermark every `auto_watermark_interval_ms` of processing time
//! (default 200 ms, from the injected clock), or after every event
//! ([`WatermarkStrategy::every_event`]). Only increasing watermarks are
//! forwarded. As in Flink, watermarks from upstream are dropped, except the
//! final `i64::MAX`, which signals the end of input. With
//! [`WatermarkStrategy::with_idleness`], idleness is checked at each periodic
//! tick exactly as Flink's `IdlenessTimer` does: a tick that sees new events
//! resets it; the first tick without new events starts the inactivity period;
//! a later tick more than the timeout after that start marks the output idle
//! (and skips the generator's periodic emission) until the next record.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::batch::{Batch, Control, MAX_WATERMARK, MIN_WATERMARK, StreamStatus, Timestamp};
use crate::error::{JobError, OperatorInfo};
use crate::runtime::core::{Core, Push};
use crate::runtime::timers::Ticker;

/// Default processing-time interval between periodic watermarks.
pub const AUTO_WATERMARK_INTERVAL_MS_DEFAULT: i64 = 200;

/// Where a generator puts the watermarks it decides on.
#[derive(Debug, Default)]
pub struct WatermarkOutput {
    watermark: Option<Timestamp>,
}

impl WatermarkOutput {
    /// Emits a watermark (ignored unless it increases the current one).
    pub fn emit_watermark(&mut self, watermark: Timestamp) {
        self.watermark = Some(self.watermark.map_or(watermark, |w| w.max(watermark)));
    }
}

/// Decides watermarks from the events it sees (Flink's `WatermarkGenerator`).
/// One instance per core.
pub trait WatermarkGenerator<T>: 'static {
    /// Sees every event with its assigned timestamp.
    fn on_event(&mut self, event: &T, timestamp: Timestamp, output: &mut WatermarkOutput);
    /// Called periodically (or after every event); may emit a watermark.
    fn on_periodic_emit(&mut self, output: &mut WatermarkOutput);
}

/// Watermarks trailing the largest timestamp seen by a fixed bound:
/// `max_timestamp - bound - 1`, `i64::MIN` before any event.
#[derive(Debug, Clone)]
pub struct BoundedOutOfOrderness {
    max_timestamp: Timestamp,
    bound_ms: i64,
}

impl BoundedOutOfOrderness {
    /// Tolerates events up to `bound_ms` behind the largest timestamp seen.
    pub fn new(bound_ms: i64) -> Self {
        // Flink starts at MIN + bound + 1 so the first watermark is MIN.
        Self { max_timestamp: MIN_WATERMARK.saturating_add(bound_ms).saturating_add(1), bound_ms }
    }
}

impl<T> WatermarkGenerator<T> for BoundedOutOfOrderness {
    fn on_event(&mut self, _event: &T, timestamp: Timestamp, _output: &mut WatermarkOutput) {
        self.max_timestamp = self.max_timestamp.max(timestamp);
    }
    fn on_periodic_emit(&mut self, output: &mut WatermarkOutput) {
        output.emit_watermark(self.max_timestamp - self.bound_ms - 1);
    }
}

type Assigner<T> = Arc<dyn Fn(&T, Option<Timestamp>) -> Timestamp + Send + Sync>;
type GeneratorFactory<T> = Arc<dyn Fn() -> Box<dyn WatermarkGenerator<T>> + Send + Sync>;

/// How to read event time from records and derive watermarks from it.
pub struct WatermarkStrategy<T> {
    generator: GeneratorFactory<T>,
    assigner: Option<Assigner<T>>,
    idleness_ms: Option<i64>,
    every_event: bool,
}

impl<T> Clone for WatermarkStrategy<T> {
    fn clone(&self) -> Self {
        Self {
            generator: self.generator.clone(),
            assigner: self.assigner.clone(),
            idleness_ms: self.idleness_ms,
            every_event: self.every_event,
        }
    }
}

impl<T: 'static> WatermarkStrategy<T> {
    /// Watermarks `bound_ms` behind the largest timestamp seen (minus 1 ms).
    pub fn for_bounded_out_of_orderness(bound_ms: i64) -> Self {
        Self::for_generator(move || BoundedOutOfOrderness::new(bound_ms))
    }

    /// Timestamps never decrease: the watermark is the largest timestamp - 1.
    pub fn for_monotonous_timestamps() -> Self {
        Self::for_bounded_out_of_orderness(0)
    }

    /// A custom generator, created once per core.
    pub fn for_generator<G: WatermarkGenerator<T>>(make: impl Fn() -> G + Send + Sync + 'static) -> Self {
        Self {
            generator: Arc::new(move || Box::new(make()) as Box<dyn WatermarkGenerator<T>>),
            assigner: None,
            idleness_ms: None,
            every_event: false,
        }
    }

    /// Reads each record's timestamp: `assign(record, timestamp_it_had)`.
    /// Without an assigner, records must already carry timestamps.
    pub fn with_timestamp_assigner(
        mut self,
        assign: impl Fn(&T, Option<Timestamp>) -> Timestamp + Send + Sync + 'static,
    ) -> Self {
        self.assigner = Some(Arc::new(assign));
        self
    }

    /// Marks a core's output idle after `ms` of processing time without records.
    pub fn with_idleness(mut self, ms: i64) -> Self {
        self.idleness_ms = Some(ms);
        self
    }

    /// Asks the generator for a watermark after every event instead of
    /// periodically (deterministic; used to compare with Flink record for record).
    pub fn every_event(mut self) -> Self {
        self.every_event = true;
        self
    }
}

impl<T> WatermarkStrategy<T> {
    pub(crate) fn make_generator(&self) -> Box<dyn WatermarkGenerator<T>> {
        (self.generator)()
    }
}

/// One split's watermark state inside a source.
struct SplitState<T> {
    generator: Box<dyn WatermarkGenerator<T>>,
    watermark: Timestamp,
    events: u64,
    events_at_last_check: u64,
    inactive_since_ms: Option<i64>,
    idle: bool,
}

/// Per-split watermark generation inside a source, combined before emission
/// (Flink's `SourceOperator` with a `WatermarkOutputMultiplexer`): each split
/// (a file, a partition) has its own generator and idleness; the source emits
/// the minimum over its active splits, only when it increases. Owned by the
/// source task of one core.
pub(crate) struct SplitWatermarks<T> {
    strategy: WatermarkStrategy<T>,
    splits: Vec<SplitState<T>>,
    interval_ms: i64,
    next_periodic_ms: i64,
    emitted: Timestamp,
    all_idle: bool,
    batch_mode: bool,
}

impl<T: 'static> SplitWatermarks<T> {
    pub fn new(strategy: WatermarkStrategy<T>, core: &Core) -> Self {
        let interval_ms = core.config.auto_watermark_interval_ms;
        Self {
            strategy,
            splits: Vec::new(),
            interval_ms,
            next_periodic_ms: core.now_ms().saturating_add(interval_ms),
            emitted: MIN_WATERMARK,
            all_idle: false,
            batch_mode: core.batch_mode(),
        }
    }

    fn split(&mut self, id: usize) -> &mut SplitState<T> {
        while self.splits.len() <= id {
            let generator = self.strategy.make_generator();
            self.splits.push(SplitState {
                generator,
                watermark: MIN_WATERMARK,
                events: 0,
                events_at_last_check: 0,
                inactive_since_ms: None,
                idle: false,
            });
        }
        &mut self.splits[id]
    }

    /// Creates split `id`'s state before its first record.
    pub fn declare(&mut self, id: usize) {
        self.split(id);
    }

    /// The timestamp of a record of split `id` (assigner, or the timestamp it
    /// came with); feeds the split's generator.
    pub fn on_record(
        &mut self,
        id: usize,
        record: &T,
        carried: Option<Timestamp>,
    ) -> Result<Timestamp, String> {
        let ts = match &self.strategy.assigner {
            Some(assign) => assign(record, carried),
            None => carried
                .ok_or("record has no timestamp and the watermark strategy has no timestamp assigner")?,
        };
        let every_event = self.strategy.every_event;
        let split = self.split(id);
        split.events += 1;
        split.idle = false;
        let mut output = WatermarkOutput::default();
        split.generator.on_event(record, ts, &mut output);
        if every_event {
            split.generator.on_periodic_emit(&mut output);
        }
        if let Some(w) = output.watermark {
            split.watermark = split.watermark.max(w);
        }
        Ok(ts)
    }

    /// The combined watermark if it increased (and the status change, if any).
    pub fn combined(&mut self) -> (Option<Timestamp>, Option<StreamStatus>) {
        if self.batch_mode {
            return (None, None);
        }
        let active = self.splits.iter().filter(|s| !s.idle);
        let min = active.map(|s| s.watermark).min();
        let mut status = None;
        match min {
            None if !self.splits.is_empty() => {
                if !self.all_idle {
                    self.all_idle = true;
                    status = Some(StreamStatus::Idle);
                }
                return (None, status);
            }
            _ if self.all_idle => {
                self.all_idle = false;
                status = Some(StreamStatus::Active);
            }
            _ => {}
        }
        match min.filter(|&m| m > self.emitted) {
            Some(m) => {
                self.emitted = m;
                (Some(m), status)
            }
            None => (None, status),
        }
    }

    /// Whether per-event watermarks are on.
    pub fn every_event(&self) -> bool {
        self.strategy.every_event
    }

    /// Periodic emission and idleness checks, due every interval of
    /// processing time (Flink's `IdlenessTimer` per split).
    pub fn on_periodic(&mut self, now_ms: i64) {
        if self.interval_ms <= 0 || now_ms < self.next_periodic_ms {
            return;
        }
        self.next_periodic_ms = now_ms.saturating_add(self.interval_ms);
        let idleness = self.strategy.idleness_ms;
        for split in &mut self.splits {
            if let Some(timeout) = idleness {
                let idle = if split.events != split.events_at_last_check {
                    split.events_at_last_check = split.events;
                    split.inactive_since_ms = None;
                    false
                } else {
                    match split.inactive_since_ms {
                        None => {
                            split.inactive_since_ms = Some(now_ms);
                            false
                        }
                        Some(since) => now_ms - since > timeout,
                    }
                };
                if idle {
                    split.idle = true;
                    continue;
                }
            }
            let mut output = WatermarkOutput::default();
            split.generator.on_periodic_emit(&mut output);
            if let Some(w) = output.watermark {
                split.watermark = split.watermark.max(w);
            }
        }
    }
}

struct Inner<T> {
    generator: Box<dyn WatermarkGenerator<T>>,
    assigner: Option<Assigner<T>>,
    every_event: bool,
    idleness_ms: Option<i64>,
    interval_ms: i64,
    next_periodic_ms: i64,
    events: u64,
    events_at_last_check: u64,
    inactive_since_ms: Option<i64>,
    idle: bool,
    emitted: Timestamp,
    ended: bool,
    /// Batch mode: only the final watermark goes out (Flink's "perfect watermark").
    batch_mode: bool,
    out: Batch<T>,
    next: Box<dyn Push<T>>,
    info: OperatorInfo,
}

impl<T> Inner<T> {
    fn forward_watermark(&mut self, output: WatermarkOutput) -> Result<(), JobError> {
        if self.batch_mode {
            return Ok(());
        }
        if let Some(w) = output.watermark.filter(|&w| w > self.emitted) {
            self.emitted = w;
            self.next.control(Control::Watermark(w))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), JobError> {
        if self.out.is_empty() { Ok(()) } else { self.next.push(&mut self.out) }
    }
}

/// The timestamp-and-watermark operator on one core: a `Push` for the chain
/// and a `Ticker` for periodic emission and idleness.
pub(crate) struct TimestampsAndWatermarks<T>(RefCell<Inner<T>>);

impl<T: 'static> TimestampsAndWatermarks<T> {
    pub fn new(
        core: &Core,
        strategy: &WatermarkStrategy<T>,
        next: Box<dyn Push<T>>,
        info: OperatorInfo,
    ) -> Rc<Self> {
        let now = core.now_ms();
        let interval_ms = core.config.auto_watermark_interval_ms;
        Rc::new(Self(RefCell::new(Inner {
            generator: (strategy.generator)(),
            assigner: strategy.assigner.clone(),
            every_event: strategy.every_event,
            idleness_ms: strategy.idleness_ms,
            interval_ms,
            next_periodic_ms: now.saturating_add(interval_ms),
            events: 0,
            events_at_last_check: 0,
            inactive_since_ms: None,
            idle: false,
            emitted: MIN_WATERMARK,
            ended: false,
            batch_mode: core.batch_mode(),
            out: Batch::default(),
            next,
            info,
        })))
    }
}

impl<T> Inner<T> {
    /// Flink's `IdlenessTimer.checkIfIdle`, at a periodic tick.
    fn check_if_idle(&mut self, now_ms: i64, timeout_ms: i64) -> bool {
        if self.events != self.events_at_last_check {
            self.events_at_last_check = self.events;
            self.inactive_since_ms = None;
            return false;
        }
        match self.inactive_since_ms {
            None => {
                self.inactive_since_ms = Some(now_ms);
                false
            }
            Some(since) => now_ms - since > timeout_ms,
        }
    }
}

impl<T: 'static> Ticker for TimestampsAndWatermarks<T> {
    fn next_due_ms(&self) -> Option<i64> {
        let s = self.0.borrow();
        (!s.ended && !s.batch_mode && s.interval_ms > 0).then_some(s.next_periodic_ms)
    }

    fn fire(&self, now_ms: i64) -> Result<(), JobError> {
        let mut guard = self.0.borrow_mut();
        let s = &mut *guard;
        if now_ms < s.next_periodic_ms {
            return Ok(());
        }
        s.next_periodic_ms = now_ms.saturating_add(s.interval_ms);
        if let Some(timeout) = s.idleness_ms
            && s.check_if_idle(now_ms, timeout)
        {
            if !s.idle {
                s.idle = true;
                s.next.control(Control::Status(StreamStatus::Idle))?;
            }
            // An idle output emits no watermarks (Flink's WatermarksWithIdleness).
            return Ok(());
        }
        let mut output = WatermarkOutput::default();
        let info = s.info.clone();
        info.guard(|| s.generator.on_periodic_emit(&mut output))?;
        s.forward_watermark(output)
    }
}

/// The chain's handle on the operator.
pub(crate) struct TimestampsAndWatermarksHandle<T> {
    pub op: Rc<TimestampsAndWatermarks<T>>,
}

impl<T: 'static> Push<T> for TimestampsAndWatermarksHandle<T> {
    fn push(&mut self, batch: &mut Batch<T>) -> Result<(), JobError> {
        let mut guard = self.op.0.borrow_mut();
        let s = &mut *guard;
        if batch.is_empty() {
            return Ok(());
        }
        s.events += batch.len() as u64;
        if s.idle {
            s.idle = false;
            s.next.control(Control::Status(StreamStatus::Active))?;
        }
        let had_timestamps = batch.has_timestamps();
        let info = s.info.clone();
        // One panic guard for the whole batch: user code (assigner,
        // generator) runs inside it, and a panic names this operator.
        info.guard(|| -> Result<(), JobError> {
            for (record, previous) in batch.drain() {
                let ts = match &s.assigner {
                    Some(assign) => assign(&record, previous),
                    None => previous.ok_or_else(|| {
                        info.user_error(
                            "record has no timestamp and the watermark strategy has no timestamp assigner",
                        )
                    })?,
                };
                let mut output = WatermarkOutput::default();
                s.generator.on_event(&record, ts, &mut output);
                if s.every_event {
                    s.generator.on_periodic_emit(&mut output);
                }
                s.out.push_with(record, Some(ts));
                if !s.batch_mode && output.watermark.is_some_and(|w| w > s.emitted) {
                    // Records before the watermark go first.
                    s.flush()?;
                    s.forward_watermark(output)?;
                }
            }
            Ok(())
        })??;
        debug_assert!(had_timestamps || batch.timestamps.is_empty());
        s.flush()
    }

    fn control(&mut self, control: Control) -> Result<(), JobError> {
        let mut s = self.op.0.borrow_mut();
        match control {
            // Upstream watermarks are replaced by this operator's, except
            // the final one, which marks the end of input.
            Control::Watermark(MAX_WATERMARK) => {
                if s.emitted < MAX_WATERMARK {
                    s.emitted = MAX_WATERMARK;
                    s.next.control(control)?;
                }
                Ok(())
            }
            Control::Watermark(_) | Control::Status(_) => Ok(()),
            Control::Barrier(_) | Control::Latency(_) => s.next.control(control),
            Control::EndOfInput => {
                s.ended = true;
                s.next.control(control)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_out_of_orderness_trails_the_max_by_bound_plus_one() {
        let mut g = BoundedOutOfOrderness::new(100);
        let mut out = WatermarkOutput::default();
        WatermarkGenerator::<()>::on_periodic_emit(&mut g, &mut out);
        assert_eq!(out.watermark, Some(MIN_WATERMARK), "before any event");
        for ts in [1_000, 900, 1_500, 1_200] {
            g.on_event(&(), ts, &mut out);
        }
        let mut out = WatermarkOutput::default();
        WatermarkGenerator::<()>::on_periodic_emit(&mut g, &mut out);
        assert_eq!(out.watermark, Some(1_399));
    }

    #[test]
    fn output_keeps_the_largest_watermark() {
        let mut out = WatermarkOutput::default();
        out.emit_watermark(5);
        out.emit_watermark(3);
        assert_eq!(out.watermark, Some(5));
    }
}
