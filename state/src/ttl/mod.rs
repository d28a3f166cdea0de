//! State time-to-live (Flink's `StateTtlConfig`): keyed state that expires
//! a fixed time after it was last written (or read), in processing time.
//!
//! A state registered with a [`StateTtlConfig`] stores a timestamp beside
//! every value: one per key for value, reducing and aggregating state, one
//! per element for list state and one per entry for map state, as Flink
//! does. A value is expired once `timestamp + ttl <= now`, where `now` is
//! the processing time the engine gave the backend
//! ([`KeyedStateBackend::set_current_time`](crate::KeyedStateBackend::set_current_time)).
//!
//! Expired values are removed
//! - when they are read: under [`TtlVisibility::NeverReturnExpired`] a read
//!   removes what it finds expired and returns nothing for it; under
//!   [`TtlVisibility::ReturnExpiredIfNotCleanedUp`] a read returns expired
//!   values that are still stored and leaves their removal to the cleanups
//!   below;
//! - when they are written over: a write access (`set`, `get_mut`, `add` to
//!   a reducing state, …) treats an expired value as absent;
//! - in the background: each state sweeps its in-memory entries once it has
//!   been accessed as often as it has entries (Flink's incremental cleanup);
//!   log compaction drops records that are wholly expired (Flink's RocksDB
//!   compaction filter);
//! - in checkpoints: a full snapshot skips wholly expired entries, after the
//!   in-memory entries were swept (Flink's full-snapshot cleanup).
//!
//! An expired value is never brought back: a write stamps a fresh value and
//! a read never renews an expired one.
//!
//! Enabling or disabling TTL on a state changes its stored form, so a
//! checkpoint taken with TTL restores only into a state registered with TTL
//! (the TTL itself may change between runs, as in Flink).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When a value's timestamp is renewed (Flink's `StateTtlConfig.UpdateType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TtlUpdate {
    /// On creation and on every write (the default).
    #[default]
    OnCreateAndWrite,
    /// Also on every read of a value that has not expired.
    OnReadAndWrite,
}

/// Whether expired values that are still stored may be read (Flink's
/// `StateTtlConfig.StateVisibility`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TtlVisibility {
    /// Never (the default): an expired value reads as absent.
    #[default]
    NeverReturnExpired,
    /// An expired value is returned until a cleanup has removed it.
    ReturnExpiredIfNotCleanedUp,
}

/// Time-to-live of a keyed state, in processing time.
///
/// ```
/// use std::time::Duration;
/// use brisk_state::{StateTtlConfig, TtlUpdate};
///
/// let ttl = StateTtlConfig::new(Duration::from_secs(3600)).update(TtlUpdate::OnReadAndWrite);
/// assert_eq!(ttl.ttl(), Duration::from_secs(3600));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateTtlConfig {
    ttl_ms: i64,
    update: TtlUpdate,
    visibility: TtlVisibility,
}

impl StateTtlConfig {
    /// Values expire `ttl` after they were last written (whole
    /// milliseconds; registering a state with less than 1 ms fails).
    pub fn new(ttl: Duration) -> Self {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        Self { ttl_ms, update: TtlUpdate::default(), visibility: TtlVisibility::default() }
    }

    /// When timestamps are renewed.
    pub fn update(mut self, update: TtlUpdate) -> Self {
        self.update = update;
        self
    }

    /// Whether expired values may be read until cleaned up.
    pub fn visibility(mut self, visibility: TtlVisibility) -> Self {
        self.visibility = visibility;
        self
    }

    /// The time to live.
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms as u64)
    }

    /// When timestamps are renewed.
    pub fn update_type(&self) -> TtlUpdate {
        self.update
    }

    /// Whether expired values may be read until cleaned up.
    pub fn state_visibility(&self) -> TtlVisibility {
        self.visibility
    }

    pub(crate) fn ttl_ms(&self) -> i64 {
        self.ttl_ms
    }

    /// The checks of this configuration at processing time `now`.
    pub(crate) fn at(&self, now: i64) -> TtlNow {
        TtlNow {
            ttl_ms: self.ttl_ms,
            now,
            renew_on_read: self.update == TtlUpdate::OnReadAndWrite,
            return_expired: self.visibility == TtlVisibility::ReturnExpiredIfNotCleanedUp,
        }
    }
}

