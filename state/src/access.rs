//! Accessors: one registered state scoped to the current key, as
//! [`KeyedStateBackend`](crate::KeyedStateBackend) hands them out.
//!
//! Each accessor works on the state's [`StateTable`] directly, or, for a
//! state registered with a TTL (see [`crate::ttl`]), on its table of
//! stamped values, checking expiry at the backend's current processing
//! time. The two shapes are an enum inside the accessor, so a user's code
//! is the same for either and a plain state pays one predictable branch.
//!
//! | accessor | plain table | with TTL |
//! | --- | --- | --- |
//! | [`ValueAccess`] | `T` | `Stamped<T>` |
//! | [`ListAccess`] | `Vec<T>` | `StampedList<T>` (a stamp per element) |
//! | [`MapAccess`] | `StateMap<UK, UV>` | `StateMap<UK, Stamped<UV>>` (a stamp per entry) |
//! | [`ReducingAccess`] | `Option<T>` | `Stamped<Option<T>>` |
//! | [`AggregatingAccess`] | `Option<Acc>` | `Stamped<Option<Acc>>` |

use std::any::Any;
use std::collections::hash_map;
use std::hash::Hash;

use crate::heap::{AggregateFunction, CurrentKey, StateMap, StateTable};
use crate::ttl::{Stamped, StampedList, TtlNow};

/// One value per key, plain or stamped: what value, reducing and
/// aggregating state are made of.
pub(crate) enum Cells<'a, K, V> {
    Plain(&'a mut StateTable<K, V>),
    Ttl(&'a mut StateTable<K, Stamped<V>>, TtlNow),
}

impl<K: Eq + Clone, V> Cells<'_, K, V> {
    /// A read: an expired value is removed and reads as absent (unless
    /// expired values are visible); a live one is renewed if reads renew.
    #[inline]
    fn read(&mut self, at: CurrentKey<'_, K>) -> Option<&V> {
        match self {
            Cells::Plain(t) => t.get(at),
            Cells::Ttl(t, ttl) => {
                let stamp = t.get(at)?.at;
                if ttl.expired(stamp) {
                    if ttl.return_expired {
                        return t.get(at).map(|s| &s.value);
                    }
                    t.remove(at);
                    return None;
                }
                if ttl.renew_on_read && stamp != ttl.now {
                    let s = t.get_mut(at)?;
                    s.at = ttl.now;
                    return Some(&s.value);
                }
                t.get(at).map(|s| &s.value)
            }
        }
    }

    /// A write access to the key's value, if it has a live one (an expired
    /// one is removed): the value is renewed.
    #[inline]
    fn modify(&mut self, at: CurrentKey<'_, K>) -> Option<&mut V> {
        match self {
            Cells::Plain(t) => t.get_mut(at),
            Cells::Ttl(t, ttl) => {
                if ttl.expired(t.get(at)?.at) {
                    t.remove(at);
                    return None;
                }
                let s = t.get_mut(at)?;
                s.at = ttl.now;
                Some(&mut s.value)
            }
        }
    }

    /// The key's live value, or `init()` in its place; renewed.
    #[inline]
    fn get_or_insert_with(&mut self, at: CurrentKey<'_, K>, init: impl FnOnce() -> V) -> &mut V {
        match self {
            Cells::Plain(t) => t.get_or_insert_with(at, init),
            Cells::Ttl(t, ttl) => {
                let now = ttl.now;
                if t.get(at).is_none_or(|s| ttl.expired(s.at)) {
                    // Replaces an expired value in place: no tombstone.
                    t.insert(at, Stamped { at: now, value: init() });
                }
                let s = t.get_or_insert_with(at, || unreachable!("inserted above"));
                s.at = now;
                &mut s.value
            }
        }
    }

    /// Sets the key's value; returns the previous one if it was visible.
    #[inline]
    fn write(&mut self, at: CurrentKey<'_, K>, value: V) -> Option<V> {
        match self {
            Cells::Plain(t) => t.insert(at, value),
            Cells::Ttl(t, ttl) => {
                let old = t.insert(at, Stamped { at: ttl.now, value })?;
                ttl.visible(old.at).then_some(old.value)
            }
        }
    }

    /// Removes the key's value; returns it if it was visible.
    #[inline]
    fn remove(&mut self, at: CurrentKey<'_, K>) -> Option<V> {
        match self {
            Cells::Plain(t) => t.remove(at),
            Cells::Ttl(t, ttl) => {
                let old = t.remove(at)?;
                ttl.visible(old.at).then_some(old.value)
            }
        }
    }
}

