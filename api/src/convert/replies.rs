//! Answers on the wire: what a write produced, and an agent's assignment.

use super::{
    policy_from, policy_to, records, required, required_enum, task_state_from, task_state_to,
};
use super::{WireError, Within};
use crate::model::{AgentAssignment, AgentState, Assignment, JobState};
use crate::outcome::CommandOutput;
use crate::proto;

const JOB_STATES: &str = "pending, running, finished, failed, cancelled";

pub(crate) fn job_state_to(state: JobState) -> proto::JobState {
    match state {
        JobState::Pending => proto::JobState::Pending,
        JobState::Running => proto::JobState::Running,
        JobState::Finished => proto::JobState::Finished,
        JobState::Failed => proto::JobState::Failed,
        JobState::Cancelled => proto::JobState::Cancelled,
    }
}

pub(crate) fn job_state_from(value: i32) -> Result<JobState, WireError> {
    Ok(
        match required_enum::<proto::JobState>("state", value, JOB_STATES)? {
            proto::JobState::Unspecified => unreachable!("required_enum refuses 0"),
            proto::JobState::Pending => JobState::Pending,
            proto::JobState::Running => JobState::Running,
            proto::JobState::Finished => JobState::Finished,
            proto::JobState::Failed => JobState::Failed,
            proto::JobState::Cancelled => JobState::Cancelled,
        },
    )
}

pub(crate) fn agent_state_to(state: AgentState) -> proto::AgentState {
    match state {
        AgentState::Active => proto::AgentState::Active,
        AgentState::Draining => proto::AgentState::Draining,
        AgentState::Lost => proto::AgentState::Lost,
    }
}

pub(crate) fn agent_state_from(value: i32) -> Result<AgentState, WireError> {
    Ok(
        match required_enum::<proto::AgentState>("state", value, "active, draining, lost")? {
            proto::AgentState::Unspecified => unreachable!("required_enum refuses 0"),
            proto::AgentState::Active => AgentState::Active,
            proto::AgentState::Draining => AgentState::Draining,
            proto::AgentState::Lost => AgentState::Lost,
        },
    )
}

/// What a client's write produced, for its answer. The leader's own
/// commands (placements, preemptions, pending reasons, agent state changes)
/// never answer a client; their outputs have no message and come out as
/// `None` (`none`).
pub fn output_to_proto(output: &CommandOutput) -> proto::WriteOutput {
    use proto::write_output::Output as O;
    let o = match output.clone() {
        CommandOutput::AgentRegistered { id, new } => {
            O::AgentRegistered(proto::AgentRegistered { id, new })
        }
        CommandOutput::AgentDraining { id, tasks } => O::AgentDraining(proto::AgentDraining {
            id,
            tasks: tasks as u64,
        }),
        CommandOutput::AgentUndrained { id } => O::AgentUndrained(proto::AgentRef { id: Some(id) }),
        CommandOutput::AgentRemoved { id } => O::AgentRemoved(proto::AgentRef { id: Some(id) }),
        CommandOutput::RoleSet { name, created } => O::RoleSet(proto::RoleSet { name, created }),
        CommandOutput::RoleRemoved { name } => O::RoleRemoved(proto::RoleRef { name }),
        CommandOutput::JobSubmitted { id } => O::JobSubmitted(proto::JobRef { id: Some(id) }),
        CommandOutput::JobCancelled { id, previous } => O::JobCancelled(proto::JobCancelled {
            id,
            previous: job_state_to(previous) as i32,
        }),
        CommandOutput::TaskUpdated { job, task, changed } => {
            O::TaskUpdated(proto::TaskUpdated { job, task, changed })
        }
        CommandOutput::PolicySet { previous } => O::PolicySet(proto::PolicySet {
            previous: policy_to(previous) as i32,
        }),
        CommandOutput::StateRestored {
            agents,
            roles,
            jobs,
        } => O::StateRestored(proto::StateRestored {
            agents: agents as u64,
            roles: roles as u64,
            jobs: jobs as u64,
        }),
        CommandOutput::CheckpointRecorded { job, id } => {
            O::CheckpointRecorded(proto::CheckpointRecorded { job, id })
        }
        CommandOutput::AclTokenCreated { accessor, name } => {
            O::AclTokenCreated(proto::AclTokenChanged { accessor, name })
        }
        CommandOutput::AclTokenRevoked { accessor, name } => {
            O::AclTokenRevoked(proto::AclTokenChanged { accessor, name })
        }
        CommandOutput::None
        | CommandOutput::AgentStateSet { .. }
        | CommandOutput::JobPlaced { .. }
        | CommandOutput::JobPreempted { .. }
        | CommandOutput::PendingReasonsSet { .. } => O::None(proto::Empty {}),
    };
    proto::WriteOutput { output: Some(o) }
}

