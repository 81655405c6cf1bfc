//! Keyed state: the one store of per-key state that every stateful operator keeps (window
//! panes, sessions, reduce, aggregate, and the key indexes of the joins), so that every
//! operator looks keys up, bounds them, drops them, snapshots and restores them the same way.
//!
//! A [`KeyedState<S>`] numbers its distinct keys `0, 1, 2, ...` (slots) in order of first
//! appearance and keeps `width` values of type `S` per slot in one flat vector: slot `s` owns
//! `values[s * width .. (s + 1) * width]`. A window pane is a `KeyedState<Acc>` of width "one
//! per aggregate" (its accumulators side by side, updated column-wise), a session window a
//! `KeyedState<Vec<Session>>` of width one.
//!
//! Keys live in one typed [`Column`] (strings packed in one buffer) next to their hashes; a
//! hash table maps a key hash to the first slot with that hash, and slots whose keys share a
//! full 64-bit hash are chained. A cleared state keeps every buffer, so a state that is
//! cleared and refilled (window panes, scratch tables) does not allocate in steady state.
//!
//! A snapshot ([`KeyedSnapshot`]) is the keys column and the values, in slot order; the hash
//! table and chains are derived again on restore. Every key's key group follows from its hash
//! ([`crate::record::hash::key_group_of`]), so a snapshot can be split by key group when state
//! is redistributed to another parallelism.
//!
//! HOT PATH: one hash-table probe and one key comparison per lookup; no allocation except
//! when a buffer grows or a new key is copied in. No locks, no logging.
//!
//! ```
//! use sluice_engine::record::{DataType, Value};
//! use sluice_engine::state::KeyedState;
//!
//! let mut counts: KeyedState<i64> = KeyedState::with_keys_max(DataType::String, 1, 2);
//! counts.entry(Value::Str("a"), |_| 0).unwrap()[0] += 1;
//! counts.entry(Value::Str("b"), |_| 0).unwrap()[0] += 1;
//! counts.entry(Value::Str("a"), |_| 0).unwrap()[0] += 1;
//! assert_eq!(counts.get(Value::Str("a")), Some(&[2][..]));
//! assert!(counts.entry(Value::Str("c"), |_| 0).is_err(), "a third key is over the limit");
//! assert!(counts.entry(Value::Int(1), |_| 0).is_err(), "keys are strings");
//! ```

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::record::hash::hash_value;
use crate::record::{Column, DataType, OwnedValue, Value};

/// The most keys one operator keeps state for on one shard, unless it sets a smaller limit.
pub const KEYED_STATE_KEYS_MAX: usize = 1 << 24;

/// Marks the end of a chain of slots sharing one hash.
const NO_SLOT: u32 = u32::MAX;

// Slots are `u32`, with `NO_SLOT` reserved.
const _: () = assert!(KEYED_STATE_KEYS_MAX < NO_SLOT as usize);

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

/// Returns whether a key of type `key` may be stored among keys of type `keys`: the same
/// type, or ints and timestamps (which are one key space, see [`same_key`]).
fn fits(key: DataType, keys: DataType) -> bool {
    key == keys
        || matches!(
            (key, keys),
            (DataType::Int, DataType::Timestamp) | (DataType::Timestamp, DataType::Int)
        )
}

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

/// A new key was refused; the state is unchanged.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum KeyRefused {
    /// The state holds its most keys already.
    #[error("keyed state holds the most keys it can ({keys_max}, keyed_state_keys_max)")]
    Full {
        /// The limit that was reached.
        keys_max: usize,
    },
    /// The key's type is not the state's key type (a plan error upstream).
    #[error("key {key} is of type {}, the keyed state's keys are {expected}", key.data_type())]
    WrongType {
        /// The key.
        key: OwnedValue,
        /// The state's key type.
        expected: DataType,
    },
}

