//! The window operator (Flink's `WindowOperator` and `EvictingWindowOperator`).
//!
//! # Design note
//!
//! Per core, for each (key, window): the window's contents (an incremental
//! accumulator, or the element list when an evictor is set) and the trigger's
//! state slots. Timers are per (key, window, timestamp) in two
//! [`TimerQueue`]s. The algorithm is Flink's, step for step:
//!
//! - an element goes to every window the assigner gives it that is not late
//!   (`max_timestamp + allowed_lateness <= watermark`); for each, the trigger
//!   sees it, the contents absorb it, the window fires and/or purges as the
//!   trigger says, and a cleanup timer is set at `max_timestamp + lateness`;
//! - an element no window accepted goes to the late side output if it is late
//!   itself (`ts + lateness <= watermark`), otherwise it is dropped and counted;
//! - a timer asks the trigger, fires/purges, and at cleanup time drops all of
//!   the window's state and the trigger's;
//! - merging assigners (sessions) keep each key's active windows; a new window
//!   that overlaps or touches others merges with them into their cover, whose
//!   contents, trigger state and timers are merged (Flink's
//!   `MergingWindowSet.addWindow`). Contents are stored under the merged
//!   window itself, where Flink keeps an indirection to a "state window".
//!
//! Window output carries the window's `max_timestamp` as its timestamp.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::marker::PhantomData;
use std::rc::Rc;

use rustc_hash::FxBuildHasher;

use crate::batch::{BATCH_RECORDS_MAX, Batch, Control, MAX_WATERMARK, MIN_WATERMARK, Timestamp};
use crate::checkpoint::format::StateWriter;
use crate::error::{JobError, OperatorInfo, UserError};
use crate::metrics::Counter;
use crate::operator::keyed_process::{Collector, KeyOwner, TimeDomain};
use crate::runtime::core::{Core, Push};
use crate::runtime::timers::Ticker;
use crate::window::assigner::{Window, WindowAssigner, merge_windows};
use crate::window::evictor::{Evictor, EvictorContext};
use crate::window::function::{AggregateFunction, ProcessWindowFunction, WindowContext};
use crate::window::rows::{RowValue, Rows, row_hash};
use crate::window::trigger::{Trigger, TriggerContext, TriggerSlots, TriggerTimers};

/// How a window's contents are kept and emitted.
pub(crate) trait WindowLogic<K, T>: 'static {
    type Acc: Serialize + DeserializeOwned + 'static;
    type Out: 'static;
    fn add(
        &mut self,
        acc: Option<Self::Acc>,
        value: T,
        ts: Option<Timestamp>,
    ) -> Result<Self::Acc, UserError>;
    fn merge(&mut self, a: Self::Acc, b: Self::Acc) -> Result<Self::Acc, UserError>;
    /// Whether [`emit`](Self::emit) may leave no contents (an evictor may
    /// empty the window), so that a row can go before its cleanup timer
    /// fires.
    const MAY_EMPTY: bool = false;
    /// Emits the window; returns whether contents remain afterwards.
    fn emit(
        &mut self,
        key: &K,
        ctx: &WindowContext,
        acc: &mut Self::Acc,
        out: &mut Collector<'_, Self::Out>,
    ) -> Result<bool, UserError>;
}

/// Computes a window's output from a plain list of elements (for evictors).
pub(crate) trait ComputeList<K, T>: 'static {
    type Out: 'static;
    fn compute(
        &mut self,
        key: &K,
        ctx: &WindowContext,
        values: &[T],
        out: &mut Collector<'_, Self::Out>,
    ) -> Result<(), UserError>;
}

/// An incremental aggregation feeding a process function.
pub(crate) trait Incremental<T>: 'static {
    type Acc: Serialize + DeserializeOwned + 'static;
    type Result: 'static;
    fn add(&mut self, acc: Option<Self::Acc>, value: T) -> Self::Acc;
    fn merge(&mut self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
    fn result(&mut self, acc: &Self::Acc) -> Self::Result;
}

/// `reduce`: the accumulator is the reduced element.
#[derive(Clone)]
pub(crate) struct ReduceInc<F>(pub F);

impl<T: Clone + Serialize + DeserializeOwned + 'static, F: FnMut(T, T) -> T + 'static> Incremental<T>
    for ReduceInc<F>
{
    type Acc = T;
    type Result = T;
    fn add(&mut self, acc: Option<T>, value: T) -> T {
        match acc {
            None => value,
            Some(a) => (self.0)(a, value),
        }
    }
    fn merge(&mut self, a: T, b: T) -> T {
        (self.0)(a, b)
    }
    fn result(&mut self, acc: &T) -> T {
        acc.clone()
    }
}

/// `aggregate`: an [`AggregateFunction`]'s accumulator.
#[derive(Clone)]
pub(crate) struct AggInc<A>(pub A);

impl<T: 'static, A: AggregateFunction<T>> Incremental<T> for AggInc<A> {
    type Acc = A::Acc;
    type Result = A::Out;
    fn add(&mut self, acc: Option<A::Acc>, value: T) -> A::Acc {
        let acc = acc.unwrap_or_else(|| self.0.create_accumulator());
        self.0.add(value, acc)
    }
    fn merge(&mut self, a: A::Acc, b: A::Acc) -> A::Acc {
        self.0.merge(a, b)
    }
    fn result(&mut self, acc: &A::Acc) -> A::Out {
        self.0.get_result(acc)
    }
}

/// An incremental aggregation whose result goes through a process function.
pub(crate) struct IncrementalLogic<I, P, O> {
    pub inc: I,
    pub process: P,
    pub _out: PhantomData<fn() -> O>,
}

impl<I: Clone, P: Clone, O> Clone for IncrementalLogic<I, P, O> {
    fn clone(&self) -> Self {
        Self { inc: self.inc.clone(), process: self.process.clone(), _out: PhantomData }
    }
}

impl<I, P, O> IncrementalLogic<I, P, O> {
    pub fn new(inc: I, process: P) -> Self {
        Self { inc, process, _out: PhantomData }
    }
}

impl<K: 'static, T: 'static, O: 'static, I: Incremental<T>, P: ProcessWindowFunction<K, I::Result, O>>
    WindowLogic<K, T> for IncrementalLogic<I, P, O>
{
    type Acc = I::Acc;
    type Out = O;
    fn add(&mut self, acc: Option<I::Acc>, value: T, _ts: Option<Timestamp>) -> Result<I::Acc, UserError> {
        Ok(self.inc.add(acc, value))
    }
    fn merge(&mut self, a: I::Acc, b: I::Acc) -> Result<I::Acc, UserError> {
        Ok(self.inc.merge(a, b))
    }
    fn emit(
        &mut self,
        key: &K,
        ctx: &WindowContext,
        acc: &mut I::Acc,
        out: &mut Collector<'_, O>,
    ) -> Result<bool, UserError> {
        let r = self.inc.result(acc);
        self.process.process(key, ctx, std::slice::from_ref(&r), out)?;
        Ok(true)
    }
}

