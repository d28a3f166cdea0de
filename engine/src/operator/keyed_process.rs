//! Keyed process functions: user code that sees one record at a time with
//! the record's key, keyed state scoped to it, and timers (Flink's
//! `KeyedProcessFunction`).
//!
//! Timers are per (key, timestamp), deduplicated. Event-time timers fire in
//! timestamp order when the operator's combined watermark reaches them, before
//! that watermark is forwarded; their output carries the timer's timestamp.
//! Processing-time timers fire when the injected clock reaches them (through
//! the core's processing-time service); their output carries no timestamp.
//! Timers never fire while an element is being processed. At the end of input
//! the final watermark fires every event-time timer; pending processing-time
//! timers are dropped in streaming mode (Flink quiesces its processing-time
//! service) and fired in batch mode (Flink's batch timer service fires them at
//! the end of input).
//!
//! At a checkpoint barrier the operator snapshots every registered state and
//! both timer queues, each entry tagged with its key group; on restore each
//! core keeps the key groups it owns. A checkpoint restores only into a
//! function that registers the same states with the same types (a state the
//! checkpoint holds but the function no longer registers is an error, as in
//! Flink without `--allowNonRestoredState`).
//!
//! Under the log backend with incremental checkpoints, the snapshot holds
//! the state directory, the timers and the list of log segments instead of
//! the entries: the barrier writes the dirty entries into the log and seals
//! it, and the checkpoint refers to its segments (see
//! `checkpoint/segments.rs`). A restore adopts those segments and replays
//! the records of the key groups the core owns.

use std::cell::RefCell;
use std::hash::Hash;
use std::marker::PhantomData;
use std::rc::Rc;

use brisk_state::log::Charge;
use brisk_state::{
    AggregateFunction, AggregatingAccess, AggregatingState, CurrentKey, KeyedStateBackend, ListAccess,
    ListState, MapAccess, MapState, ReducingAccess, ReducingState, StateTtlConfig, StateValue, TimerQueue,
    ValueAccess, ValueState, WithTtl,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::batch::{BATCH_RECORDS_MAX, Batch, Control, MAX_WATERMARK, MIN_WATERMARK, Timestamp};
use crate::checkpoint::format::{NO_KEY_GROUP, StateWriter};
use crate::checkpoint::restore_owned;
use crate::error::{JobError, OperatorInfo, UserError};
use crate::runtime::core::{Core, Push};
use crate::runtime::timers::Ticker;

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeDomain {
    /// Fires when the watermark reaches the timer.
    EventTime,
    /// Fires when the (injected) processing-time clock reaches the timer.
    ProcessingTime,
}

/// The timers of one keyed operator on one core, under namespace `N`
/// (`()` for process functions, the window for windows).
pub(crate) struct Timers<K, N = ()> {
    pub event: TimerQueue<K, N>,
    pub processing: TimerQueue<K, N>,
    /// Under the log backend, the queues' memory charged to the core's
    /// budget (timers stay in memory; state makes room for them).
    charge: Option<Charge>,
    /// The files incremental checkpoints refer to (see
    /// `checkpoint::timer_files`).
    pub chain: crate::checkpoint::timer_files::TimerChain,
}

impl<K: Eq + Hash + Clone, N: Eq + Hash + Clone> Timers<K, N> {
    pub fn new(charge: Option<Charge>) -> Self {
        Self {
            event: TimerQueue::default(),
            processing: TimerQueue::default(),
            charge,
            chain: Default::default(),
        }
    }

    /// Charges what the queues hold now.
    pub fn recharge(&mut self) {
        if let Some(c) = &mut self.charge {
            c.set(self.event.memory_bytes() + self.processing.memory_bytes());
        }
    }

    /// Writes both queues into a snapshot as timer groups: the timers of
    /// one timestamp, namespace and key group share an entry
    /// `(image(namespace), timestamp, keys)` of kind `kinds[0]` (event
    /// time) or `kinds[1]` (processing time), at most
    /// [`TIMER_GROUP_KEYS_MAX`] keys each. A window's timers then cost a
    /// snapshot the bytes of their keys, not a framed entry each (a
    /// quarter or less of the old size for small keys).
    ///
    /// Groups come out in firing order of their first timer; within a
    /// timestamp, a restore registers the timers of a key group together,
    /// so ties between key groups may fire in another order after a
    /// restore (as in Flink, whose snapshots are by key group too).
    pub fn snapshot_groups<I: Serialize>(
        &self,
        w: &mut StateWriter,
        kinds: [u8; 2],
        key_group: impl Fn(u64) -> u32,
        image: impl Fn(&N) -> I,
    ) where
        K: Serialize,
    {
        for (kind, queue) in kinds.into_iter().zip([&self.event, &self.processing]) {
            write_groups(w, kind, queue.iter(), &key_group, &image);
        }
    }

    /// Registers the timers of one group written by
    /// [`snapshot_groups`](Self::snapshot_groups).
    pub fn restore_group(&mut self, event_time: bool, namespace: &N, timestamp: i64, keys: &[K])
    where
        K: Hash,
    {
        let queue = if event_time { &mut self.event } else { &mut self.processing };
        queue.register_new(keys, namespace, timestamp);
    }

    /// Indexes the timers [`restore_group`](Self::restore_group) added, all
    /// at once: a restore calls it before it looks a timer up.
    pub fn index_restored(&mut self) {
        self.event.index_new();
        self.processing.index_new();
    }
}

/// Writes `timers` (`(key, key hash, namespace, timestamp)` in firing
/// order) as timer groups of kind `kind` (see [`Timers::snapshot_groups`]).
pub(crate) fn write_groups<'a, K, N, I>(
    w: &mut StateWriter,
    kind: u8,
    timers: impl Iterator<Item = (&'a K, u64, &'a N, i64)>,
    key_group: impl Fn(u64) -> u32,
    image: &impl Fn(&N) -> I,
) where
    K: Serialize + 'a,
    N: Eq + Hash + 'a,
    I: Serialize,
{
    let mut groups = TimerGroups::default();
    for (key, hash, namespace, ts) in timers {
        if groups.timestamp != Some(ts) {
            groups.flush(w, kind, image);
            groups.timestamp = Some(ts);
        }
        groups.add(w, kind, image, key_group(hash), namespace, key);
    }
    groups.flush(w, kind, image);
}

