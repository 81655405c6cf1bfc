//! Keyed state in RocksDB ([`sluice_storage::state_db`]) for state larger than memory: a
//! bounded [`KeyedState`] in front of the database holds the keys in use, so that operators
//! see the same slot-and-values interface as with in-memory state.
//!
//! A key missing from the cache is read from the database (a bloom filter answers most
//! misses of new keys without a disk read); every key an operator touches is marked dirty.
//! [`RocksKeyed::reserve`] is called before each input batch: when the batch's new keys
//! might not fit, the dirty keys are written back in one write batch and the cache is
//! emptied (slots stay valid within a batch). At a barrier [`RocksKeyed::freeze`] encodes the
//! dirty keys into one write batch (the shard's whole pause) and hands it to a thread of its
//! own, which writes it, flushes the memtable and links the RocksDB checkpoint; until that
//! thread is done the shard serves keys from memory and reads the database but does not
//! write it (it waits if it must). Uploading the checkpoint, incrementally, happens when the
//! frozen state is written, off the shard thread too.
//!
//! Database keys are the key group (2 bytes, big-endian) then the key's bytes, so a key
//! group's keys are one range of the database when state moves to another parallelism.
//! Values are the key's `width` values in postcard.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sluice_storage::blob::SharedBlobStore;
use sluice_storage::state_db::{CheckpointFiles, LocalCheckpoint, StateDb, WriteBatch};

use crate::error::EngineError;
use crate::record::hash::key_group_of;
use crate::record::{DataType, Value};
use crate::state::codec::{encode_snapshot, StateFormat, ROCKSDB_FORMATS};
use crate::state::{FrozenState, KeyedState, SharedObjects};

/// Where an operator's RocksDB state lives and where its checkpoints go.
#[derive(Clone, Debug)]
pub struct RocksEnv {
    /// The operator's scratch directory on local disk.
    pub dir: PathBuf,
    /// Keys held in memory in front of the database.
    pub cache_keys: usize,
    /// Key groups of the job.
    pub key_groups: usize,
    /// The checkpoint storage and the prefix of the job's shared files in it (`None`: the
    /// job takes no checkpoints).
    pub storage: Option<(SharedBlobStore, String)>,
}

/// Keyed state in RocksDB behind an in-memory cache of the keys in use.
pub struct RocksKeyed<S> {
    cache: KeyedState<S>,
    dirty: Vec<bool>,
    db: Arc<StateDb>,
    env: RocksEnv,
    /// The checkpoint being created off the shard thread: the database is not written
    /// until it is done.
    in_flight: Option<std::thread::JoinHandle<Result<(), String>>>,
    /// Databases opened so far (each in its own directory).
    generation: u64,
    /// Checkpoints taken so far (each linked into its own directory).
    taken: u64,
    key: Vec<u8>,
}

impl<S> std::fmt::Debug for RocksKeyed<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksKeyed")
            .field("db", &self.db)
            .field("cached", &self.cache.len())
            .finish()
    }
}

fn backend_err(e: sluice_storage::state_db::StateDbError) -> EngineError {
    EngineError::State(e.to_string())
}

/// Appends the database key of `key` (hash `hash`) to `out`.
fn encode_key(hash: u64, key: Value<'_>, key_groups: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&(key_group_of(hash, key_groups) as u16).to_be_bytes());
    match key {
        // The sign bit flipped: keys sort as numbers within a key group.
        Value::Int(x) | Value::Timestamp(x) => {
            out.extend_from_slice(&((x as u64) ^ (1 << 63)).to_be_bytes())
        }
        Value::Float(x) => out.extend_from_slice(&x.to_bits().to_be_bytes()),
        Value::Bool(b) => out.push(u8::from(b)),
        Value::Str(s) => out.extend_from_slice(s.as_bytes()),
    }
}

