//! Checkpointed indexes: how a restore finds a log's live records without
//! deciding, record by record, which of them are still the newest.
//!
//! A log's tables know their cold keys only through an index in memory
//! (key hash → newest record). Rebuilding it from the records alone means
//! decoding every record's key, comparing it with the key's older record
//! (a random read), and for window rows asking the timers whether the row
//! still exists: about 30 s per GiB per core. So now and then a checkpoint
//! also writes an **index base**: which records of each segment were live,
//! one bit per [`RECORD_HEADER_BYTES`] of segment (no two records start in
//! the same slot, since each is at least a header long), archived with
//! `rkyv` and read in place through the memory map after a checksum and
//! `rkyv`'s validation. A base costs about 1/160 of the log's bytes.
//!
//! A checkpoint refers to the newest base and adds, in its own state file,
//! the **delta** since: the segments sealed after the base (the *tail*,
//! replayed record by record as before) and the records removed since the
//! base without a tombstone ([`IndexedTable::forgotten`]: window rows at
//! their window's cleanup), which a replay cannot see. A restore:
//!
//! 1. scans each segment the base covers and the checkpoint still holds,
//!    and indexes its live records under the hash and state their headers
//!    name (a record in a covered segment compacted away since was either
//!    dead, or copied forward into the tail);
//! 2. replays the tail segments in order;
//! 3. unindexes the forgotten records;
//! 4. recounts every segment's dead records from the index
//!    ([`LogStore::recount_dead`]).
//!
//! A new base is written once the bytes appended since the last one (and
//! the forgotten records) reach [`BASE_EVERY`] times its size, so bases
//! cost at most about 1/8 of the log's own writes, and a restore replays a
//! tail of at most about 1/20 of the log.
//!
//! # A base file
//!
//! ```text
//! offset  size  field
//! 0       8     magic  b"BRISKIDX"
//! 8       4     format version (little endian), currently 1
//! 12      4     CRC-32C of bytes 16.. (id, reserved, archive)
//! 16      8     the file's id (little endian)
//! 24      8     reserved, zero
//! 32      ...   the rkyv archive of an IndexBase
//! ```
//!
//! Its id comes from its log's segment ids, so the checkpoint layer keeps
//! and deletes it exactly as a segment.

use std::collections::HashMap;

use rkyv::rancor;
use rustc_hash::FxHashMap;

use super::format::{self, RECORD_HEADER_BYTES, RecordKind};
use super::io::SegmentBytes;
use super::store::{Loc, LogStore, SegmentRef};

/// The first bytes of a base file.
pub const INDEX_MAGIC: &[u8; 8] = b"BRISKIDX";
/// The base format this build writes and reads.
pub const INDEX_VERSION: u32 = 1;
/// Bytes before the archive (a multiple of the archive's alignment).
pub const INDEX_HEADER_BYTES: usize = 32;
/// A new base is written once the bytes appended since the last one reach
/// this many times its size.
pub const BASE_EVERY: usize = 8;
/// Bytes a forgotten record costs each checkpoint (its entry in the state
/// file), for [`BASE_EVERY`].
const FORGOTTEN_BYTES: usize = 24;

/// The live records of one segment.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct BaseSegment {
    /// The segment's id.
    pub id: u64,
    /// Bit `i` (of word `i / 64`, least significant first) is set when the
    /// record starting in bytes `i * RECORD_HEADER_BYTES ..` is live.
    pub live: Vec<u64>,
}

/// An index base: which records of a log were live at a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct IndexBase {
    /// The segments the log held then, in the log's order: the segments
    /// later checkpoints need not replay.
    pub segments: Vec<BaseSegment>,
    /// `(state, live records)` for each table, to size its index at once.
    pub counts: Vec<(u32, u64)>,
}

/// A table whose cold keys are indexed by record location (a
/// [`Spill`](super::spill::Spill)), as a base sees it.
pub trait IndexedTable {
    /// Calls `each` with the location of every indexed record.
    fn for_each_indexed(&self, each: &mut dyn FnMut(Loc));
    /// Makes room in the index for `more` records.
    fn reserve_index(&mut self, more: usize);
    /// Indexes the records of `batch` (key hash, location) without looking
    /// at them (a base says they are live): no other record of their keys
    /// may be indexed. `scratch` is room the table may use (a restore
    /// passes the same one for every batch).
    fn index_loaded(&mut self, batch: &[(u64, Loc)], scratch: &mut Vec<(u64, Loc)>);
    /// Takes `loc` out of the index, if it is there.
    fn unindex(&mut self, hash: u64, loc: Loc);
    /// The records dropped from the index without a tombstone since the last
    /// [`clear_forgotten`](Self::clear_forgotten): `(key hash, location)`.
    fn forgotten(&self) -> &[(u64, Loc)];
    /// Forgets the forgotten (a base was written: it knows).
    fn clear_forgotten(&mut self);
}