impl KeyRefused {
    /// Turns the refusal into an [`EngineError`] naming the operator that holds the state.
    pub fn in_operator(self, operator: &str) -> EngineError {
        match self {
            Self::Full { .. } => EngineError::Limit(format!(
                "{operator}: {self}; spread the keys over more shards (parallelism) or use \
                 fewer distinct keys"
            )),
            Self::WrongType { .. } => EngineError::Plan(format!("{operator}: {self}")),
        }
    }
}

/// Per-key state: `width` values of type `S` for each distinct key.
#[derive(Debug, Clone)]
pub struct KeyedState<S> {
    heads: HashMap<u64, u32, BuildHasherDefault<PrehashedHasher>>,
    keys: Column,
    hashes: Vec<u64>,
    next: Vec<u32>,
    values: Vec<S>,
    width: usize,
    keys_max: usize,
}

/// A [`KeyedState`] as a checkpoint keeps it: the keys in slot order and their values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyedSnapshot<S> {
    /// Every key, in slot order.
    pub keys: Column,
    /// How many values each key has.
    pub width: u32,
    /// The values, slot `s` owning `values[s * width .. (s + 1) * width]`.
    pub values: Vec<S>,
}

impl<S> KeyedSnapshot<S> {
    /// Visits every key and its values, in slot order; a snapshot whose values do not make
    /// `width` per key (a restore refuses it) is visited up to its last whole key.
    pub fn iter(&self) -> impl Iterator<Item = (Value<'_>, &[S])> {
        let width = self.width as usize;
        let whole = self
            .values
            .len()
            .checked_div(width)
            .unwrap_or(self.keys.len());
        (0..self.keys.len().min(whole))
            .map(move |i| (self.keys.get(i), &self.values[i * width..(i + 1) * width]))
    }

    /// Approximately how many bytes of memory the snapshot holds, given what one value takes.
    pub fn state_bytes(&self, value_bytes: impl Fn(&S) -> u64) -> u64 {
        self.keys.state_bytes() + self.values.iter().map(value_bytes).sum::<u64>()
    }
}

impl<S> KeyedState<S> {
    /// Creates an empty state for keys of type `key_type`, `width` values per key, holding at
    /// most [`KEYED_STATE_KEYS_MAX`] keys.
    pub fn new(key_type: DataType, width: usize) -> Self {
        Self::with_keys_max(key_type, width, KEYED_STATE_KEYS_MAX)
    }

    /// Like [`Self::new`], refusing new keys once it holds `keys_max` (at most
    /// [`KEYED_STATE_KEYS_MAX`]).
    pub fn with_keys_max(key_type: DataType, width: usize, keys_max: usize) -> Self {
        Self {
            heads: HashMap::default(),
            keys: Column::new(key_type),
            hashes: Vec::new(),
            next: Vec::new(),
            values: Vec::new(),
            width,
            keys_max: keys_max.min(KEYED_STATE_KEYS_MAX),
        }
    }

    /// Returns the type of the keys.
    pub fn key_type(&self) -> DataType {
        self.keys.data_type()
    }

