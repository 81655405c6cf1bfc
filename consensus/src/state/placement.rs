//! Granting resources to jobs and taking them back: the apply side of the
//! scheduler's decisions and of agents' task reports.
//!
//! Whatever the leader proposes, apply enforces the invariants: a core is
//! granted to one task at a time, an agent's memory and disk are never
//! oversubscribed, nothing new lands on a Draining or Lost agent, a job
//! matches its constraints and its role stays within its limit. A violating
//! proposal is rejected with a [`PlacementViolation`] and changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use super::clip_message as clip;
use super::*;
use crate::command::{CommandError, CommandOutput};

/// What the grants of one command take from one agent.
#[derive(Default)]
struct AgentTake {
    cores: BTreeSet<u32>,
    memory_bytes: u64,
    disk_bytes: u64,
}

impl ClusterState {
    /// The job a scheduler decision names, if the decision was made on its
    /// current version.
    fn decided_job(&self, id: JobId, version: u64) -> Result<&super::Job, CommandError> {
        let job = self.jobs.get(&id).ok_or(CommandError::UnknownJob { id })?;
        if job.version != version {
            return Err(CommandError::StaleDecision {
                job: id,
                decided_on: version,
                current: job.version,
            });
        }
        Ok(job)
    }

    /// Checks that every grant the jobs `ids` hold is recorded on its
    /// agent, which releasing them relies on. It always holds (`validate`
    /// recomputes the same counters); if a bug ever broke it, the command
    /// is refused here, before it changes anything, rather than stopping
    /// every member at the same log index.
    pub(super) fn check_held(
        &self,
        ids: impl IntoIterator<Item = JobId>,
    ) -> Result<(), CommandError> {
        let mut held: BTreeMap<AgentId, (u64, u64)> = BTreeMap::new();
        for id in ids {
            let job = self
                .jobs
                .get(&id)
                .ok_or_else(|| CommandError::internal(format!("job {id} is not in the state")))?;
            for (task, grant) in job.tasks.iter().enumerate() {
                let Some(grant) = &grant.grant else { continue };
                let agent = self.agents.get(&grant.agent).ok_or_else(|| {
                    CommandError::internal(format!(
                        "task {task} of job {id} holds a grant on unknown agent {}",
                        grant.agent
                    ))
                })?;
                if !agent.tasks.contains(&(id, task as u32)) {
                    return Err(CommandError::internal(format!(
                        "agent {} does not list task {task} of job {id}, which it is granted",
                        agent.id
                    )));
                }
                if let Some(core) = grant.cores.iter().find(|c| !agent.used_cores.contains(c)) {
                    return Err(CommandError::internal(format!(
                        "core {core} of agent {} is granted to task {task} of job {id} but not \
                         marked used",
                        agent.id
                    )));
                }
                let (memory, disk) = held.entry(agent.id).or_default();
                *memory = memory.saturating_add(grant.memory_bytes);
                *disk = disk.saturating_add(grant.disk_bytes);
                if *memory > agent.used_memory_bytes || *disk > agent.used_disk_bytes {
                    return Err(CommandError::internal(format!(
                        "agent {} records {} bytes of memory and {} of disk used, less than \
                         its grants hold",
                        agent.id, agent.used_memory_bytes, agent.used_disk_bytes
                    )));
                }
            }
        }
        Ok(())
    }

