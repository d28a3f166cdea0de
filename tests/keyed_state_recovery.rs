//! Keyed process state, timers, rolling reduces and interval-join buffers
//! survive failures and rescaling: a job using all of them restarts after a
//! user failure, and stops with a savepoint at one core count and resumes at
//! another, and its committed output equals a naive model of the
//! failure-free run, line for line.
//!
//! The source runs on one split so that every key's records keep their order
//! (per-element outputs such as running sums depend on it); state, timers and
//! output are spread over the cores by key.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};

use brisk::prelude::*;
use brisk::{
    JobControl, JobResult, Source, SourceContext, SourceError, SourceOutput, SourceReader, SourceStatus,
    StateBackendKind,
};

const EVENTS: u64 = 12_000;
const KEYS: u64 = 23;
/// Interval-join bounds (ms): each event joins its key's events up to 200 ms
/// before and after it.
const JOIN: i64 = 200;

/// `(key, index, timestamp)`.
type Ev = (u64, u64, i64);

fn event(i: u64) -> Ev {
    (i % KEYS, i, i as i64 * 5)
}

/// Value, list, map, reducing and aggregating state plus event-time timers:
/// per element, the key's running sum of indices, its last three indices,
/// the largest `scramble(index)` so far and the count and sum of its
/// timestamps; per 100 ms window of event time, a timer that reports the
/// key's count in the window.
#[derive(Clone, Default)]
struct Stateful {
    sum: ValueState<u64>,
    recent: ListState<u64>,
    per_window: MapState<i64, u64>,
    largest: ReducingState<u64>,
    times: AggregatingState<i64, (u64, i64)>,
}

/// An index's pseudo-random image, so that the running maximum moves.
fn scramble(i: u64) -> u64 {
    i.wrapping_mul(7919) % 1000
}

/// Count and sum of timestamps.
#[derive(Clone)]
struct CountSum;

impl AggregateFunction<i64> for CountSum {
    type Acc = (u64, i64);
    type Out = (u64, i64);
    fn create_accumulator(&mut self) -> (u64, i64) {
        (0, 0)
    }
    fn add(&mut self, ts: i64, acc: (u64, i64)) -> (u64, i64) {
        (acc.0 + 1, acc.1 + ts)
    }
    fn get_result(&mut self, acc: &(u64, i64)) -> (u64, i64) {
        *acc
    }
    fn merge(&mut self, a: (u64, i64), b: (u64, i64)) -> (u64, i64) {
        (a.0 + b.0, a.1 + b.1)
    }
}

impl KeyedProcessFunction<u64, Ev, String> for Stateful {
    fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<(), UserError> {
        self.sum = ctx.value_state("sum")?;
        self.recent = ctx.list_state("recent")?;
        self.per_window = ctx.map_state("per-window")?;
        self.largest = ctx.reducing_state("largest", |a: u64, b: u64| a.max(b))?;
        self.times = ctx.aggregating_state("times", CountSum)?;
        Ok(())
    }

    fn process_element(
        &mut self,
        (key, i, ts): Ev,
        ctx: &mut Context<'_, u64>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), UserError> {
        let sum = {
            let mut s = ctx.value(&self.sum);
            let sum = s.get().copied().unwrap_or(0) + i;
            s.set(sum);
            sum
        };
        let recent = {
            let mut r = ctx.list(&self.recent);
            let mut v = r.get().to_vec();
            v.push(i);
            if v.len() > 3 {
                v.remove(0);
            }
            r.update(v.clone());
            v
        };
        let window = ts / 100 * 100;
        let mut windows = ctx.map(&self.per_window);
        let count = windows.get(&window).copied().unwrap_or(0) + 1;
        windows.put(window, count);
        ctx.register_event_time_timer(window + 99);
        ctx.reducing(&self.largest).add(scramble(i));
        let largest = ctx.reducing(&self.largest).get().copied();
        let mut times = ctx.aggregating(&self.times);
        times.add(ts);
        let (n, ts_sum) = times.get().unwrap_or_default();
        out.collect(format!("e,{key},{i},{sum},{recent:?},{largest:?},{n},{ts_sum}"));
        Ok(())
    }

    fn on_timer(
        &mut self,
        timestamp: i64,
        ctx: &mut Context<'_, u64>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), UserError> {
        let window = timestamp - 99;
        let count = ctx.map(&self.per_window).remove(&window).unwrap_or(0);
        out.collect(format!("t,{},{window},{count}", ctx.current_key()));
        Ok(())
    }
}

