//! The log tier of a [`StateTable`](crate::StateTable) under the log
//! backend: a compact index from key hash to the newest record of each key
//! written to the log, and the rules that move entries between memory and
//! the log.
//!
//! - **Hot** entries live in the table's hash table, flagged `DIRTY` when
//!   changed since they were last written and `REFERENCED` when used since
//!   the last eviction sweep.
//! - **Cold** entries have only an index slot here (32 bits of the hash
//!   and the location, 12 bytes); key and value are in the log.
//! - An access first *touches* its key: a cold key is read back (checksum
//!   verified) and becomes hot and clean; its index slot stays, so evicting
//!   it again unchanged writes nothing.
//! - Over the memory budget, a sweep evicts entries not referenced since
//!   the hand last passed them (a clock over the hash table's buckets,
//!   whose order is effectively random), writing the dirty ones. A sweep
//!   stops once it has evicted enough, so its cost is proportional to what
//!   it evicts, not to the table.
//! - A hot entry flagged `LOGGED` has a record already: writing it again
//!   kills that record, found without a read unless another key shares
//!   the 32 bits of hash its slot keeps.
//! - Removing a key that has a record writes a tombstone, so that replaying
//!   the log (a restore) does not bring it back.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::hot::{HotTable, SHARDS, bucket_part, buckets, group_by_part};
use hashbrown::HashTable;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::format::{Record, RecordKind};
use super::store::{Loc, LogStore};

/// Set on a hot entry changed since it was last written to the log.
pub const DIRTY: u8 = 1;
/// Set on a hot entry used since the last eviction sweep.
pub const REFERENCED: u8 = 2;
/// Set on a hot entry whose key has a record in the log (the index holds
/// it): read back, or written and kept. Writing or removing an entry
/// without it skips the search for an older record, and with it the
/// search needs no read when the key's hash is unique in the index.
pub const LOGGED: u8 = 4;

/// Touches between two samples of an entry's encoded size.
pub const SIZE_SAMPLE_EVERY: u32 = 64;

/// Entries a sweep evicts at least (beyond what brings the core under its
/// budget), so that sweeps are not one per access.
const EVICT_BATCH: usize = 32;

/// Entries an eviction sweep or a flush picks before it writes them: picking
/// starts loading the index slots the writes will look up, so that they
/// are in the cache by the time the batch is written.
const WRITE_AHEAD: usize = 16;

/// Entries picked to be written: bucket, hash and flags.
#[derive(Default)]
struct Picked {
    at: [(usize, u64, u8); WRITE_AHEAD],
    len: usize,
}

/// What [`Spill::write_picked`] does with an entry once written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Written {
    /// Evicts it (a sweep).
    Evict,
    /// Keeps it, clean, while the core is within its budget (a flush).
    Keep,
}

/// A restore groups the records it indexes at once into `2^LOAD_PART_BITS`
/// stretches of each shard of the index ([`group_by_part`]): a shard of a
/// few million slots is then cut into stretches of about 100 KiB.
const LOAD_PART_BITS: u32 = 8;

/// How many inserts ahead a restore's indexing prefetches the index's
/// lines (see [`IndexedTable::index_loaded`]).
const PREFETCH_AHEAD: usize = 16;

/// Memory one slot of the index's capacity costs (12 bytes of tag and
/// location, a control byte, and the buckets hashbrown keeps free beyond
/// its capacity).
pub const INDEX_SLOT_BYTES: usize = 15;

/// One slot of the index of records: 32 bits of the key's hash (a tag)
/// and the record's location, 12 bytes (a full hash made it 16, plus
/// alignment). The tag is enough: finding a key's record compares keys
/// (read from the record), and finding the record of a key known to have
/// one ([`LOGGED`]) needs no read while one slot alone carries its tag,
/// which is then the key's own. Among a million keys, a key shares its
/// tag with another with probability 2^-12, so the extra reads are rare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ColdSlot {
    tag: u32,
    loc: [u32; 2],
}

impl ColdSlot {
    fn new(hash: u64, loc: Loc) -> Self {
        let bits = loc.to_bits();
        Self { tag: hash as u32, loc: [(bits >> 32) as u32, bits as u32] }
    }
    fn loc(self) -> Loc {
        Loc::from_bits((u64::from(self.loc[0]) << 32) | u64::from(self.loc[1]))
    }
    /// Whether the slot may be the record of a key of hash `hash`.
    fn tags(self, hash: u64) -> bool {
        self.tag == hash as u32
    }
    /// Whether the slot is the record at `loc` of a key of hash `hash`.
    fn is(self, hash: u64, loc: Loc) -> bool {
        self.tags(hash) && self.loc() == loc
    }
    /// What the index files the slot under (see [`index_hash`]).
    fn filed(&self) -> u64 {
        tag_hash(self.tag)
    }
}

const _: () = assert!(std::mem::size_of::<ColdSlot>() == 12, "an index slot is 12 bytes");

