//! What a write produced, or why it was refused.
//!
//! Both are part of the API: a refused write's [`CommandError`] travels to
//! the client whole (in a gRPC status's metadata), so it can tell "unknown
//! job" from "invalid field" without parsing a message.

use serde::{Deserialize, Serialize};

use crate::model::{AgentId, AgentState, JobId, JobState, PlacementViolation, Policy};

/// What an applied command produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandOutput {
    /// The entry carried no command (leader blank entry, membership change).
    None,
    AgentRegistered {
        id: AgentId,
        new: bool,
    },
    AgentStateSet {
        id: AgentId,
        previous: AgentState,
        /// Jobs returned to the queue (when marked Lost).
        requeued: Vec<JobId>,
    },
    AgentDraining {
        id: AgentId,
        /// Tasks still on it.
        tasks: usize,
    },
    AgentUndrained {
        id: AgentId,
    },
    JobSubmitted {
        id: JobId,
    },
    JobCancelled {
        id: JobId,
        previous: JobState,
    },
    PolicySet {
        previous: Policy,
    },
    JobPlaced {
        id: JobId,
        moved: bool,
    },
    JobPreempted {
        id: JobId,
    },
    PendingReasonsSet {
        updated: usize,
    },
    TaskUpdated {
        job: JobId,
        task: u32,
        changed: bool,
    },
    AgentRemoved {
        id: AgentId,
    },
    RoleSet {
        name: String,
        created: bool,
    },
    RoleRemoved {
        name: String,
    },
    StateRestored {
        agents: usize,
        roles: usize,
        jobs: usize,
    },
    CheckpointRecorded {
        job: JobId,
        id: u64,
    },
    AclTokenCreated {
        accessor: String,
        name: String,
    },
    AclTokenRevoked {
        accessor: String,
        name: String,
    },
}

/// Why the state machine rejected a command. The state is unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum CommandError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("unknown agent {id}")]
    UnknownAgent { id: AgentId },
    #[error(
        "agent {id} re-registered with resources that differ from its recorded ones: {detail}"
    )]
    AgentResourcesMismatch { id: AgentId, detail: String },
    #[error("agent {id} is {state:?}; only a Lost agent can be removed")]
    AgentNotLost { id: AgentId, state: AgentState },
    #[error("unknown role {name:?}")]
    UnknownRole { name: String },
    #[error("limit reached: {what} (at most {max})")]
    LimitReached { what: String, max: u64 },
    #[error("agent {id} is Lost; it must re-register first")]
    AgentLost { id: AgentId },
    #[error("agent {id} is {state:?}, not Draining")]
    AgentNotDraining { id: AgentId, state: AgentState },
    #[error("role {name:?} has {jobs} live jobs; cancel them or let them end first")]
    RoleInUse { name: String, jobs: usize },
    #[error("unknown job {id}")]
    UnknownJob { id: JobId },
    #[error("job {job} has no task {task}")]
    UnknownTask { job: JobId, task: u32 },
    #[error("job {id} has already ended ({state:?})")]
    JobEnded { id: JobId, state: JobState },
    #[error("job {id} is {state:?}, not Running")]
    JobNotRunning { id: JobId, state: JobState },
    #[error("placement of job {job} refused: {violation}")]
    Placement {
        job: JobId,
        violation: PlacementViolation,
    },
    #[error("decision on job {job} was made on version {decided_on}; it is at {current} now")]
    StaleDecision {
        job: JobId,
        decided_on: u64,
        current: u64,
    },
    #[error(
        "task {task} of job {job} is not placed on agent {agent} (stale report; stop the task)"
    )]
    StaleTask {
        job: JobId,
        task: u32,
        agent: AgentId,
    },
    /// The replicated state broke one of its own invariants (a bug): the
    /// command is refused before it changes anything, on every member
    /// alike, instead of stopping them all at this log index.
    #[error("internal inconsistency, command refused and nothing changed: {detail}")]
    Internal { detail: String },
    #[error(
        "checkpoint of run {attempt} of job {job}, which is at run {current}: that instance was \
         replaced and must stop"
    )]
    StaleRun {
        job: JobId,
        attempt: u64,
        current: u64,
    },
    #[error("the ACL system is already bootstrapped; ask a management token holder for a token")]
    AclBootstrapped,
    #[error("unknown or already revoked ACL token {accessor}")]
    UnknownToken { accessor: String },
    #[error(
        "ACL token {name:?} acts for agent {agent}, not agent {wanted}: give each agent a token \
         of its own (sluice acl token create --policy agent)"
    )]
    AgentTokenBound {
        name: String,
        agent: AgentId,
        wanted: AgentId,
    },
    #[error(
        "agent {agent} acts with ACL token {name:?}; another token may act for it only once \
         that one is revoked"
    )]
    AgentHasToken { agent: AgentId, name: String },
}

impl CommandError {
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::Internal {
            detail: detail.into(),
        }
    }

    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
