//! The replicated cluster state and its deterministic `apply`.
//!
//! Apply validates every command against the current state and either
//! applies it whole or rejects it with a [`CommandError`], leaving the state
//! untouched: validation happens before the first mutation.

mod agents;
mod checkpoints;
mod jobs;
mod placement;
mod roles;

use std::collections::{BTreeMap, BTreeSet};

use openraft::LogId;
use serde::{Deserialize, Serialize};

// The records themselves are the API's: clients read them as they are stored.
pub use sluice_api::model::*;
pub use sluice_api::Query;

use crate::proto;
use crate::proto::read_reply::Result as ReadResult;

use crate::acl::{AclState, AclToken};
use crate::command::{Command, CommandError, CommandOutput, Proposal, Response};
use crate::types::{NodeId, TypeConfig};

/// Everything the masters agree on: add a field here, a command in
/// [`Command`], its apply function in a file of this module.
///
/// Some fields are derived from the jobs' grants and kept for speed (each
/// agent's used resources and tasks, `role_usage`, `ended_jobs`);
/// [`ClusterState::validate`] recomputes and compares them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub agents: BTreeMap<AgentId, Agent>,
    pub roles: BTreeMap<String, Role>,
    pub jobs: BTreeMap<JobId, Job>,
    /// The scheduler's queue policy.
    pub policy: Policy,
    /// The id the next newly registered agent gets.
    pub next_agent_id: AgentId,
    /// The id the next submitted job gets.
    pub next_job_id: JobId,
    /// What each role's placed tasks hold (roles holding nothing are absent).
    pub role_usage: BTreeMap<String, Resources>,
    /// How many jobs in `jobs` have ended.
    pub ended_jobs: u64,
    /// Index of the last entry that changed this state (0 if none).
    pub last_change_index: u64,
    /// ACL tokens. A restored snapshot keeps the cluster's current ones.
    #[serde(default)]
    pub acl: AclState,
}

impl ClusterState {
    /// Applies one command; on error the state is unchanged.
    pub fn apply_command(
        &mut self,
        index: u64,
        command: &Command,
    ) -> Result<CommandOutput, CommandError> {
        let output = match command {
            Command::RegisterAgent { spec, token } => {
                self.register_agent(index, spec, token.as_deref())?
            }
            Command::SetAgentState {
                id,
                state,
                reason,
                now_ms,
            } => self.set_agent_state(index, *now_ms, *id, *state, reason.as_deref())?,
            Command::DrainAgent {
                id,
                deadline_ms,
                now_ms,
            } => self.drain_agent(*now_ms, *id, *deadline_ms)?,
            Command::UndrainAgent { id } => self.undrain_agent(*id)?,
            Command::RemoveAgent { id } => self.remove_agent(*id)?,
            Command::SetRole(spec) => self.set_role(spec)?,
            Command::UpdateRole(patch) => self.update_role(patch)?,
            Command::RemoveRole { name } => self.remove_role(name)?,
            Command::SubmitJob { job, now_ms } => self.submit_job(index, *now_ms, job)?,
            Command::CancelJob { id, now_ms } => self.cancel_job(index, *now_ms, *id)?,
            Command::KillTask { job, task, now_ms } => {
                self.kill_task(index, *now_ms, *job, *task)?
            }
            Command::SetPolicy { policy } => self.set_policy(*policy)?,
            Command::PlaceJob {
                job,
                version,
                grants,
                reason,
                now_ms,
            } => self.place_job(index, *now_ms, *job, *version, grants, reason.as_deref())?,
            Command::PreemptJob {
                job,
                version,
                reason,
                now_ms,
            } => self.preempt_job(index, *now_ms, *job, *version, reason)?,
            Command::SetPendingReasons { reasons } => self.set_pending_reasons(reasons)?,
            Command::UpdateTask { update, now_ms } => self.update_task(index, *now_ms, update)?,
            Command::RestoreState(saved) => self.restore(saved)?,
            Command::CheckpointCompleted {
                job,
                attempt,
                checkpoint,
                now_ms,
            } => self.checkpoint_completed(*now_ms, *job, *attempt, checkpoint)?,
            Command::CheckpointFailed {
                job,
                attempt,
                id,
                reason,
                now_ms,
            } => self.checkpoint_failed(*now_ms, *job, *attempt, *id, reason)?,
            Command::CheckpointTriggered {
                job,
                attempt,
                id,
                triggered_ms,
                now_ms,
            } => self.checkpoint_triggered(*now_ms, *job, *attempt, *id, *triggered_ms)?,
            Command::AclBootstrap { token } => {
                if self.acl.bootstrapped {
                    return Err(CommandError::AclBootstrapped);
                }
                let output = self.create_token(token)?;
                self.acl.bootstrapped = true;
                output
            }
            Command::AclCreateToken { token } => self.create_token(token)?,
            Command::AclRevokeToken { accessor, now_ms } => {
                let name = self.acl.revoke(accessor, *now_ms)?;
                CommandOutput::AclTokenRevoked {
                    accessor: accessor.clone(),
                    name,
                }
            }
        };
        self.last_change_index = index;
        Ok(output)
    }