impl<K: 'static, T: Clone + 'static, O: 'static, I: Incremental<T>, P: ProcessWindowFunction<K, I::Result, O>>
    ComputeList<K, T> for IncrementalLogic<I, P, O>
{
    type Out = O;
    fn compute(
        &mut self,
        key: &K,
        ctx: &WindowContext,
        values: &[T],
        out: &mut Collector<'_, O>,
    ) -> Result<(), UserError> {
        let mut acc = None;
        for v in values {
            acc = Some(self.inc.add(acc, v.clone()));
        }
        if let Some(acc) = acc {
            let r = self.inc.result(&acc);
            self.process.process(key, ctx, std::slice::from_ref(&r), out)?;
        }
        Ok(())
    }
}

/// A process function over all of a window's elements.
pub(crate) struct ListLogic<P, O>(pub P, pub PhantomData<fn() -> O>);

impl<P: Clone, O> Clone for ListLogic<P, O> {
    fn clone(&self) -> Self {
        Self(self.0.clone(), PhantomData)
    }
}

impl<K: 'static, T: Serialize + DeserializeOwned + 'static, O: 'static, P: ProcessWindowFunction<K, T, O>>
    WindowLogic<K, T> for ListLogic<P, O>
{
    type Acc = Vec<T>;
    type Out = O;
    fn add(&mut self, acc: Option<Vec<T>>, value: T, _ts: Option<Timestamp>) -> Result<Vec<T>, UserError> {
        let mut v = acc.unwrap_or_default();
        v.push(value);
        Ok(v)
    }
    fn merge(&mut self, mut a: Vec<T>, mut b: Vec<T>) -> Result<Vec<T>, UserError> {
        a.append(&mut b);
        Ok(a)
    }
    fn emit(
        &mut self,
        key: &K,
        ctx: &WindowContext,
        acc: &mut Vec<T>,
        out: &mut Collector<'_, O>,
    ) -> Result<bool, UserError> {
        self.0.process(key, ctx, acc, out)?;
        Ok(true)
    }
}

impl<K: 'static, T: 'static, O: 'static, P: ProcessWindowFunction<K, T, O>> ComputeList<K, T>
    for ListLogic<P, O>
{
    type Out = O;
    fn compute(
        &mut self,
        key: &K,
        ctx: &WindowContext,
        values: &[T],
        out: &mut Collector<'_, O>,
    ) -> Result<(), UserError> {
        self.0.process(key, ctx, values, out)
    }
}

/// Keeps every element with its timestamp; evicts around the computation.
pub(crate) struct EvictingLogic<C, T> {
    pub compute: C,
    pub evictor: Box<dyn Evictor<T>>,
}

impl<C: Clone, T> Clone for EvictingLogic<C, T> {
    fn clone(&self) -> Self {
        Self { compute: self.compute.clone(), evictor: self.evictor.clone() }
    }
}

impl<K: 'static, T: Clone + Serialize + DeserializeOwned + 'static, C: ComputeList<K, T>> WindowLogic<K, T>
    for EvictingLogic<C, T>
{
    type Acc = Vec<(T, Option<Timestamp>)>;
    type Out = C::Out;
    const MAY_EMPTY: bool = true;
    fn add(
        &mut self,
        acc: Option<Self::Acc>,
        value: T,
        ts: Option<Timestamp>,
    ) -> Result<Self::Acc, UserError> {
        let mut v = acc.unwrap_or_default();
        v.push((value, ts));
        Ok(v)
    }
    fn merge(&mut self, mut a: Self::Acc, mut b: Self::Acc) -> Result<Self::Acc, UserError> {
        a.append(&mut b);
        Ok(a)
    }
    fn emit(
        &mut self,
        key: &K,
        ctx: &WindowContext,
        acc: &mut Self::Acc,
        out: &mut Collector<'_, C::Out>,
    ) -> Result<bool, UserError> {
        let ectx = EvictorContext {
            current_watermark: ctx.current_watermark,
            current_processing_time: ctx.current_processing_time,
        };
        self.evictor.evict_before(acc, &ctx.window, &ectx);
        let values: Vec<T> = acc.iter().map(|(v, _)| v.clone()).collect();
        self.compute.compute(key, ctx, &values, out)?;
        self.evictor.evict_after(acc, &ctx.window, &ectx);
        Ok(!acc.is_empty())
    }
}

/// Elements whose window rows are prefetched together before any of them is
/// processed: their cache misses overlap instead of following one another.
const PREFETCH_CHUNK: usize = 16;

/// `plan`'s answer for an element whose windows are assigned when processed.
const UNPLANNED: usize = usize::MAX;

/// When a window's state is dropped: its end plus the allowed lateness in
/// event time (`MAX_WATERMARK` if that overflows: never), its end in
/// processing time.
fn cleanup_time(event_time: bool, lateness: i64, w: &Window) -> Timestamp {
    if event_time {
        w.max_timestamp().checked_add(lateness).unwrap_or(MAX_WATERMARK)
    } else {
        w.max_timestamp()
    }
}

/// Entry kinds of the window operator's checkpoint state.
mod state_kind {
    pub const ROW: u8 = 1;
    pub const MERGING: u8 = 2;
    /// `(key, start, end, timestamp)` of one event-time timer (read, no
    /// longer written).
    pub const EVENT_TIMER: u8 = 3;
    /// `(key, start, end, timestamp)` of one processing-time timer (read,
    /// no longer written).
    pub const PROCESSING_TIMER: u8 = 4;
    /// `Vec<(path, id, len)>`: the log segments holding this core's rows
    /// (incremental checkpoints; instead of `ROW`).
    pub const LOG_SEGMENTS: u8 = 5;
    /// `((start, end), timestamp, keys)`: event-time timers of one window
    /// and key group.
    pub const EVENT_TIMERS: u8 = 6;
    /// `((start, end), timestamp, keys)`: processing-time timers of one
    /// window and key group.
    pub const PROCESSING_TIMERS: u8 = 7;
    /// Incremental checkpoint: the log's index base and the rows removed
    /// for good since (before [`LOG_SEGMENTS`]).
    pub const LOG_INDEX: u8 = 8;
    /// `Vec<(path, id, len)>`: the chain of timer files holding this
    /// core's timers (incremental checkpoints; instead of `EVENT_TIMERS`
    /// and `PROCESSING_TIMERS`).
    pub const TIMER_FILES: u8 = 9;
}

type WindowTimers<K> = crate::operator::keyed_process::Timers<K, Window>;

/// `(start, end)` of each window, as checkpoints write them.
fn window_images(windows: &[Window]) -> Vec<(i64, i64)> {
    windows.iter().map(|w| (w.start(), w.end())).collect()
}

/// Keys changed since a mark, while fewer than a limit.
pub(crate) struct ChangedKeys<K> {
    keys: std::collections::HashSet<K, FxBuildHasher>,
    limit: usize,
    overflowed: bool,
}

