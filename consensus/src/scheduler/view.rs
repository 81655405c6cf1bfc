//! The scheduler's working copy of the cluster: what is free on each agent,
//! indexed so a cycle over 10,000 agents stays in milliseconds.

use std::collections::{BTreeSet, HashMap};

use crate::state::{
    Agent, AgentId, AgentState, ClusterState, Constraint, Grant, Job, JobId, Resources,
    DEFAULT_ROLE,
};

/// A role's reservation on one agent and how much of it the role uses.
#[derive(Debug, Clone)]
struct Reserved {
    role: u32,
    total: Resources,
    used: Resources,
}

impl Reserved {
    fn unused(&self) -> Resources {
        self.total.minus(&self.used)
    }
}

/// One agent as the scheduler sees it.
pub(super) struct Slot<'a> {
    pub agent: &'a Agent,
    /// Free core ids, highest first (the lowest is popped first).
    free_cores: Vec<u32>,
    free_memory: u64,
    free_disk: u64,
    reserved: Vec<Reserved>,
    /// Takes new work (Active).
    pub active: bool,
}

impl Slot<'_> {
    fn free(&self) -> Resources {
        Resources::new(
            self.free_cores.len() as u32,
            self.free_memory,
            self.free_disk,
        )
    }

    /// What any role without a reservation here may use.
    fn unreserved(&self) -> Resources {
        let held = self
            .reserved
            .iter()
            .fold(Resources::ZERO, |sum, r| sum.plus(&r.unused()));
        self.free().minus(&held)
    }

    /// What `role` may use: the unreserved part plus its own unused reservation.
    pub fn available_to(&self, role: u32) -> Resources {
        let own = self
            .reserved
            .iter()
            .find(|r| r.role == role)
            .map_or(Resources::ZERO, Reserved::unused);
        self.unreserved().plus(&own).min(&self.free())
    }

    pub fn satisfies(&self, constraints: &[Constraint]) -> bool {
        constraints
            .iter()
            .all(|c| c.matches(&self.agent.hostname, &self.agent.attributes))
    }

    fn account(&mut self, role: u32, amount: &Resources, add: bool) {
        if let Some(r) = self.reserved.iter_mut().find(|r| r.role == role) {
            r.used = if add {
                r.used.plus(amount)
            } else {
                r.used.minus(amount)
            };
        }
    }
}

/// A grant made in the view, undoable.
#[derive(Debug, Clone)]
pub(super) struct Taken {
    pub slot: u32,
    pub role: u32,
    pub cores: Vec<u32>,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
}

impl Taken {
    pub fn grant(&self, view: &View<'_>) -> Grant {
        Grant {
            agent: view.slots[self.slot as usize].agent.id,
            cores: self.cores.iter().copied().collect(),
            memory_bytes: self.memory_bytes,
            disk_bytes: self.disk_bytes,
        }
    }

    fn resources(&self) -> Resources {
        Resources::new(self.cores.len() as u32, self.memory_bytes, self.disk_bytes)
    }
}

/// The whole cluster as the scheduler sees it.
pub(super) struct View<'a> {
    pub slots: Vec<Slot<'a>>,
    slot_of: HashMap<AgentId, u32>,
    /// Active agents by (unreserved free cores, slot).
    index: BTreeSet<(u32, u32)>,
    roles: HashMap<&'a str, u32>,
    /// Per role, the slots where it holds a reservation.
    reserved_slots: Vec<Vec<u32>>,
    /// Sum over Active agents of what they offer.
    pub offered: Resources,
}