    fn create_token(&mut self, token: &AclToken) -> Result<CommandOutput, CommandError> {
        self.acl.check_new(token)?;
        self.acl.insert(token.clone());
        Ok(CommandOutput::AclTokenCreated {
            accessor: token.accessor.clone(),
            name: token.name.clone(),
        })
    }

    /// Replaces the allocation state with a saved one; the ACL tokens stay
    /// (a snapshot restored must not lock the operator out, nor bring back
    /// revoked tokens).
    fn restore(&mut self, saved: &ClusterState) -> Result<CommandOutput, CommandError> {
        saved.validate()?;
        let mut acl = std::mem::take(&mut self.acl);
        let next_agent_id = self.next_agent_id;
        *self = saved.clone();
        // Ids never go back, or a token bound to an agent the snapshot
        // predates would act for the next agent given that id; bindings to
        // agents the restored state does not hold are dropped.
        self.next_agent_id = self.next_agent_id.max(next_agent_id);
        for token in acl.tokens.values_mut() {
            if token.agent.is_some_and(|a| !self.agents.contains_key(&a)) {
                token.agent = None;
            }
        }
        self.acl = acl;
        Ok(CommandOutput::StateRestored {
            agents: self.agents.len(),
            roles: self.roles.len(),
            jobs: self.jobs.len(),
        })
    }

    /// Checks a whole state, e.g. one read from a snapshot file.
    pub fn validate(&self) -> Result<(), CommandError> {
        if self.agents.len() > AGENTS_MAX {
            return Err(CommandError::LimitReached {
                what: "agents".into(),
                max: AGENTS_MAX as u64,
            });
        }
        for (id, agent) in &self.agents {
            if *id != agent.id {
                return Err(CommandError::invalid(
                    format!("agents.{id}.id"),
                    format!("agent stored under id {id} says its id is {}", agent.id),
                ));
            }
            if *id >= self.next_agent_id {
                return Err(CommandError::invalid(
                    "next_agent_id",
                    format!("{} is not above agent id {id}", self.next_agent_id),
                ));
            }
            agent.spec().validate()?;
        }
        for (name, role) in &self.roles {
            if name != &role.name {
                return Err(CommandError::invalid(
                    format!("roles.{name}.name"),
                    format!("role stored under {name:?} is named {:?}", role.name),
                ));
            }
            role.spec().validate()?;
            self.check_reservations(&role.spec())?;
        }
        self.validate_jobs()
    }