/// Most keys in one timer-group entry of a snapshot (bounds what a restore
/// decodes at once).
pub(crate) const TIMER_GROUP_KEYS_MAX: usize = 4096;

/// The timer groups of one timestamp being gathered for a snapshot, in
/// order of first appearance.
struct TimerGroups<'a, K, N> {
    timestamp: Option<i64>,
    at: rustc_hash::FxHashMap<(u32, &'a N), usize>,
    groups: Vec<(u32, &'a N, Vec<&'a K>)>,
}

impl<K, N> Default for TimerGroups<'_, K, N> {
    fn default() -> Self {
        Self { timestamp: None, at: Default::default(), groups: Vec::new() }
    }
}

impl<'a, K: Serialize, N: Eq + Hash> TimerGroups<'a, K, N> {
    fn add<I: Serialize>(
        &mut self,
        w: &mut StateWriter,
        kind: u8,
        image: &impl Fn(&N) -> I,
        kg: u32,
        namespace: &'a N,
        key: &'a K,
    ) {
        let n = self.groups.len();
        let i = *self.at.entry((kg, namespace)).or_insert(n);
        if i == n {
            self.groups.push((kg, namespace, Vec::new()));
        }
        let keys = &mut self.groups[i].2;
        keys.push(key);
        if keys.len() == TIMER_GROUP_KEYS_MAX {
            let ts = self.timestamp.expect("a timestamp is set before timers are added");
            w.entry(kind, kg, &(image(namespace), ts, &*keys));
            keys.clear();
        }
    }

    fn flush<I: Serialize>(&mut self, w: &mut StateWriter, kind: u8, image: &impl Fn(&N) -> I) {
        if let Some(ts) = self.timestamp {
            for (kg, namespace, keys) in self.groups.drain(..) {
                if !keys.is_empty() {
                    w.entry(kind, kg, &(image(namespace), ts, keys));
                }
            }
        }
        self.at.clear();
    }
}

/// A function applied per record of a keyed stream, with keyed state.
///
/// One clone runs per core; [`open`](Self::open) runs once on each core
/// before the first record and is where state is registered.
///
/// ```
/// use brisk_engine::prelude::*;
///
/// #[derive(Clone, Default)]
/// struct CountPerKey { count: ValueState<u64> }
///
/// impl KeyedProcessFunction<String, String, (String, u64)> for CountPerKey {
///     fn open(&mut self, ctx: &mut OpenContext<'_, String>) -> Result<(), UserError> {
///         self.count = ctx.value_state("count")?;
///         Ok(())
///     }
///     fn process_element(
///         &mut self,
///         word: String,
///         ctx: &mut Context<'_, String>,
///         out: &mut Collector<'_, (String, u64)>,
///     ) -> Result<(), UserError> {
///         let mut count = ctx.value(&self.count);
///         let n = count.get().copied().unwrap_or(0) + 1;
///         count.set(n);
///         out.collect((word, n));
///         Ok(())
///     }
/// }
/// ```
pub trait KeyedProcessFunction<K, I, O>: Clone + Send + 'static {
    /// Registers state; runs once per core before any record.
    fn open(&mut self, ctx: &mut OpenContext<'_, K>) -> Result<(), UserError> {
        let _ = ctx;
        Ok(())
    }

    /// Processes one record under its key.
    fn process_element(
        &mut self,
        value: I,
        ctx: &mut Context<'_, K>,
        out: &mut Collector<'_, O>,
    ) -> Result<(), UserError>;

    /// A timer registered under `ctx.current_key()` fired at `timestamp`
    /// (`ctx.time_domain()` says which clock).
    fn on_timer(
        &mut self,
        timestamp: Timestamp,
        ctx: &mut Context<'_, K>,
        out: &mut Collector<'_, O>,
    ) -> Result<(), UserError> {
        let _ = (timestamp, ctx, out);
        Ok(())
    }
}