impl<'a> View<'a> {
    pub fn new(state: &'a ClusterState) -> Self {
        let mut roles: HashMap<&'a str, u32> = HashMap::new();
        roles.insert(DEFAULT_ROLE, 0);
        for name in state.roles.keys() {
            let next = roles.len() as u32;
            roles.entry(name.as_str()).or_insert(next);
        }
        let mut reserved_slots = vec![Vec::new(); roles.len()];
        let mut slots = Vec::with_capacity(state.agents.len());
        let mut slot_of = HashMap::with_capacity(state.agents.len());
        let mut offered = Resources::ZERO;
        for agent in state.agents.values() {
            if agent.state == AgentState::Lost {
                continue;
            }
            let slot = slots.len() as u32;
            let mut free_cores: Vec<u32> =
                agent.cores.difference(&agent.used_cores).copied().collect();
            free_cores.reverse();
            let active = agent.state == AgentState::Active;
            if active {
                offered = offered.plus(&agent.total());
            }
            slots.push(Slot {
                agent,
                free_cores,
                free_memory: agent.memory_bytes - agent.used_memory_bytes,
                free_disk: agent.disk_bytes - agent.used_disk_bytes,
                reserved: Vec::new(),
                active,
            });
            slot_of.insert(agent.id, slot);
        }
        for (name, role) in &state.roles {
            let r = roles[name.as_str()];
            for (agent_id, total) in &role.reservations {
                if let Some(&slot) = slot_of.get(agent_id) {
                    slots[slot as usize].reserved.push(Reserved {
                        role: r,
                        total: *total,
                        used: Resources::ZERO,
                    });
                    reserved_slots[r as usize].push(slot);
                }
            }
        }
        // What roles with reservations use on those agents.
        for slot in &mut slots {
            if slot.reserved.is_empty() {
                continue;
            }
            for (job, task) in &slot.agent.tasks {
                let Some(job) = state.jobs.get(job) else {
                    continue;
                };
                let Some(grant) = job.tasks.get(*task as usize).and_then(|t| t.grant.as_ref())
                else {
                    continue;
                };
                if let Some(&role) = roles.get(job.spec.role.as_str()) {
                    slot.account(role, &grant.resources(), true);
                }
            }
        }
        let mut view = Self {
            slots,
            slot_of,
            index: BTreeSet::new(),
            roles,
            reserved_slots,
            offered,
        };
        for slot in 0..view.slots.len() as u32 {
            if view.slots[slot as usize].active {
                view.index.insert(view.key(slot));
            }
        }
        view
    }

    fn key(&self, slot: u32) -> (u32, u32) {
        (self.slots[slot as usize].unreserved().cores, slot)
    }

    pub fn role(&self, name: &str) -> u32 {
        // Roles of live jobs exist (apply checks); an unknown one has no reservations.
        self.roles.get(name).copied().unwrap_or(u32::MAX)
    }

    /// Free resources of Active agents.
    pub fn free_total(&self) -> Resources {
        self.slots
            .iter()
            .filter(|s| s.active)
            .fold(Resources::ZERO, |sum, s| sum.plus(&s.free()))
    }

    /// Finds an Active agent for one task of `each` for `role`: agents
    /// where the role holds a reservation first, then the fullest (bin-pack)
    /// or emptiest (spread) that fits. `avoid` are slots to pass over
    /// unless nothing else fits.
    pub fn find(
        &self,
        role: u32,
        each: &Resources,
        constraints: &[Constraint],
        spread: bool,
        avoid: &[u32],
    ) -> Option<u32> {
        let fits = |slot: u32| {
            let s = &self.slots[slot as usize];
            s.active && each.fits_in(&s.available_to(role)) && s.satisfies(constraints)
        };
        if let Some(reserved) = self.reserved_slots.get(role as usize) {
            if let Some(&slot) = reserved
                .iter()
                .find(|&&slot| !avoid.contains(&slot) && fits(slot))
            {
                return Some(slot);
            }
        }
        let found = if spread {
            let mut first_avoided = None;
            let hit = self
                .index
                .range((each.cores, 0)..)
                .rev()
                .map(|&(_, slot)| slot)
                .filter(|&slot| fits(slot))
                .find(|slot| {
                    if avoid.contains(slot) {
                        first_avoided.get_or_insert(*slot);
                        false
                    } else {
                        true
                    }
                });
            hit.or(first_avoided)
        } else {
            self.index
                .range((each.cores, 0)..)
                .map(|&(_, slot)| slot)
                .find(|&slot| fits(slot))
        };
        found.or_else(|| {
            // A role's own reservation can make an agent fit although its
            // unreserved cores (the index key) are too few; those were tried
            // first. Avoided reserved slots are the last resort.
            self.reserved_slots
                .get(role as usize)?
                .iter()
                .copied()
                .find(|&slot| fits(slot))
        })
    }

