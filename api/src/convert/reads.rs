//! What reads answer, on the wire: the stored records as typed messages.

use super::replies::{agent_state_from, agent_state_to, job_state_from, job_state_to};
use super::{policy_from, policy_to, records, required, task_state_from, task_state_to};
use super::{WireError, Within};
use crate::model::{
    Agent, CheckpointFailure, CheckpointInfo, CheckpointStarted, Drain, Grant, Job, JobEvent, Role,
    SchedulerSummary, Task, TokenInfo,
};
use crate::proto;
use crate::proto::read_reply::Result as R;

pub(crate) fn grant_to(g: &Grant) -> proto::Grant {
    proto::Grant {
        agent: g.agent,
        cores: g.cores.iter().copied().collect(),
        memory_bytes: g.memory_bytes,
        disk_bytes: g.disk_bytes,
    }
}

pub(crate) fn grant_from(g: proto::Grant) -> Grant {
    Grant {
        agent: g.agent,
        cores: g.cores.into_iter().collect(),
        memory_bytes: g.memory_bytes,
        disk_bytes: g.disk_bytes,
    }
}

pub fn agent_to_proto(a: &Agent) -> proto::AgentRecord {
    proto::AgentRecord {
        id: a.id,
        hostname: a.hostname.clone(),
        cores: a.cores.iter().copied().collect(),
        memory_bytes: a.memory_bytes,
        disk_bytes: a.disk_bytes,
        attributes: a
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        state: agent_state_to(a.state) as i32,
        registered_at: a.registered_at,
        used_cores: a.used_cores.iter().copied().collect(),
        used_memory_bytes: a.used_memory_bytes,
        used_disk_bytes: a.used_disk_bytes,
        tasks: a
            .tasks
            .iter()
            .map(|&(job, task)| proto::TaskRef {
                job: Some(job),
                task: Some(task),
            })
            .collect(),
        drain: a.drain.map(|d| proto::Drain {
            since_ms: d.since_ms,
            deadline_ms: d.deadline_ms,
        }),
        lost_reason: a.lost_reason.clone(),
    }
}

fn agent_from(a: proto::AgentRecord) -> Result<Agent, WireError> {
    Ok(Agent {
        id: a.id,
        hostname: a.hostname,
        cores: a.cores.into_iter().collect(),
        memory_bytes: a.memory_bytes,
        disk_bytes: a.disk_bytes,
        attributes: a.attributes.into_iter().collect(),
        state: agent_state_from(a.state)?,
        registered_at: a.registered_at,
        used_cores: a.used_cores.into_iter().collect(),
        used_memory_bytes: a.used_memory_bytes,
        used_disk_bytes: a.used_disk_bytes,
        tasks: a
            .tasks
            .into_iter()
            .map(|t| {
                Ok((
                    required("tasks.job", t.job)?,
                    required("tasks.task", t.task)?,
                ))
            })
            .collect::<Result<_, WireError>>()?,
        drain: a.drain.map(|d| Drain {
            since_ms: d.since_ms,
            deadline_ms: d.deadline_ms,
        }),
        lost_reason: a.lost_reason,
    })
}

pub fn role_to_proto(r: &Role) -> proto::RoleSpec {
    records::role_spec_to(&r.spec())
}

fn role_from(r: proto::RoleSpec) -> Role {
    let spec = records::role_spec_from(r);
    Role {
        name: spec.name,
        weight: spec.weight,
        quota: spec.quota,
        limit: spec.limit,
        reservations: spec.reservations,
    }
}

pub fn job_to_proto(j: &Job) -> proto::JobRecord {
    proto::JobRecord {
        id: j.id,
        spec: Some(records::job_spec_to(&j.spec)),
        state: job_state_to(j.state) as i32,
        reason: j.reason.clone(),
        submitted_index: j.submitted_index,
        submitted_ms: j.submitted_ms,
        started_ms: j.started_ms,
        ended_ms: j.ended_ms,
        run_ms: j.run_ms,
        preemptions: j.preemptions,
        tasks: j
            .tasks
            .iter()
            .map(|t| proto::TaskRecord {
                state: task_state_to(t.state) as i32,
                grant: t.grant.as_ref().map(grant_to),
                message: t.message.clone(),
                last_agent: t.last_agent,
            })
            .collect(),
        events: j
            .events
            .iter()
            .map(|e| proto::JobEvent {
                index: e.index,
                at_ms: e.at_ms,
                message: e.message.clone(),
            })
            .collect(),
        version: j.version,
        attempt: j.attempt,
        checkpoints: j
            .checkpoints
            .iter()
            .map(|c| proto::CompletedCheckpoint {
                info: Some(records::checkpoint_to(c)),
                completed_ms: c.completed_ms,
            })
            .collect(),
        restore_from: j.restore_from,
        restarts: j.restarts,
        not_before_ms: j.not_before_ms,
        checkpoints_failed: j.checkpoints_failed,
        failed_checkpoints: j
            .failed_checkpoints
            .iter()
            .map(|f| proto::CheckpointFailure {
                id: f.id,
                triggered_ms: f.triggered_ms,
                failed_ms: f.failed_ms,
                reason: f.reason.clone(),
            })
            .collect(),
        checkpoint_in_progress: j.checkpoint_in_progress.as_ref().map(|c| {
            proto::CheckpointStarted {
                id: c.id,
                triggered_ms: c.triggered_ms,
            }
        }),
    }
}

