//! The leader's side of a client [`Request`]: what it needs and the command it becomes.
//!
//! The leader validates a request, checks that the caller may make it
//! ([`need`]), and only then turns it into a command ([`into_command`]),
//! stamping its own clock and making any secret itself. The scheduler's and
//! the leader's own commands have no request: no client can send them.

pub use sluice_api::Request;

use crate::acl::{AclPolicy, AclToken, Need};
use crate::command::{Command, CommandError};
use crate::state::{ClusterState, JobId};
use sluice_api::model::acl::LOG_TICKET_TTL_MS;

/// A created token's secret, returned once to whoever asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSecret(pub String);

/// What a token needs to make this request, given the current state;
/// None for the one request that needs no token (bootstrap). A request
/// about a job that does not exist is refused here: authorising it
/// against "some role" would let a token of one role act on a job of
/// another that appears before the request applies.
pub fn need(request: &Request, state: &ClusterState) -> Result<Option<Need>, CommandError> {
    let job_role = |id: &JobId| {
        state
            .jobs
            .get(id)
            .map(|j| Need::Submit(j.spec.role.clone()))
            .ok_or(CommandError::UnknownJob { id: *id })
    };
    Ok(Some(match request {
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
        Request::IssueLogTicket { job } => {
            job_role(job)?;
            Need::ReadJob(*job)
        }
        Request::RestoreState { .. }
        | Request::AclCreateToken { .. }
        | Request::AclRevokeToken { .. } => Need::Management,
    }))
}

/// The command the leader proposes for this request at `now_ms`, and
/// the secret of a token it creates (to answer with, never to log).
/// `caller_token` is the accessor of the token the request came with, when
/// it is to be bound to the agent that registers with it.
pub fn into_command(
    request: Request,
    now_ms: u64,
    caller_token: Option<String>,
) -> Result<(Command, Option<NewSecret>), CommandError> {
    let new_token = |name: String, policies: Vec<AclPolicy>, ttl_ms: Option<u64>| {
        let secret = sluice_security::token::new_secret().map_err(CommandError::internal)?;
        let token = AclToken {
            accessor: sluice_security::token::new_accessor().map_err(CommandError::internal)?,
            name,
            secret_hash: sluice_security::token::hash_secret(&secret),
            policies,
            created_ms: now_ms,
            expires_ms: ttl_ms.map(|ttl| now_ms.saturating_add(ttl)),
            revoked_ms: None,
            agent: None,
        };
        Ok::<_, CommandError>((token, NewSecret(secret)))
    };
    let command = match request {
        Request::RegisterAgent(spec) => Command::RegisterAgent {
            spec,
            token: caller_token,
        },
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
        Request::RestoreState { snapshot } => {
            let state: ClusterState = serde_json::from_str(&snapshot).map_err(|e| {
                CommandError::invalid(
                    "snapshot",
                    format!(
                        "not a snapshot document: line {} column {}: {e}",
                        e.line(),
                        e.column()
                    ),
                )
            })?;
            Command::RestoreState(Box::new(state))
        }
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
            let (token, secret) = new_token("bootstrap".into(), vec![AclPolicy::Management], None)?;
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
        Request::IssueLogTicket { job } => {
            let (token, secret) = new_token(
                format!("logs of job {job}"),
                vec![AclPolicy::Logs { job }],
                Some(LOG_TICKET_TTL_MS),
            )?;
            return Ok((Command::AclCreateToken { token }, Some(secret)));
        }
    };
    Ok((command, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_about_a_job_that_does_not_exist_needs_nothing_and_is_refused() {
        let state = ClusterState::default();
        assert_eq!(
            need(&Request::CancelJob { id: 7 }, &state),
            Err(CommandError::UnknownJob { id: 7 })
        );
        assert_eq!(
            need(&Request::KillTask { job: 7, task: 0 }, &state),
            Err(CommandError::UnknownJob { id: 7 })
        );
        assert_eq!(need(&Request::AclBootstrap, &state), Ok(None));
    }

    #[test]
    fn the_leader_stamps_time_and_makes_the_secret() {
        let (command, secret) = into_command(Request::CancelJob { id: 4 }, 1234, None).unwrap();
        assert_eq!(
            command,
            Command::CancelJob {
                id: 4,
                now_ms: 1234
            }
        );
        assert!(secret.is_none());
        let request = Request::AclCreateToken {
            name: "ci".into(),
            policies: vec![AclPolicy::Read],
            ttl_ms: Some(1000),
        };
        let (command, secret) = into_command(request, 5000, None).unwrap();
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
