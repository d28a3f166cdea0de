//! Keyed state for brisk: key groups, stable key hashing, and the keyed
//! state backend, in memory (heap) or spilling to a log-structured store
//! within a memory budget (log).
//!
//! This crate never depends on the engine. The engine owns one
//! [`KeyedStateBackend`] per keyed operator per core and hands user functions
//! typed accessors scoped to the record's key.
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`key_group`] | Flink's key-group formula: key hash → key group → owning core |
//! | [`hash`] | the stable 64-bit key hash ([`key_hash`]) that picks the key group and is reused by state lookups |
//! | [`heap`] | [`KeyedStateBackend`]: value, list, map, reducing and aggregating state in per-state hash tables |
//! | [`hot`] | [`hot::HotTable`]: the in-memory hash table of entries, in sixteen shards so that it never resizes whole |
//! | [`access`] | the accessors a backend hands out: one state scoped to the current key |
//! | [`archived`] | [`Rkyv`]: a state value kept as its `rkyv` archive, read in place and validated when read back |
//! | [`ttl`] | [`StateTtlConfig`]: state that expires in processing time, and how expired values are cleaned up |
//! | [`log`] | the log tier: checksummed append-only segments, eviction and read-back within a [`log::MemoryBudget`], compaction, the storage twin |
//! | [`timers`] | [`TimerQueue`]: timers per key and namespace, deduplicated, in timestamp order |
//!
//! # Example
//! ```
//! use brisk_state::{KeyedStateBackend, CurrentKey, key_hash};
//!
//! let mut backend: KeyedStateBackend<String> = KeyedStateBackend::new();
//! let last = backend.value_state::<f64>("last").unwrap();
//! let key = "user_A".to_string();
//! let hash = key_hash(&key);
//! let at = CurrentKey::new(&key, hash);
//! assert_eq!(backend.value(&last, at).get(), None);
//! backend.value(&last, at).set(10.5);
//! assert_eq!(backend.value(&last, at).get(), Some(&10.5));
//! ```

pub mod access;
pub mod archived;
pub mod hash;
pub mod heap;
pub mod hot;
pub mod key_group;
pub mod log;
pub mod timers;
pub mod ttl;

pub use archived::{Archivable, ArchiveError, Rkyv};
pub use hash::key_hash;
pub use heap::{
    AggregateFunction, AggregatingAccess, AggregatingState, CurrentKey, KeyedStateBackend, ListAccess,
    ListState, MapAccess, MapState, ReducingAccess, ReducingState, RestoreError, StateError, StateTable,
    StateValue, ValueAccess, ValueState, WithTtl,
};
pub use key_group::{KeyGroupRange, MaxParallelism};
/// The `rkyv` this crate archives with, for `#[rkyv(crate = brisk_state::rkyv)]`
/// on the types a [`Rkyv`] value holds.
pub use rkyv;
pub use timers::{Timer, TimerQueue};
pub use ttl::{StateTtlConfig, TtlUpdate, TtlVisibility};
