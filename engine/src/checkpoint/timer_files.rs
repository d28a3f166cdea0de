//! Incremental checkpoints of timers: a keyed operator's timers written as
//! a chain of files beside its log's segments instead of whole into every
//! checkpoint's state file.
//!
//! The first file of a chain (the *base*) holds every timer; each later one
//! holds what changed since the checkpoint before it
//! ([`brisk_state::timers::Changes`]): the timers deleted since, how many
//! timers of each (timestamp, namespace, key group) fired since, and the
//! timers registered since. A checkpoint's state file names the whole chain
//! (entry kind `TIMER_FILES` of the operator); a restore applies the files
//! in order, each one's deletions, then its firings, then its
//! registrations, keeping the key groups its core owns.
//!
//! A new base is written instead of a file of changes when the changes in
//! the chain would exceed the timers in its base (at least
//! [`BASE_MIN_TIMERS`]), when this checkpoint's changes alone are more
//! than half the timers there are, when the chain holds
//! [`CHAIN_FILES_MAX`] files, or when a queue had too many changes to
//! record them. So a checkpoint
//! writes about what changed, the chain's files sum to at most about twice
//! the base, and a workload whose timers all change between two
//! checkpoints (short windows) writes a base each time, as a full snapshot
//! would.
//!
//! An operator may keep other keyed state in its chain beside the timers
//! (a [`ChainPart`]: the window operator's merging-window sets), whole in a
//! base and by its changes after; a restore hands its entries back.
//!
//! An operator with fewer than [`CHAIN_MIN_ENTRIES`] timers writes them
//! whole into its state file instead: a few KB cost less than one more file
//! to write and sync at every checkpoint.
//!
//! The files are written through the log (`LogStore::write_aux`), so they
//! are named, tracked, waited for and deleted as its segments are. A
//! restored operator starts a new chain at its first checkpoint.
//!
//! # A timer file
//!
//! ```text
//! offset  size  field
//! 0       8     magic  b"BRISKTMR"
//! 8       4     format version (little endian), currently 1
//! 12      4     CRC-32C of bytes 16.. (id, length, entries)
//! 16      8     the file's id (little endian)
//! 24      8     bytes of entries that follow (little endian)
//! 32      ...   key-group-tagged entries (see `format`)
//! ```

use std::hash::Hash;

use brisk_state::log::{LogStore, SegmentRef};
use brisk_state::{KeyGroupRange, MaxParallelism};
use rustc_hash::FxHashMap;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::format::{self, RawEntry, StateWriter};
use super::segments::{self, SegmentFile};
use super::{EntryError, Restored};
use crate::operator::keyed_process::Timers;

/// The first bytes of a timer file.
pub const TIMER_MAGIC: &[u8; 8] = b"BRISKTMR";
/// The timer file format this build writes and reads.
pub const TIMER_VERSION: u32 = 1;
/// Bytes before the entries.
pub const TIMER_HEADER_BYTES: usize = 32;
/// A base under this many timers takes changes up to this many before a
/// new base is written.
pub const BASE_MIN_TIMERS: usize = 4096;
/// Most files in a chain (a restore opens each).
pub const CHAIN_FILES_MAX: usize = 32;
/// An operator with fewer timers (and [`ChainPart`] entries) than this
/// writes them whole into its state file, as a full snapshot does: a few KB
/// cost less than one more file to write and sync at every checkpoint.
pub const CHAIN_MIN_ENTRIES: usize = 256;

/// Entry kinds inside a timer file.
mod kind {
    /// `(image(namespace), timestamp, keys)`: event-time timers of one key
    /// group, registered (in this order).
    pub const EVENT_GROUP: u8 = 1;
    /// The same, processing time.
    pub const PROCESSING_GROUP: u8 = 2;
    /// `(image(namespace), timestamp, key)`: an event-time timer deleted.
    pub const EVENT_DELETED: u8 = 3;
    /// The same, processing time.
    pub const PROCESSING_DELETED: u8 = 4;
    /// `(image(namespace), timestamp, count)`: how many event-time timers
    /// of one key group fired (the first registered).
    pub const EVENT_FIRED: u8 = 5;
    /// The same, processing time.
    pub const PROCESSING_FIRED: u8 = 6;
    /// Kinds from this one on belong to the operator's [`ChainPart`](super::ChainPart).
    pub const PART: u8 = 16;
}