/// A value state scoped to one key.
pub struct ValueAccess<'a, K, T> {
    pub(crate) cells: Cells<'a, K, T>,
    pub(crate) at_key: &'a K,
    pub(crate) at_hash: u64,
}

impl<'a, K: Eq + Clone, T> ValueAccess<'a, K, T> {
    #[inline]
    fn at(&self) -> CurrentKey<'a, K> {
        CurrentKey::new(self.at_key, self.at_hash)
    }

    /// The key's value, if set (and, under a TTL, not expired).
    #[inline]
    pub fn get(&mut self) -> Option<&T> {
        let at = self.at();
        self.cells.read(at)
    }

    /// The key's value mutably, if set; under a TTL this is a write (the
    /// value is renewed) and an expired value is gone.
    #[inline]
    pub fn get_mut(&mut self) -> Option<&mut T> {
        let at = self.at();
        self.cells.modify(at)
    }

    /// Sets the key's value, returning the previous one.
    #[inline]
    pub fn set(&mut self, value: T) -> Option<T> {
        let at = self.at();
        self.cells.write(at, value)
    }

    /// The key's value, initialized with `init()` if unset (or expired).
    #[inline]
    pub fn get_or_insert_with(&mut self, init: impl FnOnce() -> T) -> &mut T {
        let at = self.at();
        self.cells.get_or_insert_with(at, init)
    }

    /// Clears the key's value, returning it.
    #[inline]
    pub fn clear(&mut self) -> Option<T> {
        let at = self.at();
        self.cells.remove(at)
    }
}

/// The lists of a list state, plain or with a stamp per element.
pub(crate) enum Lists<'a, K, T> {
    Plain(&'a mut StateTable<K, Vec<T>>),
    Ttl(&'a mut StateTable<K, StampedList<T>>, TtlNow),
}

/// A list state scoped to one key.
pub struct ListAccess<'a, K, T> {
    pub(crate) lists: Lists<'a, K, T>,
    pub(crate) at_key: &'a K,
    pub(crate) at_hash: u64,
}

impl<'a, K: Eq + Clone, T> ListAccess<'a, K, T> {
    #[inline]
    fn at(&self) -> CurrentKey<'a, K> {
        CurrentKey::new(self.at_key, self.at_hash)
    }

    /// The key's list (empty if nothing was added). Under a TTL, expired
    /// elements are removed first (unless expired values are visible) and
    /// the rest renewed if reads renew.
    pub fn get(&mut self) -> &[T] {
        let at = self.at();
        match &mut self.lists {
            Lists::Plain(t) => t.get(at).map(Vec::as_slice).unwrap_or(&[]),
            Lists::Ttl(t, ttl) => {
                let Some(l) = t.get(at) else { return &[] };
                let purge = !ttl.return_expired && l.at.iter().any(|&a| ttl.expired(a));
                let renew = ttl.renew_on_read && l.at.iter().any(|&a| a != ttl.now && !ttl.expired(a));
                if purge || renew {
                    let l = t.get_mut(at).expect("the key's list is in memory");
                    l.purge(ttl);
                    if l.values.is_empty() {
                        t.remove(at);
                        return &[];
                    }
                    if renew {
                        for a in l.at.iter_mut().filter(|a| !ttl.expired(**a)) {
                            *a = ttl.now;
                        }
                    }
                }
                t.get(at).map(|l| l.values.as_slice()).unwrap_or(&[])
            }
        }
    }

    /// Appends one element.
    pub fn add(&mut self, value: T) {
        let at = self.at();
        match &mut self.lists {
            Lists::Plain(t) => t.get_or_insert_with(at, Vec::new).push(value),
            Lists::Ttl(t, ttl) => {
                let l = t.get_or_insert_with(at, StampedList::default);
                l.at.push(ttl.now);
                l.values.push(value);
            }
        }
    }

    /// Appends all elements (adding none leaves an unset key unset).
    pub fn add_all(&mut self, values: impl IntoIterator<Item = T>) {
        let at = self.at();
        let empty = match &mut self.lists {
            Lists::Plain(t) => {
                let list = t.get_or_insert_with(at, Vec::new);
                list.extend(values);
                list.is_empty()
            }
            Lists::Ttl(t, ttl) => {
                let l = t.get_or_insert_with(at, StampedList::default);
                l.values.extend(values);
                l.at.resize(l.values.len(), ttl.now);
                l.values.is_empty()
            }
        };
        if empty {
            self.remove();
        }
    }

    /// Replaces the key's list; an empty list clears the key.
    pub fn update(&mut self, values: Vec<T>) {
        let at = self.at();
        if values.is_empty() {
            self.remove();
            return;
        }
        match &mut self.lists {
            Lists::Plain(t) => {
                t.insert(at, values);
            }
            Lists::Ttl(t, ttl) => {
                t.insert(at, StampedList { at: vec![ttl.now; values.len()], values });
            }
        }
    }

    /// Clears the key's list, returning it (under a TTL, its visible
    /// elements).
    pub fn clear(&mut self) -> Vec<T> {
        self.remove()
    }

    fn remove(&mut self) -> Vec<T> {
        let at = self.at();
        match &mut self.lists {
            Lists::Plain(t) => t.remove(at).unwrap_or_default(),
            Lists::Ttl(t, ttl) => {
                let Some(mut l) = t.remove(at) else { return Vec::new() };
                if !ttl.return_expired {
                    l.purge(ttl);
                }
                l.values
            }
        }
    }
}

