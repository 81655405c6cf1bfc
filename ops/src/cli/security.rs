//! Command-line definitions of TLS and ACLs: the flags every process takes,
//! `sluice tls` and `sluice acl`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{parse_duration, ClientArgs};

/// Mutual TLS: the cluster CA, and this process's certificate and key
/// (made by `sluice tls init` and `sluice tls issue`). All three or none.
#[derive(Debug, Args, Clone, Default)]
pub struct TlsArgs {
    /// The cluster CA's certificate (PEM).
    #[arg(long, env = "SLUICE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// This process's certificate (PEM), issued by that CA for its role.
    #[arg(long, env = "SLUICE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// This certificate's private key (PEM).
    #[arg(long, env = "SLUICE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Create the cluster's certificate authority in DIR: ca.pem (give it
    /// to every member), ca-key.pem (keep it safe, off the cluster) and the
    /// cluster's name. Refuses to overwrite.
    Init {
        dir: PathBuf,
        /// The cluster's name, part of every certificate's DNS name
        /// (`<role>.<cluster>.sluice`).
        #[arg(long, default_value = "default")]
        cluster: String,
    },
    /// Issue a certificate and key for one role, signed by the CA in
    /// --ca-dir: written as OUT/NAME.pem and OUT/NAME-key.pem.
    Issue {
        /// master (Raft and the admin API), agent (registers, heartbeats,
        /// serves the agent API) or client (the CLI and programs).
        #[arg(long)]
        role: sluice_security::Role,
        /// The CA directory made by `sluice tls init`.
        #[arg(long)]
        ca_dir: PathBuf,
        /// Where to write [default: the CA directory].
        #[arg(long)]
        out: Option<PathBuf>,
        /// File name stem [default: the role].
        #[arg(long)]
        name: Option<String>,
        /// Days of validity.
        #[arg(long, default_value_t = sluice_security::pki::DEFAULT_VALIDITY_DAYS)]
        days: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Create the management token, once per cluster; prints its secret.
    Bootstrap {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Tokens.
    #[command(subcommand)]
    Token(AclTokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum AclTokenCommand {
    /// Create a token; prints its secret, which is shown only this once.
    Create {
        /// A name for audit lines and listings.
        #[arg(long)]
        name: String,
        /// read, submit:ROLE[,ROLE...] (or submit:*), operator, management
        /// or agent; repeatable.
        #[arg(long = "policy", required = true)]
        policies: Vec<sluice_consensus::acl::AclPolicy>,
        /// Expire after this long (e.g. 30d, 12h) [default: never].
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Every token (not their secrets): name, policies, expiry, revocation.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a token by accessor: refused from now on.
    Revoke {
        accessor: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}
