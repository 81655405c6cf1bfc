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
//! Every policy grants `read`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use sluice_api::model::acl::{AclPolicy, Need, TokenInfo, POLICIES_MAX, TOKEN_NAME_BYTES_MAX};

use crate::command::CommandError;
use crate::state::AgentId;

/// Most tokens alive at once.
pub const TOKENS_MAX: usize = 10_000;
/// How long an expired token is remembered (to say "expired" rather than
/// "unknown").
pub const EXPIRED_KEPT_MS: u64 = 3_600_000;
/// Most revoked tokens remembered (to say "revoked" rather than "unknown").
pub const REVOKED_KEPT: usize = 1_000;

/// A token as the state keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclToken {
    pub accessor: String,
    pub name: String,
    /// SHA-256 of the secret, hex.
    pub secret_hash: String,
    pub policies: Vec<AclPolicy>,
    pub created_ms: u64,
    #[serde(default)]
    pub expires_ms: Option<u64>,
    /// When it was revoked; a revoked token is kept a while to say so.
    #[serde(default)]
    pub revoked_ms: Option<u64>,
    /// The agent this token acts for: set when an agent first registers
    /// with it (tokens with the management policy act for any agent).
    #[serde(default)]
    pub agent: Option<AgentId>,
}

impl From<&AclToken> for TokenInfo {
    fn from(t: &AclToken) -> Self {
        Self {
            accessor: t.accessor.clone(),
            name: t.name.clone(),
            policies: t.policies.clone(),
            created_ms: t.created_ms,
            expires_ms: t.expires_ms,
            revoked_ms: t.revoked_ms,
            agent: t.agent,
        }
    }
}

/// The replicated ACL state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclState {
    /// Whether the management token was bootstrapped (once per cluster).
    pub bootstrapped: bool,
    /// Tokens by the SHA-256 of their secret (every API call looks one up
    /// that way), revoked ones included.
    pub tokens: BTreeMap<String, AclToken>,
}

/// Why a token does not let a call through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("no ACL token given (pass --token or set SLUICE_TOKEN)")]
    NoToken,
    #[error("unknown ACL token")]
    Unknown,
    #[error("ACL token {name:?} ({accessor}) was revoked")]
    Revoked { name: String, accessor: String },
    #[error("ACL token {name:?} ({accessor}) expired at {expires_ms} (Unix ms)")]
    Expired {
        name: String,
        accessor: String,
        expires_ms: u64,
    },
    #[error("permission denied: token {name:?} needs {need}")]
    Needs { name: String, need: Need },
}

impl AclState {
    /// The live token whose secret is `secret`, at time `now_ms`.
    pub fn authenticate(&self, secret: &str, now_ms: u64) -> Result<&AclToken, Denied> {
        let hash = sluice_security::token::hash_secret(secret);
        let token = self.tokens.get(&hash).ok_or(Denied::Unknown)?;
        if token.revoked_ms.is_some() {
            return Err(Denied::Revoked {
                name: token.name.clone(),
                accessor: token.accessor.clone(),
            });
        }
        if let Some(expires_ms) = token.expires_ms.filter(|&e| e <= now_ms) {
            return Err(Denied::Expired {
                name: token.name.clone(),
                accessor: token.accessor.clone(),
                expires_ms,
            });
        }
        Ok(token)
    }

