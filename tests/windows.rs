//! Windows beyond the Flink fixtures of tests/conformance: processing-time
//! windows and the continuous processing-time trigger, driven by a manual
//! clock; a custom trigger with state and event-time timers on global
//! windows; dynamic session gaps; plain reduce and aggregate. Each is checked
//! against a naive model on seeded random input.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use brisk::prelude::*;
use brisk::window::{Trigger, TriggerContext, TriggerResult};
use brisk::{
    ManualClock, Source, SourceContext, SourceError, SourceOutput, SourceReader, SourceStatus, Timestamp,
};

mod common;
use common::{run_guarded, seed};

/// One step of a [`Script`].
#[derive(Clone, Debug)]
enum Step {
    /// Emit `(key, value)` records.
    Emit(Vec<(u32, i64)>),
    /// Wait until the trigger has been shown this many (element, window) pairs in total.
    Elements(u64),
    /// Set the manual clock.
    Clock(i64),
    /// Wait until this many window results were emitted in total.
    Outputs(u64),
}

/// A source that plays steps against a manual clock, waiting for the window
/// operator where a step says so (counters are shared with the job).
#[derive(Clone)]
struct Script {
    steps: Arc<Vec<Step>>,
    clock: Arc<ManualClock>,
    elements: Arc<AtomicU64>,
    outputs: Arc<AtomicU64>,
}

struct ScriptReader(Script, usize);

impl Source<(u32, i64)> for Script {
    type Reader = ScriptReader;
    fn name(&self) -> String {
        "script".into()
    }
    fn is_bounded(&self) -> bool {
        true
    }
    fn create_reader(&self, _ctx: &SourceContext) -> Result<ScriptReader, SourceError> {
        Ok(ScriptReader(self.clone(), 0))
    }
}

impl SourceReader<(u32, i64)> for ScriptReader {
    async fn next_batch(
        &mut self,
        out: &mut SourceOutput<'_, (u32, i64)>,
    ) -> Result<SourceStatus, SourceError> {
        let poll = Ok(SourceStatus::Wait(Duration::from_micros(200)));
        while let Some(step) = self.0.steps.get(self.1) {
            match step {
                Step::Emit(records) => {
                    records.iter().for_each(|r| out.collect(*r));
                    self.1 += 1;
                    return Ok(SourceStatus::More);
                }
                Step::Elements(n) if self.0.elements.load(Ordering::Acquire) < *n => return poll,
                Step::Outputs(n) if self.0.outputs.load(Ordering::Acquire) < *n => return poll,
                Step::Clock(ms) => self.0.clock.set_ms(*ms),
                Step::Elements(_) | Step::Outputs(_) => {}
            }
            self.1 += 1;
        }
        Ok(SourceStatus::Done)
    }
}

/// Delegates to `inner` and counts the elements it is shown.
#[derive(Clone)]
struct Counted<Tr> {
    inner: Tr,
    seen: Arc<AtomicU64>,
}

impl<T: 'static, Tr: Trigger<T> + Clone> Trigger<T> for Counted<Tr> {
    fn on_element(&self, e: &T, ts: Timestamp, w: &Window, ctx: &mut TriggerContext<'_>) -> TriggerResult {
        self.seen.fetch_add(1, Ordering::AcqRel);
        self.inner.on_element(e, ts, w, ctx)
    }
    fn on_event_time(&self, t: Timestamp, w: &Window, ctx: &mut TriggerContext<'_>) -> TriggerResult {
        self.inner.on_event_time(t, w, ctx)
    }
    fn on_processing_time(&self, t: i64, w: &Window, ctx: &mut TriggerContext<'_>) -> TriggerResult {
        self.inner.on_processing_time(t, w, ctx)
    }
    fn clear(&self, w: &Window, ctx: &mut TriggerContext<'_>) {
        self.inner.clear(w, ctx)
    }
}

/// A window result: `(key, start, end, count, sum)`.
type Row = (u32, i64, i64, u64, i64);