/// The tables of one log, by the state number their records carry.
pub trait IndexedTables {
    /// The state numbers of the tables.
    fn states(&self) -> Vec<u32>;
    /// The table of state `state`, if there is one.
    fn table(&mut self, state: u32) -> Option<&mut dyn IndexedTable>;
}

/// Records a restore indexes at once (see [`IndexedTable::index_loaded`]):
/// 16 MiB of `(hash, location)` pairs (a few, in unit tests, so that they
/// cross batches).
const LOAD_BATCH: usize = if cfg!(test) { 64 } else { 1 << 20 };

/// A forgotten record as a checkpoint names it: state number, key hash,
/// segment id, offset.
pub type ForgottenRef = (u32, u64, u64, u32);

/// What a checkpoint of a log holds of its index: the base, and the
/// records forgotten since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexCheckpoint {
    /// The base file (its scope is meaningless).
    pub base: SegmentRef,
    /// Whether this checkpoint wrote the base (it is new).
    pub written: bool,
    /// Records dropped since the base without a tombstone, in segments the
    /// checkpoint still holds.
    pub forgotten: Vec<ForgottenRef>,
}

struct Base {
    file: SegmentRef,
    appended_at: u64,
}

/// The owner of a log's side of its index bases: which base is current and
/// when to write the next.
#[derive(Default)]
pub struct LogIndex {
    base: Option<Base>,
}

impl LogIndex {
    /// At a checkpoint, after the log was flushed, sealed and published as
    /// `list`: writes a new base of `tables` if one is due (see the module
    /// docs), and returns what the checkpoint must refer to. The base's
    /// file is written through the log (see [`LogStore::write_aux`]); the
    /// checkpoint must wait until it is durable as for its segments.
    ///
    /// `None` (no base: a restore replays every segment) while the log
    /// holds a segment adopted more than once: a segment shared by several
    /// logs of a restored checkpoint, adopted for each one's key groups.
    /// A base marks live records by segment id, and a later restore at
    /// another core count would index, under its one adoption of such a
    /// segment, the records of key groups it does not own. Compaction
    /// moves the live records out of those segments, and bases resume.
    pub fn checkpoint(
        &mut self,
        log: &mut LogStore,
        list: &[SegmentRef],
        tables: &mut dyn IndexedTables,
    ) -> Option<IndexCheckpoint> {
        let mut ids = std::collections::HashSet::new();
        if !list.iter().all(|s| ids.insert(s.id)) {
            if let Some(old) = self.base.take() {
                log.retire_aux(old.file.id);
            }
            return None;
        }
        let appended = log.stats().appended_bytes;
        let states = tables.states();
        let forgotten: usize =
            states.iter().map(|&s| tables.table(s).map_or(0, |t| t.forgotten().len())).sum();
        let due = match &self.base {
            None => true,
            Some(b) => {
                (appended - b.appended_at) as usize + forgotten * FORGOTTEN_BYTES
                    >= BASE_EVERY * b.file.len as usize
            }
        };
        if due {
            log.set_indexed();
            let id = log.next_aux_id();
            let bytes = encode_base(id, log, list, &states, tables);
            let len = bytes.len() as u64;
            log.write_aux(id, bytes);
            if let Some(old) = self.base.take() {
                log.retire_aux(old.file.id);
            }
            for &s in &states {
                if let Some(t) = tables.table(s) {
                    t.clear_forgotten();
                }
            }
            let file = SegmentRef { id, len, scope: crate::KeyGroupRange::ALL };
            self.base = Some(Base { file: file.clone(), appended_at: appended });
            return Some(IndexCheckpoint { base: file, written: true, forgotten: Vec::new() });
        }
        let base = self.base.as_ref().map(|b| b.file.clone()).expect("a base exists");
        let mut out = Vec::with_capacity(forgotten);
        for &state in &states {
            let Some(t) = tables.table(state) else { continue };
            for &(hash, loc) in t.forgotten() {
                // A segment compacted away takes the record with it.
                if let Some(id) = log.id_of(loc.segment()) {
                    out.push((state, hash, id, loc.offset() as u32));
                }
            }
        }
        Some(IndexCheckpoint { base, written: false, forgotten: out })
    }
}

/// The slot of a record at `offset` in a base's bitmap.
fn slot(offset: usize) -> usize {
    offset / RECORD_HEADER_BYTES
}

