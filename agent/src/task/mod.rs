//! Running what the masters placed here: command tasks (processes) and
//! stream tasks (a job's shards on the engine). Runners report through
//! [`TaskEvent`]s; the agent journals each before sending it to the masters.

pub mod cgroup;
pub mod command;
pub mod procfs;
pub mod stream;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sluice_consensus::state::TaskState;
use tokio::sync::{mpsc, oneshot};

use crate::journal::{TaskKey, TaskRecord};

/// What a runner tells the agent about its task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEvent {
    pub key: TaskKey,
    pub state: TaskState,
    pub message: Option<String>,
    pub record: RecordChange,
}

/// How an event changes the journal's record of running processes.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordChange {
    None,
    /// A process started: recorded so a restarted agent can find it.
    Started(TaskRecord),
    /// The task ended: its record goes.
    Ended,
}

/// Where runners send events (unbounded: each task sends at most a few).
pub type Events = mpsc::UnboundedSender<TaskEvent>;

pub(crate) fn send(
    events: &Events,
    key: TaskKey,
    state: TaskState,
    message: String,
    record: RecordChange,
) {
    let event = TaskEvent {
        key,
        state,
        message: Some(message),
        record,
    };
    if events.send(event).is_err() {
        // The agent is shutting down; a restart reports the task from its
        // journal record instead.
        tracing::debug!(
            job = key.0,
            task = key.1,
            ?state,
            "status event after shutdown"
        );
    }
}

/// Why a task is stopped, and the state it is reported in afterwards:
/// Killed when the masters no longer place it here, Lost when the agent
/// shuts down (so that the masters place the work again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopRequest {
    pub report_as: TaskState,
    pub reason: String,
}

impl StopRequest {
    pub fn unplaced() -> Self {
        Self {
            report_as: TaskState::Killed,
            reason: "no longer placed on this agent".into(),
        }
    }

    pub fn agent_shutdown() -> Self {
        Self {
            report_as: TaskState::Lost,
            reason: "the agent shut down".into(),
        }
    }
}

/// What kind of work a running task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    Command,
    Stream,
}

/// A task running here.
#[derive(Debug)]
pub struct Running {
    pub kind: TaskKind,
    stop: Option<oneshot::Sender<StopRequest>>,
    done: Arc<AtomicBool>,
    /// Set once the agent logged that this task cannot be stopped.
    pub stop_warned: bool,
}

impl Running {
    pub(crate) fn new(
        kind: TaskKind,
        stop: Option<oneshot::Sender<StopRequest>>,
        done: Arc<AtomicBool>,
    ) -> Self {
        Self {
            kind,
            stop,
            done,
            stop_warned: false,
        }
    }

    /// Whether the task has ended (its last event is sent).
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Asks the task to stop; returns false if it cannot be stopped.
    pub fn stop(&mut self, request: StopRequest) -> bool {
        match self.stop.take() {
            Some(tx) => {
                let _ = tx.send(request);
                true
            }
            None => false,
        }
    }
}
