//! Timers per key: Flink's `InternalTimerService` queues.
//!
//! A [`TimerQueue`] holds timers for one time domain of one keyed operator on
//! one core. A timer is `(key, namespace, timestamp)`; registering the same
//! timer twice keeps one; timers come out in timestamp order (ties in
//! registration order). Each timer keeps its key's stable hash, so its key
//! group is known when timers are snapshotted with state.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use rustc_hash::FxBuildHasher;

/// A fired timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer<K, N> {
    /// The key it was registered under.
    pub key: K,
    /// The key's stable hash.
    pub key_hash: u64,
    /// Its namespace (`()` for process functions, the window for windows).
    pub namespace: N,
    /// When it fires (event time or processing time, in ms).
    pub timestamp: i64,
}

/// Timers of one time domain, deduplicated and ordered by timestamp.
pub struct TimerQueue<K, N> {
    by_time: BTreeMap<(i64, u64), (K, u64, N)>,
    index: HashMap<(K, N, i64), u64, FxBuildHasher>,
    next_seq: u64,
}

impl<K, N> Default for TimerQueue<K, N> {
    fn default() -> Self {
        Self { by_time: BTreeMap::new(), index: HashMap::default(), next_seq: 0 }
    }
}

impl<K: Eq + Hash + Clone, N: Eq + Hash + Clone> TimerQueue<K, N> {
    /// Registers a timer; `false` if it was already registered.
    pub fn register(&mut self, key: &K, key_hash: u64, namespace: &N, timestamp: i64) -> bool {
        let id = (key.clone(), namespace.clone(), timestamp);
        if self.index.contains_key(&id) {
            return false;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.index.insert(id, seq);
        self.by_time.insert((timestamp, seq), (key.clone(), key_hash, namespace.clone()));
        true
    }

    /// Deletes a timer; `false` if there was none.
    pub fn delete(&mut self, key: &K, namespace: &N, timestamp: i64) -> bool {
        match self.index.remove(&(key.clone(), namespace.clone(), timestamp)) {
            Some(seq) => {
                self.by_time.remove(&(timestamp, seq));
                true
            }
            None => false,
        }
    }

    /// Every timer as `(key, key hash, namespace, timestamp)`, in firing order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, u64, &N, i64)> {
        self.by_time.iter().map(|((ts, _), (k, h, n))| (k, *h, n, *ts))
    }

    /// The earliest timestamp registered.
    pub fn next_timestamp(&self) -> Option<i64> {
        self.by_time.first_key_value().map(|((ts, _), _)| *ts)
    }

    /// Removes and returns the earliest timer if its timestamp is `<= upto`.
    pub fn pop_due(&mut self, upto: i64) -> Option<Timer<K, N>> {
        let entry = self.by_time.first_entry()?;
        if entry.key().0 > upto {
            return None;
        }
        let ((timestamp, _), (key, key_hash, namespace)) = entry.remove_entry();
        self.index.remove(&(key.clone(), namespace.clone(), timestamp));
        Some(Timer { key, key_hash, namespace, timestamp })
    }

    /// Number of timers.
    pub fn len(&self) -> usize {
        self.by_time.len()
    }

    /// Whether no timer is registered.
    pub fn is_empty(&self) -> bool {
        self.by_time.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedups_orders_and_deletes() {
        let mut q = TimerQueue::<&str, ()>::default();
        assert!(q.register(&"a", 1, &(), 30));
        assert!(q.register(&"b", 2, &(), 10));
        assert!(!q.register(&"a", 1, &(), 30), "same (key, namespace, ts) once");
        assert!(q.register(&"a", 1, &(), 10));
        assert!(q.delete(&"b", &(), 10));
        assert!(!q.delete(&"b", &(), 10));
        assert_eq!(q.next_timestamp(), Some(10));
        assert_eq!(q.pop_due(9), None);
        let t = q.pop_due(100).unwrap();
        assert_eq!((t.key, t.timestamp), ("a", 10));
        assert_eq!(q.pop_due(100).unwrap().timestamp, 30);
        assert!(q.is_empty());
        // A popped timer can be registered again.
        assert!(q.register(&"a", 1, &(), 30));
    }

    #[test]
    fn matches_a_naive_reference_on_random_operations() {
        let seed = fastrand::u64(..);
        println!("seed {seed}");
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut q = TimerQueue::<u8, u8>::default();
        // The naive model: live timers in registration order.
        let mut model: Vec<(i64, u8, u8)> = Vec::new();
        for _ in 0..5_000 {
            let (k, n, ts) = (rng.u8(0..5), rng.u8(0..3), rng.i64(0..50));
            match rng.u8(0..4) {
                0 | 1 => {
                    let fresh = !model.contains(&(ts, k, n));
                    if fresh {
                        model.push((ts, k, n));
                    }
                    assert_eq!(q.register(&k, u64::from(k), &n, ts), fresh, "seed {seed}");
                }
                2 => {
                    let pos = model.iter().position(|t| *t == (ts, k, n));
                    if let Some(p) = pos {
                        model.remove(p);
                    }
                    assert_eq!(q.delete(&k, &n, ts), pos.is_some(), "seed {seed}");
                }
                _ => {
                    let upto = rng.i64(0..50);
                    // Earliest timestamp; among equal ones, the first registered.
                    let want = model
                        .iter()
                        .enumerate()
                        .filter(|(_, t)| t.0 <= upto)
                        .min_by_key(|(i, t)| (t.0, *i))
                        .map(|(i, t)| (i, *t));
                    let got = q.pop_due(upto).map(|t| (t.timestamp, t.key, t.namespace));
                    assert_eq!(got, want.map(|(_, t)| t), "seed {seed}");
                    if let Some((i, _)) = want {
                        model.remove(i);
                    }
                }
            }
            assert_eq!(q.len(), model.len(), "seed {seed}");
        }
    }
}
