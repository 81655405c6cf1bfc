//! What clients may ask of the cluster: the admin API's write requests.
//!
//! A [`Request`] is not a Raft [`Command`]. The leader validates it, checks
//! that the caller may make it ([`Request::need`]), and only then turns it
//! into a command ([`Request::into_command`]), stamping its own clock and
//! making any secret itself. The scheduler's and the leader's own commands —
//! placements, preemptions, pending reasons, marking an agent Lost — have no
//! request: no client can send them, with any token.

use serde::{Deserialize, Serialize};

use crate::acl::{AclPolicy, AclToken, Need};
use crate::command::{Command, CommandError};
use crate::state::{
    AgentId, AgentSpec, CheckpointInfo, ClusterState, JobId, JobSpec, Policy, RolePatch, RoleSpec,
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
    /// Replaces the allocation state (`cluster snapshot restore`).
    RestoreState(Box<ClusterState>),
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
}

/// Commands a client might try to send that only the leader proposes.
const INTERNAL_COMMANDS: [&str; 4] = [
    "set_agent_state",
    "place_job",
    "preempt_job",
    "set_pending_reasons",
];

/// A created token's secret, returned once to whoever asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSecret(pub String);

impl Request {
    /// Decodes a request from the admin API's JSON, with a message that says
    /// what was wrong and where. A Raft command that only the leader may
    /// propose is named as such.
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
            Request::RestoreState(_) => "restore_state",
            Request::UpdateTask { .. } => "update_task",
            Request::CheckpointCompleted { .. } => "checkpoint_completed",
            Request::CheckpointFailed { .. } => "checkpoint_failed",
            Request::CheckpointTriggered { .. } => "checkpoint_triggered",
            Request::AclBootstrap => "acl_bootstrap",
            Request::AclCreateToken { .. } => "acl_create_token",
            Request::AclRevokeToken { .. } => "acl_revoke_token",
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

    /// What a token needs to make this request, given the current state;
    /// None for the one request that needs no token (bootstrap). A request
    /// about a job that does not exist is refused here: authorising it
    /// against "some role" would let a token of one role act on a job of
    /// another that appears before the request applies.
    pub fn need(&self, state: &ClusterState) -> Result<Option<Need>, CommandError> {
        let job_role = |id: &JobId| {
            state
                .jobs
                .get(id)
                .map(|j| Need::Submit(j.spec.role.clone()))
                .ok_or(CommandError::UnknownJob { id: *id })
        };
        Ok(Some(match self {
            Request::AclBootstrap => return Ok(None),
            Request::RegisterAgent(_)
            | Request::UpdateTask { .. }
            | Request::CheckpointCompleted { .. }
            | Request::CheckpointFailed { .. }
            | Request::CheckpointTriggered { .. } => Need::Agent,
            Request::DrainAgent { .. }
            | Request::UndrainAgent { .. }
            | Request::RemoveAgent { .. }
            | Request::SetRole(_)
            | Request::UpdateRole(_)
            | Request::RemoveRole { .. }
            | Request::SetPolicy { .. } => Need::Operator,
            Request::SubmitJob { job } => Need::Submit(job.role.clone()),
            Request::CancelJob { id } => job_role(id)?,
            Request::KillTask { job, .. } => job_role(job)?,
            Request::RestoreState(_)
            | Request::AclCreateToken { .. }
            | Request::AclRevokeToken { .. } => Need::Management,
        }))
    }