/// What the index files a key of hash `hash` under: a slot keeps only the
/// tag, so the table's hash (its shard, its bucket, hashbrown's control
/// bits) comes from the tag, spread over 64 bits by an odd multiplier.
fn index_hash(hash: u64) -> u64 {
    tag_hash(hash as u32)
}

fn tag_hash(tag: u32) -> u64 {
    u64::from(tag).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Files the record at `loc` of a key of hash `hash` (which has none
/// filed) in the index `cold`.
fn file_cold(cold: &mut HotTable<ColdSlot>, hash: u64, loc: Loc) {
    cold.insert_unique(index_hash(hash), ColdSlot::new(hash, loc), ColdSlot::filed);
}

/// Takes the record at `loc` of a key of hash `hash` out of the index
/// `cold`, if it is there.
fn unfile_cold(cold: &mut HotTable<ColdSlot>, hash: u64, loc: Loc) {
    if let Ok(e) = cold.find_entry(index_hash(hash), |slot| slot.is(hash, loc)) {
        e.remove();
    }
}

/// What a charge against a [`MemoryBudget`] is for: the budget keeps each
/// kind's bytes, so that its high-water mark can be told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryUse {
    /// Hot state entries (evictable).
    Entries,
    /// The spilling tables' indexes of cold keys.
    Index,
    /// Timer queues.
    Timers,
    /// State log segments not yet written (open, or sealed and in flight).
    Segments,
    /// Checkpoint state files (snapshots of what is not in the log, such as
    /// timers) until they are written.
    StateFiles,
}

impl MemoryUse {
    /// Every kind, in the order of [`MemoryBudget::peak_by_use`].
    pub const ALL: [MemoryUse; 5] =
        [Self::Entries, Self::Index, Self::Timers, Self::Segments, Self::StateFiles];

    /// A short name (for metrics).
    pub fn name(self) -> &'static str {
        match self {
            Self::Entries => "entries",
            Self::Index => "index",
            Self::Timers => "timers",
            Self::Segments => "segments",
            Self::StateFiles => "state_files",
        }
    }

    /// What it is, in words (for messages).
    pub fn description(self) -> &'static str {
        match self {
            Self::Entries => "hot entries",
            Self::Index => "index of cold keys",
            Self::Timers => "timers",
            Self::Segments => "unwritten log segments",
            Self::StateFiles => "checkpoint state files",
        }
    }
}

/// A core's budget for state held in memory (managed memory): every
/// spilling table charges its estimated bytes to it and evicts when the
/// core is over it.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: Cell<usize>,
    lowest_limit: Cell<usize>,
    used: Cell<usize>,
    peak: Cell<usize>,
    by_use: [Cell<usize>; 5],
    peak_by_use: [Cell<usize>; 5],
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Rc<Self> {
        Rc::new(Self {
            limit: Cell::new(limit),
            lowest_limit: Cell::new(limit),
            used: Cell::new(0),
            peak: Cell::new(0),
            by_use: Default::default(),
            peak_by_use: Default::default(),
        })
    }
    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit.get()
    }
    /// Moves the limit (the engine lowers it while the rest of the process
    /// needs memory the budget does not see); tables over it evict at their
    /// next access.
    pub fn set_limit(&self, limit: usize) {
        self.limit.set(limit);
        self.lowest_limit.set(self.lowest_limit.get().min(limit));
    }
    /// The lowest limit ever set.
    pub fn lowest_limit(&self) -> usize {
        self.lowest_limit.get()
    }
    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used.get()
    }
    /// The most bytes ever charged at once.
    pub fn peak(&self) -> usize {
        self.peak.get()
    }
    /// Bytes charged now for `what`.
    pub fn used_by(&self, what: MemoryUse) -> usize {
        self.by_use[what as usize].get()
    }
    /// What each kind of use ([`MemoryUse::ALL`]) held when
    /// [`peak`](Self::peak) was reached.
    pub fn peak_by_use(&self) -> [usize; 5] {
        std::array::from_fn(|i| self.peak_by_use[i].get())
    }
    fn recharge(&self, what: MemoryUse, old: usize, new: usize) {
        let used = self.used.get() - old + new;
        self.used.set(used);
        let by = &self.by_use[what as usize];
        by.set(by.get() - old + new);
        if used > self.peak.get() {
            self.peak.set(used);
            for (p, b) in self.peak_by_use.iter().zip(&self.by_use) {
                p.set(b.get());
            }
        }
    }
    fn over(&self) -> usize {
        self.used.get().saturating_sub(self.limit.get())
    }
}

/// Memory charged to a [`MemoryBudget`] by something that cannot evict
/// (timer queues, a log's unwritten segments): its holder sets what it
/// holds now, and the spilling tables evict to make room. Dropping the
/// charge gives its bytes back.
#[derive(Debug)]
pub struct Charge {
    budget: Rc<MemoryBudget>,
    what: MemoryUse,
    charged: usize,
}