    /// Grants `each` on `slot` to `role`.
    pub fn take(&mut self, slot: u32, role: u32, each: &Resources) -> Taken {
        let active = self.slots[slot as usize].active;
        if active {
            self.index.remove(&self.key(slot));
        }
        let s = &mut self.slots[slot as usize];
        let at = s.free_cores.len() - each.cores as usize;
        let mut cores = s.free_cores.split_off(at);
        cores.reverse();
        s.free_memory -= each.memory_bytes;
        s.free_disk -= each.disk_bytes;
        s.account(role, each, true);
        if active {
            self.index.insert(self.key(slot));
        }
        Taken {
            slot,
            role,
            cores,
            memory_bytes: each.memory_bytes,
            disk_bytes: each.disk_bytes,
        }
    }

    /// Gives back what [`View::take`] granted (or what a job held).
    pub fn give_back(&mut self, taken: &Taken) {
        let active = self.slots[taken.slot as usize].active;
        if active {
            self.index.remove(&self.key(taken.slot));
        }
        let s = &mut self.slots[taken.slot as usize];
        for &core in &taken.cores {
            // Keep the list sorted, highest first.
            let at = s.free_cores.partition_point(|&c| c > core);
            s.free_cores.insert(at, core);
        }
        s.free_memory += taken.memory_bytes;
        s.free_disk += taken.disk_bytes;
        s.account(taken.role, &taken.resources(), false);
        if active {
            self.index.insert(self.key(taken.slot));
        }
    }

    /// Takes exactly what `taken` names again (after a trial release).
    pub fn take_exact(&mut self, taken: &Taken) {
        let active = self.slots[taken.slot as usize].active;
        if active {
            self.index.remove(&self.key(taken.slot));
        }
        let s = &mut self.slots[taken.slot as usize];
        for core in &taken.cores {
            if let Ok(at) = s.free_cores.binary_search_by(|c| core.cmp(c)) {
                s.free_cores.remove(at);
            }
        }
        s.free_memory -= taken.memory_bytes;
        s.free_disk -= taken.disk_bytes;
        s.account(taken.role, &taken.resources(), true);
        if active {
            self.index.insert(self.key(taken.slot));
        }
    }

    /// What a placed job holds, as takes (to release it in the view).
    pub fn holdings(&self, job: &Job) -> Vec<Taken> {
        let role = self.role(&job.spec.role);
        job.tasks
            .iter()
            .filter_map(|t| t.grant.as_ref())
            .filter_map(|g| {
                Some(Taken {
                    slot: *self.slot_of.get(&g.agent)?,
                    role,
                    cores: g.cores.iter().copied().collect(),
                    memory_bytes: g.memory_bytes,
                    disk_bytes: g.disk_bytes,
                })
            })
            .collect()
    }

    /// Places every task of `job` or none: the grants, or None with the view
    /// unchanged.
    pub fn place(&mut self, job: &Job) -> Option<Vec<Taken>> {
        let (tasks, each) = job.spec.demand();
        let role = self.role(&job.spec.role);
        let spread = job.spec.placement == crate::state::PlacementStrategy::Spread;
        let mut taken: Vec<Taken> = Vec::with_capacity(tasks as usize);
        let mut used_slots: Vec<u32> = Vec::new();
        for _ in 0..tasks {
            let avoid: &[u32] = if spread { &used_slots } else { &[] };
            match self.find(role, &each, &job.spec.constraints, spread, avoid) {
                Some(slot) => {
                    taken.push(self.take(slot, role, &each));
                    if spread && !used_slots.contains(&slot) {
                        used_slots.push(slot);
                    }
                }
                None => {
                    for t in taken.iter().rev() {
                        self.give_back(t);
                    }
                    return None;
                }
            }
        }
        Some(taken)
    }

    /// The slot of an agent, if the view has it.
    pub fn slot_of(&self, agent: AgentId) -> Option<u32> {
        self.slot_of.get(&agent).copied()
    }

    /// Ids of jobs with a task on `slot`.
    pub fn jobs_on(&self, slot: u32) -> impl Iterator<Item = JobId> + '_ {
        self.slots[slot as usize]
            .agent
            .tasks
            .iter()
            .map(|(job, _)| *job)
    }
}
