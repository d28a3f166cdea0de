//! Timers per key: Flink's `InternalTimerService` queues.
//!
//! A [`TimerQueue`] holds timers for one time domain of one keyed operator on
//! one core. A timer is `(key, namespace, timestamp)`; registering the same
//! timer twice keeps one; timers come out in timestamp order (ties in
//! registration order). The caller passes each key's stable hash
//! ([`crate::key_hash`]); the queue recomputes it from the key where it needs
//! it (key groups at a snapshot, a fired timer) instead of storing it.
//!
//! The layout is for millions of timers that share few timestamps (every
//! key's window ends at the same instant): one *bucket* per timestamp holds
//! its timers in registration order (a `VecDeque`, so firing moves them
//! out), and a hash index of 8-byte `(bucket, position)` slots finds a
//! timer for deduplication and deletion. A bucket keeps its namespace once
//! while all its timers share it (a window's end), one per timer only
//! after a timer with another arrives. A timer costs its key (and its
//! namespace, where a bucket's differ) plus about 17 bytes of index: 25
//! for a window timer of a `u64` key, 42 with a namespace per timer.
//!
//! The index is built lazily. Timers added without a lookup (a restore's,
//! [`TimerQueue::register_new`]; or ones the caller knows are new,
//! [`TimerQueue::register_absent`]) are indexed only when a lookup needs
//! them ([`TimerQueue::index_new`]); firing and a restore's removals do
//! not. An owner that never looks timers up, such as a window operator
//! whose rows record which of their timers are registered, keeps no index
//! at all: a timer then costs its key alone (8 bytes for a `u64`).
//! [`TimerQueue::memory_bytes`] says what the queue holds, so the engine
//! can charge it to the core's memory budget.
//!
//! # Changes since a mark
//!
//! An incremental checkpoint writes only what changed since the last one
//! ([`TimerQueue::mark`], then [`TimerQueue::changes`]): the timers
//! registered since (a bucket's slots past its mark), the timers deleted
//! since (by key), and how many timers of each (timestamp, namespace, key
//! group) fired since. Firing takes timers of a timestamp in registration
//! order, so the fired ones of a (timestamp, namespace, key group) are
//! always the first of its timers still there: a count says which, and a
//! restore ([`TimerQueue::remove_leading`]) removes as many from the front
//! of the same timers registered in the same order. Too many changes to
//! record (more than an eighth of the timers at the mark) stop the
//! recording: the next checkpoint writes every timer instead.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;
use rustc_hash::{FxBuildHasher, FxHashMap};

use crate::MaxParallelism;
use crate::hot::{bucket_part, group_by_part};

/// Timers [`TimerQueue::index_new`] indexes at once: 16 MiB of
/// `(hash, bucket, position)`, and as much again grouped (a few in unit
/// tests, so that they cross batches).
const INDEX_BATCH: usize = if cfg!(test) { 64 } else { 1 << 20 };
/// [`TimerQueue::index_new`] groups a batch into `2^PARTS_BITS` parts.
const PARTS_BITS: u32 = 12;
/// Fewer timers to index than this are not grouped (the grouping's table
/// of parts would cost more than it saves).
const INDEX_GROUPED_MIN: usize = if cfg!(test) { 8 } else { 1 << 14 };

/// A fired timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer<K, N> {
    /// The key it was registered under.
    pub key: K,
    /// The key's stable hash.
    pub key_hash: u64,
    /// Its namespace (`()` for process functions, the window for windows).
    pub namespace: N,
    /// When it fires (event time or processing time, in ms).
    pub timestamp: i64,
}

/// The namespaces of a bucket's timers. A timestamp mostly has one
/// namespace (every key's window that ends then is the same window), so
/// a bucket keeps it once until a timer with another arrives; only then
/// does it keep one per timer. For a window timer of a `u64` key that is
/// 8 bytes a slot instead of 24.
enum Namespaces<N> {
    /// Every slot's namespace (`None`: no slot yet).
    Shared(Option<N>),
    /// Each slot's own, parallel to the keys.
    Each(VecDeque<N>),
}

/// The timers of one timestamp, in registration order. A timer's key hash
/// is not kept: it is [`crate::key_hash`] of the key, recomputed where
/// needed (when the index grows, at a snapshot, when the timer fires).
struct Bucket<K, N> {
    timestamp: i64,
    /// Timers popped from the front so far: the key at position `p` is
    /// `keys[p - head]`.
    head: u32,
    keys: VecDeque<K>,
    namespaces: Namespaces<N>,
    /// Bit `p` set: the timer at position `p` was deleted (allocated on
    /// the first deletion).
    dead: Vec<u64>,
    /// Timers neither popped nor deleted.
    live: u32,
    /// Slots below this position were there at the last
    /// [`TimerQueue::mark`]; the ones from it on were added since.
    mark: u32,
    /// Live slots below this position are in the queue's index; the ones
    /// from it on are not yet (see [`TimerQueue::index_new`]).
    indexed: u32,
}