pub fn output_from_proto(output: Option<proto::WriteOutput>) -> Result<CommandOutput, WireError> {
    use proto::write_output::Output as O;
    let o = output
        .and_then(|o| o.output)
        .ok_or_else(|| WireError::missing("output", ""))?;
    Ok(match o {
        O::AgentRegistered(a) => CommandOutput::AgentRegistered {
            id: a.id,
            new: a.new,
        },
        O::AgentDraining(a) => CommandOutput::AgentDraining {
            id: a.id,
            tasks: a.tasks as usize,
        },
        O::AgentUndrained(a) => CommandOutput::AgentUndrained {
            id: required("agent_undrained.id", a.id)?,
        },
        O::AgentRemoved(a) => CommandOutput::AgentRemoved {
            id: required("agent_removed.id", a.id)?,
        },
        O::RoleSet(r) => CommandOutput::RoleSet {
            name: r.name,
            created: r.created,
        },
        O::RoleRemoved(r) => CommandOutput::RoleRemoved { name: r.name },
        O::JobSubmitted(j) => CommandOutput::JobSubmitted {
            id: required("job_submitted.id", j.id)?,
        },
        O::JobCancelled(j) => CommandOutput::JobCancelled {
            id: j.id,
            previous: job_state_from(j.previous).within("job_cancelled.previous")?,
        },
        O::TaskUpdated(t) => CommandOutput::TaskUpdated {
            job: t.job,
            task: t.task,
            changed: t.changed,
        },
        O::PolicySet(p) => CommandOutput::PolicySet {
            previous: policy_from(p.previous).within("policy_set")?,
        },
        O::StateRestored(s) => CommandOutput::StateRestored {
            agents: s.agents as usize,
            roles: s.roles as usize,
            jobs: s.jobs as usize,
        },
        O::CheckpointRecorded(c) => CommandOutput::CheckpointRecorded {
            job: c.job,
            id: c.id,
        },
        O::AclTokenCreated(t) => CommandOutput::AclTokenCreated {
            accessor: t.accessor,
            name: t.name,
        },
        O::AclTokenRevoked(t) => CommandOutput::AclTokenRevoked {
            accessor: t.accessor,
            name: t.name,
        },
        O::None(_) => CommandOutput::None,
    })
}

pub fn assignment_to_proto(a: &AgentAssignment) -> proto::AgentAssignment {
    proto::AgentAssignment {
        agent: a.agent,
        state: agent_state_to(a.state) as i32,
        tasks: a
            .tasks
            .iter()
            .map(|t| proto::Assignment {
                job: t.job,
                task: t.task,
                state: task_state_to(t.state) as i32,
                grant: Some(super::reads::grant_to(&t.grant)),
                name: t.name.clone(),
                kind: Some(match records::job_kind_to(&t.kind) {
                    proto::job_spec::Kind::Stream(s) => proto::assignment::Kind::Stream(s),
                    proto::job_spec::Kind::Command(c) => proto::assignment::Kind::Command(c),
                }),
                peers: t
                    .peers
                    .iter()
                    .map(|agent| proto::Peer { agent: *agent })
                    .collect(),
                attempt: t.attempt,
                restore_from: t.restore_from,
                last_checkpoint: t.last_checkpoint,
            })
            .collect(),
    }
}

pub fn assignment_from_proto(
    a: Option<proto::AgentAssignment>,
) -> Result<AgentAssignment, WireError> {
    let a = a.ok_or_else(|| WireError::missing("assignment", ""))?;
    let tasks = a
        .tasks
        .into_iter()
        .enumerate()
        .map(|(i, t)| assignment_from(t).within(&format!("tasks[{i}]")))
        .collect::<Result<_, WireError>>()
        .within("assignment")?;
    Ok(AgentAssignment {
        agent: a.agent,
        state: agent_state_from(a.state).within("assignment")?,
        tasks,
    })
}

fn assignment_from(t: proto::Assignment) -> Result<Assignment, WireError> {
    let grant = t.grant.ok_or_else(|| WireError::missing("grant", ""))?;
    Ok(Assignment {
        job: t.job,
        task: t.task,
        state: task_state_from(t.state)?,
        grant: super::reads::grant_from(grant),
        name: t.name,
        kind: records::job_kind_from(t.kind.map(|k| match k {
            proto::assignment::Kind::Stream(s) => proto::job_spec::Kind::Stream(s),
            proto::assignment::Kind::Command(c) => proto::job_spec::Kind::Command(c),
        }))?,
        peers: t.peers.into_iter().map(|p| p.agent).collect(),
        attempt: t.attempt,
        restore_from: t.restore_from,
        last_checkpoint: t.last_checkpoint,
    })
}