    /// Checks `grants` for `job` against the state without changing it.
    /// The job's own current grants count as free (a move).
    fn check_grants(&self, job: &super::Job, grants: &[Grant]) -> Result<(), CommandError> {
        let id = job.id;
        let refuse = |violation| CommandError::Placement { job: id, violation };
        self.check_held([id])?;
        let (tasks, each) = job.spec.demand();
        if grants.len() != tasks as usize {
            return Err(refuse(PlacementViolation::TaskCount {
                expected: tasks as usize,
                got: grants.len(),
            }));
        }
        // What this job holds now, per agent: freed by the move.
        let mut own: BTreeMap<AgentId, AgentTake> = BTreeMap::new();
        for grant in job.tasks.iter().filter_map(|t| t.grant.as_ref()) {
            let take = own.entry(grant.agent).or_default();
            take.cores.extend(grant.cores.iter().copied());
            take.memory_bytes += grant.memory_bytes;
            take.disk_bytes += grant.disk_bytes;
        }
        let mut takes: BTreeMap<AgentId, AgentTake> = BTreeMap::new();
        for (task, grant) in grants.iter().enumerate() {
            if grant.resources() != each {
                return Err(refuse(PlacementViolation::TaskShape {
                    task,
                    granted: grant.resources(),
                    needed: each,
                }));
            }
            let agent = self.agents.get(&grant.agent).ok_or_else(|| {
                refuse(PlacementViolation::AgentNotActive {
                    agent: grant.agent,
                    state: AgentState::Lost,
                })
            })?;
            if agent.state != AgentState::Active {
                return Err(refuse(PlacementViolation::AgentNotActive {
                    agent: agent.id,
                    state: agent.state,
                }));
            }
            if let Some(c) = job
                .spec
                .constraints
                .iter()
                .find(|c| !c.matches(&agent.hostname, &agent.attributes))
            {
                return Err(refuse(PlacementViolation::Constraint {
                    agent: agent.id,
                    constraint: c.to_string(),
                }));
            }
            let mine = own.get(&agent.id);
            let take = takes.entry(agent.id).or_default();
            for &core in &grant.cores {
                if !agent.cores.contains(&core) {
                    return Err(refuse(PlacementViolation::CoreNotOffered {
                        agent: agent.id,
                        core,
                    }));
                }
                let held_by_other = agent.used_cores.contains(&core)
                    && !mine.is_some_and(|m| m.cores.contains(&core));
                if held_by_other || !take.cores.insert(core) {
                    return Err(refuse(PlacementViolation::CoreTaken {
                        agent: agent.id,
                        core,
                    }));
                }
            }
            take.memory_bytes = take.memory_bytes.saturating_add(grant.memory_bytes);
            take.disk_bytes = take.disk_bytes.saturating_add(grant.disk_bytes);
            let (own_memory, own_disk) = mine.map_or((0, 0), |m| (m.memory_bytes, m.disk_bytes));
            let overused = || {
                CommandError::internal(format!("agent {} records more used than it has", agent.id))
            };
            let free_memory = agent
                .memory_bytes
                .checked_sub(agent.used_memory_bytes)
                .ok_or_else(overused)?
                .saturating_add(own_memory);
            if take.memory_bytes > free_memory {
                return Err(refuse(PlacementViolation::MemoryOversubscribed {
                    agent: agent.id,
                    needed: take.memory_bytes,
                    free: free_memory,
                }));
            }
            let free_disk = agent
                .disk_bytes
                .checked_sub(agent.used_disk_bytes)
                .ok_or_else(overused)?
                .saturating_add(own_disk);
            if take.disk_bytes > free_disk {
                return Err(refuse(PlacementViolation::DiskOversubscribed {
                    agent: agent.id,
                    needed: take.disk_bytes,
                    free: free_disk,
                }));
            }
        }
        if let Some(limit) = self.roles.get(&job.spec.role).and_then(|r| r.limit) {
            let held = if job.state == JobState::Running {
                job.spec.total_demand()
            } else {
                Resources::ZERO
            };
            let would_use = self
                .role_usage
                .get(&job.spec.role)
                .copied()
                .unwrap_or_default()
                .minus(&held)
                .plus(&job.spec.total_demand());
            if !would_use.fits_in(&limit) {
                return Err(refuse(PlacementViolation::RoleLimit {
                    role: job.spec.role.clone(),
                    would_use,
                    limit,
                }));
            }
        }
        Ok(())
    }

