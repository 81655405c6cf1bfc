//! Roles: the tenants resources are shared between.

use serde::{Deserialize, Serialize};

use super::ClusterState;
use crate::command::{CommandError, CommandOutput};

/// Most roles one cluster tracks.
pub const ROLES_MAX: usize = 10_000;
const ROLE_NAME_BYTES_MAX: usize = 128;
const WEIGHT_MAX: f64 = 1e6;

/// An amount of resources: a quota or a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub cores: u32,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
}

/// A role as set by `role set`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    pub name: String,
    /// Relative share under DRF; must be positive and finite.
    pub weight: f64,
    /// Guaranteed share.
    #[serde(default)]
    pub quota: Option<Resources>,
    /// Cap.
    #[serde(default)]
    pub limit: Option<Resources>,
}

/// A stored role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    pub weight: f64,
    pub quota: Option<Resources>,
    pub limit: Option<Resources>,
}

impl Role {
    pub fn spec(&self) -> RoleSpec {
        RoleSpec {
            name: self.name.clone(),
            weight: self.weight,
            quota: self.quota,
            limit: self.limit,
        }
    }
}

impl RoleSpec {
    pub fn validate(&self) -> Result<(), CommandError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= ROLE_NAME_BYTES_MAX
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(CommandError::invalid(
                "name",
                format!(
                    "{:?}: use 1..={ROLE_NAME_BYTES_MAX} characters from a-z, A-Z, 0-9, '-', '_', '.'",
                    self.name
                ),
            ));
        }
        if !(self.weight.is_finite() && self.weight > 0.0 && self.weight <= WEIGHT_MAX) {
            return Err(CommandError::invalid(
                "weight",
                format!("{} is not in (0, {WEIGHT_MAX}]", self.weight),
            ));
        }
        if let (Some(quota), Some(limit)) = (self.quota, self.limit) {
            let fits = quota.cores <= limit.cores
                && quota.memory_bytes <= limit.memory_bytes
                && quota.disk_bytes <= limit.disk_bytes;
            if !fits {
                return Err(CommandError::invalid(
                    "quota",
                    format!("quota {quota:?} exceeds limit {limit:?}"),
                ));
            }
        }
        Ok(())
    }
}

impl ClusterState {
    pub(super) fn set_role(&mut self, spec: &RoleSpec) -> Result<CommandOutput, CommandError> {
        spec.validate()?;
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
            },
        );
        Ok(CommandOutput::RoleSet {
            name: spec.name.clone(),
            created,
        })
    }

    pub(super) fn remove_role(&mut self, name: &str) -> Result<CommandOutput, CommandError> {
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