impl<K, N> Bucket<K, N> {
    fn new(timestamp: i64) -> Self {
        Self {
            timestamp,
            head: 0,
            // Timestamps may all differ (per-key timeouts): start small.
            keys: VecDeque::with_capacity(1),
            namespaces: Namespaces::Shared(None),
            dead: Vec::new(),
            live: 0,
            mark: 0,
            indexed: 0,
        }
    }
    /// The position the next slot gets.
    fn end(&self) -> u32 {
        self.head + self.keys.len() as u32
    }
    fn key(&self, pos: u32) -> &K {
        &self.keys[(pos - self.head) as usize]
    }
    fn namespace(&self, pos: u32) -> &N {
        match &self.namespaces {
            Namespaces::Shared(n) => n.as_ref().expect("a bucket with slots has a namespace"),
            Namespaces::Each(ns) => &ns[(pos - self.head) as usize],
        }
    }
    /// Appends a slot; returns its position.
    fn push(&mut self, key: &K, namespace: &N) -> u32
    where
        K: Clone,
        N: Clone + Eq,
    {
        let pos = self.head + self.keys.len() as u32;
        match &mut self.namespaces {
            Namespaces::Shared(shared @ None) => *shared = Some(namespace.clone()),
            Namespaces::Shared(Some(n)) if n == namespace => {}
            Namespaces::Shared(Some(n)) => {
                let mut each = VecDeque::with_capacity(self.keys.capacity());
                each.resize(self.keys.len(), n.clone());
                each.push_back(namespace.clone());
                self.namespaces = Namespaces::Each(each);
            }
            Namespaces::Each(ns) => ns.push_back(namespace.clone()),
        }
        self.keys.push_back(key.clone());
        pos
    }
    /// Appends slots for `keys`, all of namespace `namespace`, which the
    /// last slot already has.
    fn push_many(&mut self, keys: &[K], namespace: &N)
    where
        K: Clone,
        N: Clone + Eq,
    {
        match &mut self.namespaces {
            Namespaces::Shared(shared) => {
                debug_assert!(shared.as_ref() == Some(namespace), "the last slot's namespace is shared");
            }
            Namespaces::Each(ns) => ns.extend(std::iter::repeat_n(namespace, keys.len()).cloned()),
        }
        self.keys.extend(keys.iter().cloned());
    }
    /// Takes the first slot out, whether live or not.
    fn pop_front(&mut self) -> Option<(K, N)>
    where
        N: Clone,
    {
        let key = self.keys.pop_front()?;
        let namespace = match &mut self.namespaces {
            Namespaces::Shared(n) => n.clone().expect("a bucket with slots has a namespace"),
            Namespaces::Each(ns) => ns.pop_front().expect("a namespace per key"),
        };
        self.head += 1;
        Some((key, namespace))
    }
    /// Bytes of slot and deletion-mark capacity (what `slot_bytes` sums).
    fn heap_bytes(&self) -> usize {
        let each = match &self.namespaces {
            Namespaces::Shared(_) => 0,
            Namespaces::Each(ns) => ns.capacity() * std::mem::size_of::<N>(),
        };
        self.keys.capacity() * std::mem::size_of::<K>() + each + self.dead.capacity() * 8
    }
    fn is_dead(&self, pos: u32) -> bool {
        self.dead.get(pos as usize / 64).is_some_and(|w| w & (1 << (pos % 64)) != 0)
    }
    fn mark_dead(&mut self, pos: u32) {
        let word = pos as usize / 64;
        if self.dead.len() <= word {
            self.dead.resize(word + 1, 0);
        }
        self.dead[word] |= 1 << (pos % 64);
    }
}

/// Timers of one time domain, deduplicated and ordered by timestamp.
pub struct TimerQueue<K, N> {
    /// Timestamp → bucket number, in firing order. Only buckets with live
    /// timers are listed.
    order: BTreeMap<i64, u32>,
    /// Buckets by number; numbers of emptied buckets are reused.
    buckets: Vec<Bucket<K, N>>,
    free: Vec<u32>,
    /// `(bucket, position)` of every indexed live timer (see
    /// `Bucket::indexed`), filed under [`Self::id_hash`] of the timer.
    index: HashTable<(u32, u32)>,
    len: usize,
    /// Bytes of slot and deletion-mark capacity over all buckets.
    slot_bytes: usize,
    /// Buckets that may hold slots not indexed yet (some listed twice, or
    /// since retired): the ones [`index_new`](TimerQueue::index_new) visits.
    unindexed: Vec<u32>,
    /// Live timers not indexed yet.
    unindexed_len: usize,
    /// The changes since the last [`mark`](TimerQueue::mark), once marked.
    tracking: Option<Tracking<K, N>>,
}

/// The changes of a queue since its last mark that its buckets do not
/// show: removals of timers that were there at the mark.
struct Tracking<K, N> {
    groups: MaxParallelism,
    /// `(timestamp, namespace, key group)` → timers fired since the mark.
    popped: FxHashMap<(i64, N, u32), u32>,
    /// Timers deleted since the mark: `(key, namespace, timestamp)`.
    deleted: Vec<(K, N, i64)>,
    /// Timers registered since the mark (some may be gone again).
    added: usize,
    /// Most entries `popped` and `deleted` may hold together.
    limit: usize,
    /// More changes than `limit`: they were dropped, and the next
    /// checkpoint writes every timer.
    overflowed: bool,
}

impl<K, N: Eq + Hash> Tracking<K, N> {
    fn recorded(&self) -> usize {
        self.popped.len() + self.deleted.len()
    }
    /// Drops the record if it holds more than its limit.
    fn check_limit(&mut self) {
        if self.recorded() > self.limit {
            self.overflowed = true;
            self.popped = FxHashMap::default();
            self.deleted = Vec::new();
        }
    }
}

/// What changed in a [`TimerQueue`] since its last [`mark`](TimerQueue::mark):
/// what an incremental checkpoint writes.
pub struct Changes<'a, K, N> {
    queue: &'a TimerQueue<K, N>,
    tracking: &'a Tracking<K, N>,
}

impl<'a, K: Eq + Hash + Clone, N: Eq + Hash + Clone> Changes<'a, K, N> {
    /// Timers deleted since the mark that were there at the mark, as
    /// `(key, namespace, timestamp)`.
    pub fn deleted(&self) -> &'a [(K, N, i64)] {
        &self.tracking.deleted
    }

    /// `(timestamp, namespace, key group, count)`: how many of the timers
    /// there at the mark fired since, per timestamp, namespace and key
    /// group (the first ones registered of those not deleted).
    pub fn popped(&self) -> impl Iterator<Item = (i64, &'a N, u32, u32)> {
        self.tracking.popped.iter().map(|((ts, n, kg), count)| (*ts, n, *kg, *count))
    }

    /// Timers registered since the mark and still there, as
    /// `(key, key hash, namespace, timestamp)`, in firing order.
    pub fn added(&self) -> impl Iterator<Item = (&'a K, u64, &'a N, i64)> {
        let queue = self.queue;
        queue.order.values().flat_map(move |&b| {
            let bucket = &queue.buckets[b as usize];
            let from = bucket.mark.max(bucket.head);
            (from..bucket.head + bucket.keys.len() as u32).filter(move |&p| !bucket.is_dead(p)).map(
                move |p| {
                    let key = bucket.key(p);
                    (key, crate::key_hash(key), bucket.namespace(p), bucket.timestamp)
                },
            )
        })
    }

    /// About how many entries the changes hold: deletions, fired counts
    /// and registrations (some of which may be gone again). Against the
    /// queue's [`len`](TimerQueue::len), it tells whether writing the
    /// changes is worth it.
    pub fn size(&self) -> usize {
        self.tracking.recorded() + self.tracking.added
    }
}

