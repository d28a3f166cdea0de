//! The window operator's rows, one per (key, window): a hash table in
//! memory, and under the log backend a log tier behind it.
//!
//! Under `state_backend = log` the rows beyond the core's memory budget are
//! evicted to the operator's log as records `postcard(((key, window),
//! (acc, trigger slots, end timer, cleanup timer)))` filed under the row's
//! hash, exactly as keyed process state is (`brisk_state::log`): every row
//! access first *touches* the row, which charges the budget (evicting
//! unreferenced rows, writing the dirty ones) and reads an evicted row back.
//! Timers and the merging-window sets stay in memory.

use std::borrow::Cow;
use std::cell::RefCell;
use std::hash::Hash;
use std::rc::Rc;

use brisk_state::hot::HotTable;
use brisk_state::log::compact::{CompactTarget, compact_once};
use brisk_state::log::index::{BaseFile, ForgottenRef, IndexedTables};
use brisk_state::log::spill::{DIRTY, HotEntry, LOGGED, REFERENCED, Spill};
use brisk_state::log::{
    IndexCheckpoint, IndexedTable, Loc, LogIndex, LogStore, MemoryBudget, Record, SegmentRef, SpillStats,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::assigner::Window;
use super::trigger::TriggerSlots;

/// Contents and trigger state of one (key, window).
pub(crate) struct Row<K, A> {
    pub key: K,
    pub window: Window,
    pub acc: Option<A>,
    pub slots: TriggerSlots,
    /// Whether an event-time timer at the window's max timestamp is known to
    /// be queued: lets a trigger that re-registers it on every element (the
    /// event-time trigger) skip the queue's index. Cleared when that timer is
    /// deleted or fires. A flag rather than a timestamp keeps a row of a
    /// small key and accumulator within one 64-byte cache line.
    pub end_timer: bool,
    /// Whether this window's cleanup timer is queued (Flink re-registers it,
    /// idempotently, on every element; once is the same).
    pub cleanup_registered: bool,
    /// Log backend: dirty and referenced flags.
    flags: u8,
}

/// The hash of a (key, window) row, from the key's stable hash.
#[inline]
pub(crate) fn row_hash(key_hash: u64, window: &Window) -> u64 {
    brisk_state::hash::fmix64(
        key_hash ^ brisk_state::hash::fmix64(window.start() as u64 ^ (window.end() as u64).rotate_left(32)),
    )
}

/// A row's value as its log record holds it.
pub(crate) type RowValue<A> = (Option<A>, TriggerSlots, bool, bool);

impl<K: Clone + Hash + Serialize, A: Serialize> HotEntry<(K, Window), RowValue<A>> for Row<K, A> {
    fn hash(&self) -> u64 {
        row_hash(brisk_state::key_hash(&self.key), &self.window)
    }
    fn key(&self) -> Cow<'_, (K, Window)> {
        Cow::Owned((self.key.clone(), self.window))
    }
    fn encode(&self, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        let image =
            ((&self.key, &self.window), (&self.acc, &self.slots, self.end_timer, self.cleanup_registered));
        // Writing into a Vec fails only if a Serialize impl itself fails.
        postcard::to_io(&image, &mut *out).expect("window rows encode");
        out.len() - start
    }
    fn flags(&mut self) -> &mut u8 {
        &mut self.flags
    }
}

/// The log behind the rows (log backend).
struct RowTier<K, A> {
    log: Rc<RefCell<LogStore>>,
    spill: Spill<(K, Window), RowValue<A>>,
    /// The index bases its checkpoints refer to.
    index: LogIndex,
    accesses: u32,
}

/// The rows' index as index bases see it: one table, state 0.
struct OneTable<'a, T>(&'a mut T);

impl<T: IndexedTable> IndexedTables for OneTable<'_, T> {
    fn states(&self) -> Vec<u32> {
        vec![0]
    }
    fn table(&mut self, state: u32) -> Option<&mut dyn IndexedTable> {
        (state == 0).then_some(&mut *self.0 as &mut dyn IndexedTable)
    }
}