impl Charge {
    /// A charge of nothing yet against `budget`, for `what`.
    pub fn new(budget: Rc<MemoryBudget>, what: MemoryUse) -> Self {
        Self { budget, what, charged: 0 }
    }
    /// Sets the bytes this charge holds.
    #[inline]
    pub fn set(&mut self, bytes: usize) {
        if bytes != self.charged {
            self.budget.recharge(self.what, self.charged, bytes);
            self.charged = bytes;
        }
    }
    /// The bytes this charge holds.
    pub fn bytes(&self) -> usize {
        self.charged
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// Counters of one spilling table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpillStats {
    /// Entries evicted from memory.
    pub evicted: u64,
    /// Of those, entries that had to be written (dirty).
    pub written: u64,
    /// Cold entries read back.
    pub faulted_in: u64,
    /// Tombstones written.
    pub tombstones: u64,
    /// Keys whose values expired (state TTL) and were removed by a sweep,
    /// in memory or in the log.
    pub expired: u64,
}

/// A hot entry as the spill tier sees it: an entry of some hash table whose
/// record payload is `postcard((K, V))`.
pub trait HotEntry<K: Clone, V> {
    /// The hash the table and the cold index file it under.
    fn hash(&self) -> u64;
    /// Its key (built on demand if the entry stores it in parts).
    fn key(&self) -> std::borrow::Cow<'_, K>;
    /// Appends `postcard((key, value))` to `out`; returns the bytes added.
    fn encode(&self, out: &mut Vec<u8>) -> usize;
    /// Its [`DIRTY`], [`REFERENCED`] and [`LOGGED`] flags.
    fn flags(&mut self) -> &mut u8;
}

/// The log tier of one table.
pub struct Spill<K, V> {
    log: Rc<RefCell<LogStore>>,
    state: u32,
    /// The record of every key with one in the log, filed under
    /// [`index_hash`] of the key's hash.
    cold: HotTable<ColdSlot>,
    budget: Rc<MemoryBudget>,
    /// What the hot entries are charged now.
    charged_hot: usize,
    /// What the index is charged now.
    charged_index: usize,
    /// Inline size of a hot entry.
    hot_entry_size: usize,
    /// Estimated bytes of a hot entry (its size plus its encoded size, as a
    /// stand-in for what it owns on the heap).
    entry_bytes: usize,
    encoded_total: u64,
    encoded_count: u64,
    scratch: Vec<u8>,
    /// Touches since the last size sample.
    since_sample: u32,
    /// The eviction sweep's position in each shard's buckets (a clock
    /// hand: a sweep stops once it has evicted enough, and the next one
    /// goes on from there), and the shard the next sweep starts with.
    hands: [usize; SHARDS],
    next_shard: usize,
    /// The TTL sweep's position in the index's buckets.
    cold_hand: usize,
    /// Records dropped from the index without a tombstone since the last
    /// index base ([`IndexedTable::forgotten`]).
    forgotten: Vec<(u64, Loc)>,
    /// Counters.
    pub stats: SpillStats,
    _types: std::marker::PhantomData<fn() -> (K, V)>,
}

/// How many entries a hashbrown table of `buckets` buckets holds before
/// it grows (seven eighths of them; all but one below eight).
fn bucket_capacity(buckets: usize) -> usize {
    if buckets < 8 { buckets.saturating_sub(1) } else { buckets / 8 * 7 }
}

/// Panics for a record that no longer verifies: local state files are
/// damaged, the operator fails and the job restarts from its checkpoint.
fn corrupt(what: &str, loc: Loc) -> ! {
    panic!(
        "state log corrupt: {what} at segment {} offset {} (checksum or decoding failed); the job restarts from its last checkpoint",
        loc.segment(),
        loc.offset()
    )
}

/// Appends `postcard((key, value))` (a record's payload) to `out`; returns
/// its length.
pub fn encode_entry<K: Serialize, V: Serialize>(key: &K, value: &V, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    // Writing into a Vec fails only if a Serialize impl itself fails, which
    // derived and std impls never do.
    postcard::to_io(&(key, value), &mut *out).expect("state values encode");
    out.len() - start
}

fn key_of<K: DeserializeOwned>(rec: &Record<'_>) -> Option<K> {
    postcard::take_from_bytes::<K>(rec.payload).ok().map(|(k, _)| k)
}

impl<K, V> Spill<K, V>
where
    K: Eq + Clone + Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    /// The tier of a table whose records are of state `state` in `log`,
    /// charging `budget`; `hot_entry_size` is the inline size of a hot entry.
    pub fn new(
        log: Rc<RefCell<LogStore>>,
        state: u32,
        budget: Rc<MemoryBudget>,
        hot_entry_size: usize,
    ) -> Self {
        Self {
            log,
            state,
            cold: HotTable::new(),
            budget,
            charged_hot: 0,
            charged_index: 0,
            hot_entry_size,
            entry_bytes: hot_entry_size + 1,
            encoded_total: 0,
            encoded_count: 0,
            scratch: Vec::new(),
            since_sample: 0,
            hands: [0; SHARDS],
            next_shard: 0,
            cold_hand: 0,
            forgotten: Vec::new(),
            stats: SpillStats::default(),
            _types: std::marker::PhantomData,
        }
    }

