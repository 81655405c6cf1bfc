//! Who is calling, and may they: the caller's certificate role (mutual TLS)
//! and ACL token, checked before a request does anything.

use sluice_security::Role;
use tonic::Status;

use super::AdminService;
use crate::acl::{AclPolicy, Denied, Need};
use crate::leader::now_unix_ms;
use crate::state::AgentId;

pub use sluice_api::wire::TOKEN_KEY;

/// Who made a call, for audit lines (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name, or `anonymous` when ACLs are off or not needed.
    pub name: String,
    pub accessor: Option<String>,
    /// Which agent's reports the caller may make.
    pub acts_for: ActsFor,
}

/// Which agent a caller may report for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActsFor {
    /// Any (ACLs off, or a management token).
    Any,
    /// None yet: an agent token before its agent first registered.
    NoAgentYet,
    /// This agent alone.
    Agent(AgentId),
}

impl Caller {
    fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            accessor: None,
            acts_for: ActsFor::Any,
        }
    }

    /// The token to bind to the agent that registers with it, if any.
    pub fn token_to_bind(&self) -> Option<String> {
        match self.acts_for {
            ActsFor::Any => None,
            ActsFor::NoAgentYet | ActsFor::Agent(_) => self.accessor.clone(),
        }
    }

    /// Refuses a report about agent `agent` from a caller that acts for
    /// another (an agent's token is bound to it at its first registration).
    pub fn check_acts_for(&self, agent: AgentId) -> Result<(), Status> {
        match self.acts_for {
            ActsFor::Any => Ok(()),
            ActsFor::Agent(bound) if bound == agent => Ok(()),
            ActsFor::Agent(bound) => Err(Status::permission_denied(format!(
                "permission denied: token {:?} acts for agent {bound}, not agent {agent}",
                self.name
            ))),
            ActsFor::NoAgentYet => Err(Status::permission_denied(format!(
                "permission denied: token {:?} acts for no agent yet (an agent registers first)",
                self.name
            ))),
        }
    }
}

/// The secret a call carries, if any.
pub use sluice_api::wire::bearer_token as token_of;

fn denied(reason: Denied) -> Status {
    let message = match &reason {
        Denied::Needs { .. } => reason.to_string(),
        _ => format!("permission denied: {reason}"),
    };
    match reason {
        Denied::Needs { .. } => Status::permission_denied(message),
        _ => Status::unauthenticated(message),
    }
}

impl AdminService {
    /// Lets a call through if the caller's certificate names one of `roles`
    /// (when TLS is on) and its token grants `need` (when ACLs are on and
    /// the call needs anything). `what` says what the call does, for the
    /// refusal.
    pub(super) fn authorize<T>(
        &self,
        request: &tonic::Request<T>,
        roles: &[Role],
        what: &str,
        need: Option<Need>,
    ) -> Result<Caller, Status> {
        sluice_security::tls::require_role(self.config.tls.as_ref(), request, roles, what)?;
        let Some(need) = need.filter(|_| self.config.acl) else {
            return Ok(Caller::anonymous());
        };
        let secret = token_of(request.metadata())?.ok_or_else(|| denied(Denied::NoToken))?;
        let view = self.state.read();
        let token = view
            .state
            .acl
            .authenticate(&secret, now_unix_ms())
            .map_err(denied)?;
        if !need.granted_by(&token.policies) {
            return Err(denied(Denied::Needs {
                name: token.name.clone(),
                need,
            }));
        }
        let acts_for = if token.policies.contains(&AclPolicy::Management) {
            ActsFor::Any
        } else {
            token.agent.map_or(ActsFor::NoAgentYet, ActsFor::Agent)
        };
        Ok(Caller {
            name: token.name.clone(),
            accessor: Some(token.accessor.clone()),
            acts_for,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_as_bearer_headers() {
        let mut meta = tonic::metadata::MetadataMap::new();
        assert_eq!(token_of(&meta).unwrap(), None);
        meta.insert(TOKEN_KEY, "Bearer sluice_abc".parse().unwrap());
        assert_eq!(token_of(&meta).unwrap().as_deref(), Some("sluice_abc"));
        meta.insert(TOKEN_KEY, "Basic x".parse().unwrap());
        let err = token_of(&meta).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
    }
}