impl<K: Eq + Hash + Clone> ChangedKeys<K> {
    fn note(&mut self, key: &K) {
        if !self.overflowed && !self.keys.contains(key) {
            self.keys.insert(key.clone());
            if self.keys.len() > self.limit {
                self.overflowed = true;
                self.keys = Default::default();
            }
        }
    }
}

/// The merging-window sets as part of the timer chain (incremental
/// checkpoints): every key's set in a base, the sets of the keys changed
/// since the last checkpoint in the files after (an empty set: the key has
/// none left). More changed keys than an eighth of the sets (at least
/// 1024) stop the record, and the next checkpoint writes a base.
struct MergingPart<'a, K> {
    active: &'a HashMap<K, Vec<Window>, FxBuildHasher>,
    changed: &'a mut Option<ChangedKeys<K>>,
    groups: brisk_state::MaxParallelism,
}

/// The entry kind of a key's merging-window set in a timer file:
/// `(key, [(start, end)])`.
const MERGING_IN_CHAIN: u8 = crate::checkpoint::timer_files::PART_KINDS;

impl<K: Eq + Hash + Clone + Serialize + DeserializeOwned> MergingPart<'_, K> {
    fn write(&self, w: &mut StateWriter, key: &K) {
        let windows = self.active.get(key).map_or(Vec::new(), |ws| window_images(ws));
        w.entry(MERGING_IN_CHAIN, self.groups.key_group(brisk_state::key_hash(key)), &(key, windows));
    }

    /// Applies one entry of a timer file to the sets.
    fn restore(
        active: &mut HashMap<K, Vec<Window>, FxBuildHasher>,
        entry: &crate::checkpoint::format::RawEntry<'_>,
    ) -> Result<(), String> {
        if entry.kind != MERGING_IN_CHAIN {
            return Err(format!("unknown timer entry kind {}", entry.kind));
        }
        let (key, ws): (K, Vec<(i64, i64)>) = entry.decode().map_err(|e| e.to_string())?;
        if ws.is_empty() {
            active.remove(&key);
        } else {
            active.insert(key, ws.into_iter().map(|(s, e)| Window::time(s, e)).collect());
        }
        Ok(())
    }
}

impl<K: Eq + Hash + Clone + Serialize + DeserializeOwned> crate::checkpoint::timer_files::ChainPart
    for MergingPart<'_, K>
{
    fn len(&self) -> usize {
        self.active.len()
    }
    fn changes(&self) -> Option<usize> {
        self.changed.as_ref().filter(|c| !c.overflowed).map(|c| c.keys.len())
    }
    fn write_all(&self, w: &mut StateWriter) {
        for key in self.active.keys() {
            self.write(w, key);
        }
    }
    fn write_changes(&self, w: &mut StateWriter) {
        if let Some(c) = self.changed.as_ref() {
            for key in &c.keys {
                self.write(w, key);
            }
        }
    }
    fn mark(&mut self) {
        let limit = (self.active.len() / 8).max(1024);
        *self.changed = Some(ChangedKeys { keys: Default::default(), limit, overflowed: false });
    }
}

/// Timer access for one (key, window), handed to triggers.
struct Scope<'a, K> {
    key: &'a K,
    hash: u64,
    window: Window,
    timers: &'a mut WindowTimers<K>,
    end_timer: &'a mut bool,
    /// `end_timer` says exactly whether the end timer is registered (see
    /// `Inner::by_memo`).
    by_memo: bool,
}

/// Checks, in debug builds, that a timer memo the operator trusts
/// (`Inner::by_memo`) says what the queue holds (where the timestamp has
/// few enough timers to scan).
fn check_memo<K: Eq + Hash + Clone>(
    queue: &brisk_state::timers::TimerQueue<K, Window>,
    key: &K,
    window: &Window,
    at: i64,
    memo: bool,
) {
    if cfg!(debug_assertions) {
        let held = queue.scan_registered(key, window, at, 4096);
        assert!(
            held.is_none_or(|h| h == memo),
            "the memo of the timer of {window} at {at} says {memo}, the queue {held:?}"
        );
    }
}

impl<K: Eq + Hash + Clone> TriggerTimers for Scope<'_, K> {
    fn register_event_time(&mut self, time: Timestamp) {
        let at_end = time == self.window.max_timestamp();
        if at_end && self.by_memo {
            check_memo(&self.timers.event, self.key, &self.window, time, *self.end_timer);
        }
        if at_end && *self.end_timer {
            return;
        }
        if at_end && self.by_memo {
            self.timers.event.register_absent(self.key, &self.window, time);
        } else {
            self.timers.event.register(self.key, self.hash, &self.window, time);
        }
        *self.end_timer |= at_end;
    }
    fn delete_event_time(&mut self, time: Timestamp) {
        let at_end = time == self.window.max_timestamp();
        if at_end && self.by_memo {
            check_memo(&self.timers.event, self.key, &self.window, time, *self.end_timer);
        }
        if at_end && self.by_memo && !*self.end_timer {
            // Not registered (fired, or never).
            return;
        }
        self.timers.event.delete(self.key, self.hash, &self.window, time);
        if at_end {
            *self.end_timer = false;
        }
    }
    fn register_processing_time(&mut self, time: i64) {
        self.timers.processing.register(self.key, self.hash, &self.window, time);
    }
    fn delete_processing_time(&mut self, time: i64) {
        self.timers.processing.delete(self.key, self.hash, &self.window, time);
    }
}

/// The window operator on one core: a `Push` for the chain (through
/// [`WindowHandle`]) and a `Ticker` for processing-time timers.
pub(crate) struct WindowOp<K, T, KF, L: WindowLogic<K, T>>(RefCell<Inner<K, T, KF, L>>);

pub(crate) struct Inner<K, T, KF, L: WindowLogic<K, T>> {
    key_fn: KF,
    assigner: WindowAssigner<T>,
    trigger: Box<dyn Trigger<T>>,
    logic: L,
    lateness: i64,
    entries: Rows<K, L::Acc>,
    active: HashMap<K, Vec<Window>, FxBuildHasher>,
    /// Keys whose merging-window set changed since the last incremental
    /// checkpoint (`None` before the first): what the next one writes of
    /// the sets (see [`MergingPart`]).
    merging_changed: Option<ChangedKeys<K>>,
    timers: WindowTimers<K>,
    /// The rows' `end_timer` memos say exactly which end timers are
    /// registered: with a non-merging event-time assigner and the built-in
    /// event-time trigger, a window's event-time timers are its end timer
    /// and its cleanup timer (the same one without allowed lateness), and a
    /// row outlives its end timer (it is dropped only once its last timer
    /// fired). The operator then registers end timers without a lookup and
    /// skips deletions the memos rule out. Unless the window function may
    /// empty a row (an evictor), a row also outlives its cleanup timer, and
    /// `cleanup_registered` is exact too. Then the timer queue keeps no
    /// index: 17 bytes a window less, and no cache miss per new window.
    by_memo: bool,
    watermark: Timestamp,
    out: Batch<L::Out>,
    next: Box<dyn Push<L::Out>>,
    late_out: Batch<T>,
    late: Box<dyn Push<T>>,
    has_late_output: bool,
    info: OperatorInfo,
    owner: KeyOwner,
    core: Rc<Core>,
    dropped: Counter,
    windows: Vec<Window>,
    /// The windows of the chunk's elements, assigned once while prefetching
    /// (non-merging event-time assigners), with their rows' hashes.
    planned: Vec<(Window, u64)>,
    /// How many of `planned` belong to each element of the chunk.
    planned_counts: Vec<usize>,
    /// Processing time, read once per batch or timer firing (not per element).
    now_ms: i64,
    /// This operator's node (names its checkpoint files).
    node: usize,
    /// Bytes of the last snapshot: the next one reserves that much at once.
    last_snapshot_bytes: std::cell::Cell<usize>,
    /// Manifest paths of segments adopted from a restored checkpoint.
    adopted_paths: HashMap<u64, String>,
    /// Log backend counters, published after every batch.
    log_counters: Option<crate::operator::keyed_process::LogCounters>,
}