    /// Every [`SIZE_SAMPLE_EVERY`]th call encodes `(key, value)` to learn
    /// what entries own on the heap (a list or a map may own far more than
    /// its inline size), so the budget is charged realistically before the
    /// first eviction.
    pub fn observe(&mut self, key: &K, value: &V) {
        self.observe_with(|out| encode_entry(key, value, out));
    }

    /// [`observe`](Self::observe) with the entry's own encoder.
    pub fn observe_with(&mut self, encode: impl FnOnce(&mut Vec<u8>) -> usize) {
        self.since_sample += 1;
        if self.since_sample < SIZE_SAMPLE_EVERY {
            return;
        }
        self.since_sample = 0;
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let n = encode(&mut scratch);
        self.scratch = scratch;
        self.count_encoded(n);
    }

    fn count_encoded(&mut self, bytes: usize) {
        self.encoded_total += bytes as u64;
        self.encoded_count += 1;
        self.entry_bytes = self.hot_entry_size + 1 + (self.encoded_total / self.encoded_count) as usize;
    }

    /// Starts loading the index slots of a key of hash `hash` into the
    /// cache, for an access about to read it back.
    #[inline]
    pub fn prefetch_cold(&self, hash: u64) {
        self.cold.prefetch(index_hash(hash));
    }

    /// Starts loading the record of a key of hash `hash`, if the index
    /// names one (after [`prefetch_cold`](Self::prefetch_cold), so that the
    /// index's slot is on its way).
    #[inline]
    pub fn prefetch_record(&self, hash: u64) {
        if let Some(slot) = self.cold.iter_hash(index_hash(hash)).find(|s| s.tags(hash)) {
            self.log.borrow().prefetch(slot.loc());
        }
    }

    /// Keys with a record in the log.
    pub fn cold_len(&self) -> usize {
        self.cold.len()
    }

    fn find_cold(&self, log: &LogStore, hash: u64, key: &K) -> Option<Loc> {
        self.cold
            .find(index_hash(hash), |slot| {
                slot.tags(hash) && {
                    let loc = slot.loc();
                    let rec = log.get(loc).unwrap_or_else(|| corrupt("indexed record", loc));
                    rec.hash == hash && key_of::<K>(&rec).unwrap_or_else(|| corrupt("key", loc)) == *key
                }
            })
            .map(|slot| slot.loc())
    }

    fn drop_cold(&mut self, hash: u64, loc: Loc) {
        unfile_cold(&mut self.cold, hash, loc);
    }

    /// The cold value of `key`, read back, if the log has one. Each
    /// candidate record (same 64-bit hash) is read and verified once.
    pub fn fault_in(&mut self, hash: u64, key: &K) -> Option<V> {
        if self.cold.is_empty() {
            return None;
        }
        let log = self.log.borrow();
        for slot in self.cold.iter_hash(index_hash(hash)) {
            if !slot.tags(hash) {
                continue;
            }
            let loc = slot.loc();
            let rec = log.get(loc).unwrap_or_else(|| corrupt("indexed record", loc));
            if rec.hash != hash {
                continue;
            }
            let (k, rest) =
                postcard::take_from_bytes::<K>(rec.payload).unwrap_or_else(|_| corrupt("key", loc));
            if k == *key {
                let v = postcard::from_bytes::<V>(rest).unwrap_or_else(|_| corrupt("value", loc));
                self.stats.faulted_in += 1;
                return Some(v);
            }
        }
        None
    }

    /// The location of the record of `key`, which has one ([`LOGGED`]): no
    /// read unless another key shares its tag (see [`ColdSlot`]).
    fn own_record(&self, log: &LogStore, hash: u64, key: &K) -> Option<Loc> {
        let mut same = self.cold.iter_hash(index_hash(hash)).filter(|slot| slot.tags(hash));
        let first = same.next()?;
        if same.next().is_none() {
            return Some(first.loc());
        }
        self.find_cold(log, hash, key)
    }

    /// Writes `(key, value)` as the key's newest record and points the index
    /// at it.
    /// `logged`: whether the key has a record already ([`LOGGED`]).
    fn write(
        &mut self,
        log: &mut LogStore,
        hash: u64,
        key: &K,
        logged: bool,
        encode: impl FnOnce(&mut Vec<u8>) -> usize,
    ) {
        let old = if logged { self.own_record(log, hash, key) } else { None };
        let mut n = 0;
        let loc = log.append(self.state, RecordKind::Put, hash, |o| n = encode(o));
        self.count_encoded(n);
        match old {
            // The key's slot now points at its new record: one probe.
            Some(old) => {
                log.kill(old);
                if let Some(slot) = self.cold.find_mut(index_hash(hash), |slot| slot.is(hash, old)) {
                    *slot = ColdSlot::new(hash, loc);
                }
            }
            None => file_cold(&mut self.cold, hash, loc),
        }
    }