impl<K, N> Default for TimerQueue<K, N> {
    fn default() -> Self {
        Self {
            order: BTreeMap::new(),
            buckets: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            len: 0,
            slot_bytes: 0,
            unindexed: Vec::new(),
            unindexed_len: 0,
            tracking: None,
        }
    }
}

impl<K: Eq + Hash + Clone, N: Eq + Hash + Clone> TimerQueue<K, N> {
    /// The hash a timer is filed under in the index: its key's stable hash
    /// mixed with its namespace and timestamp.
    fn id_hash(key_hash: u64, namespace: &N, timestamp: i64) -> u64 {
        FxBuildHasher.hash_one((key_hash, namespace, timestamp))
    }

    /// The index slot of timer `(key, namespace, timestamp)`.
    fn find(&self, key: &K, key_hash: u64, namespace: &N, timestamp: i64) -> Option<(u32, u32)> {
        debug_assert!(self.unindexed_len == 0, "every timer is indexed before a lookup (index_new)");
        let hash = Self::id_hash(key_hash, namespace, timestamp);
        let buckets = &self.buckets;
        self.index
            .find(hash, |&(b, p)| {
                let bucket = &buckets[b as usize];
                bucket.timestamp == timestamp && bucket.key(p) == key && bucket.namespace(p) == namespace
            })
            .copied()
    }

    fn unindex(&mut self, key_hash: u64, namespace: &N, timestamp: i64, at: (u32, u32)) {
        let hash = Self::id_hash(key_hash, namespace, timestamp);
        if let Ok(e) = self.index.find_entry(hash, |&slot| slot == at) {
            e.remove();
        }
    }

    /// Registers a timer; `false` if it was already registered.
    pub fn register(&mut self, key: &K, key_hash: u64, namespace: &N, timestamp: i64) -> bool {
        debug_assert_eq!(key_hash, crate::key_hash(key), "a timer's key hash is its key's stable hash");
        self.index_new();
        if self.find(key, key_hash, namespace, timestamp).is_some() {
            return false;
        }
        let at = self.push_slot(key, namespace, timestamp);
        self.index_slot(Self::id_hash(key_hash, namespace, timestamp), at);
        // Every slot before it is indexed (`index_new` above).
        self.buckets[at.0 as usize].indexed = at.1 + 1;
        true
    }

    /// Registers a timer its caller knows is not registered, without
    /// [`register`](Self::register)'s lookup. Like every timer added without
    /// one, it is indexed only when a lookup needs it
    /// ([`index_new`](Self::index_new)): a queue whose owner never looks its
    /// timers up (a window operator whose rows say which of their timers
    /// are registered) keeps no index at all.
    pub fn register_absent(&mut self, key: &K, namespace: &N, timestamp: i64) {
        let (b, pos) = self.push_slot(key, namespace, timestamp);
        self.note_unindexed(b, pos, 1);
    }

    /// Notes `n` slots from position `from` of bucket `b` as not indexed.
    fn note_unindexed(&mut self, b: u32, from: u32, n: usize) {
        if self.buckets[b as usize].indexed == from {
            // It was wholly indexed: list it.
            self.unindexed.push(b);
        }
        self.unindexed_len += n;
    }

    /// Registers timers of one namespace and timestamp that are known not
    /// to be registered (a checkpoint's, which holds each timer once, of
    /// key groups no other file holds), without [`register`](Self::register)'s
    /// lookup, and indexes them only at [`index_new`](Self::index_new), all
    /// at once into an index sized for them (or never, if nothing looks
    /// them up): at a restore of millions of timers, a lookup and the
    /// index's growth are cache misses per timer.
    pub fn register_new(&mut self, keys: &[K], namespace: &N, timestamp: i64) {
        let Some((first, rest)) = keys.split_first() else { return };
        let (b, from) = self.push_slot(first, namespace, timestamp);
        // The rest in one go: the same bucket, after a slot of the same
        // namespace.
        let bucket = &mut self.buckets[b as usize];
        let before = bucket.heap_bytes();
        bucket.push_many(rest, namespace);
        self.slot_bytes += bucket.heap_bytes() - before;
        bucket.live += rest.len() as u32;
        self.len += rest.len();
        if let Some(t) = &mut self.tracking {
            t.added += rest.len();
        }
        self.note_unindexed(b, from, keys.len());
    }