/// A reducing state's function, as the backend keeps it.
pub(crate) type ReduceFn<T> = Box<dyn FnMut(T, T) -> T>;

/// A reducing state scoped to one key.
pub struct ReducingAccess<'a, K, T> {
    pub(crate) cells: Cells<'a, K, Option<T>>,
    pub(crate) reduce: &'a mut ReduceFn<T>,
    pub(crate) at_key: &'a K,
    pub(crate) at_hash: u64,
}

impl<'a, K: Eq + Clone, T> ReducingAccess<'a, K, T> {
    #[inline]
    fn at(&self) -> CurrentKey<'a, K> {
        CurrentKey::new(self.at_key, self.at_hash)
    }

    /// The key's reduced value, if anything was added.
    pub fn get(&mut self) -> Option<&T> {
        let at = self.at();
        self.cells.read(at).and_then(Option::as_ref)
    }

    /// Folds `value` into the key's value (the first value, or the first
    /// after the value expired, is kept as is).
    pub fn add(&mut self, value: T) {
        let at = self.at();
        let slot = self.cells.get_or_insert_with(at, || None);
        *slot = Some(match slot.take() {
            Some(acc) => (self.reduce)(acc, value),
            None => value,
        });
    }

    /// Clears the key's value, returning it.
    pub fn clear(&mut self) -> Option<T> {
        let at = self.at();
        self.cells.remove(at).flatten()
    }
}

/// An aggregating state's function with its accumulator type erased: it
/// finds its table (a `StateTable<K, Option<Acc>>`, or with a TTL a
/// `StateTable<K, Stamped<Option<Acc>>>`) itself.
pub(crate) trait AggOps<K, IN, OUT> {
    fn add(&mut self, table: &mut dyn Any, ttl: Option<TtlNow>, at: CurrentKey<'_, K>, value: IN);
    fn get(&mut self, table: &mut dyn Any, ttl: Option<TtlNow>, at: CurrentKey<'_, K>) -> Option<OUT>;
    fn clear(&mut self, table: &mut dyn Any, ttl: Option<TtlNow>, at: CurrentKey<'_, K>);
}

/// [`AggOps`] of an [`AggregateFunction`].
pub(crate) struct AggOpsOf<A>(pub A);

impl<A> AggOpsOf<A> {
    fn cells<'t, K: 'static, Acc: 'static>(
        table: &'t mut dyn Any,
        ttl: Option<TtlNow>,
    ) -> Cells<'t, K, Option<Acc>> {
        const REGISTERED: &str = "an aggregating state's table is registered with its accumulator type";
        match ttl {
            None => Cells::Plain(table.downcast_mut().expect(REGISTERED)),
            Some(ttl) => Cells::Ttl(table.downcast_mut().expect(REGISTERED), ttl),
        }
    }
}

impl<K: Eq + Clone + 'static, IN, A: AggregateFunction<IN>> AggOps<K, IN, A::Out> for AggOpsOf<A> {
    fn add(&mut self, table: &mut dyn Any, ttl: Option<TtlNow>, at: CurrentKey<'_, K>, value: IN) {
        let mut cells = Self::cells::<K, A::Acc>(table, ttl);
        let slot = cells.get_or_insert_with(at, || None);
        let acc = match slot.take() {
            Some(acc) => acc,
            None => self.0.create_accumulator(),
        };
        *slot = Some(self.0.add(value, acc));
    }
    fn get(&mut self, table: &mut dyn Any, ttl: Option<TtlNow>, at: CurrentKey<'_, K>) -> Option<A::Out> {
        let mut cells = Self::cells::<K, A::Acc>(table, ttl);
        let acc = cells.read(at)?.as_ref()?;
        Some(self.0.get_result(acc))
    }
    fn clear(&mut self, table: &mut dyn Any, ttl: Option<TtlNow>, at: CurrentKey<'_, K>) {
        Self::cells::<K, A::Acc>(table, ttl).remove(at);
    }
}