    /// The key was removed: forgets its record and writes a tombstone.
    /// `logged` is the removed hot entry's [`LOGGED`] flag, `None` if the
    /// key was not in memory.
    pub fn forget(&mut self, hash: u64, key: &K, logged: Option<bool>) {
        if self.drop_record(hash, key, logged).is_none() {
            return;
        }
        let mut log = self.log.borrow_mut();
        let loc = log.append(self.state, RecordKind::Delete, hash, |o| {
            postcard::to_io(key, o).expect("keys encode");
        });
        // A tombstone is dead as soon as it is written: only a replay needs it.
        log.kill(loc);
        self.stats.tombstones += 1;
    }

    /// Checks the records of up to `checks` keys of the index, on from where
    /// the last call stopped, and removes those whose value `expired`
    /// (state TTL): the record dies and a tombstone hides any older record
    /// of the key, as when the key is removed. Returns how many were
    /// removed.
    ///
    /// A key that is also in memory keeps its hot entry: a clean one is the
    /// record's copy and expired too (the in-memory sweep removes it); a
    /// dirty one is newer and is written after the tombstone.
    pub fn sweep_cold(&mut self, checks: usize, expired: &mut dyn FnMut(&V) -> bool) -> u64 {
        let buckets = self.cold.num_buckets();
        if self.cold.is_empty() || checks == 0 {
            return 0;
        }
        let log = self.log.clone();
        let mut log = log.borrow_mut();
        let mut removed = 0;
        for _ in 0..checks.min(buckets) {
            self.cold_hand = if self.cold_hand + 1 >= buckets { 0 } else { self.cold_hand + 1 };
            let Some(slot) = self.cold.get_bucket_entry(self.cold_hand) else { continue };
            let loc = slot.get().loc();
            let mut key = std::mem::take(&mut self.scratch);
            let hash = {
                let rec = log.get(loc).unwrap_or_else(|| corrupt("indexed record", loc));
                let (_, rest) =
                    postcard::take_from_bytes::<K>(rec.payload).unwrap_or_else(|_| corrupt("key", loc));
                let value = postcard::from_bytes::<V>(rest).unwrap_or_else(|_| corrupt("value", loc));
                if !expired(&value) {
                    self.scratch = key;
                    continue;
                }
                key.clear();
                key.extend_from_slice(&rec.payload[..rec.payload.len() - rest.len()]);
                rec.hash
            };
            slot.remove();
            log.kill(loc);
            // A tombstone's payload is the key: the record's prefix.
            let t = log.append(self.state, RecordKind::Delete, hash, |o| o.extend_from_slice(&key));
            log.kill(t);
            self.scratch = key;
            self.stats.tombstones += 1;
            removed += 1;
        }
        removed
    }

    /// Forgets the key's record, if it has one, without a tombstone: for a
    /// key that is never written again and whose older records a replay
    /// filters out itself (a window row removed at its window's cleanup
    /// time: a restore keeps only rows whose cleanup timer is pending).
    /// `logged` as for [`forget`](Self::forget).
    ///
    /// A replay cannot see such a removal, so once checkpoints refer to
    /// index bases ([`LogStore::is_indexed`]) the record is also noted as
    /// forgotten until the next base, and checkpoints name it (see
    /// [`index`](super::index)).
    pub fn forget_for_good(&mut self, hash: u64, key: &K, logged: Option<bool>) {
        if let Some(loc) = self.drop_record(hash, key, logged)
            && self.log.borrow().is_indexed()
        {
            self.forgotten.push((hash, loc));
        }
    }

    /// Kills the key's record and takes it out of the index; where it was,
    /// if it had one. `logged` as for [`forget`](Self::forget).
    fn drop_record(&mut self, hash: u64, key: &K, logged: Option<bool>) -> Option<Loc> {
        if self.cold.is_empty() || logged == Some(false) {
            return None;
        }
        let log = self.log.clone();
        let mut log = log.borrow_mut();
        let old = match logged {
            Some(_) => self.own_record(&log, hash, key),
            None => self.find_cold(&log, hash, key),
        };
        let old = old?;
        log.kill(old);
        self.drop_cold(hash, old);
        Some(old)
    }