/// Plays `steps` on a manual clock starting at `start`, through the window
/// pipeline `build` makes of the scripted stream (it must show the trigger's
/// elements to the counter it is given, e.g. with [`Counted`]), on 2 cores.
/// Returns the results, sorted.
fn play(
    start: i64,
    steps: Vec<Step>,
    build: impl FnOnce(DataStream<(u32, i64)>, Arc<AtomicU64>) -> DataStream<Row> + Send + 'static,
) -> Vec<Row> {
    let clock = ManualClock::new(start);
    let (elements, outputs) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let script = Script {
        steps: Arc::new(steps),
        clock: clock.clone(),
        elements: elements.clone(),
        outputs: outputs.clone(),
    };
    let mut got = run_guarded(60, move || {
        let env = StreamEnv::new(JobConfig { clock, ..JobConfig::with_cores(2) });
        let results = build(env.from_source(script).set_parallelism(1), elements)
            .map(move |r: Row| {
                outputs.fetch_add(1, Ordering::AcqRel);
                r
            })
            .collect();
        env.execute().unwrap();
        results.take()
    });
    got.sort();
    got
}

/// Windows of `size`/`slide`/`offset` that contain `t` (Flink's assignment, naively).
fn windows_of(t: i64, size: i64, slide: i64, offset: i64) -> Vec<(i64, i64)> {
    let mut s = t - (t - offset).rem_euclid(slide);
    let mut out = Vec::new();
    while s > t - size {
        out.push((s, s + size));
        s -= slide;
    }
    out
}

#[test]
fn processing_time_windows_fire_when_the_injected_clock_passes_their_end() {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    // Tumbling with an offset, and sliding windows whose slide does not divide the size.
    for (size, slide, offset) in [(1_000, 1_000, 250), (2_500, 1_000, -300)] {
        let start = 1_700_000_000_000 + rng.i64(0..10_000);
        // The model: windows per key with their count and sum; fired once the
        // clock reaches their last millisecond (ProcessingTimeTrigger).
        let mut open: BTreeMap<(u32, i64, i64), (u64, i64)> = BTreeMap::new();
        let mut fired: Vec<Row> = Vec::new();
        let (mut steps, mut now, mut seen) = (Vec::new(), start, 0u64);
        for _ in 0..40 {
            let records: Vec<(u32, i64)> =
                (0..rng.usize(0..30)).map(|_| (rng.u32(0..6), rng.i64(-50..50))).collect();
            for &(k, v) in &records {
                for (s, e) in windows_of(now, size, slide, offset) {
                    let acc = open.entry((k, s, e)).or_default();
                    acc.0 += 1;
                    acc.1 += v;
                }
            }
            // The trigger sees each element once per window it falls in.
            seen += (records.len() * windows_of(now, size, slide, offset).len()) as u64;
            steps.push(Step::Emit(records));
            steps.push(Step::Elements(seen));
            // Half the time land exactly on a window's last millisecond or its end.
            now = if rng.bool() {
                now + rng.i64(0..1_800)
            } else {
                let next_end = now - (now - offset - size).rem_euclid(slide) + slide;
                next_end - rng.i64(0..=1)
            };
            steps.push(Step::Clock(now));
            let due: Vec<_> = open.keys().filter(|(_, _, e)| e - 1 <= now).copied().collect();
            for w in due {
                let (count, sum) = open.remove(&w).unwrap();
                fired.push((w.0, w.1, w.2, count, sum));
            }
            steps.push(Step::Outputs(fired.len() as u64));
        }
        let got = play(start, steps, move |stream, elements| {
            stream
                .key_by(|r: &(u32, i64)| r.0)
                .window(WindowAssigner::sliding(size, slide).with_offset(offset).processing_time())
                .trigger(Counted { inner: brisk::window::ProcessingTimeTrigger, seen: elements })
                .process(|key: &u32, ctx: &WindowContext, rs: &[(u32, i64)], out: &mut Collector<'_, Row>| {
                    assert!(ctx.current_processing_time >= ctx.window.max_timestamp());
                    let sum = rs.iter().map(|r| r.1).sum();
                    out.collect((*key, ctx.window.start(), ctx.window.end(), rs.len() as u64, sum));
                    Ok::<(), UserError>(())
                })
        });
        // Windows still open at the end do not fire: a streaming job drops
        // processing-time timers at the end of input, as Flink does.
        let mut want = fired;
        want.sort();
        assert_eq!(got, want, "size {size} slide {slide} offset {offset}, seed {seed}");
        assert!(!want.is_empty());
    }
}

