//! The typed commands replicated through Raft, and their responses.
//!
//! Commands travel as JSON on the admin API (so a CLI or REST client can
//! write them by hand) and as postcard inside Raft entries. Unknown fields and
//! unknown commands are rejected when decoding, before anything is proposed.

use serde::{Deserialize, Serialize};

use crate::acl::AclToken;
use crate::state::{
    AgentId, AgentSpec, AgentState, CheckpointInfo, ClusterState, Grant, JobId, JobSpec, JobState,
    PlacementViolation, Policy, RolePatch, RoleSpec, TaskUpdate,
};

/// A change to the cluster's allocation state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Registers a new agent (no `id`) or re-registers a known one (`id` set;
    /// its resources must match the recorded ones).
    RegisterAgent(AgentSpec),
    /// Moves an agent to Active, Draining or Lost; Lost returns its work to
    /// the queue.
    SetAgentState {
        id: AgentId,
        state: AgentState,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        now_ms: u64,
    },
    /// Drains an agent: no new work, running work moves elsewhere; after
    /// `deadline_ms` (from now) what is left returns to the queue.
    DrainAgent {
        id: AgentId,
        #[serde(default)]
        deadline_ms: Option<u64>,
        #[serde(default)]
        now_ms: u64,
    },
    /// Ends a drain: the agent takes new work again.
    UndrainAgent { id: AgentId },
    /// Forgets an agent that is Lost.
    RemoveAgent { id: AgentId },
    /// Creates or updates a role (tenant).
    SetRole(RoleSpec),
    /// Deletes a role that no live job uses.
    RemoveRole { name: String },
    /// Queues a job.
    SubmitJob {
        job: JobSpec,
        #[serde(default)]
        now_ms: u64,
    },
    /// Stops a job and frees its resources.
    CancelJob {
        id: JobId,
        #[serde(default)]
        now_ms: u64,
    },
    /// Kills one task; its job (placed whole) ends Cancelled, its resources freed.
    KillTask {
        job: JobId,
        task: u32,
        #[serde(default)]
        now_ms: u64,
    },
    /// Chooses the scheduler's queue policy.
    SetPolicy { policy: Policy },
    /// The scheduler's decision to run a job's tasks on these grants (one per
    /// task, in task order), or to move a running job (`reason` says why).
    PlaceJob {
        job: JobId,
        /// The job's version the decision was made on.
        version: u64,
        grants: Vec<Grant>,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        now_ms: u64,
    },
    /// The scheduler's decision to return a running job to the queue.
    PreemptJob {
        job: JobId,
        version: u64,
        reason: String,
        #[serde(default)]
        now_ms: u64,
    },
    /// The scheduler's explanations of why jobs wait.
    SetPendingReasons { reasons: Vec<(JobId, String)> },
    /// An agent's report on a task.
    UpdateTask {
        update: TaskUpdate,
        #[serde(default)]
        now_ms: u64,
    },
    /// Replaces the whole state with a saved one (`cluster snapshot restore`).
    RestoreState(Box<ClusterState>),
    /// Changes some of a role's settings, keeping the others (creates the
    /// role if it does not exist). New variants go last: Raft entries name
    /// variants by position.
    UpdateRole(RolePatch),
    /// Every shard of a stream job's run `attempt` stored its state for
    /// checkpoint `checkpoint.id`: the checkpoint is complete once this is
    /// committed. Refused for another run of the job (a re-placed job's old
    /// instance), a job not running, a checkpoint missing a shard, or an id
    /// not above the last one.
    CheckpointCompleted {
        job: JobId,
        attempt: u64,
        checkpoint: CheckpointInfo,
        #[serde(default)]
        now_ms: u64,
    },
    /// A checkpoint of a stream job's current run failed (a store that cannot be written, a
    /// timeout): counted and kept with its reason, for `job checkpoints`.
    CheckpointFailed {
        job: JobId,
        attempt: u64,
        id: u64,
        reason: String,
        #[serde(default)]
        now_ms: u64,
    },
    /// A stream job's current run triggered checkpoint `id` at `triggered_ms` (Unix ms, the
    /// agent's clock): it is in progress until it completes or fails. Refused for another
    /// run, a job not running, or an id not above the last completed or failed one.
    CheckpointTriggered {
        job: JobId,
        attempt: u64,
        id: u64,
        triggered_ms: u64,
        #[serde(default)]
        now_ms: u64,
    },
    /// Creates the first management token; refused once done.
    AclBootstrap { token: AclToken },
    /// Creates a token (the leader made its accessor and secret; the log
    /// holds only the secret's hash).
    AclCreateToken { token: AclToken },
    /// Revokes a token: it is refused from the moment this applies.
    AclRevokeToken {
        accessor: String,
        #[serde(default)]
        now_ms: u64,
    },
}

