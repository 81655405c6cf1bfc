//! Operator state in RocksDB ([`sluice_storage::state_db`]) for state larger than memory.
//!
//! [`RocksBase`] is an operator's database and the checkpoint being made of it; the keys in
//! use are cached in memory in front of it ([`CachedKeys`], one per namespace: a window's
//! pane, say), so that operators see the same slot-and-values interface as with in-memory
//! state. [`RocksKeyed`] is plain keyed state (one namespace).
//!
//! At a barrier the operator encodes its dirty keys into one write batch (the shard's whole
//! pause) and hands it to a thread of its own ([`RocksBase::freeze`]), which writes it,
//! flushes the memtable and links the RocksDB checkpoint; until that thread is done the shard
//! serves keys from memory and reads the database but does not write it (it waits if it
//! must). Uploading the checkpoint, incrementally, happens when the frozen state is written,
//! off the shard thread too.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sluice_storage::blob::SharedBlobStore;
use sluice_storage::state_db::{CheckpointFiles, KeyValue, LocalCheckpoint, StateDb, WriteBatch};

use crate::error::EngineError;
use crate::record::hash::key_group_of;
use crate::record::{DataType, Value};
use crate::state::codec::{encode_snapshot, StateFormat, ROCKSDB_FORMATS};
use crate::state::{FrozenState, SharedObjects};

mod cached;
pub mod rows;
pub use cached::{CachedKeys, RocksKeyed};

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

fn backend_err(e: sluice_storage::state_db::StateDbError) -> EngineError {
    EngineError::State(e.to_string())
}

/// Appends the database key of `key` (hash `hash`) to `out`.
pub(crate) fn encode_key(hash: u64, key: Value<'_>, key_groups: usize, out: &mut Vec<u8>) {
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
pub(crate) fn decode_key(bytes: &[u8], key_type: DataType) -> Result<Value<'_>, String> {
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

/// An operator's RocksDB database, with the checkpoint being created from it: the part of
/// RocksDB state that every layout of keys shares ([`RocksKeyed`] for plain keyed state,
/// namespaces of [`CachedKeys`] for state kept per window or per timer).
pub struct RocksBase {
    db: Arc<StateDb>,
    env: RocksEnv,
    /// The checkpoint being created off the shard thread: the database is not written
    /// until it is done.
    in_flight: Option<std::thread::JoinHandle<Result<(), String>>>,
    /// Databases opened so far (each in its own directory).
    generation: u64,
    /// Checkpoints taken so far (each linked into its own directory).
    taken: u64,
}

impl std::fmt::Debug for RocksBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksBase").field("db", &self.db).finish()
    }
}

impl Drop for RocksBase {
    fn drop(&mut self) {
        // The checkpoint thread holds the database: wait, so it is closed here.
        if let Some(thread) = self.in_flight.take() {
            let _ = thread.join();
        }
    }
}

/// Returns the namespace prefix of `ns` (a window's start, a timer's time): eight bytes that
/// sort as the numbers do.
pub fn namespace_prefix(ns: i64) -> [u8; 8] {
    ((ns as u64) ^ (1 << 63)).to_be_bytes()
}

/// The smallest byte string after every string that starts with `prefix`, if there is one.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl RocksBase {
    /// Creates an empty database in `env.dir`.
    pub fn create(env: RocksEnv) -> Result<Self, EngineError> {
        let db = StateDb::create(&env.dir.join("0")).map_err(backend_err)?;
        Ok(Self {
            db: Arc::new(db),
            env,
            in_flight: None,
            generation: 0,
            taken: 0,
        })
    }

    /// Where the database lives and where its checkpoints go.
    pub fn env(&self) -> &RocksEnv {
        &self.env
    }

    /// Waits for the checkpoint being created, if any; its failure fails the state (the
    /// keys it was to write are no longer dirty in memory).
    pub fn settle(&mut self) -> Result<(), EngineError> {
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

    /// Returns whether no checkpoint is being created (joining the thread of one that is
    /// done): the database then holds every batch handed to [`Self::freeze`].
    pub fn try_settle(&mut self) -> Result<bool, EngineError> {
        match &self.in_flight {
            Some(thread) if !thread.is_finished() => Ok(false),
            _ => self.settle().map(|()| true),
        }
    }

    /// The value stored for `key` (reading never waits for a checkpoint being created).
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        self.db.get(key).map_err(backend_err)
    }

    /// Applies `batch`, once the checkpoint being created (if any) is done.
    pub fn write(&mut self, batch: WriteBatch) -> Result<(), EngineError> {
        self.settle()?;
        if !batch.is_empty() {
            self.db.write(batch).map_err(backend_err)?;
        }
        Ok(())
    }

    /// Adds to `batch` the deletion of every key that starts with `prefix`.
    pub fn delete_prefix_into(
        &mut self,
        prefix: &[u8],
        batch: &mut WriteBatch,
    ) -> Result<(), EngineError> {
        match prefix_end(prefix) {
            Some(end) => batch.delete_range(prefix, &end[..]),
            None => {
                // The keys are listed: those of a checkpoint being created must be there.
                self.settle()?;
                for item in self.scan(prefix, None) {
                    let (key, _) = item?;
                    batch.delete([prefix, &key[..]].concat());
                }
            }
        }
        Ok(())
    }

    /// Every key that starts with `prefix` (the prefix taken off) and its value, in key
    /// order, from the first key after `after` (`None`: from the first).
    pub fn scan<'a>(
        &'a self,
        prefix: &'a [u8],
        after: Option<&[u8]>,
    ) -> impl Iterator<Item = Result<KeyValue, EngineError>> + 'a {
        // The smallest key after `after` is `after` followed by a zero byte.
        match after {
            Some(after) => self.scan_from(prefix, &[after, &[0]].concat()),
            None => self.scan_from(prefix, &[]),
        }
    }

    /// Like [`Self::scan`], from the first key at or after `from` (prefix taken off).
    pub fn scan_from<'a>(
        &'a self,
        prefix: &'a [u8],
        from: &[u8],
    ) -> impl Iterator<Item = Result<KeyValue, EngineError>> + 'a {
        self.db
            .iter_from(&[prefix, from].concat())
            .map_while(move |item| match item {
                Ok((k, v)) => k
                    .strip_prefix(prefix)
                    .map(|rest| Ok((Box::<[u8]>::from(rest), v))),
                Err(e) => Some(Err(backend_err(e))),
            })
    }

    /// Freezes the state for a checkpoint: creates the RocksDB checkpoint on a thread of its
    /// own, which writes `batch` (the keys dirty in memory), flushes and links the files, to
    /// be stored (incrementally) when the returned state is written. Until the checkpoint
    /// is created the shard reads the database and does not write it ([`Self::write`] waits).
    pub fn freeze<H: Serialize + Send + 'static>(
        &mut self,
        operator: &'static str,
        header: H,
        batch: WriteBatch,
    ) -> Result<RocksFrozen<H>, EngineError> {
        let Some((store, prefix)) = self.env.storage.clone() else {
            return Err(EngineError::Checkpoint(format!(
                "{operator}: a checkpoint without checkpoint storage"
            )));
        };
        self.settle()?;
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

    /// Replaces the database with checkpoint `files`, rebuilt from the checkpoint storage in
    /// a new directory.
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
