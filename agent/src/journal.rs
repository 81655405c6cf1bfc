//! The status journal: the agent's RocksDB under `data_dir/journal`.
//!
//! - `updates`: task status updates not yet acknowledged by the masters,
//!   keyed by a big-endian sequence number so that they are resent in the
//!   order they happened. An update is written (WAL fsynced) before it is
//!   sent and deleted once the master acknowledged it: at-least-once.
//! - `tasks`: the command tasks this agent started and has not seen end
//!   (pid and start time), so that a restarted agent can re-attach to them
//!   or report them lost.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rocksdb::{ColumnFamilyDescriptor, Options, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use sluice_api::model::{JobId, TaskUpdate};

use crate::error::AgentError;

const CF_UPDATES: &str = "updates";
const CF_TASKS: &str = "tasks";
/// Most unacknowledged updates kept; past it the agent stops starting new
/// work rather than grow the journal without bound.
pub const PENDING_UPDATES_MAX: usize = 100_000;

/// A task's identity on the agent: (job, task index).
pub type TaskKey = (JobId, u32);

/// A command task's process, as recorded when it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub pid: u32,
    /// The process's start time in clock ticks since boot (from
    /// `/proc/PID/stat`): tells our process from a later one with the same pid.
    pub start_ticks: u64,
}

/// The opened journal.
pub struct Journal {
    path: PathBuf,
    db: DB,
    next_seq: u64,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

fn task_key((job, task): TaskKey) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&job.to_be_bytes());
    key[8..].copy_from_slice(&task.to_be_bytes());
    key
}

impl Journal {
    /// Opens (creating if new) the journal in `dir`.
    pub fn open(dir: &Path) -> Result<Self, AgentError> {
        let path = dir.to_path_buf();
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let cfs = [CF_UPDATES, CF_TASKS]
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db =
            DB::open_cf_descriptors(&options, &path, cfs).map_err(|e| AgentError::Journal {
                path: path.clone(),
                reason: format!("cannot open ({e}); is another agent running on this data dir?"),
            })?;
        let mut journal = Self {
            path,
            db,
            next_seq: 0,
        };
        journal.next_seq = journal
            .pending()?
            .keys()
            .next_back()
            .map_or(0, |last| last + 1);
        Ok(journal)
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> AgentError {
        AgentError::Journal {
            path: self.path.clone(),
            reason: format!("{what}: {e}"),
        }
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, AgentError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| self.err("missing column family", name))
    }

    fn synced() -> WriteOptions {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        options
    }

    /// Appends an update durably; returns its sequence number.
    pub fn append(&mut self, update: &TaskUpdate) -> Result<u64, AgentError> {
        let seq = self.next_seq;
        let value = serde_json::to_vec(update).map_err(|e| self.err("encode update", e))?;
        self.db
            .put_cf_opt(
                self.cf(CF_UPDATES)?,
                seq.to_be_bytes(),
                value,
                &Self::synced(),
            )
            .map_err(|e| self.err("write update", e))?;
        self.next_seq = seq + 1;
        Ok(seq)
    }

    /// Forgets an acknowledged update.
    pub fn ack(&self, seq: u64) -> Result<(), AgentError> {
        // Unsynced: losing an ack in a crash only resends an idempotent update.
        self.db
            .delete_cf(self.cf(CF_UPDATES)?, seq.to_be_bytes())
            .map_err(|e| self.err("delete update", e))
    }

    /// Every unacknowledged update, oldest first.
    pub fn pending(&self) -> Result<BTreeMap<u64, TaskUpdate>, AgentError> {
        let mut out = BTreeMap::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_UPDATES)?, rocksdb::IteratorMode::Start)
        {
            let (key, value) = item.map_err(|e| self.err("read updates", e))?;
            let seq = <[u8; 8]>::try_from(&key[..])
                .map(u64::from_be_bytes)
                .map_err(|_| self.err("bad update key", format!("{key:?}")))?;
            let update: TaskUpdate =
                serde_json::from_slice(&value).map_err(|e| self.err("decode update", e))?;
            out.insert(seq, update);
        }
        Ok(out)
    }

    /// Records a started command task.
    pub fn put_task(&self, key: TaskKey, record: &TaskRecord) -> Result<(), AgentError> {
        let value = serde_json::to_vec(record).map_err(|e| self.err("encode task", e))?;
        self.db
            .put_cf_opt(self.cf(CF_TASKS)?, task_key(key), value, &Self::synced())
            .map_err(|e| self.err("write task", e))
    }

    /// Forgets a task whose end has been journaled.
    pub fn remove_task(&self, key: TaskKey) -> Result<(), AgentError> {
        self.db
            .delete_cf_opt(self.cf(CF_TASKS)?, task_key(key), &Self::synced())
            .map_err(|e| self.err("delete task", e))
    }

    /// Every recorded task.
    pub fn tasks(&self) -> Result<BTreeMap<TaskKey, TaskRecord>, AgentError> {
        let mut out = BTreeMap::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_TASKS)?, rocksdb::IteratorMode::Start)
        {
            let (key, value) = item.map_err(|e| self.err("read tasks", e))?;
            if key.len() != 12 {
                return Err(self.err("bad task key", format!("{key:?}")));
            }
            let job = u64::from_be_bytes(key[..8].try_into().unwrap_or_default());
            let task = u32::from_be_bytes(key[8..].try_into().unwrap_or_default());
            let record: TaskRecord =
                serde_json::from_slice(&value).map_err(|e| self.err("decode task", e))?;
            out.insert((job, task), record);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_api::model::TaskState;

    fn update(job: u64, state: TaskState) -> TaskUpdate {
        TaskUpdate {
            job,
            task: 0,
            agent: 1,
            state,
            message: None,
        }
    }

    #[test]
    fn updates_survive_reopen_in_order_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut j = Journal::open(dir.path()).unwrap();
            assert_eq!(j.append(&update(1, TaskState::Running)).unwrap(), 0);
            assert_eq!(j.append(&update(1, TaskState::Finished)).unwrap(), 1);
            assert_eq!(j.append(&update(2, TaskState::Failed)).unwrap(), 2);
            j.ack(0).unwrap();
            j.put_task(
                (2, 3),
                &TaskRecord {
                    pid: 42,
                    start_ticks: 9,
                },
            )
            .unwrap();
        }
        let mut j = Journal::open(dir.path()).unwrap();
        let pending = j.pending().unwrap();
        assert_eq!(pending.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(pending[&1], update(1, TaskState::Finished));
        assert_eq!(j.append(&update(3, TaskState::Running)).unwrap(), 3);
        let tasks = j.tasks().unwrap();
        assert_eq!(tasks[&(2, 3)].pid, 42);
        j.remove_task((2, 3)).unwrap();
        assert!(j.tasks().unwrap().is_empty());
    }
}
