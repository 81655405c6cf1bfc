//! The typed commands replicated through Raft, and their responses.
//!
//! Commands travel as JSON on the admin API (so a CLI or REST client can
//! write them by hand) and as postcard inside Raft entries. Unknown fields and
//! unknown commands are rejected when decoding, before anything is proposed.

use serde::{Deserialize, Serialize};

use crate::state::{AgentId, AgentSpec, AgentState, ClusterState, RoleSpec};

/// A change to the cluster's allocation state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Registers a new agent (no `id`) or re-registers a known one (`id` set;
    /// its resources must match the recorded ones).
    RegisterAgent(AgentSpec),
    /// Moves an agent to Active, Draining or Lost.
    SetAgentState { id: AgentId, state: AgentState },
    /// Forgets an agent that is Lost.
    RemoveAgent { id: AgentId },
    /// Creates or updates a role (tenant).
    SetRole(RoleSpec),
    /// Deletes a role.
    RemoveRole { name: String },
    /// Replaces the whole state with a saved one (`cluster snapshot restore`).
    RestoreState(Box<ClusterState>),
}

impl Command {
    /// Decodes a command from the admin API's JSON, with a message that says
    /// what was wrong and where.
    pub fn from_json(json: &str) -> Result<Self, String> {
        serde_json::from_str(json).map_err(|e| {
            format!(
                "invalid command at line {} column {}: {e}",
                e.line(),
                e.column()
            )
        })
    }
}

/// What an applied command produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandOutput {
    /// The entry carried no command (leader blank entry, membership change).
    None,
    AgentRegistered {
        id: AgentId,
        new: bool,
    },
    AgentStateSet {
        id: AgentId,
        previous: AgentState,
    },
    AgentRemoved {
        id: AgentId,
    },
    RoleSet {
        name: String,
        created: bool,
    },
    RoleRemoved {
        name: String,
    },
    StateRestored {
        agents: usize,
        roles: usize,
    },
}

/// Why the state machine rejected a command. The state is unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum CommandError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("unknown agent {id}")]
    UnknownAgent { id: AgentId },
    #[error(
        "agent {id} re-registered with resources that differ from its recorded ones: {detail}"
    )]
    AgentResourcesMismatch { id: AgentId, detail: String },
    #[error("agent {id} is {state:?}; only a Lost agent can be removed")]
    AgentNotLost { id: AgentId, state: AgentState },
    #[error("unknown role {name:?}")]
    UnknownRole { name: String },
    #[error("limit reached: {what} (at most {max})")]
    LimitReached { what: String, max: u64 },
}

impl CommandError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// What one Raft entry carries: a batch of commands proposed together.
///
/// Concurrent writers' commands share one entry, and so one fsync on each
/// member (see [`crate::proposer`]). Each command is applied on its own: a
/// rejected one changes nothing and does not affect the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal(pub Vec<Command>);

/// The result of one applied command.
pub type CommandResult = Result<CommandOutput, CommandError>;

/// The state machine's answer to one log entry: one result per command, in
/// order (empty for entries without commands).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response(pub Vec<CommandResult>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_commands_and_fields_are_rejected_with_position() {
        let err = Command::from_json(r#"{"launch_rockets": {}}"#).unwrap_err();
        assert!(err.contains("unknown variant `launch_rockets`"), "{err}");
        assert!(err.contains("line 1"), "{err}");
        let err = Command::from_json(r#"{"remove_role": {"name": "a", "nmae": "b"}}"#).unwrap_err();
        assert!(err.contains("unknown field `nmae`"), "{err}");
        let err = Command::from_json("{not json").unwrap_err();
        assert!(err.contains("column"), "{err}");
    }

    #[test]
    fn commands_survive_the_raft_encoding() {
        let cmd = Command::SetRole(RoleSpec {
            name: "analytics".into(),
            weight: 2.5,
            quota: None,
            limit: None,
        });
        let proposal = Proposal(vec![cmd.clone(), Command::RemoveRole { name: "x".into() }]);
        let bytes = postcard::to_stdvec(&proposal).unwrap();
        let back: Proposal = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, proposal);
    }
}
