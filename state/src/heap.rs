//! The in-memory (heap) keyed state backend.
//!
//! Owned by one keyed operator on one core (`!Send` in practice: the engine
//! creates it on its core and never moves it). Each registered state is a
//! [`StateTable`]: a hash table from key to value that stores the key's stable
//! hash beside each entry, so a lookup never re-hashes the key and a snapshot
//! can recompute the entry's key group from the stored hash.
//!
//! State handles ([`ValueState`], [`ListState`], [`MapState`]) are small typed
//! indices: a user function registers them once (`open`) and passes them back
//! with the current key ([`CurrentKey`]) to get an accessor scoped to that key.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

/// The key a record is processed under, with its stable hash
/// ([`crate::key_hash`]). Cheap to copy.
#[derive(Debug)]
pub struct CurrentKey<'a, K> {
    key: &'a K,
    hash: u64,
}

impl<K> Clone for CurrentKey<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K> Copy for CurrentKey<'_, K> {}

impl<'a, K> CurrentKey<'a, K> {
    /// Pairs a key with its hash; the hash must be [`crate::key_hash`] of the key.
    #[inline]
    pub fn new(key: &'a K, hash: u64) -> Self {
        Self { key, hash }
    }

    /// The key.
    #[inline]
    pub fn key(&self) -> &'a K {
        self.key
    }

    /// The key's stable hash.
    #[inline]
    pub fn hash(&self) -> u64 {
        self.hash
    }
}

/// Errors from registering state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// A state name was registered twice with different kinds or types.
    Conflict {
        /// The state's name.
        name: String,
        /// What it was registered as first.
        existing: String,
        /// What the second registration asked for.
        requested: String,
    },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Conflict { name, existing, requested } => write!(
                f,
                "state '{name}' is already registered as {existing}, cannot register it as {requested}"
            ),
        }
    }
}

impl std::error::Error for StateError {}

struct Entry<K, V> {
    hash: u64,
    key: K,
    value: V,
}

/// A hash table from key to `V` that keeps each key's stable hash.
pub struct StateTable<K, V> {
    table: HashTable<Entry<K, V>>,
}

impl<K, V> Default for StateTable<K, V> {
    fn default() -> Self {
        Self { table: HashTable::new() }
    }
}

impl<K: Eq + Clone, V> StateTable<K, V> {
    /// The value stored for `at`'s key.
    #[inline]
    pub fn get(&self, at: CurrentKey<'_, K>) -> Option<&V> {
        self.table.find(at.hash, |e| e.key == *at.key).map(|e| &e.value)
    }

    /// The value stored for `at`'s key, mutably.
    #[inline]
    pub fn get_mut(&mut self, at: CurrentKey<'_, K>) -> Option<&mut V> {
        self.table.find_mut(at.hash, |e| e.key == *at.key).map(|e| &mut e.value)
    }

    /// The value for `at`'s key, inserting `init()` first if absent.
    #[inline]
    pub fn get_or_insert_with(&mut self, at: CurrentKey<'_, K>, init: impl FnOnce() -> V) -> &mut V {
        let entry = self.table.entry(at.hash, |e| e.key == *at.key, |e| e.hash).or_insert_with(|| Entry {
            hash: at.hash,
            key: at.key.clone(),
            value: init(),
        });
        &mut entry.into_mut().value
    }

    /// Stores `value` for `at`'s key, returning the previous value.
    #[inline]
    pub fn insert(&mut self, at: CurrentKey<'_, K>, value: V) -> Option<V> {
        match self.table.entry(at.hash, |e| e.key == *at.key, |e| e.hash) {
            hashbrown::hash_table::Entry::Occupied(mut o) => {
                Some(std::mem::replace(&mut o.get_mut().value, value))
            }
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(Entry { hash: at.hash, key: at.key.clone(), value });
                None
            }
        }
    }

    /// Removes `at`'s key, returning its value.
    #[inline]
    pub fn remove(&mut self, at: CurrentKey<'_, K>) -> Option<V> {
        match self.table.find_entry(at.hash, |e| e.key == *at.key) {
            Ok(o) => Some(o.remove().0.value),
            Err(_) => None,
        }
    }

    /// Number of keys with a value.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no key has a value.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Every `(key, key hash, value)`, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, u64, &V)> {
        self.table.iter().map(|e| (&e.key, e.hash, &e.value))
    }

    /// Removes and yields every entry.
    pub fn drain(&mut self) -> impl Iterator<Item = (K, u64, V)> + '_ {
        self.table.drain().map(|e| (e.key, e.hash, e.value))
    }
}

