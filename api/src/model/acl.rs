//! ACL tokens: who may do what.
//!
//! A token has a name (shown in audit lines), a public accessor (to list and
//! revoke it), the SHA-256 of its secret (the secret itself is shown once, at
//! creation, and never stored), policies and an optional expiry. Every API
//! call names what it needs ([`Need`]); a token's policies grant it or the
//! call is refused before anything happens:
//! - `read`: list, show, status, logs;
//! - `submit:ROLE[,ROLE...]` (or `submit:*`): submit, cancel and kill jobs in
//!   those roles;
//! - `operator`: agents (drain, remove), roles, the scheduler's policy;
//! - `management`: everything, including masters, snapshots and ACLs;
//! - `agent`: what an agent does: register, heartbeat, report tasks and
//!   checkpoints.
//!
//! - `logs:JOB`: read that one job and its tasks' logs (the short-lived
//!   ticket `sluice task logs` gets from the leader and shows an agent, so
//!   no user's own token ever reaches an agent).
//!
//! Every policy but `logs:JOB` grants `read`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest token name.
pub const TOKEN_NAME_BYTES_MAX: usize = 64;
/// Most policies on one token, and roles in one `submit` policy.
pub const POLICIES_MAX: usize = 16;

/// One grant of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AclPolicy {
    Read,
    /// Jobs in these roles; `*` means every role.
    Submit {
        roles: Vec<String>,
    },
    Operator,
    Management,
    Agent,
    /// One job and its tasks' logs, nothing else.
    Logs {
        job: u64,
    },
}

/// How long a log ticket (`logs:JOB`) lives.
pub const LOG_TICKET_TTL_MS: u64 = 60_000;

impl fmt::Display for AclPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AclPolicy::Read => f.write_str("read"),
            AclPolicy::Submit { roles } => write!(f, "submit:{}", roles.join(",")),
            AclPolicy::Operator => f.write_str("operator"),
            AclPolicy::Management => f.write_str("management"),
            AclPolicy::Agent => f.write_str("agent"),
            AclPolicy::Logs { job } => write!(f, "logs:{job}"),
        }
    }
}

impl FromStr for AclPolicy {
    type Err = String;

    /// `read`, `submit:ROLE[,ROLE...]`, `submit:*`, `operator`, `management`
    /// or `agent`.
    fn from_str(s: &str) -> Result<Self, String> {
        let policy = match s.split_once(':') {
            None => match s {
                "read" => AclPolicy::Read,
                "operator" => AclPolicy::Operator,
                "management" => AclPolicy::Management,
                "agent" => AclPolicy::Agent,
                "submit" => {
                    return Err(
                        "policy \"submit\" needs its roles: submit:ROLE[,ROLE...] or submit:*"
                            .into(),
                    )
                }
                other => {
                    return Err(format!(
                        "unknown policy {other:?}: expected read, submit:ROLES, operator, \
                         management or agent"
                    ))
                }
            },
            Some(("submit", roles)) => AclPolicy::Submit {
                roles: roles.split(',').map(|r| r.trim().to_owned()).collect(),
            },
            Some(("logs", job)) => AclPolicy::Logs {
                job: job
                    .trim()
                    .parse()
                    .map_err(|_| format!("policy logs:{job}: expected logs:JOB (a job id)"))?,
            },
            Some((other, _)) => {
                return Err(format!(
                    "unknown policy {other:?}: only submit takes roles (submit:ROLE,...) and \
                     logs a job (logs:JOB)"
                ))
            }
        };
        policy.validate()?;
        Ok(policy)
    }
}

impl AclPolicy {
    pub fn validate(&self) -> Result<(), String> {
        if let AclPolicy::Submit { roles } = self {
            if roles.is_empty() || roles.len() > POLICIES_MAX {
                return Err(format!(
                    "submit policy with {} roles: give 1 to {POLICIES_MAX}",
                    roles.len()
                ));
            }
            for role in roles {
                let ok = role == "*"
                    || (!role.is_empty()
                        && role.len() <= 64
                        && role
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
                if !ok {
                    return Err(format!(
                        "submit policy role {role:?}: a role name (letters, digits, - _ .) or *"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What one API call needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    Read,
    /// Read this job (and its tasks' logs).
    ReadJob(u64),
    /// Submit rights on this role.
    Submit(String),
    /// Submit rights on some role (a call about a job that does not exist:
    /// it will be refused as unknown, to anyone who may submit at all).
    SubmitAny,
    Operator,
    Management,
    Agent,
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Need::Read => f.write_str("read"),
            Need::ReadJob(job) => write!(f, "read on job {job}"),
            Need::Submit(role) => write!(f, "submit on role {role}"),
            Need::SubmitAny => f.write_str("submit on some role"),
            Need::Operator => f.write_str("operator"),
            Need::Management => f.write_str("management"),
            Need::Agent => f.write_str("agent"),
        }
    }
}

impl Need {
    /// Whether `policies` grant this.
    pub fn granted_by(&self, policies: &[AclPolicy]) -> bool {
        policies.iter().any(|p| match (p, self) {
            (AclPolicy::Management, _) => true,
            (AclPolicy::Logs { job }, Need::ReadJob(wanted)) => job == wanted,
            (AclPolicy::Logs { .. }, _) => false,
            (_, Need::Read | Need::ReadJob(_)) => true,
            (AclPolicy::Submit { roles }, Need::Submit(role)) => {
                roles.iter().any(|r| r == "*" || r == role)
            }
            (AclPolicy::Submit { .. }, Need::SubmitAny) => true,
            (AclPolicy::Operator, Need::Operator) | (AclPolicy::Agent, Need::Agent) => true,
            _ => false,
        })
    }
}

/// A token as listed: everything but the secret's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub accessor: String,
    pub name: String,
    pub policies: Vec<AclPolicy>,
    pub created_ms: u64,
    #[serde(default)]
    pub expires_ms: Option<u64>,
    #[serde(default)]
    pub revoked_ms: Option<u64>,
    /// The agent an `agent` token acts for, from that agent's first
    /// registration on (none before, and none for other tokens).
    #[serde(default)]
    pub agent: Option<u64>,
}