impl<K, A> RowTier<K, A>
where
    K: Eq + Hash + Clone + Serialize + DeserializeOwned,
    A: Serialize + DeserializeOwned,
{
    /// The evicted row of (key, window), read back from the log, if any.
    fn read_back(&mut self, key: &K, rh: u64, window: Window) -> Option<Row<K, A>> {
        if self.spill.cold_len() == 0 {
            return None;
        }
        let (acc, slots, end_timer, cleanup_registered) = self.spill.fault_in(rh, &(key.clone(), window))?;
        Some(Row {
            key: key.clone(),
            window,
            acc,
            slots,
            end_timer,
            cleanup_registered,
            flags: REFERENCED | LOGGED,
        })
    }
}

/// Accesses between two looks at the log (finished writes, compaction).
const LOG_MAINTAIN_EVERY: u32 = 1024;

/// Every row of one window operator on one core.
pub(crate) struct Rows<K, A> {
    table: HotTable<Row<K, A>>,
    tier: Option<Box<RowTier<K, A>>>,
}

/// The rows as compaction sees them (state 0 of the log).
struct Target<'a, K, A> {
    spill: &'a mut Spill<(K, Window), RowValue<A>>,
}

impl<K, A> CompactTarget for Target<'_, K, A>
where
    K: Eq + Hash + Clone + Serialize + DeserializeOwned,
    A: Serialize + DeserializeOwned,
{
    fn is_live(&self, _: u32, hash: u64, loc: Loc) -> bool {
        self.spill.is_live(hash, loc)
    }
    fn tombstone_still_needed(&self, _: u32, rec: &Record<'_>) -> bool {
        self.spill.tombstone_still_needed(rec)
    }
    fn relocate(&mut self, _: u32, hash: u64, old: Loc, new: Loc) {
        self.spill.relocate(hash, old, new);
    }
    fn prefetch(&self, _: u32, hash: u64) {
        self.spill.prefetch_cold(hash);
    }
}