/// Everything the window operator is built from (cloned per core).
pub(crate) struct WindowSpec<T> {
    pub assigner: WindowAssigner<T>,
    pub trigger: Box<dyn Trigger<T>>,
    pub allowed_lateness: i64,
}

impl<T> Clone for WindowSpec<T> {
    fn clone(&self) -> Self {
        Self {
            assigner: self.assigner.clone(),
            trigger: self.trigger.clone(),
            allowed_lateness: self.allowed_lateness,
        }
    }
}

impl<K, T, KF, L> WindowOp<K, T, KF, L>
where
    K: Eq + Hash + Clone + Serialize + DeserializeOwned + 'static,
    T: Clone + 'static,
    KF: FnMut(&T) -> K + 'static,
    L: WindowLogic<K, T>,
{
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key_fn: KF,
        spec: WindowSpec<T>,
        logic: L,
        next: Box<dyn Push<L::Out>>,
        late: Option<Box<dyn Push<T>>>,
        info: OperatorInfo,
        owner: KeyOwner,
        core: Rc<Core>,
        node: usize,
    ) -> Result<Rc<Self>, JobError> {
        let dropped = core.counter(&info.name, "late_records_dropped");
        let entries =
            Rows::new(core.state_log(node, owner.max_parallelism.range_for(owner.core, owner.cores)));
        let log_counters = entries
            .log()
            .is_some()
            .then(|| crate::operator::keyed_process::LogCounters::new(&core, &info.name));
        let has_late_output = late.is_some();
        let by_memo = !spec.assigner.is_merging()
            && spec.assigner.is_event_time()
            && spec.trigger.trigger_type()
                == std::any::TypeId::of::<crate::window::trigger::EventTimeTrigger>();
        let op = Rc::new(Self(RefCell::new(Inner {
            key_fn,
            assigner: spec.assigner,
            trigger: spec.trigger,
            logic,
            lateness: spec.allowed_lateness,
            entries,
            active: HashMap::default(),
            merging_changed: None,
            timers: WindowTimers::new(core.memory_charge()),
            by_memo,
            watermark: MIN_WATERMARK,
            out: Batch::default(),
            next,
            late_out: Batch::default(),
            late: late.unwrap_or_else(|| Box::new(crate::runtime::core::Discard)),
            has_late_output,
            info,
            owner,
            core: core.clone(),
            dropped,
            windows: Vec::new(),
            planned: Vec::with_capacity(PREFETCH_CHUNK),
            planned_counts: Vec::with_capacity(PREFETCH_CHUNK),
            now_ms: core.now_ms(),
            node,
            last_snapshot_bytes: std::cell::Cell::new(0),
            adopted_paths: HashMap::new(),
            log_counters,
        })));
        op.0.borrow_mut().restore()?;
        core.timers.register(op.clone());
        Ok(op)
    }
}

