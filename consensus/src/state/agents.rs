//! Agents: the machines whose cores, memory and disk the masters hand out.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::ClusterState;
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
const MEMORY_BYTES_MAX: u64 = 1 << 50;
/// 1 EiB.
const DISK_BYTES_MAX: u64 = 1 << 60;

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
}

impl AgentSpec {
    pub fn validate(&self) -> Result<(), CommandError> {
        if self.hostname.trim().is_empty() {
            return Err(CommandError::invalid("hostname", "must not be empty"));
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
            if !ok(key) || value.len() > ATTRIBUTE_BYTES_MAX {
                return Err(CommandError::invalid(
                    format!("attributes.{key}"),
                    format!("keys are 1..={ATTRIBUTE_BYTES_MAX} bytes without '=', values at most {ATTRIBUTE_BYTES_MAX} bytes"),
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
                "hostname {:?} != recorded {:?}",
                self.hostname, agent.hostname
            ));
        }
        (!diffs.is_empty()).then(|| diffs.join("; "))
    }
}

impl Agent {
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
            },
        );
        Ok(CommandOutput::AgentRegistered { id, new: true })
    }

    pub(super) fn set_agent_state(
        &mut self,
        id: AgentId,
        state: AgentState,
    ) -> Result<CommandOutput, CommandError> {
        let agent = self
            .agents
            .get_mut(&id)
            .ok_or(CommandError::UnknownAgent { id })?;
        let previous = std::mem::replace(&mut agent.state, state);
        Ok(CommandOutput::AgentStateSet { id, previous })
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
        Ok(CommandOutput::AgentRemoved { id })
    }
}