/// The key of type `key_type` a database key holds, or what is wrong with it.
fn decode_key(bytes: &[u8], key_type: DataType) -> Result<Value<'_>, String> {
    let body = bytes.get(2..).ok_or("a key shorter than its key group")?;
    let eight = || -> Result<[u8; 8], String> {
        body.try_into()
            .map_err(|_| format!("a {key_type} key of {} bytes", body.len()))
    };
    Ok(match key_type {
        DataType::Int => Value::Int((u64::from_be_bytes(eight()?) ^ (1 << 63)) as i64),
        DataType::Timestamp => Value::Timestamp((u64::from_be_bytes(eight()?) ^ (1 << 63)) as i64),
        DataType::Float => Value::Float(f64::from_bits(u64::from_be_bytes(eight()?))),
        DataType::Bool => match body {
            [b] => Value::Bool(*b != 0),
            _ => return Err(format!("a bool key of {} bytes", body.len())),
        },
        DataType::String => Value::Str(
            std::str::from_utf8(body)
                .map_err(|e| format!("a string key that is not UTF-8: {e}"))?,
        ),
    })
}

impl<S: Serialize + DeserializeOwned + Clone> RocksKeyed<S> {
    /// Creates empty state for keys of type `key_type`, `width` values each, in `env.dir`.
    pub fn create(key_type: DataType, width: usize, env: RocksEnv) -> Result<Self, EngineError> {
        let db = StateDb::create(&env.dir.join("0")).map_err(backend_err)?;
        Ok(Self {
            cache: KeyedState::with_keys_max(key_type, width, env.cache_keys.max(1)),
            dirty: Vec::new(),
            db: Arc::new(db),
            env,
            in_flight: None,
            generation: 0,
            taken: 0,
            key: Vec::new(),
        })
    }

    /// Returns the type of the keys.
    pub fn key_type(&self) -> DataType {
        self.cache.key_type()
    }

    /// Returns the keys held in memory.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Makes room for `new_keys` more keys in memory: when they might not fit, writes the
    /// dirty keys back and empties the cache (slots handed out before are then invalid).
    pub fn reserve(&mut self, new_keys: usize) -> Result<(), EngineError> {
        if self.cache.len() + new_keys > self.cache.keys_max() {
            self.write_back()?;
            self.cache.clear();
            self.dirty.clear();
            if new_keys > self.cache.keys_max() {
                // A batch with more keys than the cache holds: the cache grows to it.
                self.cache =
                    KeyedState::with_keys_max(self.cache.key_type(), self.cache.width(), new_keys);
            }
        }
        Ok(())
    }

    /// Writes the dirty keys to the database; they stay cached, clean.
    pub fn write_back(&mut self) -> Result<(), EngineError> {
        self.settle()?;
        let batch = self.dirty_batch()?;
        if !batch.is_empty() {
            self.db.write(batch).map_err(backend_err)?;
        }
        Ok(())
    }

    /// The dirty keys and their values as one write batch; they are clean afterwards.
    fn dirty_batch(&mut self) -> Result<WriteBatch, EngineError> {
        let mut batch = WriteBatch::default();
        let mut value = Vec::new();
        for slot in 0..self.cache.len() {
            if !std::mem::take(&mut self.dirty[slot]) {
                continue;
            }
            self.key.clear();
            encode_key(
                self.cache.hash(slot),
                self.cache.key(slot),
                self.env.key_groups,
                &mut self.key,
            );
            value.clear();
            value = postcard::to_extend(self.cache.values(slot), value).map_err(|e| {
                EngineError::State(format!("cannot encode the state of a key: {e}"))
            })?;
            batch.put(&self.key, &value);
        }
        Ok(batch)
    }