/// The base file of `tables` for a log whose segments are `list`.
fn encode_base(
    id: u64,
    log: &LogStore,
    list: &[SegmentRef],
    states: &[u32],
    tables: &mut dyn IndexedTables,
) -> Vec<u8> {
    let mut segments: Vec<BaseSegment> =
        list.iter().map(|s| BaseSegment { id: s.id, live: vec![0; slot(s.len as usize) / 64 + 1] }).collect();
    // `list` names each segment once (`LogIndex::checkpoint` writes no base
    // otherwise), so its ids give the log's segment numbers.
    let numbers = log.numbers_by_id();
    let position: HashMap<u32, usize> = list
        .iter()
        .enumerate()
        .map(|(i, s)| (*numbers.get(&s.id).expect("a published segment is in the log"), i))
        .collect();
    let mut counts = Vec::with_capacity(states.len());
    for &state in states {
        let Some(t) = tables.table(state) else { continue };
        let mut n = 0;
        t.for_each_indexed(&mut |loc| {
            // Every indexed record is in a segment the checkpoint names (a
            // bug otherwise): say where.
            let Some(&i) = position.get(&loc.segment()) else {
                panic!(
                    "an indexed record of state {state} is in segment number {} (id {:?}, offset {}), which \
                     the checkpoint does not name; it names {:x?}; the log's segments by id: {:x?}",
                    loc.segment(),
                    log.id_of(loc.segment()),
                    loc.offset(),
                    list.iter().map(|s| s.id).collect::<Vec<_>>(),
                    numbers
                )
            };
            let bit = slot(loc.offset());
            segments[i].live[bit / 64] |= 1 << (bit % 64);
            n += 1;
        });
        counts.push((state, n));
    }
    encode(id, &IndexBase { segments, counts })
}