/// What the job must commit, by a naive model: `(process, reduce, join)`
/// lines, each sorted.
fn expected() -> [Vec<String>; 3] {
    let mut process = Vec::new();
    let mut reduce = Vec::new();
    let mut sums: HashMap<u64, u64> = HashMap::new();
    let mut recent: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut windows: BTreeMap<(u64, i64), u64> = BTreeMap::new();
    let mut largest: HashMap<u64, u64> = HashMap::new();
    let mut times: HashMap<u64, (u64, i64)> = HashMap::new();
    for i in 0..EVENTS {
        let (key, i, ts) = event(i);
        let sum = sums.entry(key).or_default();
        *sum += i;
        let r = recent.entry(key).or_default();
        r.push(i);
        if r.len() > 3 {
            r.remove(0);
        }
        let l = largest.entry(key).or_insert(scramble(i));
        *l = (*l).max(scramble(i));
        let t = times.entry(key).or_default();
        *t = (t.0 + 1, t.1 + ts);
        process.push(format!("e,{key},{i},{sum},{r:?},{:?},{},{}", Some(*l), t.0, t.1));
        reduce.push(format!("r,{key},{sum}"));
        *windows.entry((key, ts / 100 * 100)).or_default() += 1;
    }
    for ((key, window), count) in windows {
        process.push(format!("t,{key},{window},{count}"));
    }
    let mut join = Vec::new();
    for a in 0..EVENTS {
        for b in a.saturating_sub(JOIN as u64)..(a + JOIN as u64 + 1).min(EVENTS) {
            let ((ka, _, ta), (kb, _, tb)) = (event(a), event(b));
            if ka == kb && ta - JOIN <= tb && tb <= ta + JOIN {
                join.push(format!("j,{a},{b}"));
            }
        }
    }
    for v in [&mut process, &mut reduce, &mut join] {
        v.sort();
    }
    [process, reduce, join]
}

/// Injected behaviour at one event: panic once, or tell the test.
#[derive(Clone)]
enum Hook {
    None,
    Panic(u64, Arc<AtomicBool>),
    /// Panic once, at the first event from `from` (checked every 64th) at
    /// which `ready` holds, and at the last event if it never did; the
    /// event is stored in `at`. `ready` waits for a checkpoint the test
    /// needs, however slowly checkpoints complete on this machine: the
    /// source holds at `from` until it does ([`Gated`]).
    PanicWhenReady {
        from: u64,
        armed: Arc<AtomicBool>,
        at: Arc<AtomicU64>,
        ready: Arc<dyn Fn() -> bool + Send + Sync>,
    },
    Signal(u64, SyncSender<()>),
}

impl Hook {
    /// Panics once, at the first event from `from` at which the latest
    /// completed checkpoint in `chk` refers to a file that begins with
    /// `magic`; at the last event in any case.
    fn panic_when_latest_has(
        from: u64,
        armed: Arc<AtomicBool>,
        at: Arc<AtomicU64>,
        chk: PathBuf,
        magic: &'static [u8],
    ) -> Hook {
        Hook::PanicWhenReady { from, armed, at, ready: Arc::new(move || latest_refers_to(&chk, magic)) }
    }
}

/// A source that, from its `from`th record on, emits nothing until `ready`
/// holds (then it stays open): a run that must fail once a checkpoint it
/// needs exists waits for that checkpoint here instead of running out of
/// input first on a slow machine. Holding the source also empties the
/// queues behind it, so the checkpoints that follow complete quickly.
#[derive(Clone)]
struct Gated<S> {
    inner: S,
    gate: Option<(u64, Arc<dyn Fn() -> bool + Send + Sync>)>,
}

struct GatedReader<R> {
    inner: R,
    gate: Option<(u64, Arc<dyn Fn() -> bool + Send + Sync>)>,
}

impl<T, S: Source<T>> Source<T> for Gated<S> {
    type Reader = GatedReader<S::Reader>;

    fn name(&self) -> String {
        self.inner.name()
    }

    fn is_bounded(&self) -> bool {
        self.inner.is_bounded()
    }

    fn create_reader(&self, ctx: &SourceContext) -> Result<Self::Reader, SourceError> {
        Ok(GatedReader { inner: self.inner.create_reader(ctx)?, gate: self.gate.clone() })
    }
}

