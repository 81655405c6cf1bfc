//! The replicated cluster state and its deterministic `apply`.
//!
//! Apply validates every command against the current state and either
//! applies it whole or rejects it with a [`CommandError`], leaving the state
//! untouched: validation happens before the first mutation.

mod agents;
mod roles;

use std::collections::BTreeMap;

use openraft::LogId;
use serde::{Deserialize, Serialize};

pub use agents::{Agent, AgentId, AgentSpec, AgentState, AGENTS_MAX, CORES_PER_AGENT_MAX};
pub use roles::{Resources, Role, RoleSpec, ROLES_MAX};

use crate::command::{Command, CommandError, CommandOutput, Proposal, Response};
use crate::types::{NodeId, TypeConfig};

/// Everything the masters agree on. Grows with the resource manager (jobs,
/// placements): add a field here, a command in [`Command`], an `apply_*`
/// function in a file of this module.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub agents: BTreeMap<AgentId, Agent>,
    pub roles: BTreeMap<String, Role>,
    /// The id the next newly registered agent gets.
    pub next_agent_id: AgentId,
    /// Index of the last entry that changed this state (0 if none).
    pub last_change_index: u64,
}

impl ClusterState {
    /// Applies one command; on error the state is unchanged.
    pub fn apply_command(
        &mut self,
        index: u64,
        command: &Command,
    ) -> Result<CommandOutput, CommandError> {
        let output = match command {
            Command::RegisterAgent(spec) => self.register_agent(index, spec)?,
            Command::SetAgentState { id, state } => self.set_agent_state(*id, *state)?,
            Command::RemoveAgent { id } => self.remove_agent(*id)?,
            Command::SetRole(spec) => self.set_role(spec)?,
            Command::RemoveRole { name } => self.remove_role(name)?,
            Command::RestoreState(saved) => self.restore(saved)?,
        };
        self.last_change_index = index;
        Ok(output)
    }

    fn restore(&mut self, saved: &ClusterState) -> Result<CommandOutput, CommandError> {
        saved.validate()?;
        *self = saved.clone();
        Ok(CommandOutput::StateRestored {
            agents: self.agents.len(),
            roles: self.roles.len(),
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
        }
        Ok(())
    }
}

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

/// A read of the state, named on the admin API's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Query {
    /// The whole state (used by `cluster snapshot save`).
    State,
    Agents,
    Agent {
        id: AgentId,
    },
    Roles,
    Role {
        name: String,
    },
}

impl Query {
    pub fn from_json(json: &str) -> Result<Self, String> {
        serde_json::from_str(json).map_err(|e| {
            format!(
                "invalid query at line {} column {}: {e}",
                e.line(),
                e.column()
            )
        })
    }

    /// Answers the query from a state, as JSON.
    pub fn answer(&self, state: &ClusterState) -> Result<serde_json::Value, CommandError> {
        let value = match self {
            Query::State => serde_json::to_value(state),
            Query::Agents => serde_json::to_value(state.agents.values().collect::<Vec<_>>()),
            Query::Agent { id } => {
                let agent = state
                    .agents
                    .get(id)
                    .ok_or(CommandError::UnknownAgent { id: *id })?;
                serde_json::to_value(agent)
            }
            Query::Roles => serde_json::to_value(state.roles.values().collect::<Vec<_>>()),
            Query::Role { name } => {
                let role = state
                    .roles
                    .get(name)
                    .ok_or_else(|| CommandError::UnknownRole { name: name.clone() })?;
                serde_json::to_value(role)
            }
        };
        value.map_err(|e| CommandError::invalid("query", e.to_string()))
    }
}

#[cfg(test)]
mod tests;