/// Passed to [`KeyedProcessFunction::open`]: registers keyed state.
pub struct OpenContext<'a, K> {
    backend: &'a mut KeyedStateBackend<K>,
    core: usize,
    cores: usize,
}

impl<K: Eq + Hash + Clone + Serialize + DeserializeOwned + 'static> OpenContext<'_, K> {
    /// Registers (or looks up) a value state named `name`.
    pub fn value_state<T: StateValue>(&mut self, name: &str) -> Result<ValueState<T>, UserError> {
        Ok(self.backend.value_state(name)?)
    }
    /// Registers (or looks up) a list state named `name`.
    pub fn list_state<T: StateValue>(&mut self, name: &str) -> Result<ListState<T>, UserError> {
        Ok(self.backend.list_state(name)?)
    }
    /// Registers (or looks up) a map state named `name`.
    pub fn map_state<UK: Eq + Hash + StateValue, UV: StateValue>(
        &mut self,
        name: &str,
    ) -> Result<MapState<UK, UV>, UserError> {
        Ok(self.backend.map_state(name)?)
    }
    /// Registers (or looks up) a reducing state named `name`: values added
    /// for a key are folded with `reduce(accumulated, new)`.
    pub fn reducing_state<T: StateValue>(
        &mut self,
        name: &str,
        reduce: impl FnMut(T, T) -> T + 'static,
    ) -> Result<ReducingState<T>, UserError> {
        Ok(self.backend.reducing_state(name, reduce)?)
    }
    /// Registers (or looks up) an aggregating state named `name`, updated
    /// with `agg`.
    pub fn aggregating_state<IN: 'static, A: AggregateFunction<IN>>(
        &mut self,
        name: &str,
        agg: A,
    ) -> Result<AggregatingState<IN, A::Out>, UserError> {
        Ok(self.backend.aggregating_state(name, agg)?)
    }
    /// Registers states whose values expire in processing time (Flink's
    /// `StateTtlConfig`; see `brisk_state::ttl`):
    /// `ctx.with_ttl(StateTtlConfig::new(Duration::from_secs(3600))).value_state("last")?`.
    pub fn with_ttl(&mut self, ttl: StateTtlConfig) -> WithTtl<'_, K> {
        self.backend.with_ttl(ttl)
    }
    /// This core's index (the subtask index).
    pub fn core(&self) -> usize {
        self.core
    }
    /// Number of cores (the parallelism).
    pub fn cores(&self) -> usize {
        self.cores
    }
}

/// Passed to [`KeyedProcessFunction::process_element`] and
/// [`KeyedProcessFunction::on_timer`]: the current key, time, keyed state and
/// timers scoped to the key.
pub struct Context<'a, K> {
    key: CurrentKey<'a, K>,
    backend: &'a mut KeyedStateBackend<K>,
    timers: &'a mut Timers<K>,
    timestamp: Option<Timestamp>,
    watermark: Timestamp,
    now_ms: i64,
    domain: Option<TimeDomain>,
}

