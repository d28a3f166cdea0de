//! [`LogStore`]: one operator's append-only log on one core.
//!
//! Records are appended to an open in-memory segment. A full segment is
//! sealed: handed to [`SegmentIo`] to be written, and served from memory
//! until the write is durable, then from the written file (a memory map).
//! A location ([`Loc`]) names a record by segment and offset and never
//! changes; superseded records are counted dead, and a segment that is
//! mostly dead is a compaction candidate: its owner copies the live records
//! forward and drops it.

use std::collections::BTreeMap;
use std::io;
use std::rc::Rc;

use super::format::{self, Record, RecordKind};
use super::io::{SegmentBytes, SegmentIo};
use super::spill::{Charge, MemoryBudget};
use crate::KeyGroupRange;

/// Where a record lives: segment number (local to the store) and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Loc(u64);

impl Loc {
    /// The record at `offset` of segment number `seg`.
    pub fn new(seg: u32, offset: usize) -> Self {
        Self((u64::from(seg) << 32) | offset as u64)
    }
    /// The segment number.
    pub fn segment(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// The byte offset in the segment.
    pub fn offset(self) -> usize {
        (self.0 & 0xFFFF_FFFF) as usize
    }
    /// The packed form (for compact indexes).
    pub fn to_bits(self) -> u64 {
        self.0
    }
    /// From [`to_bits`](Self::to_bits).
    pub fn from_bits(bits: u64) -> Self {
        Self(bits)
    }
}

enum Data {
    /// Sealed, being written: reads come from here.
    Writing(Rc<Vec<u8>>),
    /// The write failed; kept in memory and written again at the next seal.
    Failed(Rc<Vec<u8>>),
    /// Durable on storage.
    OnDisk(SegmentBytes),
}

struct Segment {
    id: u64,
    data: Data,
    len: usize,
    /// Records in it, and how many of them are superseded (counted, not
    /// measured: killing a record must not read it).
    records: usize,
    dead: usize,
    /// Of its records, how many are tombstones (each also counts as dead).
    tombstones: usize,
    /// Referenced by a checkpoint: the checkpoint's owner deletes it, not us.
    published: bool,
    /// The key groups whose records in it count (see [`SegmentRef::scope`]).
    scope: KeyGroupRange,
    /// Written by this log, or adopted in its place in the order.
    in_order: bool,
}

impl Segment {
    fn bytes(&self) -> &[u8] {
        match &self.data {
            Data::Writing(b) | Data::Failed(b) => b,
            Data::OnDisk(b) => (**b).as_ref(),
        }
    }
}

/// Counters of a log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Records appended.
    pub appended: u64,
    /// Bytes appended (headers included).
    pub appended_bytes: u64,
    /// Segments sealed.
    pub sealed: u64,
    /// Segment writes that failed (each is retried).
    pub write_failures: u64,
    /// Segments dropped after compaction.
    pub compacted: u64,
    /// Bytes copied forward by compaction.
    pub compacted_bytes: u64,
}

/// A segment a checkpoint refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRef {
    /// Its id (names its file).
    pub id: u64,
    /// Its valid length: a restore reads this many bytes and no more.
    pub len: u64,
    /// The key groups whose records in it belong to this log's history.
    /// A segment adopted from a checkpoint holds the records of every key
    /// group its writer had (and, after a rescale, several logs adopt
    /// it); in this log only the groups this log owned when it adopted
    /// the segment count. The others' records are stale here: their newer
    /// records, and their tombstones, are in other logs. A restore replays
    /// only the records in scope.
    pub scope: KeyGroupRange,
}

/// Where a checkpoint's segments stand ([`LogStore::durability`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Durability {
    /// Every segment is on storage.
    Durable,
    /// Some are still being written.
    Pending,
    /// A write failed (retried at the next seal); the checkpoint fails.
    Failed(String),
}

