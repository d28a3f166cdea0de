//! A core's side of incremental checkpoints (see `segments.rs`): writing an
//! operator's state file that refers to its log's segments, and restoring a
//! log from the segments a checkpoint names. Shared by every operator whose
//! state lives in a log (keyed process functions, windows).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use brisk_state::KeyGroupRange;
use brisk_state::log::index::{BaseFile, ForgottenRef};
use brisk_state::log::{Durability, IndexCheckpoint, LogStore, SegmentRef};

use super::EntryError;
use super::Restored;
use super::format::{NO_KEY_GROUP, RawEntry, StateWriter};
use super::segments::{self, SegmentFile};
use crate::runtime::core::Core;

/// The manifest entries of `list`, a log's segments: named by id, or as
/// they were adopted (`adopted`: id → path).
fn segment_files(
    list: &[SegmentRef],
    adopted: &HashMap<u64, String>,
    node: usize,
    core: usize,
) -> Vec<SegmentFile> {
    list.iter()
        .map(|r| SegmentFile {
            path: adopted.get(&r.id).cloned().unwrap_or_else(|| segments::own_path(r.id)),
            node,
            core,
            id: r.id,
            len: r.len,
        })
        .collect()
}

/// For a log's segments (`segments`, `None` for a full snapshot) and its
/// index (`index`): writes the state file's entry of kind `index_kind`
/// naming the index base and the records forgotten since `(path, id, len,
/// forgotten)`, then the entry of kind `kind` that names the segments,
/// `(path, id, len, scope start, scope end)` each, operator-wide, and
/// returns their manifest entries (the base's last).
#[allow(clippy::too_many_arguments)]
pub(crate) fn name_segments(
    w: &mut StateWriter,
    [kind, index_kind]: [u8; 2],
    segments: Option<&Vec<SegmentRef>>,
    index: Option<&IndexCheckpoint>,
    adopted: &HashMap<u64, String>,
    node: usize,
    core: usize,
) -> Option<Vec<SegmentFile>> {
    let mut files = segment_files(segments?, adopted, node, core);
    let entry: Vec<(&str, u64, u64, u32, u32)> = files
        .iter()
        .zip(segments?)
        .map(|(f, r)| (f.path.as_str(), f.id, f.len, r.scope.start, r.scope.end))
        .collect();
    if let Some(ix) = index {
        let path = segments::own_path(ix.base.id);
        w.entry(index_kind, NO_KEY_GROUP, &(path.as_str(), ix.base.id, ix.base.len, &ix.forgotten));
    }
    w.entry(kind, NO_KEY_GROUP, &entry);
    if let Some(ix) = index {
        let path = segments::own_path(ix.base.id);
        files.push(SegmentFile { path, node, core, id: ix.base.id, len: ix.base.len });
    }
    Some(files)
}

/// A state file's index entry (see [`name_segments`]), decoded.
pub(crate) struct IndexEntry {
    path: String,
    id: u64,
    len: u64,
    forgotten: Vec<ForgottenRef>,
}

impl IndexEntry {
    /// Decodes an entry written by [`name_segments`] under its index kind.
    pub(crate) fn decode(entry: &RawEntry<'_>) -> Result<Self, EntryError> {
        let (path, id, len, forgotten): (String, u64, u64, Vec<ForgottenRef>) = entry.decode()?;
        Ok(Self { path, id, len, forgotten })
    }
}

/// What restoring a log asks of the operator whose tables it holds.
pub(crate) trait LogTables {
    /// Replays adopted segment `seg`, keeping the records of key groups in
    /// `scope`. `indexed`: the restore goes through an index base, which
    /// names the records removed without a tombstone, so no other filter
    /// is needed.
    fn replay(&mut self, seg: u32, scope: KeyGroupRange, indexed: bool) -> Result<(), String>;
    /// Whether an index base of the checkpoint can be loaded as is (the
    /// tables carry the state numbers they had).
    fn index_usable(&self) -> bool;
    /// Loads the index base's entries for the adopted segments.
    fn load_index(&mut self, base: &BaseFile) -> Result<usize, String>;
    /// Unindexes the forgotten records and recounts the log's dead ones.
    fn finish_index(&mut self, forgotten: &[ForgottenRef]);
}

/// Runs `flush` (an operator writing its dirty state into its log and
/// sealing it for checkpoint `id`) and notes the log segments it left
/// unwritten: the next checkpoint's flush will take about as much memory
/// at once (see `CoreCheckpoints::burst_reserve`).
pub(crate) fn flush<R>(core: &Core, id: u64, flush: impl FnOnce() -> R) -> R {
    let out = flush();
    if let Some(cp) = &core.checkpoints {
        let segments = core.memory_budget().used_by(brisk_state::log::MemoryUse::Segments);
        cp.note_flushed_segments(id, segments);
    }
    out
}