/// An aggregating state scoped to one key.
pub struct AggregatingAccess<'a, K, IN, OUT> {
    pub(crate) table: &'a mut dyn Any,
    pub(crate) ttl: Option<TtlNow>,
    pub(crate) ops: &'a mut dyn AggOps<K, IN, OUT>,
    pub(crate) at_key: &'a K,
    pub(crate) at_hash: u64,
}

impl<'a, K, IN, OUT> AggregatingAccess<'a, K, IN, OUT> {
    #[inline]
    fn at(&self) -> CurrentKey<'a, K> {
        CurrentKey::new(self.at_key, self.at_hash)
    }

    /// The result for the key's accumulator (`None` if nothing was added).
    pub fn get(&mut self) -> Option<OUT> {
        let at = self.at();
        self.ops.get(self.table, self.ttl, at)
    }

    /// Adds `value` to the key's accumulator (created first if absent or
    /// expired).
    pub fn add(&mut self, value: IN) {
        let at = self.at();
        self.ops.add(self.table, self.ttl, at, value);
    }

    /// Clears the key's accumulator.
    pub fn clear(&mut self) {
        let at = self.at();
        self.ops.clear(self.table, self.ttl, at);
    }
}

/// The maps of a map state, plain or with a stamp per entry.
pub(crate) enum Maps<'a, K, UK, UV> {
    Plain(&'a mut StateTable<K, StateMap<UK, UV>>),
    Ttl(&'a mut StateTable<K, StateMap<UK, Stamped<UV>>>, TtlNow),
}

/// A map state scoped to one key.
pub struct MapAccess<'a, K, UK, UV> {
    pub(crate) maps: Maps<'a, K, UK, UV>,
    pub(crate) at_key: &'a K,
    pub(crate) at_hash: u64,
}

/// The entries of one key's map.
enum MapIter<'m, UK, UV> {
    Plain(hash_map::Iter<'m, UK, UV>),
    Ttl(hash_map::Iter<'m, UK, Stamped<UV>>, TtlNow),
    Empty,
}

impl<'m, UK, UV> Iterator for MapIter<'m, UK, UV> {
    type Item = (&'m UK, &'m UV);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            MapIter::Plain(i) => i.next(),
            MapIter::Ttl(i, ttl) => i.find(|(_, v)| ttl.visible(v.at)).map(|(k, v)| (k, &v.value)),
            MapIter::Empty => None,
        }
    }
}