/// One operator's log on one core.
pub struct LogStore {
    io: Box<dyn SegmentIo>,
    id_base: u64,
    next_id: u64,
    sealed: BTreeMap<u32, Segment>,
    open: Vec<u8>,
    open_no: u32,
    open_id: u64,
    open_dead: usize,
    open_records: usize,
    open_tombstones: usize,
    /// The newest segment of a sweep under way ([`Self::sweep_next`]).
    sweep_to: Option<u32>,
    next_no: u32,
    segment_target: usize,
    /// The key groups of the segments this log writes.
    scope: KeyGroupRange,
    done: Vec<(u64, io::Result<()>)>,
    last_error: Option<String>,
    stats: LogStats,
    /// What the log holds in memory ([`Self::resident_bytes`]), charged to
    /// the core's budget when set ([`Self::charge_to`]).
    charge: Option<Charge>,
    /// Files written beside the segments (index bases, see
    /// [`write_aux`](Self::write_aux)), by id.
    aux: BTreeMap<u64, Aux>,
    /// Whether checkpoints refer to an index base of this log (see
    /// [`set_indexed`](Self::set_indexed)).
    indexed: bool,
}

/// A file written through the log that is not one of its segments.
struct Aux {
    data: Data,
    len: usize,
    /// Still the log's (not retired): a retired file is the checkpoints'.
    current: bool,
}

impl LogStore {
    /// An empty log writing segments of about `segment_target` bytes through
    /// `io`, with ids `id_base`, `id_base + 1`, … (unique per log).
    pub fn new(io: Box<dyn SegmentIo>, id_base: u64, segment_target: usize) -> Self {
        let mut s = Self {
            io,
            id_base,
            next_id: 0,
            sealed: BTreeMap::new(),
            open: Vec::new(),
            open_no: 0,
            open_id: 0,
            open_dead: 0,
            open_records: 0,
            open_tombstones: 0,
            sweep_to: None,
            next_no: 0,
            segment_target: segment_target.max(4096),
            scope: KeyGroupRange::ALL,
            done: Vec::new(),
            last_error: None,
            stats: LogStats::default(),
            charge: None,
            aux: BTreeMap::new(),
            indexed: false,
        };
        s.start_segment();
        s
    }

    /// Declares the key groups this log's owner holds: the scope of the
    /// segments it writes from now on (every group until set).
    pub fn set_scope(&mut self, scope: KeyGroupRange) {
        self.scope = scope;
    }

    /// Charges the bytes this log holds in memory (the open segment and
    /// sealed ones not yet durable) to `budget`, so that spilling tables
    /// make room for them.
    pub fn charge_to(&mut self, budget: Rc<MemoryBudget>) {
        self.charge = Some(Charge::new(budget, super::spill::MemoryUse::Segments));
        self.recharge();
    }

    fn recharge(&mut self) {
        if self.charge.is_some() {
            let bytes = self.resident_bytes();
            if let Some(c) = &mut self.charge {
                c.set(bytes);
            }
        }
    }

    fn start_segment(&mut self) {
        self.open_no = self.next_no;
        self.next_no += 1;
        self.open_id = self.next_file_id();
        self.open = Vec::with_capacity(self.segment_target + self.segment_target / 8);
        self.open_dead = 0;
        self.open_records = 0;
        self.open_tombstones = 0;
        format::write_segment_header(&mut self.open, self.open_id);
    }

    fn next_file_id(&mut self) -> u64 {
        let id = self.id_base + self.next_id;
        self.next_id += 1;
        id
    }

    /// The id the next file of [`write_aux`](Self::write_aux) is to have
    /// (taken from the segment ids: each call takes a new one).
    pub fn next_aux_id(&mut self) -> u64 {
        self.next_file_id()
    }

    /// Writes `bytes` as file `id` (from [`next_aux_id`](Self::next_aux_id))
    /// beside the segments (an index base). Its write is
    /// tracked as a segment's: [`durability`](Self::durability) answers for
    /// its id, a failed write is retried at the next seal, and its bytes
    /// are charged until durable. It is never deleted by the log: a
    /// checkpoint refers to it (see [`retire_aux`](Self::retire_aux)).
    pub fn write_aux(&mut self, id: u64, bytes: Vec<u8>) {
        let bytes = Rc::new(bytes);
        let len = bytes.len();
        self.io.write(id, bytes.clone());
        self.aux.insert(id, Aux { data: Data::Writing(bytes), len, current: true });
        self.recharge();
    }

