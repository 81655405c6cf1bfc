//! The RocksDB state backend of the stream engine: one database per stateful operator per
//! shard, holding keyed state larger than memory, and its incremental checkpoints.
//!
//! A [`StateDb`] lives in a local scratch directory of the shard. Writes skip the WAL: the
//! state is made durable only by checkpoints, which are RocksDB checkpoints (a flush of the
//! memtable and hard links to the live SST files, taken on the shard thread at a barrier,
//! see [`StateDb::checkpoint`]) uploaded off the shard thread ([`LocalCheckpoint::upload`]).
//!
//! Incremental: SST files never change once written, so an upload stores only the SST files
//! no earlier checkpoint of this database stored. Each is a shared object named
//! `{shared_prefix}/{instance}-{file}`, where `instance` is random per opened database (file
//! numbers restart in a database restored elsewhere, names must not collide); the small
//! files (MANIFEST, CURRENT, OPTIONS) are copied into every checkpoint's own description
//! ([`CheckpointFiles`]). A database restored from a checkpoint ([`StateDb::restore`])
//! downloads its SST files and knows they are stored, so its next checkpoint uploads only
//! what it wrote since. Every object is sealed with a CRC32 ([`crate::blob::seal`]), so a
//! damaged file is refused at restore.
//!
//! Which shared objects a checkpoint references is part of [`CheckpointFiles`]; the engine
//! deletes a shared object when no retained checkpoint references it any more.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{
    BlockBasedOptions, DBCompressionType, Direction, IteratorMode, Options, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};

use crate::blob::{seal, unseal, BlobStore};

/// Puts and deletes applied together by [`StateDb::write`].
pub use rocksdb::WriteBatch;

/// Why the state backend failed; names the directory or object and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StateDbError(String);

impl StateDbError {
    fn at(what: impl std::fmt::Display, e: impl std::fmt::Display) -> Self {
        Self(format!("{what}: {e}"))
    }
}

type Result<T> = std::result::Result<T, StateDbError>;

/// One SST file of a checkpoint, stored once and shared by every checkpoint that has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedFile {
    /// The file's name in the database directory (`000123.sst`).
    pub name: String,
    /// The object it is stored as.
    pub path: String,
    /// Bytes of the file.
    pub bytes: u64,
}

/// What a checkpoint of a [`StateDb`] consists of.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointFiles {
    /// The SST files, stored as shared objects.
    pub shared: Vec<SharedFile>,
    /// The other files (MANIFEST, CURRENT, OPTIONS), by name, with their contents.
    pub private: Vec<(String, Vec<u8>)>,
}

impl CheckpointFiles {
    /// Bytes of the database this checkpoint describes.
    pub fn total_bytes(&self) -> u64 {
        self.shared.iter().map(|f| f.bytes).sum::<u64>()
            + self
                .private
                .iter()
                .map(|(_, b)| b.len() as u64)
                .sum::<u64>()
    }
}

/// What one upload stored: the checkpoint's files and how many bytes were new.
#[derive(Debug)]
pub struct Uploaded {
    /// The checkpoint.
    pub files: CheckpointFiles,
    /// Bytes of SST files uploaded by this checkpoint (the rest were stored before).
    pub new_bytes: u64,
}

/// A key and its value, as read from the database.
pub type KeyValue = (Box<[u8]>, Box<[u8]>);

/// SST files already stored, by file name, for one database instance.
type Stored = Arc<Mutex<HashMap<String, SharedFile>>>;

/// An operator's keyed state in RocksDB, in a local directory it owns.
pub struct StateDb {
    // Dropped (closed) before `_scratch` removes its files.
    db: DB,
    dir: PathBuf,
    write: WriteOptions,
    instance: String,
    stored: Stored,
    _scratch: Scratch,
}

/// Removes a directory when dropped, and its parent if that is left empty: a database's
/// files and a checkpoint's links are scratch, everything worth keeping is in checkpoints.
#[derive(Debug)]
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = remove_dir(&self.0) {
            tracing::warn!(error = %e, "cannot remove a state backend directory");
        }
        if let Some(parent) = self.0.parent() {
            // Fails while the parent holds something else (another checkpoint): kept then.
            let _ = std::fs::remove_dir(parent);
        }
    }
}

