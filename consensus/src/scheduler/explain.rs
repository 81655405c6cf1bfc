//! Why a job waits, in words a user can act on.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use super::view::View;
use crate::state::{Agent, AgentState, ClusterState, Constraint, Job, Resources};
use crate::units::format_bytes;

/// A job's shape: what each task needs, how many tasks, where they may run,
/// and its role (other roles' reservations are closed to it).
type Shape = (Resources, u32, Vec<Constraint>, String);

/// Answers "can this job ever run here?" per job shape, cached within a cycle.
pub(super) struct Explainer<'a> {
    state: &'a ClusterState,
    active: Vec<&'a Agent>,
    cache: RefCell<HashMap<Shape, Option<String>>>,
}

impl<'a> Explainer<'a> {
    pub fn new(state: &'a ClusterState) -> Self {
        Self {
            state,
            active: state
                .agents
                .values()
                .filter(|a| a.state == AgentState::Active)
                .collect(),
            cache: RefCell::new(HashMap::new()),
        }
    }

    /// Why the job cannot run even on an empty cluster, if so: such a job
    /// waits without holding up the queue.
    pub fn never_fits(&self, job: &Job) -> Option<String> {
        if let Some(limit) = self.state.roles.get(&job.spec.role).and_then(|r| r.limit) {
            let demand = job.spec.total_demand();
            if !demand.fits_in(&limit) {
                return Some(format!(
                    "needs {demand} in all, above role {:?}'s limit of {limit}",
                    job.spec.role
                ));
            }
        }
        let (tasks, each) = job.spec.demand();
        let key = (
            each,
            tasks,
            job.spec.constraints.clone(),
            job.spec.role.clone(),
        );
        if let Some(hit) = self.cache.borrow().get(&key) {
            return hit.clone();
        }
        let answer = self.shape_never_fits(tasks, &each, &job.spec.constraints, &job.spec.role);
        self.cache.borrow_mut().insert(key, answer.clone());
        answer
    }

    fn shape_never_fits(
        &self,
        tasks: u32,
        each: &Resources,
        constraints: &[Constraint],
        role: &str,
    ) -> Option<String> {
        if self.active.is_empty() {
            return Some("no active agents: start an agent or undrain one".into());
        }
        let matching: Vec<&Agent> = self
            .active
            .iter()
            .copied()
            .filter(|a| {
                constraints
                    .iter()
                    .all(|c| c.matches(&a.hostname, &a.attributes))
            })
            .collect();
        if matching.is_empty() {
            let list: Vec<String> = constraints.iter().map(ToString::to_string).collect();
            return Some(format!(
                "no active agent satisfies `{}`",
                list.join("` and `")
            ));
        }
        let mut room: u64 = 0;
        let mut room_if_unreserved: u64 = 0;
        let mut largest = Resources::ZERO;
        let mut reserved_by = std::collections::BTreeSet::new();
        for agent in &matching {
            let total = agent.total();
            largest = Resources::new(
                largest.cores.max(total.cores),
                largest.memory_bytes.max(total.memory_bytes),
                largest.disk_bytes.max(total.disk_bytes),
            );
            let closed = self.reserved_for_others(agent, role, &mut reserved_by);
            room_if_unreserved += tasks_fitting(each, &total);
            room += tasks_fitting(each, &total.minus(&closed));
        }
        let scope = if constraints.is_empty() {
            "agent"
        } else {
            "matching agent"
        };
        if room < u64::from(tasks) && room_if_unreserved >= u64::from(tasks) {
            // Big enough agents exist, but other roles' reservations take
            // what this role would need: only a reservation change helps.
            let roles: Vec<String> = reserved_by.iter().map(|r| format!("{r:?}")).collect();
            let what = if tasks == 1 {
                format!("needs {each} on one agent")
            } else {
                format!("needs {tasks} tasks of {each}")
            };
            return Some(format!(
                "{what}; every {scope} that fits has it reserved for role {} (role {role:?} \
                 cannot use other roles' reservations)",
                roles.join(", ")
            ));
        }
        if room == 0 {
            return Some(if each.cores > largest.cores {
                format!(
                    "needs {} cores on one agent; the largest {scope} has {}",
                    each.cores, largest.cores
                )
            } else if each.memory_bytes > largest.memory_bytes {
                format!(
                    "needs {} of memory on one agent; the largest {scope} has {}",
                    format_bytes(each.memory_bytes),
                    format_bytes(largest.memory_bytes)
                )
            } else if each.disk_bytes > largest.disk_bytes {
                format!(
                    "needs {} of disk on one agent; the largest {scope} has {}",
                    format_bytes(each.disk_bytes),
                    format_bytes(largest.disk_bytes)
                )
            } else {
                format!("needs {each} on one agent; no {scope} offers all of it")
            });
        }
        if room < u64::from(tasks) {
            return Some(format!(
                "needs {tasks} tasks of {each}; the active {scope}s have room for {room} at most"
            ));
        }
        None
    }

    /// What other roles than `role` have reserved on `agent` (closed to
    /// `role`'s jobs); records their names in `by`.
    fn reserved_for_others(
        &self,
        agent: &Agent,
        role: &str,
        by: &mut std::collections::BTreeSet<&'a str>,
    ) -> Resources {
        let state: &'a ClusterState = self.state;
        let mut closed = Resources::ZERO;
        for (name, other) in &state.roles {
            if name == role {
                continue;
            }
            if let Some(reserved) = other.reservations.get(&agent.id) {
                if !reserved.is_zero() {
                    closed = closed.plus(reserved);
                    by.insert(name.as_str());
                }
            }
        }
        closed
    }

    /// Why a job that could fit waits now.
    pub fn why_waiting(
        &self,
        job: &Job,
        _view: &View<'_>,
        usage: &BTreeMap<&str, Resources>,
    ) -> String {
        let demand = job.spec.total_demand();
        if let Some(limit) = self.state.roles.get(&job.spec.role).and_then(|r| r.limit) {
            let used = usage
                .get(job.spec.role.as_str())
                .copied()
                .unwrap_or_default();
            if !used.plus(&demand).fits_in(&limit) {
                return format!(
                    "role {:?} is at its limit: it holds {used}, the job needs {demand}, the limit is {limit}",
                    job.spec.role
                );
            }
        }
        let (tasks, each) = job.spec.demand();
        if tasks == 1 {
            format!("waiting for free resources: needs {each} on one agent")
        } else {
            format!("waiting for free resources: needs {tasks} tasks of {each}")
        }
    }
}

/// How many tasks of `each` fit in `room`.
fn tasks_fitting(each: &Resources, room: &Resources) -> u64 {
    let per = |need: u64, have: u64| have.checked_div(need).unwrap_or(u64::MAX);
    per(u64::from(each.cores), u64::from(room.cores))
        .min(per(each.memory_bytes, room.memory_bytes))
        .min(per(each.disk_bytes, room.disk_bytes))
}
