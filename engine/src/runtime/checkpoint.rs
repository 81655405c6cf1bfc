//! Checkpoints on the shard side: the control a coordinator triggers and completes them
//! through, what a stage and a shard hand over at a barrier, and the durable form of a shard's
//! state (written by the coordinator, read back at a restore).
//!
//! A checkpoint's path: the coordinator raises [`CheckpointControl::requested`]; each shard's
//! source stages see it between rounds, record their sources' positions, freeze their
//! operators and send the barrier downstream in order with the data; a stage with several
//! inputs stops reading each input that delivered barrier `N` until all have (alignment), then
//! freezes its operators (and pre-commits its sinks) and passes the barrier on. When every
//! stage of a shard has its part, the shard sends a [`ShardEvent::Taken`]; the coordinator
//! serialises the frozen state off the shard threads, stores it, and once every shard's state
//! is stored marks the checkpoint complete, which is when sinks publish what it covers.
//!
//! HOT PATH: a shard reads the two atomics once per round; nothing else here runs per record.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::state::{Frozen, SharedObjects};

/// Format version of a stored shard state.
pub const SHARD_STATE_FORMAT: u32 = 2;

/// Where, under a job's prefix, files shared between checkpoints (RocksDB's SST files) are.
pub const SHARED_DIR: &str = "shared";

/// Shared between a job's coordinator and its shards.
#[derive(Debug, Default)]
pub struct CheckpointControl {
    requested: AtomicU64,
    completed: AtomicU64,
}

impl CheckpointControl {
    /// A control with nothing requested; ids are positive and only grow.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the shards to take checkpoint `id` (larger than any earlier one).
    pub fn trigger(&self, id: u64) {
        self.requested.fetch_max(id, Ordering::AcqRel);
    }

    /// The latest checkpoint requested (0: none).
    pub fn requested(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    /// Checkpoint `id` is complete: its state is stored, sinks may publish what it covers.
    pub fn complete(&self, id: u64) {
        self.completed.fetch_max(id, Ordering::AcqRel);
    }

    /// The latest completed checkpoint (0: none).
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }
}

/// What one stage of one shard holds at a barrier.
pub struct StagePart {
    /// The operators' names.
    pub op_names: Vec<String>,
    /// Each source split's position (`None`: not replayable), for a source stage.
    pub sources: Vec<Option<Vec<u8>>>,
    /// Each source split's largest timestamp seen.
    pub max_seen: Vec<i64>,
    /// The stage's per-input watermarks.
    pub inputs: Vec<i64>,
    /// The join's frozen state, for a join stage.
    pub join: Option<Frozen>,
    /// Each operator's frozen state (`None`: stateless).
    pub ops: Vec<Option<Frozen>>,
    /// Each sink's pre-committed state, for the last stage.
    pub sinks: Vec<Vec<u8>>,
    /// Files the sinks' pre-commits left to make durable before the checkpoint completes.
    pub unsynced: Vec<std::path::PathBuf>,
    /// How long the stage held inputs back waiting for the barrier on all of them.
    pub alignment: Duration,
    /// How long the shard paused to freeze the state.
    pub pause: Duration,
}

/// What the coordinators of one job's processes tell each other over the exchange
/// connections. The process running shard 0 leads: it triggers every checkpoint in all
/// processes, gathers what each process stored, completes the checkpoint through the
/// masters and tells the others to publish; the others follow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckpointMessage {
    /// Lead to follower: take checkpoint `id`.
    Trigger {
        /// The checkpoint.
        id: u64,
    },
    /// Follower to lead: shard `shard` stored its state for checkpoint `id` at `path`.
    Stored {
        /// The checkpoint.
        id: u64,
        /// The shard (one of the follower's).
        shard: u32,
        /// Where its state is in the job's checkpoint storage.
        path: String,
        /// Bytes stored.
        bytes: u64,
        /// The shard's longest alignment, in µs.
        alignment_us: u64,
        /// The shard's pause to freeze its state, in µs.
        pause_us: u64,
        /// Approximately how many bytes of memory the shard's frozen state holds.
        state_bytes: u64,
    },
    /// Follower to lead: shard `shard` cannot take checkpoint `id`.
    Declined {
        /// The checkpoint.
        id: u64,
        /// The shard.
        shard: u32,
        /// Why.
        reason: String,
        /// Its sources ended: it takes no checkpoint any more.
        finished: bool,
    },
    /// Lead to follower: checkpoint `id` is complete; sinks may publish what it covers.
    Complete {
        /// The checkpoint.
        id: u64,
    },
}