    /// Checks every job and recomputes what is derived from their grants:
    /// no core granted twice, no agent's memory or disk oversubscribed, no
    /// grant on a Lost agent, usage counters right.
    fn validate_jobs(&self) -> Result<(), CommandError> {
        let bad = |field: String, reason: String| Err(CommandError::invalid(field, reason));
        let mut used: BTreeMap<AgentId, Usage> = BTreeMap::new();
        let mut role_usage: BTreeMap<String, Resources> = BTreeMap::new();
        let mut ended = 0;
        for (id, job) in &self.jobs {
            if *id != job.id || *id >= self.next_job_id {
                return bad(
                    format!("jobs.{id}.id"),
                    "does not match its key or is not below next_job_id".into(),
                );
            }
            job.spec.validate()?;
            ended += u64::from(job.state.is_ended());
            let (tasks, each) = job.spec.demand();
            if job.tasks.len() != tasks as usize {
                return bad(
                    format!("jobs.{id}.tasks"),
                    format!("{} tasks, the spec says {tasks}", job.tasks.len()),
                );
            }
            for (t, task) in job.tasks.iter().enumerate() {
                let Some(grant) = &task.grant else { continue };
                let field = format!("jobs.{id}.tasks.{t}.grant");
                if job.state != JobState::Running || grant.resources() != each {
                    return bad(
                        field,
                        "a grant on a job that is not Running, or of the wrong size".into(),
                    );
                }
                let Some(agent) = self.agents.get(&grant.agent) else {
                    return bad(field, format!("unknown agent {}", grant.agent));
                };
                if agent.state == AgentState::Lost {
                    return bad(field, format!("agent {} is Lost", agent.id));
                }
                let entry = used.entry(grant.agent).or_default();
                for core in &grant.cores {
                    if !agent.cores.contains(core) || !entry.0.insert(*core) {
                        return bad(
                            field,
                            format!(
                                "core {core} of agent {} not offered or granted twice",
                                agent.id
                            ),
                        );
                    }
                }
                entry.1 += grant.memory_bytes;
                entry.2 += grant.disk_bytes;
                entry.3.insert((*id, t as u32));
                let usage = role_usage.entry(job.spec.role.clone()).or_default();
                *usage = usage.plus(&grant.resources());
            }
        }
        for (id, agent) in &self.agents {
            let (cores, memory, disk, tasks) = used.remove(id).unwrap_or_default();
            if memory > agent.memory_bytes || disk > agent.disk_bytes {
                return bad(
                    format!("agents.{id}"),
                    "memory or disk oversubscribed".into(),
                );
            }
            if cores != agent.used_cores
                || memory != agent.used_memory_bytes
                || disk != agent.used_disk_bytes
                || tasks != agent.tasks
            {
                return bad(
                    format!("agents.{id}.used_*"),
                    "does not match the grants of its tasks".into(),
                );
            }
        }
        role_usage.retain(|_, usage| !usage.is_zero());
        if role_usage != self.role_usage {
            return bad(
                "role_usage".into(),
                "does not match the grants of the roles' jobs".into(),
            );
        }
        if ended != self.ended_jobs {
            return bad(
                "ended_jobs".into(),
                format!("{} but {ended} jobs have ended", self.ended_jobs),
            );
        }
        Ok(())
    }
}

/// What an agent's grants add up to: cores, memory, disk, tasks.
type Usage = (BTreeSet<u32>, u64, u64, BTreeSet<(JobId, u32)>);

impl sluice_storage::StateLogic<TypeConfig> for ClusterState {
    fn apply(&mut self, log_id: &LogId<NodeId>, proposal: &Proposal) -> Response {
        Response(
            proposal
                .0
                .iter()
                .map(|command| self.apply_command(log_id.index, command))
                .collect(),
        )
    }

    fn empty_response() -> Response {
        Response(Vec::new())
    }
}

