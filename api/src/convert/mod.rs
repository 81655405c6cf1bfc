//! Between the wire's protobuf messages and the API's Rust types.
//!
//! A client turns a [`Request`] into a [`proto::WriteRequest`] (never
//! fails); a master turns what it received back into a [`Request`], or
//! refuses it with a [`WireError`] naming the field, as
//! `submit_job.kind: missing (one of stream, command)`. Ranges and limits
//! are not checked here: the leader validates the request it decoded as it
//! would any other.

mod reads;
mod records;
mod replies;

use std::fmt;

use crate::model::{AclPolicy, Change, Policy, RolePatch, TaskState};
use crate::proto;
use crate::query::Query;
use crate::request::Request;

pub use reads::{
    agent_to_proto, answer_to_json, job_to_proto, role_to_proto, summary_to_proto, token_to_proto,
};
pub use replies::{assignment_from_proto, assignment_to_proto, output_from_proto, output_to_proto};

/// A message that does not decode into a request: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct WireError {
    /// Dotted path from the request's operation, e.g. `submit_job.kind`.
    pub field: String,
    pub reason: String,
}

impl WireError {
    pub(crate) fn missing(field: impl Into<String>, one_of: &str) -> Self {
        Self {
            field: field.into(),
            reason: if one_of.is_empty() {
                "missing".into()
            } else {
                format!("missing (one of {one_of})")
            },
        }
    }

    pub(crate) fn unknown(field: impl Into<String>, value: i32, one_of: &str) -> Self {
        Self {
            field: field.into(),
            reason: format!("unknown value {value} (one of {one_of})"),
        }
    }

    /// The same error one level down: `field` is the enclosing message's.
    pub(crate) fn within(mut self, field: &str) -> Self {
        self.field = format!("{field}.{}", self.field);
        self
    }
}

/// Prefixes the field path of an error with the enclosing message's name.
pub(crate) trait Within<T> {
    fn within(self, field: &str) -> Result<T, WireError>;
}

impl<T> Within<T> for Result<T, WireError> {
    fn within(self, field: &str) -> Result<T, WireError> {
        self.map_err(|e| e.within(field))
    }
}

/// A field that must be set (an id: 0 is a real one, so absence is not 0).
pub(crate) fn required<T>(field: &str, value: Option<T>) -> Result<T, WireError> {
    value.ok_or_else(|| WireError::missing(field, ""))
}

/// A proto3 enum value that must be set: `UNSPECIFIED` (0) is missing, an
/// unknown number is named.
pub(crate) fn required_enum<E: TryFrom<i32>>(
    field: &str,
    value: i32,
    one_of: &str,
) -> Result<E, WireError> {
    if value == 0 {
        return Err(WireError::missing(field, one_of));
    }
    E::try_from(value).map_err(|_| WireError::unknown(field, value, one_of))
}

const POLICIES: &str = "fcfs, sjf, srtf, priority, drf";
const TASK_STATES: &str = "pending, staging, running, finished, failed, killed, lost";

impl From<&Request> for proto::WriteRequest {
    fn from(request: &Request) -> Self {
        use proto::write_request::Request as W;
        let op = match request.clone() {
            Request::RegisterAgent(spec) => W::RegisterAgent(records::agent_spec_to(&spec)),
            Request::DrainAgent { id, deadline_ms } => W::DrainAgent(proto::DrainAgent {
                id: Some(id),
                deadline_ms,
            }),
            Request::UndrainAgent { id } => W::UndrainAgent(proto::AgentRef { id: Some(id) }),
            Request::RemoveAgent { id } => W::RemoveAgent(proto::AgentRef { id: Some(id) }),
            Request::SetRole(spec) => W::SetRole(records::role_spec_to(&spec)),
            Request::UpdateRole(patch) => W::UpdateRole(role_patch_to(&patch)),
            Request::RemoveRole { name } => W::RemoveRole(proto::RoleRef { name }),
            Request::SubmitJob { job } => W::SubmitJob(records::job_spec_to(&job)),
            Request::CancelJob { id } => W::CancelJob(proto::JobRef { id: Some(id) }),
            Request::KillTask { job, task } => W::KillTask(proto::TaskRef {
                job: Some(job),
                task: Some(task),
            }),
            Request::SetPolicy { policy } => W::SetPolicy(proto::SetPolicy {
                policy: policy_to(policy) as i32,
            }),
            Request::RestoreState { snapshot } => W::RestoreState(proto::RestoreState { snapshot }),
            Request::UpdateTask { update } => W::UpdateTask(proto::TaskUpdate {
                job: Some(update.job),
                task: Some(update.task),
                agent: Some(update.agent),
                state: task_state_to(update.state) as i32,
                message: update.message,
            }),
            Request::CheckpointCompleted {
                job,
                attempt,
                checkpoint,
            } => W::CheckpointCompleted(proto::CheckpointCompleted {
                job: Some(job),
                attempt,
                checkpoint: Some(records::checkpoint_to(&checkpoint)),
            }),
            Request::CheckpointFailed {
                job,
                attempt,
                id,
                reason,
            } => W::CheckpointFailed(proto::CheckpointFailed {
                job: Some(job),
                attempt,
                id,
                reason,
            }),
            Request::CheckpointTriggered {
                job,
                attempt,
                id,
                triggered_ms,
            } => W::CheckpointTriggered(proto::CheckpointTriggered {
                job: Some(job),
                attempt,
                id,
                triggered_ms,
            }),
            Request::AclBootstrap => W::AclBootstrap(proto::Empty {}),
            Request::AclCreateToken {
                name,
                policies,
                ttl_ms,
            } => W::AclCreateToken(proto::AclCreateToken {
                name,
                policies: policies.iter().map(acl_policy_to).collect(),
                ttl_ms,
            }),
            Request::AclRevokeToken { accessor } => {
                W::AclRevokeToken(proto::AclRevokeToken { accessor })
            }
            Request::IssueLogTicket { job } => W::IssueLogTicket(proto::JobRef { id: Some(job) }),
        };
        proto::WriteRequest { request: Some(op) }
    }
}