/// Handle to a value state: one `T` per key.
pub struct ValueState<T> {
    id: usize,
    _type: PhantomData<fn() -> T>,
}

/// Handle to a list state: a list of `T` per key.
pub struct ListState<T> {
    id: usize,
    _type: PhantomData<fn() -> T>,
}

/// Handle to a map state: a map from `UK` to `UV` per key.
pub struct MapState<UK, UV> {
    id: usize,
    _type: PhantomData<fn() -> (UK, UV)>,
}

macro_rules! handle_impls {
    ($name:ident<$($p:ident),+>) => {
        impl<$($p),+> Clone for $name<$($p),+> {
            fn clone(&self) -> Self { *self }
        }
        impl<$($p),+> Copy for $name<$($p),+> {}
        impl<$($p),+> fmt::Debug for $name<$($p),+> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}#{}", stringify!($name), self.id)
            }
        }
        impl<$($p),+> Default for $name<$($p),+> {
            /// An unregistered handle; using it before registering is a bug
            /// and panics with the state's kind named.
            fn default() -> Self { Self { id: usize::MAX, _type: PhantomData } }
        }
    };
}
handle_impls!(ValueState<T>);
handle_impls!(ListState<T>);
handle_impls!(MapState<UK, UV>);

/// The map type inside a [`MapState`] entry (deterministic hashing).
pub type StateMap<UK, UV> = HashMap<UK, UV, FxBuildHasher>;

struct Registered {
    name: String,
    kind: String,
    table: Box<dyn Any>,
}

/// All keyed state of one keyed operator on one core.
pub struct KeyedStateBackend<K> {
    states: Vec<Registered>,
    _key: PhantomData<K>,
}

impl<K> Default for KeyedStateBackend<K> {
    fn default() -> Self {
        Self { states: Vec::new(), _key: PhantomData }
    }
}

impl<K: Eq + Hash + Clone + 'static> KeyedStateBackend<K> {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    fn register<V: 'static>(&mut self, name: &str, kind: String) -> Result<usize, StateError> {
        if let Some(id) = self.states.iter().position(|s| s.name == name) {
            let existing = &self.states[id];
            if existing.kind != kind {
                return Err(StateError::Conflict {
                    name: name.to_string(),
                    existing: existing.kind.clone(),
                    requested: kind,
                });
            }
            return Ok(id);
        }
        self.states.push(Registered {
            name: name.to_string(),
            kind,
            table: Box::new(StateTable::<K, V>::default()),
        });
        Ok(self.states.len() - 1)
    }

    /// Registers (or looks up, if registered with the same type) a value state.
    pub fn value_state<T: 'static>(&mut self, name: &str) -> Result<ValueState<T>, StateError> {
        let kind = format!("ValueState<{}>", std::any::type_name::<T>());
        let id = self.register::<T>(name, kind)?;
        Ok(ValueState { id, _type: PhantomData })
    }

    /// Registers (or looks up) a list state.
    pub fn list_state<T: 'static>(&mut self, name: &str) -> Result<ListState<T>, StateError> {
        let kind = format!("ListState<{}>", std::any::type_name::<T>());
        let id = self.register::<Vec<T>>(name, kind)?;
        Ok(ListState { id, _type: PhantomData })
    }

    /// Registers (or looks up) a map state.
    pub fn map_state<UK: Eq + Hash + 'static, UV: 'static>(
        &mut self,
        name: &str,
    ) -> Result<MapState<UK, UV>, StateError> {
        let kind = format!("MapState<{}, {}>", std::any::type_name::<UK>(), std::any::type_name::<UV>());
        let id = self.register::<StateMap<UK, UV>>(name, kind)?;
        Ok(MapState { id, _type: PhantomData })
    }

    fn table<V: 'static>(&mut self, id: usize, what: &str) -> &mut StateTable<K, V> {
        let Some(state) = self.states.get_mut(id) else {
            panic!("{what} handle used before it was registered in open()");
        };
        let kind = &state.kind;
        match state.table.downcast_mut::<StateTable<K, V>>() {
            Some(t) => t,
            None => panic!("{what} handle does not belong to this operator's state ({kind})"),
        }
    }

    /// The value state `handle` scoped to `at`'s key.
    #[inline]
    pub fn value<'a, T: 'static>(
        &'a mut self,
        handle: &ValueState<T>,
        at: CurrentKey<'a, K>,
    ) -> ValueAccess<'a, K, T> {
        let table = self.table::<T>(handle.id, "ValueState");
        ValueAccess { table, at_key: at.key, at_hash: at.hash }
    }

    /// The list state `handle` scoped to `at`'s key.
    #[inline]
    pub fn list<'a, T: 'static>(
        &'a mut self,
        handle: &ListState<T>,
        at: CurrentKey<'a, K>,
    ) -> ListAccess<'a, K, T> {
        let table = self.table::<Vec<T>>(handle.id, "ListState");
        ListAccess { table, at_key: at.key, at_hash: at.hash }
    }

    /// The map state `handle` scoped to `at`'s key.
    #[inline]
    pub fn map<'a, UK: Eq + Hash + 'static, UV: 'static>(
        &'a mut self,
        handle: &MapState<UK, UV>,
        at: CurrentKey<'a, K>,
    ) -> MapAccess<'a, K, UK, UV> {
        let table = self.table::<StateMap<UK, UV>>(handle.id, "MapState");
        MapAccess { table, at_key: at.key, at_hash: at.hash }
    }

    /// Names of the registered states, in registration order.
    pub fn state_names(&self) -> impl Iterator<Item = &str> {
        self.states.iter().map(|s| s.name.as_str())
    }
}