    /// The log no longer needs file `id` (from [`write_aux`](Self::write_aux)):
    /// it is forgotten once durable (the checkpoints that refer to it own
    /// its deletion).
    pub fn retire_aux(&mut self, id: u64) {
        if let Some(a) = self.aux.get_mut(&id) {
            a.current = false;
        }
        self.aux.retain(|_, a| a.current || matches!(a.data, Data::Writing(_)));
        self.recharge();
    }

    /// Notes that checkpoints refer to an index base of this log: from now
    /// on its tables keep the records they drop without a tombstone until
    /// the next base (a log that is never checkpointed keeps none).
    pub fn set_indexed(&mut self) {
        self.indexed = true;
    }

    /// Whether [`set_indexed`](Self::set_indexed) was called.
    pub fn is_indexed(&self) -> bool {
        self.indexed
    }

    /// The numbers of the sealed segments, by id.
    pub fn numbers_by_id(&self) -> std::collections::HashMap<u64, u32> {
        self.sealed.iter().map(|(no, s)| (s.id, *no)).collect()
    }

    /// The id of segment number `seg` (sealed or open), if the log holds it.
    pub fn id_of(&self, seg: u32) -> Option<u64> {
        if seg == self.open_no { Some(self.open_id) } else { self.sealed.get(&seg).map(|s| s.id) }
    }

    /// The valid length of sealed segment `seg`.
    pub fn segment_len(&self, seg: u32) -> Option<usize> {
        self.sealed.get(&seg).map(|s| s.len)
    }

    /// Sets every sealed segment's dead count from how many of its records
    /// are live (`live(seg)`, from the tables' indexes): after a restore
    /// that loaded an index instead of replaying every record, the log has
    /// not seen which records were superseded.
    pub fn recount_dead(&mut self, live: impl Fn(u32) -> usize) {
        for (no, s) in &mut self.sealed {
            s.dead = s.records.saturating_sub(live(*no));
        }
    }

    /// Appends a record; `encode` appends its payload.
    pub fn append(
        &mut self,
        state: u32,
        kind: RecordKind,
        hash: u64,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Loc {
        if self.open.len() >= self.segment_target {
            self.seal();
        }
        let before = self.open.len();
        let at = format::append_record(&mut self.open, state, kind, hash, encode);
        self.open_records += 1;
        if kind == RecordKind::Delete {
            self.open_tombstones += 1;
        }
        self.stats.appended += 1;
        self.stats.appended_bytes += (self.open.len() - before) as u64;
        Loc::new(self.open_no, at)
    }

    fn bytes(&self, seg: u32) -> Option<&[u8]> {
        if seg == self.open_no { Some(&self.open) } else { self.sealed.get(&seg).map(Segment::bytes) }
    }

    /// The record at `loc`, verified against its checksum; `None` if `loc`
    /// names no valid record (a dropped segment, or corruption).
    pub fn get(&self, loc: Loc) -> Option<Record<'_>> {
        format::read_record(self.bytes(loc.segment())?, loc.offset())
    }

    /// Counts the record at `loc` as superseded.
    pub fn kill(&mut self, loc: Loc) {
        if loc.segment() == self.open_no {
            self.open_dead += 1;
        } else if let Some(s) = self.sealed.get_mut(&loc.segment()) {
            s.dead += 1;
        }
    }

    /// Seals the open segment (if it holds a record) and starts writing it;
    /// also retries segments whose write failed.
    pub fn seal(&mut self) {
        self.retry_failed();
        if self.open.len() == format::SEGMENT_HEADER_BYTES {
            return;
        }
        let bytes = Rc::new(std::mem::take(&mut self.open));
        let len = bytes.len();
        self.io.write(self.open_id, bytes.clone());
        self.sealed.insert(
            self.open_no,
            Segment {
                id: self.open_id,
                data: Data::Writing(bytes),
                len,
                records: self.open_records,
                tombstones: self.open_tombstones,
                dead: self.open_dead,
                published: false,
                scope: self.scope,
                in_order: true,
            },
        );
        self.stats.sealed += 1;
        self.start_segment();
        self.recharge();
    }

