//! Who is calling, and may they: the caller's certificate role (mutual TLS)
//! and ACL token, checked before a request does anything.

use sluice_security::Role;
use tonic::Status;

use super::AdminService;
use crate::acl::{Denied, Need};
use crate::leader::now_unix_ms;

pub use sluice_api::wire::TOKEN_KEY;

/// Who made a call, for audit lines (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name, or `anonymous` when ACLs are off or not needed.
    pub name: String,
    pub accessor: Option<String>,
}

impl Caller {
    fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            accessor: None,
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
        Ok(Caller {
            name: token.name.clone(),
            accessor: Some(token.accessor.clone()),
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