    /// Checks a token about to be added.
    pub(crate) fn check_new(&self, token: &AclToken) -> Result<(), CommandError> {
        let bad = |field: &str, reason: String| Err(CommandError::invalid(field, reason));
        let name_ok = !token.name.is_empty()
            && token.name.len() <= TOKEN_NAME_BYTES_MAX
            && token.name.chars().all(|c| !c.is_control());
        if !name_ok {
            return bad(
                "token.name",
                format!("1 to {TOKEN_NAME_BYTES_MAX} bytes without control characters"),
            );
        }
        if token.policies.is_empty() || token.policies.len() > POLICIES_MAX {
            return bad("token.policies", format!("give 1 to {POLICIES_MAX}"));
        }
        for policy in &token.policies {
            policy
                .validate()
                .map_err(|e| CommandError::invalid("token.policies", e))?;
        }
        let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(&token.accessor, 16) || !hex(&token.secret_hash, 64) {
            return bad("token", "malformed accessor or secret hash".into());
        }
        if token.expires_ms.is_some_and(|e| e <= token.created_ms) {
            return bad("token.expires_ms", "not after its creation".into());
        }
        if token.revoked_ms.is_some() {
            return bad("token.revoked_ms", "a new token cannot be revoked".into());
        }
        if token.agent.is_some() {
            return bad("token.agent", "a new token acts for no agent yet".into());
        }
        if self.tokens.contains_key(&token.secret_hash)
            || self.tokens.values().any(|t| t.accessor == token.accessor)
        {
            return bad("token", "accessor or secret already in use".into());
        }
        let now = token.created_ms;
        let live = self
            .tokens
            .values()
            .filter(|t| t.revoked_ms.is_none() && t.expires_ms.is_none_or(|e| e > now))
            .count();
        if live >= TOKENS_MAX {
            return Err(CommandError::LimitReached {
                what: "ACL tokens".into(),
                max: TOKENS_MAX as u64,
            });
        }
        Ok(())
    }

    /// What registering agent `agent` with the live token named `accessor`
    /// does to it: `Some(key)` when the token is to be bound to the agent
    /// from now on, `None` when nothing changes (it acts for that agent
    /// already, or holds the management policy and acts for any). A token
    /// bound to another agent is refused: each agent has a token of its own.
    pub fn binding_for(
        &self,
        accessor: &str,
        agent: AgentId,
    ) -> Result<Option<String>, CommandError> {
        let (key, token) = self
            .tokens
            .iter()
            .find(|(_, t)| t.accessor == accessor && t.revoked_ms.is_none())
            .ok_or_else(|| CommandError::UnknownToken {
                accessor: accessor.to_owned(),
            })?;
        if token.policies.contains(&AclPolicy::Management) {
            return Ok(None);
        }
        if token.agent.is_none() {
            // An agent already acting with another live token keeps it.
            if let Some(other) = self
                .tokens
                .values()
                .find(|t| t.agent == Some(agent) && t.revoked_ms.is_none())
            {
                return Err(CommandError::AgentHasToken {
                    agent,
                    name: other.name.clone(),
                });
            }
        }
        match token.agent {
            Some(bound) if bound == agent => Ok(None),
            Some(bound) => Err(CommandError::AgentTokenBound {
                name: token.name.clone(),
                agent: bound,
                wanted: agent,
            }),
            None => Ok(Some(key.clone())),
        }
    }

    /// Binds the token stored under `key` to `agent` (see [`AclState::binding_for`]).
    pub(crate) fn bind(&mut self, key: &str, agent: AgentId) {
        if let Some(token) = self.tokens.get_mut(key) {
            token.agent = Some(agent);
        }
    }

    /// Adds a checked token, forgetting tokens that expired more than
    /// [`EXPIRED_KEPT_MS`] before it was made (log tickets expire by the
    /// minute; an expired token is remembered a while to say so).
    pub(crate) fn insert(&mut self, token: AclToken) {
        let now = token.created_ms;
        self.tokens.retain(|_, t| {
            t.expires_ms
                .is_none_or(|e| e.saturating_add(EXPIRED_KEPT_MS) > now)
        });
        self.tokens.insert(token.secret_hash.clone(), token);
    }

