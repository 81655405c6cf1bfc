//! Stopping a running job from outside: [`JobControl`] is a cancel flag the caller keeps
//! while the job runs on another thread. Every shard looks at it once per round and every
//! remote I/O thread at least every few milliseconds, so a cancelled job returns within a
//! short, bounded time with [`crate::EngineError::Cancelled`].
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A handle that cancels the job it is passed to (see [`crate::api::run_job_with`]).
/// Clones share the flag; cancelling before the job starts makes it return at once.
#[derive(Clone, Debug, Default)]
pub struct JobControl {
    cancel: Arc<AtomicBool>,
    checkpoints: Option<Arc<CheckpointHooks>>,
}

/// Why an external completion of a checkpoint failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompletionError {
    /// This checkpoint failed; later ones may succeed.
    Failed(String),
    /// This instance of the job must stop (another run replaced it).
    Fatal(String),
}

/// A checkpoint completer: called with the checkpoint's metadata once every shard's state
/// is stored, before the checkpoint counts as complete.
pub type Completer = Box<
    dyn Fn(&crate::runtime::coordinator::CheckpointMetadata) -> Result<(), CompletionError>
        + Send
        + Sync,
>;

/// Reports a failed checkpoint (its id and why) elsewhere, best effort.
pub type FailureReporter = Box<dyn Fn(u64, &str) + Send + Sync>;

/// Reports a triggered checkpoint (its id and trigger time, Unix ms) elsewhere, best effort;
/// must not block (the coordinator calls it between the trigger and the shards' parts).
pub type TriggerReporter = Box<dyn Fn(u64, i64) + Send + Sync>;

/// Checkpoints of a job whose completions are decided elsewhere (by the masters, through
/// Raft), not by the store's `_metadata` alone.
pub struct CheckpointHooks {
    /// Completes a checkpoint (commits it through the masters).
    pub complete: Completer,
    /// Reports a failed checkpoint (id and why), best effort.
    pub failed: FailureReporter,
    /// Reports a triggered checkpoint (in progress until it completes or fails).
    pub triggered: TriggerReporter,
    /// The checkpoint this run resumes from, as decided with its placement; `None` starts
    /// afresh whatever the store holds.
    pub restore_from: Option<u64>,
    /// The latest completed checkpoint the masters know of (new ids go above it).
    pub last_completed: Option<u64>,
    /// The job's prefix in the checkpoint storage (instead of its name).
    pub prefix: String,
}

impl std::fmt::Debug for CheckpointHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointHooks")
            .field("restore_from", &self.restore_from)
            .field("last_completed", &self.last_completed)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl JobControl {
    /// A control that has not been cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the job to stop. Returns at once; the call running the job returns
    /// [`crate::EngineError::Cancelled`] shortly after (or its report, if it had already
    /// finished).
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Release);
    }

    /// Whether [`JobControl::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }

    /// The shared flag, for the runtime's threads.
    /// A control whose job's checkpoints complete through `hooks`.
    pub fn with_checkpoints(hooks: CheckpointHooks) -> Self {
        Self {
            cancel: Arc::default(),
            checkpoints: Some(Arc::new(hooks)),
        }
    }

    /// This control (the same cancel flag) with checkpoints completing through `hooks`.
    pub fn and_checkpoints(&self, hooks: CheckpointHooks) -> Self {
        Self {
            cancel: self.cancel.clone(),
            checkpoints: Some(Arc::new(hooks)),
        }
    }

    /// The checkpoint hooks, if the job's checkpoints complete elsewhere.
    pub fn checkpoint_hooks(&self) -> Option<Arc<CheckpointHooks>> {
        self.checkpoints.clone()
    }

    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }
}