    fn retry_failed(&mut self) {
        for s in self.sealed.values_mut() {
            if let Data::Failed(b) = &s.data {
                let b = b.clone();
                self.io.write(s.id, b.clone());
                s.data = Data::Writing(b);
            }
        }
        for (id, a) in &mut self.aux {
            if let Data::Failed(b) = &a.data {
                let b = b.clone();
                self.io.write(*id, b.clone());
                a.data = Data::Writing(b);
            }
        }
    }

    /// Takes in finished writes: a durable segment is read from storage from
    /// now on and its memory freed; a failed one is kept for a retry.
    pub fn poll(&mut self) {
        self.io.poll(&mut self.done);
        if self.done.is_empty() {
            return;
        }
        for (id, result) in std::mem::take(&mut self.done) {
            let (data, len, what) = if let Some(a) = self.aux.get_mut(&id) {
                (&mut a.data, a.len, "index file")
            } else if let Some(seg) = self.sealed.values_mut().find(|s| s.id == id) {
                (&mut seg.data, seg.len, "segment")
            } else {
                // Dropped while its write was in flight.
                if result.is_ok() {
                    self.io.delete(id);
                }
                continue;
            };
            let Data::Writing(bytes) = &*data else { continue };
            match result.and_then(|()| self.io.open(id)) {
                Ok(mapped) if (*mapped).as_ref().len() >= len => *data = Data::OnDisk(mapped),
                other => {
                    self.stats.write_failures += 1;
                    self.last_error = Some(match other {
                        Ok(m) => format!(
                            "{what} {id:016x}: {} bytes readable after writing {len}",
                            (*m).as_ref().len()
                        ),
                        Err(e) => format!("{what} {id:016x}: {e}"),
                    });
                    *data = Data::Failed(bytes.clone());
                }
            }
            // A retired index file is the checkpoints' once its write ended.
            if self.aux.get(&id).is_some_and(|a| !a.current) {
                self.aux.remove(&id);
            }
        }
        self.recharge();
    }

    /// Whether every sealed segment is durable.
    pub fn is_durable(&self) -> bool {
        self.sealed.values().all(|s| matches!(s.data, Data::OnDisk(_)))
            && self.aux.values().all(|a| matches!(a.data, Data::OnDisk(_)))
    }

    /// Whether a sealed segment's write failed and awaits a retry.
    pub fn has_failed_writes(&self) -> bool {
        self.sealed.values().any(|s| matches!(s.data, Data::Failed(_)))
            || self.aux.values().any(|a| matches!(a.data, Data::Failed(_)))
    }

    /// The last write error, if any.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Writes still in flight.
    pub fn writes_in_flight(&self) -> usize {
        self.io.in_flight()
    }

    /// Every sealed segment with its valid length, marked as published (its
    /// file's deletion is now the checkpoint owner's). Call right after
    /// [`seal`](Self::seal): the list is the log's whole content then. The
    /// checkpoint may be acknowledged once [`all_durable`](Self::all_durable)
    /// says so for the list.
    pub fn publish(&mut self) -> Vec<SegmentRef> {
        self.sealed
            .values_mut()
            .map(|s| {
                s.published = true;
                SegmentRef { id: s.id, len: s.len as u64, scope: s.scope }
            })
            .collect()
    }

    /// Whether every segment of `list` is durable. A segment no longer in
    /// the log was compacted away, which happens only to durable ones.
    pub fn all_durable(&self, list: &[SegmentRef]) -> bool {
        self.durability(list) == Durability::Durable
    }

    /// Where the segments of `list` stand: all durable (or compacted away,
    /// which happens only to durable ones), one failed (with the error), or
    /// still being written.
    pub fn durability(&self, list: &[SegmentRef]) -> Durability {
        let mut pending = false;
        let aux =
            self.aux.iter().filter(|(id, _)| list.iter().any(|r| r.id == **id)).map(|(id, a)| (*id, &a.data));
        let sealed =
            self.sealed.values().filter(|s| list.iter().any(|r| r.id == s.id)).map(|s| (s.id, &s.data));
        for (id, data) in sealed.chain(aux) {
            match data {
                Data::OnDisk(_) => {}
                Data::Writing(_) => pending = true,
                Data::Failed(_) => {
                    return Durability::Failed(
                        self.last_error.clone().unwrap_or_else(|| format!("segment {id:016x} failed")),
                    );
                }
            }
        }
        if pending { Durability::Pending } else { Durability::Durable }
    }