impl std::fmt::Debug for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDb").field("dir", &self.dir).finish()
    }
}

fn options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_compression_type(DBCompressionType::Lz4);
    // Shards own the cores: one background flush or compaction at a time.
    opts.set_max_background_jobs(2);
    opts.set_write_buffer_size(4 << 20);
    opts.set_max_write_buffer_number(2);
    let mut table = BlockBasedOptions::default();
    // Most lookups of a growing key space miss: a bloom filter answers them from memory.
    table.set_bloom_filter(10.0, false);
    opts.set_block_based_table_factory(&table);
    opts
}

fn data_dir(dir: &Path) -> PathBuf {
    dir.join("db")
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StateDbError::at(dir.display(), e)),
    }
}

impl StateDb {
    /// Creates an empty database in `dir` (created if missing; whatever it held is removed).
    pub fn create(dir: &Path) -> Result<Self> {
        remove_dir(dir)?;
        std::fs::create_dir_all(dir).map_err(|e| StateDbError::at(dir.display(), e))?;
        Self::open(dir, HashMap::new())
    }

    fn open(dir: &Path, stored: HashMap<String, SharedFile>) -> Result<Self> {
        let path = data_dir(dir);
        let db = DB::open(&options(), &path)
            .map_err(|e| StateDbError::at(format!("cannot open {}", path.display()), e))?;
        let mut write = WriteOptions::default();
        // Durability comes from checkpoints; a lost shard restores from one.
        write.disable_wal(true);
        Ok(Self {
            db,
            dir: dir.to_path_buf(),
            write,
            instance: format!("{:016x}", rand::random::<u64>()),
            stored: Arc::new(Mutex::new(stored)),
            _scratch: Scratch(path),
        })
    }

    /// Rebuilds the database of checkpoint `files` in `dir` (whatever it held is removed),
    /// reading the shared files from `store`; refuses a missing or damaged file.
    pub fn restore(dir: &Path, store: &dyn BlobStore, files: &CheckpointFiles) -> Result<Self> {
        remove_dir(dir)?;
        let path = data_dir(dir);
        std::fs::create_dir_all(&path).map_err(|e| StateDbError::at(path.display(), e))?;
        let mut stored = HashMap::new();
        for file in &files.shared {
            check_name(&file.name)?;
            let sealed = store
                .get(&file.path)
                .map_err(|e| StateDbError::at("cannot read a checkpoint file", e))?;
            let bytes = unseal(&file.path, &sealed)
                .map_err(|e| StateDbError::at("a checkpoint file is damaged", e))?;
            if bytes.len() as u64 != file.bytes {
                return Err(StateDbError(format!(
                    "{}: {} bytes, the checkpoint says {}",
                    file.path,
                    bytes.len(),
                    file.bytes
                )));
            }
            write_file(&path.join(&file.name), bytes)?;
            stored.insert(file.name.clone(), file.clone());
        }
        for (name, bytes) in &files.private {
            check_name(name)?;
            write_file(&path.join(name), bytes)?;
        }
        Self::open(dir, stored)
    }

    /// The value of `key`, if it has one.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db
            .get(key)
            .map_err(|e| StateDbError::at(self.dir.display(), e))
    }

    /// Applies `batch` (puts and deletes) atomically.
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        self.db
            .write_opt(batch, &self.write)
            .map_err(|e| StateDbError::at(self.dir.display(), e))
    }

    /// Every key from `start` on (in key order) and its value.
    pub fn iter_from<'a>(&'a self, start: &[u8]) -> impl Iterator<Item = Result<KeyValue>> + 'a {
        self.db
            .iterator(IteratorMode::From(start, Direction::Forward))
            .map(|item| item.map_err(|e| StateDbError::at(self.dir.display(), e)))
    }

    /// Takes checkpoint `id`: flushes what is in memory and links the live files into a
    /// directory of their own, which [`LocalCheckpoint::upload`] stores (the database may be
    /// written again as soon as this returns).
    pub fn checkpoint(&self, id: u64) -> Result<LocalCheckpoint> {
        let dir = self.dir.join(format!("chk-{id}"));
        remove_dir(&dir)?;
        Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(&dir))
            .map_err(|e| StateDbError::at(format!("checkpoint into {}", dir.display()), e))?;
        Ok(LocalCheckpoint {
            dir: dir.clone(),
            instance: self.instance.clone(),
            stored: self.stored.clone(),
            _scratch: Scratch(dir),
        })
    }

    /// The directory the database lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn check_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\\');
    if plain {
        Ok(())
    } else {
        Err(StateDbError(format!(
            "the checkpoint names a file {name:?}, not a plain file name"
        )))
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| StateDbError::at(path.display(), e))
}