impl TryFrom<proto::WriteRequest> for Request {
    type Error = WireError;

    fn try_from(write: proto::WriteRequest) -> Result<Self, WireError> {
        use proto::write_request::Request as W;
        let op = write.request.ok_or_else(|| {
            WireError::missing(
                "request",
                "an operation such as submit_job, cancel_job, set_role, ...",
            )
        })?;
        Ok(match op {
            W::RegisterAgent(spec) => {
                Request::RegisterAgent(records::agent_spec_from(spec).within("register_agent")?)
            }
            W::DrainAgent(d) => Request::DrainAgent {
                id: required("drain_agent.id", d.id)?,
                deadline_ms: d.deadline_ms,
            },
            W::UndrainAgent(a) => Request::UndrainAgent {
                id: required("undrain_agent.id", a.id)?,
            },
            W::RemoveAgent(a) => Request::RemoveAgent {
                id: required("remove_agent.id", a.id)?,
            },
            W::SetRole(spec) => Request::SetRole(records::role_spec_from(spec)),
            W::UpdateRole(patch) => Request::UpdateRole(role_patch_from(patch)),
            W::RemoveRole(r) => Request::RemoveRole { name: r.name },
            W::SubmitJob(job) => Request::SubmitJob {
                job: records::job_spec_from(job).within("submit_job")?,
            },
            W::CancelJob(j) => Request::CancelJob {
                id: required("cancel_job.id", j.id)?,
            },
            W::KillTask(t) => Request::KillTask {
                job: required("kill_task.job", t.job)?,
                task: required("kill_task.task", t.task)?,
            },
            W::SetPolicy(p) => Request::SetPolicy {
                policy: policy_from(p.policy).within("set_policy")?,
            },
            W::RestoreState(r) => Request::RestoreState {
                snapshot: r.snapshot,
            },
            W::UpdateTask(u) => Request::UpdateTask {
                update: crate::model::TaskUpdate {
                    job: required("update_task.job", u.job)?,
                    task: required("update_task.task", u.task)?,
                    agent: required("update_task.agent", u.agent)?,
                    state: task_state_from(u.state).within("update_task")?,
                    message: u.message,
                },
            },
            W::CheckpointCompleted(c) => Request::CheckpointCompleted {
                job: required("checkpoint_completed.job", c.job)?,
                attempt: c.attempt,
                checkpoint: records::checkpoint_from(
                    c.checkpoint
                        .ok_or_else(|| WireError::missing("checkpoint_completed.checkpoint", ""))?,
                ),
            },
            W::CheckpointFailed(c) => Request::CheckpointFailed {
                job: required("checkpoint_failed.job", c.job)?,
                attempt: c.attempt,
                id: c.id,
                reason: c.reason,
            },
            W::CheckpointTriggered(c) => Request::CheckpointTriggered {
                job: required("checkpoint_triggered.job", c.job)?,
                attempt: c.attempt,
                id: c.id,
                triggered_ms: c.triggered_ms,
            },
            W::AclBootstrap(proto::Empty {}) => Request::AclBootstrap,
            W::AclCreateToken(t) => Request::AclCreateToken {
                name: t.name,
                policies: t
                    .policies
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| acl_policy_from(p).within(&format!("policies[{i}]")))
                    .collect::<Result<_, _>>()
                    .within("acl_create_token")?,
                ttl_ms: t.ttl_ms,
            },
            W::AclRevokeToken(t) => Request::AclRevokeToken {
                accessor: t.accessor,
            },
            W::IssueLogTicket(j) => Request::IssueLogTicket {
                job: required("issue_log_ticket.id", j.id)?,
            },
        })
    }
}