    /// Checks a segment read from a checkpoint and makes it part of this
    /// log, read-only (it counts as published), returning its number: its
    /// header must name `id`, and its records must verify up to exactly
    /// `len` bytes (a checkpoint's segment was durable when the checkpoint
    /// completed, so anything short of that is damage, not a torn tail).
    ///
    /// Only its records of key groups in `scope` count: the caller replays
    /// those and kills the others. The same segment may be adopted more
    /// than once, with disjoint scopes (it was shared by several logs of
    /// the checkpoint); each adoption has its own number and place in the
    /// log's order.
    ///
    /// Segment numbers give the replay order, and adopted history must
    /// come before everything this log writes: before the log's first
    /// append the open segment is renumbered after the adopted one. After
    /// it, the segment cannot take its place in the order
    /// ([`in_order`](Self::in_order) says so): its owner must copy the
    /// records it keeps forward and drop it.
    pub fn adopt_verified(
        &mut self,
        id: u64,
        bytes: SegmentBytes,
        len: usize,
        scope: KeyGroupRange,
    ) -> Result<u32, String> {
        let data = (*bytes).as_ref();
        if data.len() < len {
            return Err(format!("{} bytes, the checkpoint recorded {len}", data.len()));
        }
        match format::read_segment_header(data) {
            Ok(found) if found == id => {}
            Ok(found) => return Err(format!("holds segment {found:016x}, expected {id:016x}")),
            Err(e) => return Err(e.to_string()),
        }
        let (mut records, mut tombstones) = (0, 0);
        let valid = format::scan(&data[..len], |_, r| {
            records += 1;
            tombstones += usize::from(r.kind == RecordKind::Delete);
        });
        if valid != len {
            return Err(format!("record at offset {valid} fails its checksum (segment length {len})"));
        }
        Ok(self.adopt(id, bytes, len, (records, tombstones), scope))
    }

    /// See [`adopt_verified`](Self::adopt_verified); `counts` are how many
    /// records, and of them tombstones, the segment holds.
    fn adopt(
        &mut self,
        id: u64,
        bytes: SegmentBytes,
        len: usize,
        (records, tombstones): (usize, usize),
        scope: KeyGroupRange,
    ) -> u32 {
        let in_order = self.stats.appended == 0;
        let no = if in_order {
            let no = self.open_no;
            self.open_no = self.next_no;
            no
        } else {
            self.next_no
        };
        self.next_no += 1;
        self.sealed.insert(
            no,
            Segment {
                id,
                data: Data::OnDisk(bytes),
                len,
                records,
                dead: 0,
                tombstones,
                published: true,
                scope,
                in_order,
            },
        );
        no
    }

    /// Whether adopted segment `seg` took its place in the log's order (it
    /// was adopted before the first append); see
    /// [`adopt_verified`](Self::adopt_verified).
    pub fn in_order(&self, seg: u32) -> bool {
        self.sealed.get(&seg).is_some_and(|s| s.in_order)
    }

    /// Every valid record of sealed segment `seg`, with its location.
    pub fn records(&self, seg: u32) -> Vec<(Loc, Record<'_>)> {
        let Some(s) = self.sealed.get(&seg) else { return Vec::new() };
        let bytes = &s.bytes()[..s.len];
        let mut out = Vec::new();
        format::scan(bytes, |at, r| out.push((Loc::new(seg, at), r)));
        out
    }

    /// A handle on sealed segment `seg`'s bytes that does not borrow the
    /// log, with its valid length.
    pub fn sealed_bytes(&self, seg: u32) -> Option<(SegmentBytes, usize)> {
        let s = self.sealed.get(&seg)?;
        let bytes: SegmentBytes = match &s.data {
            Data::Writing(b) | Data::Failed(b) => b.clone(),
            Data::OnDisk(b) => b.clone(),
        };
        Some((bytes, s.len))
    }

