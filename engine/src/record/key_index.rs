//! Key index: numbers the distinct keys of a stretch of records `0, 1, 2, ...` in order of
//! first appearance, so that per-key state can live in flat arrays indexed by that slot.
//!
//! Keys are kept in one typed [`Column`] (strings packed in one buffer) next to their hashes,
//! and a hash table maps a key hash to the first slot with that hash; slots whose keys share
//! a full 64-bit hash are chained. A cleared index keeps every buffer, so an index that is
//! cleared and refilled (window panes, scratch tables) does not allocate in steady state.
//!
//! HOT PATH: one hash-table probe and one key comparison per lookup; no allocation except
//! when a buffer grows. No locks, no logging.
//!
//! ```
//! use sluice_engine::record::hash::hash_value;
//! use sluice_engine::record::{DataType, KeyIndex, Value};
//!
//! let mut index = KeyIndex::new(DataType::String);
//! let a = Value::Str("a");
//! assert_eq!(index.find_or_insert(hash_value(a), a), Some((0, true)));
//! let b = Value::Str("b");
//! assert_eq!(index.find_or_insert(hash_value(b), b), Some((1, true)));
//! assert_eq!(index.find_or_insert(hash_value(a), a), Some((0, false)));
//! assert_eq!(index.key(1), b);
//! ```

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use crate::record::column::Column;
use crate::record::keyed::PrehashedHasher;
use crate::record::schema::DataType;
use crate::record::value::Value;

/// Marks the end of a chain of slots sharing one hash.
const NO_SLOT: u32 = u32::MAX;

/// The most keys one index holds (slots are `u32`, and [`NO_SLOT`] is reserved).
pub const KEY_SLOTS_MAX: usize = (u32::MAX - 1) as usize;

