//! Keys of RocksDB state cached in memory: [`CachedKeys`] holds the keys of one namespace
//! that are in use (a bounded [`KeyedState`]) in front of the database, and [`RocksKeyed`]
//! is plain keyed state (reduce, aggregate, sessions): one namespace, the empty one.

use serde::de::DeserializeOwned;
use serde::Serialize;
use sluice_storage::state_db::{CheckpointFiles, WriteBatch};

use super::{decode_key, encode_key, RocksBase, RocksEnv, RocksFrozen};
use crate::error::EngineError;
use crate::record::{DataType, Value};
use crate::state::KeyedState;

/// The keys of one namespace of an operator's RocksDB state that are in use, in memory.
///
/// A key missing from memory is read from the database (a bloom filter answers most misses
/// of new keys without a disk read); every key handed out is marked dirty, and
/// [`Self::take_dirty`] puts the dirty keys into a write batch. Database keys are the
/// namespace's prefix, the key group (2 bytes, big-endian), then the key's bytes, so a key
/// group's keys are one range of each namespace when state moves to another parallelism.
/// Values are the key's `width` values in postcard.
#[derive(Debug)]
pub struct CachedKeys<S> {
    cache: KeyedState<S>,
    dirty: Vec<bool>,
    prefix: Vec<u8>,
    /// Scratch: one database key.
    key: Vec<u8>,
}

/// Decodes the `width` stored values of `key`.
fn decode_values<S: DeserializeOwned>(
    bytes: &[u8],
    width: usize,
    key: Value<'_>,
) -> Result<Vec<S>, EngineError> {
    let values: Vec<S> = postcard::from_bytes(bytes).map_err(|e| {
        EngineError::State(format!(
            "the stored state of key {key} does not decode: {e}"
        ))
    })?;
    if values.len() != width {
        return Err(EngineError::State(format!(
            "key {key} has {} stored values, expected {width}",
            values.len()
        )));
    }
    Ok(values)
}

impl<S: Serialize + DeserializeOwned + Clone> CachedKeys<S> {
    /// No keys in memory yet of the namespace whose database keys start with `prefix`; at
    /// most `keys_max` keys of type `key_type`, `width` values each.
    pub fn new(key_type: DataType, width: usize, keys_max: usize, prefix: Vec<u8>) -> Self {
        Self {
            cache: KeyedState::with_keys_max(key_type, width, keys_max.max(1)),
            dirty: Vec::new(),
            prefix,
            key: Vec::new(),
        }
    }

    /// The keys in memory and their values. Writing values through [`Self::state_mut`] is
    /// allowed only for slots [`Self::slot_hashed`] handed out (those are dirty).
    pub fn state(&self) -> &KeyedState<S> {
        &self.cache
    }

    /// The keys in memory, to update the values of slots [`Self::slot_hashed`] handed out.
    pub fn state_mut(&mut self) -> &mut KeyedState<S> {
        &mut self.cache
    }

