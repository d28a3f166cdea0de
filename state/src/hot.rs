//! [`HotTable`]: the hash table that holds a state's (or a window
//! operator's) entries in memory, split into [`SHARDS`] tables by hash.
//!
//! A hash table's memory is its bucket array, and a table that fills up
//! doubles it: for the moment it moves its entries, the old array and the
//! new one (twice as large) are both allocated. For a table of a few
//! million window rows that is 100 MiB more for some milliseconds, which
//! is what took the resident set 40–70 MiB past a core's memory budget in
//! R12 (see bench/RESULTS.md, "Where the peaks come from"). Split into
//! shards, each resize moves one sixteenth of the entries, and the table's
//! capacity steps up or down a shard at a time instead of doubling: a
//! budget that does not fit the next power of two still fits part of it.
//!
//! A shard is chosen by hash bits 40..44, which neither hashbrown's bucket
//! index (the low bits) nor its control tag (the top seven) uses at any
//! realistic size. Every method that takes a hash must be given the one the
//! entry is filed under, as with a plain `HashTable`.
//!
//! The same table holds a spilling table's index of cold records (key hash
//! to log location), which grows as the log does: a doubling of a 2^21-slot
//! index took a core's charge 17 MiB past its budget at once in R12.
//!
//! A small table is not split: sixteen tables of a few entries would cost
//! sixteen minimal bucket arrays, which a tiny budget cannot hold. Until it
//! has [`SPLIT_AT`] entries everything is in shard 0; then its entries are
//! spread over the shards once, and it stays split.

use hashbrown::HashTable;
use hashbrown::hash_table::{AbsentEntry, Entry, OccupiedEntry};

/// How many shards a [`HotTable`] has.
pub const SHARDS: usize = 16;

/// Entries at which a table splits into its shards.
pub const SPLIT_AT: usize = 1 << 14;

const SHARD_SHIFT: u32 = 40;

/// The shard an entry filed under `hash` lives in once the table is split.
#[inline]
fn shard_of(hash: u64) -> usize {
    (hash >> SHARD_SHIFT) as usize & (SHARDS - 1)
}

/// The buckets a shard's memory holds: none before its first allocation
/// (hashbrown reports one for an empty, unallocated table).
#[inline]
pub fn buckets<E>(shard: &HashTable<E>) -> usize {
    if shard.capacity() == 0 { 0 } else { shard.num_buckets() }
}

/// Copies `batch` into `out` grouped by `part(item)` (below `parts`), in
/// one counting pass; within a part, items keep their order.
///
/// A restore groups its inserts into a large table by the stretch of the
/// table they start probing at ([`bucket_part`]), so that consecutive
/// inserts touch one small stretch of it instead of missing the cache one
/// by one: [`TimerQueue::index_new`](crate::TimerQueue::index_new) and the
/// log's index of cold records. One pass, instead of a sort's `n log n`.
pub(crate) fn group_by_part<T: Copy>(
    batch: &[T],
    out: &mut Vec<T>,
    parts: usize,
    part: impl Fn(&T) -> usize,
) {
    let mut starts = vec![0usize; parts + 1];
    for t in batch {
        starts[part(t) + 1] += 1;
    }
    for i in 1..=parts {
        starts[i] += starts[i - 1];
    }
    out.clear();
    let Some(&first) = batch.first() else { return };
    out.resize(batch.len(), first);
    for &t in batch {
        let p = part(&t);
        out[starts[p]] = t;
        starts[p] += 1;
    }
}

/// The addresses a probe for `hash` in `shard` reads first: its group of
/// control bytes, and the entries of its home bucket (where the probe
/// starts) and of the bucket one cache line further on (an entry is usually
/// within a few buckets of its home). `None` for an empty table.
///
/// hashbrown keeps control bytes after the bucket array, bucket `i` ending
/// `i * size` bytes before them, and starts a probe at `hash & mask`. The
/// control bytes' address is learned from the first full bucket, whose
/// line every prefetch of the shard reads, so it stays in the cache. Only
/// pointer arithmetic: nothing is read through these addresses here.
///
/// `None` too for a shard less than 1/64 full (emptied by removals, which
/// do not shrink it): finding its first full bucket could mean scanning
/// far. Above that, it is expected within the first 64 control bytes, the
/// line already read.
#[inline]
pub(crate) fn home_lines<E>(shard: &HashTable<E>, hash: u64) -> Option<[*const u8; 3]> {
    let size = std::mem::size_of::<E>();
    if shard.len() * 64 < shard.num_buckets() {
        return None;
    }
    let first_full = shard.iter_buckets().next()?;
    let entry = shard.get_bucket(first_full)? as *const E as *const u8;
    let ctrl = entry.wrapping_add((first_full + 1) * size);
    let home = hash as usize & (shard.num_buckets() - 1);
    let further = home + 64 / size.max(1);
    Some([
        ctrl.wrapping_add(home),
        ctrl.wrapping_sub((home + 1) * size),
        ctrl.wrapping_sub((further + 1) * size),
    ])
}