impl<T, R: SourceReader<T>> SourceReader<T> for GatedReader<R> {
    async fn next_batch(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourceStatus, SourceError> {
        if let Some((from, ready)) = &self.gate {
            let done = self.inner.progress().map_or(0, |(done, _)| done);
            if done >= *from {
                if !ready() {
                    return Ok(SourceStatus::Wait(std::time::Duration::from_millis(2)));
                }
                self.gate = None;
            }
        }
        self.inner.next_batch(out).await
    }

    fn position(&self) -> Option<Vec<u8>> {
        self.inner.position()
    }

    fn snapshot_position(&mut self, checkpoint: u64) -> Option<Vec<u8>> {
        self.inner.snapshot_position(checkpoint)
    }

    fn checkpoint_complete(&mut self, checkpoint: u64) {
        self.inner.checkpoint_complete(checkpoint)
    }

    fn progress(&self) -> Option<(u64, u64)> {
        self.inner.progress()
    }

    fn finisher(&mut self) -> Option<brisk::Finisher> {
        self.inner.finisher()
    }
}

/// Whether the latest completed checkpoint in `chk` refers to a shared file
/// that begins with `magic`.
fn latest_refers_to(chk: &Path, magic: &[u8]) -> bool {
    let Ok(all) = brisk::checkpoint::store::list(chk) else { return false };
    let Some((_, dir, _)) = all.into_iter().filter(|(_, _, complete)| *complete).max_by_key(|(id, _, _)| *id)
    else {
        return false;
    };
    let Ok(manifest) = brisk::checkpoint::store::read_manifest(&dir) else { return false };
    manifest.segments.iter().any(|s| begins_with(&chk.join(&s.path), magic))
}

/// Whether the file at `path` begins with `magic` (reads only that much:
/// [`latest_refers_to`] runs inside the job).
fn begins_with(path: &Path, magic: &[u8]) -> bool {
    use std::io::Read;
    let mut head = vec![0; magic.len()];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok_and(|()| head == magic)
}

/// Events per second of the job's source.
const RATE: f64 = 15_000.0;

/// [`RATE`] for the runs on the log backend that must fail after a given
/// kind of checkpoint. With a 4 KiB budget, a debug build processes only a
/// few thousand events a second there on a loaded 2-core machine; a faster
/// source queues thousands of events ahead of every barrier, and a
/// checkpoint then takes seconds to complete.
const LOG_RATE: f64 = 5_000.0;

fn job(env: &StreamEnv, out: &Path, hook: Hook, rate: f64) {
    job_with(env, out, hook, Stateful::default(), rate);
}

/// The job, with `f` as its process function and a source of `rate` events
/// a second.
fn job_with<F: KeyedProcessFunction<u64, Ev, String>>(
    env: &StreamEnv,
    out: &Path,
    hook: Hook,
    f: F,
    rate: f64,
) {
    let gate = match &hook {
        Hook::PanicWhenReady { from, ready, .. } => Some((*from, ready.clone())),
        // The test stops the job with a savepoint once told: the source
        // holds after the signal's event, so the job cannot finish first
        // and the savepoint always leaves input for the restored run.
        Hook::Signal(at, _) => Some((*at + 1, Arc::new(|| false) as Arc<dyn Fn() -> bool + Send + Sync>)),
        _ => None,
    };
    let events = env
        .from_source(Gated { inner: GeneratorSource::new(EVENTS, event).with_rate(rate), gate })
        .set_parallelism(1)
        .map(move |e: Ev| {
            match &hook {
                Hook::Panic(at, armed) if e.1 == *at && armed.swap(false, Ordering::SeqCst) => {
                    panic!("injected failure at event {at}")
                }
                Hook::PanicWhenReady { from, armed, at, ready }
                    if (e.1 == EVENTS - 1 || e.1 >= *from && e.1.is_multiple_of(64) && ready())
                        && armed.swap(false, Ordering::SeqCst) =>
                {
                    at.store(e.1, Ordering::SeqCst);
                    panic!("injected failure at event {}", e.1)
                }
                Hook::Signal(at, tx) if e.1 == *at => {
                    let _ = tx.try_send(());
                }
                _ => {}
            }
            e
        })
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|e: &Ev, _| e.2),
        );
    let keyed = events.key_by(|e: &Ev| e.0);
    keyed.process(f).sink_to(TransactionalFileSink::lines(out.join("process")));
    keyed
        .reduce(|a: Ev, b: Ev| (a.0, a.1 + b.1, b.2))
        .map(|(key, sum, _): Ev| format!("r,{key},{sum}"))
        .sink_to(TransactionalFileSink::lines(out.join("reduce")));
    keyed
        .interval_join(&events.key_by(|e: &Ev| e.0))
        .between(-JOIN, JOIN)
        .process(|a: &Ev, b: &Ev, _: &JoinContext, out: &mut Collector<'_, String>| {
            out.collect(format!("j,{},{}", a.1, b.1));
            Ok::<(), UserError>(())
        })
        .sink_to(TransactionalFileSink::lines(out.join("join")));
}

fn committed(out: &Path) -> [Vec<String>; 3] {
    ["process", "reduce", "join"].map(|sink| common::committed_lines(&out.join(sink)))
}

fn config(dir: &Path, cores: usize) -> JobConfig {
    JobConfig {
        checkpoint_dir: Some(dir.join("chk")),
        checkpoint_interval_ms: 20,
        pin_cores: false,
        ..JobConfig::with_cores(cores)
    }
}