impl<K: Eq + Hash + Clone + Serialize + DeserializeOwned + 'static> Context<'_, K> {
    /// The key of the record being processed.
    pub fn current_key(&self) -> &K {
        self.key.key()
    }
    /// The record's event timestamp, if the stream carries event time; in
    /// `on_timer`, the timer's timestamp.
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.timestamp
    }
    /// In `on_timer`, which clock fired; `None` while processing an element.
    pub fn time_domain(&self) -> Option<TimeDomain> {
        self.domain
    }
    /// Processing time (epoch ms) from the job's clock.
    pub fn current_processing_time(&self) -> i64 {
        self.now_ms
    }
    /// Fires `on_timer` once the watermark reaches `timestamp` (once per key
    /// and timestamp however often registered).
    pub fn register_event_time_timer(&mut self, timestamp: Timestamp) {
        self.timers.event.register(self.key.key(), self.key.hash(), &(), timestamp);
    }
    /// Deletes an event-time timer of the current key.
    pub fn delete_event_time_timer(&mut self, timestamp: Timestamp) {
        self.timers.event.delete(self.key.key(), self.key.hash(), &(), timestamp);
    }
    /// Fires `on_timer` once processing time reaches `timestamp` (epoch ms).
    pub fn register_processing_time_timer(&mut self, timestamp: i64) {
        self.timers.processing.register(self.key.key(), self.key.hash(), &(), timestamp);
    }
    /// Deletes a processing-time timer of the current key.
    pub fn delete_processing_time_timer(&mut self, timestamp: i64) {
        self.timers.processing.delete(self.key.key(), self.key.hash(), &(), timestamp);
    }
    /// The operator's current (combined) watermark.
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }
    /// The value state `handle` for the current key.
    pub fn value<T: StateValue>(&mut self, handle: &ValueState<T>) -> ValueAccess<'_, K, T> {
        self.backend.value(handle, self.key)
    }
    /// The list state `handle` for the current key.
    pub fn list<T: StateValue>(&mut self, handle: &ListState<T>) -> ListAccess<'_, K, T> {
        self.backend.list(handle, self.key)
    }
    /// The map state `handle` for the current key.
    pub fn map<UK: Eq + Hash + StateValue, UV: StateValue>(
        &mut self,
        handle: &MapState<UK, UV>,
    ) -> MapAccess<'_, K, UK, UV> {
        self.backend.map(handle, self.key)
    }
    /// The reducing state `handle` for the current key.
    pub fn reducing<T: StateValue>(&mut self, handle: &ReducingState<T>) -> ReducingAccess<'_, K, T> {
        self.backend.reducing(handle, self.key)
    }
    /// The aggregating state `handle` for the current key.
    pub fn aggregating<IN: 'static, OUT: 'static>(
        &mut self,
        handle: &AggregatingState<IN, OUT>,
    ) -> AggregatingAccess<'_, K, IN, OUT> {
        self.backend.aggregating(handle, self.key)
    }
}

/// Collects a function's output records; each takes the input record's
/// timestamp unless given its own.
pub struct Collector<'a, O> {
    batch: &'a mut Batch<O>,
    timestamp: Option<Timestamp>,
}

impl<'a, O> Collector<'a, O> {
    pub(crate) fn new(batch: &'a mut Batch<O>, timestamp: Option<Timestamp>) -> Self {
        Self { batch, timestamp }
    }

    /// Emits a record with the input's timestamp.
    #[inline]
    pub fn collect(&mut self, record: O) {
        self.batch.push_with(record, self.timestamp);
    }

    /// A collector into the same output whose records get `timestamp`
    /// (when the stream carries event time).
    pub(crate) fn with_timestamp(&mut self, timestamp: Timestamp) -> Collector<'_, O> {
        Collector { batch: self.batch, timestamp: self.timestamp.map(|_| timestamp) }
    }

    /// Emits a record with its own timestamp (ignored when the stream carries
    /// no event time: every record of a batch has a timestamp or none does).
    #[inline]
    pub fn collect_with_timestamp(&mut self, record: O, timestamp: Timestamp) {
        self.batch.push_with(record, self.timestamp.map(|_| timestamp));
    }
}

/// The operator running a [`KeyedProcessFunction`] on one core. Its input
/// carries each record's key hash (computed once, before the exchange). It is
/// shared by the chain (a [`Push`] handle) and the core's processing-time
/// service (a [`Ticker`]).
pub(crate) struct KeyedProcessOp<K, I, O, KF, F>(RefCell<ProcessInner<K, I, O, KF, F>>);

pub(crate) struct ProcessInner<K, I, O, KF, F> {
    key_fn: KF,
    f: F,
    backend: KeyedStateBackend<K>,
    timers: Timers<K>,
    out: Batch<O>,
    next: Box<dyn Push<O>>,
    info: OperatorInfo,
    watermark: Timestamp,
    owner: KeyOwner,
    core: Rc<Core>,
    /// The operator's node id: names its state in checkpoints.
    node: usize,
    /// Log backend counters, published after every batch.
    log_counters: Option<LogCounters>,
    /// Manifest paths of segments adopted from a restored checkpoint (the
    /// log's own segments are named by id).
    adopted_paths: std::collections::HashMap<u64, String>,
    _input: PhantomData<fn(I)>,
}

/// The log tier's counters of one operator on one core, as metrics:
/// `state_evicted`, `state_written`, `state_read_back`, `state_segments_compacted`.
pub(crate) struct LogCounters {
    counters: [crate::metrics::Counter; 4],
    last: [u64; 4],
}

impl LogCounters {
    pub fn new(core: &Core, operator: &str) -> Self {
        let names = ["state_evicted", "state_written", "state_read_back", "state_segments_compacted"];
        Self { counters: names.map(|n| core.counter(operator, n)), last: [0; 4] }
    }

    fn update<K>(&mut self, backend: &KeyedStateBackend<K>)
    where
        K: Eq + Hash + Clone + Serialize + DeserializeOwned + 'static,
    {
        let Some(st) = backend.log_stats() else { return };
        self.record(st.spill, &st.log);
    }

    /// Publishes the counters of a log tier (totals since the start).
    pub fn record(&mut self, spill: brisk_state::log::SpillStats, log: &brisk_state::log::LogStats) {
        let now = [spill.evicted, spill.written, spill.faulted_in, log.compacted];
        for ((c, now), last) in self.counters.iter().zip(now).zip(self.last) {
            c.add(now - last);
        }
        self.last = now;
    }
}