    /// Waits for the checkpoint being created, if any; its failure fails the state (the
    /// keys it was to write are no longer dirty in memory).
    fn settle(&mut self) -> Result<(), EngineError> {
        let Some(thread) = self.in_flight.take() else {
            return Ok(());
        };
        match thread.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(EngineError::State(format!(
                "a checkpoint could not write the state: {e}"
            ))),
            Err(_) => Err(EngineError::State(
                "the checkpoint thread panicked while writing the state".into(),
            )),
        }
    }

    /// Returns the slot of `key` (hash `hash`) in memory and whether the key is new, reading
    /// it from the database when it is not in memory, or making its values with `init`.
    /// Refuses a key of another type, or one more key than [`Self::reserve`] made room for.
    pub fn slot_hashed(
        &mut self,
        hash: u64,
        key: Value<'_>,
        mut init: impl FnMut(usize) -> S,
    ) -> Result<(usize, bool), EngineError> {
        if let Some(slot) = self.cache.find(hash, key) {
            self.dirty[slot] = true;
            return Ok((slot, false));
        }
        self.key.clear();
        encode_key(hash, key, self.env.key_groups, &mut self.key);
        let stored = self.db.get(&self.key).map_err(backend_err)?;
        let (slot, new) = match stored {
            Some(bytes) => {
                let values: Vec<S> = postcard::from_bytes(&bytes).map_err(|e| {
                    EngineError::State(format!(
                        "the stored state of key {key} does not decode: {e}"
                    ))
                })?;
                if values.len() != self.cache.width() {
                    return Err(EngineError::State(format!(
                        "key {key} has {} stored values, expected {}",
                        values.len(),
                        self.cache.width()
                    )));
                }
                let (slot, _) = self
                    .cache
                    .slot_hashed(hash, key, |i| values[i].clone())
                    .map_err(|e| EngineError::State(e.to_string()))?;
                (slot, false)
            }
            None => {
                let (slot, _) = self
                    .cache
                    .slot_hashed(hash, key, &mut init)
                    .map_err(|e| EngineError::State(e.to_string()))?;
                (slot, true)
            }
        };
        self.dirty.push(true);
        debug_assert_eq!(self.dirty.len(), self.cache.len());
        Ok((slot, new))
    }

    /// Returns the values of a slot [`Self::slot_hashed`] returned.
    pub fn values_mut(&mut self, slot: usize) -> &mut [S] {
        self.cache.values_mut(slot)
    }

    /// Visits up to `limit` (at least one) keys (all in memory written back first) in database order,
    /// starting after `cursor` (`None`: from the first); returns the cursor after the last
    /// key visited, or `None` when every key was visited.
    pub fn visit(
        &mut self,
        cursor: Option<&[u8]>,
        limit: usize,
        mut f: impl FnMut(Value<'_>, &[S]),
    ) -> Result<Option<Vec<u8>>, EngineError> {
        self.write_back()?;
        // The smallest key after `cursor` is `cursor` followed by a zero byte.
        let start = cursor.map(|c| [c, &[0]].concat()).unwrap_or_default();
        let key_type = self.cache.key_type();
        let mut last = None;
        for (n, item) in self.db.iter_from(&start).enumerate() {
            if n == limit.max(1) {
                return Ok(last);
            }
            let (k, v) = item.map_err(backend_err)?;
            let key = decode_key(&k, key_type)
                .map_err(|m| EngineError::State(format!("a stored key is damaged: {m}")))?;
            let values: Vec<S> = postcard::from_bytes(&v).map_err(|e| {
                EngineError::State(format!(
                    "the stored state of key {key} does not decode: {e}"
                ))
            })?;
            f(key, &values);
            last = Some(k.to_vec());
        }
        Ok(None)
    }

    /// Freezes the state for a checkpoint: takes the dirty keys out of memory as one write
    /// batch, and creates the RocksDB checkpoint on a thread of its own (which writes the
    /// batch, flushes and links the files), to be stored (incrementally) when the returned
    /// state is written. The shard pays for encoding the dirty keys; until the checkpoint
    /// is created it serves keys from memory and reads the database, and waits only if it
    /// must write to it (the cache full, a final emission, the next checkpoint).
    pub fn freeze<H: Serialize + Send + 'static>(
        &mut self,
        operator: &'static str,
        header: H,
    ) -> Result<RocksFrozen<H>, EngineError> {
        let Some((store, prefix)) = self.env.storage.clone() else {
            return Err(EngineError::Checkpoint(format!(
                "{operator}: a checkpoint without checkpoint storage"
            )));
        };
        self.settle()?;
        let batch = self.dirty_batch()?;
        self.taken += 1;
        let (db, id) = (self.db.clone(), self.taken);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("sluice-state-checkpoint".into())
            .spawn(move || {
                let made = (|| {
                    if !batch.is_empty() {
                        db.write(batch)?;
                    }
                    db.checkpoint(id)
                })()
                .map_err(|e| e.to_string());
                // The database is released before the thread ends, so a shard that joins it
                // and ends closes the database itself.
                drop(db);
                let outcome = made.as_ref().map(|_| ()).map_err(Clone::clone);
                let _ = tx.send(made);
                outcome
            })
            .map_err(|e| {
                EngineError::State(format!("{operator}: cannot start a checkpoint thread: {e}"))
            })?;
        self.in_flight = Some(thread);
        Ok(RocksFrozen {
            operator,
            header,
            local: Mutex::new(LocalState::Pending(rx)),
            store,
            prefix,
            shared: Mutex::new(SharedObjects::default()),
        })
    }

    /// Replaces the state with checkpoint `files` (the cache emptied, the database rebuilt
    /// from the checkpoint storage in a new directory).
    pub fn restore(&mut self, files: &CheckpointFiles) -> Result<(), EngineError> {
        let Some((store, _)) = &self.env.storage else {
            return Err(EngineError::Checkpoint(
                "a restore without checkpoint storage".into(),
            ));
        };
        let store = store.clone();
        self.settle()?;
        self.generation += 1;
        let dir = self.env.dir.join(self.generation.to_string());
        self.db = Arc::new(StateDb::restore(&dir, store.as_ref(), files).map_err(|e| {
            EngineError::Checkpoint(format!("the RocksDB state does not restore: {e}"))
        })?);
        self.cache.clear();
        self.dirty.clear();
        Ok(())
    }

    /// The scratch directory of the database in use.
    pub fn dir(&self) -> &Path {
        self.db.dir()
    }
}