/// A value state scoped to one key.
pub struct ValueAccess<'a, K, T> {
    table: &'a mut StateTable<K, T>,
    at_key: &'a K,
    at_hash: u64,
}

impl<'a, K: Eq + Clone, T> ValueAccess<'a, K, T> {
    #[inline]
    fn at(&self) -> CurrentKey<'a, K> {
        CurrentKey::new(self.at_key, self.at_hash)
    }

    /// The key's value, if set.
    #[inline]
    pub fn get(&self) -> Option<&T> {
        self.table.get(self.at())
    }

    /// The key's value mutably, if set.
    #[inline]
    pub fn get_mut(&mut self) -> Option<&mut T> {
        let at = self.at();
        self.table.get_mut(at)
    }

    /// Sets the key's value, returning the previous one.
    #[inline]
    pub fn set(&mut self, value: T) -> Option<T> {
        let at = self.at();
        self.table.insert(at, value)
    }

    /// The key's value, initialized with `init()` if unset.
    #[inline]
    pub fn get_or_insert_with(&mut self, init: impl FnOnce() -> T) -> &mut T {
        let at = self.at();
        self.table.get_or_insert_with(at, init)
    }

    /// Clears the key's value, returning it.
    #[inline]
    pub fn clear(&mut self) -> Option<T> {
        let at = self.at();
        self.table.remove(at)
    }
}

/// A list state scoped to one key.
pub struct ListAccess<'a, K, T> {
    table: &'a mut StateTable<K, Vec<T>>,
    at_key: &'a K,
    at_hash: u64,
}

impl<'a, K: Eq + Clone, T> ListAccess<'a, K, T> {
    #[inline]
    fn at(&self) -> CurrentKey<'a, K> {
        CurrentKey::new(self.at_key, self.at_hash)
    }

    /// The key's list (empty if nothing was added).
    pub fn get(&self) -> &[T] {
        self.table.get(self.at()).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Appends one element.
    pub fn add(&mut self, value: T) {
        let at = self.at();
        self.table.get_or_insert_with(at, Vec::new).push(value);
    }

    /// Appends all elements.
    pub fn add_all(&mut self, values: impl IntoIterator<Item = T>) {
        let at = self.at();
        self.table.get_or_insert_with(at, Vec::new).extend(values);
    }

    /// Replaces the key's list; an empty list clears the key.
    pub fn update(&mut self, values: Vec<T>) {
        let at = self.at();
        if values.is_empty() {
            self.table.remove(at);
        } else {
            self.table.insert(at, values);
        }
    }

    /// Clears the key's list, returning it.
    pub fn clear(&mut self) -> Vec<T> {
        let at = self.at();
        self.table.remove(at).unwrap_or_default()
    }
}

/// A map state scoped to one key.
pub struct MapAccess<'a, K, UK, UV> {
    table: &'a mut StateTable<K, StateMap<UK, UV>>,
    at_key: &'a K,
    at_hash: u64,
}