    /// Indexes the timers added without a lookup
    /// ([`register_new`](Self::register_new),
    /// [`register_absent`](Self::register_absent)) and still there. Every
    /// lookup needs it first, and calls it: [`register`](Self::register),
    /// [`delete`](Self::delete), [`contains`](Self::contains). Firing and a
    /// restore's removals do not.
    pub fn index_new(&mut self) {
        if self.unindexed_len == 0 {
            // Whatever was added without a lookup is gone again.
            for b in self.unindexed.drain(..) {
                let bucket = &mut self.buckets[b as usize];
                bucket.indexed = bucket.end();
            }
            return;
        }
        let Self { index, buckets, unindexed, .. } = self;
        // A bucket retired and reused may be listed twice.
        unindexed.sort_unstable();
        unindexed.dedup();
        let rehash = |&(b, p): &(u32, u32)| {
            let bucket = &buckets[b as usize];
            Self::id_hash(crate::key_hash(bucket.key(p)), bucket.namespace(p), bucket.timestamp)
        };
        index.reserve(self.unindexed_len, rehash);
        let slots = |b: u32| {
            let bucket = &buckets[b as usize];
            (bucket.indexed.max(bucket.head)..bucket.end()).filter(|&p| !bucket.is_dead(p)).map(move |p| {
                (Self::id_hash(crate::key_hash(bucket.key(p)), bucket.namespace(p), bucket.timestamp), b, p)
            })
        };
        if self.unindexed_len < INDEX_GROUPED_MIN {
            // A few (a registration without a lookup before one with): as
            // they come.
            for &b in unindexed.iter() {
                for (hash, b, p) in slots(b) {
                    index.insert_unique(hash, (b, p), rehash);
                }
            }
        } else {
            // Inserted in batches in the order of the buckets the inserts
            // start probing at (the hash's low bits, in hashbrown), so that
            // consecutive inserts touch nearby memory instead of missing the
            // cache one by one. Only the speed depends on that order.
            let mask = index.num_buckets().max(1) as u64 - 1;
            let capacity = self.unindexed_len.min(INDEX_BATCH);
            let mut batch: Vec<(u64, u32, u32)> = Vec::with_capacity(capacity);
            let mut sorted: Vec<(u64, u32, u32)> = Vec::with_capacity(capacity);
            let mut insert = |batch: &mut Vec<(u64, u32, u32)>| {
                group_by_part(batch, &mut sorted, 1 << PARTS_BITS, |&(hash, _, _)| {
                    bucket_part(hash, mask, PARTS_BITS)
                });
                for &(hash, b, pos) in sorted.iter() {
                    debug_assert!(
                        {
                            let bucket = &buckets[b as usize];
                            let (key, namespace) = (bucket.key(pos), bucket.namespace(pos));
                            index
                                .find(hash, |&(ob, op)| {
                                    let other = &buckets[ob as usize];
                                    other.timestamp == bucket.timestamp
                                        && other.key(op) == key
                                        && other.namespace(op) == namespace
                                })
                                .is_none()
                        },
                        "a timer added without a lookup is new"
                    );
                    index.insert_unique(hash, (b, pos), rehash);
                }
                batch.clear();
            };
            for &b in unindexed.iter() {
                for slot in slots(b) {
                    batch.push(slot);
                    if batch.len() == INDEX_BATCH {
                        insert(&mut batch);
                    }
                }
            }
            insert(&mut batch);
        }
        for b in unindexed.drain(..) {
            let bucket = &mut buckets[b as usize];
            bucket.indexed = bucket.end();
        }
        self.unindexed_len = 0;
    }

    /// Drops the index, as if every timer had been added without a lookup:
    /// for a queue whose owner no longer looks timers up (a restore that
    /// needed the index to replay a log). The next lookup indexes them
    /// again.
    pub fn drop_index(&mut self) {
        if self.index.capacity() == 0 {
            // Nothing is indexed.
            return;
        }
        self.index = HashTable::new();
        self.unindexed.clear();
        for &b in self.order.values() {
            let bucket = &mut self.buckets[b as usize];
            bucket.indexed = bucket.head;
            self.unindexed.push(b);
        }
        self.unindexed_len = self.len;
    }

    /// Adds a slot for a timer that is not registered, unindexed; returns
    /// its `(bucket, position)`.
    fn push_slot(&mut self, key: &K, namespace: &N, timestamp: i64) -> (u32, u32) {
        let b = match self.order.get(&timestamp) {
            Some(&b) => b,
            None => {
                let bucket = Bucket::new(timestamp);
                self.slot_bytes += bucket.heap_bytes();
                let b = match self.free.pop() {
                    Some(b) => {
                        self.buckets[b as usize] = bucket;
                        b
                    }
                    None => {
                        self.buckets.push(bucket);
                        (self.buckets.len() - 1) as u32
                    }
                };
                self.order.insert(timestamp, b);
                b
            }
        };
        let bucket = &mut self.buckets[b as usize];
        let before = bucket.heap_bytes();
        let pos = bucket.push(key, namespace);
        self.slot_bytes += bucket.heap_bytes() - before;
        bucket.live += 1;
        self.len += 1;
        if let Some(t) = &mut self.tracking {
            t.added += 1;
        }
        (b, pos)
    }

    /// Files the slot at `at` in the index under `hash`.
    fn index_slot(&mut self, hash: u64, at: (u32, u32)) {
        let buckets = &self.buckets;
        self.index.insert_unique(hash, at, |&(b, p)| {
            let bucket = &buckets[b as usize];
            Self::id_hash(crate::key_hash(bucket.key(p)), bucket.namespace(p), bucket.timestamp)
        });
    }

    /// Deletes a timer; `false` if there was none.
    pub fn delete(&mut self, key: &K, key_hash: u64, namespace: &N, timestamp: i64) -> bool {
        debug_assert_eq!(key_hash, crate::key_hash(key), "a timer's key hash is its key's stable hash");
        self.index_new();
        let Some((b, pos)) = self.find(key, key_hash, namespace, timestamp) else { return false };
        self.unindex(key_hash, namespace, timestamp, (b, pos));
        if let Some(t) = &mut self.tracking
            && !t.overflowed
            && pos < self.buckets[b as usize].mark
        {
            t.deleted.push((key.clone(), namespace.clone(), timestamp));
            t.check_limit();
        }
        self.kill(b, pos);
        true
    }

    /// Marks the live slot at `(b, pos)` dead (already unindexed).
    fn kill(&mut self, b: u32, pos: u32) {
        let bucket = &mut self.buckets[b as usize];
        let before = bucket.dead.capacity();
        bucket.mark_dead(pos);
        self.slot_bytes += (bucket.dead.capacity() - before) * 8;
        bucket.live -= 1;
        if bucket.live == 0 {
            self.retire(b);
        }
        self.len -= 1;
    }

    /// Drops emptied bucket `b` and frees its memory.
    fn retire(&mut self, b: u32) {
        let bucket = &mut self.buckets[b as usize];
        self.order.remove(&bucket.timestamp);
        self.slot_bytes -= bucket.heap_bytes();
        bucket.keys = VecDeque::new();
        bucket.namespaces = Namespaces::Shared(None);
        bucket.dead = Vec::new();
        self.free.push(b);
    }

