//! What makes a Sluice cluster safe on a shared network.
//!
//! - [`pki`]: the cluster's certificate authority and the certificates it
//!   issues (`sluice tls init`, `sluice tls issue`). Every certificate names a
//!   [`Role`] and the cluster in its one DNS name, `<role>.<cluster>.sluice`.
//! - [`tls`]: a member's TLS identity loaded from PEM files, the tonic server
//!   and client configurations made from it (mutual TLS: both sides present
//!   a certificate of the cluster's CA), and the check of a caller's role.
//! - [`token`]: ACL token secrets and the hash the replicated state keeps
//!   instead of them.

#![forbid(unsafe_code)]

pub mod pki;
pub mod tls;
pub mod token;

use std::fmt;
use std::str::FromStr;

pub use tls::{Tls, TlsError, TlsFiles};

/// The suffix of every certificate name: `<role>.<cluster>.sluice`.
pub const NAME_SUFFIX: &str = "sluice";

/// What a certificate lets its holder be. A server checks the caller's role
/// before anything else: only a master may speak Raft, only an agent may
/// heartbeat, a client (the CLI, a program) may use the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Master,
    Agent,
    Client,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Master, Role::Agent, Role::Client];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Agent => "agent",
            Role::Client => "client",
        }
    }

    /// "a master", "an agent", "a client".
    pub fn with_article(self) -> &'static str {
        match self {
            Role::Master => "a master",
            Role::Agent => "an agent",
            Role::Client => "a client",
        }
    }

    /// The DNS name a certificate of this role carries in `cluster`.
    pub fn name_in(self, cluster: &str) -> String {
        format!("{}.{cluster}.{NAME_SUFFIX}", self.as_str())
    }

    /// The role and cluster a certificate name says, if it is a Sluice name.
    pub fn parse_name(name: &str) -> Option<(Role, &str)> {
        let rest = name.strip_suffix(NAME_SUFFIX)?.strip_suffix('.')?;
        let (role, cluster) = rest.split_once('.')?;
        check_cluster_name(cluster).ok()?;
        Some((role.parse().ok()?, cluster))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "master" => Ok(Role::Master),
            "agent" => Ok(Role::Agent),
            "client" => Ok(Role::Client),
            other => Err(format!(
                "unknown role {other:?}: expected master, agent or client"
            )),
        }
    }
}

/// Longest cluster name: it is one DNS label.
pub const CLUSTER_NAME_MAX: usize = 63;

/// A cluster name is one DNS label: lowercase letters, digits and inner
/// hyphens, at most [`CLUSTER_NAME_MAX`] bytes.
pub fn check_cluster_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if name.is_empty()
        || name.len() > CLUSTER_NAME_MAX
        || !ok_chars
        || name.starts_with('-')
        || name.ends_with('-')
    {
        return Err(format!(
            "invalid cluster name {name:?}: use 1 to {CLUSTER_NAME_MAX} lowercase letters, digits \
             and inner hyphens (it becomes part of every certificate's DNS name)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_role_and_cluster() {
        for role in Role::ALL {
            let name = role.name_in("prod-eu");
            assert_eq!(Role::parse_name(&name), Some((role, "prod-eu")));
        }
        for bad in [
            "master.sluice",
            "root.prod.sluice",
            "master.prod.example",
            "master.Prod.sluice",
            "master..sluice",
            "master.a.b.sluice",
        ] {
            assert_eq!(Role::parse_name(bad), None, "{bad}");
        }
        assert!(check_cluster_name("-a").is_err());
        assert!(check_cluster_name(&"a".repeat(64)).is_err());
        assert!(check_cluster_name("dev").is_ok());
    }
}
