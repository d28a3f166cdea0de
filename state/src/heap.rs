//! The in-memory (heap) keyed state backend.
//!
//! Owned by one keyed operator on one core (`!Send` in practice: the engine
//! creates it on its core and never moves it). Each registered state is a
//! [`StateTable`]: a hash table from key to value that stores the key's stable
//! hash beside each entry, so a lookup never re-hashes the key and a snapshot
//! can recompute the entry's key group from the stored hash.
//!
//! State handles ([`ValueState`], [`ListState`], [`MapState`]) are small typed
//! indices: a user function registers them once (`open`) and passes them back
//! with the current key ([`CurrentKey`]) to get an accessor scoped to that key.
//!
//! Every type held in state is a [`StateValue`] (serde), so the backend can
//! snapshot itself: [`KeyedStateBackend::snapshot_state`] encodes each entry
//! as `postcard((key, value))` beside the key's hash (the engine tags it with
//! its key group), and [`KeyedStateBackend::restore_entry`] decodes one back.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::rc::Rc;

use crate::hot::HotTable;
use rustc_hash::FxBuildHasher;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::access::{AggOps, AggOpsOf, Cells, Lists, Maps, ReduceFn};
pub use crate::access::{AggregatingAccess, ListAccess, MapAccess, ReducingAccess, ValueAccess};
use crate::log::spill::{DIRTY, HotEntry, LOGGED, REFERENCED, Spill};
use crate::log::{Loc, LogStore, MemoryBudget, Record, SpillStats};
use crate::ttl::{Expire, Purge, Stamped, StampedList, StateTtlConfig, TtlNow};

/// A type keyed state can hold: it serializes (serde), so checkpoints can
/// capture it. Derive `Serialize` and `Deserialize` for your own types.
pub trait StateValue: Serialize + DeserializeOwned + 'static {}
impl<T: Serialize + DeserializeOwned + 'static> StateValue for T {}

/// The key a record is processed under, with its stable hash
/// ([`crate::key_hash`]). Cheap to copy.
#[derive(Debug)]
pub struct CurrentKey<'a, K> {
    key: &'a K,
    hash: u64,
}

impl<K> Clone for CurrentKey<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K> Copy for CurrentKey<'_, K> {}

impl<'a, K> CurrentKey<'a, K> {
    /// Pairs a key with its hash; the hash must be [`crate::key_hash`] of the key.
    #[inline]
    pub fn new(key: &'a K, hash: u64) -> Self {
        Self { key, hash }
    }

    /// The key.
    #[inline]
    pub fn key(&self) -> &'a K {
        self.key
    }

    /// The key's stable hash.
    #[inline]
    pub fn hash(&self) -> u64 {
        self.hash
    }
}

/// Errors from registering state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// A state name was registered twice with different kinds or types.
    Conflict {
        /// The state's name.
        name: String,
        /// What it was registered as first.
        existing: String,
        /// What the second registration asked for.
        requested: String,
    },
    /// A state was registered with a time-to-live under one millisecond.
    InvalidTtl {
        /// The state's name.
        name: String,
        /// The TTL asked for.
        ttl: std::time::Duration,
    },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Conflict { name, existing, requested } => write!(
                f,
                "state '{name}' is already registered as {existing}, cannot register it as {requested}"
            ),
            StateError::InvalidTtl { name, ttl } => {
                write!(f, "state '{name}': a time-to-live must be at least 1 ms, got {ttl:?}")
            }
        }
    }
}

impl std::error::Error for StateError {}

pub(crate) struct Entry<K, V> {
    hash: u64,
    key: K,
    value: V,
    /// [`DIRTY`] and [`REFERENCED`] (used only under the log backend).
    flags: u8,
}

impl<K: Clone + Serialize, V: Serialize> HotEntry<K, V> for Entry<K, V> {
    fn hash(&self) -> u64 {
        self.hash
    }
    fn key(&self) -> std::borrow::Cow<'_, K> {
        std::borrow::Cow::Borrowed(&self.key)
    }
    fn encode(&self, out: &mut Vec<u8>) -> usize {
        crate::log::spill::encode_entry(&self.key, &self.value, out)
    }
    fn flags(&mut self) -> &mut u8 {
        &mut self.flags
    }
}

/// The log tier's operations with the serde bounds erased, so that the
/// table's own methods (which have none) can reach it.
trait Tier<K, V> {
    fn fault_in(&mut self, hash: u64, key: &K) -> Option<V>;
    fn observe(&mut self, key: &K, value: &V);
    fn forget(&mut self, hash: u64, key: &K, logged: Option<bool>);
    fn maintain(&mut self, hot: &mut HotTable<Entry<K, V>>, hash: u64);
    fn flush(&mut self, hot: &mut HotTable<Entry<K, V>>);
    fn for_each_cold(&self, hot: &HotTable<Entry<K, V>>, out: &mut dyn FnMut(u64, &[u8]));
    fn is_live(&self, hash: u64, loc: Loc) -> bool;
    fn prefetch_cold(&self, hash: u64);
    fn tombstone_still_needed(&self, rec: &Record<'_>) -> bool;
    fn relocate(&mut self, hash: u64, old: Loc, new: Loc);
    fn replay(&mut self, log: &mut LogStore, loc: Loc, rec: &Record<'_>) -> Result<(), String>;
    fn stats(&self) -> SpillStats;
    fn cold_len(&self) -> usize;
    fn sweep_cold(&mut self, checks: usize, expired: &mut dyn FnMut(&V) -> bool) -> u64;
    fn indexed(&mut self) -> &mut dyn crate::log::IndexedTable;
}

impl<K, V> Tier<K, V> for Spill<K, V>
where
    K: Eq + Clone + Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    fn fault_in(&mut self, hash: u64, key: &K) -> Option<V> {
        Spill::fault_in(self, hash, key)
    }
    fn forget(&mut self, hash: u64, key: &K, logged: Option<bool>) {
        Spill::forget(self, hash, key, logged)
    }
    fn observe(&mut self, key: &K, value: &V) {
        Spill::observe(self, key, value)
    }
    fn maintain(&mut self, hot: &mut HotTable<Entry<K, V>>, hash: u64) {
        Spill::maintain(self, hot, hash)
    }
    fn flush(&mut self, hot: &mut HotTable<Entry<K, V>>) {
        Spill::flush(self, hot)
    }
    fn for_each_cold(&self, hot: &HotTable<Entry<K, V>>, out: &mut dyn FnMut(u64, &[u8])) {
        Spill::for_each_cold(self, |h, k| hot.find(h, |e| e.key == *k).is_some(), out)
    }
    fn is_live(&self, hash: u64, loc: Loc) -> bool {
        Spill::is_live(self, hash, loc)
    }
    fn prefetch_cold(&self, hash: u64) {
        Spill::prefetch_cold(self, hash)
    }
    fn tombstone_still_needed(&self, rec: &Record<'_>) -> bool {
        Spill::tombstone_still_needed(self, rec)
    }
    fn relocate(&mut self, hash: u64, old: Loc, new: Loc) {
        Spill::relocate(self, hash, old, new)
    }
    fn replay(&mut self, log: &mut LogStore, loc: Loc, rec: &Record<'_>) -> Result<(), String> {
        Spill::replay(self, log, loc, rec)
    }
    fn stats(&self) -> SpillStats {
        self.stats
    }
    fn cold_len(&self) -> usize {
        Spill::cold_len(self)
    }
    fn sweep_cold(&mut self, checks: usize, expired: &mut dyn FnMut(&V) -> bool) -> u64 {
        Spill::sweep_cold(self, checks, expired)
    }
    fn indexed(&mut self) -> &mut dyn crate::log::IndexedTable {
        self
    }
}

/// A hash table from key to `V` that keeps each key's stable hash.
///
/// Under the log backend the table also has a log tier: entries it evicted
/// are in the log, and an access must [`touch`](Self::touch) its key first
/// to bring it back; the accessors of [`KeyedStateBackend`] do.
pub struct StateTable<K, V> {
    table: HotTable<Entry<K, V>>,
    spill: Option<Box<dyn Tier<K, V>>>,
}

impl<K, V> Default for StateTable<K, V> {
    fn default() -> Self {
        Self { table: HotTable::new(), spill: None }
    }
}

impl<K, V> StateTable<K, V>
where
    K: Eq + Clone + Serialize + DeserializeOwned + 'static,
    V: Serialize + DeserializeOwned + 'static,
{
    /// A table whose entries beyond the core's `budget` go to `log` as
    /// records of state `state`.
    pub fn with_log(log: Rc<RefCell<LogStore>>, state: u32, budget: Rc<MemoryBudget>) -> Self {
        let spill = Spill::<K, V>::new(log, state, budget, std::mem::size_of::<Entry<K, V>>());
        Self { table: HotTable::new(), spill: Some(Box::new(spill)) }
    }
}

impl<K: Eq + Clone, V> StateTable<K, V> {
    /// Makes `at`'s key ready for access under the log backend: charges the
    /// table to the budget (evicting if the core is over it), then reads the
    /// key back from the log if it was evicted. Does nothing on the heap
    /// backend.
    #[inline]
    pub fn touch(&mut self, at: CurrentKey<'_, K>) {
        let Some(spill) = &mut self.spill else { return };
        spill.maintain(&mut self.table, at.hash);
        if let Some(e) = self.table.find_mut(at.hash, |e| e.key == *at.key) {
            e.flags |= REFERENCED;
            spill.observe(&e.key, &e.value);
        } else if let Some(value) = spill.fault_in(at.hash, at.key) {
            self.table.insert_unique(
                at.hash,
                Entry { hash: at.hash, key: at.key.clone(), value, flags: REFERENCED | LOGGED },
                |e| e.hash,
            );
        }
    }

