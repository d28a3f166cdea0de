//! Timers in keyed process functions: event-time timers fire exactly when
//! the watermark reaches them (checked record for record against a naive
//! simulation), deduplicated per key and timestamp, deletable; processing-time
//! timers follow the injected clock; the end of input fires what is due.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use brisk::prelude::*;
use brisk::{
    Batch, MAX_WATERMARK, MIN_WATERMARK, ManualClock, Sink, SinkContext, SinkError, SinkWriter, Source,
    SourceContext, SourceError, SourceOutput, SourceReader, SourceStatus, Timestamp,
};

mod common;
use common::seed;

const BOUND: i64 = 20;
const DELAY: i64 = 50;

/// Fired timers: `(key, timer timestamp, watermark at firing, output timestamp)`.
type Fired = (u32, Timestamp, Timestamp, Option<Timestamp>);

/// Per element: a timer at `ts + DELAY`; with `deletes`, every element whose
/// index is a multiple of 7 deletes the timer its key's previous element
/// registered.
#[derive(Clone, Default)]
struct Delayed {
    previous: ValueState<Timestamp>,
    deletes: bool,
}

impl KeyedProcessFunction<u32, (u32, Timestamp, u64), Fired> for Delayed {
    fn open(&mut self, ctx: &mut OpenContext<'_, u32>) -> Result<(), UserError> {
        self.previous = ctx.value_state("previous")?;
        Ok(())
    }

    fn process_element(
        &mut self,
        (_, ts, index): (u32, Timestamp, u64),
        ctx: &mut Context<'_, u32>,
        _out: &mut Collector<'_, Fired>,
    ) -> Result<(), UserError> {
        if self.deletes
            && index % 7 == 0
            && let Some(p) = ctx.value(&self.previous).get().copied()
        {
            ctx.delete_event_time_timer(p + DELAY);
        }
        ctx.register_event_time_timer(ts + DELAY);
        ctx.value(&self.previous).set(ts);
        Ok(())
    }

    fn on_timer(
        &mut self,
        timestamp: Timestamp,
        ctx: &mut Context<'_, u32>,
        out: &mut Collector<'_, Fired>,
    ) -> Result<(), UserError> {
        assert_eq!(ctx.time_domain(), Some(TimeDomain::EventTime));
        assert!(ctx.current_watermark() >= timestamp, "fired before the watermark reached it");
        out.collect((*ctx.current_key(), timestamp, ctx.current_watermark(), ctx.timestamp()));
        Ok(())
    }
}

/// The naive simulation: element k, then the watermark after it, which fires
/// every due timer in (timestamp, registration) order; the final watermark
/// fires the rest.
fn simulate(input: &[(u32, Timestamp, u64)]) -> Vec<Fired> {
    let mut timers: Vec<(Timestamp, u64, u32)> = Vec::new(); // (ts, seq, key)
    let mut previous: BTreeMap<u32, Timestamp> = BTreeMap::new();
    let (mut seq, mut max_ts, mut wm) = (0u64, MIN_WATERMARK, MIN_WATERMARK);
    let mut fired = Vec::new();
    let fire = |timers: &mut Vec<(Timestamp, u64, u32)>, wm: Timestamp, fired: &mut Vec<Fired>| {
        timers.sort();
        while timers.first().is_some_and(|t| t.0 <= wm) {
            let (ts, _, key) = timers.remove(0);
            fired.push((key, ts, wm, Some(ts)));
        }
    };
    for &(key, ts, index) in input {
        if index % 7 == 0
            && let Some(p) = previous.get(&key)
        {
            timers.retain(|t| !(t.2 == key && t.0 == p + DELAY));
        }
        if !timers.iter().any(|t| t.2 == key && t.0 == ts + DELAY) {
            timers.push((ts + DELAY, seq, key));
            seq += 1;
        }
        previous.insert(key, ts);
        max_ts = max_ts.max(ts);
        let next = max_ts - BOUND - 1;
        if next > wm {
            wm = next;
            fire(&mut timers, wm, &mut fired);
        }
    }
    fire(&mut timers, MAX_WATERMARK, &mut fired);
    fired
}

