//! The replicated state machine's storage.
//!
//! The state lives in memory; its durable form is the latest snapshot (kept in
//! column family `snapshot`) plus the Raft log after it, which openraft
//! re-applies on restart up to the saved committed index. A snapshot is synced
//! to disk before openraft may purge the log it covers, so no committed entry
//! is ever only in memory.
//!
//! What a command means is the caller's business: it supplies a [`StateLogic`].

use std::fmt::Debug;
use std::io::Cursor;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, RaftTypeConfig,
    StorageError, StorageIOError, StoredMembership,
};
use rocksdb::{WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::member_dir::{MemberDir, CF_SNAPSHOT};

const KEY_CURRENT: &[u8] = b"current";

/// The application logic of a replicated state.
///
/// `apply` runs on every member for every committed command, in log order; it
/// must be deterministic and must not do I/O, so that all members compute the
/// same state from the same log.
pub trait StateLogic<C: RaftTypeConfig>:
    Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// Applies one committed command and returns its response. Rejecting a
    /// command is a response, not an error: the state must stay unchanged.
    fn apply(&mut self, log_id: &LogId<C::NodeId>, command: &C::D) -> C::R;

    /// The response to an entry that carries no command (blank or membership).
    fn empty_response() -> C::R;
}

/// The state together with how far the log has been applied to it.
#[derive(Debug, Clone, Default)]
pub struct StateView<C: RaftTypeConfig, S> {
    pub last_applied: Option<LogId<C::NodeId>>,
    pub membership: StoredMembership<C::NodeId, C::Node>,
    pub state: S,
}

/// Shared read access to the in-memory state, for local (stale) reads and for
/// reads after a read-index barrier.
pub struct StateHandle<C: RaftTypeConfig, S> {
    inner: Arc<RwLock<StateView<C, S>>>,
}

impl<C: RaftTypeConfig, S> Clone for StateHandle<C, S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<C: RaftTypeConfig, S> Debug for StateHandle<C, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateHandle")
    }
}

impl<C: RaftTypeConfig, S> StateHandle<C, S> {
    /// Locks the state for reading. Never hold the guard across an await.
    pub fn read(&self) -> RwLockReadGuard<'_, StateView<C, S>> {
        // A panic while holding the lock would be a bug in apply; the data is
        // still the last fully applied state, so reading past poison is sound.
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The persisted form of a snapshot: its metadata and the encoded state.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
struct StoredSnapshot<C: RaftTypeConfig> {
    meta: SnapshotMeta<C::NodeId, C::Node>,
    data: Vec<u8>,
}

/// openraft state machine storage: in-memory state, snapshots in RocksDB.
pub struct RocksStateMachine<C: RaftTypeConfig, S> {
    db: Arc<DB>,
    view: StateHandle<C, S>,
    snapshot_seq: Arc<AtomicU64>,
    _config: PhantomData<fn() -> C>,
}

impl<C: RaftTypeConfig, S> Debug for RocksStateMachine<C, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RocksStateMachine")
    }
}

type SResult<T, C> = Result<T, StorageError<<C as RaftTypeConfig>::NodeId>>;

fn any(message: impl ToString) -> AnyError {
    AnyError::error(message)
}

