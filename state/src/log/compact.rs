//! One compaction step over a log, for whatever owns its tables: the
//! durable segment with the largest dead fraction above a threshold has its
//! live records copied forward, and is dropped.

use std::cell::RefCell;
use std::rc::Rc;

use super::format::{self, Record, RecordKind};
use super::store::{Loc, LogStore};

/// A segment with at least this fraction of dead bytes is compacted.
pub const COMPACT_DEAD_FRACTION: f64 = 0.5;

/// What compaction asks of the tables whose records a log holds.
pub trait CompactTarget {
    /// Whether the record at `loc` (of state `state`) is the newest of its key.
    fn is_live(&self, state: u32, hash: u64, loc: Loc) -> bool;
    /// Whether a tombstone of state `state` must survive: its key has no value.
    fn tombstone_still_needed(&self, state: u32, rec: &Record<'_>) -> bool;
    /// The record at `old` was copied to `new`.
    fn relocate(&mut self, state: u32, hash: u64, old: Loc, new: Loc);
}

/// Takes in finished writes and compacts at most one segment (see the
/// module docs). Returns whether one was compacted.
pub fn compact_once(log: &Rc<RefCell<LogStore>>, target: &mut dyn CompactTarget) -> bool {
    log.borrow_mut().poll();
    let Some(seg) = log.borrow().compaction_candidate(COMPACT_DEAD_FRACTION) else { return false };
    let oldest = log.borrow().is_oldest(seg);
    // Records are read in place through a handle on the segment's bytes,
    // while copying forward appends to the same log.
    let Some((bytes, len)) = log.borrow().sealed_bytes(seg) else { return false };
    let bytes = &(*bytes).as_ref()[..len];
    let mut copied = 0;
    format::scan(bytes, |at, rec| {
        let loc = Loc::new(seg, at);
        let keep = match rec.kind {
            RecordKind::Put => target.is_live(rec.state, rec.hash, loc),
            // Tombstones hide older records; none is older than the oldest segment.
            RecordKind::Delete => !oldest && target.tombstone_still_needed(rec.state, &rec),
        };
        if !keep {
            return;
        }
        let mut l = log.borrow_mut();
        let new = l.append(rec.state, rec.kind, rec.hash, |o| o.extend_from_slice(rec.payload));
        copied += format::RECORD_HEADER_BYTES + rec.payload.len();
        if rec.kind == RecordKind::Delete {
            l.kill(new);
        } else {
            drop(l);
            target.relocate(rec.state, rec.hash, loc, new);
        }
    });
    let mut log = log.borrow_mut();
    log.note_compacted(copied);
    log.drop_segment(seg);
    true
}