#[test]
fn continuous_processing_time_triggers_fire_every_interval_and_at_the_end() {
    const SIZE: i64 = 5_000;
    const EVERY: i64 = 1_000;
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let start = 1_700_000_000_000 + rng.i64(0..10_000);
    // The model, per (key, window): contents and the next firing time. The
    // trigger's first firing is at the next multiple of the interval, then
    // every interval, capped at the window's last millisecond, where the
    // window fires once more and is cleaned up.
    let mut open: BTreeMap<(u32, i64), (u64, i64, i64)> = BTreeMap::new();
    let mut fired: Vec<Row> = Vec::new();
    let (mut steps, mut now, mut seen) = (Vec::new(), start, 0u64);
    for _ in 0..40 {
        let records: Vec<(u32, i64)> =
            (0..rng.usize(0..20)).map(|_| (rng.u32(0..4), rng.i64(-50..50))).collect();
        for &(k, v) in &records {
            let s = now - now.rem_euclid(SIZE);
            let first = (now - now.rem_euclid(EVERY) + EVERY).min(s + SIZE - 1);
            let w = open.entry((k, s)).or_insert((0, 0, first));
            w.0 += 1;
            w.1 += v;
        }
        seen += records.len() as u64;
        steps.push(Step::Emit(records));
        steps.push(Step::Elements(seen));
        now = if rng.bool() {
            now + rng.i64(0..2_600)
        } else {
            now - now.rem_euclid(EVERY) + EVERY - rng.i64(0..=1)
        };
        steps.push(Step::Clock(now));
        for (&(k, s), w) in open.iter_mut() {
            while w.2 <= now && w.2 != i64::MAX {
                fired.push((k, s, s + SIZE, w.0, w.1));
                w.2 = if w.2 == s + SIZE - 1 { i64::MAX } else { (w.2 + EVERY).min(s + SIZE - 1) };
            }
        }
        open.retain(|_, w| w.2 != i64::MAX);
        steps.push(Step::Outputs(fired.len() as u64));
    }
    let got = play(start, steps, move |stream, elements| {
        stream
            .key_by(|r: &(u32, i64)| r.0)
            .window(WindowAssigner::tumbling(SIZE).processing_time())
            .trigger(Counted {
                inner: brisk::window::ContinuousProcessingTimeTrigger::of(EVERY),
                seen: elements,
            })
            .aggregate_with(
                Sum,
                |key: &u32, ctx: &WindowContext, r: &[(u64, i64)], out: &mut Collector<'_, Row>| {
                    out.collect((*key, ctx.window.start(), ctx.window.end(), r[0].0, r[0].1));
                    Ok::<(), UserError>(())
                },
            )
    });
    fired.sort();
    assert_eq!(got, fired, "seed {seed}");
    assert!(!fired.is_empty());
}

/// Count and sum of the values of `(key, value)` and `(key, timestamp, value)` records.
#[derive(Clone)]
struct Sum;

impl AggregateFunction<(u32, i64)> for Sum {
    type Acc = (u64, i64);
    type Out = (u64, i64);
    fn create_accumulator(&mut self) -> (u64, i64) {
        (0, 0)
    }
    fn add(&mut self, r: (u32, i64), a: (u64, i64)) -> (u64, i64) {
        (a.0 + 1, a.1 + r.1)
    }
    fn get_result(&mut self, a: &(u64, i64)) -> (u64, i64) {
        *a
    }
    fn merge(&mut self, a: (u64, i64), b: (u64, i64)) -> (u64, i64) {
        (a.0 + b.0, a.1 + b.1)
    }
}

impl AggregateFunction<(u32, i64, i64)> for Sum {
    type Acc = (u64, i64);
    type Out = (u64, i64);
    fn create_accumulator(&mut self) -> (u64, i64) {
        (0, 0)
    }
    fn add(&mut self, r: (u32, i64, i64), a: (u64, i64)) -> (u64, i64) {
        (a.0 + 1, a.1 + r.2)
    }
    fn get_result(&mut self, a: &(u64, i64)) -> (u64, i64) {
        *a
    }
    fn merge(&mut self, a: (u64, i64), b: (u64, i64)) -> (u64, i64) {
        (a.0 + b.0, a.1 + b.1)
    }
}

/// Fires and purges a global window at `MAX_COUNT` elements, or when the
/// watermark passes its first element's timestamp + `DEADLINE`.
#[derive(Clone)]
struct CountOrDeadline;

const MAX_COUNT: i64 = 3;
const DEADLINE: i64 = 100;

