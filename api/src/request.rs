//! What clients may ask of the cluster: the admin API's write requests.
//!
//! A [`Request`] is not a Raft command. The leader validates it, checks
//! that the caller may make it, and only then turns it into a command,
//! stamping its own clock and making any secret itself. The scheduler's and the leader's own commands —
//! placements, preemptions, pending reasons, marking an agent Lost — have no
//! request: no client can send them, with any token.

use serde::{Deserialize, Serialize};

use crate::model::{
    AclPolicy, AgentId, AgentSpec, CheckpointInfo, JobId, JobSpec, Policy, RolePatch, RoleSpec,
    TaskUpdate,
};

/// A write request, as a client sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// An agent registers (no `id`) or re-registers (its `id`).
    RegisterAgent(AgentSpec),
    /// Drains an agent; after `deadline_ms` from now what is left is requeued.
    DrainAgent {
        id: AgentId,
        #[serde(default)]
        deadline_ms: Option<u64>,
    },
    UndrainAgent {
        id: AgentId,
    },
    /// Forgets an agent that is Lost.
    RemoveAgent {
        id: AgentId,
    },
    SetRole(RoleSpec),
    UpdateRole(RolePatch),
    RemoveRole {
        name: String,
    },
    SubmitJob {
        job: JobSpec,
    },
    CancelJob {
        id: JobId,
    },
    KillTask {
        job: JobId,
        task: u32,
    },
    SetPolicy {
        policy: Policy,
    },
    /// Replaces the allocation state (`cluster snapshot restore`) with a
    /// saved one: the JSON of the `state` a `cluster snapshot save` file holds.
    RestoreState {
        snapshot: String,
    },
    /// An agent's report on one of its tasks.
    UpdateTask {
        update: TaskUpdate,
    },
    /// An agent's report: a checkpoint is complete on every shard.
    CheckpointCompleted {
        job: JobId,
        attempt: u64,
        checkpoint: CheckpointInfo,
    },
    CheckpointFailed {
        job: JobId,
        attempt: u64,
        id: u64,
        reason: String,
    },
    CheckpointTriggered {
        job: JobId,
        attempt: u64,
        id: u64,
        triggered_ms: u64,
    },
    /// Creates the management token, once per cluster; needs no token.
    AclBootstrap,
    /// Creates a token; its secret is in the answer, and only there.
    AclCreateToken {
        name: String,
        policies: Vec<AclPolicy>,
        /// Lifetime from now; none means until revoked.
        #[serde(default)]
        ttl_ms: Option<u64>,
    },
    AclRevokeToken {
        accessor: String,
    },
    /// A short-lived token that reads job `job` and its tasks' logs alone
    /// (`logs:JOB`), for the caller to show an agent instead of its own.
    IssueLogTicket {
        job: JobId,
    },
}

/// Commands a client might try to send that only the leader proposes.
const INTERNAL_COMMANDS: [&str; 4] = [
    "set_agent_state",
    "place_job",
    "preempt_job",
    "set_pending_reasons",
];

impl Request {
    /// Decodes a request from its JSON form (the records' serde shapes, for
    /// tools and a JSON API), with a message that says what was wrong and
    /// where. A Raft command that only the leader may propose is named as such.
    pub fn from_json(json: &str) -> Result<Self, String> {
        serde_json::from_str(json).map_err(|e| {
            let internal = INTERNAL_COMMANDS
                .iter()
                .find(|c| e.to_string().contains(&format!("unknown variant `{c}`")));
            match internal {
                Some(name) => format!(
                    "{name} is an internal command: only the leader proposes it, no client \
                     may send it; nothing changed"
                ),
                None => format!(
                    "invalid request at line {} column {}: {e}",
                    e.line(),
                    e.column()
                ),
            }
        })
    }

    /// The request's name, as on the wire (for audit lines).
    pub fn name(&self) -> &'static str {
        match self {
            Request::RegisterAgent(_) => "register_agent",
            Request::DrainAgent { .. } => "drain_agent",
            Request::UndrainAgent { .. } => "undrain_agent",
            Request::RemoveAgent { .. } => "remove_agent",
            Request::SetRole(_) => "set_role",
            Request::UpdateRole(_) => "update_role",
            Request::RemoveRole { .. } => "remove_role",
            Request::SubmitJob { .. } => "submit_job",
            Request::CancelJob { .. } => "cancel_job",
            Request::KillTask { .. } => "kill_task",
            Request::SetPolicy { .. } => "set_policy",
            Request::RestoreState { .. } => "restore_state",
            Request::UpdateTask { .. } => "update_task",
            Request::CheckpointCompleted { .. } => "checkpoint_completed",
            Request::CheckpointFailed { .. } => "checkpoint_failed",
            Request::CheckpointTriggered { .. } => "checkpoint_triggered",
            Request::AclBootstrap => "acl_bootstrap",
            Request::AclCreateToken { .. } => "acl_create_token",
            Request::AclRevokeToken { .. } => "acl_revoke_token",
            Request::IssueLogTicket { .. } => "issue_log_ticket",
        }
    }

    /// Whether agents make this request (with an agent certificate).
    pub fn from_agents(&self) -> bool {
        matches!(
            self,
            Request::RegisterAgent(_)
                | Request::UpdateTask { .. }
                | Request::CheckpointCompleted { .. }
                | Request::CheckpointFailed { .. }
                | Request::CheckpointTriggered { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_commands_are_not_requests() {
        for json in [
            r#"{"place_job": {"job": 1, "version": 1, "grants": []}}"#,
            r#"{"preempt_job": {"job": 1, "version": 1, "reason": "x"}}"#,
            r#"{"set_pending_reasons": {"reasons": []}}"#,
            r#"{"set_agent_state": {"id": 1, "state": "lost"}}"#,
        ] {
            let err = Request::from_json(json).unwrap_err();
            assert!(err.contains("internal command"), "{err}");
        }
        let err = Request::from_json(r#"{"cancel_job": {"id": 1, "now_ms": 5}}"#).unwrap_err();
        assert!(err.contains("unknown field `now_ms`"), "{err}");
    }
}
