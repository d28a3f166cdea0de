//! Timestamp assignment and watermark generation: per-event emission matches
//! Flink's bounded-out-of-orderness formula exactly; periodic emission and
//! idleness follow the injected processing-time clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use brisk::prelude::*;
use brisk::{
    Batch, MIN_WATERMARK, ManualClock, Sink, SinkContext, SinkError, SinkWriter, Source, SourceContext,
    SourceError, SourceOutput, SourceReader, SourceStatus, Timestamp,
};

mod common;
use common::seed;

/// Emits `(timestamp, watermark seen)` per record.
#[derive(Clone)]
struct SeenWatermark;

impl KeyedProcessFunction<u8, (u8, Timestamp), (Timestamp, Timestamp)> for SeenWatermark {
    fn process_element(
        &mut self,
        (_, ts): (u8, Timestamp),
        ctx: &mut Context<'_, u8>,
        out: &mut Collector<'_, (Timestamp, Timestamp)>,
    ) -> Result<(), UserError> {
        assert_eq!(ctx.timestamp(), Some(ts));
        out.collect((ts, ctx.current_watermark()));
        Ok(())
    }
}

#[test]
fn every_event_watermarks_trail_the_max_timestamp_by_the_bound() {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let input: Vec<(u8, Timestamp)> = (0..2_000).map(|i| (0, i * 10 + rng.i64(-500..500))).collect();
    let env = StreamEnv::new(JobConfig::with_cores(1));
    let out = env
        .from_collection(input.clone())
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_bounded_out_of_orderness(100)
                .with_timestamp_assigner(|r: &(u8, Timestamp), _| r.1)
                .every_event(),
        )
        .key_by(|r: &(u8, Timestamp)| r.0)
        .process(SeenWatermark)
        .collect();
    env.execute().unwrap();
    let got = out.take();
    let mut max = MIN_WATERMARK;
    let expected: Vec<(Timestamp, Timestamp)> = input
        .iter()
        .map(|&(_, ts)| {
            let seen = if max == MIN_WATERMARK { MIN_WATERMARK } else { max - 100 - 1 };
            max = max.max(ts);
            (ts, seen)
        })
        .collect();
    assert_eq!(got, expected, "seed {seed}");
}

/// Records every watermark its instance sees into a shared maximum.
#[derive(Clone)]
struct WatermarkProbe(Arc<AtomicI64>);

impl<T: 'static> Sink<T> for WatermarkProbe {
    type Writer = WatermarkProbe;
    fn name(&self) -> String {
        "probe".into()
    }
    fn create_writer(&self, _ctx: &SinkContext) -> Result<WatermarkProbe, SinkError> {
        Ok(self.clone())
    }
}

impl<T: 'static> SinkWriter<T> for WatermarkProbe {
    fn write(&mut self, batch: &mut Batch<T>) -> Result<(), SinkError> {
        batch.clear();
        Ok(())
    }
    fn on_watermark(&mut self, watermark: Timestamp) {
        if watermark < i64::MAX {
            self.0.fetch_max(watermark, Ordering::AcqRel);
        }
    }
    async fn flush(&mut self, _end: bool) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Split 0 emits `records` timestamps 1..=records, checks that no watermark
/// went out yet, then moves the manual clock forward `step_ms` at a time until
/// the probe sees `expect`, and records how far it had moved by then. Other
/// splits emit nothing and stay open until then.
#[derive(Clone)]
struct ClockDriver {
    clock: Arc<ManualClock>,
    probe: Arc<AtomicI64>,
    step_ms: i64,
    expect: Timestamp,
    records: i64,
    done: Arc<AtomicBool>,
    premature: Arc<AtomicBool>,
    advanced_ms: Arc<AtomicI64>,
}

struct ClockDriverReader {
    d: ClockDriver,
    split: usize,
    sent: i64,
    advanced: i64,
}

impl Source<(u8, Timestamp)> for ClockDriver {
    type Reader = ClockDriverReader;
    fn name(&self) -> String {
        "clock_driver".into()
    }
    fn is_bounded(&self) -> bool {
        true
    }
    fn create_reader(&self, ctx: &SourceContext) -> Result<ClockDriverReader, SourceError> {
        Ok(ClockDriverReader { d: self.clone(), split: ctx.split(), sent: 0, advanced: 0 })
    }
}