impl<'a, K: Eq + Clone, UK: Eq + Hash, UV> MapAccess<'a, K, UK, UV> {
    #[inline]
    fn at(&self) -> CurrentKey<'a, K> {
        CurrentKey::new(self.at_key, self.at_hash)
    }

    /// The value under `user_key`.
    pub fn get(&self, user_key: &UK) -> Option<&UV> {
        self.table.get(self.at()).and_then(|m| m.get(user_key))
    }

    /// The value under `user_key`, mutably.
    pub fn get_mut(&mut self, user_key: &UK) -> Option<&mut UV> {
        let at = self.at();
        self.table.get_mut(at).and_then(|m| m.get_mut(user_key))
    }

    /// Stores `value` under `user_key`, returning the previous value.
    pub fn put(&mut self, user_key: UK, value: UV) -> Option<UV> {
        let at = self.at();
        self.table.get_or_insert_with(at, StateMap::default).insert(user_key, value)
    }

    /// Removes `user_key`; the key's map disappears when it becomes empty.
    pub fn remove(&mut self, user_key: &UK) -> Option<UV> {
        let at = self.at();
        let map = self.table.get_mut(at)?;
        let removed = map.remove(user_key);
        if map.is_empty() {
            self.table.remove(at);
        }
        removed
    }

    /// Whether `user_key` has a value.
    pub fn contains(&self, user_key: &UK) -> bool {
        self.get(user_key).is_some()
    }

    /// Number of entries for this key.
    pub fn len(&self) -> usize {
        self.table.get(self.at()).map_or(0, HashMap::len)
    }

    /// Whether this key has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries for this key, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&UK, &UV)> {
        self.table.get(self.at()).into_iter().flat_map(|m| m.iter())
    }

    /// Removes every entry for this key.
    pub fn clear(&mut self) {
        let at = self.at();
        self.table.remove(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_hash;

    fn at(k: &String) -> CurrentKey<'_, String> {
        CurrentKey::new(k, key_hash(k))
    }

    #[test]
    fn value_state_is_per_key() {
        let mut b = KeyedStateBackend::<String>::new();
        let v = b.value_state::<i64>("v").unwrap();
        let (a, c) = ("a".to_string(), "c".to_string());
        b.value(&v, at(&a)).set(1);
        assert_eq!(b.value(&v, at(&a)).get(), Some(&1));
        assert_eq!(b.value(&v, at(&c)).get(), None);
        *b.value(&v, at(&c)).get_or_insert_with(|| 10) += 5;
        assert_eq!(b.value(&v, at(&c)).get(), Some(&15));
        assert_eq!(b.value(&v, at(&a)).clear(), Some(1));
        assert_eq!(b.value(&v, at(&a)).get(), None);
    }

    #[test]
    fn list_and_map_state() {
        let mut b = KeyedStateBackend::<String>::new();
        let l = b.list_state::<u32>("l").unwrap();
        let m = b.map_state::<String, u32>("m").unwrap();
        let k = "k".to_string();
        b.list(&l, at(&k)).add(1);
        b.list(&l, at(&k)).add_all([2, 3]);
        assert_eq!(b.list(&l, at(&k)).get(), &[1, 2, 3]);
        b.list(&l, at(&k)).update(vec![]);
        assert!(b.list(&l, at(&k)).get().is_empty());

        assert_eq!(b.map(&m, at(&k)).put("x".into(), 1), None);
        assert_eq!(b.map(&m, at(&k)).put("x".into(), 2), Some(1));
        b.map(&m, at(&k)).put("y".into(), 3);
        assert_eq!(b.map(&m, at(&k)).len(), 2);
        assert_eq!(b.map(&m, at(&k)).remove(&"x".to_string()), Some(2));
        assert_eq!(b.map(&m, at(&k)).remove(&"y".to_string()), Some(3));
        assert!(b.map(&m, at(&k)).is_empty());
    }

    #[test]
    fn same_name_same_type_is_the_same_state_and_conflicts_are_errors() {
        let mut b = KeyedStateBackend::<String>::new();
        let v1 = b.value_state::<i64>("s").unwrap();
        let v2 = b.value_state::<i64>("s").unwrap();
        let k = "k".to_string();
        b.value(&v1, at(&k)).set(7);
        assert_eq!(b.value(&v2, at(&k)).get(), Some(&7));
        let err = b.list_state::<i64>("s").unwrap_err();
        assert!(err.to_string().contains("already registered as ValueState<i64>"), "{err}");
    }

    #[test]
    fn table_matches_a_reference_map_on_random_operations() {
        let seed = fastrand::u64(..);
        println!("seed {seed}");
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut table = StateTable::<u64, u64>::default();
        let mut reference = std::collections::HashMap::new();
        for _ in 0..20_000 {
            let k = rng.u64(0..500);
            let a = CurrentKey::new(&k, key_hash(&k));
            match rng.u8(0..3) {
                0 => assert_eq!(table.insert(a, k * 3), reference.insert(k, k * 3)),
                1 => assert_eq!(table.remove(a), reference.remove(&k)),
                _ => assert_eq!(table.get(a), reference.get(&k)),
            }
            assert_eq!(table.len(), reference.len());
        }
    }
}