/// Entry kinds of a keyed process operator's snapshot.
mod state_kind {
    /// `Vec<(name, kind)>` of the registered states; first in every file.
    pub const DIRECTORY: u8 = 1;
    /// One key's value of one state: tag = the state's directory index.
    pub const STATE: u8 = 2;
    /// `(key, timestamp)` of an event-time timer (read, no longer written).
    pub const EVENT_TIMER: u8 = 3;
    /// `(key, timestamp)` of a processing-time timer (read, no longer written).
    pub const PROCESSING_TIMER: u8 = 4;
    /// `Vec<(path, id, len)>`: the log segments that hold this core's state
    /// entries, in log order (incremental checkpoints; instead of `STATE`).
    pub const LOG_SEGMENTS: u8 = 5;
    /// `((), timestamp, keys)`: event-time timers of one key group.
    pub const EVENT_TIMERS: u8 = 6;
    /// `((), timestamp, keys)`: processing-time timers of one key group.
    pub const PROCESSING_TIMERS: u8 = 7;
    /// Incremental checkpoint: the log's index base and the records
    /// forgotten since (before [`LOG_SEGMENTS`]).
    pub const LOG_INDEX: u8 = 8;
    /// `Vec<(path, id, len)>`: the chain of timer files holding this
    /// core's timers (incremental checkpoints; instead of `EVENT_TIMERS`
    /// and `PROCESSING_TIMERS`).
    pub const TIMER_FILES: u8 = 9;
}

/// Which core owns a key hash: the invariant every keyed operator asserts on
/// receipt (in debug builds), because the exchange must route each key group
/// to the core that owns its state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyOwner {
    pub max_parallelism: brisk_state::MaxParallelism,
    pub cores: usize,
    pub core: usize,
}

impl KeyOwner {
    #[inline]
    pub fn debug_check(&self, hash: u64) {
        debug_assert_eq!(
            self.max_parallelism.owner_of_hash(hash, self.cores),
            self.core,
            "record routed to a core that does not own its key group"
        );
    }
}

impl<K, I, O, KF, F> KeyedProcessOp<K, I, O, KF, F>
where
    K: Eq + Hash + Clone + Serialize + DeserializeOwned + 'static,
    I: 'static,
    O: 'static,
    KF: FnMut(&I) -> K + 'static,
    F: KeyedProcessFunction<K, I, O>,
{
    pub fn new(
        key_fn: KF,
        mut f: F,
        next: Box<dyn Push<O>>,
        info: OperatorInfo,
        owner: KeyOwner,
        core: Rc<Core>,
        node: usize,
    ) -> Result<Rc<Self>, JobError> {
        let mut backend =
            core.keyed_state_backend(node, owner.max_parallelism.range_for(owner.core, owner.cores));
        let mut ctx = OpenContext { backend: &mut backend, core: info.core, cores: owner.cores };
        info.guard(|| f.open(&mut ctx))?.map_err(|e| info.user_error(format!("open failed: {e}")))?;
        let log_counters = backend.is_log().then(|| LogCounters::new(&core, &info.name));
        let op = Rc::new(Self(RefCell::new(ProcessInner {
            key_fn,
            f,
            backend,
            timers: Timers::new(core.memory_charge()),
            out: Batch::default(),
            next,
            info,
            watermark: MIN_WATERMARK,
            owner,
            core: core.clone(),
            node,
            log_counters,
            adopted_paths: Default::default(),
            _input: PhantomData,
        })));
        op.0.borrow_mut().restore()?;
        core.timers.register(op.clone());
        Ok(op)
    }
}

