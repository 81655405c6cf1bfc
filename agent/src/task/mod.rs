//! Running what the masters placed here: command tasks (processes) and
//! stream tasks (a job's shards on the engine). Runners report through
//! [`TaskEvent`]s; the agent journals each before sending it to the masters.

pub mod cgroup;
pub mod command;
pub mod procfs;
pub mod stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sluice_api::model::TaskState;
use sluice_engine::JobControl;
use tokio::sync::{mpsc, oneshot};

use crate::journal::{TaskKey, TaskRecord};

/// The command tasks whose process may still run here, for readers of their
/// output (the agent API's `TaskLogs`): a task is registered before its
/// runner starts (so before its directory exists) and counts as running
/// until its runner is done, i.e. until its process has ended.
#[derive(Debug, Clone, Default)]
pub struct LiveTasks(Arc<Mutex<HashMap<TaskKey, Arc<AtomicBool>>>>);

impl LiveTasks {
    /// Registers task `key`, running until `done` is set.
    pub(crate) fn insert(&self, key: TaskKey, done: Arc<AtomicBool>) {
        self.lock().insert(key, done);
    }

    /// Whether task `key`'s process may still run (and write output).
    pub fn is_running(&self, key: TaskKey) -> bool {
        self.lock()
            .get(&key)
            .is_some_and(|done| !done.load(Ordering::Acquire))
    }

    /// Forgets the tasks that have ended.
    pub(crate) fn prune(&self) {
        self.lock().retain(|_, done| !done.load(Ordering::Acquire));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskKey, Arc<AtomicBool>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

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

/// How a stream job's share here is stopped: every task of the share holds
/// the same one; the first request wins and cancels the engine job, whose
/// thread then reports each task as the request says.
#[derive(Debug, Clone, Default)]
pub struct StreamStop {
    control: JobControl,
    request: Arc<Mutex<Option<StopRequest>>>,
}

impl StreamStop {
    /// Records `request` (unless one came first) and cancels the job.
    pub fn stop(&self, request: StopRequest) {
        let mut slot = self.request.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(request);
        drop(slot);
        self.control.cancel();
    }

    /// The engine's cancel handle.
    pub fn control(&self) -> &JobControl {
        &self.control
    }

    /// Why the job was stopped, if it was.
    pub fn request(&self) -> Option<StopRequest> {
        self.request
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// How a running task is stopped.
#[derive(Debug)]
enum Stopper {
    /// A command task's runner, told once.
    Command(Option<oneshot::Sender<StopRequest>>),
    /// A stream job's share (shared by its tasks).
    Stream(StreamStop),
}

/// A task running here.
#[derive(Debug)]
pub struct Running {
    pub kind: TaskKind,
    stop: Stopper,
    done: Arc<AtomicBool>,
    stopping: bool,
}

impl Running {
    pub(crate) fn command(stop: oneshot::Sender<StopRequest>, done: Arc<AtomicBool>) -> Self {
        Self {
            kind: TaskKind::Command,
            stop: Stopper::Command(Some(stop)),
            done,
            stopping: false,
        }
    }

    pub(crate) fn stream(stop: StreamStop, done: Arc<AtomicBool>) -> Self {
        Self {
            kind: TaskKind::Stream,
            stop: Stopper::Stream(stop),
            done,
            stopping: false,
        }
    }

    /// Whether the task has ended (its last event is sent).
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Asks the task to stop (once; later requests are ignored). It reports
    /// its last state, `request.report_as`, once it has stopped. Returns
    /// whether this was the first request.
    pub fn stop(&mut self, request: StopRequest) -> bool {
        if std::mem::replace(&mut self.stopping, true) {
            return false;
        }
        match &mut self.stop {
            Stopper::Command(tx) => {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(request);
                }
            }
            Stopper::Stream(stop) => stop.stop(request),
        }
        true
    }
}
