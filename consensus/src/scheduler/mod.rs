//! The scheduler: pure code, state in, decisions out.
//!
//! [`schedule`] looks at the replicated state and the time, and returns the
//! commands that carry out one allocation cycle: moves off draining agents,
//! preemptions, placements and updated pending reasons. The leader proposes
//! them through Raft in one batch; apply checks each one again, so a
//! decision made on a state that has moved on is refused, never half-done.
//!
//! Queue policies (see [`Policy`]):
//! - FCFS, SJF and SRTF keep a strict order: a job that fits the cluster but
//!   not the free resources holds back the jobs behind it. A job that can
//!   never fit (bigger than any agent) does not.
//! - SRTF and priority preempt: a pending job may take the resources of
//!   running jobs with more remaining time (SRTF, bounded jobs only) or a
//!   lower priority, but only of jobs on the agents it then uses, and only
//!   if that makes it fit.
//! - DRF serves the role with the lowest weighted dominant share first;
//!   roles below their quota before any other, and resources needed to
//!   meet unmet quotas are held back from the others. Limits cap a role in
//!   every policy; reservations keep resources for their role in every policy.

mod explain;
mod view;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::command::Command;
use crate::state::{AgentState, ClusterState, Job, JobId, JobState, Policy, Resources};
use explain::Explainer;
use view::{Taken, View};

/// One cycle's decisions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schedule {
    /// To propose in this order.
    pub commands: Vec<Command>,
    pub placed: usize,
    pub preempted: usize,
    pub moved: usize,
    /// Jobs still pending after the cycle.
    pub pending: usize,
}

impl Schedule {
    /// Whether the cycle changes anything.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }
}

/// Runs one allocation cycle over `state` at `now_ms` (Unix ms, the leader's clock).
pub fn schedule(state: &ClusterState, now_ms: u64) -> Schedule {
    schedule_bounded(state, now_ms, usize::MAX)
}

/// As [`schedule`], stopping after `max_placements` placements: the leader
/// keeps cycles short so their decisions commit while the next is computed.
/// Jobs not reached keep their pending reason.
pub fn schedule_bounded(state: &ClusterState, now_ms: u64, max_placements: usize) -> Schedule {
    let mut cycle = Cycle::new(state, now_ms);
    cycle.budget = max_placements;
    cycle.run()
}

struct Cycle<'a> {
    state: &'a ClusterState,
    now_ms: u64,
    view: View<'a>,
    out: Schedule,
    /// Running jobs preempted this cycle.
    preempted: HashSet<JobId>,
    /// Running jobs preempted this cycle, to be queued again in it.
    requeued: Vec<&'a Job>,
    /// Running jobs moved this cycle, with what they hold now.
    moved: HashMap<JobId, Vec<Taken>>,
    /// Jobs placed this cycle.
    placed: HashSet<JobId>,
    /// What each role holds, as the cycle goes.
    usage: BTreeMap<&'a str, Resources>,
    reasons: Vec<(JobId, String)>,
    /// Job versions after this cycle's decisions (see `Job::version`).
    versions: HashMap<JobId, u64>,
    /// Most placements this cycle makes.
    budget: usize,
}

impl<'a> Cycle<'a> {
    fn new(state: &'a ClusterState, now_ms: u64) -> Self {
        Self {
            state,
            now_ms,
            view: View::new(state),
            out: Schedule::default(),
            preempted: HashSet::new(),
            requeued: Vec::new(),
            moved: HashMap::new(),
            placed: HashSet::new(),
            usage: state
                .role_usage
                .iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect(),
            reasons: Vec::new(),
            versions: HashMap::new(),
            budget: usize::MAX,
        }
    }

    fn run(mut self) -> Schedule {
        self.drain_moves();
        let mut pending: Vec<&'a Job> = self
            .state
            .jobs
            .values()
            .filter(|j| j.state == JobState::Pending)
            // A restarting job waits out its delay (its reason says until when).
            .filter(|j| j.not_before_ms.is_none_or(|t| t <= self.now_ms))
            .collect();
        pending.append(&mut self.requeued);
        let policy = self.state.policy;
        sort_queue(&mut pending, policy);
        let explainer = Explainer::new(self.state);
        match policy {
            Policy::Drf => self.drf(pending, &explainer),
            _ => self.ordered(pending, policy, &explainer),
        }
        let reasons: Vec<(JobId, String)> = std::mem::take(&mut self.reasons)
            .into_iter()
            // A job preempted in this cycle keeps saying why, for now.
            .filter(|(id, _)| !self.preempted.contains(id))
            .filter(|(id, reason)| self.state.jobs[id].reason.as_deref() != Some(reason))
            .collect();
        if !reasons.is_empty() {
            self.out
                .commands
                .push(Command::SetPendingReasons { reasons });
        }
        for command in &mut self.out.commands {
            command.stamp(self.now_ms);
        }
        self.out
    }

