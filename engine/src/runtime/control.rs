//! Stopping a running job from outside: [`JobControl`] is a cancel flag the caller keeps
//! while the job runs on another thread. Every shard looks at it once per round and every
//! remote I/O thread at least every few milliseconds, so a cancelled job returns within a
//! short, bounded time with [`crate::EngineError::Cancelled`].
//!
//! The control also carries what the caller supplies for the run: checkpoint completion
//! through [`CheckpointHooks`], and a [`ThreadStart`] hook that runs first on the threads
//! the engine starts for the job.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A handle that cancels the job it is passed to (see [`crate::api::run_job_with`]).
/// Clones share the flag; cancelling before the job starts makes it return at once.
#[derive(Clone, Debug, Default)]
pub struct JobControl {
    cancel: Arc<AtomicBool>,
    checkpoints: Option<Arc<CheckpointHooks>>,
    thread_start: Option<ThreadStart>,
}

/// A hook the engine runs first on every thread it starts for a job that may open files:
/// each shard thread (before it builds its sources, io_uring rings, operators and sinks) and
/// the checkpoint coordinator (before it opens anything in the checkpoint storage). An error
/// fails the job with the hook's message, before that thread has done anything.
///
/// It is for per-thread settings of the caller's (an agent sets the thread's file-system
/// credentials with it). Such settings are copied to a thread from the thread that starts
/// it, so the helper threads those threads start in turn (a shard's RocksDB checkpoint
/// writer) get them without running the hook again. Exchange I/O threads only move bytes
/// between rings and sockets and do not run it. The calling thread is the caller's: it
/// plans the job (looking at its input and output files) and opens the checkpoint storage,
/// so a caller that needs the hook there runs it itself before calling the engine.
#[derive(Clone)]
pub struct ThreadStart(Arc<dyn Fn() -> Result<(), String> + Send + Sync>);

impl ThreadStart {
    /// A hook running `f`; `f`'s error says why the thread cannot work for the job.
    pub fn new(f: impl Fn() -> Result<(), String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Runs the hook on the calling thread.
    pub fn run(&self) -> Result<(), String> {
        (self.0)()
    }
}

impl std::fmt::Debug for ThreadStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ThreadStart")
    }
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
            thread_start: None,
        }
    }

    /// This control (the same cancel flag and thread hook) with checkpoints completing
    /// through `hooks`.
    pub fn and_checkpoints(&self, hooks: CheckpointHooks) -> Self {
        Self {
            checkpoints: Some(Arc::new(hooks)),
            ..self.clone()
        }
    }

    /// This control (the same cancel flag and checkpoint hooks) with `hook` run first on
    /// the threads the engine starts for the job (see [`ThreadStart`]).
    pub fn and_thread_start(&self, hook: ThreadStart) -> Self {
        Self {
            thread_start: Some(hook),
            ..self.clone()
        }
    }

    /// The hook run first on the job's threads, if the caller gave one.
    pub fn thread_start(&self) -> Option<ThreadStart> {
        self.thread_start.clone()
    }

    /// The checkpoint hooks, if the job's checkpoints complete elsewhere.
    pub fn checkpoint_hooks(&self) -> Option<Arc<CheckpointHooks>> {
        self.checkpoints.clone()
    }

    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }
}