impl ClusterState {
    /// Answers a query from this state, as the API's typed reply.
    pub fn answer(&self, query: &Query) -> Result<ReadResult, CommandError> {
        use sluice_api::convert as wire;
        let state = self;
        let encode = |e: serde_json::Error| CommandError::invalid("query", e.to_string());
        Ok(match query {
            // Without the ACL tokens: a saved snapshot is no key to anything.
            Query::State => {
                let mut value = serde_json::to_value(state).map_err(encode)?;
                if let serde_json::Value::Object(map) = &mut value {
                    map.remove("acl");
                }
                ReadResult::StateJson(value.to_string())
            }
            Query::Agents => ReadResult::Agents(proto::AgentList {
                agents: state.agents.values().map(wire::agent_to_proto).collect(),
            }),
            Query::Agent { id } => {
                let agent = state
                    .agents
                    .get(id)
                    .ok_or(CommandError::UnknownAgent { id: *id })?;
                ReadResult::Agent(wire::agent_to_proto(agent))
            }
            Query::Roles => ReadResult::Roles(proto::RoleList {
                roles: state.roles.values().map(wire::role_to_proto).collect(),
            }),
            Query::Role { name } => {
                let role = state
                    .roles
                    .get(name)
                    .ok_or_else(|| CommandError::UnknownRole { name: name.clone() })?;
                ReadResult::Role(wire::role_to_proto(role))
            }
            Query::Jobs { state: filter } => ReadResult::Jobs(proto::JobList {
                jobs: state
                    .jobs
                    .values()
                    .filter(|j| filter.is_none_or(|s| j.state == s))
                    .map(wire::job_to_proto)
                    .collect(),
            }),
            Query::Job { id } => {
                let job = state
                    .jobs
                    .get(id)
                    .ok_or(CommandError::UnknownJob { id: *id })?;
                ReadResult::Job(wire::job_to_proto(job))
            }
            Query::Scheduler => {
                ReadResult::Scheduler(wire::summary_to_proto(&state.scheduler_summary()))
            }
            Query::AgentTasks { id } => {
                let agent = state
                    .agents
                    .get(id)
                    .ok_or(CommandError::UnknownAgent { id: *id })?;
                ReadResult::AgentTasks(wire::assignment_to_proto(&state.assignment_of(agent)))
            }
            Query::AclTokens => ReadResult::AclTokens(proto::TokenList {
                tokens: state
                    .acl
                    .tokens
                    .values()
                    .map(|t| wire::token_to_proto(&TokenInfo::from(t)))
                    .collect(),
            }),
        })
    }
}

impl ClusterState {
    /// The scheduler's policy and the queue at a glance.
    pub fn scheduler_summary(&self) -> SchedulerSummary {
        let state = self;
        let count = |s: JobState| state.jobs.values().filter(|j| j.state == s).count();
        let (offered, granted) = state
            .agents
            .values()
            .filter(|a| a.state != AgentState::Lost)
            .fold((Resources::ZERO, Resources::ZERO), |(o, g), a| {
                (o.plus(&a.total()), g.plus(&a.total().minus(&a.free())))
            });
        SchedulerSummary {
            policy: state.policy,
            pending: count(JobState::Pending),
            running: count(JobState::Running),
            ended: state.ended_jobs as usize,
            offered,
            granted,
        }
    }
}

impl ClusterState {
    /// What `agent` should be running.
    pub fn assignment_of(&self, agent: &Agent) -> AgentAssignment {
        let state = self;
        let tasks = agent
            .tasks
            .iter()
            .filter_map(|&(job_id, task)| {
                let job = state.jobs.get(&job_id)?;
                let slot = job.tasks.get(task as usize)?;
                Some(Assignment {
                    job: job_id,
                    task,
                    state: slot.state,
                    grant: slot.grant.clone()?,
                    name: job.spec.name.clone(),
                    kind: job.spec.kind.clone(),
                    peers: job
                        .tasks
                        .iter()
                        .map(|t| t.grant.as_ref().map(|g| g.agent))
                        .collect(),
                    attempt: job.attempt,
                    restore_from: job.restore_from,
                    last_checkpoint: job.checkpoints.last().map(|c| c.id),
                })
            })
            .collect();
        AgentAssignment {
            agent: agent.id,
            state: agent.state,
            tasks,
        }
    }
}

#[cfg(test)]
mod acl_tests;
#[cfg(test)]
mod tests;
