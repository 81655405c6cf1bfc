//! What clients may read of the cluster's state.

use serde::{Deserialize, Serialize};

use crate::model::{AgentId, JobId, JobState};

/// A read of the state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Query {
    /// The whole state but the ACL tokens (used by `cluster snapshot save`).
    State,
    Agents,
    Agent {
        id: AgentId,
    },
    Roles,
    Role {
        name: String,
    },
    /// Jobs, optionally only those in one state.
    Jobs {
        #[serde(default)]
        state: Option<JobState>,
    },
    Job {
        id: JobId,
    },
    /// The queue policy and a summary of the queue.
    Scheduler,
    /// What an agent should be running: its tasks with their jobs' specs.
    AgentTasks {
        id: AgentId,
    },
    /// The ACL tokens, without their secrets' hashes.
    AclTokens,
}

impl Query {
    /// Decodes a query from its JSON form (for tools and a JSON API), naming
    /// where it is wrong.
    pub fn from_json(json: &str) -> Result<Self, String> {
        serde_json::from_str(json).map_err(|e| {
            format!(
                "invalid query at line {} column {}: {e}",
                e.line(),
                e.column()
            )
        })
    }
}