impl<K, T, KF, L> Inner<K, T, KF, L>
where
    K: Eq + Hash + Clone + Serialize + DeserializeOwned + 'static,
    T: Clone + 'static,
    KF: FnMut(&T) -> K + 'static,
    L: WindowLogic<K, T>,
{
    /// Writes every row (or, incremental, the log's segments), merging-window
    /// set and timer, tagged with its key group, as this operator's state
    /// for checkpoint `id`.
    fn snapshot(&mut self, id: u64) {
        let Some(cp) = self.core.checkpoints.clone() else { return };
        let started = std::time::Instant::now();
        let mp = self.owner.max_parallelism;
        let kg = |k: &K| mp.key_group(brisk_state::key_hash(k));
        let incremental = self.core.config.incremental_checkpoints && !cp.is_savepoint(id);
        // Every dirty row into the log, which is sealed: its segments hold
        // the rows now.
        let (segments, index) = crate::checkpoint::incremental::flush(&self.core, id, || {
            let segments = if incremental { self.entries.flush_log() } else { None };
            let index = segments.as_ref().and_then(|list| self.entries.checkpoint_index(list));
            (segments, index)
        });
        // Room for the last snapshot's size and a quarter more.
        let last = self.last_snapshot_bytes.get();
        let mut w = StateWriter::with_capacity(last + last / 4);
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
            for r in self.entries.hot() {
                let image = (
                    &r.key,
                    r.window.start(),
                    r.window.end(),
                    &r.acc,
                    r.slots.pairs(),
                    r.end_timer,
                    r.cleanup_registered,
                );
                w.entry(state_kind::ROW, kg(&r.key), &image);
            }
            self.entries.for_each_cold(&mut |_, payload| {
                // The log verified the record's checksum; a value that
                // does not decode is a bug, and the job restarts.
                let ((key, window), (acc, slots, end_timer, cleanup)): ((K, Window), RowValue<L::Acc>) =
                    postcard::from_bytes(payload).expect("an evicted window row decodes");
                let image = (&key, window.start(), window.end(), &acc, slots.pairs(), end_timer, cleanup);
                w.entry(state_kind::ROW, kg(&key), &image);
            });
        }
        let mut part = MergingPart { active: &self.active, changed: &mut self.merging_changed, groups: mp };
        let chained = crate::checkpoint::timer_files::snapshot(
            &mut self.timers,
            &mut part,
            &mut w,
            [state_kind::EVENT_TIMERS, state_kind::PROCESSING_TIMERS, state_kind::TIMER_FILES],
            segments.as_mut().zip(files.as_mut()),
            self.entries.log(),
            mp,
            (self.node, self.info.core),
            |win| (win.start(), win.end()),
        );
        if !chained {
            for (k, windows) in &self.active {
                w.entry(state_kind::MERGING, kg(k), &(k, window_images(windows)));
            }
        }
        let payload = w.finish();
        self.last_snapshot_bytes.set(payload.len());
        match (segments, files, self.entries.log()) {
            (Some(list), Some(files), Some(log)) => crate::checkpoint::incremental::write_after_segments(
                &self.core,
                id,
                self.node,
                payload,
                started,
                (list, index),
                files,
                log.clone(),
            ),
            _ => cp.write_state(id, self.node, payload, started),
        }
    }

    /// Loads the key groups this core owns from the restored checkpoint:
    /// timers and merging sets first, then rows, because a row from the log
    /// is live only if its window's cleanup timer is pending.
    fn restore(&mut self) -> Result<(), JobError> {
        let started = std::time::Instant::now();
        let (core, info, owner) = (self.core.clone(), self.info.clone(), self.owner);
        let restored = core.checkpoints.as_ref().and_then(|c| c.restored.clone());
        let range = owner.max_parallelism.range_for(owner.core, owner.cores);
        let kinds = [state_kind::TIMER_FILES, state_kind::LOG_SEGMENTS];
        let prefetched = crate::checkpoint::prefetch_restore(&core, self.node, &info, &owner, kinds)?;
        crate::checkpoint::restore_owned(&core, self.node, &info, &owner, |entry| {
            match entry.kind {
                state_kind::MERGING => {
                    let (key, ws): (K, Vec<(i64, i64)>) = entry.decode()?;
                    self.active.insert(key, ws.into_iter().map(|(s, e)| Window::time(s, e)).collect());
                }
                kind @ (state_kind::EVENT_TIMER | state_kind::PROCESSING_TIMER) => {
                    let (key, start, end, ts): (K, i64, i64, i64) = entry.decode()?;
                    let (window, keys) = (Window::time(start, end), std::slice::from_ref(&key));
                    self.timers.restore_group(kind == state_kind::EVENT_TIMER, &window, ts, keys);
                }
                kind @ (state_kind::EVENT_TIMERS | state_kind::PROCESSING_TIMERS) => {
                    let ((start, end), ts, keys): ((i64, i64), i64, Vec<K>) = entry.decode()?;
                    let window = Window::time(start, end);
                    self.timers.restore_group(kind == state_kind::EVENT_TIMERS, &window, ts, &keys);
                }
                state_kind::TIMER_FILES => crate::checkpoint::timer_files::restore(
                    &entry,
                    restored.as_deref(),
                    &mut self.timers,
                    &mut |entry| MergingPart::restore(&mut self.active, entry),
                    range,
                    owner.max_parallelism,
                    |(start, end)| Window::time(start, end),
                )?,
                state_kind::ROW | state_kind::LOG_SEGMENTS | state_kind::LOG_INDEX => {}
                other => return Err(entry.error(format!("unknown entry kind {other}")).into()),
            }
            Ok(())
        })?;
        if self.looks_up_timers() {
            // Indexed at once, before the first lookup.
            self.timers.index_restored();
        }
        let (event_time, lateness) = (self.assigner.is_event_time(), self.lateness);
        tracing::debug!(
            "window operator {}: timers and merging sets restored in {:?} ({prefetched} files read ahead)",
            self.node,
            started.elapsed()
        );
        // A file's index entry comes just before its segments.
        let mut index = None;
        crate::checkpoint::restore_owned(&core, self.node, &info, &owner, |entry| {
            match entry.kind {
                state_kind::ROW => {
                    type Image<K, A> = (K, i64, i64, Option<A>, Vec<(String, i64)>, bool, bool);
                    let (key, start, end, acc, slots, end_timer, cleanup): Image<K, L::Acc> =
                        entry.decode()?;
                    let window = Window::time(start, end);
                    let rh = row_hash(brisk_state::key_hash(&key), &window);
                    let row = self.entries.or_insert(&key, rh, window);
                    row.acc = acc;
                    row.slots = TriggerSlots::from_pairs(slots);
                    row.end_timer = end_timer;
                    row.cleanup_registered = cleanup;
                }
                state_kind::LOG_INDEX => {
                    index = Some(crate::checkpoint::incremental::IndexEntry::decode(&entry)?);
                }
                state_kind::LOG_SEGMENTS => {
                    let log = self.entries.log().cloned();
                    let Self { entries, timers, adopted_paths, .. } = self;
                    let queue = if event_time { &mut timers.event } else { &mut timers.processing };
                    let mut tables = WindowLog {
                        entries,
                        queue,
                        event_time,
                        lateness,
                        key_group: |hash| owner.max_parallelism.key_group(hash),
                    };
                    crate::checkpoint::incremental::restore_segments(
                        &entry,
                        index.take(),
                        restored.as_deref(),
                        log.as_ref(),
                        range,
                        adopted_paths,
                        &mut tables,
                    )?;
                }
                _ => {}
            }
            Ok(())
        })?;
        if !self.looks_up_timers() {
            // A log replayed without an index base looked timers up; nothing
            // will again.
            self.timers.event.drop_index();
        }
        Ok(())
    }

    /// Whether the operator looks its timers up once restored: unless its
    /// memos say which timers are registered (`by_memo`): those of the end
    /// timers, and those of the cleanup timers unless a row may go before
    /// its cleanup timer fires (allowed lateness with an evictor).
    fn looks_up_timers(&self) -> bool {
        !self.by_memo || (self.lateness > 0 && L::MAY_EMPTY)
    }

    fn cleanup_time(&self, w: &Window) -> Timestamp {
        cleanup_time(self.assigner.is_event_time(), self.lateness, w)
    }

    fn is_window_late(&self, w: &Window) -> bool {
        self.assigner.is_event_time() && self.cleanup_time(w) <= self.watermark
    }

    fn is_element_late(&self, ts: Timestamp) -> bool {
        self.assigner.is_event_time() && ts.saturating_add(self.lateness) <= self.watermark
    }

    /// Runs `f` with the trigger and a context for (key, window); `merged`
    /// are the slots of windows being merged into it.
    fn with_trigger<R>(
        &mut self,
        key: &K,
        hash: u64,
        window: Window,
        merged: &[TriggerSlots],
        f: impl FnOnce(&dyn Trigger<T>, &mut TriggerContext<'_>) -> R,
    ) -> R {
        let now_ms = self.now_ms;
        let Self { trigger, timers, entries, watermark, by_memo, .. } = self;
        let entry = entries.or_insert(key, row_hash(hash, &window), window);
        let mut scope =
            Scope { key, hash, window, timers, end_timer: &mut entry.end_timer, by_memo: *by_memo };
        let mut ctx = TriggerContext {
            watermark: *watermark,
            now_ms,
            timers: &mut scope,
            slots: &mut entry.slots,
            merged,
        };
        f(trigger.as_ref(), &mut ctx)
    }

    /// Removes the row if nothing is left in it; `done`: at its window's
    /// cleanup time (see `Rows::remove_done`).
    fn forget_if_empty(&mut self, key: &K, hash: u64, window: Window, done: bool) {
        if self.entries.get_mut(key, hash, window).is_some_and(|r| r.acc.is_none() && r.slots.is_empty()) {
            if done {
                self.entries.remove_done(key, hash, window);
            } else {
                self.entries.remove(key, hash, window);
            }
        }
    }

    fn emit(&mut self, key: &K, hash: u64, window: Window) -> Result<(), JobError> {
        let now_ms = self.now_ms;
        let ctx =
            WindowContext { window, current_watermark: self.watermark, current_processing_time: now_ms };
        let Self { entries, logic, out, info, .. } = self;
        let Some(entry) = entries.get_mut(key, hash, window) else { return Ok(()) };
        let Some(acc) = entry.acc.as_mut() else { return Ok(()) };
        let keep = logic
            .emit(key, &ctx, acc, &mut Collector::new(out, Some(window.max_timestamp())))
            .map_err(|e| info.user_error(e))?;
        if !keep {
            entry.acc = None;
        }
        if self.out.len() >= BATCH_RECORDS_MAX {
            self.next.push(&mut self.out)?;
        }
        Ok(())
    }

    /// Registers (`on`) or deletes the window's cleanup timer, in the
    /// assigner's time domain, keeping the row's timer memos in step.
    fn set_cleanup_timer(&mut self, key: &K, hash: u64, window: Window, on: bool) {
        let at = self.cleanup_time(&window);
        if at == MAX_WATERMARK {
            // No cleanup for "end of time".
            return;
        }
        let event_time = self.assigner.is_event_time();
        let at_end = event_time && at == window.max_timestamp();
        // Whether the timer is registered, by the row's memo: the end
        // timer's when the cleanup timer is the end timer.
        let mut memo = None;
        if let Some(r) = self.entries.get_mut(key, hash, window) {
            memo = Some(if at_end { r.end_timer } else { r.cleanup_registered });
            r.cleanup_registered = on;
            if at_end {
                r.end_timer = on;
            }
        }
        let exact = self.by_memo && (at_end || !L::MAY_EMPTY);
        let queue = if event_time { &mut self.timers.event } else { &mut self.timers.processing };
        if let Some(memo) = memo.filter(|_| exact) {
            check_memo(queue, key, &window, at, memo);
        }
        match (on, memo.filter(|_| exact)) {
            (true, Some(true)) | (false, Some(false)) => {}
            (true, Some(false)) => queue.register_absent(key, &window, at),
            (true, None) => {
                queue.register(key, hash, &window, at);
            }
            (false, _) => {
                queue.delete(key, hash, &window, at);
            }
        }
    }

    /// Adds one element (the window steps of Flink's `processElement`),
    /// with one lookup of the window's entry.
    fn add_to_window(
        &mut self,
        key: &K,
        hash: u64,
        rh: u64,
        window: Window,
        value: T,
        ts: Option<Timestamp>,
    ) -> Result<(), JobError> {
        let trigger_ts = ts.unwrap_or(MIN_WATERMARK);
        let (result, needs_cleanup_timer) = {
            let Self { trigger, timers, entries, watermark, logic, info, now_ms, by_memo, .. } = self;
            let entry = entries.or_insert(key, rh, window);
            let mut scope =
                Scope { key, hash, window, timers, end_timer: &mut entry.end_timer, by_memo: *by_memo };
            let mut ctx = TriggerContext {
                watermark: *watermark,
                now_ms: *now_ms,
                timers: &mut scope,
                slots: &mut entry.slots,
                merged: &[],
            };
            let result = trigger.on_element(&value, trigger_ts, &window, &mut ctx);
            let needs_cleanup_timer = !entry.cleanup_registered;
            entry.acc = Some(logic.add(entry.acc.take(), value, ts).map_err(|e| info.user_error(e))?);
            (result, needs_cleanup_timer)
        };
        if result.is_fire() {
            self.emit(key, hash, window)?;
        }
        if result.is_purge()
            && let Some(e) = self.entries.get_mut(key, hash, window)
        {
            e.acc = None;
        }
        if needs_cleanup_timer {
            self.set_cleanup_timer(key, hash, window, true);
        }
        Ok(())
    }

    /// For an element of a non-merging event-time window: assigns its
    /// windows into `planned` (with their rows' hashes) and starts loading
    /// their rows (a probe that prefetches the matching row, then gives up).
    /// Returns how many windows it planned, or [`UNPLANNED`].
    fn plan(
        &mut self,
        hash: u64,
        value: &T,
        ts: Option<Timestamp>,
        planned: &mut Vec<(Window, u64)>,
    ) -> usize {
        let Some(ts) = ts else { return UNPLANNED };
        if self.assigner.is_merging() || !self.assigner.is_event_time() {
            return UNPLANNED;
        }
        let mut windows = std::mem::take(&mut self.windows);
        windows.clear();
        let n = if self.assigner.assign(value, ts, &mut windows).is_ok() {
            for w in &windows {
                let rh = row_hash(hash, w);
                self.entries.prefetch(rh);
                planned.push((*w, rh));
            }
            windows.len()
        } else {
            // Let process_element report the error.
            UNPLANNED
        };
        self.windows = windows;
        n
    }

    fn process_element(
        &mut self,
        hash: u64,
        value: T,
        ts: Option<Timestamp>,
        plan: Option<&[(Window, u64)]>,
    ) -> Result<(), JobError> {
        self.owner.debug_check(hash);
        let key = (self.key_fn)(&value);
        let now_ms = self.now_ms;
        let assign_ts = if self.assigner.is_event_time() {
            ts.ok_or_else(|| {
                self.info.user_error(
                    "event-time windows need record timestamps: call assign_timestamps_and_watermarks before the window",
                )
            })?
        } else {
            now_ms
        };
        let mut value = Some(value);
        let mut skipped = true;
        if let Some(plan) = plan {
            // Windows assigned (and rows prefetched) by `plan`.
            let mut left = plan.iter().filter(|(w, _)| !self.is_window_late(w)).count();
            for &(w, rh) in plan {
                if self.is_window_late(&w) {
                    continue;
                }
                skipped = false;
                left -= 1;
                let v = if left == 0 { value.take().expect("value") } else { value.clone().expect("value") };
                self.add_to_window(&key, hash, rh, w, v, ts)?;
            }
            return self.after_windows(skipped, value, assign_ts, ts);
        }
        let mut windows = std::mem::take(&mut self.windows);
        windows.clear();
        let assigned = self.assigner.assign(value.as_ref().expect("value"), assign_ts, &mut windows);
        assigned.map_err(|e| self.info.user_error(e))?;
        if self.assigner.is_merging() {
            let last = windows.len().saturating_sub(1);
            for (i, &w) in windows.iter().enumerate() {
                let actual = self.add_merging_window(&key, hash, w)?;
                if self.is_window_late(&actual) {
                    self.retire(&key, actual);
                    continue;
                }
                skipped = false;
                let v = if i == last { value.take().expect("value") } else { value.clone().expect("value") };
                self.add_to_window(&key, hash, row_hash(hash, &actual), actual, v, ts)?;
            }
        } else {
            windows.retain(|w| !self.is_window_late(w));
            let last = windows.len().saturating_sub(1);
            for (i, &w) in windows.iter().enumerate() {
                skipped = false;
                let v = if i == last { value.take().expect("value") } else { value.clone().expect("value") };
                self.add_to_window(&key, hash, row_hash(hash, &w), w, v, ts)?;
            }
        }
        self.windows = windows;
        self.after_windows(skipped, value, assign_ts, ts)
    }

    /// An element no window took: late data goes to the side output (or is
    /// counted as dropped) when it is late.
    fn after_windows(
        &mut self,
        skipped: bool,
        value: Option<T>,
        assign_ts: Timestamp,
        ts: Option<Timestamp>,
    ) -> Result<(), JobError> {
        if skipped
            && let Some(v) = value
            && self.is_element_late(assign_ts)
        {
            if self.has_late_output {
                self.late_out.push_with(v, ts);
                if self.late_out.len() >= BATCH_RECORDS_MAX {
                    self.late.push(&mut self.late_out)?;
                }
            } else {
                self.dropped.add(1);
            }
        }
        Ok(())
    }

    fn retire(&mut self, key: &K, window: Window) {
        if let Some(list) = self.active.get_mut(key) {
            list.retain(|w| *w != window);
            if list.is_empty() {
                self.active.remove(key);
            }
            self.note_merging_change(key);
        }
    }

    /// Notes that `key`'s merging-window set changed.
    fn note_merging_change(&mut self, key: &K) {
        if let Some(c) = &mut self.merging_changed {
            c.note(key);
        }
    }

    /// Flink's `MergingWindowSet.addWindow` for one key.
    fn add_merging_window(&mut self, key: &K, hash: u64, new: Window) -> Result<Window, JobError> {
        let mut list = self.active.remove(key).unwrap_or_default();
        let mut all = list.clone();
        all.push(new);
        let mut groups = Vec::new();
        merge_windows(&mut all, |group, cover| groups.push((group, cover)));
        let mut result = new;
        let mut merged_new = false;
        let no_merges = groups.is_empty();
        for (mut group, cover) in groups {
            if let Some(pos) = group.iter().position(|w| *w == new) {
                group.remove(pos);
                merged_new = true;
                result = cover;
            }
            list.retain(|w| !group.contains(w));
            if !list.contains(&cover) {
                list.push(cover);
            }
            if !(group.contains(&cover) && group.len() == 1) {
                self.merge_into(key, hash, cover, &group)?;
            }
        }
        if no_merges || (result == new && !merged_new) {
            list.push(new);
        }
        list.sort_by_key(|w| w.start());
        self.active.insert(key.clone(), list);
        self.note_merging_change(key);
        Ok(result)
    }

    /// Flink's merge callback: trigger state and timers, then contents.
    fn merge_into(&mut self, key: &K, hash: u64, cover: Window, merged: &[Window]) -> Result<(), JobError> {
        if self.assigner.is_event_time()
            && cover.max_timestamp().saturating_add(self.lateness) <= self.watermark
        {
            return Err(self.info.user_error(format!(
                "the end timestamp of an event-time window cannot become earlier than the current watermark by merging \
                 (watermark {}, window {cover})",
                self.watermark
            )));
        }
        if !self.assigner.is_event_time() && cover.max_timestamp() <= self.core.now_ms() {
            return Err(self.info.user_error(format!(
                "the end timestamp of a processing-time window cannot become earlier than the current processing time \
                 by merging (window {cover})"
            )));
        }
        let merged_slots: Vec<TriggerSlots> = merged
            .iter()
            .map(|m| self.entries.get_mut(key, hash, *m).map(|e| e.slots.clone()).unwrap_or_default())
            .collect();
        self.with_trigger(key, hash, cover, &merged_slots, |t, ctx| t.on_merge(&cover, ctx));
        for &m in merged.iter().filter(|m| **m != cover) {
            self.with_trigger(key, hash, m, &[], |t, ctx| t.clear(&m, ctx));
            self.set_cleanup_timer(key, hash, m, false);
        }
        let mut acc: Option<L::Acc> = None;
        for &m in merged {
            let taken = if m == cover {
                self.entries.get_mut(key, hash, m).and_then(|e| e.acc.take())
            } else {
                self.entries.remove(key, hash, m).and_then(|e| e.acc)
            };
            if let Some(a) = taken {
                acc = Some(match acc {
                    None => a,
                    Some(prev) => self.logic.merge(prev, a).map_err(|e| self.info.user_error(e))?,
                });
            }
        }
        if let Some(a) = acc {
            let entry = self.entries.or_insert(key, row_hash(hash, &cover), cover);
            entry.acc = Some(match entry.acc.take() {
                None => a,
                Some(existing) => self.logic.merge(existing, a).map_err(|e| self.info.user_error(e))?,
            });
        }
        Ok(())
    }

    /// One fired timer (Flink's `onEventTime` / `onProcessingTime`).
    fn on_timer(
        &mut self,
        key: K,
        hash: u64,
        window: Window,
        time: i64,
        domain: TimeDomain,
    ) -> Result<(), JobError> {
        if self.assigner.is_merging() && !self.active.get(&key).is_some_and(|l| l.contains(&window)) {
            // A timer of a window merged away or already cleaned up.
            return Ok(());
        }
        if domain == TimeDomain::EventTime
            && let Some(r) = self.entries.get_mut(&key, hash, window)
            && time == window.max_timestamp()
        {
            r.end_timer = false;
        }
        let result = self.with_trigger(&key, hash, window, &[], |t, ctx| match domain {
            TimeDomain::EventTime => t.on_event_time(time, &window, ctx),
            TimeDomain::ProcessingTime => t.on_processing_time(time, &window, ctx),
        });
        if result.is_fire() {
            self.emit(&key, hash, window)?;
        }
        if result.is_purge()
            && let Some(e) = self.entries.get_mut(&key, hash, window)
        {
            e.acc = None;
        }
        let cleanup_domain =
            if self.assigner.is_event_time() { TimeDomain::EventTime } else { TimeDomain::ProcessingTime };
        let cleanup = domain == cleanup_domain && time == self.cleanup_time(&window);
        // A row removed now is gone for good, unless cleanup is "end of
        // time" (no cleanup timer marks such a row as live at a restore).
        let done = cleanup && time != MAX_WATERMARK;
        if cleanup {
            // Drop all state of the window, and the trigger's.
            if let Some(e) = self.entries.get_mut(&key, hash, window) {
                e.acc = None;
            }
            self.with_trigger(&key, hash, window, &[], |t, ctx| t.clear(&window, ctx));
            if self.assigner.is_merging() {
                self.retire(&key, window);
            }
        }
        self.forget_if_empty(&key, hash, window, done);
        Ok(())
    }

    fn fire_timers(&mut self, domain: TimeDomain, upto: i64) -> Result<(), JobError> {
        self.now_ms = self.core.now_ms();
        loop {
            let queue = match domain {
                TimeDomain::EventTime => &mut self.timers.event,
                TimeDomain::ProcessingTime => &mut self.timers.processing,
            };
            let Some(t) = queue.pop_due(upto) else { break };
            let info = self.info.clone();
            info.guard(|| self.on_timer(t.key, t.key_hash, t.namespace, t.timestamp, domain))??;
        }
        self.timers.recharge();
        self.flush()
    }

    fn flush(&mut self) -> Result<(), JobError> {
        if !self.out.is_empty() {
            self.next.push(&mut self.out)?;
        }
        if !self.late_out.is_empty() {
            self.late.push(&mut self.late_out)?;
        }
        Ok(())
    }
}