fn run(cores: usize, input: Vec<(u32, Timestamp, u64)>, deletes: bool) -> Vec<Fired> {
    let env = StreamEnv::new(JobConfig::with_cores(cores));
    let out = env
        .from_collection(input)
        .set_parallelism(1)
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_bounded_out_of_orderness(BOUND)
                .with_timestamp_assigner(|r: &(u32, Timestamp, u64), _| r.1)
                .every_event(),
        )
        .key_by(|r: &(u32, Timestamp, u64)| r.0)
        .process(Delayed { deletes, ..Delayed::default() })
        .collect();
    env.execute().unwrap();
    out.take()
}

#[test]
fn event_time_timers_fire_exactly_when_the_watermark_reaches_them() {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    // Out-of-order timestamps, repeated per key (so registrations dedup).
    let input: Vec<(u32, Timestamp, u64)> =
        (0..3_000u64).map(|i| (rng.u32(0..40), i as i64 * 3 + rng.i64(-15..15), i)).collect();
    let expected = simulate(&input);
    assert!(expected.iter().any(|f| f.2 < MAX_WATERMARK), "some timers fire before the end");
    // One core: one channel, so the interleaving is exactly the simulation's.
    assert_eq!(run(1, input.clone(), true), expected, "seed {seed}");
    // More cores: the source has one split, so each keyed operator sees its
    // keys' elements and the watermarks in exactly the source's order (cores
    // without a split take no part in watermark combining): the firings per
    // key equal the simulation's, deletions included.
    let per_key = |v: Vec<Fired>| {
        let mut m: BTreeMap<u32, Vec<(Timestamp, Timestamp)>> = BTreeMap::new();
        for (k, ts, wm, out_ts) in v {
            assert_eq!(out_ts, Some(ts), "timer output carries the timer's timestamp");
            m.entry(k).or_default().push((ts, wm));
        }
        m
    };
    for cores in [2, 3] {
        assert_eq!(
            per_key(run(cores, input.clone(), true)),
            per_key(expected.clone()),
            "{cores} cores, seed {seed}"
        );
    }
    // Without deletions: every registered timer (once per key and timestamp)
    // fires exactly once, in timestamp order per key.
    let mut registered: BTreeMap<u32, std::collections::BTreeSet<Timestamp>> = BTreeMap::new();
    for &(k, ts, _) in &input {
        registered.entry(k).or_default().insert(ts + DELAY);
    }
    let mut fired: BTreeMap<u32, Vec<Timestamp>> = BTreeMap::new();
    for (k, ts, _, out_ts) in run(2, input, false) {
        assert_eq!(out_ts, Some(ts), "timer output carries the timer's timestamp");
        fired.entry(k).or_default().push(ts);
    }
    let expected: BTreeMap<u32, Vec<Timestamp>> =
        registered.into_iter().map(|(k, set)| (k, set.into_iter().collect())).collect();
    assert_eq!(fired, expected, "seed {seed}");
}

/// Registers a processing-time timer 100 ms ahead per element (deduplicated
/// per key: the clock stands still while elements arrive), and counts the
/// elements it processed.
#[derive(Clone)]
struct Alarm(Arc<AtomicU64>);