    /// Charges the table's current size to the budget and, if the core is
    /// over it, evicts entries of this table. `hash` is the hash of the key
    /// about to be accessed (and perhaps inserted).
    ///
    /// The table is charged for its buckets, not only its entries: a hash
    /// table's memory is its bucket array, which doubles when it fills.
    /// Hence two rules, per shard of the [`HotTable`]: a full shard whose
    /// doubling would not fit in the budget (the old and the new array,
    /// which coexist while it moves its entries) makes room by evicting
    /// instead of growing; and eviction over the budget empties one shard
    /// far enough to shrink it, which is when it gives buckets back (see
    /// `make_room`). A shard is a
    /// sixteenth of the table, so neither step moves the whole table, and
    /// the table's size follows the budget in sixteenths rather than in
    /// powers of two.
    pub fn maintain<E: HotEntry<K, V>>(&mut self, hot: &mut HotTable<E>, hash: u64) {
        let mut len = self.recharge(hot);
        // Index slots cannot be evicted: when they alone fill the budget,
        // evicting every hot entry on every access would only thrash (each
        // sweep walks the table). A table keeps a floor of hot entries, and
        // the core runs over its budget by what its indexes need.
        let floor = (self.budget.limit() / 16 / self.entry_bytes).max(1);
        if len <= floor {
            return;
        }
        let over = self.budget.over();
        if over > 0 {
            self.make_room(hot, len - floor);
            len = self.recharge(hot);
        }
        let i = hot.shard_index(hash);
        let shard = hot.shard(i);
        if shard.len() >= shard.capacity()
            && len > floor
            && self.budget.used() + 2 * shard.num_buckets() * self.slot_bytes() > self.budget.limit()
        {
            // The next insert into this shard would double its bucket array
            // past the budget. Evicting alone would not stop it: in a full
            // table a removal mostly leaves a tombstone, which still takes
            // a place, and hashbrown rehashes in place (dropping them) only
            // when at most half full. So: evict until the shard, without
            // its tombstones, has a quarter of its places free, then
            // rebuild it at the same size, which drops its tombstones for
            // the cost of one more shard array while it moves (a doubling
            // costs two). A rebuild moves every entry of the shard, so it
            // must leave room for many inserts: with a quarter free, each
            // insert pays for moving about three entries.
            let places = bucket_capacity(shard.num_buckets());
            let want = (shard.len() + places / 4).saturating_sub(places).max(EVICT_BATCH).min(len - floor);
            self.evict_shard(hot.shard_mut(i), i, want);
            let shard = hot.shard_mut(i);
            let buckets = shard.num_buckets();
            if shard.len() < bucket_capacity(buckets) {
                let old = std::mem::take(shard);
                let mut new = HashTable::with_capacity(old.len() + 1);
                for e in old {
                    new.insert_unique(e.hash(), e, |e| e.hash());
                }
                debug_assert!(new.num_buckets() <= buckets, "rebuilt no larger");
                *shard = new;
                self.hands[i] = 0;
            }
            self.recharge(hot);
        }
    }

    /// What one bucket of the hot table costs: an entry and a control byte.
    fn slot_bytes(&self) -> usize {
        self.hot_entry_size + 1
    }

    /// Evicts (at most `most` entries) until the core is within its budget.
    ///
    /// An evicted entry frees what it owns, but its bucket stays allocated
    /// until its shard shrinks, and the buckets are most of a table's
    /// memory. Evicting a little from every shard would free almost nothing
    /// until every shard was half empty, then shrink them all at once (the
    /// sawtooth R12 showed). So it evicts from one shard at a time, until
    /// that shard can shrink to half its buckets, and shrinks it; then the
    /// next shard, while the core is still over. A shard too small to free
    /// buckets gives what its entries own.
    fn make_room<E: HotEntry<K, V>>(&mut self, hot: &mut HotTable<E>, most: usize) {
        let mut left = most;
        for _ in 0..SHARDS {
            let over = self.budget.over();
            if over == 0 || left == 0 {
                break;
            }
            let i = self.next_shard;
            self.next_shard = (i + 1) % SHARDS;
            let b = buckets(hot.shard(i));
            let n = hot.shard(i).len();
            if n == 0 {
                continue;
            }
            // At most 7/20 of its buckets full, a shard shrunk to 5/4 of
            // its entries needs half its buckets.
            let want = if b >= 64 { n.saturating_sub(b * 7 / 20) } else { over / self.entry_bytes + 1 };
            left -= self.evict_shard(hot.shard_mut(i), i, want.max(EVICT_BATCH).min(left));
            self.shrink_if_sparse(hot, i);
            self.recharge(hot);
        }
    }

    /// Evicts `want` entries of shard `i` not referenced since its hand
    /// last passed them (clearing the flag of those that were), writing the
    /// dirty ones. At most two turns of the hand: after one, no flag is
    /// left set. Returns how many it evicted.
    ///
    /// Victims are taken [`WRITE_AHEAD`] at a time: picking them starts
    /// loading the index slots of those with a record to replace, so that
    /// writing them does not wait on a cache miss each (see
    /// [`write_picked`](Self::write_picked)).
    fn evict_shard<E: HotEntry<K, V>>(&mut self, hot: &mut HashTable<E>, i: usize, want: usize) -> usize {
        let log = self.log.clone();
        let mut log = log.borrow_mut();
        let buckets = hot.num_buckets();
        let mut picked = Picked::default();
        let mut left = want;
        for _ in 0..2 * buckets {
            if left == picked.len {
                break;
            }
            let hand = &mut self.hands[i];
            *hand = if *hand + 1 >= buckets { 0 } else { *hand + 1 };
            let at = *hand;
            if let Ok(mut slot) = hot.get_bucket_entry(at) {
                let flags = *slot.get_mut().flags();
                if flags & REFERENCED != 0 {
                    *slot.get_mut().flags() &= !REFERENCED;
                } else {
                    self.pick(&mut picked, at, slot.get().hash(), flags);
                }
            }
            // A full batch is written; so is a partial one when the hand
            // wraps, so that a bucket is never picked twice.
            if picked.len == WRITE_AHEAD || (at == 0 && picked.len > 0) {
                left -= self.write_picked(&mut log, hot, &mut picked, Written::Evict);
            }
        }
        left -= self.write_picked(&mut log, hot, &mut picked, Written::Evict);
        want - left
    }