impl<C, S> RocksStateMachine<C, S>
where
    C: RaftTypeConfig<SnapshotData = Cursor<Vec<u8>>, Entry = Entry<C>>,
    S: StateLogic<C>,
{
    /// Opens the state machine of a member, loading its latest snapshot.
    pub fn open(dir: &MemberDir) -> SResult<Self, C> {
        let db = dir.db().clone();
        let stored = read_stored::<C>(&db)?;
        let view = match stored {
            None => StateView::default(),
            Some(stored) => StateView {
                last_applied: stored.meta.last_log_id.clone(),
                membership: stored.meta.last_membership.clone(),
                state: decode(&stored.data).map_err(|e| {
                    StorageIOError::read_snapshot(Some(stored.meta.signature()), any(e))
                })?,
            },
        };
        Ok(Self {
            db,
            view: StateHandle {
                inner: Arc::new(RwLock::new(view)),
            },
            snapshot_seq: Arc::new(AtomicU64::new(0)),
            _config: PhantomData,
        })
    }

    /// A handle for reading the state outside openraft.
    pub fn handle(&self) -> StateHandle<C, S> {
        self.view.clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, StateView<C, S>> {
        self.view
            .inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn save_snapshot(&self, stored: &StoredSnapshot<C>) -> SResult<(), C> {
        let signature = Some(stored.meta.signature());
        let bytes = encode(stored)
            .map_err(|e| StorageIOError::write_snapshot(signature.clone(), any(e)))?;
        let cf = self
            .db
            .cf_handle(CF_SNAPSHOT)
            .expect("column family `snapshot` is created on open");
        let mut opts = WriteOptions::default();
        // Synced: openraft purges the log this snapshot covers right after.
        opts.set_sync(true);
        self.db
            .put_cf_opt(cf, KEY_CURRENT, bytes, &opts)
            .map_err(|e| StorageIOError::write_snapshot(signature, any(e.into_string())).into())
    }
}

fn read_stored<C: RaftTypeConfig>(db: &DB) -> SResult<Option<StoredSnapshot<C>>, C> {
    let cf = db
        .cf_handle(CF_SNAPSHOT)
        .expect("column family `snapshot` is created on open");
    match db.get_cf(cf, KEY_CURRENT) {
        Err(e) => Err(StorageIOError::read_snapshot(None, any(e.into_string())).into()),
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => decode(&bytes)
            .map(Some)
            .map_err(|e| StorageIOError::read_snapshot(None, any(e)).into()),
    }
}

impl<C, S> RaftSnapshotBuilder<C> for RocksStateMachine<C, S>
where
    C: RaftTypeConfig<SnapshotData = Cursor<Vec<u8>>, Entry = Entry<C>>,
    S: StateLogic<C>,
{
    async fn build_snapshot(&mut self) -> SResult<Snapshot<C>, C> {
        let (data, last_log_id, last_membership) = {
            let view = self.view.read();
            let data =
                encode(&view.state).map_err(|e| StorageIOError::read_state_machine(any(e)))?;
            (data, view.last_applied.clone(), view.membership.clone())
        };
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_log_id {
            Some(ref id) => format!("{}-{}-{seq}", id.leader_id, id.index),
            None => format!("empty-{seq}"),
        };
        let stored = StoredSnapshot::<C> {
            meta: SnapshotMeta {
                last_log_id,
                last_membership,
                snapshot_id,
            },
            data,
        };
        self.save_snapshot(&stored)?;
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl<C, S> RaftStateMachine<C> for RocksStateMachine<C, S>
where
    C: RaftTypeConfig<SnapshotData = Cursor<Vec<u8>>, Entry = Entry<C>>,
    S: StateLogic<C>,
{
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> SResult<
        (
            Option<LogId<C::NodeId>>,
            StoredMembership<C::NodeId, C::Node>,
        ),
        C,
    > {
        let view = self.view.read();
        Ok((view.last_applied.clone(), view.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> SResult<Vec<C::R>, C>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut view = self.write();
        let mut responses = Vec::new();
        for entry in entries {
            view.last_applied = Some(entry.log_id.clone());
            let response = match entry.payload {
                EntryPayload::Blank => S::empty_response(),
                EntryPayload::Normal(ref command) => view.state.apply(&entry.log_id, command),
                EntryPayload::Membership(membership) => {
                    view.membership = StoredMembership::new(Some(entry.log_id.clone()), membership);
                    S::empty_response()
                }
            };
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        Self {
            db: self.db.clone(),
            view: self.view.clone(),
            snapshot_seq: self.snapshot_seq.clone(),
            _config: PhantomData,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> SResult<Box<Cursor<Vec<u8>>>, C> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<C::NodeId, C::Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> SResult<(), C> {
        let data = snapshot.into_inner();
        let state: S = decode(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), any(e)))?;
        let stored = StoredSnapshot::<C> {
            meta: meta.clone(),
            data,
        };
        // Persist first: if this fails the in-memory state is left as it was.
        self.save_snapshot(&stored)?;
        let mut view = self.write();
        *view = StateView {
            last_applied: meta.last_log_id.clone(),
            membership: meta.last_membership.clone(),
            state,
        };
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> SResult<Option<Snapshot<C>>, C> {
        Ok(read_stored::<C>(&self.db)?.map(|stored| Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}
