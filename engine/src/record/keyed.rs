//! Keyed state: a map from a key value to per-key state, looked up with a borrowed value.
//!
//! Entries live in one vector in insertion order, so they can also be visited by position
//! (an operator that emits its state in bounded pieces keeps its place as an index); a hash
//! table maps a key hash to the first entry with that hash, and entries sharing a full 64-bit
//! hash are chained. The map holds at most [`KEYED_STATE_KEYS_MAX`] keys (or a smaller limit
//! given to [`KeyedMap::with_keys_max`]); a new key beyond it is refused with [`KeysFull`].
//!
//! HOT PATH: looked up once per record. Lookups never allocate; only the first record of a
//! new key copies the key. No locks, no logging.
//!
//! ```
//! use sluice_engine::record::{KeyedMap, Value};
//!
//! let mut counts = KeyedMap::with_keys_max(2);
//! *counts.entry(Value::Str("a"), || 0).unwrap() += 1;
//! *counts.entry(Value::Str("b"), || 0).unwrap() += 1;
//! *counts.entry(Value::Str("a"), || 0).unwrap() += 1;
//! assert_eq!(counts.get(Value::Str("a")), Some(&2));
//! assert!(counts.entry(Value::Str("c"), || 0).is_err(), "a third key is over the limit");
//! ```

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::error::EngineError;
use crate::record::hash::hash_value;
use crate::record::key_index::KEY_SLOTS_MAX;
use crate::record::value::{OwnedValue, Value};

/// The most keys one operator keeps state for on one shard, unless it sets a smaller limit.
pub const KEYED_STATE_KEYS_MAX: usize = 1 << 24;

// Entry positions are `u32`, with `u32::MAX` marking the end of a chain.
const _: () = assert!(KEYED_STATE_KEYS_MAX <= KEY_SLOTS_MAX);

/// Marks the end of a chain of entries sharing one hash.
const NO_ENTRY: u32 = u32::MAX;

/// A hasher for keys that already are hashes.
#[derive(Default)]
pub struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A new key was refused: the map holds its most keys already.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("keyed state holds the most keys it can ({keys_max}, keyed_state_keys_max)")]
pub struct KeysFull {
    /// The limit that was reached.
    pub keys_max: usize,
}

impl KeysFull {
    /// Turns the refusal into an [`EngineError::Limit`] naming the operator that holds the
    /// state.
    pub fn in_operator(self, operator: &str) -> EngineError {
        EngineError::Limit(format!(
            "{operator}: {self}; spread the keys over more shards (parallelism) or use \
             fewer distinct keys"
        ))
    }
}

#[derive(Debug)]
struct Entry<S> {
    hash: u64,
    next: u32,
    key: OwnedValue,
    state: S,
}

/// Per-key state of type `S`.
#[derive(Debug)]
pub struct KeyedMap<S> {
    heads: HashMap<u64, u32, BuildHasherDefault<PrehashedHasher>>,
    entries: Vec<Entry<S>>,
    keys_max: usize,
}

impl<S> Default for KeyedMap<S> {
    fn default() -> Self {
        Self::with_keys_max(KEYED_STATE_KEYS_MAX)
    }
}

impl<S> KeyedMap<S> {
    /// Creates a map that refuses new keys once it holds `keys_max` (at most
    /// [`KEYED_STATE_KEYS_MAX`]).
    pub fn with_keys_max(keys_max: usize) -> Self {
        Self {
            heads: HashMap::default(),
            entries: Vec::new(),
            keys_max: keys_max.min(KEYED_STATE_KEYS_MAX),
        }
    }

    /// Returns the state of `key`, creating it with `init` if absent; refuses a new key when
    /// the map is full (the map is then unchanged).
    pub fn entry(&mut self, key: Value<'_>, init: impl FnOnce() -> S) -> Result<&mut S, KeysFull> {
        self.entry_hashed(hash_value(key), key, init)
    }