    /// Returns how many values each key has.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Returns the most keys the state holds.
    pub fn keys_max(&self) -> usize {
        self.keys_max
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

    /// Returns the hash of the key of `slot`.
    pub fn hash(&self, slot: usize) -> u64 {
        self.hashes[slot]
    }

    /// Returns the values of `slot`.
    pub fn values(&self, slot: usize) -> &[S] {
        &self.values[slot * self.width..(slot + 1) * self.width]
    }

    /// Returns the values of `slot` mutably.
    pub fn values_mut(&mut self, slot: usize) -> &mut [S] {
        &mut self.values[slot * self.width..(slot + 1) * self.width]
    }

    /// Returns the key of `slot` and its values mutably.
    pub fn key_values_mut(&mut self, slot: usize) -> (Value<'_>, &mut [S]) {
        let width = self.width;
        (
            self.keys.get(slot),
            &mut self.values[slot * width..(slot + 1) * width],
        )
    }

    /// Returns every value, slot `s` owning `[s * width, (s + 1) * width)` (for operators that
    /// update a column of values for many rows at once).
    pub fn all_values_mut(&mut self) -> &mut [S] {
        &mut self.values
    }

    /// Returns the slot of `key`, whose hash is `hash`, if it is there.
    pub fn find(&self, hash: u64, key: Value<'_>) -> Option<usize> {
        let mut slot = *self.heads.get(&hash)?;
        loop {
            if same_key(self.keys.get(slot as usize), key) {
                return Some(slot as usize);
            }
            slot = self.next[slot as usize];
            if slot == NO_SLOT {
                return None;
            }
        }
    }

    /// Returns the values of `key` if it is there.
    pub fn get(&self, key: Value<'_>) -> Option<&[S]> {
        self.find(hash_value(key), key).map(|s| self.values(s))
    }

    /// Returns the values of `key` mutably if it is there.
    pub fn get_mut(&mut self, key: Value<'_>) -> Option<&mut [S]> {
        self.find(hash_value(key), key).map(|s| self.values_mut(s))
    }

    /// Returns the slot of `key` (hash `hash`) and whether it was just added, with its values
    /// made by `init(0..width)`. Refuses a new key when the state is full or the key is not of
    /// the state's key type; the state is then unchanged.
    pub fn slot_hashed(
        &mut self,
        hash: u64,
        key: Value<'_>,
        init: impl FnMut(usize) -> S,
    ) -> Result<(usize, bool), KeyRefused> {
        debug_assert_eq!(hash, hash_value(key), "hash does not belong to the key");
        let mut last = NO_SLOT;
        if let Some(&head) = self.heads.get(&hash) {
            let mut slot = head;
            loop {
                if same_key(self.keys.get(slot as usize), key) {
                    return Ok((slot as usize, false));
                }
                last = slot;
                slot = self.next[slot as usize];
                if slot == NO_SLOT {
                    break;
                }
            }
        }
        let new = self.hashes.len();
        if new >= self.keys_max {
            return Err(KeyRefused::Full {
                keys_max: self.keys_max,
            });
        }
        if !fits(key.data_type(), self.keys.data_type()) || !self.keys.push(key) {
            return Err(KeyRefused::WrongType {
                key: key.to_owned_value(),
                expected: self.keys.data_type(),
            });
        }
        self.hashes.push(hash);
        self.next.push(NO_SLOT);
        self.values.extend((0..self.width).map(init));
        if last == NO_SLOT {
            self.heads.insert(hash, new as u32);
        } else {
            self.next[last as usize] = new as u32;
        }
        Ok((new, true))
    }

    /// Returns the values of `key`, adding it with values `init(0..width)` if it is new (see
    /// [`Self::slot_hashed`]).
    pub fn entry(
        &mut self,
        key: Value<'_>,
        init: impl FnMut(usize) -> S,
    ) -> Result<&mut [S], KeyRefused> {
        let (slot, _) = self.slot_hashed(hash_value(key), key, init)?;
        Ok(self.values_mut(slot))
    }

    /// Keeps only the keys for which `keep` returns true, renumbering the slots that are left
    /// `0..` in their order; costs one pass over the state when a key goes.
    pub fn retain(&mut self, mut keep: impl FnMut(Value<'_>, &mut [S]) -> bool) {
        let width = self.width;
        let mut kept = Vec::with_capacity(self.len());
        for slot in 0..self.len() {
            let values = &mut self.values[slot * width..(slot + 1) * width];
            kept.push(keep(self.keys.get(slot), values));
        }
        if kept.iter().all(|k| *k) {
            return;
        }
        let mut i = 0;
        self.values.retain(|_| {
            i += 1;
            kept[(i - 1) / width]
        });
        self.keys.retain_rows(|slot| kept[slot]);
        let mut slot = 0;
        self.hashes.retain(|_| {
            slot += 1;
            kept[slot - 1]
        });
        self.relink();
    }

    /// Rebuilds the hash table and chains from the keys' hashes.
    fn relink(&mut self) {
        self.heads.clear();
        self.next.clear();
        self.next.resize(self.hashes.len(), NO_SLOT);
        // Walking backwards and pushing each slot at the head of its chain keeps every chain
        // in slot order.
        for slot in (0..self.hashes.len()).rev() {
            let hash = self.hashes[slot];
            self.next[slot] = self.heads.insert(hash, slot as u32).unwrap_or(NO_SLOT);
        }
    }

    /// Removes every key, keeping the buffers.
    pub fn clear(&mut self) {
        self.heads.clear();
        self.keys.clear();
        self.hashes.clear();
        self.next.clear();
        self.values.clear();
    }

    /// Approximately how many bytes of memory the state takes, given what one value takes
    /// beyond its own size.
    pub fn state_bytes(&self, value_heap_bytes: impl Fn(&S) -> u64) -> u64 {
        // A hash-table entry is a hash, a slot and a control byte.
        let heads = self.heads.capacity() * 13;
        let slots = self.hashes.capacity() * 8 + self.next.capacity() * 4;
        let values = self.values.capacity() * std::mem::size_of::<S>();
        let heap: u64 = self.values.iter().map(value_heap_bytes).sum();
        self.keys.state_bytes() + (heads + slots + values) as u64 + heap
    }

    /// Copies the keys and values out for a checkpoint (the hash table is not copied,
    /// [`Self::restore`] derives it again).
    pub fn snapshot(&self) -> KeyedSnapshot<S>
    where
        S: Clone,
    {
        KeyedSnapshot {
            keys: self.keys.clone(),
            width: self.width as u32,
            values: self.values.clone(),
        }
    }

    /// Rebuilds a state from a checkpoint's [`KeyedSnapshot`], for keys of type `key_type`
    /// with `width` values each, refusing new keys beyond `keys_max` as
    /// [`Self::with_keys_max`] does. Returns what is wrong if the key type or width differ,
    /// the values do not make `width` per key, a key appears twice or there are too many.
    pub fn restore(
        snapshot: KeyedSnapshot<S>,
        key_type: DataType,
        width: usize,
        keys_max: usize,
    ) -> Result<Self, String> {
        let KeyedSnapshot {
            keys,
            width: saved_width,
            values,
        } = snapshot;
        if keys.data_type() != key_type {
            return Err(format!(
                "the keys are {}, expected {key_type}",
                keys.data_type()
            ));
        }
        if saved_width as usize != width {
            return Err(format!("{saved_width} values per key, expected {width}"));
        }
        let expected = keys.len().checked_mul(width);
        if expected != Some(values.len()) {
            return Err(format!(
                "{} values for {} keys of {width} values",
                values.len(),
                keys.len()
            ));
        }
        let mut state = Self::with_keys_max(key_type, width, keys_max);
        if keys.len() > state.keys_max {
            return Err(format!(
                "{} keys, more than the {} keyed state holds (keyed_state_keys_max)",
                keys.len(),
                state.keys_max
            ));
        }
        state.hashes = (0..keys.len()).map(|i| hash_value(keys.get(i))).collect();
        state.keys = keys;
        state.relink();
        // Chains are in slot order, so a key found in an earlier slot is there twice.
        for slot in 0..state.keys.len() {
            let key = state.keys.get(slot);
            match state.find(state.hashes[slot], key) {
                Some(first) if first != slot => {
                    return Err(format!("key {key} is in slots {first} and {slot}"));
                }
                _ => {}
            }
        }
        state.values = values;
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(keys: &[&str]) -> KeyedState<i64> {
        let mut state = KeyedState::new(DataType::String, 1);
        for (i, k) in keys.iter().enumerate() {
            state.entry(Value::Str(k), |_| 0).unwrap()[0] += i as i64 + 1;
        }
        state
    }

    /// Stores keys 1..=n all under the hash of 1, as a real 64-bit collision is impractical
    /// to find.
    fn colliding(n: i64) -> KeyedState<i64> {
        let mut state = KeyedState::new(DataType::Int, 1);
        let h = hash_value(Value::Int(1));
        for k in 1..=n {
            assert!(state.keys.push(Value::Int(k)));
            state.hashes.push(h);
            state.values.push(k * 10);
        }
        state.relink();
        state
    }

    #[test]
    fn keys_are_found_by_borrowed_values_and_numbered_in_order() {
        let state = strings(&["q", "a", "zz", "a"]);
        assert_eq!(state.len(), 3);
        assert_eq!(state.key(2), Value::Str("zz"));
        assert_eq!(state.get(Value::Str("a")), Some(&[2 + 4][..]));
        assert_eq!(state.get(Value::Str("b")), None);
        let h = hash_value(Value::Str("zz"));
        assert_eq!(state.find(h, Value::Str("zz")), Some(2));
        assert_eq!(state.hash(2), h);
    }

    #[test]
    fn wide_states_keep_width_values_per_key() {
        let mut state: KeyedState<i64> = KeyedState::new(DataType::Int, 3);
        let (slot, new) = state
            .slot_hashed(hash_value(Value::Int(7)), Value::Int(7), |i| i as i64)
            .unwrap();
        assert_eq!((slot, new), (0, true));
        state.entry(Value::Int(8), |i| 10 * i as i64).unwrap()[2] += 1;
        assert_eq!(state.values(0), [0, 1, 2]);
        assert_eq!(state.values(1), [0, 10, 21]);
        assert_eq!(state.all_values_mut().len(), 6);
        let (slot, new) = state
            .slot_hashed(hash_value(Value::Int(7)), Value::Int(7), |_| 99)
            .unwrap();
        assert_eq!((slot, new), (0, false));
    }

    #[test]
    fn chains_of_keys_sharing_a_hash_are_searched_and_survive_retain() {
        let mut state = colliding(4);
        let h = hash_value(Value::Int(1));
        for k in 1..=4 {
            assert_eq!(state.find(h, Value::Int(k)), Some(k as usize - 1));
        }
        assert_eq!(state.find(h, Value::Int(5)), None);
        state.retain(|k, _| k != Value::Int(2));
        assert_eq!(state.len(), 3);
        for (slot, k) in [1, 3, 4].into_iter().enumerate() {
            assert_eq!(state.find(h, Value::Int(k)), Some(slot));
            assert_eq!(state.values(slot), [k * 10]);
        }
        let (mut walked, mut at) = (Vec::new(), state.heads[&h]);
        while at != NO_SLOT {
            walked.push(at);
            at = state.next[at as usize];
        }
        assert_eq!(walked, [0, 1, 2], "the chain keeps slot order");
    }

    #[test]
    fn retain_drops_keys_with_their_values_and_keeps_the_rest_in_order() {
        let mut state: KeyedState<i64> = KeyedState::new(DataType::String, 2);
        for (k, v) in [("a", 1), ("b", 2), ("c", 3), ("d", 4)] {
            state.entry(Value::Str(k), |i| v * 10 + i as i64).unwrap();
        }
        state.retain(|k, values| {
            values[1] += 100;
            k != Value::Str("a") && k != Value::Str("c")
        });
        assert_eq!(state.len(), 2);
        assert_eq!(state.key(0), Value::Str("b"));
        assert_eq!(state.values(0), [20, 121]);
        assert_eq!(state.get(Value::Str("d")), Some(&[40, 141][..]));
        assert_eq!(state.get(Value::Str("a")), None);
        // The dropped keys come back as new ones.
        let (slot, new) = state
            .slot_hashed(hash_value(Value::Str("a")), Value::Str("a"), |_| 0)
            .unwrap();
        assert_eq!((slot, new), (2, true));
    }

    #[test]
    fn a_new_key_beyond_the_limit_or_of_another_type_is_refused_and_changes_nothing() {
        let mut state: KeyedState<i64> = KeyedState::with_keys_max(DataType::Float, 1, 2);
        for k in [1.0, 2.0] {
            state.entry(Value::Float(k), |_| 0).unwrap()[0] += 1;
        }
        let full = state.entry(Value::Float(3.0), |_| 0).unwrap_err();
        assert_eq!(full, KeyRefused::Full { keys_max: 2 });
        assert_eq!(state.len(), 2);
        // Known keys are still served, and dropping keys makes room again.
        state.entry(Value::Float(1.0), |_| 0).unwrap()[0] += 1;
        state.retain(|k, _| k != Value::Float(1.0));
        let wrong = state.entry(Value::Int(3), |_| 0).unwrap_err();
        assert!(
            matches!(
                &wrong,
                KeyRefused::WrongType {
                    expected: DataType::Float,
                    ..
                }
            ),
            "an int is not a float key: {wrong:?}"
        );
        assert_eq!(state.len(), 1);
        state.entry(Value::Float(3.0), |_| 0).unwrap();
        let message = full.in_operator("window (session)").to_string();
        assert!(
            message.contains("window (session)") && message.contains("keyed_state_keys_max"),
            "{message}"
        );
    }

    #[test]
    fn ints_and_timestamps_are_one_key() {
        let mut state: KeyedState<u8> = KeyedState::new(DataType::Timestamp, 1);
        state.entry(Value::Timestamp(5), |_| 1).unwrap();
        assert_eq!(state.get(Value::Int(5)), Some(&[1][..]));
        state.entry(Value::Int(6), |_| 2).unwrap();
        assert_eq!(state.key(1), Value::Timestamp(6));
        let nan = Value::Float(f64::NAN);
        assert!(same_key(nan, nan));
    }

    #[test]
    fn clear_keeps_working() {
        let mut state: KeyedState<u8> = KeyedState::new(DataType::String, 1);
        for round in 0..3 {
            for k in ["x", "y", "x", "z"] {
                state.entry(Value::Str(k), |_| 0).unwrap();
            }
            assert_eq!(state.len(), 3, "round {round}");
            assert_eq!(state.key(2), Value::Str("z"));
            state.clear();
            assert!(state.is_empty());
            assert_eq!(state.get(Value::Str("x")), None);
        }
    }

    #[test]
    fn a_state_restored_from_its_snapshot_finds_every_key_in_its_slot() {
        let state = strings(&["b", "a", "c", "a"]);
        let snapshot = state.snapshot();
        let pairs: Vec<_> = snapshot
            .iter()
            .map(|(k, v)| (k.to_string(), v[0]))
            .collect();
        assert_eq!(pairs, [("b".into(), 1), ("a".into(), 6), ("c".into(), 3)]);
        let rebuilt = KeyedState::restore(snapshot.clone(), DataType::String, 1, 10).unwrap();
        assert_eq!(rebuilt.snapshot(), snapshot);
        for slot in 0..3 {
            let key = state.key(slot);
            assert_eq!(rebuilt.find(hash_value(key), key), Some(slot));
        }
    }

    #[test]
    fn a_restore_refuses_snapshots_the_state_could_not_have_made() {
        let snapshot = strings(&["b", "a", "c"]).snapshot();
        let refusal = |change: &dyn Fn(&mut KeyedSnapshot<i64>), width, keys_max| {
            let mut s = snapshot.clone();
            change(&mut s);
            KeyedState::restore(s, DataType::String, width, keys_max).unwrap_err()
        };
        let m = refusal(&|s| assert!(s.keys.push(Value::Str("a"))), 1, 10);
        assert!(m.contains("3 values for 4 keys"), "{m}");
        let m = refusal(
            &|s| {
                assert!(s.keys.push(Value::Str("a")));
                s.values.push(0);
            },
            1,
            10,
        );
        assert!(m.contains("key a is in slots 1 and 3"), "{m}");
        let m = refusal(&|_| {}, 1, 2);
        assert!(m.contains("3 keys, more than the 2"), "{m}");
        let m = refusal(&|_| {}, 2, 10);
        assert!(m.contains("1 values per key, expected 2"), "{m}");
        let m = refusal(&|s| s.keys = Column::new(DataType::Int), 1, 10);
        assert!(m.contains("keys are int, expected string"), "{m}");
    }
}