/// Returns whether two key values are the same key: ints and timestamps with the same number
/// are (they hash alike), floats compare bitwise (so NaN keys group together).
pub fn same_key(a: Value<'_>, b: Value<'_>) -> bool {
    match (a, b) {
        (Value::Int(x) | Value::Timestamp(x), Value::Int(y) | Value::Timestamp(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        _ => false,
    }
}

/// Distinct keys numbered by first appearance.
#[derive(Debug, Clone)]
pub struct KeyIndex {
    heads: HashMap<u64, u32, BuildHasherDefault<PrehashedHasher>>,
    keys: Column,
    hashes: Vec<u64>,
    next: Vec<u32>,
}

impl KeyIndex {
    /// Creates an empty index for keys of type `key_type`.
    pub fn new(key_type: DataType) -> Self {
        Self {
            heads: HashMap::default(),
            keys: Column::new(key_type),
            hashes: Vec::new(),
            next: Vec::new(),
        }
    }

    /// Returns the number of keys.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Returns whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Returns the key of `slot`.
    pub fn key(&self, slot: usize) -> Value<'_> {
        self.keys.get(slot)
    }

    /// Returns the hash of the key of `slot` (as given when it was inserted).
    pub fn hash(&self, slot: usize) -> u64 {
        self.hashes[slot]
    }

    /// Returns the column holding every key, in slot order.
    pub fn keys(&self) -> &Column {
        &self.keys
    }

    /// Returns the slot of `key`, whose hash is `hash`, if it is there.
    pub fn find(&self, hash: u64, key: Value<'_>) -> Option<u32> {
        let mut slot = *self.heads.get(&hash)?;
        loop {
            if same_key(self.keys.get(slot as usize), key) {
                return Some(slot);
            }
            slot = self.next[slot as usize];
            if slot == NO_SLOT {
                return None;
            }
        }
    }

    /// Returns the slot of `key` (hash `hash`) and whether it was just added. Returns `None`
    /// when the key does not fit the key column's type or the index holds
    /// [`KEY_SLOTS_MAX`] keys already; the index is then unchanged.
    pub fn find_or_insert(&mut self, hash: u64, key: Value<'_>) -> Option<(u32, bool)> {
        debug_assert_eq!(
            hash,
            crate::record::hash::hash_value(key),
            "hash does not belong to the key"
        );
        let head = self.heads.get(&hash).copied();
        let mut last = NO_SLOT;
        if let Some(mut slot) = head {
            loop {
                if same_key(self.keys.get(slot as usize), key) {
                    return Some((slot, false));
                }
                last = slot;
                slot = self.next[slot as usize];
                if slot == NO_SLOT {
                    break;
                }
            }
        }
        let new = self.hashes.len();
        if new >= KEY_SLOTS_MAX || !self.keys.push(key) {
            return None;
        }
        let new = new as u32;
        self.hashes.push(hash);
        self.next.push(NO_SLOT);
        if last == NO_SLOT {
            self.heads.insert(hash, new);
        } else {
            self.next[last as usize] = new;
        }
        Some((new, true))
    }

    /// Rebuilds an index from its keys in slot order (as [`Self::keys`] returns them, e.g.
    /// read back from a checkpoint); the hashes and chains are derived again. Returns what is
    /// wrong if a key appears twice or there are more than [`KEY_SLOTS_MAX`] keys.
    pub fn from_keys(keys: &Column) -> Result<Self, String> {
        let mut index = Self::new(keys.data_type());
        for slot in 0..keys.len() {
            let key = keys.get(slot);
            match index.find_or_insert(crate::record::hash::hash_value(key), key) {
                Some((_, true)) => {}
                Some((first, false)) => {
                    return Err(format!("key {key} is in slots {first} and {slot}"));
                }
                None => return Err(format!("more than {KEY_SLOTS_MAX} keys")),
            }
        }
        Ok(index)
    }

    /// Approximately how many bytes of memory the index takes.
    pub fn state_bytes(&self) -> u64 {
        // A hash-table entry is a hash, a slot and a control byte.
        let heads = self.heads.capacity() * 13;
        let slots = self.hashes.capacity() * 8 + self.next.capacity() * 4;
        self.keys.state_bytes() + (heads + slots) as u64
    }

    /// Removes every key, keeping the buffers.
    pub fn clear(&mut self) {
        self.heads.clear();
        self.keys.clear();
        self.hashes.clear();
        self.next.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::hash::hash_value;

    #[test]
    fn keys_sharing_a_hash_are_chained() {
        // A real 64-bit collision is impractical to find, so the chain is built by hand:
        // `b` is stored under `a`'s hash.
        let mut index = KeyIndex::new(DataType::Int);
        let (a, b) = (Value::Int(1), Value::Int(2));
        let h = hash_value(a);
        for (slot, key) in [a, b].into_iter().enumerate() {
            assert!(index.keys.push(key));
            index.hashes.push(h);
            index.next.push(NO_SLOT);
            if slot == 0 {
                index.heads.insert(h, 0);
            } else {
                index.next[0] = 1;
            }
        }
        assert_eq!(index.find(h, a), Some(0));
        assert_eq!(index.find(h, b), Some(1));
        assert_eq!(index.find(h, Value::Int(3)), None);
        assert_eq!(index.find_or_insert(h, a), Some((0, false)));
    }

    #[test]
    fn clear_keeps_working_and_types_are_checked() {
        let mut index = KeyIndex::new(DataType::String);
        for round in 0..3 {
            for k in ["x", "y", "x", "z"] {
                let v = Value::Str(k);
                index.find_or_insert(hash_value(v), v).unwrap();
            }
            assert_eq!(index.len(), 3, "round {round}");
            assert_eq!(index.key(2), Value::Str("z"));
            index.clear();
            assert!(index.is_empty());
        }
        let wrong = Value::Int(1);
        assert_eq!(index.find_or_insert(hash_value(wrong), wrong), None);
        assert!(index.is_empty());
    }

    #[test]
    fn an_index_rebuilt_from_its_keys_finds_them_in_the_same_slots() {
        let mut index = KeyIndex::new(DataType::String);
        for k in ["q", "a", "zz", "a"] {
            let v = Value::Str(k);
            index.find_or_insert(hash_value(v), v).unwrap();
        }
        let rebuilt = KeyIndex::from_keys(index.keys()).unwrap();
        assert_eq!(rebuilt.len(), 3);
        for slot in 0..3 {
            let key = index.key(slot);
            assert_eq!(rebuilt.find(hash_value(key), key), Some(slot as u32));
            assert_eq!(rebuilt.hash(slot), index.hash(slot));
        }
        let mut twice = index.keys().clone();
        assert!(twice.push(Value::Str("zz")));
        let err = KeyIndex::from_keys(&twice).unwrap_err();
        assert!(err.contains("zz") && err.contains("slots 2 and 3"), "{err}");
    }

    #[test]
    fn ints_and_timestamps_are_one_key() {
        let mut index = KeyIndex::new(DataType::Timestamp);
        let t = Value::Timestamp(5);
        index.find_or_insert(hash_value(t), t).unwrap();
        assert_eq!(
            index.find(hash_value(Value::Int(5)), Value::Int(5)),
            Some(0)
        );
        let nan = Value::Float(f64::NAN);
        assert!(same_key(nan, nan));
    }
}