impl KeyedProcessFunction<u32, u32, (u32, i64, bool)> for Alarm {
    fn process_element(
        &mut self,
        _v: u32,
        ctx: &mut Context<'_, u32>,
        _out: &mut Collector<'_, (u32, i64, bool)>,
    ) -> Result<(), UserError> {
        let at = ctx.current_processing_time() + 100;
        ctx.register_processing_time_timer(at);
        self.0.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    fn on_timer(
        &mut self,
        ts: Timestamp,
        ctx: &mut Context<'_, u32>,
        out: &mut Collector<'_, (u32, i64, bool)>,
    ) -> Result<(), UserError> {
        let processing = ctx.time_domain() == Some(TimeDomain::ProcessingTime);
        assert!(ctx.current_processing_time() >= ts);
        out.collect((*ctx.current_key(), ts, processing));
        Ok(())
    }
}

/// Emits `(value, timestamp the record carried)`.
#[derive(Clone)]
struct CarriedTimestamp;

impl KeyedProcessFunction<u32, (u32, i64, bool), (u32, i64, bool, Option<Timestamp>)> for CarriedTimestamp {
    fn process_element(
        &mut self,
        v: (u32, i64, bool),
        ctx: &mut Context<'_, u32>,
        out: &mut Collector<'_, (u32, i64, bool, Option<Timestamp>)>,
    ) -> Result<(), UserError> {
        out.collect((v.0, v.1, v.2, ctx.timestamp()));
        Ok(())
    }
}

/// What the counting sink delivers: `(key, timer ts, processing domain, carried timestamp)`.
type Carried = (u32, i64, bool, Option<Timestamp>);

/// Counts what reaches it.
#[derive(Clone)]
struct Counting(Arc<AtomicU64>, mpsc::SyncSender<Vec<Carried>>);

struct CountingWriter(
    Arc<AtomicU64>,
    mpsc::SyncSender<Vec<Carried>>,
    Vec<(u32, i64, bool, Option<Timestamp>)>,
);

impl Sink<(u32, i64, bool, Option<Timestamp>)> for Counting {
    type Writer = CountingWriter;
    fn name(&self) -> String {
        "counting".into()
    }
    fn create_writer(&self, _ctx: &SinkContext) -> Result<CountingWriter, SinkError> {
        Ok(CountingWriter(self.0.clone(), self.1.clone(), Vec::new()))
    }
}

impl SinkWriter<(u32, i64, bool, Option<Timestamp>)> for CountingWriter {
    fn write(&mut self, batch: &mut Batch<(u32, i64, bool, Option<Timestamp>)>) -> Result<(), SinkError> {
        self.0.fetch_add(batch.len() as u64, Ordering::AcqRel);
        self.2.append(&mut batch.records);
        batch.clear();
        Ok(())
    }
    async fn flush(&mut self, end: bool) -> Result<(), SinkError> {
        if end {
            let _ = self.1.send(std::mem::take(&mut self.2));
        }
        Ok(())
    }
}

/// Sends 10 records (keys 0..5), waits until all were processed, checks
/// nothing fired, moves the manual clock 150 ms, and waits until the 5
/// timers' outputs arrived.
#[derive(Clone)]
struct ClockStep {
    clock: Arc<ManualClock>,
    processed: Arc<AtomicU64>,
    seen: Arc<AtomicU64>,
    premature: Arc<AtomicBool>,
}

struct ClockStepReader(ClockStep, u32, bool);

impl Source<u32> for ClockStep {
    type Reader = ClockStepReader;
    fn name(&self) -> String {
        "clock_step".into()
    }
    fn is_bounded(&self) -> bool {
        true
    }
    fn create_reader(&self, _ctx: &SourceContext) -> Result<ClockStepReader, SourceError> {
        Ok(ClockStepReader(self.clone(), 0, false))
    }
}

impl SourceReader<u32> for ClockStepReader {
    async fn next_batch(&mut self, out: &mut SourceOutput<'_, u32>) -> Result<SourceStatus, SourceError> {
        if self.1 < 10 {
            out.collect(self.1 % 5);
            self.1 += 1;
            return Ok(SourceStatus::More);
        }
        if !self.2 {
            if self.0.processed.load(Ordering::Acquire) < 10 {
                // Records are still on their way to the timers' operator.
                return Ok(SourceStatus::Wait(Duration::from_micros(200)));
            }
            if self.0.seen.load(Ordering::Acquire) != 0 {
                self.0.premature.store(true, Ordering::Release);
            }
            self.0.clock.advance_ms(150);
            self.2 = true;
        }
        if self.0.seen.load(Ordering::Acquire) >= 5 {
            return Ok(SourceStatus::Done);
        }
        Ok(SourceStatus::Wait(Duration::from_micros(200)))
    }
}

#[test]
fn processing_time_timers_follow_the_injected_clock() {
    let clock = ManualClock::new(5_000_000);
    let seen = Arc::new(AtomicU64::new(0));
    let premature = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::sync_channel(4);
    let (done_tx, done_rx) = mpsc::channel();
    let processed = Arc::new(AtomicU64::new(0));
    let step = ClockStep {
        clock: clock.clone(),
        processed: processed.clone(),
        seen: seen.clone(),
        premature: premature.clone(),
    };
    std::thread::spawn(move || {
        let env = StreamEnv::new(JobConfig { clock, ..JobConfig::with_cores(2) });
        env.from_source(step)
            .set_parallelism(1)
            .key_by(|k: &u32| *k)
            .process(Alarm(processed))
            .key_by(|r: &(u32, i64, bool)| r.0)
            .process(CarriedTimestamp)
            .sink_to(Counting(seen, tx));
        let _ = done_tx.send(env.execute().map(|_| ()));
    });
    // A hang guard: the source ends only once the timers fired.
    done_rx.recv_timeout(Duration::from_secs(60)).expect("processing-time timers never fired").unwrap();
    assert!(!premature.load(Ordering::Acquire), "a timer fired before the clock reached it");
    let mut fired: Vec<_> = rx.try_iter().flatten().collect();
    fired.sort();
    let expected: Vec<_> = (0..5).map(|k| (k, 5_000_100, true, None)).collect();
    assert_eq!(fired, expected, "one timer per key, processing-time domain, output without timestamp");
}

/// Registers an event-time timer at the element's timestamp and a
/// processing-time timer an hour ahead.
#[derive(Clone)]
struct Both;

impl KeyedProcessFunction<u32, (u32, Timestamp), (u32, bool)> for Both {
    fn process_element(
        &mut self,
        v: (u32, Timestamp),
        ctx: &mut Context<'_, u32>,
        _out: &mut Collector<'_, (u32, bool)>,
    ) -> Result<(), UserError> {
        ctx.register_event_time_timer(v.1);
        let later = ctx.current_processing_time() + 3_600_000;
        ctx.register_processing_time_timer(later);
        Ok(())
    }
    fn on_timer(
        &mut self,
        _ts: Timestamp,
        ctx: &mut Context<'_, u32>,
        out: &mut Collector<'_, (u32, bool)>,
    ) -> Result<(), UserError> {
        out.collect((*ctx.current_key(), ctx.time_domain() == Some(TimeDomain::EventTime)));
        Ok(())
    }
}

#[test]
fn the_end_of_input_fires_event_timers_and_processing_timers_only_in_batch_mode() {
    for mode in [ExecutionMode::Streaming, ExecutionMode::Batch] {
        // A clock that stands still: one processing-time timer per key.
        let clock = ManualClock::new(7_000_000);
        let env = StreamEnv::new(JobConfig { execution_mode: mode, clock, ..JobConfig::with_cores(2) });
        let out = env
            .from_collection((0..100u32).map(|i| (i % 10, i as i64 * 1_000)).collect())
            .assign_timestamps_and_watermarks(
                WatermarkStrategy::for_monotonous_timestamps()
                    .with_timestamp_assigner(|r: &(u32, Timestamp), _| r.1),
            )
            .key_by(|r: &(u32, Timestamp)| r.0)
            .process(Both)
            .collect();
        env.execute().unwrap();
        let got = out.take();
        let event = got.iter().filter(|r| r.1).count();
        let processing = got.iter().filter(|r| !r.1).count();
        assert_eq!(event, 100, "{mode:?}: every event-time timer fires by the final watermark");
        let expected_processing = if mode == ExecutionMode::Batch { 10 } else { 0 };
        assert_eq!(processing, expected_processing, "{mode:?}: processing-time timers at the end");
    }
}
