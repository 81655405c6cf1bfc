//! The replicated master of Sluice.
//!
//! Three (or five) masters keep the cluster's allocation state — agents,
//! roles, and later jobs and placements — in a state machine replicated with
//! openraft, stored in RocksDB through `sluice-storage`, and talk gRPC.
//!
//! - [`types`]: the openraft type configuration.
//! - [`command`] and [`state`]: typed commands and their deterministic apply.
//! - [`network`]: the Raft transport (client side); [`raft_service`] its server.
//! - [`request`]: what clients may ask (never the leader's own commands);
//!   [`acl`]: the tokens that say who may ask what.
//! - [`admin`]: the `Master` gRPC service used by the CLI and other masters.
//! - [`node`]: one running master: storage, Raft, both servers.
//! - The API itself — its messages, records, requests and client — is the
//!   `sluice-api` crate, which links neither openraft nor RocksDB.

#![forbid(unsafe_code)]

pub mod acl;
pub mod admin;
pub mod command;
pub mod config;
pub mod leader;
pub mod lease;
pub mod network;
pub mod node;
pub mod proposer;
pub mod raft_service;
pub mod request;
pub mod scheduler;
pub mod state;
pub mod types;

/// The Raft service, generated from `proto/raft.proto`, beside the admin
/// API's messages (`sluice-api`).
pub mod proto {
    mod raft {
        #![allow(clippy::all, missing_docs, rust_2018_idioms)]
        tonic::include_proto!("sluice.v1");
    }
    pub use raft::*;
    pub use sluice_api::proto::*;
}

// The client side lives in `sluice-api`; these keep one path for the
// crates that also run a master.
pub use sluice_api::{client, text, units};

pub use client::{ClientError, MasterClient};
pub use command::{Command, CommandError, CommandOutput};
pub use config::MasterConfig;
pub use node::{MasterError, MasterHandle};
pub use request::Request;
pub use state::{ClusterState, Query};
pub use types::{MasterNode, NodeId};
