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
    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }
}