    /// The prefix of the namespace's database keys.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    fn db_key(&mut self, hash: u64, key: Value<'_>, key_groups: usize) -> &[u8] {
        self.key.clear();
        self.key.extend_from_slice(&self.prefix);
        encode_key(hash, key, key_groups, &mut self.key);
        &self.key
    }

    /// Returns the slot of `key` (hash `hash`) in memory and whether the key is new, reading
    /// it from `base` when it is not in memory, or making its values with `init`; the key is
    /// dirty afterwards. Refuses a key of another type, or one key more than fit.
    pub fn slot_hashed(
        &mut self,
        base: &RocksBase,
        hash: u64,
        key: Value<'_>,
        mut init: impl FnMut(usize) -> S,
    ) -> Result<(usize, bool), EngineError> {
        if let Some(slot) = self.cache.find(hash, key) {
            self.dirty[slot] = true;
            return Ok((slot, false));
        }
        let width = self.cache.width();
        let db_key = self.db_key(hash, key, base.env.key_groups);
        let stored = base.get(db_key)?;
        let refused = |e: crate::state::KeyRefused| EngineError::State(e.to_string());
        let (slot, new) = match stored {
            Some(bytes) => {
                let values: Vec<S> = decode_values(&bytes, width, key)?;
                let (slot, _) = self
                    .cache
                    .slot_hashed(hash, key, |i| values[i].clone())
                    .map_err(refused)?;
                (slot, false)
            }
            None => {
                let (slot, _) = self
                    .cache
                    .slot_hashed(hash, key, &mut init)
                    .map_err(refused)?;
                (slot, true)
            }
        };
        self.dirty.push(true);
        debug_assert_eq!(self.dirty.len(), self.cache.len());
        Ok((slot, new))
    }

    /// The values of `key` (hash `hash`), from memory or else from `base`, without caching
    /// them.
    pub fn read(
        &mut self,
        base: &RocksBase,
        hash: u64,
        key: Value<'_>,
    ) -> Result<Option<Vec<S>>, EngineError> {
        if let Some(slot) = self.cache.find(hash, key) {
            return Ok(Some(self.cache.values(slot).to_vec()));
        }
        let width = self.cache.width();
        let db_key = self.db_key(hash, key, base.env.key_groups);
        match base.get(db_key)? {
            Some(bytes) => decode_values(&bytes, width, key).map(Some),
            None => Ok(None),
        }
    }

    /// Puts the dirty keys and their values into `batch`; they are clean afterwards.
    pub fn take_dirty(
        &mut self,
        key_groups: usize,
        batch: &mut WriteBatch,
    ) -> Result<(), EngineError> {
        let mut value = Vec::new();
        self.take_dirty_with(key_groups, |_, key, values| {
            value.clear();
            value = postcard::to_extend(values, std::mem::take(&mut value)).map_err(|e| {
                EngineError::State(format!("cannot encode the state of a key: {e}"))
            })?;
            batch.put(key, &value);
            Ok(())
        })
    }

    /// Calls `write(slot, database key, values)` for every dirty key, which is clean
    /// afterwards; for state whose write is more than one put (timers beside it, say).
    pub fn take_dirty_with(
        &mut self,
        key_groups: usize,
        mut write: impl FnMut(usize, &[u8], &[S]) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        for slot in 0..self.cache.len() {
            if !std::mem::take(&mut self.dirty[slot]) {
                continue;
            }
            self.key.clear();
            self.key.extend_from_slice(&self.prefix);
            encode_key(
                self.cache.hash(slot),
                self.cache.key(slot),
                key_groups,
                &mut self.key,
            );
            write(slot, &self.key, self.cache.values(slot))?;
        }
        Ok(())
    }

    /// Returns the number of keys in memory.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Returns whether no key is in memory.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Returns the most keys memory holds before [`Self::clear`] makes room.
    pub fn keys_max(&self) -> usize {
        self.cache.keys_max()
    }

    /// Forgets the keys in memory (write the dirty ones first: [`Self::take_dirty`]); with
    /// room for at least `keys` keys afterwards.
    pub fn clear(&mut self, keys: usize) {
        self.cache.clear();
        self.dirty.clear();
        if keys > self.cache.keys_max() {
            self.cache = KeyedState::with_keys_max(self.cache.key_type(), self.cache.width(), keys);
        }
    }

    /// Decodes a database key of this namespace (prefix taken off) and its values.
    pub fn decode<'a>(
        &self,
        key: &'a [u8],
        values: &[u8],
    ) -> Result<(Value<'a>, Vec<S>), EngineError> {
        let key = decode_key(key, self.cache.key_type())
            .map_err(|m| EngineError::State(format!("a stored key is damaged: {m}")))?;
        Ok((key, decode_values(values, self.cache.width(), key)?))
    }
}

/// Keyed state in RocksDB behind an in-memory cache of the keys in use.
///
/// [`RocksKeyed::reserve`] is called before each input batch: when the batch's new keys
/// might not fit, the dirty keys are written back in one write batch and the cache is
/// emptied (slots stay valid within a batch). At a barrier [`RocksKeyed::freeze`] encodes the
/// dirty keys into one write batch (the shard's whole pause) and hands it to the checkpoint
/// thread ([`RocksBase::freeze`]).
#[derive(Debug)]
pub struct RocksKeyed<S> {
    base: RocksBase,
    keys: CachedKeys<S>,
}