impl From<&Query> for proto::ReadRequest {
    fn from(query: &Query) -> Self {
        use proto::read_request::Query as Q;
        let q = match query {
            Query::State => Q::State(proto::Empty {}),
            Query::Agents => Q::Agents(proto::Empty {}),
            Query::Agent { id } => Q::Agent(proto::AgentRef { id: Some(*id) }),
            Query::Roles => Q::Roles(proto::Empty {}),
            Query::Role { name } => Q::Role(proto::RoleRef { name: name.clone() }),
            Query::Jobs { state } => Q::Jobs(proto::JobsQuery {
                state: state.map_or(0, |s| replies::job_state_to(s) as i32),
            }),
            Query::Job { id } => Q::Job(proto::JobRef { id: Some(*id) }),
            Query::Scheduler => Q::Scheduler(proto::Empty {}),
            Query::AgentTasks { id } => Q::AgentTasks(proto::AgentRef { id: Some(*id) }),
            Query::AclTokens => Q::AclTokens(proto::Empty {}),
        };
        proto::ReadRequest {
            query: Some(q),
            stale: false,
        }
    }
}

impl TryFrom<&proto::ReadRequest> for Query {
    type Error = WireError;

    fn try_from(read: &proto::ReadRequest) -> Result<Self, WireError> {
        use proto::read_request::Query as Q;
        let q = read.query.as_ref().ok_or_else(|| {
            WireError::missing(
                "query",
                "state, agents, agent, roles, role, jobs, job, scheduler, agent_tasks, acl_tokens",
            )
        })?;
        Ok(match q {
            Q::State(_) => Query::State,
            Q::Agents(_) => Query::Agents,
            Q::Agent(a) => Query::Agent {
                id: required("agent.id", a.id)?,
            },
            Q::Roles(_) => Query::Roles,
            Q::Role(r) => Query::Role {
                name: r.name.clone(),
            },
            Q::Jobs(j) => Query::Jobs {
                state: match j.state {
                    0 => None,
                    s => Some(replies::job_state_from(s).within("jobs")?),
                },
            },
            Q::Job(j) => Query::Job {
                id: required("job.id", j.id)?,
            },
            Q::Scheduler(_) => Query::Scheduler,
            Q::AgentTasks(a) => Query::AgentTasks {
                id: required("agent_tasks.id", a.id)?,
            },
            Q::AclTokens(_) => Query::AclTokens,
        })
    }
}

fn role_patch_to(patch: &RolePatch) -> proto::RolePatch {
    use proto::reservations_change::Change as Rc;
    use proto::resources_change::Change as C;
    let resources = |c: &Change<crate::model::Resources>| proto::ResourcesChange {
        change: match c {
            Change::Keep => None,
            Change::Clear => Some(C::Clear(proto::Empty {})),
            Change::Set(r) => Some(C::Set(records::resources_to(r))),
        },
    };
    proto::RolePatch {
        name: patch.name.clone(),
        weight: patch.weight,
        quota: Some(resources(&patch.quota)),
        limit: Some(resources(&patch.limit)),
        reservations: Some(proto::ReservationsChange {
            change: match &patch.reservations {
                Change::Keep => None,
                Change::Clear => Some(Rc::Clear(proto::Empty {})),
                Change::Set(by_agent) => Some(Rc::Set(proto::Reservations {
                    by_agent: records::reservations_to(by_agent),
                })),
            },
        }),
    }
}

fn role_patch_from(patch: proto::RolePatch) -> RolePatch {
    use proto::reservations_change::Change as Rc;
    use proto::resources_change::Change as C;
    let resources = |c: Option<proto::ResourcesChange>| match c.and_then(|c| c.change) {
        None => Change::Keep,
        Some(C::Clear(_)) => Change::Clear,
        Some(C::Set(r)) => Change::Set(records::resources_from(r)),
    };
    RolePatch {
        name: patch.name,
        weight: patch.weight,
        quota: resources(patch.quota),
        limit: resources(patch.limit),
        reservations: match patch.reservations.and_then(|c| c.change) {
            None => Change::Keep,
            Some(Rc::Clear(_)) => Change::Clear,
            Some(Rc::Set(r)) => Change::Set(records::reservations_from(r.by_agent)),
        },
    }
}

pub(crate) fn policy_to(policy: Policy) -> proto::Policy {
    match policy {
        Policy::Fcfs => proto::Policy::Fcfs,
        Policy::Sjf => proto::Policy::Sjf,
        Policy::Srtf => proto::Policy::Srtf,
        Policy::Priority => proto::Policy::Priority,
        Policy::Drf => proto::Policy::Drf,
    }
}

