//! Agents: the machines whose cores, memory and disk the masters hand out.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{ClusterState, JobId, Resources};
use crate::command::{CommandError, CommandOutput};

pub type AgentId = u64;

/// Most agents one cluster tracks.
pub const AGENTS_MAX: usize = 100_000;
/// Most cores one agent may offer.
pub const CORES_PER_AGENT_MAX: usize = 4096;
const HOSTNAME_BYTES_MAX: usize = 253;
const ATTRIBUTES_MAX: usize = 64;
const ATTRIBUTE_BYTES_MAX: usize = 256;
/// 1 PiB: anything above is a unit mistake, not a machine.
pub(super) const MEMORY_BYTES_MAX: u64 = 1 << 50;
/// 1 EiB.
pub(super) const DISK_BYTES_MAX: u64 = 1 << 60;

/// Liveness and schedulability of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Accepts new work.
    Active,
    /// Keeps running work but accepts none; work is being moved off.
    Draining,
    /// Stopped heartbeating; its work has been returned to the queue.
    Lost,
}

/// What an agent offers, as it registers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// Set when re-registering a known agent.
    #[serde(default)]
    pub id: Option<AgentId>,
    pub hostname: String,
    /// The core ids the agent offers, each grantable on its own.
    pub cores: BTreeSet<u32>,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub id: AgentId,
    pub hostname: String,
    pub cores: BTreeSet<u32>,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub attributes: BTreeMap<String, String>,
    pub state: AgentState,
    /// Log index of the entry that first registered the agent.
    pub registered_at: u64,
    /// Cores granted to tasks.
    pub used_cores: BTreeSet<u32>,
    pub used_memory_bytes: u64,
    pub used_disk_bytes: u64,
    /// The tasks placed here: (job, task index).
    pub tasks: BTreeSet<(JobId, u32)>,
    /// Set while Draining.
    pub drain: Option<Drain>,
    /// Why it was marked Lost, while it is.
    pub lost_reason: Option<String>,
}

/// A drain in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    /// When the drain began (leader's clock, Unix ms).
    pub since_ms: u64,
    /// After this, work still here is returned to the queue even if nowhere
    /// else can take it yet; None waits until it can move.
    pub deadline_ms: Option<u64>,
}

impl AgentSpec {
    pub fn validate(&self) -> Result<(), CommandError> {
        if self.hostname.trim().is_empty() {
            return Err(CommandError::invalid("hostname", "must not be empty"));
        }
        if self.hostname.chars().any(char::is_control) {
            return Err(CommandError::invalid(
                "hostname",
                format!(
                    "{} holds control characters",
                    crate::text::quoted(&self.hostname)
                ),
            ));
        }
        if self.hostname.len() > HOSTNAME_BYTES_MAX {
            return Err(CommandError::invalid(
                "hostname",
                format!(
                    "{} bytes, at most {HOSTNAME_BYTES_MAX}",
                    self.hostname.len()
                ),
            ));
        }
        if self.cores.is_empty() {
            return Err(CommandError::invalid(
                "cores",
                "an agent must offer at least one core",
            ));
        }
        if self.cores.len() > CORES_PER_AGENT_MAX {
            return Err(CommandError::invalid(
                "cores",
                format!("{} cores, at most {CORES_PER_AGENT_MAX}", self.cores.len()),
            ));
        }
        if self.memory_bytes == 0 || self.memory_bytes > MEMORY_BYTES_MAX {
            return Err(CommandError::invalid(
                "memory_bytes",
                format!("{} is outside 1..={MEMORY_BYTES_MAX}", self.memory_bytes),
            ));
        }
        if self.disk_bytes > DISK_BYTES_MAX {
            return Err(CommandError::invalid(
                "disk_bytes",
                format!("{} is above {DISK_BYTES_MAX}", self.disk_bytes),
            ));
        }
        if self.attributes.len() > ATTRIBUTES_MAX {
            return Err(CommandError::invalid(
                "attributes",
                format!(
                    "{} attributes, at most {ATTRIBUTES_MAX}",
                    self.attributes.len()
                ),
            ));
        }
        for (key, value) in &self.attributes {
            let ok = |s: &str| !s.is_empty() && s.len() <= ATTRIBUTE_BYTES_MAX && !s.contains('=');
            let controls = key.chars().chain(value.chars()).any(char::is_control);
            if !ok(key) || value.len() > ATTRIBUTE_BYTES_MAX || controls {
                return Err(CommandError::invalid(
                    format!("attributes.{}", crate::text::escape_controls(&crate::text::clip(key, 64))),
                    format!("keys are 1..={ATTRIBUTE_BYTES_MAX} bytes without '=', values at most {ATTRIBUTE_BYTES_MAX} bytes, neither with control characters"),
                ));
            }
        }
        Ok(())
    }