impl<K, I, O, KF, F> ProcessInner<K, I, O, KF, F>
where
    K: Eq + Hash + Clone + Serialize + DeserializeOwned + 'static,
    F: KeyedProcessFunction<K, I, O>,
{
    /// Writes the state directory, every state entry (or, incremental, the
    /// log's segments) and every timer, tagged by key group, as this
    /// operator's state for checkpoint `id`.
    fn snapshot(&mut self, id: u64) {
        let Some(cp) = self.core.checkpoints.clone() else { return };
        let started = std::time::Instant::now();
        let mp = self.owner.max_parallelism;
        let incremental = self.core.config.incremental_checkpoints && !cp.is_savepoint(id);
        // A full snapshot leaves out what has expired by now.
        self.backend.set_current_time(self.core.now_ms());
        // Every dirty entry into the log, which is sealed: its segments are
        // the state now.
        let (segments, index) = crate::checkpoint::incremental::flush(&self.core, id, || {
            let segments = if incremental { self.backend.flush_log() } else { None };
            let index = segments.as_ref().and_then(|list| self.backend.checkpoint_index(list));
            (segments, index)
        });
        let mut w = StateWriter::new();
        let directory: Vec<(&str, &str)> = self.backend.descriptors().collect();
        w.entry(state_kind::DIRECTORY, NO_KEY_GROUP, &directory);
        let mut segments = segments;
        let mut files = crate::checkpoint::incremental::name_segments(
            &mut w,
            [state_kind::LOG_SEGMENTS, state_kind::LOG_INDEX],
            segments.as_ref(),
            index.as_ref(),
            &self.adopted_paths,
            self.node,
            self.info.core,
        );
        if files.is_none() {
            for index in 0..directory.len() {
                self.backend.snapshot_state(index, &mut |hash, bytes| {
                    w.tagged_raw(state_kind::STATE, mp.key_group(hash), index as u32, bytes);
                });
            }
        }
        crate::checkpoint::timer_files::snapshot(
            &mut self.timers,
            &mut crate::checkpoint::timer_files::NoPart,
            &mut w,
            [state_kind::EVENT_TIMERS, state_kind::PROCESSING_TIMERS, state_kind::TIMER_FILES],
            segments.as_mut().zip(files.as_mut()),
            self.backend.log(),
            mp,
            (self.node, self.info.core),
            |()| (),
        );
        match (segments, files, self.backend.log()) {
            (Some(list), Some(files), Some(log)) => crate::checkpoint::incremental::write_after_segments(
                &self.core,
                id,
                self.node,
                w.finish(),
                started,
                (list, index),
                files,
                log.clone(),
            ),
            _ => cp.write_state(id, self.node, w.finish(), started),
        }
    }

    /// Loads the key groups this core owns from the restored checkpoint.
    fn restore(&mut self) -> Result<(), JobError> {
        let (core, info, owner) = (self.core.clone(), self.info.clone(), self.owner);
        let restored = core.checkpoints.as_ref().and_then(|c| c.restored.clone());
        let range = owner.max_parallelism.range_for(owner.core, owner.cores);
        let kinds = [state_kind::TIMER_FILES, state_kind::LOG_SEGMENTS];
        crate::checkpoint::prefetch_restore(&core, self.node, &info, &owner, kinds)?;
        // Snapshot index -> this backend's state id; every file starts with
        // its directory.
        let mut ids: Vec<usize> = Vec::new();
        // A file's index entry comes just before its segments.
        let mut index = None;
        restore_owned(&core, self.node, &info, &owner, |entry| {
            match entry.kind {
                state_kind::DIRECTORY => {
                    let directory: Vec<(String, String)> = entry.decode()?;
                    ids = self.map_directory(&directory)?;
                }
                state_kind::STATE => {
                    let (index, bytes) = entry.split_tag()?;
                    let Some(&id) = ids.get(index as usize) else {
                        return Err(entry.error(format!("state index {index} not in the directory")).into());
                    };
                    self.backend.restore_entry(id, bytes)?;
                }
                state_kind::LOG_INDEX => {
                    index = Some(crate::checkpoint::incremental::IndexEntry::decode(&entry)?);
                }
                state_kind::LOG_SEGMENTS => {
                    let log = self.backend.log().cloned();
                    let mut tables = BackendLog {
                        backend: &mut self.backend,
                        ids: &ids,
                        key_group: |hash| owner.max_parallelism.key_group(hash),
                    };
                    crate::checkpoint::incremental::restore_segments(
                        &entry,
                        index.take(),
                        restored.as_deref(),
                        log.as_ref(),
                        range,
                        &mut self.adopted_paths,
                        &mut tables,
                    )?;
                }
                kind @ (state_kind::EVENT_TIMER | state_kind::PROCESSING_TIMER) => {
                    let (key, ts): (K, i64) = entry.decode()?;
                    let keys = std::slice::from_ref(&key);
                    self.timers.restore_group(kind == state_kind::EVENT_TIMER, &(), ts, keys);
                }
                kind @ (state_kind::EVENT_TIMERS | state_kind::PROCESSING_TIMERS) => {
                    let ((), ts, keys): ((), i64, Vec<K>) = entry.decode()?;
                    self.timers.restore_group(kind == state_kind::EVENT_TIMERS, &(), ts, &keys);
                }
                state_kind::TIMER_FILES => crate::checkpoint::timer_files::restore(
                    &entry,
                    restored.as_deref(),
                    &mut self.timers,
                    &mut |entry| Err(format!("unknown timer entry kind {}", entry.kind)),
                    range,
                    owner.max_parallelism,
                    |()| (),
                )?,
                other => return Err(entry.error(format!("unknown entry kind {other}")).into()),
            }
            Ok(())
        })?;
        self.timers.index_restored();
        Ok(())
    }

    /// Matches a checkpoint's state directory with the states `open`
    /// registered: same names, same kinds.
    fn map_directory(&self, directory: &[(String, String)]) -> Result<Vec<usize>, String> {
        directory
            .iter()
            .map(|(name, kind)| match self.backend.find(name) {
                Some((id, registered)) if registered == kind => Ok(id),
                Some((_, registered)) => Err(format!(
                    "state '{name}' is {kind} in the checkpoint but the function registers it as {registered}"
                )),
                None => Err(format!(
                    "the checkpoint holds state '{name}' ({kind}) that the function no longer registers in open()"
                )),
            })
            .collect()
    }

    fn flush(&mut self) -> Result<(), JobError> {
        if self.out.is_empty() { Ok(()) } else { self.next.push(&mut self.out) }
    }

    /// Fires every timer of `domain` due at `upto`, in timestamp order.
    fn fire_timers(&mut self, domain: TimeDomain, upto: i64) -> Result<(), JobError> {
        self.flush()?;
        let now_ms = self.core.now_ms();
        self.backend.set_current_time(now_ms);
        loop {
            let queue = match domain {
                TimeDomain::EventTime => &mut self.timers.event,
                TimeDomain::ProcessingTime => &mut self.timers.processing,
            };
            let Some(timer) = queue.pop_due(upto) else { break };
            let Self { f, backend, timers, out, info, watermark, .. } = self;
            let out_ts = (domain == TimeDomain::EventTime).then_some(timer.timestamp);
            let mut ctx = Context {
                key: CurrentKey::new(&timer.key, timer.key_hash),
                backend,
                timers,
                timestamp: Some(timer.timestamp),
                watermark: *watermark,
                now_ms,
                domain: Some(domain),
            };
            info.guard(|| f.on_timer(timer.timestamp, &mut ctx, &mut Collector::new(out, out_ts)))?
                .map_err(|e| info.user_error(e))?;
            if self.out.len() >= BATCH_RECORDS_MAX {
                self.flush()?;
            }
        }
        self.timers.recharge();
        self.flush()
    }
}