    /// The command the leader proposes for this request at `now_ms`, and
    /// the secret of a token it creates (to answer with, never to log).
    pub fn into_command(self, now_ms: u64) -> Result<(Command, Option<NewSecret>), String> {
        let new_token = |name: String, policies: Vec<AclPolicy>, ttl_ms: Option<u64>| {
            let secret = sluice_security::token::new_secret()?;
            let token = AclToken {
                accessor: sluice_security::token::new_accessor()?,
                name,
                secret_hash: sluice_security::token::hash_secret(&secret),
                policies,
                created_ms: now_ms,
                expires_ms: ttl_ms.map(|ttl| now_ms.saturating_add(ttl)),
                revoked_ms: None,
            };
            Ok::<_, String>((token, NewSecret(secret)))
        };
        let command = match self {
            Request::RegisterAgent(spec) => Command::RegisterAgent(spec),
            Request::DrainAgent { id, deadline_ms } => Command::DrainAgent {
                id,
                deadline_ms,
                now_ms,
            },
            Request::UndrainAgent { id } => Command::UndrainAgent { id },
            Request::RemoveAgent { id } => Command::RemoveAgent { id },
            Request::SetRole(spec) => Command::SetRole(spec),
            Request::UpdateRole(patch) => Command::UpdateRole(patch),
            Request::RemoveRole { name } => Command::RemoveRole { name },
            Request::SubmitJob { job } => Command::SubmitJob { job, now_ms },
            Request::CancelJob { id } => Command::CancelJob { id, now_ms },
            Request::KillTask { job, task } => Command::KillTask { job, task, now_ms },
            Request::SetPolicy { policy } => Command::SetPolicy { policy },
            Request::RestoreState(state) => Command::RestoreState(state),
            Request::UpdateTask { update } => Command::UpdateTask { update, now_ms },
            Request::CheckpointCompleted {
                job,
                attempt,
                checkpoint,
            } => Command::CheckpointCompleted {
                job,
                attempt,
                checkpoint,
                now_ms,
            },
            Request::CheckpointFailed {
                job,
                attempt,
                id,
                reason,
            } => Command::CheckpointFailed {
                job,
                attempt,
                id,
                reason,
                now_ms,
            },
            Request::CheckpointTriggered {
                job,
                attempt,
                id,
                triggered_ms,
            } => Command::CheckpointTriggered {
                job,
                attempt,
                id,
                triggered_ms,
                now_ms,
            },
            Request::AclBootstrap => {
                let (token, secret) =
                    new_token("bootstrap".into(), vec![AclPolicy::Management], None)?;
                return Ok((Command::AclBootstrap { token }, Some(secret)));
            }
            Request::AclCreateToken {
                name,
                policies,
                ttl_ms,
            } => {
                let (token, secret) = new_token(name, policies, ttl_ms)?;
                return Ok((Command::AclCreateToken { token }, Some(secret)));
            }
            Request::AclRevokeToken { accessor } => Command::AclRevokeToken { accessor, now_ms },
        };
        Ok((command, None))
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

    #[test]
    fn a_request_about_a_job_that_does_not_exist_needs_nothing_and_is_refused() {
        let state = ClusterState::default();
        assert_eq!(
            Request::CancelJob { id: 7 }.need(&state),
            Err(CommandError::UnknownJob { id: 7 })
        );
        assert_eq!(
            Request::KillTask { job: 7, task: 0 }.need(&state),
            Err(CommandError::UnknownJob { id: 7 })
        );
        assert_eq!(Request::AclBootstrap.need(&state), Ok(None));
    }

    #[test]
    fn the_leader_stamps_time_and_makes_the_secret() {
        let (command, secret) = Request::CancelJob { id: 4 }.into_command(1234).unwrap();
        assert_eq!(
            command,
            Command::CancelJob {
                id: 4,
                now_ms: 1234
            }
        );
        assert!(secret.is_none());
        let (command, secret) = Request::AclCreateToken {
            name: "ci".into(),
            policies: vec![AclPolicy::Read],
            ttl_ms: Some(1000),
        }
        .into_command(5000)
        .unwrap();
        let NewSecret(secret) = secret.unwrap();
        let Command::AclCreateToken { token } = command else {
            panic!("{command:?}")
        };
        assert_eq!(
            token.secret_hash,
            sluice_security::token::hash_secret(&secret)
        );
        assert_eq!(token.expires_ms, Some(6000));
        assert!(
            !format!("{token:?}").contains(&secret),
            "no secret in the log entry"
        );
    }
}