impl SourceReader<(u8, Timestamp)> for ClockDriverReader {
    async fn next_batch(
        &mut self,
        out: &mut SourceOutput<'_, (u8, Timestamp)>,
    ) -> Result<SourceStatus, SourceError> {
        let wait = Ok(SourceStatus::Wait(Duration::from_micros(200)));
        if self.split != 0 {
            return if self.d.done.load(Ordering::Acquire) { Ok(SourceStatus::Done) } else { wait };
        }
        if self.sent < self.d.records {
            self.sent += 1;
            out.collect((0, self.sent));
            return Ok(SourceStatus::More);
        }
        if self.advanced == 0 && self.d.probe.load(Ordering::Acquire) != MIN_WATERMARK {
            // Nothing may go out while the clock stands still.
            self.d.premature.store(true, Ordering::Release);
        }
        if self.d.probe.load(Ordering::Acquire) >= self.d.expect {
            self.d.advanced_ms.store(self.advanced, Ordering::Release);
            self.d.done.store(true, Ordering::Release);
            return Ok(SourceStatus::Done);
        }
        self.d.clock.advance_ms(self.d.step_ms);
        self.advanced += self.d.step_ms;
        Ok(SourceStatus::Wait(Duration::from_millis(1)))
    }
}

/// Returns the watermark seen, whether one went out prematurely, and how far
/// the clock had moved when the expected watermark arrived.
fn drive(
    cores: usize,
    strategy: WatermarkStrategy<(u8, Timestamp)>,
    expect: Timestamp,
) -> (Timestamp, bool, i64) {
    let clock = ManualClock::new(1_000_000);
    let probe = Arc::new(AtomicI64::new(MIN_WATERMARK));
    let premature = Arc::new(AtomicBool::new(false));
    let advanced_ms = Arc::new(AtomicI64::new(0));
    let driver = ClockDriver {
        clock: clock.clone(),
        probe: probe.clone(),
        step_ms: 50,
        expect,
        records: 10,
        done: Arc::new(AtomicBool::new(false)),
        premature: premature.clone(),
        advanced_ms: advanced_ms.clone(),
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let config = JobConfig { clock, ..JobConfig::with_cores(cores) };
        let env = StreamEnv::new(config);
        env.from_source(driver)
            .assign_timestamps_and_watermarks(strategy)
            .key_by(|r: &(u8, Timestamp)| r.0)
            .reduce(|a, _| a)
            .sink_to(WatermarkProbe(probe.clone()));
        let _ = tx.send(env.execute().map(|_| probe.load(Ordering::Acquire)));
    });
    // A hang guard: the source ends only once the expected watermark arrived.
    let seen =
        rx.recv_timeout(Duration::from_secs(60)).expect("the expected watermark never arrived").unwrap();
    (seen, premature.load(Ordering::Acquire), advanced_ms.load(Ordering::Acquire))
}

fn by_timestamp() -> WatermarkStrategy<(u8, Timestamp)> {
    WatermarkStrategy::for_bounded_out_of_orderness(3).with_timestamp_assigner(|r: &(u8, Timestamp), _| r.1)
}

#[test]
fn periodic_watermarks_follow_the_injected_clock() {
    // Timestamps 1..=10, bound 3: the periodic watermark is 10 - 3 - 1 = 6,
    // due once 200 ms of (manual) processing time have passed.
    let (seen, premature, advanced) = drive(1, by_timestamp(), 6);
    assert!(!premature, "a watermark went out before the clock moved");
    assert_eq!(seen, 6);
    assert!(advanced >= 200, "watermark after {advanced} ms, before the 200 ms interval");
}

#[test]
fn an_idle_split_stops_holding_back_the_watermark() {
    // Split 1 never emits, so it holds the combined watermark at MIN until it
    // is idle: its first tick (200 ms) starts the inactivity period, a tick
    // more than 1 000 ms later declares it idle. Only then does split 0's
    // watermark pass.
    let (seen, premature, advanced) = drive(2, by_timestamp().with_idleness(1_000), 6);
    assert!(!premature, "a watermark went out before the clock moved");
    assert_eq!(seen, 6);
    assert!(
        advanced > 1_200,
        "the silent split let the watermark pass after {advanced} ms, before it was idle"
    );
}