impl<K, A> Rows<K, A>
where
    K: Eq + Hash + Clone + Serialize + DeserializeOwned + 'static,
    A: Serialize + DeserializeOwned + 'static,
{
    /// Rows in memory only, or with a log tier (`log`, charging `budget`).
    pub fn new(log: Option<(LogStore, Rc<MemoryBudget>)>) -> Self {
        let tier = log.map(|(log, budget)| {
            let log = Rc::new(RefCell::new(log));
            let spill = Spill::new(log.clone(), 0, budget, std::mem::size_of::<Row<K, A>>());
            Box::new(RowTier { log, spill, index: LogIndex::default(), accesses: 0 })
        });
        Self { table: HotTable::new(), tier }
    }

    /// Under the log backend: charges the budget (evicting if over it),
    /// maintains the log now and then, and reads the row back if evicted.
    #[inline]
    fn touch(&mut self, key: &K, rh: u64, window: Window) {
        if !self.before_access(rh) {
            return;
        }
        if let Some(r) = self.table.find_mut(rh, |r| r.window == window && r.key == *key) {
            r.flags |= REFERENCED;
            if let Some(t) = &mut self.tier {
                t.spill.observe_with(|o| r.encode(o));
            }
        } else if let Some(row) = self.tier.as_mut().and_then(|t| t.read_back(key, rh, window)) {
            self.table.insert_unique(rh, row, |r| row_hash(brisk_state::key_hash(&r.key), &r.window));
        }
    }

    /// Under the log backend, the bookkeeping every row access starts with:
    /// now and then a look at the log (finished writes, compaction), then
    /// the budget (evicting if over it). `false` without a log.
    #[inline]
    fn before_access(&mut self, rh: u64) -> bool {
        let Some(t) = &mut self.tier else { return false };
        t.accesses += 1;
        if t.accesses >= LOG_MAINTAIN_EVERY {
            t.accesses = 0;
            compact_once(&t.log, &mut Target { spill: &mut t.spill });
        }
        t.spill.maintain(&mut self.table, rh);
        true
    }

    /// The row of (key, window) (`rh` = [`row_hash`]), created empty if
    /// absent. Rows do not keep the key hash (it would cost 8 bytes per
    /// window); growing the table recomputes it. One probe of the table:
    /// an absent row is read back from the log if it was evicted.
    #[inline]
    pub fn or_insert(&mut self, key: &K, rh: u64, window: Window) -> &mut Row<K, A> {
        self.before_access(rh);
        let entry = self.table.entry(
            rh,
            |r| r.window == window && r.key == *key,
            |r| row_hash(brisk_state::key_hash(&r.key), &r.window),
        );
        let row = match entry {
            hashbrown::hash_table::Entry::Occupied(o) => {
                let row = o.into_mut();
                if let Some(t) = self.tier.as_mut() {
                    row.flags |= REFERENCED;
                    t.spill.observe_with(|o| row.encode(o));
                }
                row
            }
            hashbrown::hash_table::Entry::Vacant(v) => {
                let back = self.tier.as_mut().and_then(|t| t.read_back(key, rh, window));
                let row = back.unwrap_or_else(|| Row {
                    key: key.clone(),
                    window,
                    acc: None,
                    slots: TriggerSlots::default(),
                    end_timer: false,
                    cleanup_registered: false,
                    flags: 0,
                });
                v.insert(row).into_mut()
            }
        };
        row.flags |= DIRTY;
        row
    }

    /// The row of (key, window), if any.
    #[inline]
    pub fn get_mut(&mut self, key: &K, key_hash: u64, window: Window) -> Option<&mut Row<K, A>> {
        let rh = row_hash(key_hash, &window);
        self.touch(key, rh, window);
        let row = self.table.find_mut(rh, |r| r.window == window && r.key == *key)?;
        row.flags |= DIRTY;
        Some(row)
    }

    /// Removes the row of (key, window).
    pub fn remove(&mut self, key: &K, key_hash: u64, window: Window) -> Option<Row<K, A>> {
        self.remove_row(key, key_hash, window, false)
    }

    /// Removes the row of (key, window) at its window's cleanup time: no
    /// row of that window is ever made again (an element for it is late),
    /// so its record dies without a tombstone, and a restore keeps only the
    /// rows whose cleanup timer is pending (see [`Self::replay_segment`]).
    /// Fired windows would otherwise leave a tombstone per logged row, which
    /// compaction copies forward for as long as the log is older than it.
    pub fn remove_done(&mut self, key: &K, key_hash: u64, window: Window) -> Option<Row<K, A>> {
        self.remove_row(key, key_hash, window, true)
    }

    fn remove_row(&mut self, key: &K, key_hash: u64, window: Window, done: bool) -> Option<Row<K, A>> {
        let rh = row_hash(key_hash, &window);
        if self.tier.as_ref().is_some_and(|t| t.spill.cold_len() > 0) {
            // Reads it back first (it may be cold).
            self.touch(key, rh, window);
        }
        let row =
            self.table.find_entry(rh, |r| r.window == window && r.key == *key).ok().map(|e| e.remove().0);
        if let (Some(t), Some(r)) = (&mut self.tier, &row) {
            let logged = Some(r.flags & LOGGED != 0);
            if done {
                t.spill.forget_for_good(rh, &(key.clone(), window), logged);
            } else {
                // A tombstone, if the row has a record.
                t.spill.forget(rh, &(key.clone(), window), logged);
            }
        }
        row
    }

    /// Starts loading the row filed under `rh` into the cache (a probe that
    /// prefetches the rows it passes, then gives up).
    #[inline]
    pub fn prefetch(&self, rh: u64) {
        self.table.prefetch(rh);
        if let Some(t) = self.mostly_cold() {
            t.spill.prefetch_cold(rh);
        }
    }

    /// The log tier, while most rows are cold: a row about to be accessed
    /// likely is, and is read back through the index of cold rows.
    #[inline]
    fn mostly_cold(&self) -> Option<&RowTier<K, A>> {
        self.tier.as_deref().filter(|t| t.spill.cold_len() > self.table.len())
    }

    /// After [`prefetch`](Self::prefetch): starts loading the log record
    /// of the row filed under `rh`, while most rows are cold.
    #[inline]
    pub fn prefetch_record(&self, rh: u64) {
        if let Some(t) = self.mostly_cold() {
            t.spill.prefetch_record(rh);
        }
    }

    /// Rows in memory (under the log backend, evicted rows are not here:
    /// see [`for_each_cold`](Self::for_each_cold)).
    pub fn hot(&self) -> impl Iterator<Item = &Row<K, A>> {
        self.table.iter()
    }

    /// Calls `out` with every evicted row's record payload that is not in
    /// memory.
    pub fn for_each_cold(&self, out: &mut dyn FnMut(u64, &[u8])) {
        if let Some(t) = &self.tier {
            let table = &self.table;
            t.spill.for_each_cold(|h, k| table.find(h, |r| r.key == k.0 && r.window == k.1).is_some(), out);
        }
    }

    /// Writes every dirty row into the log, seals it and returns its
    /// segments (the checkpoint's from now on). `None` without a log.
    pub fn flush_log(&mut self) -> Option<Vec<SegmentRef>> {
        let t = self.tier.as_mut()?;
        t.spill.flush(&mut self.table);
        let mut log = t.log.borrow_mut();
        log.seal();
        Some(log.publish())
    }

    /// The log, if any.
    pub fn log(&self) -> Option<&Rc<RefCell<LogStore>>> {
        self.tier.as_ref().map(|t| &t.log)
    }

    /// After [`flush_log`](Self::flush_log) returned `list`: what the
    /// checkpoint refers to of the rows' index, writing a new index base if
    /// one is due (`brisk_state::log::index`). `None` without a log, and
    /// when the log can have no base now (`LogIndex::checkpoint`): a
    /// restore then replays every segment.
    pub fn checkpoint_index(&mut self, list: &[SegmentRef]) -> Option<IndexCheckpoint> {
        let t = self.tier.as_mut()?;
        let mut log = t.log.borrow_mut();
        t.index.checkpoint(&mut log, list, &mut OneTable(&mut t.spill))
    }

    /// The first step of a restore through an index base: indexes the rows
    /// of `base` whose segments the log has adopted. Returns how many.
    pub fn load_index(&mut self, base: &BaseFile) -> Result<usize, String> {
        let Some(t) = &mut self.tier else { return Err("not a log backend".into()) };
        let log = t.log.borrow();
        brisk_state::log::index::load_base(base.base(), &log, &mut OneTable(&mut t.spill))
    }

    /// The last step of a restore through an index base, after its tail
    /// was replayed: unindexes the rows removed for good since the base
    /// (`forgotten`), and recounts the log's dead records.
    pub fn finish_index(&mut self, forgotten: &[ForgottenRef]) {
        let Some(t) = &mut self.tier else { return };
        let mut log = t.log.borrow_mut();
        brisk_state::log::index::unindex_forgotten(forgotten, &log, &mut OneTable(&mut t.spill));
        brisk_state::log::index::recount_dead(&mut log, &mut OneTable(&mut t.spill));
    }

    /// Rebuilds the index from adopted segment `seg`, keeping the rows whose
    /// key's hash `owned` accepts and that `live` says still exist (a row
    /// removed for good left no tombstone: its window's cleanup timer is
    /// gone instead). Segments must be replayed in log order.
    pub fn replay_segment(
        &mut self,
        seg: u32,
        owned: impl Fn(u64) -> bool,
        mut live: impl FnMut(&K, Window) -> bool,
    ) -> Result<(), String> {
        let Some(t) = &mut self.tier else { return Err("not a log backend".into()) };
        // A handle on the segment's bytes: records are read in place while
        // the log is borrowed mutably for each.
        let Some((bytes, len)) = t.log.borrow().sealed_bytes(seg) else { return Ok(()) };
        let bytes = &(*bytes).as_ref()[..len];
        // Out of the log's order (see `LogStore::adopt_verified`): copy what we keep.
        let copy = !t.log.borrow().in_order(seg);
        let mut failed = None;
        brisk_state::log::format::scan(bytes, |at, rec| {
            if failed.is_some() {
                return;
            }
            let loc = Loc::new(seg, at);
            let mut log = t.log.borrow_mut();
            let key = match postcard::take_from_bytes::<(K, Window)>(rec.payload) {
                Ok((key, _)) => key,
                Err(e) => {
                    failed = Some(format!("a window row's key does not decode: {e}"));
                    return;
                }
            };
            let put = rec.kind == brisk_state::log::RecordKind::Put;
            if rec.state != 0 || !owned(brisk_state::key_hash(&key.0)) || (put && !live(&key.0, key.1)) {
                log.kill(loc);
                return;
            }
            let loc = if copy {
                log.append(rec.state, rec.kind, rec.hash, |o| o.extend_from_slice(rec.payload))
            } else {
                loc
            };
            if let Err(e) = t.spill.replay(&mut log, loc, &rec) {
                failed = Some(e);
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        if copy {
            t.log.borrow_mut().drop_segment(seg);
        }
        Ok(())
    }

    /// Counters of the log tier: the spill's and the log's.
    pub fn log_stats(&self) -> Option<(SpillStats, brisk_state::log::LogStats)> {
        let t = self.tier.as_ref()?;
        Some((t.spill.stats, t.log.borrow().stats().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_of_a_small_key_and_accumulator_fills_one_cache_line() {
        // The KW workload's rows: a u64 key and a (count, sum) accumulator.
        // hashbrown places 64-byte rows on 64-byte boundaries of a large
        // table, so each probe touches one line; the log tier's flags fit
        // in the padding.
        assert_eq!(std::mem::size_of::<Row<u64, (u64, u64)>>(), 64);
    }

    /// Rows removed at their window's cleanup leave no tombstone; a replay
    /// keeps them gone through its `live` filter (without it, their records
    /// in the checkpoint's segments would come back: the control).
    #[test]
    fn rows_removed_for_good_leave_no_tombstone_and_stay_gone_at_a_replay() {
        use brisk_state::key_hash;
        use brisk_state::log::{LogStore, MemoryBudget, SimDisk, SimIo};
        let disk = SimDisk::new(3);
        let log = |base| LogStore::new(Box::new(SimIo(disk.clone())), base, 8 << 10);
        let settle = |rows: &Rows<u64, u64>| {
            for _ in 0..8 {
                rows.log().unwrap().borrow_mut().poll();
            }
        };
        let mut rows: Rows<u64, u64> = Rows::new(Some((log(0), MemoryBudget::new(4 << 10))));
        let (w1, w2) = (Window::time(0, 10), Window::time(10, 20));
        for k in 0..500u64 {
            for w in [w1, w2] {
                rows.or_insert(&k, row_hash(key_hash(&k), &w), w).acc = Some(k);
            }
        }
        // A checkpoint: every row has a record. Then w1 is cleaned up.
        rows.flush_log().unwrap();
        settle(&rows);
        for k in 0..500u64 {
            assert!(rows.remove_done(&k, key_hash(&k), w1).is_some());
        }
        let list = rows.flush_log().unwrap();
        settle(&rows);
        assert_eq!(rows.log_stats().unwrap().0.tombstones, 0);
        let forgotten = rows.tier.as_ref().unwrap().spill.forgotten().len();
        assert_eq!(forgotten, 0, "a log without index bases keeps no forgotten records");
        for (n, filtered, want) in [(1, true, 500), (2, false, 1000)] {
            let mut back: Rows<u64, u64> = Rows::new(Some((log(n << 32), MemoryBudget::new(4 << 10))));
            for s in &list {
                let bytes = disk.borrow().read(s.id).unwrap();
                let adopted = back.log().unwrap().borrow_mut().adopt_verified(
                    s.id,
                    Rc::new(bytes),
                    s.len as usize,
                    s.scope,
                );
                back.replay_segment(adopted.unwrap(), |_| true, |_, w| !filtered || w == w2).unwrap();
            }
            let cold = back.tier.as_ref().unwrap().spill.cold_len();
            assert_eq!(cold, want, "filtered: {filtered}");
        }
    }

    /// Rows removed for good after an index base are named by the next
    /// checkpoints (they left no tombstone), and a restore through the base
    /// unindexes them without asking the timers; without the names they
    /// would come back (the control).
    #[test]
    fn rows_removed_for_good_after_a_base_stay_gone_at_a_restore_through_it() {
        use brisk_state::key_hash;
        use brisk_state::log::{LogStore, MemoryBudget, SimDisk, SimIo};
        let disk = SimDisk::new(5);
        let settle = |rows: &Rows<u64, u64>| {
            for _ in 0..8 {
                rows.log().unwrap().borrow_mut().poll();
            }
        };
        let log = LogStore::new(Box::new(SimIo(disk.clone())), 0, 8 << 10);
        let mut rows: Rows<u64, u64> = Rows::new(Some((log, MemoryBudget::new(4 << 10))));
        let (w1, w2) = (Window::time(0, 10), Window::time(10, 20));
        for k in 0..500u64 {
            for w in [w1, w2] {
                rows.or_insert(&k, row_hash(key_hash(&k), &w), w).acc = Some(k);
            }
        }
        let list = rows.flush_log().unwrap();
        assert!(rows.checkpoint_index(&list).unwrap().written, "the first checkpoint writes a base");
        settle(&rows);
        for k in 0..50u64 {
            assert!(rows.remove_done(&k, key_hash(&k), w1).is_some());
        }
        let list = rows.flush_log().unwrap();
        let ix = rows.checkpoint_index(&list).unwrap();
        settle(&rows);
        assert!(!ix.written, "a few removals do not make a new base due");
        assert_eq!(ix.forgotten.len(), 50);
        for (forgotten, want) in [(&ix.forgotten[..], 950), (&[][..], 1000)] {
            let log = LogStore::new(Box::new(SimIo(SimDisk::new(6))), 1 << 32, 8 << 10);
            let mut back: Rows<u64, u64> = Rows::new(Some((log, MemoryBudget::new(4 << 10))));
            let mut adopted = Vec::new();
            for s in &list {
                let bytes = disk.borrow().read(s.id).unwrap();
                let no = back.log().unwrap().borrow_mut().adopt_verified(
                    s.id,
                    Rc::new(bytes),
                    s.len as usize,
                    s.scope,
                );
                adopted.push((no.unwrap(), s.id));
            }
            let bytes = disk.borrow().read(ix.base.id).unwrap();
            let base = BaseFile::open(Rc::new(bytes), ix.base.len as usize, ix.base.id).unwrap();
            let covered: Vec<u64> = base.base().segments.iter().map(|s| s.id.to_native()).collect();
            assert_eq!(back.load_index(&base).unwrap(), 1000);
            for (no, id) in adopted {
                if !covered.contains(&id) {
                    back.replay_segment(no, |_| true, |_, _| true).unwrap();
                }
            }
            back.finish_index(forgotten);
            let cold = back.tier.as_ref().unwrap().spill.cold_len();
            assert_eq!(cold, want, "{} forgotten rows named", forgotten.len());
            for k in 0..500u64 {
                let gone = k < 50 && !forgotten.is_empty();
                assert_eq!(back.get_mut(&k, key_hash(&k), w1).is_none(), gone, "row ({k}, w1)");
            }
        }
    }
}