/// [`config`] on the log backend with a 4 KiB budget per core: state is
/// evicted and read back all the time.
fn log_config(dir: &Path, cores: usize) -> JobConfig {
    JobConfig {
        state_backend: StateBackendKind::Log,
        state_memory_budget_bytes: 4096,
        state_dir: Some(dir.join("state")),
        ..config(dir, cores)
    }
}

fn check(got: [Vec<String>; 3], want: &[Vec<String>; 3], what: &str) {
    for (i, sink) in ["process", "reduce", "join"].iter().enumerate() {
        let (g, w) = (&got[i], &want[i]);
        if g != w {
            let missing = w.iter().filter(|l| g.binary_search(l).is_err()).count();
            let extra = g.iter().filter(|l| w.binary_search(l).is_err()).count();
            panic!(
                "{what}: sink '{sink}' committed {} lines, expected {} ({missing} missing, {extra} unexpected, \
                 first difference {:?})",
                g.len(),
                w.len(),
                g.iter().zip(w).find(|(a, b)| a != b)
            );
        }
    }
}

fn run(config: JobConfig, out: PathBuf, hook: Hook) -> JobResult {
    run_with(config, out, hook, Stateful::default())
}

/// [`run`] with `f` as the process function.
fn run_with<F: KeyedProcessFunction<u64, Ev, String> + Send + 'static>(
    config: JobConfig,
    out: PathBuf,
    hook: Hook,
    f: F,
) -> JobResult {
    common::run_guarded(120, move || {
        let env = StreamEnv::new(config);
        job_with(&env, &out, hook, f, RATE);
        env.execute()
    })
    .unwrap()
}

/// Starts the job on its own thread; returns it and its control handle.
fn start(
    config: JobConfig,
    out: PathBuf,
    hook: Hook,
) -> (std::thread::JoinHandle<Result<JobResult, JobError>>, JobControl) {
    start_with(config, out, hook, Stateful::default())
}

/// [`start`] with `f` as the process function.
fn start_with<F: KeyedProcessFunction<u64, Ev, String> + Send + 'static>(
    config: JobConfig,
    out: PathBuf,
    hook: Hook,
    f: F,
) -> (std::thread::JoinHandle<Result<JobResult, JobError>>, JobControl) {
    let (send_control, control) = sync_channel(1);
    let job = std::thread::spawn(move || {
        let env = StreamEnv::new(config);
        job_with(&env, &out, hook, f, RATE);
        send_control.send(env.control()).unwrap();
        env.execute()
    });
    (job, control.recv().unwrap())
}

#[test]
fn keyed_state_timers_reduce_and_join_buffers_survive_a_restart() {
    let want = expected();
    for cores in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let config = JobConfig { restart_attempts: 2, restart_delay_ms: 10, ..config(dir.path(), cores) };
        let armed = Arc::new(AtomicBool::new(true));
        let result = run(config, dir.path().join("out"), Hook::Panic(EVENTS * 3 / 4, armed.clone()));
        assert!(!armed.load(Ordering::SeqCst), "the failure was injected");
        assert_eq!(result.restarts, 1);
        let restored_from = result.checkpoints.first().map(|c| c.id);
        println!("{cores} cores: restarted once; the last run's first checkpoint {restored_from:?}");
        check(committed(&dir.path().join("out")), &want, &format!("restart at {cores} cores"));
    }
}

#[test]
fn keyed_state_rescales_through_a_savepoint() {
    let want = expected();
    for (from, to) in [(2, 1), (1, 2)] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let savepoint = dir.path().join("savepoint");
        let (tx, at_half) = sync_channel(1);
        let (first, control) = start(config(dir.path(), from), out.clone(), Hook::Signal(EVENTS / 2, tx));
        at_half.recv().expect("the job reaches half of its input");
        control.stop_with_savepoint(&savepoint).unwrap();
        first.join().unwrap().unwrap();
        let before = committed(&out).iter().map(Vec::len).sum::<usize>();
        assert!(before > 0, "output was committed before the savepoint");

        let config = JobConfig { restore: Some(RestoreFrom::Path(savepoint)), ..config(dir.path(), to) };
        run(config, out.clone(), Hook::None);
        let total: usize = committed(&out).iter().map(Vec::len).sum();
        println!("{from} -> {to} cores: {before} lines committed before the savepoint, {total} in all");
        check(committed(&out), &want, &format!("savepoint at {from} cores, restored at {to}"));
    }
}