/// The first entry kind an operator's [`ChainPart`] may use in timer files.
pub(crate) const PART_KINDS: u8 = kind::PART;

/// Keyed state an operator checkpoints in its timer chain beside its timers
/// (a window operator's merging-window sets): whole in a base, by its
/// changes in the files after. Its entries use kinds from [`PART_KINDS`]
/// on, and a restore hands them back to the operator in file order.
pub(crate) trait ChainPart {
    /// Entries a base holds.
    fn len(&self) -> usize;
    /// Entries changed since the last [`mark`](Self::mark); `None` before
    /// the first mark or when too many changed to record.
    fn changes(&self) -> Option<usize>;
    /// Writes every entry (a base).
    fn write_all(&self, w: &mut StateWriter);
    /// Writes the entries changed since the last mark.
    fn write_changes(&self, w: &mut StateWriter);
    /// The state as it is now is checkpointed: record changes from now on.
    fn mark(&mut self);
}

/// The [`ChainPart`] of an operator with nothing beside its timers.
pub(crate) struct NoPart;

impl ChainPart for NoPart {
    fn len(&self) -> usize {
        0
    }
    fn changes(&self) -> Option<usize> {
        Some(0)
    }
    fn write_all(&self, _: &mut StateWriter) {}
    fn write_changes(&self, _: &mut StateWriter) {}
    fn mark(&mut self) {}
}

/// An operator's current chain of timer files.
#[derive(Debug, Default)]
pub(crate) struct TimerChain {
    /// Its files, the base first.
    files: Vec<SegmentRef>,
    /// Timers in the base.
    base_timers: usize,
    /// Changes in the files after the base.
    changes: usize,
}