impl<K, T, KF, L> Ticker for WindowOp<K, T, KF, L>
where
    K: Eq + Hash + Clone + Serialize + DeserializeOwned + 'static,
    T: Clone + 'static,
    KF: FnMut(&T) -> K + 'static,
    L: WindowLogic<K, T>,
{
    fn next_due_ms(&self) -> Option<i64> {
        self.0.borrow().timers.processing.next_timestamp()
    }

    fn fire(&self, now_ms: i64) -> Result<(), JobError> {
        self.0.borrow_mut().fire_timers(TimeDomain::ProcessingTime, now_ms)
    }
}

/// The chain's handle on a [`WindowOp`].
pub(crate) struct WindowHandle<K, T, KF, L: WindowLogic<K, T>>(pub Rc<WindowOp<K, T, KF, L>>);

impl<K, T, KF, L> Push<(u64, T)> for WindowHandle<K, T, KF, L>
where
    K: Eq + Hash + Clone + Serialize + DeserializeOwned + 'static,
    T: Clone + 'static,
    KF: FnMut(&T) -> K + 'static,
    L: WindowLogic<K, T>,
{
    fn push(&mut self, batch: &mut Batch<(u64, T)>) -> Result<(), JobError> {
        let mut guard = self.0.0.borrow_mut();
        let s = &mut *guard;
        s.now_ms = s.core.now_ms();
        let info = s.info.clone();
        info.guard(|| -> Result<(), JobError> {
            let mut planned = std::mem::take(&mut s.planned);
            let mut counts = std::mem::take(&mut s.planned_counts);
            let has_ts = batch.has_timestamps();
            let Batch { records, timestamps } = batch;
            let mut tss = timestamps.drain(..);
            let mut elements = records.drain(..);
            let result = 'chunks: loop {
                // Plan the next chunk while it is still in the batch (no copy),
                // then process it: the rows' cache misses overlap.
                let ahead = elements.as_slice();
                if ahead.is_empty() {
                    break Ok(());
                }
                planned.clear();
                counts.clear();
                for (i, (hash, value)) in ahead.iter().take(PREFETCH_CHUNK).enumerate() {
                    let ts = if has_ts { tss.as_slice().get(i).copied() } else { None };
                    counts.push(s.plan(*hash, value, ts, &mut planned));
                }
                // Then the cold rows' records, whose index slots are on their way.
                for &(_, rh) in &planned {
                    s.entries.prefetch_record(rh);
                }
                let mut at = 0;
                for &n in &counts {
                    let (hash, value) = elements.next().expect("planned elements are in the batch");
                    let ts = if has_ts { tss.next() } else { None };
                    let plan = (n != UNPLANNED).then(|| &planned[at..at + n]);
                    at += if n == UNPLANNED { 0 } else { n };
                    if let Err(e) = s.process_element(hash, value, ts, plan) {
                        break 'chunks Err(e);
                    }
                }
            };
            drop((elements, tss));
            s.planned = planned;
            s.planned_counts = counts;
            result
        })??;
        if let Some(c) = &mut s.log_counters
            && let Some((spill, log)) = s.entries.log_stats()
        {
            c.record(spill, &log);
        }
        s.timers.recharge();
        s.flush()
    }

    fn control(&mut self, control: Control) -> Result<(), JobError> {
        let mut s = self.0.0.borrow_mut();
        match control {
            Control::Watermark(w) => {
                s.watermark = w;
                s.fire_timers(TimeDomain::EventTime, w)?;
                tracing::trace!(
                    target: "brisk::timers",
                    core = s.info.core,
                    watermark = w,
                    event_timers = s.timers.event.len(),
                    next = ?s.timers.event.next_timestamp(),
                    "window watermark"
                );
            }
            Control::EndOfInput if s.core.batch_mode() && !s.core.is_stopping() => {
                s.fire_timers(TimeDomain::ProcessingTime, MAX_WATERMARK)?
            }
            Control::Barrier(id) => {
                // Pending output first, then the state as of the barrier.
                s.flush()?;
                s.snapshot(id);
            }
            Control::EndOfInput | Control::Status(_) | Control::Latency(_) => {}
        }
        s.flush()?;
        s.late.control(control)?;
        s.next.control(control)
    }
}