/// What an operator on RocksDB state keeps in a checkpoint: its own header (configuration,
/// progress) and the database's checkpoint files.
#[derive(Debug, Serialize, Deserialize)]
pub struct RocksSnapshot<H> {
    /// The operator's header.
    pub header: H,
    /// The database's files.
    pub files: CheckpointFiles,
}

/// An operator's RocksDB state frozen at a barrier: a local RocksDB checkpoint, uploaded
/// when written.
pub struct RocksFrozen<H> {
    operator: &'static str,
    header: H,
    local: Mutex<LocalState>,
    store: SharedBlobStore,
    prefix: String,
    shared: Mutex<SharedObjects>,
}

/// A RocksDB checkpoint being made on its thread, made, or failed.
enum LocalState {
    Pending(std::sync::mpsc::Receiver<Result<LocalCheckpoint, String>>),
    Made(LocalCheckpoint),
    Failed(String),
}

impl<S> Drop for RocksKeyed<S> {
    fn drop(&mut self) {
        // The checkpoint thread holds the database: wait, so it is closed here.
        if let Some(thread) = self.in_flight.take() {
            let _ = thread.join();
        }
    }
}

/// The format version of [`RocksSnapshot`]s.
pub const ROCKS_SNAPSHOT_VERSION: u8 = ROCKSDB_FORMATS | 1;

impl<H> RocksFrozen<H> {
    fn failed(&self, e: &dyn std::fmt::Display) -> EngineError {
        EngineError::Checkpoint(format!("{}: {e}", self.operator))
    }

    /// Waits for the RocksDB checkpoint to be made on its thread and runs `f` on it.
    fn with_made<T>(
        &self,
        f: impl FnOnce(&LocalCheckpoint) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if let LocalState::Pending(rx) = &*local {
            *local = match rx.recv() {
                Ok(Ok(made)) => LocalState::Made(made),
                Ok(Err(e)) => LocalState::Failed(e),
                Err(_) => LocalState::Failed("the checkpoint thread ended early".into()),
            };
        }
        match &*local {
            LocalState::Made(made) => f(made),
            LocalState::Failed(e) => Err(self.failed(e)),
            LocalState::Pending(_) => Err(self.failed(&"the checkpoint was not made")),
        }
    }
}