/// Writes `payload` as node `node`'s state for checkpoint `id`, once the
/// segments of `list` in `log` are durable (a failed write fails the
/// checkpoint), listing `files` in the acknowledgement.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_after_segments(
    core: &Core,
    id: u64,
    node: usize,
    payload: Vec<u8>,
    started: Instant,
    (mut list, index): (Vec<SegmentRef>, Option<IndexCheckpoint>),
    files: Vec<SegmentFile>,
    log: Rc<RefCell<LogStore>>,
) {
    let Some(cp) = &core.checkpoints else { return };
    // The index base is waited for as a segment.
    list.extend(index.map(|i| i.base));
    let signal = core.segment_writes.clone();
    let durable = Box::pin(async move {
        loop {
            let seen = signal.generation();
            let now = {
                let mut log = log.borrow_mut();
                log.poll();
                log.durability(&list)
            };
            match now {
                Durability::Durable => return Ok(()),
                Durability::Failed(e) => return Err(e),
                Durability::Pending => signal.changed_since(seen).await,
            }
        }
    });
    cp.write_state_after(id, node, payload, started, files, Some(durable));
}

/// Restores a state file's segment entry (written by [`name_segments`]):
/// maps, verifies and adopts into `log` every segment it names whose scope
/// overlaps `owned` (this core's key groups), in order, and rebuilds the
/// tables' indexes, and notes under which path later checkpoints name each
/// segment (`adopted`). `log` is `None` on the heap backend, which cannot
/// take such a checkpoint.
///
/// With the file's index entry (`index`), and when every segment is
/// wholly this core's or not at all (the same core count, or fewer), the
/// index is loaded from the base, and only the segments sealed after it are
/// replayed (see `brisk_state::log::index`). Otherwise every segment is
/// replayed record by record, keeping the key groups of `owned`.
pub(crate) fn restore_segments(
    entry: &RawEntry<'_>,
    index: Option<IndexEntry>,
    restored: Option<&Restored>,
    log: Option<&Rc<RefCell<LogStore>>>,
    owned: KeyGroupRange,
    adopted: &mut HashMap<u64, String>,
    tables: &mut dyn LogTables,
) -> Result<(), EntryError> {
    let refs: Vec<(String, u64, u64, u32, u32)> = entry.decode()?;
    let Some(restored) = restored else { return Ok(()) };
    let Some(log) = log else {
        return Err("the checkpoint refers to state log segments (state_backend = log); \
                    restore it with state_backend = log, or switch backends through a savepoint"
            .into());
    };
    let started = Instant::now();
    let whole = |start, end| {
        let scope = KeyGroupRange { start, end };
        let mine = scope.intersect(&owned);
        mine.is_empty() || mine == scope
    };
    let index = index.filter(|_| tables.index_usable() && refs.iter().all(|r| whole(r.3, r.4)));
    let mut adopted_now = Vec::new();
    for (path, id, len, start, end) in refs {
        // Records outside the segment's scope are stale (see
        // `SegmentRef::scope`); a segment with none of ours is not read.
        let scope = KeyGroupRange { start, end }.intersect(&owned);
        if scope.is_empty() {
            continue;
        }
        let file = segments::resolve(&restored.segment_root, &path);
        let bad = |e: String| format!("state log segment {}: {e}", file.display());
        let bytes = crate::runtime::segment_io::map_file(&file).map_err(|e| bad(e.to_string()))?;
        let no = log.borrow_mut().adopt_verified(id, bytes, len as usize, scope).map_err(bad)?;
        if index.is_none() {
            tables.replay(no, scope, false).map_err(bad)?;
        } else {
            adopted_now.push((no, id, scope, file.display().to_string()));
        }
        // Later checkpoints name it as this one did, or by its absolute path
        // if it lives in another root.
        let keep = if restored.own_root && !std::path::Path::new(&path).is_absolute() {
            path
        } else {
            file.display().to_string()
        };
        adopted.insert(id, keep);
    }
    let Some(index) = index else { return Ok(()) };
    if adopted_now.is_empty() {
        return Ok(());
    }
    let adopted_at = started.elapsed();
    let file = segments::resolve(&restored.segment_root, &index.path);
    let bad = |e: String| format!("state index base {}: {e}", file.display());
    let bytes = crate::runtime::segment_io::map_file(&file).map_err(|e| bad(e.to_string()))?;
    let base = BaseFile::open(bytes, index.len as usize, index.id).map_err(bad)?;
    let opened_at = started.elapsed();
    let covered: std::collections::HashSet<u64> =
        base.base().segments.iter().map(|s| s.id.to_native()).collect();
    let loaded = tables.load_index(&base).map_err(bad)?;
    drop(base);
    let loaded_at = started.elapsed();
    let mut tail = 0;
    for (no, id, scope, path) in adopted_now {
        if !covered.contains(&id) {
            tables.replay(no, scope, true).map_err(|e| format!("state log segment {path}: {e}"))?;
            tail += 1;
        }
    }
    tables.finish_index(&index.forgotten);
    tracing::debug!(
        "restored a state log through index base {}: {loaded} records indexed, {tail} segments replayed, \
         {} forgotten; adopted in {adopted_at:?}, opened by {opened_at:?}, indexed by {loaded_at:?}, done by {:?}",
        file.display(),
        index.forgotten.len(),
        started.elapsed()
    );
    Ok(())
}
