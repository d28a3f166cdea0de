//! One compaction step over a log, for whatever owns its tables: the
//! durable segment with the largest dead fraction above a threshold has its
//! live records copied forward, and is dropped.
//!
//! The threshold depends on how much of the log is dead. Under churn most
//! records die soon after they are written (a key updated again, a window's
//! rows removed when it fires), and a segment left alone long enough dies
//! whole and is dropped without copying anything. So while the log holds
//! less dead than live data (space amplification under 2), only segments
//! at least [`COMPACT_NEARLY_DEAD`] dead are compacted, which copies little;
//! past that, any segment at least [`COMPACT_DEAD_FRACTION`] dead is, most
//! dead first, bounding the log's size to about twice its live data.
//!
//! Tombstones need one more rule. A tombstone must stay while an older
//! record of its key may still be in the log, which only the oldest
//! segment can rule out: compacting it drops its tombstones, while any
//! other compaction copies the still-needed ones forward. A segment of keys
//! that never change is never dead enough to be compacted, stays the oldest,
//! and without more, the tombstones behind it would circulate forever
//! (written keys that are removed later: sessions, expired TTL state). So
//! once tombstones exceed [`TOMBSTONE_SHARE`] of the live bytes (plus two
//! segments), compaction sweeps the log: it compacts the oldest segment
//! however live it is, one per step, until every segment sealed before the
//! sweep began is gone. Each step moves the oldest live records to the
//! head and drops the tombstones that are then oldest, so a sweep drops
//! every tombstone it began with and copies about the live bytes once:
//! at most four bytes copied per byte of tombstones dropped.

use std::cell::RefCell;
use std::rc::Rc;

use super::format::{self, Record, RecordKind};
use super::store::{Loc, LogStore};

/// While the log's dead bytes exceed its live ones, a segment with at
/// least this fraction of dead records is compacted.
pub const COMPACT_DEAD_FRACTION: f64 = 0.5;

/// Otherwise only a segment with at least this fraction of dead records is.
pub const COMPACT_NEARLY_DEAD: f64 = 0.9;

/// Tombstones beyond this share of the log's live bytes (plus two segments)
/// make compaction work through the log from its oldest segment.
pub const TOMBSTONE_SHARE: f64 = 0.25;

/// What compaction asks of the tables whose records a log holds.
pub trait CompactTarget {
    /// Whether the record at `loc` (of state `state`) is the newest of its key.
    fn is_live(&self, state: u32, hash: u64, loc: Loc) -> bool;
    /// Whether a tombstone of state `state` must survive: its key has no value.
    fn tombstone_still_needed(&self, state: u32, rec: &Record<'_>) -> bool;
    /// The record at `old` was copied to `new`.
    fn relocate(&mut self, state: u32, hash: u64, old: Loc, new: Loc);
    /// A hint: [`is_live`](Self::is_live) or
    /// [`tombstone_still_needed`](Self::tombstone_still_needed) will soon
    /// be asked about a key of hash `hash`; start loading what they read.
    fn prefetch(&self, _state: u32, _hash: u64) {}
}

/// Records of a segment being compacted whose index slots are prefetched
/// before the first of them is looked up. A lookup in an index larger than
/// the caches is a miss; this many are in flight at once.
const PREFETCH_DISTANCE: usize = 16;

/// Takes in finished writes and compacts at most one segment (see the
/// module docs). Returns whether one was compacted.
pub fn compact_once(log: &Rc<RefCell<LogStore>>, target: &mut dyn CompactTarget) -> bool {
    log.borrow_mut().poll();
    let seg = {
        let mut l = log.borrow_mut();
        let live = l.total_bytes() - l.dead_bytes();
        let min_dead =
            if 2 * l.dead_bytes() > l.total_bytes() { COMPACT_DEAD_FRACTION } else { COMPACT_NEARLY_DEAD };
        let tombstones_over =
            l.tombstone_bytes() as f64 > TOMBSTONE_SHARE * live as f64 + 2.0 * l.segment_target() as f64;
        l.sweep_next(tombstones_over).or_else(|| l.compaction_candidate(min_dead))
    };
    let Some(seg) = seg else { return false };
    let oldest = log.borrow().is_oldest(seg);
    // Records are read in place through a handle on the segment's bytes,
    // while copying forward appends to the same log.
    let Some((bytes, len)) = log.borrow().sealed_bytes(seg) else { return false };
    let bytes = &(*bytes).as_ref()[..len];
    let mut copied = 0;
    // Each record is looked up PREFETCH_DISTANCE records after its index
    // slot was asked for.
    let mut ahead: [Option<(usize, Record<'_>)>; PREFETCH_DISTANCE] = [None; PREFETCH_DISTANCE];
    let mut n = 0usize;
    format::scan(bytes, |at, rec| {
        if !(oldest && rec.kind == RecordKind::Delete) {
            target.prefetch(rec.state, rec.hash);
        }
        if let Some((at, rec)) = ahead[n % PREFETCH_DISTANCE].replace((at, rec)) {
            copied += keep_or_copy(log, target, seg, oldest, at, &rec);
        }
        n += 1;
    });
    for i in n..n + PREFETCH_DISTANCE {
        if let Some((at, rec)) = ahead[i % PREFETCH_DISTANCE].take() {
            copied += keep_or_copy(log, target, seg, oldest, at, &rec);
        }
    }
    let mut log = log.borrow_mut();
    log.note_compacted(copied);
    log.drop_segment(seg);
    true
}

/// Copies the record at `at` of segment `seg` forward if it is still
/// needed; returns the bytes copied.
fn keep_or_copy(
    log: &Rc<RefCell<LogStore>>,
    target: &mut dyn CompactTarget,
    seg: u32,
    oldest: bool,
    at: usize,
    rec: &Record<'_>,
) -> usize {
    let loc = Loc::new(seg, at);
    let keep = match rec.kind {
        RecordKind::Put => target.is_live(rec.state, rec.hash, loc),
        // Tombstones hide older records; none is older than the oldest segment.
        RecordKind::Delete => !oldest && target.tombstone_still_needed(rec.state, rec),
    };
    if !keep {
        return 0;
    }
    let mut l = log.borrow_mut();
    let new = l.append(rec.state, rec.kind, rec.hash, |o| o.extend_from_slice(rec.payload));
    if rec.kind == RecordKind::Delete {
        l.kill(new);
    } else {
        drop(l);
        target.relocate(rec.state, rec.hash, loc, new);
    }
    format::RECORD_HEADER_BYTES + rec.payload.len()
}