fn job_from(j: proto::JobRecord) -> Result<Job, WireError> {
    let spec = records::job_spec_from(j.spec.ok_or_else(|| WireError::missing("spec", ""))?)
        .within("spec")?;
    let tasks = j
        .tasks
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            Ok(Task {
                state: task_state_from(t.state).within(&format!("tasks[{i}]"))?,
                grant: t.grant.map(grant_from),
                message: t.message,
                last_agent: t.last_agent,
            })
        })
        .collect::<Result<_, WireError>>()?;
    let checkpoints = j
        .checkpoints
        .into_iter()
        .map(|c| {
            let info = c
                .info
                .ok_or_else(|| WireError::missing("checkpoints.info", ""))?;
            Ok(CheckpointInfo {
                completed_ms: c.completed_ms,
                ..records::checkpoint_from(info)
            })
        })
        .collect::<Result<_, WireError>>()?;
    Ok(Job {
        id: j.id,
        spec,
        state: job_state_from(j.state)?,
        reason: j.reason,
        submitted_index: j.submitted_index,
        submitted_ms: j.submitted_ms,
        started_ms: j.started_ms,
        ended_ms: j.ended_ms,
        run_ms: j.run_ms,
        preemptions: j.preemptions,
        tasks,
        events: j
            .events
            .into_iter()
            .map(|e| JobEvent {
                index: e.index,
                at_ms: e.at_ms,
                message: e.message,
            })
            .collect(),
        version: j.version,
        attempt: j.attempt,
        checkpoints,
        restore_from: j.restore_from,
        restarts: j.restarts,
        not_before_ms: j.not_before_ms,
        checkpoints_failed: j.checkpoints_failed,
        failed_checkpoints: j
            .failed_checkpoints
            .into_iter()
            .map(|f| CheckpointFailure {
                id: f.id,
                triggered_ms: f.triggered_ms,
                failed_ms: f.failed_ms,
                reason: f.reason,
            })
            .collect(),
        checkpoint_in_progress: j.checkpoint_in_progress.map(|c| CheckpointStarted {
            id: c.id,
            triggered_ms: c.triggered_ms,
        }),
    })
}

pub fn summary_to_proto(s: &SchedulerSummary) -> proto::SchedulerSummary {
    proto::SchedulerSummary {
        policy: policy_to(s.policy) as i32,
        pending: s.pending as u64,
        running: s.running as u64,
        ended: s.ended as u64,
        offered: Some(records::resources_to(&s.offered)),
        granted: Some(records::resources_to(&s.granted)),
    }
}

fn summary_from(s: proto::SchedulerSummary) -> Result<SchedulerSummary, WireError> {
    let amount = |r: Option<proto::Resources>, field: &str| {
        r.map(records::resources_from)
            .ok_or_else(|| WireError::missing(field, ""))
    };
    Ok(SchedulerSummary {
        policy: policy_from(s.policy)?,
        pending: s.pending as usize,
        running: s.running as usize,
        ended: s.ended as usize,
        offered: amount(s.offered, "offered")?,
        granted: amount(s.granted, "granted")?,
    })
}

pub fn token_to_proto(t: &TokenInfo) -> proto::TokenInfo {
    proto::TokenInfo {
        accessor: t.accessor.clone(),
        name: t.name.clone(),
        policies: t.policies.iter().map(super::acl_policy_to).collect(),
        created_ms: t.created_ms,
        expires_ms: t.expires_ms,
        revoked_ms: t.revoked_ms,
        agent: t.agent,
    }
}

fn token_from(t: proto::TokenInfo) -> Result<TokenInfo, WireError> {
    Ok(TokenInfo {
        accessor: t.accessor,
        name: t.name,
        policies: t
            .policies
            .into_iter()
            .map(super::acl_policy_from)
            .collect::<Result<_, _>>()?,
        created_ms: t.created_ms,
        expires_ms: t.expires_ms,
        revoked_ms: t.revoked_ms,
        agent: t.agent,
    })
}

/// A read's answer as the JSON documents the CLI prints with `--output
/// json` (the records' own serde shapes).
pub fn answer_to_json(result: Option<R>) -> Result<serde_json::Value, WireError> {
    let result = result.ok_or_else(|| WireError::missing("result", ""))?;
    let json = |v: Result<serde_json::Value, serde_json::Error>| {
        v.map_err(|e| WireError {
            field: "result".into(),
            reason: e.to_string(),
        })
    };
    match result {
        R::StateJson(text) => json(serde_json::from_str(&text)),
        R::Agents(list) => json(serde_json::to_value(all(
            list.agents,
            agent_from,
            "agents",
        )?)),
        R::Agent(a) => json(serde_json::to_value(agent_from(a).within("agent")?)),
        R::Roles(list) => json(serde_json::to_value(
            list.roles.into_iter().map(role_from).collect::<Vec<_>>(),
        )),
        R::Role(r) => json(serde_json::to_value(role_from(r))),
        R::Jobs(list) => json(serde_json::to_value(all(list.jobs, job_from, "jobs")?)),
        R::Job(j) => json(serde_json::to_value(job_from(j).within("job")?)),
        R::Scheduler(s) => json(serde_json::to_value(summary_from(s).within("scheduler")?)),
        R::AgentTasks(a) => json(serde_json::to_value(super::assignment_from_proto(Some(a))?)),
        R::AclTokens(list) => json(serde_json::to_value(all(
            list.tokens,
            token_from,
            "acl_tokens",
        )?)),
    }
}

/// Decodes every message of a list, naming the list in an error.
fn all<P, T>(
    messages: Vec<P>,
    decode: fn(P) -> Result<T, WireError>,
    field: &str,
) -> Result<Vec<T>, WireError> {
    messages
        .into_iter()
        .map(decode)
        .collect::<Result<_, _>>()
        .within(field)
}