    /// Places a Pending job, or moves a Running one (off a draining agent).
    pub(super) fn place_job(
        &mut self,
        index: u64,
        now_ms: u64,
        id: JobId,
        version: u64,
        grants: &[Grant],
        reason: Option<&str>,
    ) -> Result<CommandOutput, CommandError> {
        let job = self.decided_job(id, version)?;
        let moved = match job.state {
            JobState::Pending => false,
            JobState::Running => true,
            state => return Err(CommandError::JobEnded { id, state }),
        };
        self.check_grants(job, grants)?;
        // Checked: the job exists, what it holds is recorded on its agents,
        // and every agent granted exists; nothing below can fail.
        let ClusterState {
            jobs,
            agents: all_agents,
            role_usage,
            ..
        } = self;
        let Some(job) = jobs.get_mut(&id) else {
            return Err(CommandError::internal(format!("job {id} vanished")));
        };
        release_grants(job, all_agents, role_usage);
        for (task, grant) in grants.iter().enumerate() {
            take(all_agents, id, task as u32, grant);
        }
        let agents: BTreeSet<AgentId> = grants.iter().map(|g| g.agent).collect();
        job.state = JobState::Running;
        job.version += 1;
        job.attempt += 1;
        job.restore_from = job.checkpoints.last().map(|c| c.id);
        // A checkpoint the old run was taking never completes.
        job.checkpoint_in_progress = None;
        job.reason = None;
        if job.started_ms.is_none() {
            job.started_ms = Some(now_ms);
        }
        for (task, grant) in job.tasks.iter_mut().zip(grants) {
            task.state = TaskState::Staging;
            task.grant = Some(grant.clone());
            task.message = None;
            task.last_agent = Some(grant.agent);
        }
        let verb = if moved { "moved to" } else { "placed on" };
        let mut message = format!("{verb} agents {agents:?}");
        if let Some(id) = job.restore_from {
            message.push_str(&format!(", resuming from checkpoint {id}"));
        }
        if let Some(reason) = reason {
            message.push_str(": ");
            message.push_str(reason);
        }
        job.record(index, now_ms, message);
        let role = job.spec.role.clone();
        let demand = job.spec.total_demand();
        let usage = role_usage.entry(role).or_default();
        *usage = usage.plus(&demand);
        Ok(CommandOutput::JobPlaced { id, moved })
    }

    /// Returns a Running job to the queue so another can take its resources.
    pub(super) fn preempt_job(
        &mut self,
        index: u64,
        now_ms: u64,
        id: JobId,
        version: u64,
        reason: &str,
    ) -> Result<CommandOutput, CommandError> {
        let job = self.decided_job(id, version)?;
        if job.state != JobState::Running {
            return Err(CommandError::JobNotRunning {
                id,
                state: job.state,
            });
        }
        self.check_held([id])?;
        self.requeue_job(index, now_ms, id, &format!("preempted: {}", clip(reason)));
        if let Some(job) = self.jobs.get_mut(&id) {
            job.preemptions += 1;
        }
        Ok(CommandOutput::JobPreempted { id })
    }

    /// Frees a Running job's resources and makes it Pending again.
    pub(super) fn requeue_job(&mut self, index: u64, now_ms: u64, id: JobId, reason: &str) {
        self.release_job(id);
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.state = JobState::Pending;
        job.version += 1;
        job.reason = Some(reason.to_owned());
        if let Some(started) = job.started_ms.take() {
            job.run_ms = job.run_ms.saturating_add(now_ms.saturating_sub(started));
        }
        for task in &mut job.tasks {
            task.state = TaskState::Pending;
            task.grant = None;
        }
        job.record(index, now_ms, reason);
    }

    /// Gives back every grant a job holds (its tasks keep their state).
    /// Callers have checked what it holds with [`Self::check_held`].
    pub(super) fn release_job(&mut self, id: JobId) {
        if let Some(job) = self.jobs.get_mut(&id) {
            release_grants(job, &mut self.agents, &mut self.role_usage);
        }
    }

