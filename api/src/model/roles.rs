//! Roles: the tenants resources are shared between.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{AgentId, Resources};
use crate::outcome::CommandError;

/// Most roles one cluster tracks.
pub const ROLES_MAX: usize = 10_000;
const ROLE_NAME_BYTES_MAX: usize = 128;
const WEIGHT_MAX: f64 = 1e6;
const RESERVATIONS_MAX: usize = 1024;

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
    /// Resources set aside on specific agents: only this role's jobs use them.
    #[serde(default)]
    pub reservations: BTreeMap<AgentId, Resources>,
}

/// A stored role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    pub weight: f64,
    pub quota: Option<Resources>,
    pub limit: Option<Resources>,
    pub reservations: BTreeMap<AgentId, Resources>,
}

impl Role {
    pub fn spec(&self) -> RoleSpec {
        RoleSpec {
            name: self.name.clone(),
            weight: self.weight,
            quota: self.quota,
            limit: self.limit,
            reservations: self.reservations.clone(),
        }
    }
}

/// Punctuation a role name may hold besides ASCII letters and digits.
pub const ROLE_NAME_PUNCTUATION: &str = "-_.";

/// Checks a role name wherever one is given (a role, a job's role).
pub fn check_role_name(field: &str, name: &str) -> Result<(), CommandError> {
    check_name(field, name, ROLE_NAME_BYTES_MAX, ROLE_NAME_PUNCTUATION)
}

/// Checks a name: 1..=`max` bytes of ASCII letters, digits and the
/// characters of `punctuation` — nothing a terminal would act on when it
/// is printed. The error quotes the name clipped and escaped.
pub fn check_name(
    field: &str,
    name: &str,
    max: usize,
    punctuation: &str,
) -> Result<(), CommandError> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || punctuation.contains(c));
    if ok {
        return Ok(());
    }
    let allowed: Vec<String> = punctuation.chars().map(|c| format!("'{c}'")).collect();
    Err(CommandError::invalid(
        field,
        format!(
            "{}: use 1..={max} characters from a-z, A-Z, 0-9, {}",
            crate::text::quoted(name),
            allowed.join(", ")
        ),
    ))
}

impl RoleSpec {
    pub fn validate(&self) -> Result<(), CommandError> {
        check_role_name("name", &self.name)?;
        if !(self.weight.is_finite() && self.weight > 0.0 && self.weight <= WEIGHT_MAX) {
            return Err(CommandError::invalid(
                "weight",
                format!("{} is not in (0, {WEIGHT_MAX}]", self.weight),
            ));
        }
        if self.reservations.len() > RESERVATIONS_MAX {
            return Err(CommandError::invalid(
                "reservations",
                format!(
                    "{} reservations, at most {RESERVATIONS_MAX}",
                    self.reservations.len()
                ),
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

/// A change to some of a role's settings (`role set` with only some flags):
/// what is not named stays as it is. A role that does not exist yet is
/// created from the defaults (weight 1, no quota, no limit, nothing
/// reserved) with the changes on top.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolePatch {
    pub name: String,
    #[serde(default)]
    pub weight: Option<f64>,
    #[serde(default)]
    pub quota: Change<Resources>,
    #[serde(default)]
    pub limit: Change<Resources>,
    #[serde(default)]
    pub reservations: Change<BTreeMap<AgentId, Resources>>,
}

/// What a patch does to one optional setting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change<T> {
    /// Leaves it as it is.
    #[default]
    Keep,
    /// Removes it.
    Clear,
    /// Replaces it.
    Set(T),
}

impl<T: Clone> Change<T> {
    pub fn applied_to(&self, current: Option<T>) -> Option<T> {
        match self {
            Change::Keep => current,
            Change::Clear => None,
            Change::Set(value) => Some(value.clone()),
        }
    }
}
