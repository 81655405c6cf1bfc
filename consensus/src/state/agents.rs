//! Applying agents' registrations, drains, removals and state changes.

use super::*;
use crate::command::{CommandError, CommandOutput};

impl ClusterState {
    /// Registers or re-registers an agent; `token` (the accessor of the
    /// agent's ACL token) is bound to the agent on its first registration
    /// and refused for any other agent after that.
    pub(super) fn register_agent(
        &mut self,
        index: u64,
        spec: &AgentSpec,
        token: Option<&str>,
    ) -> Result<CommandOutput, CommandError> {
        spec.validate()?;
        let binding = |acl: &crate::acl::AclState, id: AgentId| match token {
            Some(accessor) => acl.binding_for(accessor, id),
            None => Ok(None),
        };
        if let Some(id) = spec.id {
            let agent = self
                .agents
                .get_mut(&id)
                .ok_or(CommandError::UnknownAgent { id })?;
            if let Some(detail) = spec.mismatch(agent) {
                return Err(CommandError::AgentResourcesMismatch { id, detail });
            }
            let bind = binding(&self.acl, id)?;
            // A known agent coming back is live again; attributes may change.
            agent.attributes = spec.attributes.clone();
            if agent.state == AgentState::Lost {
                agent.state = AgentState::Active;
                agent.lost_reason = None;
            }
            if let Some(key) = bind {
                self.acl.bind(&key, id);
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
        let bind = binding(&self.acl, id)?;
        self.next_agent_id += 1;
        if let Some(key) = bind {
            self.acl.bind(&key, id);
        }
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
            agent.lost_reason = Some(super::clip_message(why));
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