/// Asks the CPU to bring `ptr`'s cache line in, without waiting for it:
/// a hint, which never faults and reads nothing.
#[inline(always)]
pub(crate) fn prefetch_line<T>(ptr: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults and reads nothing.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr.cast::<i8>())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

/// The part of bucket `bucket` of a table of `mask + 1` buckets cut into
/// `2^bits` parts.
pub(crate) fn bucket_part(bucket: u64, mask: u64, bits: u32) -> usize {
    ((bucket & mask) >> (64 - mask.leading_zeros()).saturating_sub(bits)) as usize
}

/// A hash table of entries of type `E` made of [`SHARDS`] `hashbrown`
/// tables (see the module docs).
pub struct HotTable<E> {
    shards: [HashTable<E>; SHARDS],
    split: bool,
}

impl<E> Default for HotTable<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> HotTable<E> {
    /// An empty table (allocates nothing).
    pub fn new() -> Self {
        Self { shards: std::array::from_fn(|_| HashTable::new()), split: false }
    }

    /// The shard an entry filed under `hash` lives in.
    #[inline]
    pub fn shard_index(&self, hash: u64) -> usize {
        if self.split { shard_of(hash) } else { 0 }
    }

    /// Spreads the entries over the shards once the table is large enough.
    #[inline]
    fn split_if_large(&mut self, hasher: &impl Fn(&E) -> u64) {
        if !self.split && self.shards[0].len() >= SPLIT_AT {
            self.split(hasher);
        }
    }

    fn split(&mut self, hasher: &impl Fn(&E) -> u64) {
        self.split = true;
        for e in std::mem::take(&mut self.shards[0]) {
            let hash = hasher(&e);
            self.shards[shard_of(hash)].insert_unique(hash, e, hasher);
        }
    }

    /// Makes room for `additional` more entries, spread over the shards as
    /// hashes spread them (with an eighth more for their unevenness).
    pub fn reserve(&mut self, additional: usize, hasher: impl Fn(&E) -> u64) {
        if !self.split && self.shards[0].len() + additional >= SPLIT_AT {
            self.split(&hasher);
        }
        if self.split {
            let each = additional / SHARDS + additional / (SHARDS * 8) + 1;
            for shard in &mut self.shards {
                shard.reserve(each, &hasher);
            }
        } else {
            self.shards[0].reserve(additional, hasher);
        }
    }

    /// Entries the table can hold before a shard grows, over all shards.
    pub fn capacity(&self) -> usize {
        self.shards.iter().map(HashTable::capacity).sum()
    }

    /// The entries filed under `hash` (and perhaps a few others whose hash
    /// shares its bucket tag), as `HashTable::iter_hash`.
    #[inline]
    pub fn iter_hash(&self, hash: u64) -> impl Iterator<Item = &E> {
        self.shards[self.shard_index(hash)].iter_hash(hash)
    }

    /// Shard `i` (see [`Self::shard_index`]).
    #[inline]
    pub fn shard(&self, i: usize) -> &HashTable<E> {
        &self.shards[i]
    }

    /// Shard `i`, mutably.
    #[inline]
    pub fn shard_mut(&mut self, i: usize) -> &mut HashTable<E> {
        &mut self.shards[i]
    }