    /// Records a scheduler's explanation of why jobs still wait.
    pub(super) fn set_pending_reasons(
        &mut self,
        reasons: &[(JobId, String)],
    ) -> Result<CommandOutput, CommandError> {
        let mut updated = 0;
        for (id, reason) in reasons {
            if let Some(job) = self.jobs.get_mut(id) {
                if job.state == JobState::Pending {
                    job.reason = Some(clip(reason));
                    updated += 1;
                }
            }
        }
        Ok(CommandOutput::PendingReasonsSet { updated })
    }

    /// An agent's report on one of its tasks. Repeating a report changes
    /// nothing; a report about a task no longer placed on that agent is
    /// refused as stale (the agent should stop the task).
    pub(super) fn update_task(
        &mut self,
        index: u64,
        now_ms: u64,
        update: &TaskUpdate,
    ) -> Result<CommandOutput, CommandError> {
        let TaskUpdate {
            job: id,
            task,
            agent,
            state,
            ref message,
        } = *update;
        let job = self.jobs.get(&id).ok_or(CommandError::UnknownJob { id })?;
        let slot = job
            .tasks
            .get(task as usize)
            .ok_or(CommandError::UnknownTask { job: id, task })?;
        if slot.state == state
            && (state.is_ended() || slot.grant.as_ref().is_some_and(|g| g.agent == agent))
        {
            return Ok(CommandOutput::TaskUpdated {
                job: id,
                task,
                changed: false,
            });
        }
        if slot.grant.as_ref().is_none_or(|g| g.agent != agent) {
            return Err(CommandError::StaleTask {
                job: id,
                task,
                agent,
            });
        }
        let message = message.as_deref().map(clip);
        if matches!(state, TaskState::Pending | TaskState::Staging) {
            return Err(CommandError::invalid(
                "state",
                "agents report running, finished, failed, killed or lost",
            ));
        }
        self.check_held([id])?;
        // Checked above: the job and its task exist, the task holds a grant
        // on `agent`, and what it holds is recorded there.
        let ClusterState {
            jobs,
            agents,
            role_usage,
            ..
        } = self;
        let Some(job) = jobs.get_mut(&id) else {
            return Err(CommandError::internal(format!("job {id} vanished")));
        };
        match state {
            TaskState::Pending | TaskState::Staging => {}
            TaskState::Running => {
                job.version += 1;
                let slot = &mut job.tasks[task as usize];
                slot.state = TaskState::Running;
                slot.message = message;
            }
            TaskState::Finished => {
                // Its resources are free at once; the job ends with its last task.
                let slot = &mut job.tasks[task as usize];
                let Some(grant) = slot.grant.take() else {
                    return Err(CommandError::internal(format!(
                        "task {task} of job {id} lost its grant"
                    )));
                };
                slot.state = TaskState::Finished;
                slot.message = message;
                job.version += 1;
                let role = job.spec.role.clone();
                let all_done = job.tasks.iter().all(|t| t.state == TaskState::Finished);
                give_back(agents, id, task, &grant);
                sub_role_usage(role_usage, &role, &grant.resources());
                if all_done {
                    self.end_job(index, now_ms, id, JobState::Finished, "finished");
                }
            }
            TaskState::Failed | TaskState::Killed => {
                let what = if state == TaskState::Failed {
                    "failed"
                } else {
                    "was killed"
                };
                let reason = format!(
                    "task {task} {what} on agent {agent}: {}",
                    message.as_deref().unwrap_or("no reason given")
                );
                job.tasks[task as usize].state = state;
                job.tasks[task as usize].message = message;
                let restart = match state {
                    TaskState::Failed => job.spec.restart.delay_ms(job.restarts),
                    _ => None,
                };
                match restart {
                    Some(delay_ms) => {
                        job.restarts += 1;
                        job.not_before_ms = Some(now_ms.saturating_add(delay_ms));
                        let why = format!(
                            "restart {} of {} in {delay_ms} ms: {reason}",
                            job.restarts,
                            job.spec.restart.attempts()
                        );
                        self.requeue_job(index, now_ms, id, &why);
                    }
                    None => self.end_job(index, now_ms, id, JobState::Failed, &reason),
                }
            }
            TaskState::Lost => {
                let reason = format!(
                    "task {task} lost on agent {agent}: {}; waiting to be placed again",
                    message.as_deref().unwrap_or("no reason given")
                );
                self.requeue_job(index, now_ms, id, &reason);
            }
        }
        Ok(CommandOutput::TaskUpdated {
            job: id,
            task,
            changed: true,
        })
    }

