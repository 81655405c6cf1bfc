//! What reads answer beyond the stored records: summaries and an agent's assignment.

use serde::{Deserialize, Serialize};

use super::{AgentId, AgentState, Grant, JobId, JobKind, Policy, Resources, TaskState};

/// The scheduler's policy and the queue at a glance (`cluster policy show`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerSummary {
    pub policy: Policy,
    pub pending: usize,
    pub running: usize,
    pub ended: usize,
    /// Everything Active agents offer, and what of it is granted.
    pub offered: Resources,
    pub granted: Resources,
}

/// One task an agent should run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub job: JobId,
    pub task: u32,
    pub state: TaskState,
    pub grant: Grant,
    pub name: String,
    pub kind: JobKind,
    /// Where each task of the job runs, in task order (stream shards need
    /// their peers); None for a task not placed.
    pub peers: Vec<Option<AgentId>>,
    /// The job's run (bumped by every placement); its checkpoints name it.
    #[serde(default)]
    pub attempt: u64,
    /// The checkpoint this run resumes from, and the ones completed since.
    #[serde(default)]
    pub restore_from: Option<u64>,
    /// The job's latest completed checkpoint.
    #[serde(default)]
    pub last_checkpoint: Option<u64>,
}

/// An agent's state and the tasks placed on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentAssignment {
    pub agent: AgentId,
    pub state: AgentState,
    pub tasks: Vec<Assignment>,
}