    /// The value stored for `at`'s key.
    #[inline]
    pub fn get(&self, at: CurrentKey<'_, K>) -> Option<&V> {
        self.table.find(at.hash, |e| e.key == *at.key).map(|e| &e.value)
    }

    /// The value stored for `at`'s key, mutably.
    #[inline]
    pub fn get_mut(&mut self, at: CurrentKey<'_, K>) -> Option<&mut V> {
        self.table.find_mut(at.hash, |e| e.key == *at.key).map(|e| {
            e.flags |= DIRTY;
            &mut e.value
        })
    }

    /// The value for `at`'s key, inserting `init()` first if absent.
    #[inline]
    pub fn get_or_insert_with(&mut self, at: CurrentKey<'_, K>, init: impl FnOnce() -> V) -> &mut V {
        let entry = self.table.entry(at.hash, |e| e.key == *at.key, |e| e.hash).or_insert_with(|| Entry {
            hash: at.hash,
            key: at.key.clone(),
            value: init(),
            flags: 0,
        });
        let entry = entry.into_mut();
        entry.flags |= DIRTY;
        &mut entry.value
    }

    /// Stores `value` for `at`'s key, returning the previous value.
    #[inline]
    pub fn insert(&mut self, at: CurrentKey<'_, K>, value: V) -> Option<V> {
        match self.table.entry(at.hash, |e| e.key == *at.key, |e| e.hash) {
            hashbrown::hash_table::Entry::Occupied(mut o) => {
                o.get_mut().flags |= DIRTY;
                Some(std::mem::replace(&mut o.get_mut().value, value))
            }
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(Entry { hash: at.hash, key: at.key.clone(), value, flags: DIRTY });
                None
            }
        }
    }

    /// Removes `at`'s key, returning its value.
    #[inline]
    pub fn remove(&mut self, at: CurrentKey<'_, K>) -> Option<V> {
        let removed = match self.table.find_entry(at.hash, |e| e.key == *at.key) {
            Ok(o) => Some(o.remove().0),
            Err(_) => None,
        };
        if let Some(spill) = &mut self.spill {
            spill.forget(at.hash, at.key, removed.as_ref().map(|e| e.flags & LOGGED != 0));
        }
        removed.map(|e| e.value)
    }

    /// Number of keys with a value in memory (under the log backend, evicted
    /// keys are not counted: see [`cold_len`](Self::cold_len)).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no key has a value in memory.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Keys with a record in the log (0 on the heap backend).
    pub fn cold_len(&self) -> usize {
        self.spill.as_ref().map_or(0, |s| s.cold_len())
    }

    /// Counters of the log tier (zero on the heap backend).
    pub fn spill_stats(&self) -> SpillStats {
        self.spill.as_ref().map(|s| s.stats()).unwrap_or_default()
    }

    /// Every `(key, key hash, value)` held in memory, in no particular order
    /// (on the heap backend: every entry).
    pub fn iter(&self) -> impl Iterator<Item = (&K, u64, &V)> {
        self.table.iter().map(|e| (&e.key, e.hash, &e.value))
    }

    /// Removes and yields every entry.
    pub fn drain(&mut self) -> impl Iterator<Item = (K, u64, V)> + '_ {
        self.table.drain().map(|e| (e.key, e.hash, e.value))
    }
}

/// Handle to a value state: one `T` per key.
pub struct ValueState<T> {
    id: usize,
    _type: PhantomData<fn() -> T>,
}

/// Handle to a list state: a list of `T` per key.
pub struct ListState<T> {
    id: usize,
    _type: PhantomData<fn() -> T>,
}

/// Handle to a map state: a map from `UK` to `UV` per key.
pub struct MapState<UK, UV> {
    id: usize,
    _type: PhantomData<fn() -> (UK, UV)>,
}

/// Handle to a reducing state: one `T` per key, folded with the state's
/// reduce function as values are added (Flink's `ReducingState`).
pub struct ReducingState<T> {
    id: usize,
    _type: PhantomData<fn() -> T>,
}

/// Handle to an aggregating state: one accumulator per key, updated with
/// the state's [`AggregateFunction`] as `IN` values are added and read as
/// `OUT` (Flink's `AggregatingState`).
pub struct AggregatingState<IN, OUT> {
    id: usize,
    _type: PhantomData<fn(IN) -> OUT>,
}

