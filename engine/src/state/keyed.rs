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
use std::sync::Arc;

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

/// Slots per chunk: a checkpoint shares whole chunks, and a write to a shared chunk copies
/// that one chunk.
pub const KEYED_CHUNK_SLOTS: usize = 1 << KEYED_CHUNK_SHIFT;

/// `log2(KEYED_CHUNK_SLOTS)`: slot `s` is in chunk `s >> KEYED_CHUNK_SHIFT`.
const KEYED_CHUNK_SHIFT: u32 = 12;

// A full state fills its chunks exactly.
const _: () = assert!(KEYED_STATE_KEYS_MAX.is_multiple_of(KEYED_CHUNK_SLOTS));

mod chunk;
#[cfg(test)]
mod tests;

pub use chunk::KeyChunk;
use chunk::Part;

/// Per-key state: `width` values of type `S` for each distinct key.
#[derive(Debug, Clone)]
pub struct KeyedState<S> {
    heads: HashMap<u64, u32, BuildHasherDefault<PrehashedHasher>>,
    /// Slot `s` is `parts[s >> KEYED_CHUNK_SHIFT]`'s slot `s % KEYED_CHUNK_SLOTS`; every part
    /// but the last holds exactly [`KEYED_CHUNK_SLOTS`] slots.
    parts: Vec<Part<S>>,
    /// Emptied chunks whose buffers the next new chunks reuse.
    spare: Vec<KeyChunk<S>>,
    hashes: Vec<u64>,
    next: Vec<u32>,
    key_type: DataType,
    width: usize,
    keys_max: usize,
}

/// A [`KeyedState`] as a checkpoint keeps it: its chunks, shared with the live state until
/// the live state writes them (the freeze copies nothing), then its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyedSnapshot<S> {
    /// How many values each key has.
    pub width: u32,
    /// The keys and values, in slot order (chunks of any size on restore).
    pub chunks: Vec<Arc<KeyChunk<S>>>,
}

impl<S> KeyedSnapshot<S> {
    /// Visits every key and its values, in slot order; a chunk whose values do not make
    /// `width` per key (a restore refuses it) is visited up to its last whole key.
    pub fn iter(&self) -> impl Iterator<Item = (Value<'_>, &[S])> {
        let width = self.width as usize;
        self.chunks.iter().flat_map(move |chunk| {
            let whole = chunk
                .values
                .len()
                .checked_div(width)
                .unwrap_or(chunk.keys.len());
            (0..chunk.keys.len().min(whole))
                .map(move |i| (chunk.keys.get(i), &chunk.values[i * width..(i + 1) * width]))
        })
    }

