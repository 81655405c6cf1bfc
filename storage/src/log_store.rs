//! The Raft log and vote in RocksDB.
//!
//! Layout: column family `log` maps a big-endian index to a postcard-encoded
//! entry; `meta` holds the vote, the committed log id and the purge point.
//! The log never has holes: entries are only appended after the last one,
//! truncated from some index to the end, or purged from the start to some
//! index.

use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{
    AnyError, LogId, OptionalSend, RaftLogId, RaftTypeConfig, StorageError, StorageIOError, Vote,
};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{decode, encode, index_key, key_index};
use crate::flusher::WalFlusher;
use crate::member_dir::{MemberDir, CF_LOG, CF_META};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// openraft log storage on RocksDB. Cloning shares the same database.
pub struct RocksLogStore<C: RaftTypeConfig> {
    db: Arc<DB>,
    flusher: WalFlusher,
    _config: PhantomData<fn() -> C>,
}

impl<C: RaftTypeConfig> Clone for RocksLogStore<C> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            flusher: self.flusher.clone(),
            _config: PhantomData,
        }
    }
}

impl<C: RaftTypeConfig> Debug for RocksLogStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RocksLogStore")
    }
}

type SResult<T, C> = Result<T, StorageError<<C as RaftTypeConfig>::NodeId>>;

impl<C> RocksLogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    /// Opens the log store of a member's data dir and starts its WAL flusher.
    pub fn open(dir: &MemberDir) -> io::Result<Self> {
        let db = dir.db().clone();
        let flusher = WalFlusher::start(db.clone())?;
        Ok(Self {
            db,
            flusher,
            _config: PhantomData,
        })
    }

    fn cf_log(&self) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(CF_LOG)
            .expect("column family `log` is created on open")
    }

    fn cf_meta(&self) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(CF_META)
            .expect("column family `meta` is created on open")
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, String> {
        match self
            .db
            .get_cf(self.cf_meta(), key)
            .map_err(|e| e.into_string())?
        {
            None => Ok(None),
            Some(bytes) => decode(&bytes).map(Some).map_err(|e| e.to_string()),
        }
    }

    fn put_meta<T: Serialize>(&self, key: &[u8], value: &T, sync: bool) -> Result<(), String> {
        let bytes = encode(value).map_err(|e| e.to_string())?;
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db
            .put_cf_opt(self.cf_meta(), key, bytes, &opts)
            .map_err(|e| e.into_string())
    }

    fn last_entry(&self) -> Result<Option<C::Entry>, String> {
        match self.db.iterator_cf(self.cf_log(), IteratorMode::End).next() {
            None => Ok(None),
            Some(item) => {
                let (_, value) = item.map_err(|e| e.into_string())?;
                decode(&value).map(Some).map_err(|e| e.to_string())
            }
        }
    }

    fn write_sync(&self, batch: WriteBatch) -> Result<(), String> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts).map_err(|e| e.into_string())
    }
}

fn io_err(message: String) -> AnyError {
    AnyError::error(message)
}

impl<C> RaftLogReader<C> for RocksLogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> SResult<Vec<C::Entry>, C> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mode = IteratorMode::From(&index_key(start), Direction::Forward);
        let mut entries = Vec::new();
        for item in self.db.iterator_cf(self.cf_log(), mode) {
            let (key, value) =
                item.map_err(|e| StorageIOError::read_logs(io_err(e.into_string())))?;
            let index = key_index(&key).ok_or_else(|| {
                StorageIOError::read_logs(io_err(format!("log key of {} bytes", key.len())))
            })?;
            if !range.contains(&index) {
                break;
            }
            let entry: C::Entry = decode(&value)
                .map_err(|e| StorageIOError::read_log_at_index(index, io_err(e.to_string())))?;
            debug_assert_eq!(
                entry.get_log_id().index,
                index,
                "entry stored under its own index"
            );
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl<C> RaftLogStorage<C> for RocksLogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> SResult<LogState<C>, C> {
        let last_purged_log_id: Option<LogId<C::NodeId>> = self
            .get_meta(KEY_LAST_PURGED)
            .map_err(|e| StorageIOError::read_logs(io_err(e)))?;
        let last = self
            .last_entry()
            .map_err(|e| StorageIOError::read_logs(io_err(e)))?;
        let last_log_id = match last {
            Some(entry) => Some(entry.get_log_id().clone()),
            None => last_purged_log_id.clone(),
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> SResult<(), C> {
        // A vote must survive a crash before the vote response leaves: sync.
        self.put_meta(KEY_VOTE, vote, true)
            .map_err(|e| StorageIOError::write_vote(io_err(e)).into())
    }

    async fn read_vote(&mut self) -> SResult<Option<Vote<C::NodeId>>, C> {
        self.get_meta(KEY_VOTE)
            .map_err(|e| StorageIOError::read_vote(io_err(e)).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId<C::NodeId>>) -> SResult<(), C> {
        // The committed id only speeds up recovery (re-applying on restart);
        // losing the latest one is safe, so it rides on the next WAL sync.
        self.put_meta(KEY_COMMITTED, &committed, false)
            .map_err(|e| StorageIOError::write(io_err(e)).into())
    }

    async fn read_committed(&mut self) -> SResult<Option<LogId<C::NodeId>>, C> {
        let committed: Option<Option<LogId<C::NodeId>>> = self
            .get_meta(KEY_COMMITTED)
            .map_err(|e| StorageIOError::read(io_err(e)))?;
        Ok(committed.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> SResult<(), C>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        for entry in entries {
            let log_id = entry.get_log_id().clone();
            let bytes = encode(&entry).map_err(|e| {
                StorageIOError::write_log_entry(log_id.clone(), io_err(e.to_string()))
            })?;
            batch.put_cf(self.cf_log(), index_key(log_id.index), bytes);
        }
        self.db
            .write(batch)
            .map_err(|e| StorageIOError::write_logs(io_err(e.into_string())))?;
        self.flusher
            .after_sync(move |result| callback.log_io_completed(result));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> SResult<(), C> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf_log(), index_key(log_id.index), index_key(u64::MAX));
        // u64::MAX itself is outside the half-open range above.
        batch.delete_cf(self.cf_log(), index_key(u64::MAX));
        self.write_sync(batch)
            .map_err(|e| StorageIOError::write_logs(io_err(e)).into())
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> SResult<(), C> {
        let mut batch = WriteBatch::default();
        let index = log_id.index;
        let bytes =
            encode(&log_id).map_err(|e| StorageIOError::write_logs(io_err(e.to_string())))?;
        batch.put_cf(self.cf_meta(), KEY_LAST_PURGED, bytes);
        batch.delete_range_cf(
            self.cf_log(),
            index_key(0),
            index_key(index.saturating_add(1)),
        );
        // Purging is idempotent and the purge point travels in the same batch
        // as the deletes, so it need not wait for its own fsync.
        self.db
            .write(batch)
            .map_err(|e| StorageIOError::write_logs(io_err(e.into_string())).into())
    }
}