    /// Like [`Self::entry`] with `hash == hash_value(key)` computed by the caller, for callers
    /// that look one key up in several maps.
    pub fn entry_hashed(
        &mut self,
        hash: u64,
        key: Value<'_>,
        init: impl FnOnce() -> S,
    ) -> Result<&mut S, KeysFull> {
        debug_assert_eq!(hash, hash_value(key), "hash does not belong to the key");
        let mut last = NO_ENTRY;
        if let Some(&head) = self.heads.get(&hash) {
            let mut at = head;
            while at != NO_ENTRY {
                if self.entries[at as usize].key.eq_value(key) {
                    return Ok(&mut self.entries[at as usize].state);
                }
                last = at;
                at = self.entries[at as usize].next;
            }
        }
        if self.entries.len() >= self.keys_max {
            return Err(KeysFull {
                keys_max: self.keys_max,
            });
        }
        let new = self.entries.len() as u32;
        self.entries.push(Entry {
            hash,
            next: NO_ENTRY,
            key: key.to_owned_value(),
            state: init(),
        });
        if last == NO_ENTRY {
            self.heads.insert(hash, new);
        } else {
            self.entries[last as usize].next = new;
        }
        Ok(&mut self.entries[new as usize].state)
    }

    fn find(&self, key: Value<'_>) -> Option<usize> {
        let mut at = *self.heads.get(&hash_value(key))?;
        while at != NO_ENTRY {
            let entry = &self.entries[at as usize];
            if entry.key.eq_value(key) {
                return Some(at as usize);
            }
            at = entry.next;
        }
        None
    }

    /// Returns the state of `key` if present.
    pub fn get(&self, key: Value<'_>) -> Option<&S> {
        self.find(key).map(|i| &self.entries[i].state)
    }

    /// Returns the state of `key` mutably if present.
    pub fn get_mut(&mut self, key: Value<'_>) -> Option<&mut S> {
        self.find(key).map(|i| &mut self.entries[i].state)
    }

    /// Returns the key and state at position `index` (`0..len()`, in insertion order, stable
    /// until the next [`Self::retain`]).
    pub fn get_index(&self, index: usize) -> Option<(&OwnedValue, &S)> {
        self.entries.get(index).map(|e| (&e.key, &e.state))
    }

    /// Like [`Self::get_index`], with the state mutable.
    pub fn get_index_mut(&mut self, index: usize) -> Option<(&OwnedValue, &mut S)> {
        self.entries.get_mut(index).map(|e| (&e.key, &mut e.state))
    }