    /// Asks the CPU to start loading the head of the record at `loc`: a
    /// hint, which does nothing if the log does not hold it (or its page
    /// is not mapped in yet).
    #[inline]
    pub fn prefetch(&self, loc: Loc) {
        let seg = loc.segment();
        let base: *const u8 = if seg == self.open_no {
            self.open.as_ptr()
        } else {
            match self.sealed.get(&seg).map(|s| &s.data) {
                Some(Data::Writing(b) | Data::Failed(b)) => b.as_ptr(),
                Some(Data::OnDisk(b)) => (**b).as_ref().as_ptr(),
                None => return,
            }
        };
        crate::hot::prefetch_line(base.wrapping_add(loc.offset()));
    }

    /// The numbers of the sealed segments, oldest first.
    pub fn segments(&self) -> Vec<u32> {
        self.sealed.keys().copied().collect()
    }

    /// The durable segment with the largest dead fraction above `min_dead`
    /// (0..1), if any.
    pub fn compaction_candidate(&self, min_dead: f64) -> Option<u32> {
        self.sealed
            .iter()
            .filter(|(_, s)| matches!(s.data, Data::OnDisk(_)))
            .map(|(no, s)| (*no, s.dead as f64 / s.records.max(1) as f64))
            .filter(|&(_, f)| f >= min_dead)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(no, _)| no)
    }

    /// Whether `seg` is older than every other sealed segment.
    pub fn is_oldest(&self, seg: u32) -> bool {
        self.sealed.keys().next() == Some(&seg)
    }

    /// The segment a sweep from the oldest segment compacts next, if one is
    /// under way or `start` asks for one: a sweep runs until every segment
    /// sealed before it started has been compacted. `None` when there is
    /// no sweep, or when the oldest segment is not durable yet.
    pub fn sweep_next(&mut self, start: bool) -> Option<u32> {
        if self.sweep_to.is_none() && start {
            self.sweep_to = self.sealed.keys().next_back().copied();
        }
        let end = self.sweep_to?;
        let Some((&no, s)) = self.sealed.iter().next().filter(|(no, _)| **no <= end) else {
            self.sweep_to = None;
            return None;
        };
        matches!(s.data, Data::OnDisk(_)).then_some(no)
    }

    /// Bytes of tombstones (estimated, as [`dead_bytes`](Self::dead_bytes)).
    pub fn tombstone_bytes(&self) -> usize {
        let share = |len: usize, n: usize, records: usize| len * n / records.max(1);
        share(self.open.len(), self.open_tombstones, self.open_records)
            + self.sealed.values().map(|s| share(s.len, s.tombstones, s.records)).sum::<usize>()
    }

    /// The size segments are sealed at.
    pub fn segment_target(&self) -> usize {
        self.segment_target
    }

    /// Forgets sealed segment `seg` (its live records must have been copied
    /// forward). Deletes its file unless a checkpoint refers to it.
    pub fn drop_segment(&mut self, seg: u32) {
        if let Some(s) = self.sealed.remove(&seg) {
            self.stats.compacted += 1;
            if !s.published && matches!(s.data, Data::OnDisk(_)) {
                self.io.delete(s.id);
            }
        }
        self.recharge();
    }

    /// Counts `bytes` copied forward by compaction.
    pub fn note_compacted(&mut self, bytes: usize) {
        self.stats.compacted_bytes += bytes as u64;
    }

    /// Bytes held in memory: the open segment and sealed ones not yet durable.
    pub fn resident_bytes(&self) -> usize {
        self.open.capacity()
            + self
                .sealed
                .values()
                .filter(|s| !matches!(s.data, Data::OnDisk(_)))
                .map(|s| s.len)
                .sum::<usize>()
            + self.aux.values().filter(|a| !matches!(a.data, Data::OnDisk(_))).map(|a| a.len).sum::<usize>()
    }

    /// Bytes of all segments (live and dead), open one included.
    pub fn total_bytes(&self) -> usize {
        self.open.len() + self.sealed.values().map(|s| s.len).sum::<usize>()
    }

    /// Bytes of superseded records (estimated: each segment's dead share of
    /// its records, times its length).
    pub fn dead_bytes(&self) -> usize {
        let share = |len: usize, dead: usize, records: usize| len * dead / records.max(1);
        share(self.open.len(), self.open_dead, self.open_records)
            + self.sealed.values().map(|s| share(s.len, s.dead, s.records)).sum::<usize>()
    }

    /// The counters.
    pub fn stats(&self) -> &LogStats {
        &self.stats
    }
}