    /// Describes how `self` differs from a recorded agent, if it does.
    fn mismatch(&self, agent: &Agent) -> Option<String> {
        let mut diffs = Vec::new();
        if self.cores != agent.cores {
            diffs.push(format!(
                "cores {:?} != recorded {:?}",
                self.cores, agent.cores
            ));
        }
        if self.memory_bytes != agent.memory_bytes {
            diffs.push(format!(
                "memory_bytes {} != recorded {}",
                self.memory_bytes, agent.memory_bytes
            ));
        }
        if self.disk_bytes != agent.disk_bytes {
            diffs.push(format!(
                "disk_bytes {} != recorded {}",
                self.disk_bytes, agent.disk_bytes
            ));
        }
        if self.hostname != agent.hostname {
            diffs.push(format!(
                "hostname {} != recorded {}",
                crate::text::quoted(&self.hostname),
                crate::text::quoted(&agent.hostname)
            ));
        }
        (!diffs.is_empty()).then(|| diffs.join("; "))
    }
}

impl Agent {
    /// Everything it offers.
    pub fn total(&self) -> Resources {
        Resources::new(self.cores.len() as u32, self.memory_bytes, self.disk_bytes)
    }

    /// What is not granted.
    pub fn free(&self) -> Resources {
        Resources::new(
            (self.cores.len() - self.used_cores.len()) as u32,
            self.memory_bytes - self.used_memory_bytes,
            self.disk_bytes - self.used_disk_bytes,
        )
    }

    /// The spec this agent would re-register with.
    pub fn spec(&self) -> AgentSpec {
        AgentSpec {
            id: Some(self.id),
            hostname: self.hostname.clone(),
            cores: self.cores.clone(),
            memory_bytes: self.memory_bytes,
            disk_bytes: self.disk_bytes,
            attributes: self.attributes.clone(),
        }
    }
}

impl ClusterState {
    pub(super) fn register_agent(
        &mut self,
        index: u64,
        spec: &AgentSpec,
    ) -> Result<CommandOutput, CommandError> {
        spec.validate()?;
        if let Some(id) = spec.id {
            let agent = self
                .agents
                .get_mut(&id)
                .ok_or(CommandError::UnknownAgent { id })?;
            if let Some(detail) = spec.mismatch(agent) {
                return Err(CommandError::AgentResourcesMismatch { id, detail });
            }
            // A known agent coming back is live again; attributes may change.
            agent.attributes = spec.attributes.clone();
            if agent.state == AgentState::Lost {
                agent.state = AgentState::Active;
                agent.lost_reason = None;
            }
            return Ok(CommandOutput::AgentRegistered { id, new: false });
        }
        if self.agents.len() >= AGENTS_MAX {
            return Err(CommandError::LimitReached {
                what: "agents".into(),
                max: AGENTS_MAX as u64,
            });
        }
        let id = self.next_agent_id;
        self.next_agent_id += 1;
        self.agents.insert(
            id,
            Agent {
                id,
                hostname: spec.hostname.clone(),
                cores: spec.cores.clone(),
                memory_bytes: spec.memory_bytes,
                disk_bytes: spec.disk_bytes,
                attributes: spec.attributes.clone(),
                state: AgentState::Active,
                registered_at: index,
                used_cores: BTreeSet::new(),
                used_memory_bytes: 0,
                used_disk_bytes: 0,
                tasks: BTreeSet::new(),
                drain: None,
                lost_reason: None,
            },
        );
        Ok(CommandOutput::AgentRegistered { id, new: true })
    }

