//! Applying role changes.

use super::*;
use crate::command::{CommandError, CommandOutput};

impl ClusterState {
    /// Applies a [`RolePatch`]: the merged role is checked as `SetRole`
    /// checks a whole one, in one command, so concurrent patches of other
    /// fields are never lost.
    pub(super) fn update_role(&mut self, patch: &RolePatch) -> Result<CommandOutput, CommandError> {
        check_role_name("name", &patch.name)?;
        let current = self.roles.get(&patch.name).map(Role::spec);
        let base = current.unwrap_or_else(|| RoleSpec {
            name: patch.name.clone(),
            weight: 1.0,
            quota: None,
            limit: None,
            reservations: BTreeMap::new(),
        });
        let spec = RoleSpec {
            name: patch.name.clone(),
            weight: patch.weight.unwrap_or(base.weight),
            quota: patch.quota.applied_to(base.quota),
            limit: patch.limit.applied_to(base.limit),
            reservations: patch
                .reservations
                .applied_to(Some(base.reservations))
                .unwrap_or_default(),
        };
        self.set_role(&spec)
    }

    pub(super) fn set_role(&mut self, spec: &RoleSpec) -> Result<CommandOutput, CommandError> {
        spec.validate()?;
        self.check_reservations(spec)?;
        let created = !self.roles.contains_key(&spec.name);
        if created && self.roles.len() >= ROLES_MAX {
            return Err(CommandError::LimitReached {
                what: "roles".into(),
                max: ROLES_MAX as u64,
            });
        }
        self.roles.insert(
            spec.name.clone(),
            Role {
                name: spec.name.clone(),
                weight: spec.weight,
                quota: spec.quota,
                limit: spec.limit,
                reservations: spec.reservations.clone(),
            },
        );
        Ok(CommandOutput::RoleSet {
            name: spec.name.clone(),
            created,
        })
    }

    /// Each reservation names a known agent, and on every agent all roles'
    /// reservations together fit in what it offers.
    pub(super) fn check_reservations(&self, spec: &RoleSpec) -> Result<(), CommandError> {
        for (agent_id, reserved) in &spec.reservations {
            let agent = self
                .agents
                .get(agent_id)
                .ok_or(CommandError::UnknownAgent { id: *agent_id })?;
            let others = self
                .roles
                .values()
                .filter(|r| r.name != spec.name)
                .filter_map(|r| r.reservations.get(agent_id))
                .fold(Resources::ZERO, |sum, r| sum.plus(r));
            let all = others.plus(reserved);
            if !all.fits_in(&agent.total()) {
                return Err(CommandError::invalid(
                    format!("reservations.{agent_id}"),
                    format!(
                        "reserving {reserved} on agent {agent_id} brings its reservations to {all}, above what it offers ({})",
                        agent.total()
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn remove_role(&mut self, name: &str) -> Result<CommandOutput, CommandError> {
        let live = self
            .jobs
            .values()
            .filter(|j| j.spec.role == name && !j.state.is_ended())
            .count();
        if live > 0 {
            return Err(CommandError::RoleInUse {
                name: name.to_owned(),
                jobs: live,
            });
        }
        self.roles
            .remove(name)
            .ok_or_else(|| CommandError::UnknownRole {
                name: name.to_owned(),
            })?;
        Ok(CommandOutput::RoleRemoved {
            name: name.to_owned(),
        })
    }
}