    /// FCFS, SJF, SRTF and priority: one queue in policy order. A
    /// preemption frees resources (and role usage) that jobs earlier in the
    /// queue were refused, so the jobs left are passed over again, until a
    /// pass preempts nothing.
    fn ordered(&mut self, mut queue: Vec<&'a Job>, policy: Policy, explainer: &Explainer<'_>) {
        const PASSES_MAX: usize = 4;
        for pass in 1..=PASSES_MAX {
            let preempted = self.out.preempted;
            let waiting = self.ordered_pass(&queue, policy, explainer);
            let again = self.out.preempted != preempted && pass < PASSES_MAX;
            if !again || waiting.is_empty() {
                for (job, reason) in waiting {
                    self.wait(job, reason);
                }
                return;
            }
            queue = waiting.into_iter().map(|(job, _)| job).collect();
            sort_queue(&mut queue, policy);
        }
    }

    /// One pass over the queue: places what it can, returns the rest with
    /// the reason each waits.
    fn ordered_pass(
        &mut self,
        queue: &[&'a Job],
        policy: Policy,
        explainer: &Explainer<'_>,
    ) -> Vec<(&'a Job, String)> {
        let strict = matches!(policy, Policy::Fcfs | Policy::Sjf | Policy::Srtf);
        let mut blocker: Option<JobId> = None;
        let mut waiting = Vec::new();
        // Taken from the back; jobs preempted meanwhile join in policy order.
        let mut rest: Vec<&'a Job> = queue.iter().rev().copied().collect();
        while let Some(job) = rest.pop() {
            if self.out.placed >= self.budget {
                break;
            }
            if !self.requeued.is_empty() {
                rest.push(job);
                rest.append(&mut self.requeued);
                sort_queue(&mut rest, policy);
                rest.reverse();
                continue;
            }
            if let Some(reason) = explainer.never_fits(job) {
                waiting.push((job, reason));
                continue;
            }
            if let Some(head) = blocker {
                waiting.push((
                    job,
                    format!("queued behind job {head} ({} order)", policy.name()),
                ));
                continue;
            }
            if self.try_place(job, explainer) {
                continue;
            }
            let preempting = match policy {
                Policy::Srtf => job.spec.estimated_duration_ms.is_some(),
                Policy::Priority => true,
                _ => false,
            };
            if preempting && self.preempt_for(job, policy) {
                continue;
            }
            waiting.push((job, explainer.why_waiting(job, &self.view, &self.usage)));
            if strict {
                blocker = Some(job.id);
            }
        }
        // Preempted by the last job of the pass: their turn is the next pass.
        waiting.extend(
            std::mem::take(&mut self.requeued)
                .into_iter()
                .map(|job| (job, String::new())),
        );
        waiting
    }

    /// DRF: repeatedly serves the role furthest below its fair share.
    fn drf(&mut self, queue: Vec<&'a Job>, explainer: &Explainer<'_>) {
        let mut by_role: BTreeMap<&'a str, Vec<&'a Job>> = BTreeMap::new();
        for job in queue {
            by_role.entry(job.spec.role.as_str()).or_default().push(job);
        }
        for jobs in by_role.values_mut() {
            // Served from the back: highest priority, then oldest, last.
            jobs.sort_by_key(|j| (j.spec.priority, std::cmp::Reverse(j.submitted_index)));
        }
        let total = self.view.offered;
        loop {
            // The role to serve: below quota first, then lowest dominant share / weight.
            let next = by_role
                .iter()
                .filter(|(_, jobs)| !jobs.is_empty())
                .map(|(role, _)| {
                    let used = self.usage.get(role).copied().unwrap_or_default();
                    let (weight, quota) = self
                        .state
                        .roles
                        .get(*role)
                        .map_or((1.0, None), |r| (r.weight, r.quota));
                    let below_quota = quota.is_some_and(|q| !q.fits_in(&used));
                    let share = used.dominant_share(&total) / weight;
                    (!below_quota, share, *role)
                })
                .min_by(|a, b| {
                    (a.0, a.1)
                        .partial_cmp(&(b.0, b.1))
                        .unwrap_or(std::cmp::Ordering::Equal)
                        .then(a.2.cmp(b.2))
                });
            let Some((_, _, role)) = next else { break };
            if self.out.placed >= self.budget {
                break;
            }
            let job = by_role
                .get_mut(role)
                .and_then(Vec::pop)
                .expect("role has jobs");
            if let Some(reason) = explainer.never_fits(job) {
                self.wait(job, reason);
                continue;
            }
            if let Some(reason) = self.quota_holds_back(job) {
                self.wait(job, reason);
                continue;
            }
            if !self.try_place(job, explainer) {
                self.wait(job, explainer.why_waiting(job, &self.view, &self.usage));
            }
        }
    }

    /// Under DRF, resources still owed to roles below their quota are not
    /// given to others.
    fn quota_holds_back(&self, job: &Job) -> Option<String> {
        let demand = job.spec.total_demand();
        let mut owed = Resources::ZERO;
        for (name, role) in &self.state.roles {
            let Some(quota) = role.quota else { continue };
            let used = self.usage.get(name.as_str()).copied().unwrap_or_default();
            let unmet = quota.minus(&used);
            owed = if *name == job.spec.role {
                owed.plus(&unmet.minus(&demand))
            } else {
                owed.plus(&unmet)
            };
        }
        if owed.is_zero() {
            return None;
        }
        let left = self.view.free_total().minus(&demand);
        let short = !owed.fits_in(&left) || !demand.fits_in(&self.view.free_total());
        short.then(|| {
            format!("held back: free resources are kept for roles below their quota (owed {owed})")
        })
    }

    fn limit_allows(&self, job: &Job) -> bool {
        let Some(limit) = self.state.roles.get(&job.spec.role).and_then(|r| r.limit) else {
            return true;
        };
        let used = self
            .usage
            .get(job.spec.role.as_str())
            .copied()
            .unwrap_or_default();
        used.plus(&job.spec.total_demand()).fits_in(&limit)
    }

    /// Places a pending job if it fits now.
    fn try_place(&mut self, job: &'a Job, _explainer: &Explainer<'_>) -> bool {
        if !self.limit_allows(job) {
            return false;
        }
        let Some(taken) = self.view.place(job) else {
            return false;
        };
        self.commit_place(job, &taken, None);
        true
    }

    fn commit_place(&mut self, job: &'a Job, taken: &[Taken], reason: Option<String>) {
        let grants = taken.iter().map(|t| t.grant(&self.view)).collect();
        let moved = job.state == JobState::Running && !self.preempted.contains(&job.id);
        let version = self.next_version(job);
        self.out.commands.push(Command::PlaceJob {
            job: job.id,
            version,
            grants,
            reason,
            now_ms: 0,
        });
        if moved {
            self.out.moved += 1;
            self.moved.insert(job.id, taken.to_vec());
        } else {
            self.out.placed += 1;
            self.placed.insert(job.id);
            let usage = self.usage.entry(job.spec.role.as_str()).or_default();
            *usage = usage.plus(&job.spec.total_demand());
        }
    }

    /// The version a decision on `job` is made on; each decision bumps it.
    fn next_version(&mut self, job: &Job) -> u64 {
        let version = self.versions.entry(job.id).or_insert(job.version);
        let current = *version;
        *version += 1;
        current
    }

    fn wait(&mut self, job: &Job, reason: String) {
        self.out.pending += 1;
        self.reasons.push((job.id, reason));
    }

    /// Tries to make room for `job` by preempting running jobs it may
    /// displace; commits only if the job then fits, and preempts only jobs
    /// on the agents it lands on.
    fn preempt_for(&mut self, job: &'a Job, policy: Policy) -> bool {
        let mut victims: Vec<&'a Job> = self
            .state
            .jobs
            .values()
            .filter(|v| v.state == JobState::Running && !self.preempted.contains(&v.id))
            .filter(|v| match policy {
                Policy::Priority => v.spec.priority < job.spec.priority,
                Policy::Srtf => match (v.remaining_ms(self.now_ms), job.spec.estimated_duration_ms)
                {
                    (Some(left), Some(estimate)) => left > estimate,
                    _ => false,
                },
                _ => false,
            })
            .collect();
        if victims.is_empty() {
            return false;
        }
        match policy {
            // Lowest priority first, then the most recently started.
            Policy::Priority => victims.sort_by_key(|v| {
                (
                    v.spec.priority,
                    std::cmp::Reverse(v.started_ms.unwrap_or(0)),
                )
            }),
            // Most remaining time first.
            _ => victims.sort_by_key(|v| std::cmp::Reverse(v.remaining_ms(self.now_ms))),
        }
        let limit = self.state.roles.get(&job.spec.role).and_then(|r| r.limit);
        let mut role_used = self
            .usage
            .get(job.spec.role.as_str())
            .copied()
            .unwrap_or_default();
        let demand = job.spec.total_demand();
        let mut released: Vec<(&'a Job, Vec<Taken>)> = Vec::new();
        let mut placed = None;
        for victim in victims {
            let holdings = match self.moved.get(&victim.id) {
                Some(takes) => takes.clone(),
                None => self.view.holdings(victim),
            };
            for t in &holdings {
                self.view.give_back(t);
            }
            released.push((victim, holdings));
            if victim.spec.role == job.spec.role {
                role_used = role_used.minus(&victim.spec.total_demand());
            }
            if limit.is_some_and(|limit| !role_used.plus(&demand).fits_in(&limit)) {
                continue;
            }
            if let Some(taken) = self.view.place(job) {
                placed = Some(taken);
                break;
            }
        }
        let Some(taken) = placed else {
            for (_, holdings) in released.iter().rev() {
                for t in holdings {
                    self.view.take_exact(t);
                }
            }
            return false;
        };
        // Keep the victims whose agents the job does not use.
        let used: BTreeSet<u32> = taken.iter().map(|t| t.slot).collect();
        let mut role_after = role_used.plus(&demand);
        for (victim, holdings) in released {
            let same_role = victim.spec.role == job.spec.role;
            let needed_for_limit = same_role
                && limit.is_some_and(|limit| {
                    !role_after.plus(&victim.spec.total_demand()).fits_in(&limit)
                });
            if needed_for_limit || holdings.iter().any(|t| used.contains(&t.slot)) {
                let why = match policy {
                    Policy::Priority => format!(
                        "job {} has priority {} above {}",
                        job.id, job.spec.priority, victim.spec.priority
                    ),
                    _ => format!(
                        "job {} needs {} ms, less than the {} ms this job has left (srtf)",
                        job.id,
                        job.spec.estimated_duration_ms.unwrap_or(0),
                        victim.remaining_ms(self.now_ms).unwrap_or(0)
                    ),
                };
                let version = self.next_version(victim);
                self.out.commands.push(Command::PreemptJob {
                    job: victim.id,
                    version,
                    reason: why,
                    now_ms: 0,
                });
                self.out.preempted += 1;
                self.preempted.insert(victim.id);
                self.moved.remove(&victim.id);
                self.requeued.push(victim);
                let usage = self.usage.entry(victim.spec.role.as_str()).or_default();
                *usage = usage.minus(&victim.spec.total_demand());
            } else {
                if same_role {
                    role_after = role_after.plus(&victim.spec.total_demand());
                }
                for t in &holdings {
                    self.view.take_exact(t);
                }
            }
        }
        self.commit_place(job, &taken, None);
        true
    }

    /// Moves jobs off draining agents where room exists elsewhere; past a
    /// drain's deadline, returns what is left to the queue.
    fn drain_moves(&mut self) {
        let draining: Vec<_> = self
            .state
            .agents
            .values()
            .filter(|a| a.state == AgentState::Draining && !a.tasks.is_empty())
            .collect();
        for agent in draining {
            let overdue = agent
                .drain
                .and_then(|d| d.deadline_ms)
                .is_some_and(|deadline| self.now_ms >= deadline);
            let Some(slot) = self.view.slot_of(agent.id) else {
                continue;
            };
            let jobs: BTreeSet<JobId> = self.view.jobs_on(slot).collect();
            for id in jobs {
                if self.preempted.contains(&id) || self.moved.contains_key(&id) {
                    continue;
                }
                let job = &self.state.jobs[&id];
                let holdings = self.view.holdings(job);
                for t in &holdings {
                    self.view.give_back(t);
                }
                if let Some(taken) = self.view.place(job) {
                    let reason = format!("moving off draining agent {}", agent.id);
                    self.commit_place(job, &taken, Some(reason));
                } else if overdue {
                    let version = self.next_version(job);
                    self.out.commands.push(Command::PreemptJob {
                        job: id,
                        version,
                        reason: format!(
                            "agent {} reached its drain deadline and no other agent has room yet",
                            agent.id
                        ),
                        now_ms: 0,
                    });
                    self.out.preempted += 1;
                    self.preempted.insert(id);
                    self.requeued.push(job);
                    let usage = self.usage.entry(job.spec.role.as_str()).or_default();
                    *usage = usage.minus(&job.spec.total_demand());
                } else {
                    for t in &holdings {
                        self.view.take_exact(t);
                    }
                }
            }
        }
    }
}

/// Orders a queue by the policy (DRF orders within roles later).
fn sort_queue(queue: &mut [&Job], policy: Policy) {
    match policy {
        Policy::Fcfs => queue.sort_by_key(|j| j.submitted_index),
        Policy::Sjf | Policy::Srtf => queue.sort_by_key(|j| {
            (
                j.spec.estimated_duration_ms.unwrap_or(u64::MAX),
                j.submitted_index,
            )
        }),
        Policy::Priority => queue.sort_by_key(|j| (-j.spec.priority, j.submitted_index)),
        Policy::Drf => {}
    }
}

#[cfg(test)]
mod tests;