impl<K, I, O, KF, F> Ticker for KeyedProcessOp<K, I, O, KF, F>
where
    K: Eq + Hash + Clone + Serialize + DeserializeOwned + 'static,
    F: KeyedProcessFunction<K, I, O>,
{
    fn next_due_ms(&self) -> Option<i64> {
        self.0.borrow().timers.processing.next_timestamp()
    }

    fn fire(&self, now_ms: i64) -> Result<(), JobError> {
        self.0.borrow_mut().fire_timers(TimeDomain::ProcessingTime, now_ms)
    }
}

/// The chain's handle on a [`KeyedProcessOp`].
pub(crate) struct KeyedProcessHandle<K, I, O, KF, F>(pub Rc<KeyedProcessOp<K, I, O, KF, F>>);

impl<K, I, O, KF, F> Push<(u64, I)> for KeyedProcessHandle<K, I, O, KF, F>
where
    K: Eq + Hash + Clone + Serialize + DeserializeOwned + 'static,
    KF: FnMut(&I) -> K,
    F: KeyedProcessFunction<K, I, O>,
{
    fn push(&mut self, batch: &mut Batch<(u64, I)>) -> Result<(), JobError> {
        let mut guard = self.0.0.borrow_mut();
        let s = &mut *guard;
        let now_ms = s.core.now_ms();
        s.backend.set_current_time(now_ms);
        let ProcessInner { key_fn, f, backend, timers, out, info, watermark, owner, .. } = s;
        info.guard(|| -> Result<(), UserError> {
            for ((hash, value), timestamp) in batch.drain() {
                owner.debug_check(hash);
                let key = key_fn(&value);
                let mut ctx = Context {
                    key: CurrentKey::new(&key, hash),
                    backend,
                    timers,
                    timestamp,
                    watermark: *watermark,
                    now_ms,
                    domain: None,
                };
                f.process_element(value, &mut ctx, &mut Collector::new(out, timestamp))?;
            }
            Ok(())
        })?
        .map_err(|e| info.user_error(e))?;
        if let Some(c) = &mut s.log_counters {
            c.update(&s.backend);
        }
        s.timers.recharge();
        s.flush()
    }

    fn control(&mut self, control: Control) -> Result<(), JobError> {
        let mut guard = self.0.0.borrow_mut();
        let s = &mut *guard;
        match control {
            Control::Watermark(w) => {
                s.watermark = w;
                s.fire_timers(TimeDomain::EventTime, w)?;
            }
            Control::EndOfInput if s.core.batch_mode() && !s.core.is_stopping() => {
                // Flink's batch execution fires pending processing-time timers
                // at the end of input.
                s.fire_timers(TimeDomain::ProcessingTime, MAX_WATERMARK)?;
            }
            Control::Barrier(id) => {
                // Output up to the barrier is already pushed (every push
                // flushes); the state is as of the barrier.
                s.snapshot(id);
            }
            Control::EndOfInput | Control::Status(_) | Control::Latency(_) => {}
        }
        s.next.control(control)
    }
}