impl<H: Serialize + Send + 'static> FrozenState for RocksFrozen<H> {
    fn planned_shared_objects(&self) -> Result<Vec<String>, EngineError> {
        self.with_made(|made| made.shared_paths(&self.prefix).map_err(|e| self.failed(&e)))
    }

    fn write_to(&self, out: &mut Vec<u8>) -> Result<(), EngineError> {
        self.with_made(|made| self.upload_and_write(made, out))
    }

    fn size_bytes(&self) -> u64 {
        0
    }

    fn shared_objects(&self) -> SharedObjects {
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl<H: Serialize> RocksFrozen<H> {
    /// Stores the checkpoint's new files and writes its description to `out`.
    fn upload_and_write(
        &self,
        made: &LocalCheckpoint,
        out: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        let uploaded = made
            .upload(self.store.as_ref(), &self.prefix)
            .map_err(|e| self.failed(&e))?;
        *self.shared.lock().unwrap_or_else(|p| p.into_inner()) = SharedObjects {
            paths: uploaded
                .files
                .shared
                .iter()
                .map(|f| f.path.clone())
                .collect(),
            new_bytes: uploaded.new_bytes,
        };
        let snapshot = RocksSnapshot {
            header: &self.header,
            files: uploaded.files,
        };
        encode_snapshot(self.operator, ROCKS_SNAPSHOT_VERSION, &snapshot, out)
    }
}

impl<H: Serialize + DeserializeOwned + Send + 'static> StateFormat for RocksSnapshot<H> {
    const VERSION: u8 = ROCKS_SNAPSHOT_VERSION;

    fn state_bytes(&self) -> u64 {
        self.files.total_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::KeyedStore;

    #[test]
    fn keys_encode_in_order_within_a_key_group_and_decode_back() {
        for (t, keys) in [
            (
                DataType::Int,
                vec![Value::Int(-5), Value::Int(0), Value::Int(7)],
            ),
            (
                DataType::String,
                vec![Value::Str(""), Value::Str("a"), Value::Str("ab")],
            ),
            (DataType::Bool, vec![Value::Bool(false), Value::Bool(true)]),
            (DataType::Float, vec![Value::Float(0.5), Value::Float(2.0)]),
        ] {
            let mut encoded: Vec<Vec<u8>> = Vec::new();
            for k in &keys {
                let mut out = Vec::new();
                encode_key(0, *k, 1, &mut out);
                assert_eq!(decode_key(&out, t).unwrap(), *k);
                encoded.push(out);
            }
            assert!(encoded.windows(2).all(|w| w[0] < w[1]), "{t}: {encoded:?}");
        }
        assert!(decode_key(&[0, 0, 1], DataType::Int).is_err());
        assert!(decode_key(&[0], DataType::String).is_err());
        assert!(decode_key(&[0, 0, 0xff], DataType::String).is_err());
    }

    #[test]
    fn values_survive_the_cache_being_written_back_and_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let env = RocksEnv {
            dir: dir.path().join("op"),
            cache_keys: 2,
            key_groups: 128,
            storage: None,
        };
        let mut state: KeyedStore<i64> =
            KeyedStore::Rocks(Box::new(RocksKeyed::create(DataType::Int, 1, env).unwrap()));
        let mut want = std::collections::HashMap::new();
        for round in 0..50i64 {
            state.reserve(1).unwrap();
            let k = round % 7;
            let v = state.entry("test", Value::Int(k), |_| 0).unwrap();
            v[0] += 1;
            *want.entry(k).or_insert(0) += 1;
            assert_eq!(v[0], want[&k], "round {round} key {k}");
        }
    }
}