/// A checkpoint of a [`StateDb`] on local disk, not stored yet; removed when dropped.
#[derive(Debug)]
pub struct LocalCheckpoint {
    dir: PathBuf,
    instance: String,
    stored: Stored,
    _scratch: Scratch,
}

impl LocalCheckpoint {
    /// The names of the checkpoint's files, sorted.
    fn names(&self) -> Result<Vec<String>> {
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| StateDbError::at(self.dir.display(), e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StateDbError::at(self.dir.display(), e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    /// The paths in the store of the checkpoint's SST files, as [`Self::upload`] with
    /// `shared_prefix` finds or stores them. Known before anything is stored, so that a
    /// caller can list them first: a store interrupted part-way then leaves no file that no
    /// list names.
    pub fn shared_paths(&self, shared_prefix: &str) -> Result<Vec<String>> {
        let stored = self.stored.lock().unwrap_or_else(|p| p.into_inner());
        Ok(self
            .names()?
            .into_iter()
            .filter(|name| name.ends_with(".sst"))
            .map(|name| match stored.get(&name) {
                Some(shared) => shared.path.clone(),
                None => self.new_shared_path(shared_prefix, &name),
            })
            .collect())
    }

    fn new_shared_path(&self, shared_prefix: &str, name: &str) -> String {
        format!("{shared_prefix}/{}-{name}", self.instance)
    }

    /// Stores the checkpoint in `store`: the SST files no earlier checkpoint of this
    /// database stored under `shared_prefix`, and the rest in the returned description.
    pub fn upload(&self, store: &dyn BlobStore, shared_prefix: &str) -> Result<Uploaded> {
        let names = self.names()?;
        let mut files = CheckpointFiles::default();
        let mut new_bytes = 0;
        for name in names {
            let path = self.dir.join(&name);
            if !name.ends_with(".sst") {
                let bytes =
                    std::fs::read(&path).map_err(|e| StateDbError::at(path.display(), e))?;
                files.private.push((name, bytes));
                continue;
            }
            let known = self
                .stored
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&name)
                .cloned();
            let shared = match known {
                Some(shared) => shared,
                None => {
                    let bytes =
                        std::fs::read(&path).map_err(|e| StateDbError::at(path.display(), e))?;
                    let shared = SharedFile {
                        path: self.new_shared_path(shared_prefix, &name),
                        name: name.clone(),
                        bytes: bytes.len() as u64,
                    };
                    store
                        .put(&shared.path, &seal(&bytes))
                        .map_err(|e| StateDbError::at("cannot store a checkpoint file", e))?;
                    new_bytes += shared.bytes;
                    self.stored
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(name, shared.clone());
                    shared
                }
            };
            files.shared.push(shared);
        }
        Ok(Uploaded { files, new_bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob;

    /// Takes checkpoint `id` of `db` and stores it under `prefix`, checking that the paths
    /// known before the upload are the ones it stores or refers to.
    fn store_checkpoint(db: &StateDb, id: u64, store: &dyn BlobStore, prefix: &str) -> Uploaded {
        let local = db.checkpoint(id).unwrap();
        let planned = local.shared_paths(prefix).unwrap();
        let uploaded = local.upload(store, prefix).unwrap();
        let paths: Vec<&str> = uploaded
            .files
            .shared
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        assert_eq!(planned, paths, "checkpoint {id}");
        uploaded
    }

    fn put(db: &StateDb, range: std::ops::Range<u32>, tag: u8) {
        let mut batch = WriteBatch::default();
        for k in range {
            batch.put(k.to_be_bytes(), [tag; 100]);
        }
        db.write(batch).unwrap();
    }

    #[test]
    fn checkpoints_store_each_sst_file_once_and_restore_exactly_what_was_checkpointed() {
        let scratch = tempfile::tempdir().unwrap();
        let store = blob::open(&format!(
            "file://{}",
            scratch.path().join("store").display()
        ))
        .unwrap();
        let db = StateDb::create(&scratch.path().join("op")).unwrap();
        put(&db, 0..10_000, 1);
        let first = store_checkpoint(&db, 1, store.as_ref(), "job/shared");
        assert!(first.new_bytes > 0);
        assert_eq!(
            first.new_bytes,
            first.files.shared.iter().map(|f| f.bytes).sum::<u64>()
        );
        put(&db, 10_000..10_100, 2);
        let second = store_checkpoint(&db, 2, store.as_ref(), "job/shared");
        assert!(
            second.new_bytes < first.new_bytes / 10,
            "the second checkpoint stores only the new file: {} of {}",
            second.new_bytes,
            second.files.total_bytes()
        );
        for f in &first.files.shared {
            assert!(second.files.shared.contains(f), "{f:?} is shared");
        }
        // Written after checkpoint 2: not in it.
        put(&db, 20_000..20_001, 3);
        drop(db);

        let restored =
            StateDb::restore(&scratch.path().join("again"), store.as_ref(), &second.files).unwrap();
        assert_eq!(
            restored.get(&5u32.to_be_bytes()).unwrap(),
            Some(vec![1; 100])
        );
        assert_eq!(
            restored.get(&10_050u32.to_be_bytes()).unwrap(),
            Some(vec![2; 100])
        );
        assert_eq!(restored.get(&20_000u32.to_be_bytes()).unwrap(), None);
        let keys = restored.iter_from(&[]).count();
        assert_eq!(keys, 10_100);
        // The restored database knows its files are stored: its next checkpoint adds only
        // what it wrote since.
        put(&restored, 30_000..30_010, 4);
        let third = store_checkpoint(&restored, 3, store.as_ref(), "job/shared");
        assert!(
            third.new_bytes < first.new_bytes / 10,
            "{}",
            third.new_bytes
        );
        for f in &second.files.shared {
            assert!(third.files.shared.contains(f));
        }
    }

    #[test]
    fn a_damaged_or_missing_file_is_refused_at_restore() {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("store");
        let store = blob::open(&format!("file://{}", root.display())).unwrap();
        let db = StateDb::create(&scratch.path().join("op")).unwrap();
        put(&db, 0..100, 1);
        let files = store_checkpoint(&db, 1, store.as_ref(), "j/shared").files;
        let mut evil = files.clone();
        evil.private.push(("../escape".into(), vec![1]));
        let e = StateDb::restore(&scratch.path().join("r"), store.as_ref(), &evil).unwrap_err();
        assert!(e.to_string().contains("not a plain file name"), "{e}");
        let victim = &files.shared[0];
        let mut sealed = store.get(&victim.path).unwrap();
        let mid = sealed.len() / 2;
        sealed[mid] ^= 0xff;
        store.put(&victim.path, &sealed).unwrap();
        let e = StateDb::restore(&scratch.path().join("r"), store.as_ref(), &files).unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
        store.delete(&victim.path).unwrap();
        let e = StateDb::restore(&scratch.path().join("r"), store.as_ref(), &files).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }

    #[test]
    fn a_dropped_database_leaves_no_scratch_behind() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("op");
        let db = StateDb::create(&dir).unwrap();
        put(&db, 0..10, 1);
        let local = db.checkpoint(7).unwrap();
        assert!(dir.join("chk-7").exists());
        drop(local);
        assert!(!dir.join("chk-7").exists());
        drop(db);
        assert!(!dir.exists());
    }
}