impl<'a, K: Eq + Clone, UK: Eq + Hash, UV> MapAccess<'a, K, UK, UV> {
    #[inline]
    fn at(&self) -> CurrentKey<'a, K> {
        CurrentKey::new(self.at_key, self.at_hash)
    }

    /// The value under `user_key` (under a TTL, an expired one is removed
    /// unless expired values are visible; a live one is renewed if reads
    /// renew).
    pub fn get(&mut self, user_key: &UK) -> Option<&UV> {
        let at = self.at();
        match &mut self.maps {
            Maps::Plain(t) => t.get(at).and_then(|m| m.get(user_key)),
            Maps::Ttl(t, ttl) => {
                let stamp = t.get(at)?.get(user_key)?.at;
                if ttl.expired(stamp) && !ttl.return_expired {
                    Self::remove_entry(t, at, user_key);
                    return None;
                }
                if ttl.renew_on_read && stamp != ttl.now && !ttl.expired(stamp) {
                    let s = t.get_mut(at)?.get_mut(user_key)?;
                    s.at = ttl.now;
                    return Some(&s.value);
                }
                t.get(at)?.get(user_key).map(|s| &s.value)
            }
        }
    }

    /// The value under `user_key`, mutably: under a TTL a write (renewed),
    /// and an expired value is gone.
    pub fn get_mut(&mut self, user_key: &UK) -> Option<&mut UV> {
        let at = self.at();
        match &mut self.maps {
            Maps::Plain(t) => t.get_mut(at).and_then(|m| m.get_mut(user_key)),
            Maps::Ttl(t, ttl) => {
                if ttl.expired(t.get(at)?.get(user_key)?.at) {
                    Self::remove_entry(t, at, user_key);
                    return None;
                }
                let s = t.get_mut(at)?.get_mut(user_key)?;
                s.at = ttl.now;
                Some(&mut s.value)
            }
        }
    }

    /// Stores `value` under `user_key`, returning the previous value.
    pub fn put(&mut self, user_key: UK, value: UV) -> Option<UV> {
        let at = self.at();
        match &mut self.maps {
            Maps::Plain(t) => t.get_or_insert_with(at, StateMap::default).insert(user_key, value),
            Maps::Ttl(t, ttl) => {
                let old = t
                    .get_or_insert_with(at, StateMap::default)
                    .insert(user_key, Stamped { at: ttl.now, value })?;
                ttl.visible(old.at).then_some(old.value)
            }
        }
    }

    /// Removes `user_key`; the key's map disappears when it becomes empty.
    pub fn remove(&mut self, user_key: &UK) -> Option<UV> {
        let at = self.at();
        match &mut self.maps {
            Maps::Plain(t) => {
                let map = t.get_mut(at)?;
                let removed = map.remove(user_key);
                if map.is_empty() {
                    t.remove(at);
                }
                removed
            }
            Maps::Ttl(t, ttl) => {
                let old = Self::remove_entry(t, at, user_key)?;
                ttl.visible(old.at).then_some(old.value)
            }
        }
    }

    fn remove_entry(
        t: &mut StateTable<K, StateMap<UK, Stamped<UV>>>,
        at: CurrentKey<'_, K>,
        user_key: &UK,
    ) -> Option<Stamped<UV>> {
        let map = t.get_mut(at)?;
        let removed = map.remove(user_key);
        if map.is_empty() {
            t.remove(at);
        }
        removed
    }

    /// Under a TTL where expired values are not visible, removes this key's
    /// expired entries (before a read of the whole map).
    fn purge(&mut self) {
        let at = self.at();
        let Maps::Ttl(t, ttl) = &mut self.maps else { return };
        if ttl.return_expired || !t.get(at).is_some_and(|m| m.values().any(|v| ttl.expired(v.at))) {
            return;
        }
        let Some(map) = t.get_mut(at) else { return };
        map.retain(|_, v| !ttl.expired(v.at));
        if map.is_empty() {
            t.remove(at);
        }
    }

    /// Whether `user_key` has a value (a read of it).
    pub fn contains(&mut self, user_key: &UK) -> bool {
        self.get(user_key).is_some()
    }

    /// Number of entries for this key.
    pub fn len(&mut self) -> usize {
        self.purge();
        let at = self.at();
        match &mut self.maps {
            Maps::Plain(t) => t.get(at).map_or(0, StateMap::len),
            Maps::Ttl(t, _) => t.get(at).map_or(0, StateMap::len),
        }
    }

    /// Whether this key has no entries.
    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// The entries for this key, in no particular order (under a TTL, a
    /// read of every entry: expired ones are removed unless visible, live
    /// ones renewed if reads renew).
    pub fn iter(&mut self) -> impl Iterator<Item = (&UK, &UV)> {
        self.purge();
        let at = self.at();
        match &mut self.maps {
            Maps::Plain(t) => t.get(at).map_or(MapIter::Empty, |m| MapIter::Plain(m.iter())),
            Maps::Ttl(t, ttl) => {
                let ttl = *ttl;
                let renew = ttl.renew_on_read
                    && t.get(at).is_some_and(|m| m.values().any(|v| v.at != ttl.now && !ttl.expired(v.at)));
                if renew && let Some(m) = t.get_mut(at) {
                    for v in m.values_mut().filter(|v| !ttl.expired(v.at)) {
                        v.at = ttl.now;
                    }
                }
                t.get(at).map_or(MapIter::Empty, |m| MapIter::Ttl(m.iter(), ttl))
            }
        }
    }

    /// Removes every entry for this key.
    pub fn clear(&mut self) {
        let at = self.at();
        match &mut self.maps {
            Maps::Plain(t) => {
                t.remove(at);
            }
            Maps::Ttl(t, _) => {
                t.remove(at);
            }
        }
    }
}