    /// Returns the number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Visits every key and its state, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&OwnedValue, &S)> {
        self.entries.iter().map(|e| (&e.key, &e.state))
    }

    /// Visits every key and its state mutably, in insertion order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&OwnedValue, &mut S)> {
        self.entries.iter_mut().map(|e| (&e.key, &mut e.state))
    }

    /// Keeps only the entries for which `keep` returns true (in their order); rebuilds the
    /// hash chains, so it costs one pass over the map.
    pub fn retain(&mut self, mut keep: impl FnMut(&OwnedValue, &mut S) -> bool) {
        let before = self.entries.len();
        self.entries.retain_mut(|e| keep(&e.key, &mut e.state));
        if self.entries.len() == before {
            return;
        }
        self.heads.clear();
        // Walking backwards and pushing each entry at the head of its chain keeps every chain
        // in entry order.
        for i in (0..self.entries.len()).rev() {
            let hash = self.entries[i].hash;
            let next = self.heads.insert(hash, i as u32).unwrap_or(NO_ENTRY);
            self.entries[i].next = next;
        }
    }

    /// Copies the keys and states out, in insertion order (for a checkpoint; the hash index
    /// is not copied, [`Self::from_entries`] derives it again).
    pub fn to_entries(&self) -> Vec<(OwnedValue, S)>
    where
        S: Clone,
    {
        self.entries
            .iter()
            .map(|e| (e.key.clone(), e.state.clone()))
            .collect()
    }

    /// Rebuilds a map from `entries` in insertion order (as [`Self::to_entries`] gives them),
    /// refusing new keys beyond `keys_max` as [`Self::with_keys_max`] does. Returns what is
    /// wrong if a key appears twice or the entries are too many.
    pub fn from_entries(entries: Vec<(OwnedValue, S)>, keys_max: usize) -> Result<Self, String> {
        let mut map = Self::with_keys_max(keys_max);
        if entries.len() > map.keys_max {
            return Err(format!(
                "{} keys, more than the {} keyed state holds (keyed_state_keys_max)",
                entries.len(),
                map.keys_max
            ));
        }
        map.entries.reserve_exact(entries.len());
        for (i, (key, state)) in entries.into_iter().enumerate() {
            let key_value = key.as_value();
            if let Some(first) = map.find(key_value) {
                return Err(format!("key {key} is in entries {first} and {i}"));
            }
            map.entry(key_value, move || state)
                .map_err(|e| e.to_string())?;
        }
        Ok(map)
    }

    /// Returns the most keys the map holds.
    pub fn keys_max(&self) -> usize {
        self.keys_max
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.heads.clear();
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_found_by_borrowed_keys() {
        let mut map = KeyedMap::default();
        *map.entry(Value::Str("a"), || 0).unwrap() += 1;
        *map.entry(Value::Str("a"), || 0).unwrap() += 1;
        *map.entry(Value::Int(7), || 0).unwrap() += 5;
        assert_eq!(map.len(), 2);
        assert_eq!(map.get(Value::Str("a")), Some(&2));
        assert_eq!(map.get(Value::Int(7)), Some(&5));
        assert_eq!(map.get(Value::Str("b")), None);
        map.retain(|_, v| *v > 2);
        assert_eq!(map.len(), 1);
        assert_eq!(map.iter().count(), 1);
        assert_eq!(map.get(Value::Int(7)), Some(&5));
        assert_eq!(map.get(Value::Str("a")), None);
    }

    #[test]
    fn a_new_key_beyond_the_limit_is_refused_and_changes_nothing() {
        let mut map = KeyedMap::with_keys_max(3);
        for k in 0..3 {
            *map.entry(Value::Int(k), || 0).unwrap() += 1;
        }
        let err = map.entry(Value::Int(3), || 0).unwrap_err();
        assert_eq!(err, KeysFull { keys_max: 3 });
        assert_eq!(map.len(), 3);
        assert_eq!(map.get(Value::Int(3)), None);
        // Known keys are still served, and dropping keys makes room again.
        *map.entry(Value::Int(1), || 0).unwrap() += 1;
        map.retain(|k, _| !k.eq_value(Value::Int(0)));
        *map.entry(Value::Int(3), || 0).unwrap() += 1;
        assert_eq!(map.len(), 3);
        let message = err.in_operator("session_window").to_string();
        assert!(
            message.contains("session_window") && message.contains("keyed_state_keys_max"),
            "{message}"
        );
    }

    #[test]
    fn a_map_rebuilt_from_its_entries_keeps_order_and_lookups() {
        let mut map = KeyedMap::default();
        for (k, v) in [("b", 1), ("a", 2), ("c", 3)] {
            *map.entry(Value::Str(k), || 0).unwrap() += v;
        }
        *map.entry(Value::Int(4), || 0).unwrap() += 4;
        let entries = map.to_entries();
        let rebuilt = KeyedMap::from_entries(entries.clone(), 4).unwrap();
        assert_eq!(rebuilt.to_entries(), entries);
        assert_eq!(rebuilt.get(Value::Str("a")), Some(&2));
        assert_eq!(rebuilt.get(Value::Int(4)), Some(&4));
        let err = KeyedMap::from_entries(entries.clone(), 3).unwrap_err();
        assert!(err.contains("4 keys") && err.contains("3"), "{err}");
        let mut twice = entries;
        twice.push((OwnedValue::Str("a".into()), 9));
        let err = KeyedMap::from_entries(twice, 10).unwrap_err();
        assert!(err.contains("entries 1 and 4"), "{err}");
    }

    #[test]
    fn chains_survive_retain() {
        // Keys stored under one hash by hand, as a 64-bit collision is impractical to find.
        let mut map: KeyedMap<i64> = KeyedMap::default();
        let h = hash_value(Value::Int(1));
        for k in 1..=4 {
            map.entries.push(Entry {
                hash: h,
                next: if k < 4 { k as u32 } else { NO_ENTRY },
                key: OwnedValue::Int(k),
                state: k * 10,
            });
        }
        map.heads.insert(h, 0);
        assert_eq!(map.find(Value::Int(1)), Some(0));
        map.retain(|k, _| !k.eq_value(Value::Int(2)));
        for k in [1, 3, 4] {
            let i = (0..map.len()).find(|i| map.entries[*i].key.eq_value(Value::Int(k)));
            assert_eq!(map.get_index_mut(i.unwrap()).map(|(_, s)| *s), Some(k * 10));
        }
        let (mut walked, mut at) = (Vec::new(), map.heads[&h]);
        while at != NO_ENTRY {
            walked.push(at);
            at = map.entries[at as usize].next;
        }
        assert_eq!(walked, [0, 1, 2]);
    }
}