    /// Adds the entry in bucket `at` to `picked`, starting to load its
    /// index slot if writing it must find the key's older record.
    #[inline]
    fn pick(&self, picked: &mut Picked, at: usize, hash: u64, flags: u8) {
        if flags & (DIRTY | LOGGED) == DIRTY | LOGGED {
            self.cold.prefetch(index_hash(hash));
        }
        picked.at[picked.len] = (at, hash, flags);
        picked.len += 1;
    }

    /// Writes the dirty entries of `picked` (buckets of `hot`), then evicts
    /// each, or, for [`Written::Keep`], keeps it clean; empties `picked`
    /// and returns how many it evicted.
    fn write_picked<E: HotEntry<K, V>>(
        &mut self,
        log: &mut LogStore,
        hot: &mut HashTable<E>,
        picked: &mut Picked,
        then: Written,
    ) -> usize {
        let mut evicted = 0;
        for &(at, hash, flags) in &picked.at[..picked.len] {
            let Ok(mut slot) = hot.get_bucket_entry(at) else { continue };
            if flags & DIRTY != 0 {
                let e = slot.get();
                self.write(log, hash, &e.key(), flags & LOGGED != 0, |o| e.encode(o));
                if then == Written::Evict {
                    self.stats.written += 1;
                }
            }
            if then == Written::Keep && self.budget.over() == 0 {
                let f = slot.get_mut().flags();
                *f = (*f & !DIRTY) | LOGGED;
            } else {
                slot.remove();
                self.stats.evicted += 1;
                evicted += 1;
            }
        }
        picked.len = 0;
        evicted
    }

    /// Writes every dirty hot entry (they stay hot, now clean): after this,
    /// the log alone holds the table's whole state.
    ///
    /// The records wait in memory until their segments are written. While
    /// that puts the core over its budget, a written entry leaves memory
    /// (the log has it), so a checkpoint's flush does not add a copy of
    /// the dirty state on top of the budget. An evicted entry frees only
    /// what it owns, so a shard the flush emptied that far is shrunk when
    /// the flush leaves it, as eviction does (`make_room`): otherwise the
    /// charge fell by the evicted entries while the memory stayed, and the
    /// flush's segments came on top of it (R12's high-water marks at
    /// checkpoints).
    pub fn flush<E: HotEntry<K, V>>(&mut self, hot: &mut HotTable<E>) {
        let log = self.log.clone();
        let mut log = log.borrow_mut();
        let mut picked = Picked::default();
        for i in 0..SHARDS {
            let mut evicted = 0;
            let buckets = hot.shard(i).num_buckets();
            for j in 0..buckets {
                if let Ok(mut slot) = hot.shard_mut(i).get_bucket_entry(j) {
                    let flags = *slot.get_mut().flags();
                    if flags & DIRTY != 0 {
                        self.pick(&mut picked, j, slot.get().hash(), flags);
                    }
                }
                if picked.len == WRITE_AHEAD || (j + 1 == buckets && picked.len > 0) {
                    evicted += self.write_picked(&mut log, hot.shard_mut(i), &mut picked, Written::Keep);
                    self.recharge(hot);
                }
            }
            if evicted > 0 {
                self.shrink_if_sparse(hot, i);
                self.recharge(hot);
            }
        }
        self.recharge(hot);
    }

    /// Shrinks shard `i` if at most half its capacity is used (eviction
    /// left it sparse), giving its buckets back. The caller recharges.
    fn shrink_if_sparse<E: HotEntry<K, V>>(&mut self, hot: &mut HotTable<E>, i: usize) {
        let shard = hot.shard_mut(i);
        if shard.capacity() > 2 * shard.len() + 64 {
            let keep = shard.len() + shard.len() / 4;
            shard.shrink_to(keep, |e| e.hash());
            self.hands[i] = 0;
        }
    }

    /// Charges what the table holds now: its hot table's buckets and what
    /// its entries own, and the index's capacity. Returns the number of
    /// hot entries.
    fn recharge<E>(&mut self, hot: &HotTable<E>) -> usize {
        let (len, buckets) = hot.len_and_buckets();
        // Buckets, plus what entries own beyond their inline size (estimated
        // by their encoded size).
        let entries = buckets * self.slot_bytes() + len * (self.entry_bytes - self.slot_bytes());
        if entries != self.charged_hot {
            self.budget.recharge(MemoryUse::Entries, self.charged_hot, entries);
            self.charged_hot = entries;
        }
        let index = self.cold.capacity() * INDEX_SLOT_BYTES
            + self.forgotten.capacity() * std::mem::size_of::<(u64, Loc)>();
        if index != self.charged_index {
            self.budget.recharge(MemoryUse::Index, self.charged_index, index);
            self.charged_index = index;
        }
        len
    }

