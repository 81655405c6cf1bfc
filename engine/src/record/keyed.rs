//! Keyed state: a map from a key value to per-key state, looked up with a borrowed value.
//!
//! HOT PATH: looked up once per record. Lookups never allocate; only the first record of a
//! new key copies the key. No locks, no logging.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::record::hash::hash_value;
use crate::record::value::{OwnedValue, Value};

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

type Buckets<S> = HashMap<u64, Vec<(OwnedValue, S)>, BuildHasherDefault<PrehashedHasher>>;

/// Per-key state of type `S`.
#[derive(Debug)]
pub struct KeyedMap<S> {
    buckets: Buckets<S>,
    len: usize,
}

impl<S> Default for KeyedMap<S> {
    fn default() -> Self {
        Self {
            buckets: HashMap::default(),
            len: 0,
        }
    }
}

impl<S> KeyedMap<S> {
    /// Returns the state of `key`, creating it with `init` if absent.
    pub fn entry(&mut self, key: Value<'_>, init: impl FnOnce() -> S) -> &mut S {
        self.entry_hashed(hash_value(key), key, init)
    }

    /// Like [`Self::entry`] with `hash == hash_value(key)` computed by the caller, for callers
    /// that look one key up in several maps.
    pub fn entry_hashed(&mut self, hash: u64, key: Value<'_>, init: impl FnOnce() -> S) -> &mut S {
        debug_assert_eq!(hash, hash_value(key), "hash does not belong to the key");
        let bucket = self.buckets.entry(hash).or_default();
        let pos = match bucket.iter().position(|(k, _)| k.eq_value(key)) {
            Some(pos) => pos,
            None => {
                bucket.push((key.to_owned_value(), init()));
                self.len += 1;
                bucket.len() - 1
            }
        };
        &mut bucket[pos].1
    }

    /// Returns the state of `key` if present.
    pub fn get(&self, key: Value<'_>) -> Option<&S> {
        let bucket = self.buckets.get(&hash_value(key))?;
        bucket.iter().find(|(k, _)| k.eq_value(key)).map(|(_, s)| s)
    }

    /// Returns the number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Visits every key and its state (in no particular order).
    pub fn iter(&self) -> impl Iterator<Item = (&OwnedValue, &S)> {
        self.buckets
            .values()
            .flat_map(|b| b.iter().map(|(k, s)| (k, s)))
    }

    /// Visits every key and its state mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&OwnedValue, &mut S)> {
        self.buckets
            .values_mut()
            .flat_map(|b| b.iter_mut().map(|(k, s)| (&*k, s)))
    }

    /// Keeps only the entries for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&OwnedValue, &mut S) -> bool) {
        let mut len = 0;
        self.buckets.retain(|_, bucket| {
            bucket.retain_mut(|(k, s)| keep(k, s));
            len += bucket.len();
            !bucket.is_empty()
        });
        self.len = len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_found_by_borrowed_keys() {
        let mut map = KeyedMap::default();
        *map.entry(Value::Str("a"), || 0) += 1;
        *map.entry(Value::Str("a"), || 0) += 1;
        *map.entry(Value::Int(7), || 0) += 5;
        assert_eq!(map.len(), 2);
        assert_eq!(map.get(Value::Str("a")), Some(&2));
        assert_eq!(map.get(Value::Int(7)), Some(&5));
        assert_eq!(map.get(Value::Str("b")), None);
        map.retain(|_, v| *v > 2);
        assert_eq!(map.len(), 1);
        assert_eq!(map.iter().count(), 1);
    }
}