/// An incremental aggregation (Flink's `AggregateFunction`): one
/// accumulator, updated per element. Used by [`AggregatingState`] and by
/// windows' `aggregate`.
pub trait AggregateFunction<IN>: Clone + Send + 'static {
    /// The accumulator.
    type Acc: Serialize + DeserializeOwned + 'static;
    /// The result.
    type Out: 'static;
    /// A fresh accumulator.
    fn create_accumulator(&mut self) -> Self::Acc;
    /// Adds one element.
    fn add(&mut self, value: IN, acc: Self::Acc) -> Self::Acc;
    /// The result for an accumulator.
    fn get_result(&mut self, acc: &Self::Acc) -> Self::Out;
    /// Combines two accumulators (merging windows).
    fn merge(&mut self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
}

macro_rules! handle_impls {
    ($name:ident<$($p:ident),+>) => {
        impl<$($p),+> Clone for $name<$($p),+> {
            fn clone(&self) -> Self { *self }
        }
        impl<$($p),+> Copy for $name<$($p),+> {}
        impl<$($p),+> fmt::Debug for $name<$($p),+> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}#{}", stringify!($name), self.id)
            }
        }
        impl<$($p),+> Default for $name<$($p),+> {
            /// An unregistered handle; using it before registering is a bug
            /// and panics with the state's kind named.
            fn default() -> Self { Self { id: usize::MAX, _type: PhantomData } }
        }
    };
}
handle_impls!(ValueState<T>);
handle_impls!(ListState<T>);
handle_impls!(MapState<UK, UV>);
handle_impls!(ReducingState<T>);
handle_impls!(AggregatingState<IN, OUT>);

/// The map type inside a [`MapState`] entry (deterministic hashing).
pub type StateMap<UK, UV> = HashMap<UK, UV, FxBuildHasher>;

/// Why a snapshot entry could not be restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreError(pub String);

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RestoreError {}