    /// Moves an agent to `state`. Lost returns its work to the queue;
    /// Draining (without a deadline) lets the scheduler move work off.
    pub(super) fn set_agent_state(
        &mut self,
        index: u64,
        now_ms: u64,
        id: AgentId,
        state: AgentState,
        reason: Option<&str>,
    ) -> Result<CommandOutput, CommandError> {
        if !self.agents.contains_key(&id) {
            return Err(CommandError::UnknownAgent { id });
        }
        if state == AgentState::Lost {
            self.check_held(self.jobs_on(id))?;
        }
        let Some(agent) = self.agents.get_mut(&id) else {
            return Err(CommandError::UnknownAgent { id });
        };
        let previous = std::mem::replace(&mut agent.state, state);
        agent.drain = match state {
            AgentState::Draining => agent.drain.or(Some(Drain {
                since_ms: now_ms,
                deadline_ms: None,
            })),
            _ => None,
        };
        let mut requeued = Vec::new();
        if state == AgentState::Lost {
            let why = reason.unwrap_or("marked lost");
            agent.lost_reason = Some(super::jobs::clip(why));
            requeued = self.requeue_agent_work(
                index,
                now_ms,
                id,
                &format!("agent {id} lost ({why}); waiting to be placed again"),
            );
        } else {
            agent.lost_reason = None;
        }
        Ok(CommandOutput::AgentStateSet {
            id,
            previous,
            requeued,
        })
    }

    /// Starts draining: no new work; the scheduler moves running work
    /// elsewhere as room appears, and at the deadline returns what is
    /// left to the queue.
    pub(super) fn drain_agent(
        &mut self,
        now_ms: u64,
        id: AgentId,
        deadline_after_ms: Option<u64>,
    ) -> Result<CommandOutput, CommandError> {
        let agent = self
            .agents
            .get_mut(&id)
            .ok_or(CommandError::UnknownAgent { id })?;
        if agent.state == AgentState::Lost {
            return Err(CommandError::AgentLost { id });
        }
        agent.state = AgentState::Draining;
        agent.drain = Some(Drain {
            since_ms: now_ms,
            deadline_ms: deadline_after_ms.map(|after| now_ms.saturating_add(after)),
        });
        Ok(CommandOutput::AgentDraining {
            id,
            tasks: agent.tasks.len(),
        })
    }

    pub(super) fn undrain_agent(&mut self, id: AgentId) -> Result<CommandOutput, CommandError> {
        let agent = self
            .agents
            .get_mut(&id)
            .ok_or(CommandError::UnknownAgent { id })?;
        if agent.state != AgentState::Draining {
            return Err(CommandError::AgentNotDraining {
                id,
                state: agent.state,
            });
        }
        agent.state = AgentState::Active;
        agent.drain = None;
        Ok(CommandOutput::AgentUndrained { id })
    }

    pub(super) fn remove_agent(&mut self, id: AgentId) -> Result<CommandOutput, CommandError> {
        let agent = self
            .agents
            .get(&id)
            .ok_or(CommandError::UnknownAgent { id })?;
        if agent.state != AgentState::Lost {
            return Err(CommandError::AgentNotLost {
                id,
                state: agent.state,
            });
        }
        self.agents.remove(&id);
        for role in self.roles.values_mut() {
            role.reservations.remove(&id);
        }
        Ok(CommandOutput::AgentRemoved { id })
    }
}