impl<S: Serialize + DeserializeOwned + Clone> RocksKeyed<S> {
    /// Creates empty state for keys of type `key_type`, `width` values each, in `env.dir`.
    pub fn create(key_type: DataType, width: usize, env: RocksEnv) -> Result<Self, EngineError> {
        let keys = CachedKeys::new(key_type, width, env.cache_keys, Vec::new());
        Ok(Self {
            base: RocksBase::create(env)?,
            keys,
        })
    }

    /// Returns the type of the keys.
    pub fn key_type(&self) -> DataType {
        self.keys.cache.key_type()
    }

    /// Returns the keys held in memory.
    pub fn cached(&self) -> usize {
        self.keys.cache.len()
    }

    /// Makes room for `new_keys` more keys in memory: when they might not fit, writes the
    /// dirty keys back and empties the cache (slots handed out before are then invalid).
    pub fn reserve(&mut self, new_keys: usize) -> Result<(), EngineError> {
        if self.keys.cache.len() + new_keys > self.keys.cache.keys_max() {
            self.write_back()?;
            self.keys.clear(new_keys);
        }
        Ok(())
    }

    /// Writes the dirty keys to the database; they stay cached, clean.
    pub fn write_back(&mut self) -> Result<(), EngineError> {
        let mut batch = WriteBatch::default();
        self.keys.take_dirty(self.base.env.key_groups, &mut batch)?;
        self.base.write(batch)
    }

    /// Returns the slot of `key` (hash `hash`) in memory and whether the key is new (see
    /// [`CachedKeys::slot_hashed`]).
    pub fn slot_hashed(
        &mut self,
        hash: u64,
        key: Value<'_>,
        init: impl FnMut(usize) -> S,
    ) -> Result<(usize, bool), EngineError> {
        self.keys.slot_hashed(&self.base, hash, key, init)
    }

    /// Returns the values of a slot [`Self::slot_hashed`] returned.
    pub fn values_mut(&mut self, slot: usize) -> &mut [S] {
        self.keys.cache.values_mut(slot)
    }

    /// Visits up to `limit` (at least one) keys (all in memory written back first) in
    /// database order, starting after `cursor` (`None`: from the first); returns the cursor
    /// after the last key visited, or `None` when every key was visited.
    pub fn visit(
        &mut self,
        cursor: Option<&[u8]>,
        limit: usize,
        mut f: impl FnMut(Value<'_>, &[S]),
    ) -> Result<Option<Vec<u8>>, EngineError> {
        self.write_back()?;
        let mut last = None;
        for (n, item) in self.base.scan(&[], cursor).enumerate() {
            if n == limit.max(1) {
                return Ok(last);
            }
            let (k, v) = item?;
            let (key, values) = self.keys.decode(&k, &v)?;
            f(key, &values);
            last = Some(k.to_vec());
        }
        Ok(None)
    }

    /// Freezes the state for a checkpoint: the dirty keys, taken out of memory as one write
    /// batch, and the database as of them (see [`RocksBase::freeze`]).
    pub fn freeze<H: Serialize + Send + 'static>(
        &mut self,
        operator: &'static str,
        header: H,
    ) -> Result<RocksFrozen<H>, EngineError> {
        let mut batch = WriteBatch::default();
        self.keys.take_dirty(self.base.env.key_groups, &mut batch)?;
        self.base.freeze(operator, header, batch)
    }

    /// Replaces the state with checkpoint `files` (the cache emptied, the database rebuilt
    /// from the checkpoint storage in a new directory).
    pub fn restore(&mut self, files: &CheckpointFiles) -> Result<(), EngineError> {
        self.base.restore(files)?;
        self.keys.clear(0);
        Ok(())
    }

    /// The scratch directory of the database in use.
    pub fn dir(&self) -> &std::path::Path {
        self.base.dir()
    }
}