/// A [`StateTable`] with its value type erased, able to snapshot and restore
/// itself.
trait ErasedTable<K> {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// [`StateTable::touch`], at processing time `now` (TTL states sweep
    /// a few entries every so many touches).
    fn touch(&mut self, at: CurrentKey<'_, K>, now: i64);
    /// Every entry as `postcard((key, value))` with its key hash; a TTL
    /// state leaves out entries wholly expired at `now`.
    fn snapshot(&self, scratch: &mut Vec<u8>, out: &mut dyn FnMut(u64, &[u8]), now: i64);
    fn restore(&mut self, bytes: &[u8]) -> Result<(), RestoreError>;
    /// Log tier: whether the record at `loc` is the newest of its key.
    fn is_live(&self, hash: u64, loc: Loc) -> bool;
    /// Log tier: a hint that `is_live` or `tombstone_still_needed` will
    /// soon look up a key of hash `hash`.
    fn prefetch_index(&self, hash: u64);
    /// Log tier: whether a tombstone must survive compaction.
    fn tombstone_still_needed(&self, rec: &Record<'_>) -> bool;
    /// Log tier: the record at `old` was copied to `new`.
    fn relocate(&mut self, hash: u64, old: Loc, new: Loc);
    /// Log tier: writes every dirty entry.
    fn flush(&mut self);
    /// Log tier: applies one record of a restored log.
    fn replay(&mut self, log: &mut LogStore, loc: Loc, rec: &Record<'_>) -> Result<(), String>;
    fn stats(&self) -> (usize, usize, SpillStats);
    /// Log tier: the index of cold keys, as index bases see it.
    fn indexed(&mut self) -> Option<&mut dyn crate::log::IndexedTable>;
}

impl<K, V> ErasedTable<K> for StateTable<K, V>
where
    K: Eq + Hash + Clone + Serialize + DeserializeOwned + 'static,
    V: Serialize + DeserializeOwned + 'static,
{
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn touch(&mut self, at: CurrentKey<'_, K>, _now: i64) {
        StateTable::touch(self, at)
    }

    fn snapshot(&self, scratch: &mut Vec<u8>, out: &mut dyn FnMut(u64, &[u8]), _now: i64) {
        self.snapshot_where(scratch, out, None);
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), RestoreError> {
        let (key, value): (K, V) = postcard::from_bytes(bytes).map_err(|e| RestoreError(e.to_string()))?;
        let hash = crate::key_hash(&key);
        let at = CurrentKey::new(&key, hash);
        self.touch(at);
        self.insert(at, value);
        Ok(())
    }

    fn is_live(&self, hash: u64, loc: Loc) -> bool {
        self.spill.as_ref().is_some_and(|s| s.is_live(hash, loc))
    }

    fn prefetch_index(&self, hash: u64) {
        if let Some(s) = &self.spill {
            s.prefetch_cold(hash);
        }
    }

    fn tombstone_still_needed(&self, rec: &Record<'_>) -> bool {
        self.spill.as_ref().is_some_and(|s| s.tombstone_still_needed(rec))
    }

    fn relocate(&mut self, hash: u64, old: Loc, new: Loc) {
        if let Some(s) = &mut self.spill {
            s.relocate(hash, old, new);
        }
    }

    fn flush(&mut self) {
        if let Some(s) = &mut self.spill {
            s.flush(&mut self.table);
        }
    }

    fn replay(&mut self, log: &mut LogStore, loc: Loc, rec: &Record<'_>) -> Result<(), String> {
        match &mut self.spill {
            Some(s) => s.replay(log, loc, rec),
            None => Err("the heap backend has no log to replay".into()),
        }
    }

    fn stats(&self) -> (usize, usize, SpillStats) {
        (self.len(), self.cold_len(), self.spill_stats())
    }

    fn indexed(&mut self) -> Option<&mut dyn crate::log::IndexedTable> {
        self.spill.as_mut().map(|s| s.indexed())
    }
}

impl<K, V> StateTable<K, V>
where
    K: Eq + Hash + Clone + Serialize + DeserializeOwned + 'static,
    V: Serialize + DeserializeOwned + 'static,
{
    /// [`ErasedTable::snapshot`], leaving out the entries `keep` rejects
    /// (cold ones are decoded to ask it).
    fn snapshot_where(
        &self,
        scratch: &mut Vec<u8>,
        out: &mut dyn FnMut(u64, &[u8]),
        keep: Option<&dyn Fn(&V) -> bool>,
    ) {
        if let Some(spill) = &self.spill {
            match keep {
                None => spill.for_each_cold(&self.table, out),
                Some(keep) => spill.for_each_cold(&self.table, &mut |hash, bytes| {
                    // A record that does not decode is kept: the restore
                    // reports it with the state's name.
                    if postcard::from_bytes::<(K, V)>(bytes).map_or(true, |(_, v)| keep(&v)) {
                        out(hash, bytes);
                    }
                }),
            }
        }
        for (key, hash, value) in self.iter() {
            if keep.is_some_and(|keep| !keep(value)) {
                continue;
            }
            scratch.clear();
            // Encoding into a Vec fails only if a Serialize impl itself
            // fails, which derived and std impls never do.
            let buf =
                postcard::to_extend(&(key, value), std::mem::take(scratch)).expect("state values encode");
            *scratch = buf;
            out(hash, scratch);
        }
    }

    /// Walks `buckets` buckets of the in-memory table on from `*hand`,
    /// letting `purge` remove what expired from each entry; an entry left
    /// empty is removed (with a tombstone if the log has a record of it).
    /// Then checks `cold` records of the log the same way. Returns how many
    /// keys lost their value.
    fn sweep(
        &mut self,
        hand: &mut usize,
        buckets: usize,
        cold: usize,
        mut purge: impl FnMut(&mut V) -> Purge,
        expired: &mut dyn FnMut(&V) -> bool,
    ) -> u64 {
        let n = self.table.num_buckets();
        let mut gone = 0;
        for _ in 0..buckets.min(n) {
            *hand = if *hand + 1 >= n { 0 } else { *hand + 1 };
            let Some(mut slot) = self.table.get_bucket_entry(*hand) else { continue };
            match purge(&mut slot.get_mut().value) {
                Purge::Kept => {}
                Purge::Trimmed => slot.get_mut().flags |= DIRTY,
                Purge::Empty => {
                    let (e, _) = slot.remove();
                    if let Some(spill) = &mut self.spill {
                        spill.forget(e.hash, &e.key, Some(e.flags & LOGGED != 0));
                    }
                    gone += 1;
                }
            }
        }
        if let Some(spill) = &mut self.spill {
            gone += spill.sweep_cold(cold, expired);
        }
        gone
    }
}

/// Accesses of a TTL state between two sweep steps.
const TTL_SWEEP_EVERY: u32 = 64;
/// In-memory buckets one sweep step walks (two per access).
const TTL_SWEEP_BUCKETS: usize = 128;
/// Log records one sweep step checks (one per access).
const TTL_SWEEP_RECORDS: usize = 64;

/// A state registered with a TTL: its table of stamped values, and the
/// sweep that removes expired ones in the background (see [`crate::ttl`]).
struct TtlTable<K, V> {
    table: StateTable<K, V>,
    ttl: StateTtlConfig,
    /// Touches since the last sweep step.
    touches: u32,
    /// The sweep's position in the in-memory table's buckets.
    hand: usize,
    /// Keys whose values the sweeps removed.
    expired: u64,
}

impl<K, V> ErasedTable<K> for TtlTable<K, V>
where
    K: Eq + Hash + Clone + Serialize + DeserializeOwned + 'static,
    V: Expire + Serialize + DeserializeOwned + 'static,
{
    fn as_any_mut(&mut self) -> &mut dyn Any {
        &mut self.table
    }

    fn touch(&mut self, at: CurrentKey<'_, K>, now: i64) {
        self.touches += 1;
        if self.touches >= TTL_SWEEP_EVERY {
            self.touches = 0;
            let ttl = self.ttl.at(now);
            self.expired += self.table.sweep(
                &mut self.hand,
                TTL_SWEEP_BUCKETS,
                TTL_SWEEP_RECORDS,
                |v| v.purge(&ttl),
                &mut |v| v.all_expired(&ttl),
            );
        }
        self.table.touch(at);
    }

    fn snapshot(&self, scratch: &mut Vec<u8>, out: &mut dyn FnMut(u64, &[u8]), now: i64) {
        let ttl = self.ttl.at(now);
        self.table.snapshot_where(scratch, out, Some(&|v: &V| !v.all_expired(&ttl)));
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), RestoreError> {
        self.table.restore(bytes)
    }

    fn is_live(&self, hash: u64, loc: Loc) -> bool {
        self.table.is_live(hash, loc)
    }

    fn prefetch_index(&self, hash: u64) {
        self.table.prefetch_index(hash)
    }

    fn tombstone_still_needed(&self, rec: &Record<'_>) -> bool {
        self.table.tombstone_still_needed(rec)
    }

    fn relocate(&mut self, hash: u64, old: Loc, new: Loc) {
        self.table.relocate(hash, old, new)
    }

    fn flush(&mut self) {
        ErasedTable::flush(&mut self.table)
    }

    fn replay(&mut self, log: &mut LogStore, loc: Loc, rec: &Record<'_>) -> Result<(), String> {
        self.table.replay(log, loc, rec)
    }

    fn stats(&self) -> (usize, usize, SpillStats) {
        let (hot, cold, mut spill) = self.table.stats();
        // The log's sweep counted its own; add the in-memory ones.
        spill.expired = self.expired;
        (hot, cold, spill)
    }

    fn indexed(&mut self) -> Option<&mut dyn crate::log::IndexedTable> {
        self.table.indexed()
    }
}

/// The registered states as compaction sees them.
struct Tables<'a, K>(&'a mut Vec<Registered<K>>);

impl<K> crate::log::index::IndexedTables for Tables<'_, K> {
    fn states(&self) -> Vec<u32> {
        (0..self.0.len() as u32).collect()
    }
    fn table(&mut self, state: u32) -> Option<&mut dyn crate::log::IndexedTable> {
        self.0.get_mut(state as usize)?.table.indexed()
    }
}

impl<K> crate::log::compact::CompactTarget for Tables<'_, K> {
    fn is_live(&self, state: u32, hash: u64, loc: Loc) -> bool {
        self.0.get(state as usize).is_some_and(|r| r.table.is_live(hash, loc))
    }
    fn prefetch(&self, state: u32, hash: u64) {
        if let Some(r) = self.0.get(state as usize) {
            r.table.prefetch_index(hash);
        }
    }
    fn tombstone_still_needed(&self, state: u32, rec: &Record<'_>) -> bool {
        self.0.get(state as usize).is_some_and(|r| r.table.tombstone_still_needed(rec))
    }
    fn relocate(&mut self, state: u32, hash: u64, old: Loc, new: Loc) {
        if let Some(r) = self.0.get_mut(state as usize) {
            r.table.relocate(hash, old, new);
        }
    }
}

/// Downcasts a state's table to the type its accessor `what` expects.
fn downcast<'t, T: 'static>(table: &'t mut dyn Any, what: &str, kind: &str) -> &'t mut T {
    match table.downcast_mut::<T>() {
        Some(t) => t,
        None => panic!("{what} handle does not belong to this operator's state ({kind})"),
    }
}

impl<K> Registered<K> {
    fn downcast<T: 'static>(&mut self, what: &str) -> &mut T {
        downcast(self.table.as_any_mut(), what, &self.kind)
    }
}

/// Registers states with a time-to-live: what
/// [`KeyedStateBackend::with_ttl`] returns.
pub struct WithTtl<'a, K> {
    backend: &'a mut KeyedStateBackend<K>,
    ttl: StateTtlConfig,
}

impl<K: Eq + Hash + Clone + Serialize + DeserializeOwned + 'static> WithTtl<'_, K> {
    /// Registers (or looks up) a value state with this TTL.
    pub fn value_state<T: StateValue>(self, name: &str) -> Result<ValueState<T>, StateError> {
        self.backend.value_state_with(name, Some(self.ttl))
    }

    /// Registers (or looks up) a list state whose elements expire one by one.
    pub fn list_state<T: StateValue>(self, name: &str) -> Result<ListState<T>, StateError> {
        self.backend.list_state_with(name, Some(self.ttl))
    }

