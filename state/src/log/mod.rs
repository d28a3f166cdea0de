//! The log-structured state tier: keyed state larger than memory.
//!
//! Under the log backend every [`StateTable`](crate::StateTable) keeps its
//! recently used entries in memory and the rest in an append-only log of
//! checksummed records, per keyed operator per core, within a per-core
//! memory budget ([`MemoryBudget`]).
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`format`](mod@format) | segment and record framing, CRC-32C per record, torn-tail scan |
//! | [`io`] | [`SegmentIo`]: non-blocking segment writes and mapped reads; [`SimDisk`], the seeded storage twin |
//! | [`store`] | [`LogStore`]: the open segment, sealed segments in flight or on disk, dead-byte accounting |
//! | [`spill`] | the per-table index of cold keys, eviction, read-back, tombstones, replay |
//! | [`compact`] | one compaction step, for any owner of tables ([`compact::CompactTarget`]) |
//! | [`index`] | index bases: a checkpoint's tables' indexes, archived with rkyv, so that a restore need not replay the whole log |
//!
//! Compaction is driven by the owner of a log
//! ([`KeyedStateBackend`](crate::KeyedStateBackend), or the engine's window
//! operator), because only the tables know which records are still the
//! newest of their key.

pub mod compact;
pub mod format;
pub mod index;
pub mod io;
pub mod spill;
pub mod store;

pub use format::{Record, RecordKind};
pub use index::{IndexCheckpoint, IndexedTable, LogIndex};
pub use io::{Faults, SegmentBytes, SegmentIo, SimDisk, SimIo};
pub use spill::{Charge, MemoryBudget, MemoryUse, SpillStats};
pub use store::{Durability, Loc, LogStats, LogStore, SegmentRef};

#[cfg(test)]
mod tests;