/// The bytes of base file `id` holding `base`.
pub fn encode(id: u64, base: &IndexBase) -> Vec<u8> {
    // Serializing plain vectors into memory cannot fail.
    let archive = rkyv::to_bytes::<rancor::Error>(base).expect("an index base archives");
    let mut out = Vec::with_capacity(INDEX_HEADER_BYTES + archive.len());
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&INDEX_VERSION.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&archive);
    let crc = crc32c::crc32c(&out[16..]);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Whether `header` (a file's first bytes) starts as a base file does.
pub fn is_base(header: &[u8]) -> bool {
    header.starts_with(INDEX_MAGIC)
}

/// The id a base file's header (its first [`INDEX_HEADER_BYTES`] bytes)
/// names, after checking its magic and version (not its checksum, which
/// covers the whole file: [`BaseFile::open`]).
pub fn base_id(header: &[u8]) -> Result<u64, String> {
    if header.len() < INDEX_HEADER_BYTES {
        return Err(format!("{} bytes, shorter than an index base's header", header.len()));
    }
    if !is_base(header) {
        return Err("bad magic (not a brisk index base)".into());
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if version != INDEX_VERSION {
        return Err(format!("index format version {version}, this build reads version {INDEX_VERSION}"));
    }
    Ok(u64::from_le_bytes(header[16..24].try_into().expect("8 bytes")))
}

/// A base file read back: checked, and read in place.
pub struct BaseFile {
    bytes: SegmentBytes,
    /// A copy of the archive when the bytes were not aligned for it (never
    /// for a memory map).
    copy: Option<rkyv::util::AlignedVec<16>>,
    len: usize,
}

impl BaseFile {
    /// Checks the first `len` bytes of `bytes` as base file `id`: magic,
    /// version, checksum, id, and the archive's structure (rkyv's
    /// validation). A file that fails is never read.
    pub fn open(bytes: SegmentBytes, len: usize, id: u64) -> Result<Self, String> {
        let data = (*bytes).as_ref();
        if data.len() < len || len < INDEX_HEADER_BYTES {
            return Err(format!("{} bytes, the checkpoint recorded {len}", data.len()));
        }
        let data = &data[..len];
        let found = base_id(data)?;
        let stored = u32::from_le_bytes(data[12..16].try_into().expect("4 bytes"));
        let computed = crc32c::crc32c(&data[16..]);
        if stored != computed {
            return Err(format!("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"));
        }
        if found != id {
            return Err(format!("holds index base {found:016x}, expected {id:016x}"));
        }
        let archive = &data[INDEX_HEADER_BYTES..];
        let copy = (!(archive.as_ptr() as usize).is_multiple_of(16)).then(|| {
            let mut v = rkyv::util::AlignedVec::<16>::with_capacity(archive.len());
            v.extend_from_slice(archive);
            v
        });
        let file = Self { bytes, copy, len };
        // rkyv's validation errors carry no message in release builds: say
        // what was being read.
        rkyv::access::<ArchivedIndexBase, rancor::Error>(file.archive())
            .map_err(|e| format!("the index archive does not validate: {e}"))?;
        Ok(file)
    }

    fn archive(&self) -> &[u8] {
        match &self.copy {
            Some(v) => v,
            None => &(*self.bytes).as_ref()[INDEX_HEADER_BYTES..self.len],
        }
    }

    /// The base, in place.
    pub fn base(&self) -> &ArchivedIndexBase {
        // SAFETY: `open` validated these very bytes with `rkyv::access`, and
        // they are immutable (a shared memory map of a file nobody writes,
        // or our own copy).
        unsafe { rkyv::access_unchecked::<ArchivedIndexBase>(self.archive()) }
    }
}

/// Loads `base` into `tables`: every record the base marks live, in each
/// covered segment `log` holds (by id, adopted and so verified), is indexed
/// under its table (by the state its header names). Returns how many
/// records were indexed.
pub fn load_base(
    base: &ArchivedIndexBase,
    log: &LogStore,
    tables: &mut dyn IndexedTables,
) -> Result<usize, String> {
    let numbers = log.numbers_by_id();
    let present = base.segments.iter().filter(|s| numbers.contains_key(&s.id.to_native())).count();
    if present == 0 {
        return Ok(0);
    }
    for c in base.counts.iter() {
        let (state, n) = (c.0.to_native(), c.1.to_native());
        let Some(t) = tables.table(state) else {
            return Err(format!("the index base has state {state}, which this operator does not have"));
        };
        // The counts are the whole base's: with some of its segments
        // compacted away since, they overstate, and the table grows instead.
        if present == base.segments.len() {
            t.reserve_index(n as usize);
        }
    }
    let mut loaded = 0;
    // A batch per state; a log mostly has one, so the last one used is
    // tried first.
    let mut batches: Vec<(u32, Vec<(u64, Loc)>)> = Vec::new();
    let mut last = 0;
    let mut scratch = Vec::new();
    for seg in base.segments.iter() {
        let Some(&no) = numbers.get(&seg.id.to_native()) else { continue };
        let Some((bytes, len)) = log.sealed_bytes(no) else { continue };
        let live = &seg.live;
        if live.len() < slot(len) / 64 + 1 {
            return Err(format!(
                "segment {:016x}: {} bitmap words for {len} bytes",
                seg.id.to_native(),
                live.len()
            ));
        }
        let mut missing = None;
        // The log verified every record of an adopted segment.
        format::scan_verified_headers(&(*bytes).as_ref()[..len], |at, state, kind, hash| {
            let bit = slot(at);
            if live[bit / 64].to_native() & (1 << (bit % 64)) == 0 || kind != RecordKind::Put {
                return;
            }
            if batches.get(last).is_none_or(|b| b.0 != state) {
                match batches.iter().position(|b| b.0 == state) {
                    Some(i) => last = i,
                    None if tables.table(state).is_some() => {
                        batches.push((state, Vec::new()));
                        last = batches.len() - 1;
                    }
                    None => {
                        missing = Some(state);
                        return;
                    }
                }
            }
            let batch = &mut batches[last].1;
            batch.push((hash, Loc::new(no, at)));
            if batch.len() == LOAD_BATCH {
                if let Some(t) = tables.table(state) {
                    t.index_loaded(batch, &mut scratch);
                }
                batch.clear();
            }
            loaded += 1;
        });
        if let Some(state) = missing {
            return Err(format!("a live record of state {state}, which this operator does not have"));
        }
    }
    for (state, batch) in batches {
        if let Some(t) = tables.table(state) {
            t.index_loaded(&batch, &mut scratch);
        }
    }
    Ok(loaded)
}

/// Takes the records a checkpoint names as forgotten (`forgotten`) out of
/// the indexes of `tables`; a record in a segment `log` does not hold is
/// gone already.
pub fn unindex_forgotten(forgotten: &[ForgottenRef], log: &LogStore, tables: &mut dyn IndexedTables) {
    let numbers = log.numbers_by_id();
    for &(state, hash, id, offset) in forgotten {
        if let (Some(&no), Some(t)) = (numbers.get(&id), tables.table(state)) {
            t.unindex(hash, Loc::new(no, offset as usize));
        }
    }
}

/// Sets the dead count of every segment of `log` from the indexes of
/// `tables` (see [`LogStore::recount_dead`]).
pub fn recount_dead(log: &mut LogStore, tables: &mut dyn IndexedTables) {
    // Fx: one lookup per indexed record, millions at a restore.
    let mut live: FxHashMap<u32, usize> = FxHashMap::default();
    for state in tables.states() {
        if let Some(t) = tables.table(state) {
            t.for_each_indexed(&mut |loc| *live.entry(loc.segment()).or_default() += 1);
        }
    }
    log.recount_dead(|seg| live.get(&seg).copied().unwrap_or(0));
}