    /// Registers (or looks up) a map state whose entries expire one by one.
    pub fn map_state<UK: Eq + Hash + StateValue, UV: StateValue>(
        self,
        name: &str,
    ) -> Result<MapState<UK, UV>, StateError> {
        self.backend.map_state_with(name, Some(self.ttl))
    }

    /// Registers (or looks up) a reducing state with this TTL.
    pub fn reducing_state<T: StateValue>(
        self,
        name: &str,
        reduce: impl FnMut(T, T) -> T + 'static,
    ) -> Result<ReducingState<T>, StateError> {
        self.backend.reducing_state_with(name, reduce, Some(self.ttl))
    }

    /// Registers (or looks up) an aggregating state with this TTL.
    pub fn aggregating_state<IN: 'static, A: AggregateFunction<IN>>(
        self,
        name: &str,
        agg: A,
    ) -> Result<AggregatingState<IN, A::Out>, StateError> {
        self.backend.aggregating_state_with(name, agg, Some(self.ttl))
    }
}

struct Registered<K> {
    name: String,
    kind: String,
    table: Box<dyn ErasedTable<K>>,
    /// Its time-to-live, if registered with one.
    ttl: Option<StateTtlConfig>,
    /// The function of a reducing (`ReduceFn<T>`) or aggregating
    /// (`Box<dyn AggOps<K, IN, OUT>>`) state.
    function: Option<Box<dyn Any>>,
}

/// The log behind a [`KeyedStateBackend`] under the log backend.
struct LogTier {
    log: Rc<RefCell<LogStore>>,
    /// The index bases its checkpoints refer to.
    index: crate::log::LogIndex,
    budget: Rc<MemoryBudget>,
    /// Accesses since the log was last maintained.
    accesses: u32,
}

/// Accesses between two looks at the log (finished writes, compaction).
const LOG_MAINTAIN_EVERY: u32 = 1024;

/// Counters of a backend's log tier.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogBackendStats {
    /// Entries in memory, over all states.
    pub hot: usize,
    /// Keys with a record in the log, over all states.
    pub cold: usize,
    /// Per-table counters, summed.
    pub spill: SpillStats,
    /// The log's counters.
    pub log: crate::log::LogStats,
    /// Bytes of the log (live and dead).
    pub log_bytes: usize,
    /// Bytes of superseded records in it.
    pub dead_bytes: usize,
}

/// All keyed state of one keyed operator on one core.
pub struct KeyedStateBackend<K> {
    states: Vec<Registered<K>>,
    tier: Option<LogTier>,
    /// Processing time (epoch ms) that TTL states are checked against.
    now_ms: i64,
    _key: PhantomData<K>,
}

impl<K> Default for KeyedStateBackend<K> {
    fn default() -> Self {
        Self { states: Vec::new(), tier: None, now_ms: 0, _key: PhantomData }
    }
}