pub(crate) fn policy_from(value: i32) -> Result<Policy, WireError> {
    Ok(
        match required_enum::<proto::Policy>("policy", value, POLICIES)? {
            proto::Policy::Unspecified => unreachable!("required_enum refuses 0"),
            proto::Policy::Fcfs => Policy::Fcfs,
            proto::Policy::Sjf => Policy::Sjf,
            proto::Policy::Srtf => Policy::Srtf,
            proto::Policy::Priority => Policy::Priority,
            proto::Policy::Drf => Policy::Drf,
        },
    )
}

pub(crate) fn task_state_to(state: TaskState) -> proto::TaskState {
    match state {
        TaskState::Pending => proto::TaskState::Pending,
        TaskState::Staging => proto::TaskState::Staging,
        TaskState::Running => proto::TaskState::Running,
        TaskState::Finished => proto::TaskState::Finished,
        TaskState::Failed => proto::TaskState::Failed,
        TaskState::Killed => proto::TaskState::Killed,
        TaskState::Lost => proto::TaskState::Lost,
    }
}

pub(crate) fn task_state_from(value: i32) -> Result<TaskState, WireError> {
    Ok(
        match required_enum::<proto::TaskState>("state", value, TASK_STATES)? {
            proto::TaskState::Unspecified => unreachable!("required_enum refuses 0"),
            proto::TaskState::Pending => TaskState::Pending,
            proto::TaskState::Staging => TaskState::Staging,
            proto::TaskState::Running => TaskState::Running,
            proto::TaskState::Finished => TaskState::Finished,
            proto::TaskState::Failed => TaskState::Failed,
            proto::TaskState::Killed => TaskState::Killed,
            proto::TaskState::Lost => TaskState::Lost,
        },
    )
}

pub(crate) fn acl_policy_to(policy: &AclPolicy) -> proto::AclPolicy {
    use proto::acl_policy::Policy as P;
    let p = match policy {
        AclPolicy::Read => P::Read(proto::Empty {}),
        AclPolicy::Submit { roles } => P::Submit(proto::SubmitPolicy {
            roles: roles.clone(),
        }),
        AclPolicy::Operator => P::Operator(proto::Empty {}),
        AclPolicy::Management => P::Management(proto::Empty {}),
        AclPolicy::Agent => P::Agent(proto::Empty {}),
        AclPolicy::Logs { job } => P::Logs(proto::JobRef { id: Some(*job) }),
    };
    proto::AclPolicy { policy: Some(p) }
}

pub(crate) fn acl_policy_from(policy: proto::AclPolicy) -> Result<AclPolicy, WireError> {
    use proto::acl_policy::Policy as P;
    Ok(
        match policy.policy.ok_or_else(|| {
            WireError::missing("policy", "read, submit, operator, management, agent")
        })? {
            P::Read(_) => AclPolicy::Read,
            P::Submit(s) => AclPolicy::Submit { roles: s.roles },
            P::Operator(_) => AclPolicy::Operator,
            P::Management(_) => AclPolicy::Management,
            P::Agent(_) => AclPolicy::Agent,
            P::Logs(j) => AclPolicy::Logs {
                job: required("logs.id", j.id)?,
            },
        },
    )
}

impl fmt::Display for proto::WriteRequest {
    /// The operation's name, for logs (never its fields: they may hold a
    /// snapshot or a spec of any size).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use proto::write_request::Request as W;
        let name = match &self.request {
            None => "(none)",
            Some(W::RegisterAgent(_)) => "register_agent",
            Some(W::DrainAgent(_)) => "drain_agent",
            Some(W::UndrainAgent(_)) => "undrain_agent",
            Some(W::RemoveAgent(_)) => "remove_agent",
            Some(W::SetRole(_)) => "set_role",
            Some(W::UpdateRole(_)) => "update_role",
            Some(W::RemoveRole(_)) => "remove_role",
            Some(W::SubmitJob(_)) => "submit_job",
            Some(W::CancelJob(_)) => "cancel_job",
            Some(W::KillTask(_)) => "kill_task",
            Some(W::SetPolicy(_)) => "set_policy",
            Some(W::RestoreState(_)) => "restore_state",
            Some(W::UpdateTask(_)) => "update_task",
            Some(W::CheckpointCompleted(_)) => "checkpoint_completed",
            Some(W::CheckpointFailed(_)) => "checkpoint_failed",
            Some(W::CheckpointTriggered(_)) => "checkpoint_triggered",
            Some(W::AclBootstrap(_)) => "acl_bootstrap",
            Some(W::AclCreateToken(_)) => "acl_create_token",
            Some(W::AclRevokeToken(_)) => "acl_revoke_token",
            Some(W::IssueLogTicket(_)) => "issue_log_ticket",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests;