impl Trigger<(u32, i64, i64)> for CountOrDeadline {
    fn on_element(
        &self,
        _e: &(u32, i64, i64),
        ts: Timestamp,
        w: &Window,
        ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        let count = ctx.state("count").unwrap_or(0) + 1;
        if ctx.state("deadline").is_none() {
            ctx.set_state("deadline", ts + DEADLINE);
            ctx.register_event_time_timer(ts + DEADLINE);
        }
        if count >= MAX_COUNT {
            self.clear(w, ctx);
            return TriggerResult::FireAndPurge;
        }
        ctx.set_state("count", count);
        TriggerResult::Continue
    }
    fn on_event_time(&self, time: Timestamp, w: &Window, ctx: &mut TriggerContext<'_>) -> TriggerResult {
        if ctx.state("deadline") == Some(time) {
            self.clear(w, ctx);
            return TriggerResult::FireAndPurge;
        }
        TriggerResult::Continue
    }
    fn on_processing_time(&self, _t: i64, _w: &Window, _ctx: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }
    fn clear(&self, _w: &Window, ctx: &mut TriggerContext<'_>) {
        if let Some(d) = ctx.state("deadline") {
            ctx.delete_event_time_timer(d);
        }
        ctx.clear_state("deadline");
        ctx.clear_state("count");
    }
}

#[test]
fn a_custom_trigger_with_state_and_timers_fires_global_windows() {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    // (key, timestamp, value); timestamps wander with some disorder.
    let mut t = 0;
    let input: Vec<(u32, i64, i64)> = (0..3_000)
        .map(|i| {
            t += rng.i64(0..15);
            (rng.u32(0..20), t - rng.i64(0..30), i)
        })
        .collect();
    // The model: watermark max - 1 after each element (out-of-orderness 0),
    // timers fire in timestamp order when it passes them, the final watermark
    // fires the rest. Per key: the chunks of values emitted, in order.
    type Chunks = BTreeMap<u32, Vec<Vec<i64>>>;
    type Pending = BTreeMap<u32, (i64, Vec<i64>)>;
    fn fire_due(wm: i64, pending: &mut Pending, want: &mut Chunks) {
        let mut due: Vec<(i64, u32)> =
            pending.iter().filter(|(_, p)| p.0 <= wm).map(|(k, p)| (p.0, *k)).collect();
        due.sort();
        for (_, k) in due {
            want.entry(k).or_default().push(pending.remove(&k).unwrap().1);
        }
    }
    let (mut want, mut pending, mut max) = (Chunks::new(), Pending::new(), i64::MIN);
    for &(k, ts, v) in &input {
        let p = pending.entry(k).or_insert_with(|| (ts + DEADLINE, Vec::new()));
        p.1.push(v);
        if p.1.len() as i64 >= MAX_COUNT {
            want.entry(k).or_default().push(pending.remove(&k).unwrap().1);
        }
        max = max.max(ts);
        fire_due(max - 1, &mut pending, &mut want);
    }
    fire_due(i64::MAX, &mut pending, &mut want);
    for cores in [1, 2, 3] {
        let input = input.clone();
        let got = run_guarded(60, move || {
            let env = StreamEnv::new(JobConfig::with_cores(cores));
            let results = env
                .from_collection(input)
                .set_parallelism(1)
                .assign_timestamps_and_watermarks(
                    WatermarkStrategy::for_bounded_out_of_orderness(0)
                        .every_event()
                        .with_timestamp_assigner(|r: &(u32, i64, i64), _| r.1),
                )
                .key_by(|r: &(u32, i64, i64)| r.0)
                .window(WindowAssigner::global())
                .trigger(CountOrDeadline)
                .process(
                    |key: &u32,
                     ctx: &WindowContext,
                     rs: &[(u32, i64, i64)],
                     out: &mut Collector<'_, (u32, Vec<i64>)>| {
                        assert!(ctx.window.is_global());
                        out.collect((*key, rs.iter().map(|r| r.2).collect()));
                        Ok::<(), UserError>(())
                    },
                )
                .collect();
            env.execute().unwrap();
            results.take()
        });
        let mut per_key = Chunks::new();
        for (k, chunk) in got {
            per_key.entry(k).or_default().push(chunk);
        }
        assert_eq!(per_key, want, "{cores} cores, seed {seed}");
    }
}