    /// Whether timer `(key, namespace, timestamp)` is registered.
    pub fn contains(&mut self, key: &K, key_hash: u64, namespace: &N, timestamp: i64) -> bool {
        debug_assert_eq!(key_hash, crate::key_hash(key), "a timer's key hash is its key's stable hash");
        self.index_new();
        self.find(key, key_hash, namespace, timestamp).is_some()
    }

    /// Whether timer `(key, namespace, timestamp)` is registered, by a scan
    /// of its timestamp's timers instead of the index (which it neither
    /// needs nor builds): for checks in tests and debug builds. `None` if
    /// the timestamp has more than `limit` timers.
    pub fn scan_registered(&self, key: &K, namespace: &N, timestamp: i64, limit: usize) -> Option<bool> {
        let Some(&b) = self.order.get(&timestamp) else { return Some(false) };
        let bucket = &self.buckets[b as usize];
        if bucket.keys.len() > limit {
            return None;
        }
        Some(
            (bucket.head..bucket.end())
                .any(|p| !bucket.is_dead(p) && bucket.key(p) == key && bucket.namespace(p) == namespace),
        )
    }

    /// Every timer as `(key, key hash, namespace, timestamp)`, in firing order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, u64, &N, i64)> {
        self.order.values().flat_map(move |&b| {
            let bucket = &self.buckets[b as usize];
            (bucket.head..bucket.head + bucket.keys.len() as u32).filter(move |&p| !bucket.is_dead(p)).map(
                move |p| {
                    let key = bucket.key(p);
                    (key, crate::key_hash(key), bucket.namespace(p), bucket.timestamp)
                },
            )
        })
    }

    /// The earliest timestamp registered.
    pub fn next_timestamp(&self) -> Option<i64> {
        self.order.first_key_value().map(|(ts, _)| *ts)
    }

    /// Removes and returns the earliest timer if its timestamp is `<= upto`.
    pub fn pop_due(&mut self, upto: i64) -> Option<Timer<K, N>> {
        let (&timestamp, &b) = self.order.first_key_value()?;
        if timestamp > upto {
            return None;
        }
        let bucket = &mut self.buckets[b as usize];
        // A listed bucket has a live timer, so this loop ends with one.
        let ((key, namespace), pos) = loop {
            let pos = bucket.head;
            let slot = bucket.pop_front().expect("a listed bucket holds a live timer");
            if !bucket.is_dead(pos) {
                break (slot, pos);
            }
        };
        bucket.live -= 1;
        let (marked, indexed) = (pos < bucket.mark, pos < bucket.indexed);
        if bucket.live == 0 {
            self.retire(b);
        }
        let key_hash = crate::key_hash(&key);
        if indexed {
            self.unindex(key_hash, &namespace, timestamp, (b, pos));
        } else {
            self.unindexed_len -= 1;
        }
        if let Some(t) = &mut self.tracking
            && !t.overflowed
            && marked
        {
            let kg = t.groups.key_group(key_hash);
            *t.popped.entry((timestamp, namespace.clone(), kg)).or_insert(0) += 1;
            t.check_limit();
        }
        self.len -= 1;
        Some(Timer { key, key_hash, namespace, timestamp })
    }

    /// Number of timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is registered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the queue holds on the heap (slots, index, buckets), from
    /// capacities: what the engine charges to the core's memory budget.
    /// Constant time.
    pub fn memory_bytes(&self) -> usize {
        self.slot_bytes
            + self.index.capacity() * (std::mem::size_of::<(u32, u32)>() + 1)
            + self.buckets.capacity() * std::mem::size_of::<Bucket<K, N>>()
            + self.order.len() * 48
            + self.unindexed.capacity() * 4
            + self.tracking.as_ref().map_or(0, |t| {
                t.popped.capacity() * (std::mem::size_of::<((i64, N, u32), u32)>() + 1)
                    + t.deleted.capacity() * std::mem::size_of::<(K, N, i64)>()
            })
    }

    /// Marks the queue as it is now as checkpointed: from now on it
    /// records what changes, for [`changes`](Self::changes) (see the
    /// module docs). `groups` names the key groups the changes are counted
    /// by.
    pub fn mark(&mut self, groups: MaxParallelism) {
        for &b in self.order.values() {
            let bucket = &mut self.buckets[b as usize];
            bucket.mark = bucket.head + bucket.keys.len() as u32;
        }
        self.tracking = Some(Tracking {
            groups,
            popped: FxHashMap::default(),
            deleted: Vec::new(),
            added: 0,
            limit: (self.len / 8).max(1024),
            overflowed: false,
        });
    }

    /// What changed since the last [`mark`](Self::mark); `None` before the
    /// first mark, or when there were too many changes to record.
    pub fn changes(&self) -> Option<Changes<'_, K, N>> {
        let tracking = self.tracking.as_ref().filter(|t| !t.overflowed)?;
        Some(Changes { queue: self, tracking })
    }

    /// Removes from the timers of `timestamp`, in registration order, the
    /// first `count` of each `(namespace, key group)` in `counts` (key
    /// groups of `groups`), counting them down: a restore replaying
    /// [`Changes::popped`]. `false` if some count was left, because fewer
    /// such timers were there.
    pub fn remove_leading(
        &mut self,
        timestamp: i64,
        counts: &mut FxHashMap<(N, u32), u32>,
        groups: MaxParallelism,
    ) -> bool {
        let mut left: u64 = counts.values().map(|&c| c as u64).sum();
        if left == 0 {
            return true;
        }
        let Some(&b) = self.order.get(&timestamp) else { return false };
        let mut pos = self.buckets[b as usize].head;
        while left > 0 {
            let bucket = &self.buckets[b as usize];
            if pos == bucket.head + bucket.keys.len() as u32 {
                break;
            }
            if !bucket.is_dead(pos) {
                let key_hash = crate::key_hash(bucket.key(pos));
                let id = (bucket.namespace(pos).clone(), groups.key_group(key_hash));
                let last = bucket.live == 1;
                if let Some(c) = counts.get_mut(&id)
                    && *c > 0
                {
                    *c -= 1;
                    left -= 1;
                    if pos < bucket.indexed {
                        self.unindex(key_hash, &id.0, timestamp, (b, pos));
                    } else {
                        self.unindexed_len -= 1;
                    }
                    self.kill(b, pos);
                    if last {
                        break;
                    }
                }
            }
            pos += 1;
        }
        left == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedups_orders_and_deletes() {
        let mut q = TimerQueue::<&str, ()>::default();
        let (a, b) = (crate::key_hash(&"a"), crate::key_hash(&"b"));
        assert!(q.register(&"a", a, &(), 30));
        assert!(q.register(&"b", b, &(), 10));
        assert!(!q.register(&"a", a, &(), 30), "same (key, namespace, ts) once");
        assert!(q.register(&"a", a, &(), 10));
        assert!(q.delete(&"b", b, &(), 10));
        assert!(!q.delete(&"b", b, &(), 10));
        assert_eq!(q.next_timestamp(), Some(10));
        assert_eq!(q.pop_due(9), None);
        let t = q.pop_due(100).unwrap();
        assert_eq!((t.key, t.timestamp), ("a", 10));
        assert_eq!(q.pop_due(100).unwrap().timestamp, 30);
        assert!(q.is_empty());
        // A popped timer can be registered again.
        assert!(q.register(&"a", a, &(), 30));
    }

    #[test]
    fn matches_a_naive_reference_on_random_operations() {
        let seed = fastrand::u64(..);
        println!("seed {seed}");
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut q = TimerQueue::<u8, u8>::default();
        // The naive model: live timers in registration order.
        let mut model: Vec<(i64, u8, u8)> = Vec::new();
        for _ in 0..5_000 {
            let (k, n, ts) = (rng.u8(0..5), rng.u8(0..3), rng.i64(0..50));
            match rng.u8(0..5) {
                0 | 1 => {
                    let fresh = !model.contains(&(ts, k, n));
                    if fresh {
                        model.push((ts, k, n));
                    }
                    assert_eq!(q.register(&k, crate::key_hash(&k), &n, ts), fresh, "seed {seed}");
                }
                // Without a lookup, where the model says it is absent.
                4 if !model.contains(&(ts, k, n)) => {
                    model.push((ts, k, n));
                    q.register_absent(&k, &n, ts);
                }
                4 => {
                    assert_eq!(q.scan_registered(&k, &n, ts, usize::MAX), Some(true), "seed {seed}");
                    assert!(q.contains(&k, crate::key_hash(&k), &n, ts), "seed {seed}");
                }
                2 => {
                    let pos = model.iter().position(|t| *t == (ts, k, n));
                    if let Some(p) = pos {
                        model.remove(p);
                    }
                    assert_eq!(q.delete(&k, crate::key_hash(&k), &n, ts), pos.is_some(), "seed {seed}");
                }
                _ => {
                    let upto = rng.i64(0..50);
                    // Earliest timestamp; among equal ones, the first registered.
                    let want = model
                        .iter()
                        .enumerate()
                        .filter(|(_, t)| t.0 <= upto)
                        .min_by_key(|(i, t)| (t.0, *i))
                        .map(|(i, t)| (i, *t));
                    let got = q.pop_due(upto).map(|t| (t.timestamp, t.key, t.namespace));
                    assert_eq!(got, want.map(|(_, t)| t), "seed {seed}");
                    if let Some((i, _)) = want {
                        model.remove(i);
                    }
                }
            }
            assert_eq!(q.len(), model.len(), "seed {seed}");
            assert_eq!(q.slot_bytes, recount(&q), "seed {seed}");
            assert!(q.unindexed_len <= q.len, "seed {seed}");
            if rng.u8(0..200) == 0 {
                q.drop_index();
            }
            if rng.u8(0..50) == 0 {
                // Snapshot order: by timestamp, then registration order.
                let mut want = model.clone();
                want.sort_by_key(|t| t.0);
                let got: Vec<_> = q
                    .iter()
                    .map(|(k, h, n, ts)| {
                        assert_eq!(h, crate::key_hash(k));
                        (ts, *k, *n)
                    })
                    .collect();
                assert_eq!(got, want, "seed {seed}");
            }
        }
    }

    /// Timers added in groups without lookups (a restore) behave as the
    /// same timers registered one by one, whether or not the restore
    /// indexes them before the first change.
    #[test]
    fn timers_registered_new_in_groups_behave_as_registered_ones() {
        let seed = fastrand::u64(..);
        println!("seed {seed}");
        let mut rng = fastrand::Rng::with_seed(seed);
        for round in 0..20 {
            let (mut one, mut groups) = (TimerQueue::<u16, u8>::default(), TimerQueue::<u16, u8>::default());
            // Distinct timers, grouped by (timestamp, namespace) as a snapshot writes them.
            let mut all: Vec<(i64, u8, u16)> =
                (0..rng.usize(1..400)).map(|_| (rng.i64(0..30), rng.u8(0..3), rng.u16(0..200))).collect();
            all.sort();
            all.dedup();
            for chunk in all.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
                let keys: Vec<u16> = chunk.iter().map(|t| t.2).collect();
                for &(ts, n, k) in chunk {
                    assert!(one.register(&k, crate::key_hash(&k), &n, ts));
                }
                groups.register_new(&keys, &chunk[0].1, chunk[0].0);
            }
            assert_eq!(groups.len(), one.len());
            if round % 2 == 0 {
                groups.index_new();
                for &(ts, n, k) in &all {
                    assert!(groups.contains(&k, crate::key_hash(&k), &n, ts), "seed {seed}");
                }
            } else {
                // The first change after the groups is a timer they hold.
                let (ts, n, k) = all[rng.usize(..all.len())];
                assert!(!groups.register(&k, crate::key_hash(&k), &n, ts), "seed {seed}: registered twice");
            }
            for _ in 0..500 {
                let (k, n, ts) = (rng.u16(0..220), rng.u8(0..3), rng.i64(0..35));
                let h = crate::key_hash(&k);
                match rng.u8(0..3) {
                    0 => {
                        assert_eq!(groups.register(&k, h, &n, ts), one.register(&k, h, &n, ts), "seed {seed}")
                    }
                    1 => assert_eq!(groups.delete(&k, h, &n, ts), one.delete(&k, h, &n, ts), "seed {seed}"),
                    _ => {
                        let upto = rng.i64(0..35);
                        let (a, b) = (groups.pop_due(upto), one.pop_due(upto));
                        let t = |t: Option<Timer<u16, u8>>| t.map(|t| (t.timestamp, t.key, t.namespace));
                        assert_eq!(t(a), t(b), "seed {seed}");
                    }
                }
                assert_eq!(groups.len(), one.len(), "seed {seed}");
            }
        }
    }

    /// Timers added without lookups are fired, recorded in changes and
    /// restored from them without an index; the first lookup builds one
    /// that finds them all, and a dropped index is built again.
    #[test]
    fn timers_added_without_lookups_need_no_index_until_one_is_looked_up() {
        let groups = MaxParallelism::new(16).unwrap();
        let mut q = TimerQueue::<u64, u8>::default();
        let ts = |k: u64| 100 + (k % 4) as i64;
        for k in 0..10_000u64 {
            q.register_absent(&k, &0, ts(k));
        }
        q.mark(groups);
        let mut restored = TimerQueue::<u64, u8>::default();
        for t in 100..104 {
            let keys: Vec<u64> = q.iter().filter(|x| x.3 == t).map(|x| *x.0).collect();
            restored.register_new(&keys, &0, t);
        }
        for k in 10_000..12_000u64 {
            q.register_absent(&k, &0, ts(k));
        }
        let mut fired = Vec::new();
        while let Some(t) = q.pop_due(101) {
            fired.push(t.key);
        }
        assert_eq!(fired.len(), 6_000);
        let c = q.changes().expect("recorded");
        let mut by_ts: BTreeMap<i64, FxHashMap<(u8, u32), u32>> = BTreeMap::new();
        for (t, n, kg, count) in c.popped() {
            by_ts.entry(t).or_default().insert((*n, kg), count);
        }
        for (t, mut counts) in by_ts {
            assert!(restored.remove_leading(t, &mut counts, groups));
        }
        let added: Vec<(u64, i64)> = c.added().map(|(k, _, _, t)| (*k, t)).collect();
        for (k, t) in added {
            restored.register_new(&[k], &0, t);
        }
        for q in [&mut q, &mut restored] {
            assert_eq!(q.len(), 6_000);
            assert_eq!(q.index.capacity(), 0, "nothing looked a timer up");
            assert!(q.contains(&10_003, crate::key_hash(&10_003u64), &0, 103), "a lookup indexes first");
            assert!(!q.contains(&10_001, crate::key_hash(&10_001u64), &0, 101), "fired");
            assert_eq!(q.index.len(), 6_000);
            q.drop_index();
            assert_eq!((q.index.capacity(), q.unindexed_len), (0, 6_000));
            assert!(!q.register(&3, crate::key_hash(&3u64), &0, 103), "registered once");
            assert!(q.delete(&7, crate::key_hash(&7u64), &0, 103));
            assert_eq!(q.index.len(), 5_999);
            let left: Vec<u64> = std::iter::from_fn(|| q.pop_due(i64::MAX)).map(|t| t.key).collect();
            assert_eq!(left.len(), 5_999);
            assert!(q.index.is_empty() && q.is_empty());
        }
    }

    /// One file of a timer checkpoint chain, as the engine writes it:
    /// timers by (timestamp, namespace, key group) in registration order.
    enum File {
        Base(Vec<(i64, u8, u32, Vec<u16>)>),
        Delta {
            deleted: Vec<(u16, u8, i64)>,
            popped: Vec<(i64, u8, u32, u32)>,
            added: Vec<(i64, u8, u32, Vec<u16>)>,
        },
    }

    /// Timers grouped by (timestamp, namespace, key group), each group in
    /// the order `timers` lists them, groups in order of first appearance.
    fn groups_of<'a>(
        timers: impl Iterator<Item = (&'a u16, u64, &'a u8, i64)>,
        groups: MaxParallelism,
    ) -> Vec<(i64, u8, u32, Vec<u16>)> {
        let mut out: Vec<(i64, u8, u32, Vec<u16>)> = Vec::new();
        for (k, h, n, ts) in timers {
            let kg = groups.key_group(h);
            match out.iter_mut().find(|g| (g.0, g.1, g.2) == (ts, *n, kg)) {
                Some(g) => g.3.push(*k),
                None => out.push((ts, *n, kg, vec![*k])),
            }
        }
        out
    }

    /// A queue restored from `chain`, keeping the key groups `keep` says.
    fn restore_chain(
        chain: &[File],
        groups: MaxParallelism,
        keep: impl Fn(u32) -> bool,
    ) -> TimerQueue<u16, u8> {
        let mut q = TimerQueue::<u16, u8>::default();
        let add = |q: &mut TimerQueue<u16, u8>, gs: &[(i64, u8, u32, Vec<u16>)]| {
            for (ts, n, _, keys) in gs.iter().filter(|g| keep(g.2)) {
                q.register_new(keys, n, *ts);
            }
        };
        for file in chain {
            match file {
                File::Base(gs) => add(&mut q, gs),
                File::Delta { deleted, popped, added } => {
                    for &(k, n, ts) in deleted {
                        let h = crate::key_hash(&k);
                        if keep(groups.key_group(h)) {
                            assert!(q.delete(&k, h, &n, ts), "a deleted timer is there");
                        }
                    }
                    let mut by_ts: BTreeMap<i64, FxHashMap<(u8, u32), u32>> = BTreeMap::new();
                    for &(ts, n, kg, count) in popped.iter().filter(|p| keep(p.2)) {
                        by_ts.entry(ts).or_default().insert((n, kg), count);
                    }
                    for (ts, mut counts) in by_ts {
                        assert!(q.remove_leading(ts, &mut counts, groups), "the fired timers are there");
                    }
                    add(&mut q, added);
                }
            }
        }
        q.index_new();
        q
    }

    /// A chain of a full file and files of changes, restored with every key
    /// group or some, holds the timers the queue held, each (timestamp,
    /// namespace, key group) in the same order.
    #[test]
    fn a_base_and_changes_restore_the_queue() {
        let seed = fastrand::u64(..);
        println!("seed {seed}");
        let mut rng = fastrand::Rng::with_seed(seed);
        let groups = MaxParallelism::new(4).unwrap();
        let mut q = TimerQueue::<u16, u8>::default();
        let mut chain: Vec<File> = Vec::new();
        let (mut bases, mut deltas) = (0, 0);
        for step in 0..4_000 {
            let (k, n, ts) = (rng.u16(0..60), rng.u8(0..2), rng.i64(0..40));
            let h = crate::key_hash(&k);
            match rng.u8(0..6) {
                0..=2 => {
                    q.register(&k, h, &n, ts);
                }
                3 => {
                    q.delete(&k, h, &n, ts);
                }
                _ => {
                    let upto = rng.i64(0..40);
                    for _ in 0..rng.usize(0..20) {
                        if q.pop_due(upto).is_none() {
                            break;
                        }
                    }
                }
            }
            if rng.u8(0..40) != 0 {
                continue;
            }
            // A checkpoint: the changes when there are some, else everything.
            let file = match q.changes() {
                Some(c) if rng.u8(0..4) != 0 => {
                    deltas += 1;
                    File::Delta {
                        deleted: c.deleted().to_vec(),
                        popped: c.popped().map(|(ts, n, kg, count)| (ts, *n, kg, count)).collect(),
                        added: groups_of(c.added(), groups),
                    }
                }
                _ => {
                    bases += 1;
                    chain.clear();
                    File::Base(groups_of(q.iter(), groups))
                }
            };
            chain.push(file);
            q.mark(groups);
            let some = rng.u8(0..4) as u32;
            for keep in [Box::new(|_| true) as Box<dyn Fn(u32) -> bool>, Box::new(move |kg| kg != some)] {
                let r = restore_chain(&chain, groups, &keep);
                let order = |q: &TimerQueue<u16, u8>| {
                    let mut all: Vec<(i64, u8, u32, u16)> = q
                        .iter()
                        .map(|(k, h, n, ts)| (ts, *n, groups.key_group(h), *k))
                        .filter(|t| keep(t.2))
                        .collect();
                    // Stable: each group keeps its order.
                    all.sort_by_key(|t| (t.0, t.1, t.2));
                    all
                };
                assert_eq!(order(&r), order(&q), "seed {seed}, step {step}");
            }
        }
        println!("{bases} bases, {deltas} files of changes");
        assert!(bases > 5 && deltas > 20, "seed {seed}: both kinds of file were tried");
    }

    /// Recording stops past an eighth of the timers there at the mark (or
    /// 1024), and charges what it holds.
    #[test]
    fn too_many_changes_stop_the_record() {
        let groups = MaxParallelism::new(128).unwrap();
        let mut q = TimerQueue::<u64, ()>::default();
        for k in 0..2_000u64 {
            q.register(&k, crate::key_hash(&k), &(), k as i64);
        }
        q.mark(groups);
        for _ in 0..1_000 {
            q.pop_due(i64::MAX).unwrap();
        }
        let c = q.changes().expect("a thousand changes are recorded");
        assert_eq!(c.popped().count(), 1_000);
        assert_eq!(c.size(), 1_000);
        let with = q.memory_bytes();
        let record = q.tracking.take();
        let without = q.memory_bytes();
        q.tracking = record;
        assert!(with - without >= 1_000 * 24, "the record is charged: {with} - {without}");
        for _ in 0..100 {
            q.pop_due(i64::MAX).unwrap();
        }
        assert!(q.changes().is_none(), "past 1024 changes nothing is recorded");
        q.mark(groups);
        assert_eq!(q.changes().map(|c| c.size()), Some(0), "a mark starts a new record");
    }

    /// Slot bytes summed from the buckets (what `slot_bytes` tracks).
    fn recount<K, N>(q: &TimerQueue<K, N>) -> usize {
        q.order
            .values()
            .map(|&b| {
                let bucket = &q.buckets[b as usize];
                let each = match &bucket.namespaces {
                    Namespaces::Shared(_) => 0,
                    Namespaces::Each(ns) => ns.capacity() * std::mem::size_of::<N>(),
                };
                bucket.keys.capacity() * std::mem::size_of::<K>() + each + bucket.dead.capacity() * 8
            })
            .sum()
    }

    #[test]
    fn a_million_timers_on_one_timestamp_take_little_memory_and_fire_in_order() {
        let mut q = TimerQueue::<u64, (i64, i64)>::default();
        let n = 1_000_000u64;
        for k in 0..n {
            assert!(q.register(&k, crate::key_hash(&k), &(0, 10_000), 9_999));
        }
        for k in (0..n).step_by(7) {
            assert!(!q.register(&k, crate::key_hash(&k), &(0, 10_000), 9_999));
        }
        // One namespace for the whole bucket: a slot is the key's 8 bytes
        // (a 2^20 deque: 8.4 per timer); the index adds 9 per slot of
        // capacity (16.5 per timer at 1.8 M slots). A namespace per slot
        // made it 42.
        assert!(matches!(q.buckets[0].namespaces, Namespaces::Shared(Some(_))));
        let per_timer = q.memory_bytes() as f64 / n as f64;
        println!("{per_timer:.1} bytes per timer");
        assert!(per_timer < 26.0, "{per_timer} bytes per timer");
        for k in (0..n).step_by(2) {
            assert!(q.delete(&k, crate::key_hash(&k), &(0, 10_000), 9_999));
        }
        let mut fired = 0;
        let mut expect = 1;
        while let Some(t) = q.pop_due(9_999) {
            assert_eq!(t.key, expect);
            expect += 2;
            fired += 1;
        }
        assert_eq!(fired, n / 2);
        assert!(q.is_empty());
        assert_eq!(
            q.memory_bytes(),
            q.index.capacity() * 9 + q.buckets.capacity() * std::mem::size_of::<Bucket<u64, (i64, i64)>>()
        );
    }
}