    /// Returns the number of keys.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.keys.len()).sum()
    }

    /// Returns whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximately how many bytes of memory the snapshot holds, given what one value takes.
    pub fn state_bytes(&self, value_bytes: impl Fn(&S) -> u64) -> u64 {
        let chunk = |c: &Arc<KeyChunk<S>>| {
            c.keys.state_bytes() + c.values.iter().map(&value_bytes).sum::<u64>()
        };
        self.chunks.iter().map(chunk).sum()
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
            parts: Vec::new(),
            spare: Vec::new(),
            hashes: Vec::new(),
            next: Vec::new(),
            key_type,
            width,
            keys_max: keys_max.min(KEYED_STATE_KEYS_MAX),
        }
    }

    /// Returns the type of the keys.
    pub fn key_type(&self) -> DataType {
        self.key_type
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

    #[inline(always)]
    fn chunk(&self, slot: usize) -> (&KeyChunk<S>, usize) {
        let part = &self.parts[slot >> KEYED_CHUNK_SHIFT];
        (part.get(), slot & (KEYED_CHUNK_SLOTS - 1))
    }

    /// Returns the key of `slot`.
    #[inline(always)]
    pub fn key(&self, slot: usize) -> Value<'_> {
        let (chunk, i) = self.chunk(slot);
        chunk.keys.get(i)
    }

    /// Returns the hash of the key of `slot`.
    #[inline(always)]
    pub fn hash(&self, slot: usize) -> u64 {
        self.hashes[slot]
    }

    /// Returns the values of `slot`.
    #[inline(always)]
    pub fn values(&self, slot: usize) -> &[S] {
        let (chunk, i) = self.chunk(slot);
        &chunk.values[i * self.width..(i + 1) * self.width]
    }

    /// Returns the slot of `key`, whose hash is `hash`, if it is there.
    pub fn find(&self, hash: u64, key: Value<'_>) -> Option<usize> {
        let mut slot = *self.heads.get(&hash)?;
        loop {
            if same_key(self.key(slot as usize), key) {
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
}

impl<S: Clone> KeyedSnapshot<S> {
    /// Returns the first chunk, the snapshot's own from now on (tests damage snapshots).
    #[cfg(test)]
    pub(crate) fn first_chunk_mut(&mut self) -> &mut KeyChunk<S> {
        Arc::make_mut(&mut self.chunks[0])
    }
}

impl<S: Clone> KeyedState<S> {
    /// Returns the values of `slot` mutably (copying its chunk first if a checkpoint still
    /// shares it).
    #[inline(always)]
    pub fn values_mut(&mut self, slot: usize) -> &mut [S] {
        let width = self.width;
        let i = slot & (KEYED_CHUNK_SLOTS - 1);
        let chunk = self.parts[slot >> KEYED_CHUNK_SHIFT].get_mut();
        &mut chunk.values[i * width..(i + 1) * width]
    }

    /// Returns value `j` of `slot` mutably: [`Self::values_mut`] for operators that update
    /// one value of many slots at a time.
    #[inline(always)]
    pub fn value_mut(&mut self, slot: usize, j: usize) -> &mut S {
        debug_assert!(j < self.width, "value {j} of {}", self.width);
        let at = (slot & (KEYED_CHUNK_SLOTS - 1)) * self.width + j;
        &mut self.parts[slot >> KEYED_CHUNK_SHIFT].get_mut().values[at]
    }

    /// Calls `update(r, value j of slot slots[r])` for every row `r` of `rows`, in order (for
    /// operators that update one value of many slots at a time). A state of one chunk, the
    /// common case of window panes, is indexed directly.
    #[inline(always)]
    pub fn update_rows(
        &mut self,
        j: usize,
        slots: &[u32],
        rows: std::ops::Range<usize>,
        mut update: impl FnMut(usize, &mut S),
    ) {
        debug_assert!(j < self.width, "value {j} of {}", self.width);
        let width = self.width;
        if let [part] = &mut self.parts[..] {
            let values = &mut part.get_mut().values;
            for r in rows {
                update(r, &mut values[slots[r] as usize * width + j]);
            }
        } else {
            for r in rows {
                update(r, self.value_mut(slots[r] as usize, j));
            }
        }
    }

    /// Returns the key of `slot` and its values mutably.
    pub fn key_values_mut(&mut self, slot: usize) -> (Value<'_>, &mut [S]) {
        let width = self.width;
        let chunk = self.parts[slot >> KEYED_CHUNK_SHIFT].get_mut();
        let i = slot & (KEYED_CHUNK_SLOTS - 1);
        (
            chunk.keys.get(i),
            &mut chunk.values[i * width..(i + 1) * width],
        )
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
                if same_key(self.key(slot as usize), key) {
                    return Ok((slot as usize, false));
                }
                last = slot;
                slot = self.next[slot as usize];
                if slot == NO_SLOT {
                    break;
                }
            }
        }
        if self.hashes.len() >= self.keys_max {
            return Err(KeyRefused::Full {
                keys_max: self.keys_max,
            });
        }
        if !fits(key.data_type(), self.key_type) {
            return Err(KeyRefused::WrongType {
                key: key.to_owned_value(),
                expected: self.key_type,
            });
        }
        let new = self.push_slot(hash, key, (0..self.width).map(init));
        self.next.push(NO_SLOT);
        if last == NO_SLOT {
            self.heads.insert(hash, new as u32);
        } else {
            self.next[last as usize] = new as u32;
        }
        Ok((new, true))
    }

    /// Appends a slot for `key` (hash `hash`, of a type that [`fits`]) with `values` (`width`
    /// of them), starting a chunk when the last is full; returns the slot. The caller links it
    /// into the hash chains.
    fn push_slot(&mut self, hash: u64, key: Value<'_>, values: impl Iterator<Item = S>) -> usize {
        let slot = self.hashes.len();
        if slot & (KEYED_CHUNK_SLOTS - 1) == 0 {
            let chunk = match self.spare.pop() {
                Some(chunk) => chunk,
                // The first chunk grows with the state, so that small states stay small.
                None if slot == 0 => KeyChunk::empty(self.key_type),
                None => KeyChunk {
                    keys: Column::new(self.key_type),
                    values: Vec::with_capacity(KEYED_CHUNK_SLOTS * self.width),
                },
            };
            self.parts.push(Part::Owned(chunk));
        }
        let last = self.parts.len() - 1;
        let chunk = self.parts[last].get_mut();
        let pushed = chunk.keys.push(key);
        debug_assert!(pushed, "a key that fits the key type is pushed");
        chunk.values.extend(values);
        self.hashes.push(hash);
        slot
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
        for part in &mut self.parts {
            let chunk = part.get_mut();
            for i in 0..chunk.keys.len() {
                let values = &mut chunk.values[i * width..(i + 1) * width];
                kept.push(keep(chunk.keys.get(i), values));
            }
        }
        if kept.iter().all(|k| *k) {
            return;
        }
        let parts = std::mem::take(&mut self.parts);
        let hashes = std::mem::take(&mut self.hashes);
        let mut slot = 0;
        for part in parts {
            let KeyChunk {
                mut keys,
                mut values,
            } = part.into_owned();
            let mut values_in = values.drain(..);
            for i in 0..keys.len() {
                let these = values_in.by_ref().take(width);
                if kept[slot] {
                    self.push_slot(hashes[slot], keys.get(i), these);
                } else {
                    these.for_each(drop);
                }
                slot += 1;
            }
            drop(values_in);
            keys.clear();
            self.spare.push(KeyChunk { keys, values });
        }
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

    /// Removes every key, keeping the buffers of the chunks no checkpoint shares.
    pub fn clear(&mut self) {
        self.heads.clear();
        self.hashes.clear();
        self.next.clear();
        for part in self.parts.drain(..) {
            if let Part::Owned(mut chunk) = part {
                chunk.keys.clear();
                chunk.values.clear();
                self.spare.push(chunk);
            }
        }
    }

    /// Approximately how many bytes of memory the state takes, given what one value takes
    /// beyond its own size.
    pub fn state_bytes(&self, value_heap_bytes: impl Fn(&S) -> u64) -> u64 {
        // A hash-table entry is a hash, a slot and a control byte.
        let heads = self.heads.capacity() * 13;
        let slots = self.hashes.capacity() * 8 + self.next.capacity() * 4;
        let chunks: u64 = (self.parts.iter().map(Part::get))
            .chain(&self.spare)
            .map(|c| c.state_bytes(&value_heap_bytes))
            .sum();
        (heads + slots) as u64 + chunks
    }

    /// Freezes the keys and values for a checkpoint without copying them: the snapshot shares
    /// the state's chunks, and the state copies a chunk when it next writes it while the
    /// snapshot is still held. The hash table is not kept; [`Self::restore`] derives it again.
    pub fn snapshot(&mut self) -> KeyedSnapshot<S> {
        KeyedSnapshot {
            width: self.width as u32,
            chunks: self.parts.iter_mut().map(Part::share).collect(),
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
            width: saved_width,
            chunks,
        } = snapshot;
        if saved_width as usize != width {
            return Err(format!("{saved_width} values per key, expected {width}"));
        }
        let mut state = Self::with_keys_max(key_type, width, keys_max);
        let keys: usize = chunks.iter().map(|c| c.keys.len()).sum();
        if keys > state.keys_max {
            return Err(format!(
                "{keys} keys, more than the {} keyed state holds (keyed_state_keys_max)",
                state.keys_max
            ));
        }
        for (c, chunk) in chunks.into_iter().enumerate() {
            let KeyChunk { keys, values } = Arc::try_unwrap(chunk).unwrap_or_else(|c| (*c).clone());
            if keys.data_type() != key_type {
                return Err(format!(
                    "chunk {c}: the keys are {}, expected {key_type}",
                    keys.data_type()
                ));
            }
            if keys.len().checked_mul(width) != Some(values.len()) {
                return Err(format!(
                    "chunk {c}: {} values for {} keys of {width} values",
                    values.len(),
                    keys.len()
                ));
            }
            let mut values = values.into_iter();
            for i in 0..keys.len() {
                let key = keys.get(i);
                state.push_slot(hash_value(key), key, values.by_ref().take(width));
            }
        }
        state.relink();
        // Chains are in slot order, so a key found in an earlier slot is there twice.
        for slot in 0..state.len() {
            let key = state.key(slot);
            match state.find(state.hashes[slot], key) {
                Some(first) if first != slot => {
                    return Err(format!("key {key} is in slots {first} and {slot}"));
                }
                _ => {}
            }
        }
        Ok(state)
    }
}
