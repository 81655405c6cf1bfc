//! Agents: the machines whose cores, memory and disk the masters hand out.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{JobId, Resources};
use crate::outcome::CommandError;

pub type AgentId = u64;

/// Most agents one cluster tracks.
pub const AGENTS_MAX: usize = 100_000;
/// Most cores one agent may offer.
pub const CORES_PER_AGENT_MAX: usize = 4096;
const HOSTNAME_BYTES_MAX: usize = 253;
const ATTRIBUTES_MAX: usize = 64;
const ATTRIBUTE_BYTES_MAX: usize = 256;
/// 1 PiB: anything above is a unit mistake, not a machine.
pub const MEMORY_BYTES_MAX: u64 = 1 << 50;
/// 1 EiB.
pub const DISK_BYTES_MAX: u64 = 1 << 60;

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
    pub fn mismatch(&self, agent: &Agent) -> Option<String> {
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
