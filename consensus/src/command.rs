//! The typed commands replicated through Raft, and their responses.
//!
//! Commands travel as postcard inside Raft entries; clients never send one
//! (they send a [`crate::Request`], which the leader turns into commands).
//! Their JSON form, with unknown fields and commands rejected, is for tools
//! and tests.

use serde::{Deserialize, Serialize};

pub use sluice_api::outcome::{CommandError, CommandOutput};

use crate::acl::AclToken;
use crate::state::{
    AgentId, AgentSpec, AgentState, CheckpointInfo, ClusterState, Grant, JobId, JobSpec, Policy,
    RolePatch, RoleSpec, TaskUpdate,
};

/// A change to the cluster's allocation state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Registers a new agent (no `id`) or re-registers a known one (`id` set;
    /// its resources must match the recorded ones). `token` is the accessor
    /// of the ACL token it registered with, bound to the agent the first
    /// time (none without ACLs or with a management token).
    RegisterAgent {
        spec: AgentSpec,
        #[serde(default)]
        token: Option<String>,
    },
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
            Command::RegisterAgent { .. }
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