/// Builds a [`ReduceInc`]-based logic with a pass-through function.
pub(crate) fn reduce_logic<F, T>(
    f: F,
) -> IncrementalLogic<ReduceInc<F>, crate::window::function::PassThrough, T> {
    IncrementalLogic::new(ReduceInc(f), crate::window::function::PassThrough)
}

/// A window operator's rows as a restore of their log sees them.
struct WindowLog<'a, K, A, G> {
    entries: &'a mut Rows<K, A>,
    queue: &'a mut brisk_state::timers::TimerQueue<K, Window>,
    event_time: bool,
    lateness: i64,
    key_group: G,
}

impl<K, A, G> crate::checkpoint::incremental::LogTables for WindowLog<'_, K, A, G>
where
    K: Eq + Hash + Clone + Serialize + DeserializeOwned + 'static,
    A: Serialize + DeserializeOwned + 'static,
    G: Fn(u64) -> u32,
{
    fn replay(&mut self, seg: u32, scope: brisk_state::KeyGroupRange, indexed: bool) -> Result<(), String> {
        let (queue, event_time, lateness) = (&mut *self.queue, self.event_time, self.lateness);
        // Without an index base, a row is live unless its window was
        // cleaned up: its cleanup timer is pending, or it has none. With
        // one, the checkpoint names the rows removed for good.
        let live = move |key: &K, window: Window| {
            let at = cleanup_time(event_time, lateness, &window);
            indexed || at == MAX_WATERMARK || queue.contains(key, brisk_state::key_hash(key), &window, at)
        };
        let key_group = &self.key_group;
        self.entries.replay_segment(seg, |hash| scope.contains(key_group(hash)), live)
    }
    fn index_usable(&self) -> bool {
        true
    }
    fn load_index(&mut self, base: &brisk_state::log::index::BaseFile) -> Result<usize, String> {
        self.entries.load_index(base)
    }
    fn finish_index(&mut self, forgotten: &[brisk_state::log::index::ForgottenRef]) {
        self.entries.finish_index(forgotten)
    }
}