impl Command {
    /// Sets the leader's clock (Unix ms) on commands that record time, so
    /// every member applies the same value.
    pub fn stamp(&mut self, now: u64) {
        match self {
            Command::SetAgentState { now_ms, .. }
            | Command::DrainAgent { now_ms, .. }
            | Command::SubmitJob { now_ms, .. }
            | Command::CancelJob { now_ms, .. }
            | Command::KillTask { now_ms, .. }
            | Command::PlaceJob { now_ms, .. }
            | Command::PreemptJob { now_ms, .. }
            | Command::UpdateTask { now_ms, .. }
            | Command::CheckpointCompleted { now_ms, .. }
            | Command::CheckpointFailed { now_ms, .. }
            | Command::CheckpointTriggered { now_ms, .. }
            | Command::AclRevokeToken { now_ms, .. } => *now_ms = now,
            Command::RegisterAgent(_)
            | Command::UndrainAgent { .. }
            | Command::RemoveAgent { .. }
            | Command::SetRole(_)
            | Command::UpdateRole(_)
            | Command::RemoveRole { .. }
            | Command::SetPolicy { .. }
            | Command::SetPendingReasons { .. }
            | Command::RestoreState(_)
            | Command::AclBootstrap { .. }
            | Command::AclCreateToken { .. } => {}
        }
    }

    /// Decodes a command from the admin API's JSON, with a message that says
    /// what was wrong and where.
    pub fn from_json(json: &str) -> Result<Self, String> {
        serde_json::from_str(json).map_err(|e| {
            format!(
                "invalid command at line {} column {}: {e}",
                e.line(),
                e.column()
            )
        })
    }
}

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
}

impl CommandError {
    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        Self::Internal {
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// What one Raft entry carries: a batch of commands proposed together.
///
/// Concurrent writers' commands share one entry, and so one fsync on each
/// member (see [`crate::proposer`]). Each command is applied on its own: a
/// rejected one changes nothing and does not affect the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal(pub Vec<Command>);

/// The result of one applied command.
pub type CommandResult = Result<CommandOutput, CommandError>;

/// The state machine's answer to one log entry: one result per command, in
/// order (empty for entries without commands).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response(pub Vec<CommandResult>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_commands_and_fields_are_rejected_with_position() {
        let err = Command::from_json(r#"{"launch_rockets": {}}"#).unwrap_err();
        assert!(err.contains("unknown variant `launch_rockets`"), "{err}");
        assert!(err.contains("line 1"), "{err}");
        let err = Command::from_json(r#"{"remove_role": {"name": "a", "nmae": "b"}}"#).unwrap_err();
        assert!(err.contains("unknown field `nmae`"), "{err}");
        let err = Command::from_json("{not json").unwrap_err();
        assert!(err.contains("column"), "{err}");
    }

    #[test]
    fn commands_survive_the_raft_encoding() {
        let cmd = Command::SetRole(RoleSpec {
            name: "analytics".into(),
            weight: 2.5,
            quota: None,
            limit: None,
            reservations: Default::default(),
        });
        let proposal = Proposal(vec![cmd.clone(), Command::RemoveRole { name: "x".into() }]);
        let bytes = postcard::to_stdvec(&proposal).unwrap();
        let back: Proposal = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, proposal);
    }
}