impl<K: Eq + Hash + Clone + Serialize + DeserializeOwned + 'static> KeyedStateBackend<K> {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty log backend: every state keeps what fits in `budget` (shared
    /// by the core's operators) in memory and the rest in `log`.
    pub fn with_log(log: LogStore, budget: Rc<MemoryBudget>) -> Self {
        Self {
            states: Vec::new(),
            tier: Some(LogTier {
                log: Rc::new(RefCell::new(log)),
                index: Default::default(),
                budget,
                accesses: 0,
            }),
            now_ms: 0,
            _key: PhantomData,
        }
    }

    /// Sets the processing time (epoch ms) that states with a TTL are
    /// checked against and stamped with; it starts at 0. The engine sets it
    /// from its clock before every batch, timer and snapshot.
    pub fn set_current_time(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
    }

    /// The processing time states with a TTL are checked against.
    pub fn current_time(&self) -> i64 {
        self.now_ms
    }

    /// Registers states whose values expire `ttl` after they were last
    /// written (see [`crate::ttl`]):
    /// `backend.with_ttl(ttl).value_state::<u64>("count")`.
    pub fn with_ttl(&mut self, ttl: StateTtlConfig) -> WithTtl<'_, K> {
        WithTtl { backend: self, ttl }
    }

    /// Whether this is a log backend.
    pub fn is_log(&self) -> bool {
        self.tier.is_some()
    }

    /// Counters of the log tier (`None` on the heap backend).
    pub fn log_stats(&self) -> Option<LogBackendStats> {
        let tier = self.tier.as_ref()?;
        let mut out = LogBackendStats::default();
        for s in &self.states {
            let (hot, cold, sp) = s.table.stats();
            out.hot += hot;
            out.cold += cold;
            out.spill.evicted += sp.evicted;
            out.spill.written += sp.written;
            out.spill.faulted_in += sp.faulted_in;
            out.spill.tombstones += sp.tombstones;
            out.spill.expired += sp.expired;
        }
        let log = tier.log.borrow();
        out.log = log.stats().clone();
        out.log_bytes = log.total_bytes();
        out.dead_bytes = log.dead_bytes();
        Some(out)
    }

    /// Takes in finished segment writes and compacts at most one segment
    /// whose dead fraction passed the threshold. Runs on its own every
    /// 1024 accesses; the engine may call it when idle.
    pub fn maintain_log(&mut self) {
        let Some(tier) = &mut self.tier else { return };
        tier.accesses = 0;
        let log = tier.log.clone();
        crate::log::compact::compact_once(&log, &mut Tables(&mut self.states));
    }

    /// Writes every dirty entry of every state to the log, seals it and
    /// returns its segments: they alone hold this backend's state now, and
    /// none of their files is deleted by this backend any more (the
    /// checkpoint owns them). `None` on the heap backend.
    pub fn flush_log(&mut self) -> Option<Vec<crate::log::SegmentRef>> {
        let tier = self.tier.as_ref()?;
        let log = tier.log.clone();
        for s in &mut self.states {
            s.table.flush();
        }
        let mut log = log.borrow_mut();
        log.seal();
        Some(log.publish())
    }

    /// The log (`None` on the heap backend).
    pub fn log(&self) -> Option<&Rc<RefCell<LogStore>>> {
        self.tier.as_ref().map(|t| &t.log)
    }

    /// After [`flush_log`](Self::flush_log) returned `list`: what the
    /// checkpoint refers to of the tables' indexes, writing a new index
    /// base if one is due (see [`crate::log::index`]). `None` on the heap
    /// backend, and when the log can have no base now
    /// ([`LogIndex::checkpoint`](crate::log::index::LogIndex::checkpoint)):
    /// a restore then replays every segment.
    pub fn checkpoint_index(
        &mut self,
        list: &[crate::log::SegmentRef],
    ) -> Option<crate::log::IndexCheckpoint> {
        let tier = self.tier.as_mut()?;
        let log = tier.log.clone();
        let mut log = log.borrow_mut();
        tier.index.checkpoint(&mut log, list, &mut Tables(&mut self.states))
    }

    /// Restores the index of every state from `base`, for the segments the
    /// log has adopted: the first step of a restore through an index base
    /// (see [`crate::log::index`]). The states must carry the numbers they
    /// had in the checkpoint. Returns how many keys were indexed.
    pub fn load_index(&mut self, base: &crate::log::index::BaseFile) -> Result<usize, RestoreError> {
        let Some(tier) = &self.tier else { return Err(RestoreError("not a log backend".into())) };
        let log = tier.log.borrow();
        crate::log::index::load_base(base.base(), &log, &mut Tables(&mut self.states)).map_err(RestoreError)
    }

    /// The last step of a restore through an index base, after its tail
    /// segments were replayed: unindexes the records the checkpoint names
    /// as `forgotten`, and recounts the log's dead records.
    pub fn finish_index(&mut self, forgotten: &[crate::log::index::ForgottenRef]) {
        let Some(tier) = &self.tier else { return };
        let mut log = tier.log.borrow_mut();
        crate::log::index::unindex_forgotten(forgotten, &log, &mut Tables(&mut self.states));
        crate::log::index::recount_dead(&mut log, &mut Tables(&mut self.states));
    }

    /// Rebuilds the index of the log's cold keys from segment `seg` of the
    /// log (adopted from storage by the caller), keeping the records whose
    /// key hash `owned` accepts. `state_of` maps the state number a record
    /// was written under to this backend's state. Segments must be replayed
    /// in log order.
    ///
    /// If the registration order differs from the checkpoint's, or the
    /// segment could not take its place in the log's order (see
    /// [`LogStore::adopt_verified`]), its kept records are copied into the log (under
    /// their new state numbers) and the segment is dropped: a later restore
    /// must not find records under old numbers, or out of order.
    pub fn replay_segment(
        &mut self,
        seg: u32,
        owned: impl Fn(u64) -> bool,
        state_of: impl Fn(u32) -> Option<usize>,
    ) -> Result<usize, RestoreError> {
        let Some(tier) = &self.tier else { return Err(RestoreError("not a log backend".into())) };
        let log = tier.log.clone();
        // A handle on the segment's bytes, so that its records are read in
        // place while the log is borrowed mutably for each of them.
        let Some((bytes, len)) = log.borrow().sealed_bytes(seg) else { return Ok(0) };
        let bytes = &(*bytes).as_ref()[..len];
        let mut remapped = false;
        crate::log::format::scan(bytes, |_, r| {
            remapped |= state_of(r.state).is_some_and(|id| id as u32 != r.state);
        });
        let copy = !log.borrow().in_order(seg) || remapped;
        let mut n = 0;
        let mut failed = None;
        crate::log::format::scan(bytes, |at, rec| {
            if failed.is_some() {
                return;
            }
            let loc = Loc::new(seg, at);
            let mut log = log.borrow_mut();
            if !owned(rec.hash) {
                log.kill(loc);
                return;
            }
            let Some(id) = state_of(rec.state) else {
                failed = Some(RestoreError(format!(
                    "the log holds records of state {}, which the checkpoint's directory does not name",
                    rec.state
                )));
                return;
            };
            let Some(reg) = self.states.get_mut(id) else {
                failed = Some(RestoreError(format!("state {id} is not registered")));
                return;
            };
            let loc = if copy {
                log.append(id as u32, rec.kind, rec.hash, |o| o.extend_from_slice(rec.payload))
            } else {
                loc
            };
            let rec = Record { state: id as u32, ..rec };
            match reg.table.replay(&mut log, loc, &rec) {
                Ok(()) => n += 1,
                Err(e) => failed = Some(RestoreError(format!("state '{}' ({}): {e}", reg.name, reg.kind))),
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        if copy {
            log.borrow_mut().drop_segment(seg);
        }
        Ok(n)
    }

    /// A new table of `V`, in the log if this is a log backend.
    fn new_table<V: StateValue>(&self) -> StateTable<K, V> {
        match &self.tier {
            Some(t) => {
                StateTable::<K, V>::with_log(t.log.clone(), self.states.len() as u32, t.budget.clone())
            }
            None => StateTable::<K, V>::default(),
        }
    }

    /// Registers state `name` of `kind`, stored as `V`, or with a TTL as
    /// `S` (`V` with timestamps); returns its id.
    fn register<V: StateValue, S: StateValue + Expire>(
        &mut self,
        name: &str,
        kind: String,
        ttl: Option<StateTtlConfig>,
    ) -> Result<usize, StateError> {
        let kind = match ttl {
            Some(_) => format!("{kind} with TTL"),
            None => kind,
        };
        if let Some(cfg) = ttl
            && cfg.ttl_ms() < 1
        {
            return Err(StateError::InvalidTtl { name: name.to_string(), ttl: cfg.ttl() });
        }
        if let Some(id) = self.states.iter().position(|s| s.name == name) {
            let existing = &self.states[id];
            if existing.kind != kind {
                return Err(StateError::Conflict {
                    name: name.to_string(),
                    existing: existing.kind.clone(),
                    requested: kind,
                });
            }
            return Ok(id);
        }
        let table: Box<dyn ErasedTable<K>> = match ttl {
            None => Box::new(self.new_table::<V>()),
            Some(cfg) => {
                Box::new(TtlTable { table: self.new_table::<S>(), ttl: cfg, touches: 0, hand: 0, expired: 0 })
            }
        };
        self.states.push(Registered { name: name.to_string(), kind, table, ttl, function: None });
        Ok(self.states.len() - 1)
    }

    /// Registers (or looks up, if registered with the same type) a value state.
    pub fn value_state<T: StateValue>(&mut self, name: &str) -> Result<ValueState<T>, StateError> {
        self.value_state_with(name, None)
    }

    fn value_state_with<T: StateValue>(
        &mut self,
        name: &str,
        ttl: Option<StateTtlConfig>,
    ) -> Result<ValueState<T>, StateError> {
        let kind = format!("ValueState<{}>", std::any::type_name::<T>());
        let id = self.register::<T, Stamped<T>>(name, kind, ttl)?;
        Ok(ValueState { id, _type: PhantomData })
    }

    /// Registers (or looks up) a list state.
    pub fn list_state<T: StateValue>(&mut self, name: &str) -> Result<ListState<T>, StateError> {
        self.list_state_with(name, None)
    }

    fn list_state_with<T: StateValue>(
        &mut self,
        name: &str,
        ttl: Option<StateTtlConfig>,
    ) -> Result<ListState<T>, StateError> {
        let kind = format!("ListState<{}>", std::any::type_name::<T>());
        let id = self.register::<Vec<T>, StampedList<T>>(name, kind, ttl)?;
        Ok(ListState { id, _type: PhantomData })
    }

    /// Registers (or looks up) a map state.
    pub fn map_state<UK: Eq + Hash + StateValue, UV: StateValue>(
        &mut self,
        name: &str,
    ) -> Result<MapState<UK, UV>, StateError> {
        self.map_state_with(name, None)
    }

    fn map_state_with<UK: Eq + Hash + StateValue, UV: StateValue>(
        &mut self,
        name: &str,
        ttl: Option<StateTtlConfig>,
    ) -> Result<MapState<UK, UV>, StateError> {
        let kind = format!("MapState<{}, {}>", std::any::type_name::<UK>(), std::any::type_name::<UV>());
        let id = self.register::<StateMap<UK, UV>, StateMap<UK, Stamped<UV>>>(name, kind, ttl)?;
        Ok(MapState { id, _type: PhantomData })
    }

    /// Registers (or looks up) a reducing state: values added for a key are
    /// folded with `reduce(accumulated, new)`. Registering the name again
    /// replaces the function.
    pub fn reducing_state<T: StateValue>(
        &mut self,
        name: &str,
        reduce: impl FnMut(T, T) -> T + 'static,
    ) -> Result<ReducingState<T>, StateError> {
        self.reducing_state_with(name, reduce, None)
    }

    fn reducing_state_with<T: StateValue>(
        &mut self,
        name: &str,
        reduce: impl FnMut(T, T) -> T + 'static,
        ttl: Option<StateTtlConfig>,
    ) -> Result<ReducingState<T>, StateError> {
        let kind = format!("ReducingState<{}>", std::any::type_name::<T>());
        let id = self.register::<Option<T>, Stamped<Option<T>>>(name, kind, ttl)?;
        let f: ReduceFn<T> = Box::new(reduce);
        self.states[id].function = Some(Box::new(f));
        Ok(ReducingState { id, _type: PhantomData })
    }

    /// Registers (or looks up) an aggregating state updated with `agg`.
    /// Registering the name again replaces the function.
    pub fn aggregating_state<IN: 'static, A: AggregateFunction<IN>>(
        &mut self,
        name: &str,
        agg: A,
    ) -> Result<AggregatingState<IN, A::Out>, StateError> {
        self.aggregating_state_with(name, agg, None)
    }

    fn aggregating_state_with<IN: 'static, A: AggregateFunction<IN>>(
        &mut self,
        name: &str,
        agg: A,
        ttl: Option<StateTtlConfig>,
    ) -> Result<AggregatingState<IN, A::Out>, StateError> {
        let kind = format!(
            "AggregatingState<{}, {}, {}>",
            std::any::type_name::<IN>(),
            std::any::type_name::<A::Acc>(),
            std::any::type_name::<A::Out>()
        );
        let id = self.register::<Option<A::Acc>, Stamped<Option<A::Acc>>>(name, kind, ttl)?;
        let ops: Box<dyn AggOps<K, IN, A::Out>> = Box::new(AggOpsOf(agg));
        self.states[id].function = Some(Box::new(ops));
        Ok(AggregatingState { id, _type: PhantomData })
    }

    /// Counts an access for the log's maintenance and returns the state.
    fn registered(&mut self, id: usize, what: &str) -> &mut Registered<K> {
        if let Some(tier) = &mut self.tier {
            tier.accesses += 1;
            if tier.accesses >= LOG_MAINTAIN_EVERY {
                self.maintain_log();
            }
        }
        match self.states.get_mut(id) {
            Some(state) => state,
            None => panic!("{what} handle used before it was registered in open()"),
        }
    }

    /// State `id`, touched for `at` (its entry faulted in from the log if
    /// it was evicted), with its TTL checks at the current time.
    fn entry(
        &mut self,
        id: usize,
        what: &str,
        at: CurrentKey<'_, K>,
    ) -> (&mut Registered<K>, Option<TtlNow>) {
        let now = self.now_ms;
        let state = self.registered(id, what);
        state.table.touch(at, now);
        let ttl = state.ttl.map(|c| c.at(now));
        (state, ttl)
    }

    /// The value state `handle` scoped to `at`'s key.
    #[inline]
    pub fn value<'a, T: StateValue>(
        &'a mut self,
        handle: &ValueState<T>,
        at: CurrentKey<'a, K>,
    ) -> ValueAccess<'a, K, T> {
        const WHAT: &str = "ValueState";
        let (state, ttl) = self.entry(handle.id, WHAT, at);
        let cells = match ttl {
            None => Cells::Plain(state.downcast(WHAT)),
            Some(ttl) => Cells::Ttl(state.downcast(WHAT), ttl),
        };
        ValueAccess { cells, at_key: at.key, at_hash: at.hash }
    }

    /// The list state `handle` scoped to `at`'s key.
    #[inline]
    pub fn list<'a, T: StateValue>(
        &'a mut self,
        handle: &ListState<T>,
        at: CurrentKey<'a, K>,
    ) -> ListAccess<'a, K, T> {
        const WHAT: &str = "ListState";
        let (state, ttl) = self.entry(handle.id, WHAT, at);
        let lists = match ttl {
            None => Lists::Plain(state.downcast(WHAT)),
            Some(ttl) => Lists::Ttl(state.downcast(WHAT), ttl),
        };
        ListAccess { lists, at_key: at.key, at_hash: at.hash }
    }

    /// The map state `handle` scoped to `at`'s key.
    #[inline]
    pub fn map<'a, UK: Eq + Hash + StateValue, UV: StateValue>(
        &'a mut self,
        handle: &MapState<UK, UV>,
        at: CurrentKey<'a, K>,
    ) -> MapAccess<'a, K, UK, UV> {
        const WHAT: &str = "MapState";
        let (state, ttl) = self.entry(handle.id, WHAT, at);
        let maps = match ttl {
            None => Maps::Plain(state.downcast(WHAT)),
            Some(ttl) => Maps::Ttl(state.downcast(WHAT), ttl),
        };
        MapAccess { maps, at_key: at.key, at_hash: at.hash }
    }

    /// The reducing state `handle` scoped to `at`'s key.
    pub fn reducing<'a, T: StateValue>(
        &'a mut self,
        handle: &ReducingState<T>,
        at: CurrentKey<'a, K>,
    ) -> ReducingAccess<'a, K, T> {
        const WHAT: &str = "ReducingState";
        let (state, ttl) = self.entry(handle.id, WHAT, at);
        let Registered { kind, table, function, .. } = state;
        let Some(reduce) = function.as_mut().and_then(|f| f.downcast_mut::<ReduceFn<T>>()) else {
            panic!("{WHAT} handle does not belong to this operator's state ({kind})")
        };
        let table = table.as_any_mut();
        let cells = match ttl {
            None => Cells::Plain(downcast(table, WHAT, kind)),
            Some(ttl) => Cells::Ttl(downcast(table, WHAT, kind), ttl),
        };
        ReducingAccess { cells, reduce, at_key: at.key, at_hash: at.hash }
    }

    /// The aggregating state `handle` scoped to `at`'s key.
    pub fn aggregating<'a, IN: 'static, OUT: 'static>(
        &'a mut self,
        handle: &AggregatingState<IN, OUT>,
        at: CurrentKey<'a, K>,
    ) -> AggregatingAccess<'a, K, IN, OUT> {
        let (state, ttl) = self.entry(handle.id, "AggregatingState", at);
        let Registered { kind, table, function, .. } = state;
        let Some(ops) = function.as_mut().and_then(|f| f.downcast_mut::<Box<dyn AggOps<K, IN, OUT>>>())
        else {
            panic!("AggregatingState handle does not belong to this operator's state ({kind})")
        };
        AggregatingAccess {
            table: table.as_any_mut(),
            ttl,
            ops: ops.as_mut(),
            at_key: at.key,
            at_hash: at.hash,
        }
    }

    /// Names of the registered states, in registration order.
    pub fn state_names(&self) -> impl Iterator<Item = &str> {
        self.states.iter().map(|s| s.name.as_str())
    }

    /// `(name, kind)` of every registered state, in registration order; a
    /// state's position is the `id` the snapshot methods take. The kind
    /// names the state's shape and types, e.g. `ValueState<f64>`.
    pub fn descriptors(&self) -> impl Iterator<Item = (&str, &str)> {
        self.states.iter().map(|s| (s.name.as_str(), s.kind.as_str()))
    }

    /// The id of the state named `name` and its kind.
    pub fn find(&self, name: &str) -> Option<(usize, &str)> {
        self.states.iter().position(|s| s.name == name).map(|id| (id, self.states[id].kind.as_str()))
    }

    /// Keys of state `id` with an entry in memory and with a record in the
    /// log, expired or not (what the state holds, for tests and metrics).
    /// Panics if `id` is not a registered state.
    pub fn entry_counts(&self, id: usize) -> (usize, usize) {
        let (hot, cold, _) = self.states[id].table.stats();
        (hot, cold)
    }

    /// Encodes every entry of state `id` as `postcard((key, value))` and
    /// passes it to `out` with the key's hash. Panics if `id` is not a
    /// registered state.
    pub fn snapshot_state(&self, id: usize, out: &mut dyn FnMut(u64, &[u8])) {
        let mut scratch = Vec::new();
        self.states[id].table.snapshot(&mut scratch, out, self.now_ms);
    }

    /// Decodes one entry written by [`snapshot_state`](Self::snapshot_state)
    /// into state `id` (replacing the key's value if it has one).
    pub fn restore_entry(&mut self, id: usize, bytes: &[u8]) -> Result<(), RestoreError> {
        let state = &mut self.states[id];
        state
            .table
            .restore(bytes)
            .map_err(|e| RestoreError(format!("state '{}' ({}): {e}", state.name, state.kind)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_hash;

    fn at(k: &String) -> CurrentKey<'_, String> {
        CurrentKey::new(k, key_hash(k))
    }

    #[test]
    fn value_state_is_per_key() {
        let mut b = KeyedStateBackend::<String>::new();
        let v = b.value_state::<i64>("v").unwrap();
        let (a, c) = ("a".to_string(), "c".to_string());
        b.value(&v, at(&a)).set(1);
        assert_eq!(b.value(&v, at(&a)).get(), Some(&1));
        assert_eq!(b.value(&v, at(&c)).get(), None);
        *b.value(&v, at(&c)).get_or_insert_with(|| 10) += 5;
        assert_eq!(b.value(&v, at(&c)).get(), Some(&15));
        assert_eq!(b.value(&v, at(&a)).clear(), Some(1));
        assert_eq!(b.value(&v, at(&a)).get(), None);
    }

    #[test]
    fn list_and_map_state() {
        let mut b = KeyedStateBackend::<String>::new();
        let l = b.list_state::<u32>("l").unwrap();
        let m = b.map_state::<String, u32>("m").unwrap();
        let k = "k".to_string();
        b.list(&l, at(&k)).add(1);
        b.list(&l, at(&k)).add_all([2, 3]);
        assert_eq!(b.list(&l, at(&k)).get(), &[1, 2, 3]);
        b.list(&l, at(&k)).update(vec![]);
        assert!(b.list(&l, at(&k)).get().is_empty());

        assert_eq!(b.map(&m, at(&k)).put("x".into(), 1), None);
        assert_eq!(b.map(&m, at(&k)).put("x".into(), 2), Some(1));
        b.map(&m, at(&k)).put("y".into(), 3);
        assert_eq!(b.map(&m, at(&k)).len(), 2);
        assert_eq!(b.map(&m, at(&k)).remove(&"x".to_string()), Some(2));
        assert_eq!(b.map(&m, at(&k)).remove(&"y".to_string()), Some(3));
        assert!(b.map(&m, at(&k)).is_empty());
    }

    #[test]
    fn same_name_same_type_is_the_same_state_and_conflicts_are_errors() {
        let mut b = KeyedStateBackend::<String>::new();
        let v1 = b.value_state::<i64>("s").unwrap();
        let v2 = b.value_state::<i64>("s").unwrap();
        let k = "k".to_string();
        b.value(&v1, at(&k)).set(7);
        assert_eq!(b.value(&v2, at(&k)).get(), Some(&7));
        let err = b.list_state::<i64>("s").unwrap_err();
        assert!(err.to_string().contains("already registered as ValueState<i64>"), "{err}");
    }

    #[test]
    fn snapshot_restores_every_state_into_a_fresh_backend() {
        let mut b = KeyedStateBackend::<String>::new();
        let v = b.value_state::<f64>("v").unwrap();
        let l = b.list_state::<u32>("l").unwrap();
        let m = b.map_state::<String, i64>("m").unwrap();
        let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
        for (i, k) in keys.iter().enumerate() {
            b.value(&v, at(k)).set(i as f64 / 2.0);
            b.list(&l, at(k)).add_all(0..i as u32 % 5);
            if i % 3 == 0 {
                b.map(&m, at(k)).put(format!("u{i}"), -(i as i64));
            }
        }
        let mut copy = KeyedStateBackend::<String>::new();
        let (v2, l2, m2) = (
            copy.value_state::<f64>("v").unwrap(),
            copy.list_state::<u32>("l").unwrap(),
            copy.map_state("m").unwrap(),
        );
        let mut entries = 0;
        for (id, (name, _)) in b.descriptors().enumerate() {
            let (to, _) = copy.find(name).unwrap();
            b.snapshot_state(id, &mut |hash, bytes| {
                let key: String = postcard::take_from_bytes::<String>(bytes).unwrap().0;
                assert_eq!(hash, key_hash(&key), "the hash passed is the key's");
                copy.restore_entry(to, bytes).unwrap();
                entries += 1;
            });
        }
        assert_eq!(entries, 50 + 40 + 17, "every non-empty entry is written once");
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(copy.value(&v2, at(k)).get(), Some(&(i as f64 / 2.0)));
            assert_eq!(copy.list(&l2, at(k)).get(), b.list(&l, at(k)).get());
            assert_eq!(copy.map(&m2, at(k)).get(&format!("u{i}")), b.map(&m, at(k)).get(&format!("u{i}")));
        }
        let err = copy.restore_entry(0, &[0xff, 0xff]).unwrap_err();
        assert!(err.to_string().contains("state 'v' (ValueState<f64>)"), "{err}");
    }

    #[test]
    fn table_matches_a_reference_map_on_random_operations() {
        let seed = fastrand::u64(..);
        println!("seed {seed}");
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut table = StateTable::<u64, u64>::default();
        let mut reference = std::collections::HashMap::new();
        for _ in 0..20_000 {
            let k = rng.u64(0..500);
            let a = CurrentKey::new(&k, key_hash(&k));
            match rng.u8(0..3) {
                0 => assert_eq!(table.insert(a, k * 3), reference.insert(k, k * 3)),
                1 => assert_eq!(table.remove(a), reference.remove(&k)),
                _ => assert_eq!(table.get(a), reference.get(&k)),
            }
            assert_eq!(table.len(), reference.len());
        }
    }
}