/// A keyed process function's state backend as a restore of its log sees
/// it; `ids` maps the checkpoint's state numbers to the backend's.
struct BackendLog<'a, K, G> {
    backend: &'a mut KeyedStateBackend<K>,
    ids: &'a [usize],
    key_group: G,
}

impl<K, G> crate::checkpoint::incremental::LogTables for BackendLog<'_, K, G>
where
    K: Eq + Hash + Clone + Serialize + DeserializeOwned + 'static,
    G: Fn(u64) -> u32,
{
    fn replay(&mut self, seg: u32, scope: brisk_state::KeyGroupRange, _indexed: bool) -> Result<(), String> {
        let (ids, key_group) = (self.ids, &self.key_group);
        self.backend
            .replay_segment(seg, |hash| scope.contains(key_group(hash)), |old| ids.get(old as usize).copied())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    fn index_usable(&self) -> bool {
        // The base's tables are named by the checkpoint's state numbers.
        self.ids.iter().enumerate().all(|(i, &id)| i == id)
    }
    fn load_index(&mut self, base: &brisk_state::log::index::BaseFile) -> Result<usize, String> {
        self.backend.load_index(base).map_err(|e| e.to_string())
    }
    fn finish_index(&mut self, forgotten: &[brisk_state::log::index::ForgottenRef]) {
        self.backend.finish_index(forgotten)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::format::entries;
    use crate::window::assigner::Window;

    /// Every timer of a queue, in firing order.
    fn timers(q: &TimerQueue<u64, Window>) -> Vec<(u64, Window, i64)> {
        q.iter().map(|(k, _, w, ts)| (*k, *w, ts)).collect()
    }

    /// Restores the timer groups of a snapshot into fresh queues; returns
    /// them and the largest group seen.
    fn round_trip(t: &Timers<u64, Window>, key_group: impl Fn(u64) -> u32) -> (Timers<u64, Window>, usize) {
        let mut w = StateWriter::new();
        t.snapshot_groups(&mut w, [6, 7], &key_group, |win| (win.start(), win.end()));
        let payload = w.finish();
        let mut back = Timers::new(None);
        let mut largest = 0;
        for e in entries(&payload) {
            let e = e.expect("a written entry reads back");
            let ((start, end), ts, keys): ((i64, i64), i64, Vec<u64>) = e.decode().expect("decodes");
            assert!(matches!(e.kind, 6 | 7), "kind {}", e.kind);
            for k in &keys {
                assert_eq!(
                    key_group(brisk_state::key_hash(k)),
                    e.key_group,
                    "key {k} filed under its key group"
                );
            }
            largest = largest.max(keys.len());
            back.restore_group(e.kind == 6, &Window::time(start, end), ts, &keys);
        }
        (back, largest)
    }

    #[test]
    fn timer_groups_restore_every_timer_of_both_domains() {
        let seed = fastrand::u64(..);
        println!("seed {seed}");
        let mut rng = fastrand::Rng::with_seed(seed);
        let mp = brisk_state::MaxParallelism::new(128).expect("valid");
        let mut t: Timers<u64, Window> = Timers::new(None);
        for _ in 0..20_000 {
            let key = rng.u64(..5_000);
            let ts = 1_000 * rng.i64(1..4);
            // Two windows end at each timestamp (as sessions may).
            let window = Window::time(ts - 1_000 * rng.i64(1..3), ts);
            let queue = if rng.bool() { &mut t.event } else { &mut t.processing };
            queue.register(&key, brisk_state::key_hash(&key), &window, ts - 1);
        }
        let (back, largest) = round_trip(&t, |h| mp.key_group(h));
        assert!(largest <= TIMER_GROUP_KEYS_MAX);
        for (a, b) in [(&t.event, &back.event), (&t.processing, &back.processing)] {
            let (mut x, mut y) = (timers(a), timers(b));
            assert_eq!(a.len(), b.len());
            // Firing order by timestamp is kept; ties may be reordered
            // between key groups.
            let order = |v: &[(u64, Window, i64)]| v.iter().map(|t| t.2).collect::<Vec<_>>();
            assert_eq!(order(&x), order(&y));
            x.sort();
            y.sort();
            assert_eq!(x, y);
        }
    }

    #[test]
    fn a_large_timer_group_is_split_and_keeps_registration_order() {
        let mut t: Timers<u64, Window> = Timers::new(None);
        let window = Window::time(0, 1_000);
        let n = 2 * TIMER_GROUP_KEYS_MAX as u64 + 17;
        for key in (0..n).rev() {
            t.event.register(&key, brisk_state::key_hash(&key), &window, 999);
        }
        // One key group: the order within it must survive.
        let (back, largest) = round_trip(&t, |_| 0);
        assert_eq!(largest, TIMER_GROUP_KEYS_MAX);
        assert_eq!(timers(&back.event), timers(&t.event));
        assert_eq!(back.event.len() as u64, n);
    }
}