/// The bytes of timer file `id` holding `entries`.
fn encode(id: u64, entries: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(TIMER_HEADER_BYTES + entries.len());
    out.extend_from_slice(TIMER_MAGIC);
    out.extend_from_slice(&TIMER_VERSION.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    out.extend_from_slice(entries);
    let crc = crc32c::crc32c(&out[16..]);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Whether `header` (a file's first bytes) starts as a timer file does.
pub fn is_timer_file(header: &[u8]) -> bool {
    header.starts_with(TIMER_MAGIC)
}

/// The id a timer file's header (its first [`TIMER_HEADER_BYTES`]) names.
pub fn timer_file_id(header: &[u8]) -> Result<u64, String> {
    if header.len() < TIMER_HEADER_BYTES || !is_timer_file(header) {
        return Err("not a brisk timer file (bad magic)".into());
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if version != TIMER_VERSION {
        return Err(format!("timer file format version {version}, this build reads version {TIMER_VERSION}"));
    }
    Ok(u64::from_le_bytes(header[16..24].try_into().expect("8 bytes")))
}

/// Checks timer file `bytes` (`len` long, named `id`) and returns its
/// entries.
fn open(bytes: &[u8], len: usize, id: u64) -> Result<&[u8], String> {
    if bytes.len() != len {
        return Err(format!("{} bytes, the checkpoint records {len}", bytes.len()));
    }
    let named = timer_file_id(bytes)?;
    if named != id {
        return Err(format!("holds timer file {named:016x}, the checkpoint expects {id:016x}"));
    }
    let stored = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(&bytes[16..]);
    if stored != computed {
        return Err(format!("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"));
    }
    let entries = u64::from_le_bytes(bytes[24..32].try_into().expect("8 bytes"));
    if entries != (len - TIMER_HEADER_BYTES) as u64 {
        return Err(format!("announces {entries} bytes of entries, holds {}", len - TIMER_HEADER_BYTES));
    }
    Ok(&bytes[TIMER_HEADER_BYTES..])
}

/// At an incremental checkpoint: writes the timers' next file through `log`
/// (a base, or the changes since the last checkpoint; nothing when nothing
/// changed), marks the queues, and returns the chain the checkpoint refers
/// to. The checkpoint must wait for the chain's files as for its segments.
pub(crate) fn checkpoint<K, N, I>(
    timers: &mut Timers<K, N>,
    part: &mut dyn ChainPart,
    log: &mut LogStore,
    groups: MaxParallelism,
    image: impl Fn(&N) -> I,
) -> Vec<SegmentRef>
where
    K: Eq + Hash + Clone + Serialize,
    N: Eq + Hash + Clone,
    I: Serialize,
{
    let changes = match (timers.event.changes(), timers.processing.changes(), part.changes()) {
        (Some(e), Some(p), Some(o)) => Some(e.size() + p.size() + o),
        _ => None,
    };
    let chain = &timers.chain;
    let timers_now = timers.event.len() + timers.processing.len() + part.len();
    let base = match changes {
        None => true,
        Some(c) => {
            chain.files.is_empty()
                || chain.files.len() >= CHAIN_FILES_MAX
                || chain.changes + c > chain.base_timers.max(BASE_MIN_TIMERS)
                || 2 * c > timers_now.max(BASE_MIN_TIMERS)
        }
    };
    if !base && changes == Some(0) {
        return timers.chain.files.clone();
    }
    let mut w = StateWriter::new();
    if base {
        timers.snapshot_groups(
            &mut w,
            [kind::EVENT_GROUP, kind::PROCESSING_GROUP],
            |h| groups.key_group(h),
            &image,
        );
        part.write_all(&mut w);
    } else {
        write_changes(timers, &mut w, groups, &image);
        part.write_changes(&mut w);
    }
    let id = log.next_aux_id();
    let bytes = encode(id, &w.finish());
    let file = SegmentRef { id, len: bytes.len() as u64, scope: KeyGroupRange::ALL };
    log.write_aux(id, bytes);
    let chain = &mut timers.chain;
    if base {
        for old in chain.files.drain(..) {
            log.retire_aux(old.id);
        }
        chain.base_timers = timers_now;
        chain.changes = 0;
    } else {
        chain.changes += changes.unwrap_or(0);
    }
    chain.files.push(file);
    timers.event.mark(groups);
    timers.processing.mark(groups);
    part.mark();
    let files = chain.files.clone();
    timers.recharge();
    files
}

/// Writes both queues' changes since their mark: deletions, then firings,
/// then registrations (the order a restore applies them in).
fn write_changes<K, N, I>(
    timers: &Timers<K, N>,
    w: &mut StateWriter,
    groups: MaxParallelism,
    image: &impl Fn(&N) -> I,
) where
    K: Eq + Hash + Clone + Serialize,
    N: Eq + Hash + Clone,
    I: Serialize,
{
    let queues = [
        (&timers.event, [kind::EVENT_DELETED, kind::EVENT_FIRED]),
        (&timers.processing, [kind::PROCESSING_DELETED, kind::PROCESSING_FIRED]),
    ];
    for (queue, [deleted, fired]) in queues {
        let changes = queue.changes().expect("the caller checked that changes are recorded");
        for (key, namespace, ts) in changes.deleted() {
            let kg = groups.key_group(brisk_state::key_hash(key));
            w.entry(deleted, kg, &(image(namespace), *ts, key));
        }
        for (ts, namespace, kg, count) in changes.popped() {
            w.entry(fired, kg, &(image(namespace), ts, count));
        }
    }
    let kinds = [kind::EVENT_GROUP, kind::PROCESSING_GROUP];
    for (queue, kind) in [&timers.event, &timers.processing].into_iter().zip(kinds) {
        let changes = queue.changes().expect("the caller checked that changes are recorded");
        crate::operator::keyed_process::write_groups(
            w,
            kind,
            changes.added(),
            |h| groups.key_group(h),
            image,
        );
    }
}

/// Writes an operator's timers for a checkpoint: with `incremental` (the
/// checkpoint's segments and manifest entries, which the chain joins), a
/// log and at least [`CHAIN_MIN_ENTRIES`] timers and `part` entries, as a
/// chain of timer files named by an entry of kind `kinds[2]`, with `part`,
/// and returns `true`; otherwise whole into the state file as timer groups
/// of kinds `kinds[0]` (event time) and `kinds[1]` (processing time), and
/// returns `false`: the operator writes what `part` stands for itself.
#[allow(clippy::too_many_arguments)]
pub(crate) fn snapshot<K, N, I>(
    timers: &mut Timers<K, N>,
    part: &mut dyn ChainPart,
    w: &mut StateWriter,
    kinds: [u8; 3],
    incremental: Option<(&mut Vec<SegmentRef>, &mut Vec<SegmentFile>)>,
    log: Option<&std::rc::Rc<std::cell::RefCell<LogStore>>>,
    groups: MaxParallelism,
    (node, core): (usize, usize),
    image: impl Fn(&N) -> I,
) -> bool
where
    K: Eq + Hash + Clone + Serialize,
    N: Eq + Hash + Clone,
    I: Serialize,
{
    let entries = timers.event.len() + timers.processing.len() + part.len();
    match (incremental, log) {
        (Some((segments, files)), Some(log)) if entries >= CHAIN_MIN_ENTRIES => {
            let chain = checkpoint(timers, part, &mut log.borrow_mut(), groups, image);
            let (entry, named) = name_chain(&chain, node, core);
            w.entry(kinds[2], format::NO_KEY_GROUP, &entry);
            segments.extend(chain);
            files.extend(named);
            true
        }
        (incremental, log) => {
            if let (Some(_), Some(log)) = (incremental, log) {
                // Small again: the chain is the older checkpoints' now, and
                // a later chain starts with a base.
                let mut log = log.borrow_mut();
                for old in timers.chain.files.drain(..) {
                    log.retire_aux(old.id);
                }
            }
            timers.snapshot_groups(w, [kinds[0], kinds[1]], |h| groups.key_group(h), image);
            false
        }
    }
}

/// The state file's entry naming `chain` (`(path, id, len)` each), and the
/// chain's manifest entries.
fn name_chain(chain: &[SegmentRef], node: usize, core: usize) -> (Vec<(String, u64, u64)>, Vec<SegmentFile>) {
    let entry = chain.iter().map(|r| (segments::own_path(r.id), r.id, r.len)).collect();
    let files = chain
        .iter()
        .map(|r| SegmentFile { path: segments::own_path(r.id), node, core, id: r.id, len: r.len })
        .collect();
    (entry, files)
}

/// What a restore hands an operator's [`ChainPart`]: each of its entries,
/// in file order.
pub(crate) type PartEntries<'a> = dyn FnMut(&RawEntry<'_>) -> Result<(), String> + 'a;

/// Restores the chain a state file's `TIMER_FILES` entry names into
/// `timers` (and the entries of the operator's [`ChainPart`] into `part`),
/// keeping the key groups of `owned`; `namespace` turns a namespace's image
/// back into the namespace. The restored timers are indexed at the first
/// lookup, or all at once by `Timers::index_restored`.
pub(crate) fn restore<K, N, I>(
    entry: &RawEntry<'_>,
    restored: Option<&Restored>,
    timers: &mut Timers<K, N>,
    part: &mut PartEntries<'_>,
    owned: KeyGroupRange,
    groups: MaxParallelism,
    namespace: impl Fn(I) -> N,
) -> Result<(), EntryError>
where
    K: Eq + Hash + Clone + DeserializeOwned,
    N: Eq + Hash + Clone,
    I: DeserializeOwned,
{
    let chain: Vec<(String, u64, u64)> = entry.decode()?;
    let Some(restored) = restored else { return Ok(()) };
    for (path, id, len) in chain {
        let file = segments::resolve(&restored.segment_root, &path);
        let bad = |e: String| format!("timer file {}: {e}", file.display());
        let bytes = crate::runtime::segment_io::map_file(&file).map_err(|e| bad(e.to_string()))?;
        let entries = open((*bytes).as_ref(), len as usize, id).map_err(bad)?;
        apply(entries, timers, part, owned, groups, &namespace).map_err(bad)?;
    }
    Ok(())
}

/// Timers fired per queue (event time first) and timestamp, by
/// (namespace, key group), waiting to be removed.
type Fired<N> = [FxHashMap<i64, FxHashMap<(N, u32), u32>>; 2];

/// Applies one timer file's entries of the key groups of `owned`.
fn apply<K, N, I>(
    entries: &[u8],
    timers: &mut Timers<K, N>,
    part: &mut PartEntries<'_>,
    owned: KeyGroupRange,
    groups: MaxParallelism,
    namespace: &impl Fn(I) -> N,
) -> Result<(), String>
where
    K: Eq + Hash + Clone + DeserializeOwned,
    N: Eq + Hash + Clone,
    I: DeserializeOwned,
{
    let mut fired: Fired<N> = Default::default();
    for entry in format::entries(entries) {
        let entry = entry.map_err(|e| e.to_string())?;
        if !owned.contains(entry.key_group) {
            continue;
        }
        let event = matches!(entry.kind, kind::EVENT_GROUP | kind::EVENT_DELETED | kind::EVENT_FIRED);
        match entry.kind {
            kind::EVENT_GROUP | kind::PROCESSING_GROUP => {
                remove_fired(timers, &mut fired, groups)?;
                let (image, ts, keys): (I, i64, Vec<K>) = entry.decode().map_err(|e| e.to_string())?;
                timers.restore_group(event, &namespace(image), ts, &keys);
            }
            kind::EVENT_DELETED | kind::PROCESSING_DELETED => {
                let (image, ts, key): (I, i64, K) = entry.decode().map_err(|e| e.to_string())?;
                let queue = if event { &mut timers.event } else { &mut timers.processing };
                if !queue.delete(&key, brisk_state::key_hash(&key), &namespace(image), ts) {
                    return Err(format!("deletes a timer at {ts} the chain does not hold"));
                }
            }
            kind::EVENT_FIRED | kind::PROCESSING_FIRED => {
                let (image, ts, count): (I, i64, u32) = entry.decode().map_err(|e| e.to_string())?;
                let at = fired[usize::from(!event)].entry(ts).or_default();
                *at.entry((namespace(image), entry.key_group)).or_insert(0) += count;
            }
            kind::PART.. => part(&entry)?,
            other => return Err(format!("unknown timer entry kind {other}")),
        }
    }
    remove_fired(timers, &mut fired, groups)
}

/// Removes the timers `fired` counts (see [`apply`]).
fn remove_fired<K, N>(
    timers: &mut Timers<K, N>,
    fired: &mut Fired<N>,
    groups: MaxParallelism,
) -> Result<(), String>
where
    K: Eq + Hash + Clone,
    N: Eq + Hash + Clone,
{
    for (i, queue) in [&mut timers.event, &mut timers.processing].into_iter().enumerate() {
        for (ts, mut counts) in fired[i].drain() {
            if !queue.remove_leading(ts, &mut counts, groups) {
                return Err(format!("fires more timers at {ts} than the chain holds"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A damaged timer file is refused, saying why: no bit of it becomes a
    /// timer unchecked.
    #[test]
    fn a_damaged_timer_file_is_refused() {
        let mut w = StateWriter::new();
        w.entry(kind::EVENT_GROUP, 3, &((), 10i64, vec![1u64, 2, 3]));
        let entries = w.finish();
        let good = encode(42, &entries);
        assert_eq!(open(&good, good.len(), 42), Ok(&entries[..]));
        assert_eq!(timer_file_id(&good[..TIMER_HEADER_BYTES]), Ok(42));
        let refused = |bytes: &[u8], len: usize, id: u64| open(bytes, len, id).unwrap_err();
        assert!(refused(&good, good.len(), 43).contains("expects 000000000000002b"));
        assert!(refused(&good[..good.len() - 1], good.len(), 42).contains("the checkpoint records"));
        for at in [TIMER_HEADER_BYTES + 2, good.len() - 1, 20] {
            let mut bad = good.clone();
            bad[at] ^= 0x04;
            let e = refused(
                &bad,
                bad.len(),
                if at == 20 { u64::from_le_bytes(bad[16..24].try_into().unwrap()) } else { 42 },
            );
            assert!(e.contains("checksum mismatch"), "byte {at}: {e}");
        }
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(refused(&bad, bad.len(), 42).contains("bad magic"));
        let mut bad = good.clone();
        bad[8] = 9;
        assert!(refused(&bad, bad.len(), 42).contains("version 9"));
    }
}
