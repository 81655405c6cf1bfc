//! Placements as clients see them: why one is refused, and agents' task reports.

use serde::{Deserialize, Serialize};

use super::{AgentId, AgentState, JobId, Resources, TaskState};

/// Why a placement was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum PlacementViolation {
    #[error("{got} grants for a job of {expected} tasks")]
    TaskCount { expected: usize, got: usize },
    #[error("task {task}: granted {granted}, but each task needs exactly {needed}")]
    TaskShape {
        task: usize,
        granted: Resources,
        needed: Resources,
    },
    #[error("agent {agent} is {state:?}; only Active agents take new work")]
    AgentNotActive { agent: AgentId, state: AgentState },
    #[error("agent {agent} has no core {core}")]
    CoreNotOffered { agent: AgentId, core: u32 },
    #[error("core {core} of agent {agent} is already granted")]
    CoreTaken { agent: AgentId, core: u32 },
    #[error("agent {agent} has {free} bytes of memory free, the grants need {needed}")]
    MemoryOversubscribed {
        agent: AgentId,
        needed: u64,
        free: u64,
    },
    #[error("agent {agent} has {free} bytes of disk free, the grants need {needed}")]
    DiskOversubscribed {
        agent: AgentId,
        needed: u64,
        free: u64,
    },
    #[error("agent {agent} does not satisfy constraint `{constraint}`")]
    Constraint { agent: AgentId, constraint: String },
    #[error("role {role:?} would use {would_use}, above its limit {limit}")]
    RoleLimit {
        role: String,
        would_use: Resources,
        limit: Resources,
    },
}

/// An agent's report on one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskUpdate {
    pub job: JobId,
    pub task: u32,
    /// The reporting agent; must be where the task is placed.
    pub agent: AgentId,
    pub state: TaskState,
    #[serde(default)]
    pub message: Option<String>,
}