    /// Starts loading the entries filed under `hash` into the cache
    /// without waiting for any of it: the lines of the control bytes
    /// hashbrown probes first and of the buckets they describe, the home of
    /// any entry filed under `hash` that needed no second probe group.
    /// Prefetches for several hashes in a row overlap their misses; a
    /// lookup afterwards finds its lines on their way.
    ///
    /// The addresses follow hashbrown's layout (see `home_lines`); were it
    /// to change, this would load the wrong lines (the layout test fails),
    /// never read or write memory.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        let shard = &self.shards[self.shard_index(hash)];
        if let Some([ctrl, first, second]) = home_lines(shard, hash) {
            prefetch_line(ctrl);
            prefetch_line(first);
            prefetch_line(second);
        }
    }

    /// The entry filed under `hash` that `eq` accepts.
    #[inline]
    pub fn find(&self, hash: u64, eq: impl FnMut(&E) -> bool) -> Option<&E> {
        self.shards[self.shard_index(hash)].find(hash, eq)
    }

    /// The entry filed under `hash` that `eq` accepts, mutably.
    #[inline]
    pub fn find_mut(&mut self, hash: u64, eq: impl FnMut(&E) -> bool) -> Option<&mut E> {
        self.shards[self.shard_index(hash)].find_mut(hash, eq)
    }

    /// The entry filed under `hash` that `eq` accepts, to remove or change
    /// it in place.
    #[inline]
    pub fn find_entry(
        &mut self,
        hash: u64,
        eq: impl FnMut(&E) -> bool,
    ) -> Result<OccupiedEntry<'_, E>, AbsentEntry<'_, E>> {
        self.shards[self.shard_index(hash)].find_entry(hash, eq)
    }

    /// The entry filed under `hash` that `eq` accepts, or the place to
    /// insert one. `hasher` gives an entry's hash when its shard grows.
    #[inline]
    pub fn entry(
        &mut self,
        hash: u64,
        eq: impl FnMut(&E) -> bool,
        hasher: impl Fn(&E) -> u64,
    ) -> Entry<'_, E> {
        self.split_if_large(&hasher);
        self.shards[self.shard_index(hash)].entry(hash, eq, hasher)
    }

    /// Inserts `value`, which must not be in the table yet, under `hash`.
    #[inline]
    pub fn insert_unique(&mut self, hash: u64, value: E, hasher: impl Fn(&E) -> u64) -> OccupiedEntry<'_, E> {
        self.split_if_large(&hasher);
        self.shards[self.shard_index(hash)].insert_unique(hash, value, hasher)
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.shards.iter().map(HashTable::len).sum()
    }

    /// Whether the table holds no entry.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(HashTable::is_empty)
    }

    /// Buckets over all shards (what the table's memory is; a shard that
    /// never held an entry has none).
    pub fn num_buckets(&self) -> usize {
        self.shards.iter().map(buckets).sum()
    }

    /// [`len`](Self::len) and [`num_buckets`](Self::num_buckets) in one
    /// pass over the shards (what a charge needs on every access).
    pub fn len_and_buckets(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(n, b), s| (n + s.len(), b + buckets(s)))
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &E> {
        self.shards.iter().flat_map(HashTable::iter)
    }

    /// Removes and yields every entry.
    pub fn drain(&mut self) -> impl Iterator<Item = E> + '_ {
        self.shards.iter_mut().flat_map(HashTable::drain)
    }

    /// The entry in bucket `index` of the whole table (shard after shard),
    /// if the bucket is full.
    pub fn get_bucket_entry(&mut self, mut index: usize) -> Option<OccupiedEntry<'_, E>> {
        for shard in &mut self.shards {
            let n = shard.num_buckets();
            if index < n {
                return shard.get_bucket_entry(index).ok();
            }
            index -= n;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prefetch's addresses follow hashbrown's layout: an entry found
    /// in its home bucket lies where [`home_lines`] says, for tables of
    /// several sizes and entry sizes. A hashbrown upgrade that moves things
    /// fails here rather than making prefetches silently useless.
    #[test]
    fn home_lines_point_at_the_home_bucket_and_its_control_bytes() {
        fn check<E: Copy>(make: impl Fn(u64) -> E, n: u64) {
            let mut t = HashTable::new();
            let hash = |i: u64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            for i in 0..n {
                t.insert_unique(hash(i), (i, make(i)), |e: &(u64, E)| hash(e.0));
            }
            let mask = t.num_buckets() - 1;
            let mut at_home = 0;
            for i in 0..n {
                let h = hash(i);
                let [ctrl, first, _] = home_lines(&t, h).expect("not empty");
                let bucket = t.find_bucket_index(h, |e| e.0 == i).expect("present");
                if bucket == h as usize & mask {
                    at_home += 1;
                    let entry = t.get_bucket(bucket).expect("full") as *const (u64, E) as *const u8;
                    assert_eq!(entry, first, "entry {i} of {n}");
                }
                // Control bytes: the home's offset from the learned base
                // matches every bucket's own.
                let base = ctrl.wrapping_sub(h as usize & mask);
                let own = t.get_bucket(bucket).expect("full") as *const (u64, E) as *const u8;
                assert_eq!(own.wrapping_add((bucket + 1) * std::mem::size_of::<(u64, E)>()), base);
            }
            assert!(at_home > n / 4, "{at_home} of {n} entries at home");
        }
        assert!(home_lines(&HashTable::<u64>::new(), 1).is_none());
        // A table emptied to under 1/64 is not scanned for its base.
        let mut sparse = HashTable::new();
        for i in 0..1000u64 {
            sparse.insert_unique(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), i, |&x| {
                x.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            });
        }
        sparse.retain(|x| *x < 10);
        assert!(sparse.len() * 64 < sparse.num_buckets());
        assert!(home_lines(&sparse, 5).is_none());
        for n in [1, 7, 100, 5000] {
            check(|i| i as u32, n);
            check(|i| [i; 7], n);
        }
    }

    #[test]
    fn grouping_by_part_keeps_order_within_a_part() {
        let batch: Vec<u32> = (0..1000u32).map(|i| i.wrapping_mul(2654435761) % 997).collect();
        let mut out = Vec::new();
        group_by_part(&batch, &mut out, 8, |&x| (x % 8) as usize);
        let mut want = batch.clone();
        want.sort_by_key(|&x| x % 8); // stable
        assert_eq!(out, want);
        // The top bits of a bucket number, for any table size.
        assert_eq!(bucket_part(0b1011_0000, 0xff, 4), 0b1011);
        assert_eq!(bucket_part(0b101, 0b111, 4), 0b101);
    }

    /// Against a `HashMap`: whatever shard an entry lands in, it is found
    /// by its hash, removed once, and counted once.
    #[test]
    fn behaves_as_one_table() {
        let seed = fastrand::u64(..);
        println!("seed = {seed}");
        let mut rng = fastrand::Rng::with_seed(seed);
        let hash = |k: u64| crate::key_hash(&k);
        let mut t: HotTable<(u64, u64)> = HotTable::new();
        let mut model = std::collections::HashMap::new();
        // Keys enough to split the table half way through.
        for n in 0..200_000u64 {
            let k = rng.u64(0..(2 * SPLIT_AT as u64).min(1000 + n / 4));
            match rng.u8(0..3) {
                0 => {
                    let v = rng.u64(..);
                    match t.entry(hash(k), |e| e.0 == k, |e| hash(e.0)) {
                        Entry::Occupied(mut o) => o.get_mut().1 = v,
                        Entry::Vacant(e) => {
                            e.insert((k, v));
                        }
                    }
                    model.insert(k, v);
                }
                1 => {
                    let got = t.find_entry(hash(k), |e| e.0 == k).ok().map(|o| o.remove().0.1);
                    assert_eq!(got, model.remove(&k));
                }
                _ => assert_eq!(t.find(hash(k), |e| e.0 == k).map(|e| e.1), model.get(&k).copied()),
            }
        }
        assert_eq!(t.len(), model.len());
        let used = (0..SHARDS).filter(|&i| !t.shard(i).is_empty()).count();
        if model.len() >= SPLIT_AT {
            assert_eq!(used, SHARDS, "entries spread over every shard");
        } else {
            assert_eq!(used, 1, "a small table is not split");
        }
        // Every full bucket, visited through the whole table's numbering.
        let mut seen = 0;
        for i in 0..t.num_buckets() {
            seen += usize::from(t.get_bucket_entry(i).is_some());
        }
        assert_eq!(seen, model.len());
        assert!(t.get_bucket_entry(t.num_buckets()).is_none());
        let mut drained: Vec<_> = t.drain().collect();
        drained.sort_unstable();
        let mut want: Vec<_> = model.into_iter().collect();
        want.sort_unstable();
        assert_eq!(drained, want);
        assert!(t.is_empty());
    }

    /// Room reserved on a small table splits it and spreads the room, so
    /// that many inserts later no shard has grown; every entry is found
    /// among those sharing its hash.
    #[test]
    fn reserved_room_holds_its_entries_without_growth() {
        let seed = fastrand::u64(..);
        println!("seed = {seed}");
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut t: HotTable<(u64, u64)> = HotTable::new();
        t.insert_unique(5, (5, 0), |e| e.0);
        let n = 100_000;
        t.reserve(n, |e| e.0);
        assert!(t.capacity() > n, "capacity {} for {}", t.capacity(), n + 1);
        assert_eq!(t.find(5, |e| e.0 == 5), Some(&(5, 0)), "an entry survives the split");
        let buckets = t.num_buckets();
        let hashes: Vec<u64> = (0..n).map(|_| rng.u64(..)).collect();
        for (i, &h) in hashes.iter().enumerate() {
            t.insert_unique(h, (h, i as u64), |e| e.0);
        }
        assert_eq!(t.num_buckets(), buckets, "no shard grew");
        for (i, &h) in hashes.iter().enumerate() {
            assert!(t.iter_hash(h).any(|e| *e == (h, i as u64)), "entry {i} found by its hash");
        }
        assert_eq!(t.len(), n + 1);
    }
}