    /// The jobs with a task on `agent`: those it lists, and those whose
    /// grants name it (the same set while the counters are intact; a scan of
    /// the jobs, for the rare commands that act on a whole agent).
    pub(super) fn jobs_on(&self, agent: AgentId) -> BTreeSet<JobId> {
        let listed = self
            .agents
            .get(&agent)
            .into_iter()
            .flat_map(|a| a.tasks.iter().map(|(job, _)| *job));
        let granted = self
            .jobs
            .values()
            .filter(|j| {
                j.tasks
                    .iter()
                    .any(|t| t.grant.as_ref().is_some_and(|g| g.agent == agent))
            })
            .map(|j| j.id);
        listed.chain(granted).collect()
    }

    /// Returns every job with a task on `agent` to the queue (checked with
    /// `check_held(jobs_on(agent))` first).
    pub(super) fn requeue_agent_work(
        &mut self,
        index: u64,
        now_ms: u64,
        agent: AgentId,
        why: &str,
    ) -> Vec<JobId> {
        let jobs = self.jobs_on(agent);
        for &job in &jobs {
            self.requeue_job(index, now_ms, job, why);
        }
        jobs.into_iter().collect()
    }
}

/// Gives back every grant `job` holds to its agents and its role's usage.
fn release_grants(
    job: &mut super::Job,
    agents: &mut BTreeMap<AgentId, super::Agent>,
    role_usage: &mut BTreeMap<String, Resources>,
) {
    let mut freed = Resources::ZERO;
    for (task, slot) in job.tasks.iter_mut().enumerate() {
        if let Some(grant) = slot.grant.take() {
            freed = freed.plus(&grant.resources());
            give_back(agents, job.id, task as u32, &grant);
        }
    }
    if !freed.is_zero() {
        sub_role_usage(role_usage, &job.spec.role, &freed);
    }
}

fn sub_role_usage(role_usage: &mut BTreeMap<String, Resources>, role: &str, freed: &Resources) {
    if let Some(usage) = role_usage.get_mut(role) {
        *usage = usage.minus(freed);
        if usage.is_zero() {
            role_usage.remove(role);
        }
    }
}

/// Records one task's grant on its agent (checked by `check_grants`).
fn take(agents: &mut BTreeMap<AgentId, super::Agent>, job: JobId, task: u32, grant: &Grant) {
    if let Some(agent) = agents.get_mut(&grant.agent) {
        agent.used_cores.extend(grant.cores.iter().copied());
        agent.used_memory_bytes = agent.used_memory_bytes.saturating_add(grant.memory_bytes);
        agent.used_disk_bytes = agent.used_disk_bytes.saturating_add(grant.disk_bytes);
        agent.tasks.insert((job, task));
    }
}

/// Returns one task's grant to its agent (the reverse of [`take`]); what it
/// subtracts was checked to be there (`ClusterState::check_held`).
fn give_back(agents: &mut BTreeMap<AgentId, super::Agent>, job: JobId, task: u32, grant: &Grant) {
    if let Some(agent) = agents.get_mut(&grant.agent) {
        for core in &grant.cores {
            agent.used_cores.remove(core);
        }
        agent.used_memory_bytes = agent.used_memory_bytes.saturating_sub(grant.memory_bytes);
        agent.used_disk_bytes = agent.used_disk_bytes.saturating_sub(grant.disk_bytes);
        agent.tasks.remove(&(job, task));
    }
}