#[test]
fn dynamic_session_gaps_come_from_each_element() {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    // (key, timestamp, gap); the gap of an element is its own.
    let input: Vec<(u32, i64, i64)> =
        (0..2_000).map(|_| (rng.u32(0..8), rng.i64(-5_000..60_000), rng.i64(1..400))).collect();
    // The model: per key, sessions [ts, ts + gap) merged while they overlap or
    // touch, all fired by the final watermark (the bound keeps everything on time).
    let mut per_key: BTreeMap<u32, Vec<(i64, i64, i64)>> = BTreeMap::new();
    for &(k, ts, gap) in &input {
        per_key.entry(k).or_default().push((ts, ts + gap, gap));
    }
    let mut want: Vec<Row> = Vec::new();
    for (k, mut ws) in per_key {
        ws.sort();
        let mut cur: Option<Row> = None;
        for (s, e, gap) in ws {
            cur = match cur {
                Some(c) if s <= c.2 => Some((k, c.1, c.2.max(e), c.3 + 1, c.4 + gap)),
                other => {
                    want.extend(other);
                    Some((k, s, e, 1, gap))
                }
            };
        }
        want.extend(cur);
    }
    for cores in [1, 2] {
        let input = input.clone();
        let mut got = run_guarded(60, move || {
            let env = StreamEnv::new(JobConfig::with_cores(cores));
            let results = env
                .from_collection(input)
                .set_parallelism(1)
                .assign_timestamps_and_watermarks(
                    WatermarkStrategy::for_bounded_out_of_orderness(100_000)
                        .with_timestamp_assigner(|r: &(u32, i64, i64), _| r.1),
                )
                .key_by(|r: &(u32, i64, i64)| r.0)
                .window(WindowAssigner::dynamic_session(|r: &(u32, i64, i64)| r.2))
                .reduce_with(
                    |a: (u32, i64, i64), b: (u32, i64, i64)| (a.0, 0, a.2 + b.2),
                    |key: &u32, ctx: &WindowContext, r: &[(u32, i64, i64)], out: &mut Collector<'_, Row>| {
                        out.collect((*key, ctx.window.start(), ctx.window.end(), 0, r[0].2));
                        Ok::<(), UserError>(())
                    },
                )
                .collect();
            env.execute().unwrap();
            results.take()
        });
        got.sort();
        // The reduce keeps the sum of gaps, not the count: compare without it.
        let strip = |rows: &[Row]| rows.iter().map(|r| (r.0, r.1, r.2, r.4)).collect::<Vec<_>>();
        let mut want = want.clone();
        want.sort();
        assert_eq!(strip(&got), strip(&want), "{cores} cores, seed {seed}");
    }
}

#[test]
fn plain_reduce_and_aggregate_give_one_result_per_key_and_window() {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    // (key, timestamp, value), in timestamp order: nothing is late.
    let mut t = -3_000;
    let input: Vec<(u32, i64, i64)> = (0..5_000)
        .map(|_| {
            t += rng.i64(0..4);
            (rng.u32(0..9), t, rng.i64(-100..100))
        })
        .collect();
    let mut model: BTreeMap<(u32, i64), (u64, i64)> = BTreeMap::new();
    for &(k, ts, v) in &input {
        let w = model.entry((k, ts.div_euclid(1_000))).or_default();
        w.0 += 1;
        w.1 += v;
    }
    let mut want_reduce: Vec<(u32, i64)> = model.iter().map(|(&(k, _), &(_, sum))| (k, sum)).collect();
    let mut want_aggregate: Vec<(u64, i64)> = model.values().copied().collect();
    want_reduce.sort();
    want_aggregate.sort();
    for cores in [1, 2] {
        let input = input.clone();
        let (mut reduced, mut aggregated) = run_guarded(60, move || {
            let env = StreamEnv::new(JobConfig::with_cores(cores));
            let keyed = env
                .from_collection(input)
                .set_parallelism(1)
                .assign_timestamps_and_watermarks(
                    WatermarkStrategy::for_monotonous_timestamps()
                        .with_timestamp_assigner(|r: &(u32, i64, i64), _| r.1),
                )
                .key_by(|r: &(u32, i64, i64)| r.0);
            let reduced = keyed
                .window(WindowAssigner::tumbling(1_000))
                .reduce(|a: (u32, i64, i64), b: (u32, i64, i64)| (a.0, a.1.max(b.1), a.2 + b.2))
                .map(|r: (u32, i64, i64)| (r.0, r.2))
                .collect();
            let aggregated = keyed.window(WindowAssigner::tumbling(1_000)).aggregate(Sum).collect();
            env.execute().unwrap();
            (reduced.take(), aggregated.take())
        });
        reduced.sort();
        aggregated.sort();
        assert_eq!(reduced, want_reduce, "reduce, {cores} cores, seed {seed}");
        assert_eq!(aggregated, want_aggregate, "aggregate, {cores} cores, seed {seed}");
    }
}