#[test]
fn a_checkpoint_restores_only_into_the_same_state_layout() {
    // Functions that changed the state `Stateful` registered.
    #[derive(Clone, Default)]
    struct Renamed(ValueState<u64>);
    impl KeyedProcessFunction<u64, Ev, String> for Renamed {
        fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<(), UserError> {
            self.0 = ctx.value_state("total")?;
            Ok(())
        }
        fn process_element(
            &mut self,
            _: Ev,
            _: &mut Context<'_, u64>,
            _: &mut Collector<'_, String>,
        ) -> Result<(), UserError> {
            Ok(())
        }
    }
    #[derive(Clone, Default)]
    struct Retyped(ValueState<String>, ListState<u64>, MapState<i64, u64>);
    impl KeyedProcessFunction<u64, Ev, String> for Retyped {
        fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<(), UserError> {
            self.0 = ctx.value_state("sum")?;
            self.1 = ctx.list_state("recent")?;
            self.2 = ctx.map_state("per-window")?;
            Ok(())
        }
        fn process_element(
            &mut self,
            _: Ev,
            _: &mut Context<'_, u64>,
            _: &mut Collector<'_, String>,
        ) -> Result<(), UserError> {
            Ok(())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let savepoint = dir.path().join("savepoint");
    let (tx, started) = sync_channel(1);
    let (first, control) = start(config(dir.path(), 1), out.clone(), Hook::Signal(EVENTS / 4, tx));
    started.recv().expect("the job runs");
    control.stop_with_savepoint(&savepoint).unwrap();
    first.join().unwrap().unwrap();

    let restore = |f: fn(&StreamEnv, &Path)| {
        let config =
            JobConfig { restore: Some(RestoreFrom::Path(savepoint.clone())), ..config(dir.path(), 1) };
        let out = out.clone();
        common::run_guarded(60, move || {
            let env = StreamEnv::new(config);
            f(&env, &out);
            env.execute()
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    let renamed = restore(|env, out| job_with(env, out, Hook::None, Renamed::default(), RATE)).unwrap_err();
    println!("renamed: {renamed}");
    assert!(
        renamed.contains("holds state 'sum' (ValueState<u64>) that the function no longer registers"),
        "{renamed}"
    );
    let retyped = restore(|env, out| job_with(env, out, Hook::None, Retyped::default(), RATE)).unwrap_err();
    println!("retyped: {retyped}");
    assert!(retyped.contains("state 'sum' is ValueState<u64> in the checkpoint"), "{retyped}");
    assert!(retyped.contains("registers it as ValueState<alloc::string::String>"), "{retyped}");
    // The unchanged function restores.
    restore(|env, out| job(env, out, Hook::None, RATE)).unwrap();
}

/// The same job on the log backend with a 4 KiB budget per core: process
/// state, timers' state and join buffers are evicted and read back all the
/// time, and still survive a restart and a rescale exactly.
#[test]
fn on_the_log_backend_spilled_state_survives_a_restart_and_a_rescale() {
    let want = expected();
    let dir = tempfile::tempdir().unwrap();
    let config = JobConfig { restart_attempts: 2, restart_delay_ms: 10, ..log_config(dir.path(), 2) };
    let armed = Arc::new(AtomicBool::new(true));
    let result = run(config, dir.path().join("out"), Hook::Panic(EVENTS * 3 / 4, armed.clone()));
    assert!(!armed.load(Ordering::SeqCst), "the failure was injected");
    assert_eq!(result.restarts, 1);
    let (evicted, read_back) =
        (result.metrics.total("state_evicted"), result.metrics.total("state_read_back"));
    println!("restart: {evicted} entries evicted, {read_back} read back in the last run");
    assert!(
        evicted > 1000 && read_back > 1000,
        "the budget forced spilling: {evicted} evicted, {read_back} read back"
    );
    check(committed(&dir.path().join("out")), &want, "log backend, restart at 2 cores");
    let left: Vec<_> = std::fs::read_dir(dir.path().join("state")).unwrap().collect();
    assert!(left.is_empty(), "each run removes its state directory: {left:?}");
    // Whether a checkpoint of this short last run shares segments with an
    // earlier one depends on timing (23 keys rewrite every segment within a
    // few checkpoints); tests/incremental_checkpoints.rs asserts sharing on
    // an input built for it.
    println!(
        "checkpoints (added / whole state, bytes): {:?}",
        result.checkpoints.iter().map(|c| (c.bytes, c.full_bytes)).collect::<Vec<_>>()
    );
    shared_segments_are_exactly_the_referenced_ones(&dir.path().join("chk"));

    // An incremental checkpoint restores at another core count: a run on
    // 2 cores fails for good, and the job resumes from its latest
    // checkpoint on 3 cores.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let armed = Arc::new(AtomicBool::new(true));
    // It fails once its latest checkpoint refers to a log segment, however
    // slowly checkpoints complete on this machine.
    let at = Arc::new(AtomicU64::new(0));
    let hook =
        Hook::panic_when_latest_has(EVENTS / 2, armed.clone(), at, dir.path().join("chk"), b"BRISKSEG");
    let (config, out2) = (log_config(dir.path(), 2), out.clone());
    let failed = common::run_guarded(120, move || {
        let env = StreamEnv::new(config);
        job(&env, &out2, hook, LOG_RATE);
        env.execute()
    });
    assert!(
        failed.is_err() && !armed.load(Ordering::SeqCst),
        "the first run failed: {:?}",
        failed.map(|_| ())
    );
    let chk = dir.path().join("chk");
    let latest = brisk::checkpoint::store::choose_latest(&chk).unwrap().expect("a checkpoint completed");
    let segments = &latest.loaded.manifest.segments;
    assert!(!segments.is_empty(), "the latest checkpoint refers to segments");
    // A damaged segment is detected by its records' checksums, naming the
    // file. (The largest file may be another kind: early in a run, an
    // index base, which a restore at another core count does not read.)
    let is_segment = |path: &Path| begins_with(path, b"BRISKSEG");
    let victim = segments
        .iter()
        .map(|s| (s.len, chk.join(&s.path)))
        .filter(|(_, path)| is_segment(path))
        .max()
        .map(|(_, path)| path)
        .expect("the latest checkpoint refers to a log segment");
    let good = std::fs::read(&victim).unwrap();
    println!(
        "damaging {} ({} bytes, begins {:?})",
        victim.display(),
        good.len(),
        String::from_utf8_lossy(&good[..8])
    );
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 0x10;
    std::fs::write(&victim, &bad).unwrap();
    let (config, out2) =
        (JobConfig { restore: Some(RestoreFrom::Latest), ..log_config(dir.path(), 3) }, out.clone());
    let refused = common::run_guarded(60, move || {
        let env = StreamEnv::new(config);
        job(&env, &out2, Hook::None, RATE);
        env.execute()
    })
    .map(|_| ())
    .unwrap_err()
    .to_string();
    println!("damaged segment: {refused}");
    assert!(refused.contains(&victim.display().to_string()) && refused.contains("checksum"), "{refused}");
    std::fs::write(&victim, &good).unwrap();
    let config = JobConfig { restore: Some(RestoreFrom::Latest), ..log_config(dir.path(), 3) };
    let result = run(config, out.clone(), Hook::None);
    let restored = result.restored.expect("restored");
    println!("restored checkpoint {} ({} bytes) at 3 cores", restored.checkpoint, restored.bytes);
    check(committed(&out), &want, "log backend, incremental checkpoint at 2 cores, restored at 3");
    shared_segments_are_exactly_the_referenced_ones(&chk);

    let dir = tempfile::tempdir().unwrap();
    let (out, savepoint) = (dir.path().join("out"), dir.path().join("savepoint"));
    let (tx, at_half) = sync_channel(1);
    let (first, control) = start(log_config(dir.path(), 2), out.clone(), Hook::Signal(EVENTS / 2, tx));
    at_half.recv().expect("the job reaches half of its input");
    control.stop_with_savepoint(&savepoint).unwrap();
    first.join().unwrap().unwrap();
    let config = JobConfig { restore: Some(RestoreFrom::Path(savepoint)), ..log_config(dir.path(), 1) };
    let result = run(config, out.clone(), Hook::None);
    // The source held after the signal's event, so half of the input is
    // left for the restored run, which must read state back.
    let (written, read_back) = (result.metrics.total("records_in"), result.metrics.total("state_read_back"));
    println!("restored at 1 core: {written} records written, {read_back} entries read back");
    assert!(
        written > 1000 && read_back > 0,
        "the restored run had input left ({written} records written) and read spilled state back ({read_back})"
    );
    check(committed(&out), &want, "log backend, savepoint at 2 cores, restored at 1");
}

/// The segment files in `<chk>/shared` are exactly those the complete
/// checkpoints left in `chk` refer to: none missing, none leaked.
fn shared_segments_are_exactly_the_referenced_ones(chk: &Path) {
    let mut referenced = std::collections::BTreeSet::new();
    for (_, dir, complete) in brisk::checkpoint::store::list(chk).unwrap() {
        if complete {
            let m = brisk::checkpoint::store::read_manifest(&dir).unwrap();
            referenced.extend(m.segments.iter().map(|s| s.path.clone()));
        }
    }
    let present: std::collections::BTreeSet<String> = std::fs::read_dir(chk.join("shared"))
        .unwrap()
        .map(|e| format!("shared/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    assert_eq!(present, referenced, "segment files in {}/shared", chk.display());
}

/// Event-time timers that fire and are deleted between checkpoints: every
/// event sets a reminder 15 s of event time after it (3,000 events, about
/// ten checkpoints later at the job's rate, so that after the first few
/// checkpoints each core holds several times the
/// `timer_files::CHAIN_MIN_ENTRIES` timers below which an operator writes
/// them inline instead of in a chain), and every fourth event cancels its
/// key's reminder from its key's previous event (still pending then).
/// On the log backend, incremental checkpoints write timers as a base and
/// files of changes (deletions, firings, registrations), which a restore
/// applies in order.
#[derive(Clone, Default)]
struct Reminders;

const REMINDER_MS: i64 = 15_000;

impl KeyedProcessFunction<u64, Ev, String> for Reminders {
    fn process_element(
        &mut self,
        (_, i, ts): Ev,
        ctx: &mut Context<'_, u64>,
        _: &mut Collector<'_, String>,
    ) -> Result<(), UserError> {
        ctx.register_event_time_timer(ts + REMINDER_MS);
        if i.is_multiple_of(4) && i >= KEYS {
            let (_, _, previous) = event(i - KEYS);
            ctx.delete_event_time_timer(previous + REMINDER_MS);
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        timestamp: i64,
        ctx: &mut Context<'_, u64>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), UserError> {
        out.collect(format!("t,{},{timestamp}", ctx.current_key()));
        Ok(())
    }
}

/// What [`Reminders`] must commit, by a naive model, sorted.
fn reminders_expected() -> Vec<String> {
    let mut lines: Vec<String> = (0..EVENTS)
        .filter(|i| !((i + KEYS).is_multiple_of(4) && i + KEYS < EVENTS))
        .map(|i| {
            let (key, _, ts) = event(i);
            format!("t,{key},{}", ts + REMINDER_MS)
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn on_the_log_backend_timers_fired_and_deleted_between_checkpoints_survive_a_restart_and_a_rescale() {
    let [_, reduce, join] = expected();
    let want = [reminders_expected(), reduce, join];
    // A run on 2 cores fails for good; the job resumes on 3 cores from its
    // latest checkpoint, fails once more and restarts from a checkpoint of
    // its own.
    let dir = tempfile::tempdir().unwrap();
    let (out, chk) = (dir.path().join("out"), dir.path().join("chk"));
    let armed = Arc::new(AtomicBool::new(true));
    // It fails once its latest checkpoint refers to a timer file (from a
    // few checkpoints in), however slowly checkpoints complete here.
    let first = Arc::new(AtomicU64::new(0));
    let hook =
        Hook::panic_when_latest_has(EVENTS / 3, armed.clone(), first.clone(), chk.clone(), b"BRISKTMR");
    let (config, out2) = (log_config(dir.path(), 2), out.clone());
    let failed = common::run_guarded(120, move || {
        let env = StreamEnv::new(config);
        job_with(&env, &out2, hook, Reminders, LOG_RATE);
        env.execute()
    });
    assert!(failed.is_err() && !armed.load(Ordering::SeqCst), "the first run failed");
    let latest = brisk::checkpoint::store::choose_latest(&chk).unwrap().expect("a checkpoint completed");
    let files = latest.loaded.manifest.segments.iter().filter(|s| is_timer_file(&chk.join(&s.path))).count();
    println!(
        "the latest checkpoint of the first run ({}) refers to {files} timer files and {} segment files",
        latest.loaded.manifest.id,
        latest.loaded.manifest.segments.len(),
    );
    assert!(files >= 1, "timers are checkpointed in files beside the segments");
    let armed = Arc::new(AtomicBool::new(true));
    let config = JobConfig {
        restore: Some(RestoreFrom::Latest),
        restart_attempts: 1,
        restart_delay_ms: 10,
        ..log_config(dir.path(), 3)
    };
    // The second run resumes before the first failure, so it sees every
    // event from there on.
    let second = (first.load(Ordering::SeqCst) + EVENTS - 1) / 2;
    println!("the first run failed at event {}; the second fails at {second}", first.load(Ordering::SeqCst));
    let (out2, hook) = (out.clone(), Hook::Panic(second, armed.clone()));
    let result = common::run_guarded(120, move || {
        let env = StreamEnv::new(config);
        job_with(&env, &out2, hook, Reminders, LOG_RATE);
        env.execute()
    })
    .unwrap();
    assert!(!armed.load(Ordering::SeqCst), "the second failure was injected");
    assert_eq!(result.restarts, 1);
    check(committed(&out), &want, "log backend, timers restored from chains of timer files");
    shared_segments_are_exactly_the_referenced_ones(&chk);
}

/// Whether the file at `path` is a timer file (its magic).
fn is_timer_file(path: &Path) -> bool {
    begins_with(path, b"BRISKTMR")
}

/// Everything [`Stateful`] keeps for a key, in one value archived with
/// rkyv ([`brisk::state::Rkyv`]).
#[derive(
    Default, brisk::state::rkyv::Archive, brisk::state::rkyv::Serialize, brisk::state::rkyv::Deserialize,
)]
#[rkyv(crate = brisk::state::rkyv)]
struct KeyRecord {
    sum: u64,
    recent: Vec<u64>,
    per_window: Vec<WindowCount>,
    largest: Option<u64>,
    times: (u64, i64),
}

#[derive(brisk::state::rkyv::Archive, brisk::state::rkyv::Serialize, brisk::state::rkyv::Deserialize)]
#[rkyv(crate = brisk::state::rkyv)]
struct WindowCount {
    window: i64,
    count: u64,
}

/// [`Stateful`]'s output from one archived value per key: written whole on
/// each event, read in place by its timers.
#[derive(Clone, Default)]
struct ArchivedStateful {
    record: ValueState<Rkyv<KeyRecord>>,
}

impl KeyedProcessFunction<u64, Ev, String> for ArchivedStateful {
    fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<(), UserError> {
        self.record = ctx.value_state("record")?;
        Ok(())
    }

    fn process_element(
        &mut self,
        (key, i, ts): Ev,
        ctx: &mut Context<'_, u64>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), UserError> {
        let window = ts / 100 * 100;
        let mut state = ctx.value(&self.record);
        let mut r = state.get().map(Rkyv::to_value).unwrap_or_default();
        r.sum += i;
        r.recent.push(i);
        if r.recent.len() > 3 {
            r.recent.remove(0);
        }
        match r.per_window.iter_mut().find(|w| w.window == window) {
            Some(w) => w.count += 1,
            None => r.per_window.push(WindowCount { window, count: 1 }),
        }
        r.largest = Some(r.largest.map_or(scramble(i), |l| l.max(scramble(i))));
        r.times = (r.times.0 + 1, r.times.1 + ts);
        out.collect(format!(
            "e,{key},{i},{},{:?},{:?},{},{}",
            r.sum, r.recent, r.largest, r.times.0, r.times.1
        ));
        state.set(Rkyv::new(&r));
        ctx.register_event_time_timer(window + 99);
        Ok(())
    }

    fn on_timer(
        &mut self,
        timestamp: i64,
        ctx: &mut Context<'_, u64>,
        out: &mut Collector<'_, String>,
    ) -> Result<(), UserError> {
        let window = timestamp - 99;
        let key = *ctx.current_key();
        let mut state = ctx.value(&self.record);
        // Read in place: find the window's count without decoding the value.
        let archived = state.get().expect("a timer's key has state");
        let count =
            archived.get().per_window.iter().find(|w| w.window == window).map_or(0, |w| w.count.to_native());
        out.collect(format!("t,{key},{window},{count}"));
        if count > 0 {
            let mut r = archived.to_value();
            r.per_window.retain(|w| w.window != window);
            state.get_mut().expect("read above").set(&r);
        }
        Ok(())
    }
}

#[test]
fn on_the_log_backend_values_archived_with_rkyv_survive_a_restart_and_a_rescale() {
    let want = expected();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let config = JobConfig { restart_attempts: 2, restart_delay_ms: 10, ..log_config(dir.path(), 2) };
    let armed = Arc::new(AtomicBool::new(true));
    let hook = Hook::Panic(EVENTS * 3 / 4, armed.clone());
    let result = run_with(config, out.clone(), hook, ArchivedStateful::default());
    assert!(!armed.load(Ordering::SeqCst), "the failure was injected");
    assert_eq!(result.restarts, 1);
    let (evicted, read_back) =
        (result.metrics.total("state_evicted"), result.metrics.total("state_read_back"));
    println!("restart: {evicted} entries evicted, {read_back} read back in the last run");
    assert!(
        evicted > 1000 && read_back > 1000,
        "the budget forced spilling: {evicted} evicted, {read_back} read back"
    );
    check(committed(&out), &want, "archived values, log backend, restart at 2 cores");

    // A savepoint at 2 cores, resumed at 1.
    let dir = tempfile::tempdir().unwrap();
    let (out, savepoint) = (dir.path().join("out"), dir.path().join("savepoint"));
    let (tx, at_half) = sync_channel(1);
    let hook = Hook::Signal(EVENTS / 2, tx);
    let (first, control) =
        start_with(log_config(dir.path(), 2), out.clone(), hook, ArchivedStateful::default());
    at_half.recv().expect("the job reaches half of its input");
    control.stop_with_savepoint(&savepoint).unwrap();
    first.join().unwrap().unwrap();
    let config = JobConfig { restore: Some(RestoreFrom::Path(savepoint)), ..log_config(dir.path(), 1) };
    let result = run_with(config, out.clone(), Hook::None, ArchivedStateful::default());
    let restored = result.restored.expect("restored");
    let (written, read_back) = (result.metrics.total("records_in"), result.metrics.total("state_read_back"));
    println!(
        "restored savepoint {} at 1 core: {written} records written, {read_back} entries read back",
        restored.checkpoint
    );
    assert!(
        written > 1000 && read_back > 0,
        "the restored run had input left ({written} records written) and read spilled state back ({read_back})"
    );
    check(committed(&out), &want, "archived values, log backend, savepoint at 2 cores, restored at 1");
}
