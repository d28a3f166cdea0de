//! A core's side of incremental checkpoints (see `segments.rs`): writing an
//! operator's state file that refers to its log's segments, and restoring a
//! log from the segments a checkpoint names. Shared by every operator whose
//! state lives in a log (keyed process functions, windows).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use brisk_state::KeyGroupRange;
use brisk_state::log::{Durability, LogStore, SegmentRef};

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

/// For a log's segments (`segments`, `None` for a full snapshot): writes
/// the state file's entry of kind `kind` that names them, `(path, id, len,
/// scope start, scope end)` each, operator-wide, and returns their manifest
/// entries.
pub(crate) fn name_segments(
    w: &mut StateWriter,
    kind: u8,
    segments: Option<&Vec<SegmentRef>>,
    adopted: &HashMap<u64, String>,
    node: usize,
    core: usize,
) -> Option<Vec<SegmentFile>> {
    let files = segment_files(segments?, adopted, node, core);
    let entry: Vec<(&str, u64, u64, u32, u32)> = files
        .iter()
        .zip(segments?)
        .map(|(f, r)| (f.path.as_str(), f.id, f.len, r.scope.start, r.scope.end))
        .collect();
    w.entry(kind, NO_KEY_GROUP, &entry);
    Some(files)
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
    list: Vec<SegmentRef>,
    files: Vec<SegmentFile>,
    log: Rc<RefCell<LogStore>>,
) {
    let Some(cp) = &core.checkpoints else { return };
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
/// overlaps `owned` (this core's key groups), in order, calling `replay`
/// with each one's number and the key groups whose records to take (the
/// overlap), and notes under which path later checkpoints name it
/// (`adopted`). `log` is `None` on the heap backend, which cannot take
/// such a checkpoint.
pub(crate) fn restore_segments(
    entry: &RawEntry<'_>,
    restored: Option<&Restored>,
    log: Option<&Rc<RefCell<LogStore>>>,
    owned: KeyGroupRange,
    adopted: &mut HashMap<u64, String>,
    mut replay: impl FnMut(u32, KeyGroupRange) -> Result<(), String>,
) -> Result<(), EntryError> {
    let refs: Vec<(String, u64, u64, u32, u32)> = entry.decode()?;
    let Some(restored) = restored else { return Ok(()) };
    let Some(log) = log else {
        return Err("the checkpoint refers to state log segments (state_backend = log); \
                    restore it with state_backend = log, or switch backends through a savepoint"
            .into());
    };
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
        replay(no, scope).map_err(bad)?;
        // Later checkpoints name it as this one did, or by its absolute path
        // if it lives in another root.
        let keep = if restored.own_root && !std::path::Path::new(&path).is_absolute() {
            path
        } else {
            file.display().to_string()
        };
        adopted.insert(id, keep);
    }
    Ok(())
}