/// A TTL configuration at one processing time: what accessors check.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TtlNow {
    ttl_ms: i64,
    /// Processing time, epoch ms.
    pub now: i64,
    pub renew_on_read: bool,
    pub return_expired: bool,
}

impl TtlNow {
    /// Whether a value stamped `at` has expired (Flink: its expiration
    /// time `at + ttl`, saturating, is not after now).
    #[inline]
    pub fn expired(&self, at: i64) -> bool {
        at.saturating_add(self.ttl_ms) <= self.now
    }

    /// Whether a read may return a value stamped `at`.
    #[inline]
    pub fn visible(&self, at: i64) -> bool {
        self.return_expired || !self.expired(at)
    }
}

/// A value with the processing time it was last written (or read, under
/// [`TtlUpdate::OnReadAndWrite`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Stamped<V> {
    pub at: i64,
    pub value: V,
}

/// A list whose elements carry their own timestamps (`at[i]` is
/// `values[i]`'s), kept apart so that a read hands out `&[T]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StampedList<T> {
    pub at: Vec<i64>,
    pub values: Vec<T>,
}

impl<T> Default for StampedList<T> {
    fn default() -> Self {
        Self { at: Vec::new(), values: Vec::new() }
    }
}

impl<T> StampedList<T> {
    /// Removes the expired elements; returns how many.
    pub fn purge(&mut self, ttl: &TtlNow) -> usize {
        if !self.at.iter().any(|&at| ttl.expired(at)) {
            return 0;
        }
        let before = self.values.len();
        let mut i = 0;
        let at = &self.at;
        self.values.retain(|_| {
            i += 1;
            !ttl.expired(at[i - 1])
        });
        self.at.retain(|&at| !ttl.expired(at));
        before - self.values.len()
    }
}

/// What a purge left of a key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purge {
    /// Nothing had expired.
    Kept,
    /// Some elements expired and were removed; others are left.
    Trimmed,
    /// All of it expired: the key has no value left.
    Empty,
}

/// What a TTL state stores per key, and how it expires.
pub(crate) trait Expire {
    /// Removes what has expired.
    fn purge(&mut self, ttl: &TtlNow) -> Purge;
    /// Whether all of it has expired (nothing would survive a purge).
    fn all_expired(&self, ttl: &TtlNow) -> bool;
}

impl<V> Expire for Stamped<V> {
    fn purge(&mut self, ttl: &TtlNow) -> Purge {
        if ttl.expired(self.at) { Purge::Empty } else { Purge::Kept }
    }
    fn all_expired(&self, ttl: &TtlNow) -> bool {
        ttl.expired(self.at)
    }
}

impl<T> Expire for StampedList<T> {
    fn purge(&mut self, ttl: &TtlNow) -> Purge {
        match StampedList::purge(self, ttl) {
            0 => Purge::Kept,
            _ if self.values.is_empty() => Purge::Empty,
            _ => Purge::Trimmed,
        }
    }
    fn all_expired(&self, ttl: &TtlNow) -> bool {
        self.at.iter().all(|&at| ttl.expired(at))
    }
}

impl<UK: Eq + std::hash::Hash, UV> Expire for crate::heap::StateMap<UK, Stamped<UV>> {
    fn purge(&mut self, ttl: &TtlNow) -> Purge {
        let before = self.len();
        self.retain(|_, v| !ttl.expired(v.at));
        match self.len() {
            n if n == before => Purge::Kept,
            0 => Purge::Empty,
            _ => Purge::Trimmed,
        }
    }
    fn all_expired(&self, ttl: &TtlNow) -> bool {
        self.values().all(|v| ttl.expired(v.at))
    }
}

#[cfg(test)]
mod tests;