/// The longest path or reason a [`CheckpointMessage`] may carry, in bytes.
pub const CHECKPOINT_MESSAGE_TEXT_MAX: usize = 4096;

/// `text` cut to at most [`CHECKPOINT_MESSAGE_TEXT_MAX`] bytes, at a character boundary.
pub fn bounded_text(text: &str) -> String {
    let mut end = text.len().min(CHECKPOINT_MESSAGE_TEXT_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl CheckpointMessage {
    /// The shard a follower's message is about (`None` for the lead's).
    pub fn shard(&self) -> Option<u32> {
        match self {
            Self::Stored { shard, .. } | Self::Declined { shard, .. } => Some(*shard),
            Self::Trigger { .. } | Self::Complete { .. } => None,
        }
    }

    /// Checks what a peer sent: bounded texts.
    pub fn check(&self) -> Result<(), String> {
        let text = match self {
            Self::Stored { path, .. } => path,
            Self::Declined { reason, .. } => reason,
            Self::Trigger { .. } | Self::Complete { .. } => return Ok(()),
        };
        if text.len() > CHECKPOINT_MESSAGE_TEXT_MAX {
            return Err(format!(
                "a checkpoint message text of {} bytes (the limit is {CHECKPOINT_MESSAGE_TEXT_MAX})",
                text.len()
            ));
        }
        Ok(())
    }
}

/// What a shard (or a peer process's coordinator) tells the coordinator.
pub enum ShardEvent {
    /// Every stage of the shard passed barrier `id`; here is its state.
    Taken(ShardCheckpoint),
    /// The shard cannot take checkpoint `id`.
    Declined {
        /// The checkpoint.
        id: u64,
        /// The shard.
        shard: usize,
        /// Why.
        reason: String,
        /// Its sources ended: it will take no checkpoint any more.
        finished: bool,
    },
    /// A peer process's coordinator said this.
    Peer(CheckpointMessage),
}

/// One shard's part of a checkpoint.
pub struct ShardCheckpoint {
    /// The checkpoint.
    pub id: u64,
    /// The shard.
    pub shard: usize,
    /// One part per stage, in plan order.
    pub stages: Vec<StagePart>,
}

/// The stored state of one stage.
#[derive(Debug, Serialize, Deserialize)]
pub struct StageState {
    /// The operators' names, to refuse a checkpoint of another plan.
    pub op_names: Vec<String>,
    /// Source positions.
    pub sources: Vec<Option<Vec<u8>>>,
    /// Source splits' largest timestamps seen.
    pub max_seen: Vec<i64>,
    /// Per-input watermarks.
    pub inputs: Vec<i64>,
    /// The join's state.
    pub join: Option<Vec<u8>>,
    /// Each operator's state (empty: stateless).
    pub ops: Vec<Vec<u8>>,
    /// Each sink's state.
    pub sinks: Vec<Vec<u8>>,
}

/// The stored state of one shard.
#[derive(Debug, Serialize, Deserialize)]
pub struct ShardState {
    /// [`SHARD_STATE_FORMAT`].
    pub format: u32,
    /// The job's name.
    pub job: String,
    /// The checkpoint.
    pub checkpoint: u64,
    /// The shard, and how many the job has.
    pub shard: u32,
    /// Shards of the job.
    pub shards: u32,
    /// One per stage.
    pub stages: Vec<StageState>,
    /// Objects of the checkpoint storage, shared between checkpoints, that the state refers
    /// to (RocksDB's files).
    pub shared: Vec<String>,
    /// Bytes of shared objects this checkpoint stored.
    pub shared_new_bytes: u64,
}

/// Writes a frozen state, adding the shared objects it refers to to `shared`.
fn frozen_bytes(frozen: &Frozen, shared: &mut SharedObjects) -> Result<Vec<u8>, EngineError> {
    let mut out = Vec::new();
    frozen.write_to(&mut out)?;
    let more = frozen.shared_objects();
    shared.paths.extend(more.paths);
    shared.new_bytes += more.new_bytes;
    Ok(out)
}

impl ShardCheckpoint {
    /// Makes the files the sinks pre-committed durable (data, then their directories).
    pub fn sync_files(&self) -> Result<(), EngineError> {
        let mut dirs = std::collections::BTreeSet::new();
        for path in self.stages.iter().flat_map(|s| s.unsynced.iter()) {
            std::fs::File::open(path)
                .and_then(|f| f.sync_data())
                .map_err(|e| EngineError::io(path, e))?;
            if let Some(dir) = path.parent() {
                dirs.insert(dir.to_path_buf());
            }
        }
        for dir in dirs {
            let dir = if dir.as_os_str().is_empty() {
                std::path::PathBuf::from(".")
            } else {
                dir
            };
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| EngineError::io(&dir, e))?;
        }
        Ok(())
    }

    /// The shared objects its frozen states will refer to, known before any is stored (see
    /// [`crate::state::FrozenState::planned_shared_objects`]).
    pub fn planned_shared(&self) -> Result<Vec<String>, EngineError> {
        let mut planned = Vec::new();
        for part in &self.stages {
            for frozen in part.join.iter().chain(part.ops.iter().flatten()) {
                planned.extend(frozen.planned_shared_objects()?);
            }
        }
        Ok(planned)
    }

    /// Serialises the frozen state (off the shard thread).
    pub fn to_state(&self, job: &str, shards: usize) -> Result<ShardState, EngineError> {
        let mut stages = Vec::with_capacity(self.stages.len());
        let mut shared = SharedObjects::default();
        for part in &self.stages {
            let join = match &part.join {
                Some(j) => Some(frozen_bytes(j, &mut shared)?),
                None => None,
            };
            let mut ops = Vec::with_capacity(part.ops.len());
            for op in &part.ops {
                ops.push(match op {
                    Some(o) => frozen_bytes(o, &mut shared)?,
                    None => Vec::new(),
                });
            }
            stages.push(StageState {
                op_names: part.op_names.clone(),
                sources: part.sources.clone(),
                max_seen: part.max_seen.clone(),
                inputs: part.inputs.clone(),
                join,
                ops,
                sinks: part.sinks.clone(),
            });
        }
        Ok(ShardState {
            format: SHARD_STATE_FORMAT,
            job: job.to_owned(),
            checkpoint: self.id,
            shard: self.shard as u32,
            shards: shards as u32,
            stages,
            shared: shared.paths,
            shared_new_bytes: shared.new_bytes,
        })
    }

    /// The largest alignment time of its stages.
    pub fn alignment(&self) -> Duration {
        self.stages
            .iter()
            .map(|s| s.alignment)
            .max()
            .unwrap_or_default()
    }

    /// The sum of its stages' pauses.
    pub fn pause(&self) -> Duration {
        self.stages.iter().map(|s| s.pause).sum()
    }

    /// Approximate bytes of frozen state.
    pub fn size_bytes(&self) -> u64 {
        self.stages
            .iter()
            .map(|s| {
                s.ops.iter().flatten().map(|f| f.size_bytes()).sum::<u64>()
                    + s.join.as_ref().map_or(0, |f| f.size_bytes())
            })
            .sum()
    }
}

impl ShardState {
    /// Encodes the state (postcard).
    pub fn encode(&self) -> Result<Vec<u8>, EngineError> {
        postcard::to_stdvec(self)
            .map_err(|e| EngineError::Checkpoint(format!("cannot encode shard state: {e}")))
    }

    /// Decodes a state [`ShardState::encode`] wrote; `what` names it in errors.
    pub fn decode(what: &str, bytes: &[u8]) -> Result<Self, EngineError> {
        let state: Self = postcard::from_bytes(bytes)
            .map_err(|e| EngineError::Checkpoint(format!("{what}: cannot decode: {e}")))?;
        if state.format != SHARD_STATE_FORMAT {
            return Err(EngineError::Checkpoint(format!(
                "{what}: shard state format {}, this build reads {SHARD_STATE_FORMAT}",
                state.format
            )));
        }
        Ok(state)
    }
}