    /// Revokes a token, forgetting the oldest revoked ones past
    /// [`REVOKED_KEPT`].
    pub(crate) fn revoke(&mut self, accessor: &str, now_ms: u64) -> Result<String, CommandError> {
        let token = self
            .tokens
            .values_mut()
            .find(|t| t.accessor == accessor && t.revoked_ms.is_none())
            .ok_or_else(|| CommandError::UnknownToken {
                accessor: accessor.to_owned(),
            })?;
        token.revoked_ms = Some(now_ms);
        let name = token.name.clone();
        let mut revoked: Vec<(u64, String)> = self
            .tokens
            .values()
            .filter_map(|t| t.revoked_ms.map(|r| (r, t.secret_hash.clone())))
            .collect();
        if revoked.len() > REVOKED_KEPT {
            revoked.sort();
            for (_, old) in &revoked[..revoked.len() - REVOKED_KEPT] {
                self.tokens.remove(old);
            }
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_ticket_reads_its_job_alone() {
        let ticket = ["logs:12".parse::<AclPolicy>().unwrap()];
        assert_eq!(ticket[0], AclPolicy::Logs { job: 12 });
        assert_eq!(ticket[0].to_string(), "logs:12");
        assert!(Need::ReadJob(12).granted_by(&ticket));
        assert!(!Need::ReadJob(13).granted_by(&ticket));
        assert!(!Need::Read.granted_by(&ticket), "no other read");
        assert!(!Need::Submit("x".into()).granted_by(&ticket));
        assert!(!Need::Agent.granted_by(&ticket));
        assert!(Need::ReadJob(13).granted_by(&["read".parse().unwrap()]));
        assert!("logs:x".parse::<AclPolicy>().is_err());
    }

    #[test]
    fn policies_parse_and_grant() {
        let p = |s: &str| s.parse::<AclPolicy>().unwrap();
        let analytics = [p("submit:analytics,etl")];
        assert!(Need::Submit("etl".into()).granted_by(&analytics));
        assert!(!Need::Submit("batch".into()).granted_by(&analytics));
        assert!(Need::SubmitAny.granted_by(&analytics));
        assert!(Need::Read.granted_by(&analytics));
        assert!(!Need::Operator.granted_by(&analytics));
        assert!(Need::Submit("x".into()).granted_by(&[p("submit:*")]));
        assert!(Need::Management.granted_by(&[p("management")]));
        assert!(Need::Agent.granted_by(&[p("management")]));
        assert!(!Need::Agent.granted_by(&[p("operator")]));
        assert!(!Need::Management.granted_by(&[p("operator"), p("read")]));
        assert_eq!(p("submit:a,b").to_string(), "submit:a,b");
        for bad in ["submit", "submit:", "root", "read:x", "submit:a b"] {
            assert!(bad.parse::<AclPolicy>().is_err(), "{bad}");
        }
    }

    fn token(n: u8, expires_ms: Option<u64>) -> AclToken {
        AclToken {
            accessor: format!("{n:016x}"),
            name: format!("t{n}"),
            secret_hash: sluice_security::token::hash_secret(&format!("secret-{n}")),
            policies: vec![AclPolicy::Read],
            created_ms: 10,
            expires_ms,
            revoked_ms: None,
            agent: None,
        }
    }

    #[test]
    fn tokens_authenticate_until_they_expire_or_are_revoked() {
        let mut acl = AclState::default();
        for t in [token(1, None), token(2, Some(100))] {
            acl.check_new(&t).unwrap();
            acl.insert(t);
        }
        assert!(acl.check_new(&token(1, None)).is_err(), "accessor reused");
        assert_eq!(acl.authenticate("secret-1", 50).unwrap().name, "t1");
        assert_eq!(acl.authenticate("secret-2", 99).unwrap().name, "t2");
        assert!(matches!(
            acl.authenticate("secret-2", 100),
            Err(Denied::Expired { .. })
        ));
        assert_eq!(acl.authenticate("nope", 0), Err(Denied::Unknown));
        assert_eq!(acl.revoke(&token(1, None).accessor, 60).unwrap(), "t1");
        assert!(matches!(
            acl.authenticate("secret-1", 61),
            Err(Denied::Revoked { .. })
        ));
        assert!(acl.revoke(&token(1, None).accessor, 70).is_err(), "twice");
        let mut bad = token(3, Some(5));
        assert!(acl.check_new(&bad).is_err(), "expires before creation");
        bad.expires_ms = None;
        bad.policies.clear();
        assert!(acl.check_new(&bad).is_err(), "no policy");
    }
}