    /// Calls `out` with the encoded `(key, value)` of every cold entry whose
    /// key is not hot (`is_hot`), straight from the log.
    pub fn for_each_cold(&self, is_hot: impl Fn(u64, &K) -> bool, out: &mut dyn FnMut(u64, &[u8])) {
        let log = self.log.borrow();
        for slot in self.cold.iter() {
            let loc = slot.loc();
            let rec = log.get(loc).unwrap_or_else(|| corrupt("indexed record", loc));
            let key = key_of::<K>(&rec).unwrap_or_else(|| corrupt("key", loc));
            if !is_hot(rec.hash, &key) {
                out(rec.hash, rec.payload);
            }
        }
    }

    /// Whether the record at `loc` is the newest of its key (compaction must
    /// keep it).
    pub fn is_live(&self, hash: u64, loc: Loc) -> bool {
        self.cold.find(index_hash(hash), |slot| slot.is(hash, loc)).is_some()
    }

    /// Whether a tombstone must be copied forward: its key has no record in
    /// the log newer than it. Older records of the key may still sit in
    /// other segments, and without the tombstone a replay would bring the
    /// newest of them back.
    ///
    /// Whether the key is hot does not matter: a hot entry without a record
    /// (re-inserted after the removal, not yet written) may be removed
    /// again before it is ever written, and then no new tombstone is
    /// written, because the key has no record to forget.
    pub fn tombstone_still_needed(&self, rec: &Record<'_>) -> bool {
        let Ok(key) = postcard::from_bytes::<K>(rec.payload) else { return false };
        let log = self.log.borrow();
        self.find_cold(&log, rec.hash, &key).is_none()
    }

    /// Points the index at `new`, the copy of the record at `old`.
    pub fn relocate(&mut self, hash: u64, old: Loc, new: Loc) {
        if let Some(slot) = self.cold.find_mut(index_hash(hash), |slot| slot.is(hash, old)) {
            *slot = ColdSlot::new(hash, new);
        }
    }

    /// Replays one record of a restored log: a put becomes the key's cold
    /// entry, a tombstone removes it. `owned` filters key groups.
    pub fn replay(&mut self, log: &mut LogStore, loc: Loc, rec: &Record<'_>) -> Result<(), String> {
        let key: K = match rec.kind {
            RecordKind::Put => key_of::<K>(rec),
            RecordKind::Delete => postcard::from_bytes::<K>(rec.payload).ok(),
        }
        .ok_or_else(|| {
            format!("a record of state {} does not decode as this state's key type", self.state)
        })?;
        if let Some(old) = self.find_cold(log, rec.hash, &key) {
            log.kill(old);
            self.drop_cold(rec.hash, old);
        }
        match rec.kind {
            RecordKind::Put => file_cold(&mut self.cold, rec.hash, loc),
            RecordKind::Delete => log.kill(loc),
        }
        Ok(())
    }
}

impl<K, V> super::index::IndexedTable for Spill<K, V> {
    fn for_each_indexed(&self, each: &mut dyn FnMut(Loc)) {
        for slot in self.cold.iter() {
            each(slot.loc());
        }
    }

    fn reserve_index(&mut self, more: usize) {
        self.cold.reserve(more, ColdSlot::filed);
    }

    fn index_loaded(&mut self, batch: &[(u64, Loc)], scratch: &mut Vec<(u64, Loc)>) {
        self.cold.reserve(batch.len(), ColdSlot::filed);
        // Grouped by the stretch of its shard's buckets the inserts start
        // probing at (the hash's low bits, in hashbrown), so that
        // consecutive inserts touch nearby memory instead of a cache miss
        // each: a restore indexes millions of records. Only the speed
        // depends on that order.
        let masks: [u64; SHARDS] =
            std::array::from_fn(|i| self.cold.shard(i).num_buckets().max(1) as u64 - 1);
        let cold = &self.cold;
        group_by_part(batch, scratch, SHARDS << LOAD_PART_BITS, |&(hash, _)| {
            let filed = index_hash(hash);
            let shard = cold.shard_index(filed);
            (shard << LOAD_PART_BITS) | bucket_part(filed, masks[shard], LOAD_PART_BITS)
        });
        // Each insert still misses the cache at least once (a batch touches
        // a few percent of the index's lines): ask for the lines of the
        // insert PREFETCH_AHEAD places on while this one is made.
        for (i, &(hash, loc)) in scratch.iter().enumerate() {
            if let Some(&(ahead, _)) = scratch.get(i + PREFETCH_AHEAD) {
                self.cold.prefetch(index_hash(ahead));
            }
            file_cold(&mut self.cold, hash, loc);
        }
    }

    fn unindex(&mut self, hash: u64, loc: Loc) {
        unfile_cold(&mut self.cold, hash, loc);
    }

    fn forgotten(&self) -> &[(u64, Loc)] {
        &self.forgotten
    }

    fn clear_forgotten(&mut self) {
        self.forgotten = Vec::new();
    }
}

impl<K, V> Drop for Spill<K, V> {
    fn drop(&mut self) {
        self.budget.recharge(MemoryUse::Entries, self.charged_hot, 0);
        self.budget.recharge(MemoryUse::Index, self.charged_index, 0);
    }
}
