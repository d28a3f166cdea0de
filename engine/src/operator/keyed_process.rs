//! Keyed process functions: user code that sees one record at a time with
//! the record's key and keyed state scoped to it (Flink's
//! `KeyedProcessFunction`). Timers arrive with the event-time layer.

use std::hash::Hash;
use std::marker::PhantomData;

use brisk_state::{
    CurrentKey, KeyedStateBackend, ListAccess, ListState, MapAccess, MapState, ValueAccess, ValueState,
};

use crate::batch::{Batch, Control, MIN_WATERMARK, Timestamp};
use crate::error::{JobError, OperatorInfo, UserError};
use crate::runtime::core::Push;

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
}

/// Passed to [`KeyedProcessFunction::open`]: registers keyed state.
pub struct OpenContext<'a, K> {
    backend: &'a mut KeyedStateBackend<K>,
    core: usize,
    cores: usize,
}

impl<K: Eq + Hash + Clone + 'static> OpenContext<'_, K> {
    /// Registers (or looks up) a value state named `name`.
    pub fn value_state<T: 'static>(&mut self, name: &str) -> Result<ValueState<T>, UserError> {
        Ok(self.backend.value_state(name)?)
    }
    /// Registers (or looks up) a list state named `name`.
    pub fn list_state<T: 'static>(&mut self, name: &str) -> Result<ListState<T>, UserError> {
        Ok(self.backend.list_state(name)?)
    }
    /// Registers (or looks up) a map state named `name`.
    pub fn map_state<UK: Eq + Hash + 'static, UV: 'static>(
        &mut self,
        name: &str,
    ) -> Result<MapState<UK, UV>, UserError> {
        Ok(self.backend.map_state(name)?)
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

/// Passed to [`KeyedProcessFunction::process_element`]: the current key,
/// time, and keyed state scoped to the key.
pub struct Context<'a, K> {
    key: CurrentKey<'a, K>,
    backend: &'a mut KeyedStateBackend<K>,
    timestamp: Option<Timestamp>,
    watermark: Timestamp,
}

impl<K: Eq + Hash + Clone + 'static> Context<'_, K> {
    /// The key of the record being processed.
    pub fn current_key(&self) -> &K {
        self.key.key()
    }
    /// The record's event timestamp, if the stream carries event time.
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.timestamp
    }
    /// The operator's current (combined) watermark.
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }
    /// The value state `handle` for the current key.
    pub fn value<T: 'static>(&mut self, handle: &ValueState<T>) -> ValueAccess<'_, K, T> {
        self.backend.value(handle, self.key)
    }
    /// The list state `handle` for the current key.
    pub fn list<T: 'static>(&mut self, handle: &ListState<T>) -> ListAccess<'_, K, T> {
        self.backend.list(handle, self.key)
    }
    /// The map state `handle` for the current key.
    pub fn map<UK: Eq + Hash + 'static, UV: 'static>(
        &mut self,
        handle: &MapState<UK, UV>,
    ) -> MapAccess<'_, K, UK, UV> {
        self.backend.map(handle, self.key)
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
}

/// The operator running a [`KeyedProcessFunction`] on one core. Its input
/// carries each record's key hash (computed once, before the exchange).
pub(crate) struct KeyedProcessOp<K, I, O, KF, F> {
    pub key_fn: KF,
    pub f: F,
    pub backend: KeyedStateBackend<K>,
    pub out: Batch<O>,
    pub next: Box<dyn Push<O>>,
    pub info: OperatorInfo,
    pub watermark: Timestamp,
    pub owner: KeyOwner,
    pub _input: PhantomData<fn(I)>,
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
    K: Eq + Hash + Clone + 'static,
    KF: FnMut(&I) -> K,
    F: KeyedProcessFunction<K, I, O>,
{
    pub fn new(
        key_fn: KF,
        mut f: F,
        next: Box<dyn Push<O>>,
        info: OperatorInfo,
        owner: KeyOwner,
    ) -> Result<Self, JobError> {
        let mut backend = KeyedStateBackend::new();
        let mut ctx = OpenContext { backend: &mut backend, core: info.core, cores: owner.cores };
        info.guard(|| f.open(&mut ctx))?.map_err(|e| info.user_error(format!("open failed: {e}")))?;
        Ok(Self {
            key_fn,
            f,
            backend,
            out: Batch::default(),
            next,
            info,
            watermark: MIN_WATERMARK,
            owner,
            _input: PhantomData,
        })
    }
}

impl<K, I, O, KF, F> Push<(u64, I)> for KeyedProcessOp<K, I, O, KF, F>
where
    K: Eq + Hash + Clone + 'static,
    KF: FnMut(&I) -> K,
    F: KeyedProcessFunction<K, I, O>,
{
    fn push(&mut self, batch: &mut Batch<(u64, I)>) -> Result<(), JobError> {
        let Self { key_fn, f, backend, out, info, watermark, owner, .. } = self;
        info.guard(|| -> Result<(), UserError> {
            for ((hash, value), timestamp) in batch.drain() {
                owner.debug_check(hash);
                let key = key_fn(&value);
                let mut ctx =
                    Context { key: CurrentKey::new(&key, hash), backend, timestamp, watermark: *watermark };
                f.process_element(value, &mut ctx, &mut Collector::new(out, timestamp))?;
            }
            Ok(())
        })?
        .map_err(|e| info.user_error(e))?;
        if self.out.is_empty() {
            return Ok(());
        }
        self.next.push(&mut self.out)
    }

    fn control(&mut self, control: Control) -> Result<(), JobError> {
        if let Control::Watermark(w) = control {
            self.watermark = w;
        }
        self.next.control(control)
    }
}
